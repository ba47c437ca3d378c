//! Placeholders in archive names, comments, globs and repository paths: `{hostname}`,
//! `{now:%Y-%m-%d}`, `{utcnow}`, `{user}`, `{pid}`, … as borg's `replace_placeholders`
//! (`helpers/parseformat.py`) expands them, with Python's `str.format` syntax: `{{` and `}}`
//! are literal braces and `{key:spec}` passes `spec` to the value (a strftime format for the two
//! times).

use chrono::{DateTime, Local, Utc};

use crate::settings::Environment;

/// A placeholder that borg would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaceholderError {
    /// An unknown key, or one with a `!conversion` (borg's `InvalidPlaceholder`).
    #[error("Invalid placeholder \"{key}\" in string: {text}")]
    Invalid {
        /// The key as written.
        key: String,
        /// The whole string.
        text: String,
    },
    /// A malformed format string or a format spec the value does not take (borg's
    /// `PlaceholderError`).
    #[error("Formatting Error: \"{text}\": {reason}")]
    Format {
        /// The whole string.
        text: String,
        /// What is wrong.
        reason: String,
    },
}

/// The values placeholders expand to, taken once so that every placeholder in one command sees
/// the same time.
#[derive(Debug, Clone)]
pub struct Placeholders {
    /// The current time.
    pub now: DateTime<Utc>,
    /// `{hostname}`: `BORG_HOSTNAME`, else the host name up to its first dot.
    pub hostname: String,
    /// `{fqdn}`: the fully qualified host name.
    pub fqdn: String,
    /// `{user}`: `BORG_USERNAME`, else the login name of the effective user.
    pub user: String,
    /// `{pid}`.
    pub pid: u32,
    /// The version reported by `{borgversion}` and friends: the borg version rborg speaks.
    pub borg_version: (u32, u32, u32),
}

impl Placeholders {
    /// Values for this process and host, now.
    pub fn current(env: &Environment) -> Placeholders {
        let fqdn = system_hostname();
        let short = fqdn.split('.').next().unwrap_or_default().to_string();
        Placeholders {
            now: Utc::now(),
            hostname: env
                .get("BORG_HOSTNAME")
                .filter(|h| !h.is_empty())
                .map(str::to_string)
                .unwrap_or(short),
            fqdn,
            user: env
                .get("BORG_USERNAME")
                .filter(|u| !u.is_empty())
                .map(str::to_string)
                .unwrap_or_else(effective_user_name),
            pid: std::process::id(),
            borg_version: crate::BORG_VERSION,
        }
    }

    /// Expands every placeholder in `text`.
    pub fn replace(&self, text: &str) -> Result<String, PlaceholderError> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(pos) = rest.find(['{', '}']) {
            out.push_str(&rest[..pos]);
            let brace = rest.as_bytes()[pos];
            let after = &rest[pos + 1..];
            if after.as_bytes().first() == Some(&brace) {
                out.push(brace as char);
                rest = &after[1..];
                continue;
            }
            if brace == b'}' {
                return Err(self.format_error(text, "Single '}' encountered in format string"));
            }
            let end = after
                .find('}')
                .ok_or_else(|| self.format_error(text, "expected '}' before end of string"))?;
            let field = &after[..end];
            let (key, spec) = match field.split_once(':') {
                Some((k, s)) => (k, Some(s)),
                None => (field, None),
            };
            if key.contains('!') || key.is_empty() {
                return Err(PlaceholderError::Invalid {
                    key: key.to_string(),
                    text: text.to_string(),
                });
            }
            out.push_str(&self.value(key, spec, text)?);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn value(&self, key: &str, spec: Option<&str>, text: &str) -> Result<String, PlaceholderError> {
        let plain = |v: String| -> Result<String, PlaceholderError> {
            match spec {
                None | Some("") => Ok(v),
                Some(s) => Err(self.format_error(text, &format!("Invalid format specifier '{s}'"))),
            }
        };
        let (major, minor, patch) = self.borg_version;
        match key {
            "now" => self.time(
                self.now
                    .with_timezone(&Local)
                    .format_with_items_checked(spec),
                text,
            ),
            "utcnow" => self.time(self.now.format_with_items_checked(spec), text),
            "pid" => plain(self.pid.to_string()),
            "fqdn" => plain(self.fqdn.clone()),
            "reverse-fqdn" => plain(self.fqdn.split('.').rev().collect::<Vec<_>>().join(".")),
            "hostname" => plain(self.hostname.clone()),
            "user" => plain(self.user.clone()),
            "unixtime" => plain(self.now.timestamp().to_string()),
            "uuid4" => plain(uuid4()),
            "borgversion" => plain(format!("{major}.{minor}.{patch}")),
            "borgmajor" => plain(major.to_string()),
            "borgminor" => plain(format!("{major}.{minor}")),
            "borgpatch" => plain(format!("{major}.{minor}.{patch}")),
            _ => Err(PlaceholderError::Invalid {
                key: key.to_string(),
                text: text.to_string(),
            }),
        }
    }

    fn time(
        &self,
        formatted: Result<String, String>,
        text: &str,
    ) -> Result<String, PlaceholderError> {
        formatted.map_err(|reason| self.format_error(text, &reason))
    }

    fn format_error(&self, text: &str, reason: &str) -> PlaceholderError {
        PlaceholderError::Format {
            text: text.to_string(),
            reason: reason.to_string(),
        }
    }
}

/// strftime formatting that reports a bad format instead of panicking.
trait CheckedFormat {
    fn format_with_items_checked(&self, spec: Option<&str>) -> Result<String, String>;
}

impl<Tz: chrono::TimeZone> CheckedFormat for DateTime<Tz>
where
    Tz::Offset: std::fmt::Display,
{
    fn format_with_items_checked(&self, spec: Option<&str>) -> Result<String, String> {
        use chrono::format::{Item, StrftimeItems};
        use std::fmt::Write;
        // borg's DatetimeWrapper: an empty spec means ISO 8601 without microseconds.
        let spec = spec
            .filter(|s| !s.is_empty())
            .unwrap_or("%Y-%m-%dT%H:%M:%S");
        let spec = python_strftime(spec);
        let items: Vec<Item> = StrftimeItems::new(&spec).collect();
        if items.iter().any(|i| matches!(i, Item::Error)) {
            return Err(format!("invalid time format {spec:?}"));
        }
        let mut s = String::new();
        write!(s, "{}", self.format_with_items(items.into_iter()))
            .map_err(|_| format!("invalid time format {spec:?}"))?;
        Ok(s)
    }
}

/// Rewrites a Python `strftime` format (what borg's `DatetimeWrapper.__format__` and
/// `format_time` pass to Python) for chrono, where a directive means something else: Python's
/// `%f` is the microseconds, six digits, chrono's is the nanoseconds, nine digits. `%%` stays
/// a literal percent sign.
pub fn python_strftime(spec: &str) -> String {
    let mut out = String::with_capacity(spec.len() + 4);
    let mut chars = spec.chars();
    while let Some(c) = chars.next() {
        out.push(c);
        if c != '%' {
            continue;
        }
        match chars.next() {
            Some('f') => out.push_str("6f"),
            Some(next) => out.push(next),
            None => {}
        }
    }
    out
}

fn system_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into the buffer we own.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".to_string();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

fn effective_user_name() -> String {
    // SAFETY: geteuid has no preconditions; getpwuid_r writes into buffers we own.
    unsafe {
        let uid = libc::geteuid();
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 4096];
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result);
        if rc == 0 && !result.is_null() && !pwd.pw_name.is_null() {
            return std::ffi::CStr::from_ptr(pwd.pw_name)
                .to_string_lossy()
                .into_owned();
        }
        uid.to_string()
    }
}

fn uuid4() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // Without randomness a uuid4 would be a lie; fall back to time and pid.
        let t = Utc::now().timestamp_nanos_opt().unwrap_or_default() as u128;
        b = (t ^ ((std::process::id() as u128) << 64)).to_le_bytes();
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn fixed() -> Placeholders {
        Placeholders {
            now: Utc
                .with_ymd_and_hms(2026, 11, 26, 7, 0, 5)
                .single()
                .expect("time"),
            hostname: "nas".into(),
            fqdn: "nas.example.org".into(),
            user: "root".into(),
            pid: 42,
            borg_version: (1, 4, 5),
        }
    }

    #[test]
    fn expands_borgs_placeholders() {
        let p = fixed();
        assert_eq!(
            p.replace("{hostname}-{utcnow:%Y-%m-%d}").expect("ok"),
            "nas-2026-11-26"
        );
        assert_eq!(p.replace("{utcnow}").expect("ok"), "2026-11-26T07:00:05");
        assert_eq!(
            p.replace("{user}@{fqdn} {pid}").expect("ok"),
            "root@nas.example.org 42"
        );
        assert_eq!(p.replace("{reverse-fqdn}").expect("ok"), "org.example.nas");
        assert_eq!(p.replace("{unixtime}").expect("ok"), "1795676405");
        assert_eq!(
            p.replace("{borgminor} {{literal}}").expect("ok"),
            "1.4 {literal}"
        );
        assert_eq!(p.replace("{uuid4}").expect("ok").len(), 36);
    }

    #[test]
    fn percent_f_is_pythons_microseconds() {
        // Python: datetime(2026, 11, 26, 7, 0, 5, 123456, timezone.utc)
        //             .strftime("%Y-%m-%dT%H:%M:%S.%f %%f") == "2026-11-26T07:00:05.123456 %f"
        let mut p = fixed();
        p.now = Utc
            .with_ymd_and_hms(2026, 11, 26, 7, 0, 5)
            .single()
            .expect("time")
            + chrono::Duration::nanoseconds(123_456_789);
        assert_eq!(
            p.replace("{utcnow:%Y-%m-%dT%H:%M:%S.%f %%f}").expect("ok"),
            "2026-11-26T07:00:05.123456 %f"
        );
    }

    #[test]
    fn refuses_what_borg_refuses() {
        let p = fixed();
        assert!(matches!(
            p.replace("{nope}"),
            Err(PlaceholderError::Invalid { .. })
        ));
        assert!(matches!(
            p.replace("{user!r}"),
            Err(PlaceholderError::Invalid { .. })
        ));
        assert!(matches!(
            p.replace("{user"),
            Err(PlaceholderError::Format { .. })
        ));
        assert!(matches!(
            p.replace("a}b"),
            Err(PlaceholderError::Format { .. })
        ));
        assert!(matches!(
            p.replace("{user:>9}"),
            Err(PlaceholderError::Format { .. })
        ));
    }

    #[test]
    fn environment_overrides_host_and_user() {
        let env = Environment::from_pairs([("BORG_HOSTNAME", "h1"), ("BORG_USERNAME", "u1")]);
        let p = Placeholders::current(&env);
        assert_eq!(p.replace("{hostname}/{user}").expect("ok"), "h1/u1");
    }
}
