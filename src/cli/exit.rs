//! Exit codes, decided in one place.
//!
//! Borg's legacy codes are 0 (success), 1 (warning), 2 (error) and 128+N for signal N. Borg 1.4
//! with `BORG_EXIT_CODES=modern` gives each error and warning class its own code; rborg follows
//! that table for the errors it can raise.

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Everything went well.
    Success,
    /// The command finished but something deserves attention (borg's rc 1). Carries the
    /// modern-mode code.
    Warning(u8),
    /// The command failed (borg's rc 2). Carries the modern-mode code.
    Error(u8),
}

impl Outcome {
    /// The process exit code: legacy (0/1/2) unless `modern` is set.
    pub fn code(self, modern: bool) -> u8 {
        match (self, modern) {
            (Outcome::Success, _) => 0,
            (Outcome::Warning(_), false) => 1,
            (Outcome::Error(_), false) => 2,
            (Outcome::Warning(c), true) | (Outcome::Error(c), true) => c,
        }
    }

    /// The word `--show-rc` prints.
    pub fn status_word(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Warning(_) => "warning",
            Outcome::Error(_) => "error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_and_modern_codes() {
        assert_eq!(Outcome::Success.code(false), 0);
        assert_eq!(Outcome::Warning(107).code(false), 1);
        assert_eq!(Outcome::Warning(107).code(true), 107);
        assert_eq!(Outcome::Error(52).code(false), 2);
        assert_eq!(Outcome::Error(52).code(true), 52);
        assert!(Outcome::Error(2) > Outcome::Warning(1));
    }
}
