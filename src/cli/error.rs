//! The one place where library errors become a message and an exit code.

use super::exit::Outcome;

/// A failed command: the one-line message to print and how the process ends.
#[derive(Debug)]
pub struct CliError {
    /// What went wrong, one line, naming the thing that is wrong.
    pub message: String,
    /// Borg's severity and modern exit code.
    pub outcome: Outcome,
}

impl CliError {
    /// An error with borg's generic modern code 2.
    pub fn error(message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            outcome: Outcome::Error(2),
        }
    }

    /// An error with a specific modern code.
    pub fn with_code(message: impl Into<String>, code: u8) -> Self {
        CliError {
            message: message.into(),
            outcome: Outcome::Error(code),
        }
    }

    /// A command-line usage error (borg's CommandError, modern code 4).
    pub fn usage(message: impl Into<String>) -> Self {
        CliError::with_code(message, 4)
    }
}

impl From<rborg::repository::RepositoryError> for CliError {
    fn from(e: rborg::repository::RepositoryError) -> Self {
        let code = e.exit_code();
        CliError::with_code(e.to_string(), code.clamp(0, 255) as u8)
    }
}

impl From<rborg::commands::CommandError> for CliError {
    fn from(e: rborg::commands::CommandError) -> Self {
        let code = e.exit_code();
        CliError::with_code(e.to_string(), code.clamp(0, 255) as u8)
    }
}

impl From<rborg::ops::config::ConfigError> for CliError {
    fn from(e: rborg::ops::config::ConfigError) -> Self {
        CliError::error(e.to_string())
    }
}
