//! Python `str.format`-style output templates as borg's `--format` uses them: `{key}`,
//! `{key:<36}`, `{key:>8}`, `{{`/`}}`, and the fixed keys `{NL}`, `{LF}`, `{TAB}`, ….

use chrono::{DateTime, Local, TimeZone, Utc};

use super::format_spec;
use super::CliError;

/// A value to put into a template.
#[derive(Debug, Clone)]
pub enum Field {
    /// Text (left-aligned by default, as in Python).
    Text(String),
    /// A number (right-aligned by default).
    Int(i64),
    /// A boolean (Python prints `True`/`False`).
    Bool(bool),
    /// A command line: a list in JSON, shell-quoted words as text (`ArchiveFormatter.get_cmdline`).
    CommandLine(Vec<String>),
    /// A time, shown in local time. borg's `OutputTimestamp.__format__` hands the format spec
    /// to `strftime` (`{mtime:%Y-%m-%d}`); without one it is `Thu, 2026-11-26 07:00:05`.
    Time(DateTime<Utc>),
}

impl Field {
    /// The value as JSON.
    pub fn json(&self) -> serde_json::Value {
        match self {
            Field::Text(s) => serde_json::Value::String(s.clone()),
            Field::Int(i) => serde_json::Value::from(*i),
            Field::Bool(b) => serde_json::Value::Bool(*b),
            Field::Time(t) => serde_json::Value::String(iso_time(t)),
            Field::CommandLine(words) => serde_json::Value::from(words.clone()),
        }
    }
}

/// The keys every template knows (`BaseFormatter.FIXED_KEYS`).
fn fixed(key: &str) -> Option<&'static str> {
    Some(match key {
        "LF" | "NL" | "NEWLINE" => "\n",
        "SPACE" => " ",
        "TAB" => "\t",
        "CR" => "\r",
        "NUL" => "\0",
        _ => return None,
    })
}

/// The keys a template uses, in order.
pub fn keys(template: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        if rest[i..].starts_with("{{") {
            rest = &rest[i + 2..];
            continue;
        }
        let Some(j) = rest[i..].find('}') else { break };
        let inner = &rest[i + 1..i + j];
        let key = inner.split(':').next().unwrap_or_default();
        out.push(key.to_string());
        rest = &rest[i + j + 1..];
    }
    out
}

/// Fills `template` with values from `get`.
pub fn render(
    template: &str,
    get: &mut dyn FnMut(&str) -> Option<Field>,
) -> Result<String, CliError> {
    let mut out = String::new();
    let mut chars = template.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '{' if matches!(chars.peek(), Some((_, '{'))) => {
                chars.next();
                out.push('{');
            }
            '}' if matches!(chars.peek(), Some((_, '}'))) => {
                chars.next();
                out.push('}');
            }
            '{' => {
                let end = template[i..].find('}').ok_or_else(|| {
                    CliError::usage(format!("--format: unclosed {{ in {template:?}"))
                })?;
                let inner = &template[i + 1..i + end];
                let (key, spec) = inner.split_once(':').unwrap_or((inner, ""));
                let field = match fixed(key) {
                    Some(v) => Field::Text(v.to_string()),
                    None => get(key).ok_or_else(|| {
                        CliError::usage(format!("--format: unknown key {{{key}}}"))
                    })?,
                };
                let text = match &field {
                    Field::Text(s) => format_spec::format_str(s, spec),
                    Field::Int(n) => format_spec::format_int(*n, spec),
                    // `bool` formats as `int` once there is a spec.
                    Field::Bool(b) if spec.is_empty() => {
                        Ok(if *b { "True" } else { "False" }.to_string())
                    }
                    Field::Bool(b) => format_spec::format_int(i64::from(*b), spec),
                    Field::Time(t) => Ok(strftime(t, spec)),
                    Field::CommandLine(words) => format_spec::format_str(
                        &words
                            .iter()
                            .map(|w| shell_quote(w))
                            .collect::<Vec<_>>()
                            .join(" "),
                        spec,
                    ),
                };
                let text =
                    text.map_err(|e| CliError::usage(format!("--format: {{{inner}}}: {e}")))?;
                out.push_str(&text);
                while let Some((k, _)) = chars.peek() {
                    if *k > i + end {
                        break;
                    }
                    chars.next();
                }
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Bytes as borg shows them as text (`remove_surrogates`): each byte that is not part of valid
/// UTF-8 becomes `?`.
pub fn remove_surrogates(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    let mut rest = bytes;
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.push_str(s);
                break;
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(good).unwrap_or_default());
                let n = e.error_len().unwrap_or(bad.len());
                out.push_str(&"?".repeat(n));
                rest = &bad[n..];
            }
        }
    }
    out
}

/// borg's `format_file_size` (decimal units, or IEC with `--iec`): `0 B`, `1.23 kB`,
/// `-3.00 MB`.
pub fn file_size(n: i64, iec: bool) -> String {
    let (units, power): (&[&str], f64) = if iec {
        (
            &["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"],
            1024.0,
        )
    } else {
        (&["", "k", "M", "G", "T", "P", "E", "Z", "Y"], 1000.0)
    };
    let mut num = n as f64;
    let mut precision = 0;
    let mut unit = units[units.len() - 1];
    for u in &units[..units.len() - 1] {
        if ((num * 100.0).round() / 100.0).abs() < power {
            unit = u;
            break;
        }
        num /= power;
        precision = 2;
    }
    format!("{num:.precision$} {unit}B")
}

/// Python's `shlex.quote`.
pub fn shell_quote(s: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c);
    if !s.is_empty() && s.chars().all(safe) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\"'\"'"))
    }
}

/// borg's `format_timedelta`: `1 hours 2 minutes 3.45 seconds`.
pub fn timedelta(seconds: f64) -> String {
    let days = (seconds / 86400.0).floor() as i64;
    let s = seconds.rem_euclid(60.0);
    let m = (seconds / 60.0) as i64 % 60;
    let h = (seconds / 3600.0) as i64 % 24;
    let mut txt = format!("{s:.2} seconds");
    if m != 0 {
        txt = format!("{m} minutes {txt}");
    }
    if h != 0 {
        txt = format!("{h} hours {txt}");
    }
    if days != 0 {
        txt = format!("{days} days {txt}");
    }
    txt
}

/// The header of borg's statistics tables.
pub const STATS_HEADER: &str =
    "                       Original size      Compressed size    Deduplicated size";

/// The "All archives" block (`CacheStatsMixin.str_format`).
pub fn cache_text(stats: &rborg::cache::ChunkStats, iec: bool) -> String {
    let size = |n: u64| file_size(n as i64, iec);
    format!(
        "All archives:   {:>20} {:>20} {:>20}\n\n                       Unique chunks         Total chunks\nChunk index:    {:20} {:20}",
        size(stats.total_size),
        size(stats.total_csize),
        size(stats.unique_csize),
        stats.total_unique_chunks,
        stats.total_chunks
    )
}

/// A UTC time in the process's local zone.
pub fn local(t: &DateTime<Utc>) -> DateTime<Local> {
    Local.from_utc_datetime(&t.naive_utc())
}

/// borg's text timestamp (`format_time`): `Thu, 2026-11-26 07:00:05` in local time.
pub fn text_time(t: &DateTime<Utc>) -> String {
    local(t).format("%a, %Y-%m-%d %H:%M:%S").to_string()
}

/// borg's `format_time(ts, format_spec)`: `strftime` of the local time, the text form when
/// `spec` is empty. A spec chrono cannot read comes out as written.
pub fn strftime(t: &DateTime<Utc>, spec: &str) -> String {
    use chrono::format::{Item, StrftimeItems};
    if spec.is_empty() {
        return text_time(t);
    }
    let translated = rborg::placeholders::python_strftime(spec);
    let items: Vec<Item> = StrftimeItems::new(&translated).collect();
    if items.iter().any(|i| matches!(i, Item::Error)) {
        return spec.to_string();
    }
    local(t).format_with_items(items.into_iter()).to_string()
}

/// borg's JSON timestamp: ISO local time without zone, six fractional digits.
pub fn iso_time(t: &DateTime<Utc>) -> String {
    local(t).format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
}

/// An archive time as borg prints it: stored UTC, truncated to whole seconds (`to_localtime`).
pub fn archive_time(stored: &str) -> Option<DateTime<Utc>> {
    let t = rborg::archive::parse_time(stored)?;
    DateTime::from_timestamp(t.timestamp(), 0)
}

/// A nanosecond timestamp as a UTC time, rounded to microseconds the way Python's
/// `datetime.fromtimestamp(ns / 1e9)` rounds (borg's `safe_timestamp`).
pub fn ns_time(ns: i64) -> DateTime<Utc> {
    let t = ns as f64 / 1e9;
    let whole = t.floor();
    let mut secs = whole as i64;
    let mut us = ((t - whole) * 1e6).round_ties_even() as i64;
    if us >= 1_000_000 {
        secs += 1;
        us -= 1_000_000;
    }
    DateTime::from_timestamp(secs, (us * 1000) as u32).unwrap_or_default()
}

/// `stat.filemode`: `drwxr-xr-x` and friends.
pub fn filemode(mode: u32) -> String {
    let t = match mode & 0o170000 {
        0o040000 => 'd',
        0o120000 => 'l',
        0o020000 => 'c',
        0o060000 => 'b',
        0o010000 => 'p',
        0o140000 => 's',
        0o100000 => '-',
        _ => '?',
    };
    let mut s = String::with_capacity(10);
    s.push(t);
    let bit = |m: u32, c: char| if mode & m != 0 { c } else { '-' };
    let exec =
        |x: u32, special: u32, set: char, unset: char| match (mode & x != 0, mode & special != 0) {
            (true, true) => set,
            (false, true) => unset,
            (true, false) => 'x',
            (false, false) => '-',
        };
    s.push(bit(0o400, 'r'));
    s.push(bit(0o200, 'w'));
    s.push(exec(0o100, 0o4000, 's', 'S'));
    s.push(bit(0o040, 'r'));
    s.push(bit(0o020, 'w'));
    s.push(exec(0o010, 0o2000, 's', 'S'));
    s.push(bit(0o004, 'r'));
    s.push(bit(0o002, 'w'));
    s.push(exec(0o001, 0o1000, 't', 'T'));
    s
}

/// JSON as borg's `json_print` writes it: `json.dumps(sort_keys=True, indent=4)` (serde_json's
/// map keeps keys sorted), and, as Python's default `ensure_ascii`, every character outside
/// ASCII and DEL as `\uXXXX`.
pub fn json_text(value: &serde_json::Value) -> String {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    if serde::Serialize::serialize(value, &mut ser).is_err() {
        return String::new();
    }
    ensure_ascii(&String::from_utf8_lossy(&buf))
}

/// Prints [`json_text`] and a newline.
pub fn print_json(value: &serde_json::Value) {
    println!("{}", json_text(value));
}

/// Escapes every character at or above DEL as `\uXXXX` (UTF-16 units). In serialized JSON such
/// characters only occur inside strings, so this is Python's `ensure_ascii`.
fn ensure_ascii(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if (c as u32) < 0x7f {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

/// A JSON value as Python's `json.dumps` writes it by default: `", "` and `": "` separators,
/// every character outside printable ASCII escaped as `\uXXXX` (`ensure_ascii`), keys in the
/// order given.
pub fn python_json(value: &serde_json::Value) -> String {
    use serde_json::Value;
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => if *b { "true" } else { "false" }.into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => python_json_string(s),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(python_json).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(o) => {
            let entries: Vec<(&str, Value)> =
                o.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
            python_json_object(&entries)
        }
    }
}

/// An object from entries in the given order, spelled as [`python_json`] spells it.
pub fn python_json_object(entries: &[(&str, serde_json::Value)]) -> String {
    let body: Vec<String> = entries
        .iter()
        .map(|(k, v)| format!("{}: {}", python_json_string(k), python_json(v)))
        .collect();
    format!("{{{}}}", body.join(", "))
}

/// `json.encoder.py_encode_basestring_ascii`.
fn python_json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_render_like_python() {
        let mut get = |k: &str| match k {
            "archive" => Some(Field::Text("a".into())),
            "size" => Some(Field::Int(42)),
            _ => None,
        };
        assert_eq!(
            render("{archive:<4}|{size:6}|{size:<4}|{{x}}{NL}", &mut get).expect("renders"),
            "a   |    42|42  |{x}\n"
        );
        assert!(render("{nope}", &mut get).is_err());
        let t = DateTime::from_timestamp(86400 * 365, 0).expect("time");
        let mut get_time = |_: &str| Some(Field::Time(t));
        assert_eq!(
            render(
                "{mtime}|{mtime:%Y}|{mtime:<20}|{mtime:%S.%f %%f}",
                &mut get_time
            )
            .expect("renders"),
            format!("{}|1971|<20|00.000000 %f", text_time(&t))
        );
        assert_eq!(keys("{a} {b:>3}{{c}}"), ["a", "b"]);
        assert_eq!(filemode(0o100644), "-rw-r--r--");
        assert_eq!(filemode(0o41777), "drwxrwxrwt");
        assert_eq!(filemode(0o104755), "-rwsr-xr-x");
        assert_eq!(file_size(0, false), "0 B");
        assert_eq!(file_size(999, false), "999 B");
        assert_eq!(file_size(1234, false), "1.23 kB");
        assert_eq!(file_size(-3_000_000, false), "-3.00 MB");
        assert_eq!(file_size(999_999, false), "1.00 MB");
        assert_eq!(file_size(2048, true), "2.00 KiB");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("--x=1"), "--x=1");
        assert_eq!(timedelta(3723.456), "1 hours 2 minutes 3.46 seconds");
    }

    #[test]
    fn pretty_json_escapes_like_python() {
        let v = serde_json::json!({"b": "ü😀\u{7f}", "a": [1, {}], "c": []});
        assert_eq!(
            json_text(&v),
            "{\n    \"a\": [\n        1,\n        {}\n    ],\n    \"b\": \"\\u00fc\\ud83d\\ude00\\u007f\",\n    \"c\": []\n}"
        );
    }

    #[test]
    fn json_is_spelled_like_pythons_json_dumps() {
        let v = serde_json::json!({"b": [1, true, null], "a": "x\"\\\n\u{7f}ü😀"});
        // serde_json's map is sorted; Python keeps insertion order, here the same.
        assert_eq!(
            python_json(&v),
            "{\"a\": \"x\\\"\\\\\\n\\u007f\\u00fc\\ud83d\\ude00\", \"b\": [1, true, null]}"
        );
    }
}
