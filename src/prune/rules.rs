//! The retention rules of `borg prune` (`--keep-within`, `--keep-last`, `--keep-daily`, ...), and
//! parsing of their values as borg's argparse setup does it.

use super::{BorgVersion, PruneError};

/// One retention rule. The order of the variants is the order borg applies them in
/// (`within` first, then `helpers/misc.py:PRUNING_PATTERNS` in order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    /// `--keep-within INTERVAL`.
    Within,
    /// `--keep-last N` / `--keep-secondly N` (one option under two names in borg).
    Secondly,
    /// `--keep-minutely N`.
    Minutely,
    /// `-H/--keep-hourly N`.
    Hourly,
    /// `-d/--keep-daily N`.
    Daily,
    /// `-w/--keep-weekly N` (ISO weeks).
    Weekly,
    /// `-m/--keep-monthly N`.
    Monthly,
    /// `--keep-13weekly N` (borg 1.4.1+): quarters of 13 ISO weeks.
    Quarterly13Weekly,
    /// `--keep-3monthly N` (borg 1.4.1+): calendar quarters.
    Quarterly3Monthly,
    /// `-y/--keep-yearly N`.
    Yearly,
}

impl Rule {
    /// The period rules in the order `do_prune` runs them (all but [`Rule::Within`]).
    pub const PERIOD_RULES: [Rule; 9] = [
        Rule::Secondly,
        Rule::Minutely,
        Rule::Hourly,
        Rule::Daily,
        Rule::Weekly,
        Rule::Monthly,
        Rule::Quarterly13Weekly,
        Rule::Quarterly3Monthly,
        Rule::Yearly,
    ];

    /// The rule's name as borg prints it in `Keeping archive (rule: NAME #n):`.
    pub fn name(self) -> &'static str {
        match self {
            Rule::Within => "within",
            Rule::Secondly => "secondly",
            Rule::Minutely => "minutely",
            Rule::Hourly => "hourly",
            Rule::Daily => "daily",
            Rule::Weekly => "weekly",
            Rule::Monthly => "monthly",
            Rule::Quarterly13Weekly => "quarterly_13weekly",
            Rule::Quarterly3Monthly => "quarterly_3monthly",
            Rule::Yearly => "yearly",
        }
    }
}

/// The `--keep-*` options of one prune run.
///
/// Counts follow borg: 0 means the rule is not used, a negative count means "no limit".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneRules {
    /// `--keep-within`, in hours (see [`parse_interval`]).
    pub within_hours: Option<u64>,
    /// `--keep-last` / `--keep-secondly`.
    pub secondly: i64,
    /// `--keep-minutely`.
    pub minutely: i64,
    /// `--keep-hourly`.
    pub hourly: i64,
    /// `--keep-daily`.
    pub daily: i64,
    /// `--keep-weekly`.
    pub weekly: i64,
    /// `--keep-monthly`.
    pub monthly: i64,
    /// `--keep-13weekly` (1.4.1+).
    pub quarterly_13weekly: i64,
    /// `--keep-3monthly` (1.4.1+).
    pub quarterly_3monthly: i64,
    /// `--keep-yearly`.
    pub yearly: i64,
}

impl PruneRules {
    /// The count given for a period rule (0 = not used). [`Rule::Within`] has no count: 0.
    pub fn count(&self, rule: Rule) -> i64 {
        match rule {
            Rule::Within => 0,
            Rule::Secondly => self.secondly,
            Rule::Minutely => self.minutely,
            Rule::Hourly => self.hourly,
            Rule::Daily => self.daily,
            Rule::Weekly => self.weekly,
            Rule::Monthly => self.monthly,
            Rule::Quarterly13Weekly => self.quarterly_13weekly,
            Rule::Quarterly3Monthly => self.quarterly_3monthly,
            Rule::Yearly => self.yearly,
        }
    }

    /// Check the rules as borg does before pruning: at least one rule must be given (borg's
    /// exact message for `version`), the quarterly rules exclude each other and need 1.4.1+.
    pub fn check(&self, version: BorgVersion) -> Result<(), PruneError> {
        if self.quarterly_13weekly != 0 || self.quarterly_3monthly != 0 {
            if !version.has_quarterly_rules() {
                return Err(PruneError::QuarterlyUnsupported(version));
            }
            if self.quarterly_13weekly != 0 && self.quarterly_3monthly != 0 {
                return Err(PruneError::QuarterlyConflict);
            }
        }
        let any_rule = self.within_hours.is_some_and(|h| h > 0)
            || Rule::PERIOD_RULES.iter().any(|r| self.count(*r) != 0);
        if !any_rule {
            return Err(PruneError::NoRule(no_rule_message(version).to_string()));
        }
        Ok(())
    }
}

/// borg's error text when no rule is given (`do_prune`); 1.4.1+ also names the quarterly rules.
pub fn no_rule_message(version: BorgVersion) -> &'static str {
    if version.has_quarterly_rules() {
        "At least one of the \"keep-within\", \"keep-last\", \"keep-secondly\", \"keep-minutely\", \
         \"keep-hourly\", \"keep-daily\", \"keep-weekly\", \"keep-monthly\", \"keep-13weekly\", \
         \"keep-3monthly\", or \"keep-yearly\" settings must be specified."
    } else {
        "At least one of the \"keep-within\", \"keep-last\", \"keep-secondly\", \"keep-minutely\", \
         \"keep-hourly\", \"keep-daily\", \"keep-weekly\", \"keep-monthly\" or \"keep-yearly\" \
         settings must be specified."
    }
}

/// Parse an integer as Python's `int(str)` does for ASCII input: surrounding whitespace, an
/// optional sign, and single `_` between digits are allowed.
fn python_int(text: &str) -> Option<i128> {
    let t = text.trim();
    let (negative, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty() || digits.starts_with('_') || digits.ends_with('_') {
        return None;
    }
    let mut value: i128 = 0;
    let mut previous_underscore = false;
    for c in digits.chars() {
        if c == '_' {
            if previous_underscore {
                return None;
            }
            previous_underscore = true;
            continue;
        }
        previous_underscore = false;
        let d = c.to_digit(10)?;
        value = value.checked_mul(10)?.checked_add(i128::from(d))?;
    }
    Some(if negative { -value } else { value })
}

/// Parse a `--keep-*` count (`type=int` in borg's argparser).
pub fn parse_keep_count(text: &str) -> Result<i64, PruneError> {
    python_int(text)
        .and_then(|v| i64::try_from(v).ok())
        .ok_or_else(|| PruneError::BadCount(text.to_string()))
}

/// Parse a `--keep-within` interval into hours, as `helpers/parseformat.py:interval` does:
/// `<int><unit>` with unit `H` (hour), `d` (24 h), `w` (7 d), `m` (31 d) or `y` (365 d); the
/// result must be greater than 0. Error texts are borg's.
pub fn parse_interval(text: &str) -> Result<u64, PruneError> {
    let Some(unit) = text.chars().last() else {
        // borg fails on the empty string before its own checks; argparse reports it like this.
        return Err(PruneError::BadInterval(
            "invalid interval value: ''".to_string(),
        ));
    };
    let multiplier: i128 = match unit {
        'H' => 1,
        'd' => 24,
        'w' => 24 * 7,
        'm' => 24 * 31,
        'y' => 24 * 365,
        other => {
            return Err(PruneError::BadInterval(format!(
            "Unexpected interval time unit \"{other}\": expected one of ['H', 'd', 'w', 'm', 'y']"
        )))
        }
    };
    let number = &text[..text.len() - unit.len_utf8()];
    let hours = python_int(number).map_or(-1, |n| n.saturating_mul(multiplier));
    if hours <= 0 {
        return Err(PruneError::BadInterval(format!(
            "Unexpected interval number \"{number}\": expected an integer greater than 0"
        )));
    }
    u64::try_from(hours)
        .map_err(|_| PruneError::BadInterval(format!("interval {text:?} is too large")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("1H"), Ok(1));
        assert_eq!(parse_interval("2d"), Ok(48));
        assert_eq!(parse_interval("3w"), Ok(3 * 7 * 24));
        assert_eq!(parse_interval("4m"), Ok(4 * 31 * 24));
        assert_eq!(parse_interval("5y"), Ok(5 * 365 * 24));
        assert_eq!(parse_interval(" 1_0d"), Ok(240));
        assert_eq!(parse_interval("+2H"), Ok(2));
    }

    #[test]
    fn interval_errors_use_borgs_text() {
        assert_eq!(
            parse_interval("5x").unwrap_err().to_string(),
            "Unexpected interval time unit \"x\": expected one of ['H', 'd', 'w', 'm', 'y']"
        );
        assert_eq!(
            parse_interval("5h").unwrap_err().to_string(),
            "Unexpected interval time unit \"h\": expected one of ['H', 'd', 'w', 'm', 'y']"
        );
        assert_eq!(
            parse_interval("0d").unwrap_err().to_string(),
            "Unexpected interval number \"0\": expected an integer greater than 0"
        );
        assert_eq!(
            parse_interval("-1d").unwrap_err().to_string(),
            "Unexpected interval number \"-1\": expected an integer greater than 0"
        );
        assert_eq!(
            parse_interval("d").unwrap_err().to_string(),
            "Unexpected interval number \"\": expected an integer greater than 0"
        );
        assert_eq!(
            parse_interval("1.5d").unwrap_err().to_string(),
            "Unexpected interval number \"1.5\": expected an integer greater than 0"
        );
        assert!(parse_interval("").is_err());
    }

    #[test]
    fn keep_counts() {
        assert_eq!(parse_keep_count("7"), Ok(7));
        assert_eq!(parse_keep_count("-1"), Ok(-1));
        assert_eq!(parse_keep_count(" 1_000 "), Ok(1000));
        assert_eq!(parse_keep_count("0"), Ok(0));
        for bad in ["", "x", "1__0", "_1", "1_", "1.0", "--1"] {
            assert_eq!(
                parse_keep_count(bad),
                Err(PruneError::BadCount(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn no_rule_is_an_error_with_borgs_message() {
        let rules = PruneRules::default();
        assert_eq!(
            rules.check(BorgVersion::V1_2_4).unwrap_err().to_string(),
            "At least one of the \"keep-within\", \"keep-last\", \"keep-secondly\", \
             \"keep-minutely\", \"keep-hourly\", \"keep-daily\", \"keep-weekly\", \
             \"keep-monthly\" or \"keep-yearly\" settings must be specified."
        );
        assert_eq!(
            rules.check(BorgVersion::V1_4_5).unwrap_err().to_string(),
            "At least one of the \"keep-within\", \"keep-last\", \"keep-secondly\", \
             \"keep-minutely\", \"keep-hourly\", \"keep-daily\", \"keep-weekly\", \
             \"keep-monthly\", \"keep-13weekly\", \"keep-3monthly\", or \"keep-yearly\" \
             settings must be specified."
        );
        // A negative count is a rule (unlimited), as in borg's any(...) check.
        let rules = PruneRules {
            daily: -1,
            ..PruneRules::default()
        };
        assert_eq!(rules.check(BorgVersion::V1_2_4), Ok(()));
        let rules = PruneRules {
            within_hours: Some(1),
            ..PruneRules::default()
        };
        assert_eq!(rules.check(BorgVersion::V1_2_4), Ok(()));
    }

    #[test]
    fn quarterly_rules_checks() {
        let both = PruneRules {
            quarterly_13weekly: 1,
            quarterly_3monthly: 1,
            ..PruneRules::default()
        };
        assert_eq!(
            both.check(BorgVersion::V1_4_5),
            Err(PruneError::QuarterlyConflict)
        );
        let one = PruneRules {
            quarterly_3monthly: 2,
            ..PruneRules::default()
        };
        assert_eq!(one.check(BorgVersion::V1_4_5), Ok(()));
        assert_eq!(
            one.check(BorgVersion::V1_2_4),
            Err(PruneError::QuarterlyUnsupported(BorgVersion::V1_2_4))
        );
    }
}
