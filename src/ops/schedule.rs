//! When a consistency check is due: frequencies such as `"1 week"`, and the per-repository,
//! per-check state kept between runs.
//!
//! The state lives in one small JSON file per repository and check under a state directory
//! (`<state_dir>/checks/<repository key>/<check>.json`), like borgmatic's
//! `~/.local/state/borgmatic/checks/<repository id>/<check>`. Files are replaced atomically
//! (write to a temporary file in the same directory, fsync, rename), so a crash mid-write leaves
//! either the old or the new time, never a torn file.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What can go wrong with frequencies and check state.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// A frequency string that is not `always`, `disabled` or `<N> <unit>`.
    #[error("invalid frequency {0:?}: expected \"always\", \"disabled\" or \"<number> <unit>\" with unit hour, day, week, month or year")]
    BadFrequency(String),
    /// A weekday in `only_run_on` that is not a day name, `weekday` or `weekend`.
    #[error("invalid day {0:?} in only_run_on: expected a day name such as \"Sunday\", \"weekday\" or \"weekend\"")]
    BadDay(String),
    /// The state file could not be read or written.
    #[error("check state {path}: {source}")]
    Io {
        /// The state file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The state file exists but does not hold what we wrote.
    #[error("check state {path} is damaged: {reason}")]
    Damaged {
        /// The state file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// How often a check runs (borgmatic's `frequency`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frequency {
    /// On every run that includes the check action.
    Always,
    /// Never.
    Disabled,
    /// When at least this long has passed since the last successful run of the check.
    Every(Duration),
}

const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

impl Frequency {
    /// borgmatic's default frequency for the `repository` and `archives` checks.
    pub const MONTHLY: Frequency = Frequency::Every(Duration::from_secs(30 * DAY));

    /// Parses `"always"`, `"disabled"`, or `"<N> <unit>[s]"` with unit `hour`, `day`, `week`,
    /// `month` (30 days) or `year` (365 days), as borgmatic writes them.
    pub fn parse(text: &str) -> Result<Frequency, ScheduleError> {
        let bad = || ScheduleError::BadFrequency(text.to_string());
        let trimmed = text.trim().to_ascii_lowercase();
        match trimmed.as_str() {
            "always" => return Ok(Frequency::Always),
            "disabled" => return Ok(Frequency::Disabled),
            _ => {}
        }
        let mut words = trimmed.split_whitespace();
        let (Some(count), Some(unit), None) = (words.next(), words.next(), words.next()) else {
            return Err(bad());
        };
        let count: u64 = count.parse().map_err(|_| bad())?;
        let unit_seconds = match unit.strip_suffix('s').unwrap_or(unit) {
            "second" => 1,
            "minute" => 60,
            "hour" => HOUR,
            "day" => DAY,
            "week" => 7 * DAY,
            "month" => 30 * DAY,
            "year" => 365 * DAY,
            _ => return Err(bad()),
        };
        if count == 0 {
            return Err(bad());
        }
        let seconds = count.checked_mul(unit_seconds).ok_or_else(bad)?;
        Ok(Frequency::Every(Duration::from_secs(seconds)))
    }
}

impl fmt::Display for Frequency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Frequency::Always => f.write_str("always"),
            Frequency::Disabled => f.write_str("disabled"),
            Frequency::Every(d) => {
                let s = d.as_secs();
                let (n, unit) = if s % (7 * DAY) == 0 {
                    (s / (7 * DAY), "week")
                } else if s % DAY == 0 {
                    (s / DAY, "day")
                } else if s % HOUR == 0 {
                    (s / HOUR, "hour")
                } else {
                    (s, "second")
                };
                write!(f, "{n} {unit}{}", if n == 1 { "" } else { "s" })
            }
        }
    }
}

impl TryFrom<String> for Frequency {
    type Error = ScheduleError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Frequency::parse(&value)
    }
}

impl<'de> Deserialize<'de> for Frequency {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Frequency::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Frequency {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A set of weekdays (borgmatic's `only_run_on`), Monday = bit 0 … Sunday = bit 6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Weekdays(u8);

impl Weekdays {
    /// Every day.
    pub const ALL: Weekdays = Weekdays(0x7f);

    /// Parses day names (`Monday`, `mon`, …), `weekday` and `weekend`, case-insensitively.
    pub fn parse<S: AsRef<str>>(days: &[S]) -> Result<Weekdays, ScheduleError> {
        let mut bits = 0u8;
        for day in days {
            let d = day.as_ref().trim().to_ascii_lowercase();
            bits |= match d.as_str() {
                "weekday" => 0x1f,
                "weekend" => 0x60,
                _ => {
                    const NAMES: [&str; 7] = [
                        "monday",
                        "tuesday",
                        "wednesday",
                        "thursday",
                        "friday",
                        "saturday",
                        "sunday",
                    ];
                    let index = NAMES
                        .iter()
                        .position(|n| d.len() >= 3 && n.starts_with(&d))
                        .ok_or_else(|| ScheduleError::BadDay(day.as_ref().to_string()))?;
                    1 << index
                }
            };
        }
        Ok(Weekdays(bits))
    }

    /// Whether the UTC day of `now` is in the set (an empty set means every day).
    pub fn contains(&self, now: SystemTime) -> bool {
        if self.0 == 0 {
            return true;
        }
        let days = unix_seconds(now) / DAY;
        // 1970-01-01 was a Thursday (index 3 with Monday = 0).
        let index = (days + 3) % 7;
        self.0 & (1 << index) != 0
    }
}

/// Seconds since the epoch, 0 for times before it.
pub fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What the state file holds.
#[derive(Debug, Serialize, Deserialize)]
struct CheckRecord {
    repository: String,
    check: String,
    last_run_unix: u64,
}

/// The saved time of the last successful run of one check on one repository.
#[derive(Debug, Clone)]
pub struct CheckState {
    path: PathBuf,
    repository: String,
    check: String,
}

impl CheckState {
    /// The state of `check` on `repository` (its configured path) under `state_dir`.
    ///
    /// The repository path is hashed into the directory name so any path (with slashes, `ssh://`
    /// and ports) maps to one safe file name.
    pub fn new(state_dir: &Path, repository: &str, check: &str) -> CheckState {
        let digest = Sha256::digest(repository.as_bytes());
        let key = hex::encode(&digest[..16]);
        CheckState {
            path: state_dir
                .join("checks")
                .join(key)
                .join(format!("{check}.json")),
            repository: repository.to_string(),
            check: check.to_string(),
        }
    }

    /// The file that holds the state.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// When the check last succeeded, or `None` if it never ran.
    pub fn last_run(&self) -> Result<Option<SystemTime>, ScheduleError> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(ScheduleError::Io {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        let record: CheckRecord =
            serde_json::from_slice(&bytes).map_err(|e| ScheduleError::Damaged {
                path: self.path.clone(),
                reason: e.to_string(),
            })?;
        Ok(Some(UNIX_EPOCH + Duration::from_secs(record.last_run_unix)))
    }

    /// Whether the check should run at `now` given its frequency and allowed days.
    ///
    /// `Always` is due every time, `Disabled` never; `Every(d)` is due when the check never ran,
    /// when at least `d` passed since it last succeeded, or when the saved time lies in the future
    /// (a clock that jumped back must not silence checks for months).
    pub fn due(
        &self,
        frequency: Frequency,
        only_run_on: Weekdays,
        now: SystemTime,
    ) -> Result<bool, ScheduleError> {
        if !only_run_on.contains(now) {
            return Ok(false);
        }
        match frequency {
            Frequency::Always => Ok(true),
            Frequency::Disabled => Ok(false),
            Frequency::Every(interval) => match self.last_run()? {
                None => Ok(true),
                Some(last) => match now.duration_since(last) {
                    Ok(elapsed) => Ok(elapsed >= interval),
                    Err(_) => Ok(true),
                },
            },
        }
    }

    /// Saves `now` as the time of the last successful run, atomically.
    pub fn record(&self, now: SystemTime) -> Result<(), ScheduleError> {
        let record = CheckRecord {
            repository: self.repository.clone(),
            check: self.check.clone(),
            last_run_unix: unix_seconds(now),
        };
        let io = |source| ScheduleError::Io {
            path: self.path.clone(),
            source,
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(io)?;
        let tmp = dir.join(format!(".{}.tmp.{}", self.check, std::process::id()));
        let body = serde_json::to_vec(&record).map_err(|e| ScheduleError::Damaged {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        let write = || -> std::io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&body)?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            fs::rename(&tmp, &self.path)?;
            // Make the rename itself durable.
            fs::File::open(dir)?.sync_all()
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io(e)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_borgmatic_frequencies() {
        assert_eq!(Frequency::parse("always").unwrap(), Frequency::Always);
        assert_eq!(Frequency::parse("disabled").unwrap(), Frequency::Disabled);
        assert_eq!(
            Frequency::parse("1 week").unwrap(),
            Frequency::Every(Duration::from_secs(7 * DAY))
        );
        assert_eq!(
            Frequency::parse("2 days").unwrap(),
            Frequency::Every(Duration::from_secs(2 * DAY))
        );
        assert_eq!(
            Frequency::parse("3 Hours").unwrap(),
            Frequency::Every(Duration::from_secs(3 * HOUR))
        );
        assert_eq!(Frequency::parse("1 month").unwrap(), Frequency::MONTHLY);
        for bad in [
            "",
            "week",
            "1",
            "1 fortnight",
            "x days",
            "0 days",
            "1 week later",
        ] {
            assert!(Frequency::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(Frequency::parse("2 weeks").unwrap().to_string(), "2 weeks");
        assert_eq!(Frequency::parse("1 week").unwrap().to_string(), "1 week");
        assert_eq!(
            Frequency::parse("36 hours").unwrap().to_string(),
            "36 hours"
        );
    }

    #[test]
    fn due_and_record_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let state = CheckState::new(dir.path(), "ssh://nas/./backups/host", "data");
        let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let week = Frequency::parse("1 week").unwrap();
        assert!(state.due(week, Weekdays::ALL, t0).unwrap(), "never ran");
        state.record(t0).unwrap();
        assert_eq!(state.last_run().unwrap(), Some(t0));
        let almost = t0 + Duration::from_secs(7 * DAY - 1);
        assert!(!state.due(week, Weekdays::ALL, almost).unwrap());
        assert!(state
            .due(week, Weekdays::ALL, t0 + Duration::from_secs(7 * DAY))
            .unwrap());
        assert!(state.due(Frequency::Always, Weekdays::ALL, t0).unwrap());
        assert!(!state.due(Frequency::Disabled, Weekdays::ALL, t0).unwrap());
        // A clock that went backwards makes the check due rather than silencing it.
        assert!(state
            .due(week, Weekdays::ALL, t0 - Duration::from_secs(10))
            .unwrap());
        // No temporary file is left behind.
        let files: Vec<_> = fs::read_dir(state.path().parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(files, vec![std::ffi::OsString::from("data.json")]);
        // Another check on the same repository has its own state.
        let other = CheckState::new(dir.path(), "ssh://nas/./backups/host", "repository");
        assert_eq!(other.last_run().unwrap(), None);
    }

    #[test]
    fn damaged_state_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let state = CheckState::new(dir.path(), "/r", "archives");
        fs::create_dir_all(state.path().parent().unwrap()).unwrap();
        fs::write(state.path(), b"{not json").unwrap();
        let err = state.last_run().unwrap_err().to_string();
        assert!(err.contains("damaged"), "{err}");
    }

    #[test]
    fn weekdays() {
        // 2023-11-12 was a Sunday.
        let sunday = UNIX_EPOCH + Duration::from_secs(1_699_790_400);
        let only_sunday = Weekdays::parse(&["Sunday"]).unwrap();
        assert!(only_sunday.contains(sunday));
        assert!(!only_sunday.contains(sunday + Duration::from_secs(DAY)));
        assert!(Weekdays::parse(&["weekend"]).unwrap().contains(sunday));
        assert!(!Weekdays::parse(&["weekday"]).unwrap().contains(sunday));
        assert!(Weekdays::parse(&["mon", "TUE"]).is_ok());
        assert!(Weekdays::parse(&["someday"]).is_err());
        assert!(Weekdays::default().contains(sunday));
    }
}
