//! Local time and the period each prune rule groups archives by.
//!
//! borg converts an archive's UTC time to the process's local time (`helpers/time.py:
//! to_localtime`, i.e. C `localtime()` honouring `TZ`, seconds floored, microseconds dropped)
//! and groups by strftime keys (`helpers/misc.py:PRUNING_PATTERNS`). Here the zone is a value
//! passed in, so one process can compute periods for any zone.

use jiff::tz::TimeZone;
use jiff::Timestamp;

use super::{PruneError, Rule};

/// The time zone prune's periods and `--list` times are computed in.
#[derive(Debug, Clone)]
pub struct LocalZone {
    tz: TimeZone,
}

impl LocalZone {
    /// UTC.
    pub fn utc() -> Self {
        LocalZone { tz: TimeZone::UTC }
    }

    /// An IANA zone by name, e.g. `Europe/Berlin`.
    pub fn named(name: &str) -> Result<Self, PruneError> {
        TimeZone::get(name)
            .map(|tz| LocalZone { tz })
            .map_err(|_| PruneError::BadTimeZone(name.to_string()))
    }

    /// The zone C's `localtime()` would use for the given value of the `TZ` environment
    /// variable (read by the caller): unset means the system zone (`/etc/localtime`); a leading
    /// `:` is ignored; a zone name, an absolute TZif path or a POSIX TZ string are accepted;
    /// empty or unknown values mean UTC, as glibc treats them.
    pub fn from_tz_value(tz_value: Option<&str>) -> Self {
        let Some(value) = tz_value else {
            return TimeZone::try_system()
                .map(|tz| LocalZone { tz })
                .unwrap_or_else(|_| LocalZone::utc());
        };
        let value = value.strip_prefix(':').unwrap_or(value);
        if value.is_empty() {
            return LocalZone::utc();
        }
        if value.starts_with('/') {
            if let Ok(data) = std::fs::read(value) {
                if let Ok(tz) = TimeZone::tzif(value, &data) {
                    return LocalZone { tz };
                }
            }
            return LocalZone::utc();
        }
        if let Ok(tz) = TimeZone::get(value) {
            return LocalZone { tz };
        }
        if let Ok(tz) = TimeZone::posix(value) {
            return LocalZone { tz };
        }
        log::warn!("unknown time zone TZ={value:?}, using UTC as the C library does");
        LocalZone::utc()
    }

    /// `ts` in this zone, as borg's `to_localtime` gives it (whole seconds).
    pub fn local_time(&self, ts: Timestamp) -> LocalTime {
        let dt = self.tz.to_datetime(ts);
        let iso = dt.date().iso_week_date();
        LocalTime {
            year: i32::from(dt.year()),
            month: i32::from(dt.month()),
            day: i32::from(dt.day()),
            hour: i32::from(dt.hour()),
            minute: i32::from(dt.minute()),
            second: i32::from(dt.second()),
            weekday: dt.weekday().to_monday_zero_offset(),
            iso_year: i32::from(iso.year()),
            iso_week: i32::from(iso.week()),
        }
    }
}

/// A local wall-clock time broken into the fields prune needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTime {
    /// Calendar year (`%Y`).
    pub year: i32,
    /// Month 1..=12.
    pub month: i32,
    /// Day of month 1..=31.
    pub day: i32,
    /// Hour 0..=23.
    pub hour: i32,
    /// Minute 0..=59.
    pub minute: i32,
    /// Second 0..=59.
    pub second: i32,
    /// Day of week, Monday = 0.
    pub weekday: i8,
    /// ISO 8601 week-numbering year (`%G`).
    pub iso_year: i32,
    /// ISO 8601 week 1..=53 (`%V`).
    pub iso_week: i32,
}

impl LocalTime {
    /// borg's `format_time`: `%a, %Y-%m-%d %H:%M:%S` (C locale day names).
    pub fn format_borg(&self) -> String {
        const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
        let day_name = DAYS[usize::from(self.weekday.unsigned_abs()) % 7];
        format!(
            "{day_name}, {:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

/// The period an archive falls in for one rule; archives with equal periods compete for one
/// slot. Only compared within the same rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Period([i32; 6]);

/// The period of local time `t` for `rule`, matching borg's strftime keys and the quarterly
/// functions of 1.4 (`quarterly_13weekly_period_func`, `quarterly_3monthly_period_func`).
/// [`Rule::Within`] has no period; it gets the exact second (never used by the engine).
pub fn period(rule: Rule, t: &LocalTime) -> Period {
    let k = match rule {
        Rule::Within | Rule::Secondly => [t.year, t.month, t.day, t.hour, t.minute, t.second],
        Rule::Minutely => [t.year, t.month, t.day, t.hour, t.minute, 0],
        Rule::Hourly => [t.year, t.month, t.day, t.hour, 0, 0],
        Rule::Daily => [t.year, t.month, t.day, 0, 0, 0],
        Rule::Weekly => [t.iso_year, t.iso_week, 0, 0, 0, 0],
        Rule::Monthly => [t.year, t.month, 0, 0, 0, 0],
        // 13 ISO weeks per quarter; week 53 belongs to the 4th.
        Rule::Quarterly13Weekly => [t.iso_year, ((t.iso_week - 1) / 13 + 1).min(4), 0, 0, 0, 0],
        Rule::Quarterly3Monthly => [t.year, (t.month - 1) / 3 + 1, 0, 0, 0, 0],
        Rule::Yearly => [t.year, 0, 0, 0, 0, 0],
    };
    Period(k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prune::parse_manifest_time;

    fn lt(zone: &LocalZone, utc: &str) -> LocalTime {
        zone.local_time(parse_manifest_time(utc).unwrap())
    }

    #[test]
    fn iso_week_edges() {
        let utc = LocalZone::utc();
        // 2024-12-30 (Mon) and 2024-12-31 are in ISO week 2025-W01.
        let t = lt(&utc, "2024-12-31T12:00:00");
        assert_eq!((t.iso_year, t.iso_week, t.year), (2025, 1, 2024));
        let t = lt(&utc, "2024-12-29T23:59:59");
        assert_eq!((t.iso_year, t.iso_week), (2024, 52));
        // 2021-01-03 (Sun) is still in 2020-W53.
        let t = lt(&utc, "2021-01-03T12:00:00");
        assert_eq!((t.iso_year, t.iso_week, t.year), (2020, 53, 2021));
        assert_eq!(
            period(Rule::Quarterly13Weekly, &t),
            Period([2020, 4, 0, 0, 0, 0])
        );
        let t = lt(&utc, "2021-01-04T00:00:00");
        assert_eq!((t.iso_year, t.iso_week), (2021, 1));
        assert_eq!(
            period(Rule::Quarterly13Weekly, &t),
            Period([2021, 1, 0, 0, 0, 0])
        );
    }

    #[test]
    fn quarter_boundaries() {
        let utc = LocalZone::utc();
        let q = |s: &str, rule| period(rule, &lt(&utc, s)).0[..2].to_vec();
        // week 13 is Q1, week 14 is Q2
        assert_eq!(q("2025-03-24T00:00:00", Rule::Quarterly13Weekly), [2025, 1]); // W13
        assert_eq!(q("2025-03-31T00:00:00", Rule::Quarterly13Weekly), [2025, 2]); // W14
        assert_eq!(q("2025-06-23T00:00:00", Rule::Quarterly13Weekly), [2025, 2]); // W26
        assert_eq!(q("2025-06-30T00:00:00", Rule::Quarterly13Weekly), [2025, 3]); // W27
        assert_eq!(q("2025-09-22T00:00:00", Rule::Quarterly13Weekly), [2025, 3]); // W39
        assert_eq!(q("2025-09-29T00:00:00", Rule::Quarterly13Weekly), [2025, 4]); // W40
        assert_eq!(q("2025-03-31T23:59:59", Rule::Quarterly3Monthly), [2025, 1]);
        assert_eq!(q("2025-04-01T00:00:00", Rule::Quarterly3Monthly), [2025, 2]);
        assert_eq!(q("2025-12-31T00:00:00", Rule::Quarterly3Monthly), [2025, 4]);
    }

    #[test]
    fn local_time_follows_the_zone_and_dst() {
        let berlin = LocalZone::named("Europe/Berlin").unwrap();
        // winter: UTC+1, summer: UTC+2; 2024-10-27 01:00 UTC leaves DST.
        let t = lt(&berlin, "2024-01-15T23:30:00");
        assert_eq!((t.day, t.hour), (16, 0));
        let a = lt(&berlin, "2024-10-27T00:30:00");
        let b = lt(&berlin, "2024-10-27T01:30:00");
        assert_eq!((a.hour, a.minute), (2, 30));
        assert_eq!((b.hour, b.minute), (2, 30));
        assert_eq!(period(Rule::Hourly, &a), period(Rule::Hourly, &b));
        assert_eq!(a.format_borg(), "Sun, 2024-10-27 02:30:00");
        // microseconds are dropped, not rounded
        let t = lt(&LocalZone::utc(), "2024-01-01T00:00:59.999999");
        assert_eq!(t.second, 59);
    }

    #[test]
    fn tz_values() {
        let ts = parse_manifest_time("2024-07-01T12:00:00").unwrap();
        let hour = |v: Option<&str>| LocalZone::from_tz_value(v).local_time(ts).hour;
        assert_eq!(hour(Some("UTC")), 12);
        assert_eq!(hour(Some("Europe/Berlin")), 14);
        assert_eq!(hour(Some(":Europe/Berlin")), 14);
        assert_eq!(hour(Some("/usr/share/zoneinfo/Europe/Berlin")), 14);
        assert_eq!(hour(Some("EST5EDT,M3.2.0,M11.1.0")), 8);
        assert_eq!(hour(Some("")), 12);
        assert_eq!(hour(Some("No/Such_Zone")), 12);
    }
}
