//! Prune: which archives a set of retention rules keeps, exactly as borg 1.x decides it.
//!
//! This is the pure part of `borg prune`: archives (as the manifest lists them) go in, one
//! [`Decision`] per candidate archive comes out, in the order borg reports them (newest first).
//! Deleting the pruned archives needs the archive layer and is done by the caller.
//!
//! The pieces, each matching a borg function:
//! * [`rules`]: the `--keep-*` options, `--keep-within` intervals, option validation
//!   (`archiver.py:do_prune`, `helpers/parseformat.py:interval`).
//! * [`glob`]: `--glob-archives` / `--prefix` matching (`shellpattern.py:translate` plus
//!   `Archives.list(match_end=...)`).
//! * [`period`]: local-time period keys (`helpers/misc.py:PRUNING_PATTERNS`,
//!   `helpers/time.py:to_localtime`).
//! * [`engine`]: the rule walk (`helpers/misc.py:prune_within / prune_split`, `do_prune`).
//! * [`list`]: the `--list` lines (`helpers/parseformat.py:format_archive`, `do_prune`).

pub mod engine;
#[cfg(test)]
mod engine_tests;
pub mod glob;
pub mod list;
pub mod period;
pub mod rules;

use jiff::Timestamp;

use crate::repository::ObjectId;

pub use engine::{is_checkpoint_name, prune, Decision, KeepReason, Verdict};
pub use glob::ArchiveFilter;
pub use list::{format_archive, list_lines, summary_lines};
pub use period::LocalZone;
pub use rules::{parse_interval, parse_keep_count, PruneRules, Rule};

/// Errors of the prune rule engine and its option parsing.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PruneError {
    /// No `--keep-*` rule was given; the text is borg's message for the chosen version.
    #[error("{0}")]
    NoRule(String),
    /// `--keep-13weekly` and `--keep-3monthly` were both given (argparse's wording).
    #[error("argument --keep-3monthly: not allowed with argument --keep-13weekly")]
    QuarterlyConflict,
    /// A quarterly rule was given for a borg version that does not have it (before 1.4.1).
    #[error("--keep-13weekly and --keep-3monthly need borg 1.4.1 or later, not {0}")]
    QuarterlyUnsupported(BorgVersion),
    /// `--keep-within` was given something borg's `interval()` rejects.
    #[error("{0}")]
    BadInterval(String),
    /// A `--keep-*` count is not an integer.
    #[error("invalid int value: '{0}'")]
    BadCount(String),
    /// An archive glob that borg's regex compiler would reject.
    #[error("bad archive glob {pattern:?}: {reason}")]
    BadGlob {
        /// The glob as given.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A manifest timestamp that is not borg's `%Y-%m-%dT%H:%M:%S[.%f]`.
    #[error("bad archive timestamp {0:?}")]
    BadTimestamp(String),
    /// A time zone name or `TZ` value that cannot be loaded.
    #[error("cannot load time zone {0:?}")]
    BadTimeZone(String),
}

/// A borg release, for the few places where prune's behaviour or output differs by version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BorgVersion {
    /// Major version (always 1 here).
    pub major: u16,
    /// Minor version.
    pub minor: u16,
    /// Patch level.
    pub patch: u16,
}

impl BorgVersion {
    /// borg 1.2.4, one of the two peers rborg is tested against.
    pub const V1_2_4: BorgVersion = BorgVersion::new(1, 2, 4);
    /// borg 1.4.5, the other tested peer.
    pub const V1_4_5: BorgVersion = BorgVersion::new(1, 4, 5);

    /// A version from its three parts.
    pub const fn new(major: u16, minor: u16, patch: u16) -> Self {
        BorgVersion {
            major,
            minor,
            patch,
        }
    }

    /// Width the `--list` message is padded to: 40 up to 1.2.8, 44 from 1.2.9 and in 1.4.
    pub fn list_message_width(self) -> usize {
        if self >= BorgVersion::new(1, 2, 9) {
            44
        } else {
            40
        }
    }

    /// Whether `--keep-13weekly` / `--keep-3monthly` exist (added in 1.4.1).
    pub fn has_quarterly_rules(self) -> bool {
        self >= BorgVersion::new(1, 4, 1)
    }

    /// Whether prune logs its three summary lines at INFO level (added in 1.4.5).
    pub fn has_prune_summary(self) -> bool {
        self >= BorgVersion::new(1, 4, 5)
    }

    /// Whether an unmet quota keeps the oldest archive (`prune_split`, since 1.2.0).
    pub fn has_oldest_fallback(self) -> bool {
        self >= BorgVersion::new(1, 2, 0)
    }
}

impl std::fmt::Display for BorgVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// An archive as prune sees it: one manifest entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneArchive {
    /// Archive name (manifest key).
    pub name: String,
    /// Archive id (the id of its metadata object).
    pub id: ObjectId,
    /// Archive start time from the manifest, UTC, microsecond precision.
    pub ts: Timestamp,
}

impl PruneArchive {
    /// Whether borg treats this archive as a checkpoint (name ends in `.checkpoint(.N)`).
    pub fn is_checkpoint(&self) -> bool {
        is_checkpoint_name(&self.name)
    }
}

/// Everything besides the rules that a prune run depends on.
#[derive(Debug, Clone)]
pub struct PruneSettings {
    /// Which borg's behaviour to reproduce.
    pub version: BorgVersion,
    /// The time zone periods are computed in (borg uses the process's local time).
    pub zone: LocalZone,
    /// "Now", for `--keep-within`.
    pub now: Timestamp,
    /// `--glob-archives` / `--prefix`.
    pub filter: ArchiveFilter,
}

/// Parse a manifest archive time (`%Y-%m-%dT%H:%M:%S` with optional `.%f`, naive UTC), as
/// borg's `helpers/time.py:parse_timestamp` does.
pub fn parse_manifest_time(text: &str) -> Result<Timestamp, PruneError> {
    let bad = || PruneError::BadTimestamp(text.to_string());
    let (main, frac) = match text.split_once('.') {
        Some((main, frac)) => (main, Some(frac)),
        None => (text, None),
    };
    let b = main.as_bytes();
    // strptime accepts some sloppier forms; borg only ever writes this exact shape.
    let shape_ok = b.len() == 19
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            _ => c.is_ascii_digit(),
        });
    if !shape_ok {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| -> i64 {
        main[r]
            .bytes()
            .fold(0i64, |acc, c| acc * 10 + i64::from(c - b'0'))
    };
    let micros = match frac {
        None => 0,
        Some(f) if (1..=6).contains(&f.len()) && f.bytes().all(|c| c.is_ascii_digit()) => {
            // %f is right-padded: ".5" means 500000 microseconds.
            let mut v = 0i64;
            for i in 0..6 {
                let digit = f.as_bytes().get(i).map_or(0, |c| i64::from(c - b'0'));
                v = v * 10 + digit;
            }
            v
        }
        Some(_) => return Err(bad()),
    };
    let as_i8 = |v: i64| i8::try_from(v).map_err(|_| bad());
    let year = i16::try_from(num(0..4)).map_err(|_| bad())?;
    let date =
        jiff::civil::Date::new(year, as_i8(num(5..7))?, as_i8(num(8..10))?).map_err(|_| bad())?;
    let time = jiff::civil::Time::new(
        as_i8(num(11..13))?,
        as_i8(num(14..16))?,
        as_i8(num(17..19))?,
        0,
    )
    .map_err(|_| bad())?;
    let whole = jiff::tz::TimeZone::UTC
        .to_timestamp(date.to_datetime(time))
        .map_err(|_| bad())?;
    Timestamp::from_microsecond(whole.as_microsecond() + micros).map_err(|_| bad())
}

/// Format a UTC timestamp the way borg stores it in the manifest (`%Y-%m-%dT%H:%M:%S.%f`).
pub fn format_manifest_time(ts: Timestamp) -> String {
    let dt = jiff::tz::TimeZone::UTC.to_datetime(ts);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}",
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        ts.subsec_microsecond().rem_euclid(1_000_000)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_time_round_trip() {
        let ts = parse_manifest_time("2024-12-31T23:59:58.000123").unwrap();
        assert_eq!(format_manifest_time(ts), "2024-12-31T23:59:58.000123");
        let ts = parse_manifest_time("2024-06-15T12:00:00").unwrap();
        assert_eq!(format_manifest_time(ts), "2024-06-15T12:00:00.000000");
        let ts = parse_manifest_time("2024-06-15T12:00:00.5").unwrap();
        assert_eq!(ts.subsec_microsecond(), 500_000);
        for bad in [
            "2024-06-15 12:00:00",
            "2024-13-15T12:00:00",
            "2024-06-15T12:00:00.",
            "2024-06-15T12:00:00.1234567",
            "2024-6-15T12:00:00",
        ] {
            assert!(parse_manifest_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn version_quirks() {
        assert_eq!(BorgVersion::V1_2_4.list_message_width(), 40);
        assert_eq!(BorgVersion::new(1, 2, 9).list_message_width(), 44);
        assert_eq!(BorgVersion::V1_4_5.list_message_width(), 44);
        assert!(!BorgVersion::V1_2_4.has_quarterly_rules());
        assert!(!BorgVersion::new(1, 4, 0).has_quarterly_rules());
        assert!(BorgVersion::V1_4_5.has_quarterly_rules());
        assert!(BorgVersion::V1_2_4.has_oldest_fallback());
        assert!(!BorgVersion::new(1, 1, 18).has_oldest_fallback());
    }
}
