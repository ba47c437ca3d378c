//! The filesystem side of `create` and `extract`: walking a tree in borg's order, turning each
//! filesystem object into the item dict borg would write (all keys but `chunks`/`size`), and
//! restoring an item's object and metadata on extract.
//!
//! The pieces, each named after the borg function whose behaviour it matches:
//!
//! * [`walk`]: `archiver.py: _rec_walk` and `helpers/fs.py: scandir_inorder, dir_is_tagged`;
//! * [`metadata`]: `archive.py: MetadataCollector` and the item-building half of
//!   `FilesystemObjectProcessors` (hardlink tracking, `--read-special`);
//! * [`xattr`], [`acl`], [`flags`]: `platform/linux.pyx` and `xattr.py`;
//! * [`names`]: `platform/posix.pyx: uid2user, gid2group, user2uid, group2gid`;
//! * [`path`]: `make_path_safe`, `get_strip_prefix`, `os.path.normpath` on bytes;
//! * [`restore`]: `archive.py: Archive.extract_item / restore_attrs` and the directory and
//!   `--strip-components` handling of `archiver.py: do_extract`.
//!
//! Linux only: everything goes through `libc` system calls on byte paths.

pub mod acl;
pub mod flags;
pub mod metadata;
pub mod names;
pub mod path;
pub mod restore;
pub mod stat;
pub mod walk;
pub mod xattr;

pub use metadata::{
    FileOpenMode, FsObjectProcessor, HardlinkTracker, ItemDraft, MetadataCollector, MetadataOptions,
};
pub use names::NameCache;
pub use restore::{ExtractedFile, Extractor, RestoreError, RestoreOptions};
pub use stat::{FileKind, Stat};
pub use walk::{Entry, EntryKind, VisitError, Visitor, WalkOptions, WalkWarning, Walker};

use std::ffi::CString;
use std::io;

/// A system call failure on one path, carried with the operation borg would name
/// (`stat`, `dir_open`, `scandir`, `open`, ...).
#[derive(Debug, thiserror::Error)]
#[error("{op}: {}", python_os_error(.source, .filename))]
pub struct FsError {
    /// The operation, as borg's `backup_io(op)` names it.
    pub op: &'static str,
    /// The name that was handed to the system call, for the message.
    pub filename: Vec<u8>,
    /// The error itself.
    #[source]
    pub source: io::Error,
}

impl FsError {
    /// Wraps the last OS error.
    pub fn last(op: &'static str, filename: &[u8]) -> FsError {
        FsError {
            op,
            filename: filename.to_vec(),
            source: io::Error::last_os_error(),
        }
    }

    /// Wraps an `io::Error`.
    pub fn new(op: &'static str, filename: &[u8], source: io::Error) -> FsError {
        FsError {
            op,
            filename: filename.to_vec(),
            source,
        }
    }

    /// The errno, if there is one.
    pub fn errno(&self) -> Option<i32> {
        self.source.raw_os_error()
    }
}

/// Python's `str(OSError)`: `[Errno 13] Permission denied: 'name'`.
fn python_os_error(e: &io::Error, filename: &[u8]) -> String {
    match e.raw_os_error() {
        Some(code) => {
            let msg = strerror(code);
            if filename.is_empty() {
                format!("[Errno {code}] {msg}")
            } else {
                format!("[Errno {code}] {msg}: {}", python_repr(filename))
            }
        }
        None => e.to_string(),
    }
}

/// The C library's message for an errno, as Python's `os.strerror` gives it.
pub fn strerror(code: i32) -> String {
    // SAFETY: strerror returns a pointer to a static or thread-local NUL-terminated string.
    let p = unsafe { libc::strerror(code) };
    if p.is_null() {
        return format!("Unknown error {code}");
    }
    // SAFETY: p is non-null and NUL-terminated (see above).
    unsafe { std::ffi::CStr::from_ptr(p) }
        .to_string_lossy()
        .into_owned()
}

/// Python's `repr()` of a surrogate-escaped path, close enough for messages.
fn python_repr(name: &[u8]) -> String {
    let s = display_path(name);
    if s.contains('\'') && !s.contains('"') {
        format!("\"{s}\"")
    } else {
        format!("'{}'", s.replace('\'', "\\'"))
    }
}

/// A path as borg prints it in `--list` lines and warnings (`remove_surrogates`): valid UTF-8
/// stays, every byte that is not part of a valid sequence becomes `?`.
pub fn display_path(path: &[u8]) -> String {
    let mut out = String::with_capacity(path.len());
    let mut rest = path;
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.push_str(s);
                return out;
            }
            Err(e) => {
                let good = e.valid_up_to();
                // SAFETY-free: the prefix was just validated.
                out.push_str(std::str::from_utf8(&rest[..good]).unwrap_or_default());
                // Python's surrogateescape turns each byte of the bad sequence into one
                // surrogate, which `remove_surrogates` prints as one `?`.
                let bad = e.error_len().unwrap_or(rest.len() - good);
                out.extend(std::iter::repeat('?').take(bad));
                rest = &rest[good + bad..];
            }
        }
    }
}

/// A byte path as a C string; a NUL byte inside is refused with `EINVAL`.
pub(crate) fn cstring(path: &[u8], op: &'static str) -> Result<CString, FsError> {
    CString::new(path.to_vec())
        .map_err(|_| FsError::new(op, path, io::Error::from_raw_os_error(libc::EINVAL)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_path_replaces_each_bad_byte() {
        assert_eq!(display_path(b"a/\xff\xfeb"), "a/??b");
        assert_eq!(display_path("ü".as_bytes()), "ü");
        assert_eq!(display_path(b"x\xe2\x82"), "x??");
    }

    #[test]
    fn os_error_message_is_pythons() {
        let e = FsError::new("dir_open", b"noperm", io::Error::from_raw_os_error(13));
        assert_eq!(
            e.to_string(),
            "dir_open: [Errno 13] Permission denied: 'noperm'"
        );
    }
}
