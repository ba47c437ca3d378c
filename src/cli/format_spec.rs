//! Python's format specification mini-language for the text and integer values of borg's
//! `--format` templates: `[[fill]align][sign][#][0][width][grouping][.precision][type]`
//! (`str.__format__`, `int.__format__`). Errors carry Python's messages.

/// A parsed format spec.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Spec {
    fill: Option<char>,
    align: Option<char>,
    sign: Option<char>,
    alternate: bool,
    zero: bool,
    width: usize,
    grouping: Option<char>,
    precision: Option<usize>,
    kind: Option<char>,
}

fn parse(spec: &str) -> Result<Spec, String> {
    let c: Vec<char> = spec.chars().collect();
    let mut s = Spec::default();
    let mut i = 0;
    let is_align = |ch: char| matches!(ch, '<' | '>' | '=' | '^');
    if c.len() >= 2 && is_align(c[1]) {
        s.fill = Some(c[0]);
        s.align = Some(c[1]);
        i = 2;
    } else if !c.is_empty() && is_align(c[0]) {
        s.align = Some(c[0]);
        i = 1;
    }
    if i < c.len() && matches!(c[i], '+' | '-' | ' ') {
        s.sign = Some(c[i]);
        i += 1;
    }
    if i < c.len() && c[i] == '#' {
        s.alternate = true;
        i += 1;
    }
    if i < c.len() && c[i] == '0' {
        s.zero = true;
        i += 1;
    }
    let start = i;
    while i < c.len() && c[i].is_ascii_digit() {
        i += 1;
    }
    if i > start {
        let digits: String = c[start..i].iter().collect();
        s.width = digits
            .parse()
            .map_err(|_| "Too many decimal digits in format string")?;
    }
    if i < c.len() && matches!(c[i], ',' | '_') {
        s.grouping = Some(c[i]);
        i += 1;
    }
    if i < c.len() && c[i] == '.' {
        i += 1;
        let start = i;
        while i < c.len() && c[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return Err("Format specifier missing precision".into());
        }
        let digits: String = c[start..i].iter().collect();
        s.precision = Some(
            digits
                .parse()
                .map_err(|_| "Too many decimal digits in format string")?,
        );
    }
    if i < c.len() {
        s.kind = Some(c[i]);
        i += 1;
    }
    if i < c.len() {
        return Err("Invalid format specifier".into());
    }
    Ok(s)
}

/// Pads `body` to the spec's width; `=` puts the fill after the first `split` characters
/// (sign and prefix).
fn align(body: &str, split: usize, fill: char, align: char, width: usize) -> String {
    let len = body.chars().count();
    if len >= width {
        return body.to_string();
    }
    let n = width - len;
    let f = |k: usize| fill.to_string().repeat(k);
    match align {
        '<' => format!("{body}{}", f(n)),
        '>' => format!("{}{body}", f(n)),
        '^' => format!("{}{body}{}", f(n / 2), f(n - n / 2)),
        _ => {
            let (head, tail) = body.split_at(
                body.char_indices()
                    .nth(split)
                    .map_or(body.len(), |(i, _)| i),
            );
            format!("{head}{}{tail}", f(n))
        }
    }
}

/// `format(text, spec)` for a Python `str`.
pub fn format_str(text: &str, spec: &str) -> Result<String, String> {
    if spec.is_empty() {
        return Ok(text.to_string());
    }
    str_with(text, &parse(spec)?)
}

fn str_with(text: &str, s: &Spec) -> Result<String, String> {
    if let Some(k) = s.kind.filter(|k| *k != 's') {
        return Err(format!(
            "Unknown format code '{k}' for object of type 'str'"
        ));
    }
    if s.sign.is_some() {
        return Err("Sign not allowed in string format specifier".into());
    }
    if s.alternate {
        return Err("Alternate form (#) not allowed in string format specifier".into());
    }
    if let Some(g) = s.grouping {
        return Err(format!("Cannot specify '{g}' with 's'."));
    }
    if s.align == Some('=') {
        return Err("'=' alignment not allowed in string format specifier".into());
    }
    let body: String = match s.precision {
        Some(p) => text.chars().take(p).collect(),
        None => text.to_string(),
    };
    let fill = s.fill.unwrap_or(if s.zero { '0' } else { ' ' });
    Ok(align(&body, 0, fill, s.align.unwrap_or('<'), s.width))
}

fn group(digits: &str, sep: char, every: usize) -> String {
    let n = digits.len();
    let mut out = String::with_capacity(n + n / every);
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (n - i) % every == 0 {
            out.push(sep);
        }
        out.push(d);
    }
    out
}

/// `format(n, spec)` for a Python `int`.
pub fn format_int(n: i64, spec: &str) -> Result<String, String> {
    if spec.is_empty() {
        return Ok(n.to_string());
    }
    let s = parse(spec)?;
    if s.precision.is_some() {
        return Err("Precision not allowed in integer format specifier".into());
    }
    let kind = s.kind.unwrap_or('d');
    let magnitude = n.unsigned_abs();
    let (digits, prefix, every) = match kind {
        'd' | 'n' => (magnitude.to_string(), "", 3),
        'b' => (format!("{magnitude:b}"), "0b", 4),
        'o' => (format!("{magnitude:o}"), "0o", 4),
        'x' => (format!("{magnitude:x}"), "0x", 4),
        'X' => (format!("{magnitude:X}"), "0X", 4),
        'c' => {
            let ch = u32::try_from(n)
                .ok()
                .and_then(char::from_u32)
                .ok_or("%c arg not in range(0x110000)")?;
            return str_with(
                &ch.to_string(),
                &Spec {
                    kind: None,
                    ..s.clone()
                },
            );
        }
        k => {
            return Err(format!(
                "Unknown format code '{k}' for object of type 'int'"
            ))
        }
    };
    if s.grouping == Some(',') && kind != 'd' {
        return Err(format!("Cannot specify ',' with '{kind}'."));
    }
    let sign = match (n < 0, s.sign) {
        (true, _) => "-",
        (false, Some('+')) => "+",
        (false, Some(' ')) => " ",
        _ => "",
    };
    let prefix = if s.alternate { prefix } else { "" };
    let head = format!("{sign}{prefix}");
    let fill = s.fill.unwrap_or(if s.zero { '0' } else { ' ' });
    let align_char = s.align.unwrap_or(if s.zero { '=' } else { '>' });
    let mut digits = digits;
    let grouped = |d: &str| match s.grouping {
        Some(sep) => group(d, sep, every),
        None => d.to_string(),
    };
    // Zero padding with grouping pads the digits, separators included ("{:09,}" of 1234 is
    // "0,001,234").
    if s.zero && s.fill.is_none() && align_char == '=' && s.grouping.is_some() {
        while head.len() + grouped(&digits).len() < s.width {
            digits.insert(0, '0');
        }
    }
    let body = format!("{head}{}", grouped(&digits));
    Ok(align(
        &body,
        head.chars().count(),
        fill,
        align_char,
        s.width,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_like_python() {
        for (text, spec, want) in [
            ("ab", "", "ab"),
            ("ab", "5", "ab   "),
            ("ab", ">5", "   ab"),
            ("ab", "*^6", "**ab**"),
            ("ab", "^5", " ab  "),
            ("abcdef", ".3", "abc"),
            ("abcdef", "<8.3", "abc     "),
            ("ab", "05", "ab000"),
            ("ab", "s", "ab"),
        ] {
            assert_eq!(format_str(text, spec).as_deref(), Ok(want), "{spec:?}");
        }
        assert!(format_str("ab", "+5").is_err());
        assert!(format_str("ab", "=5").is_err());
        assert!(format_str("ab", "d").is_err());
    }

    #[test]
    fn integers_like_python() {
        for (n, spec, want) in [
            (42, "", "42"),
            (42, "6", "    42"),
            (42, "<6", "42    "),
            (42, "06", "000042"),
            (-42, "06", "-00042"),
            (42, "+", "+42"),
            (42, " ", " 42"),
            (1234567, ",", "1,234,567"),
            (1234567, "_", "1_234_567"),
            (1234, "09,", "0,001,234"),
            (1234, "08,", "0,001,234"),
            (255, "x", "ff"),
            (255, "#X", "0XFF"),
            (255, "#010x", "0x000000ff"),
            (5, "b", "101"),
            (65535, "_x", "ffff"),
            (65536, "_x", "1_0000"),
            (-5, "=+6", "-    5"),
            (5, "<05", "50000"),
            (65, "c", "A"),
        ] {
            assert_eq!(format_int(n, spec).as_deref(), Ok(want), "{n} {spec:?}");
        }
        assert!(format_int(1, ".2").is_err());
        assert!(format_int(1, ",x").is_err());
        assert!(format_int(1, "q").is_err());
    }
}
