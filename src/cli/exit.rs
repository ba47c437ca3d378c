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

    /// The `msgid` borg's `--log-json` gives the message of an error or warning with this
    /// outcome: the name of borg's exception class for the modern code. `None` for success and
    /// for the plain codes 1 and 2, which no single class owns.
    pub fn msgid(self) -> Option<&'static str> {
        match self {
            Outcome::Success => None,
            Outcome::Warning(c) | Outcome::Error(c) => class_name(c),
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

/// borg 1.4's exception class (its `__qualname__`) for a modern exit code.
pub fn class_name(code: u8) -> Option<&'static str> {
    Some(match code {
        3 => "CancelledByUser",
        4 => "CommandError",
        5 => "PlaceholderError",
        6 => "InvalidPlaceholder",
        10 => "Repository.AlreadyExists",
        11 => "Repository.AtticRepository",
        12 => "Repository.CheckNeeded",
        13 => "Repository.DoesNotExist",
        14 => "Repository.InsufficientFreeSpaceError",
        15 => "Repository.InvalidRepository",
        16 => "Repository.InvalidRepositoryConfig",
        17 => "Repository.ObjectNotFound",
        18 => "Repository.ParentPathDoesNotExist",
        19 => "Repository.PathAlreadyExists",
        20 => "Repository.StorageQuotaExceeded",
        21 => "Repository.PathPermissionDenied",
        25 => "MandatoryFeatureUnsupported",
        26 => "NoManifestError",
        27 => "UnsupportedManifestError",
        30 => "Archive.AlreadyExists",
        31 => "Archive.DoesNotExist",
        32 => "Archive.IncompatibleFilesystemEncodingError",
        40 => "KeyfileInvalidError",
        41 => "KeyfileMismatchError",
        42 => "KeyfileNotFoundError",
        43 => "NotABorgKeyFile",
        44 => "RepoKeyNotFoundError",
        45 => "RepoIdMismatch",
        46 => "UnencryptedRepo",
        47 => "UnknownKeyType",
        48 => "UnsupportedPayloadError",
        50 => "NoPassphraseFailure",
        51 => "PasscommandFailure",
        52 => "PassphraseWrong",
        53 => "PasswordRetriesExceeded",
        60 => "Cache.CacheInitAbortedError",
        61 => "Cache.EncryptionMethodMismatch",
        62 => "Cache.RepositoryAccessAborted",
        63 => "Cache.RepositoryIDNotUnique",
        64 => "Cache.RepositoryReplay",
        70 => "LockError",
        71 => "LockErrorT",
        72 => "LockFailed",
        73 => "LockTimeout",
        74 => "NotLocked",
        75 => "NotMyLock",
        80 => "ConnectionClosed",
        81 => "ConnectionClosedWithHint",
        82 => "InvalidRPCMethod",
        83 => "PathNotAllowed",
        84 => "RemoteRepository.RPCServerOutdated",
        85 => "UnexpectedRPCDataFormatFromClient",
        86 => "UnexpectedRPCDataFormatFromServer",
        87 => "ConnectionBrokenWithHint",
        90 => "IntegrityError",
        91 => "FileIntegrityError",
        92 => "DecompressionError",
        95 => "ArchiveTAMInvalid",
        96 => "ArchiveTAMRequiredError",
        97 => "TAMInvalid",
        98 => "TAMRequiredError",
        99 => "TAMUnsupportedSuiteError",
        100 => "FileChangedWarning",
        101 => "IncludePatternNeverMatchedWarning",
        102 => "BackupError",
        103 => "BackupRaceConditionError",
        104 => "BackupOSError",
        105 => "BackupPermissionError",
        106 => "BackupIOError",
        107 => "BackupFileNotFoundError",
        108 => "BackupSymlinkParentError",
        109 => "BackupPathTraversalError",
        110 => "BackupHardlinkSourceError",
        _ => return None,
    })
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

    #[test]
    fn msgids_are_borg_class_names() {
        assert_eq!(Outcome::Error(13).msgid(), Some("Repository.DoesNotExist"));
        assert_eq!(Outcome::Error(52).msgid(), Some("PassphraseWrong"));
        assert_eq!(Outcome::Warning(100).msgid(), Some("FileChangedWarning"));
        assert_eq!(Outcome::Error(2).msgid(), None);
        assert_eq!(Outcome::Warning(1).msgid(), None);
        assert_eq!(Outcome::Success.msgid(), None);
    }
}
