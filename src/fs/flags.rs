//! Linux inode flags as borg stores them in `bsdflags` (`platform/linux.pyx: get_flags,
//! set_flags`): only the flags with a BSD counterpart are kept, translated to BSD values.

use std::os::fd::{AsRawFd, BorrowedFd};

use super::FsError;

/// BSD `UF_NODUMP` (Linux `FS_NODUMP_FL`, `chattr +d`).
pub const UF_NODUMP: u32 = 0x1;
/// BSD `UF_IMMUTABLE` (Linux `FS_IMMUTABLE_FL`, `chattr +i`).
pub const UF_IMMUTABLE: u32 = 0x2;
/// BSD `UF_APPEND` (Linux `FS_APPEND_FL`, `chattr +a`).
pub const UF_APPEND: u32 = 0x4;
/// BSD `UF_COMPRESSED` (Linux `FS_COMPR_FL`); mapped by borg 1.2 only.
pub const UF_COMPRESSED: u32 = 0x20;

const FS_COMPR_FL: libc::c_int = 0x4;
const FS_IMMUTABLE_FL: libc::c_int = 0x10;
const FS_APPEND_FL: libc::c_int = 0x20;
const FS_NODUMP_FL: libc::c_int = 0x40;

/// Which borg's flag table to follow: 1.2 also maps the compression flag, and replaces all
/// flags on restore; 1.4 keeps the flags it does not know (`set_flags`, borg #9039).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlagsDialect {
    /// borg 1.2.
    Borg12,
    /// borg 1.4 (the default).
    #[default]
    Borg14,
}

fn table(dialect: FlagsDialect) -> &'static [(u32, libc::c_int)] {
    const T14: [(u32, libc::c_int); 3] = [
        (UF_NODUMP, FS_NODUMP_FL),
        (UF_IMMUTABLE, FS_IMMUTABLE_FL),
        (UF_APPEND, FS_APPEND_FL),
    ];
    const T12: [(u32, libc::c_int); 4] = [
        (UF_NODUMP, FS_NODUMP_FL),
        (UF_IMMUTABLE, FS_IMMUTABLE_FL),
        (UF_APPEND, FS_APPEND_FL),
        (UF_COMPRESSED, FS_COMPR_FL),
    ];
    match dialect {
        FlagsDialect::Borg12 => &T12,
        FlagsDialect::Borg14 => &T14,
    }
}

/// The raw Linux flags of an open file; `None` where the filesystem has none.
pub fn linux_flags(fd: BorrowedFd<'_>) -> Option<libc::c_int> {
    let mut flags: libc::c_int = 0;
    // SAFETY: the ioctl writes one int into `flags`.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) };
    (rc == 0).then_some(flags)
}

/// `get_flags` on an open file: the BSD form of its flags, 0 when the ioctl fails. Callers
/// skip devices and symlinks (borg never opens those for flags).
pub fn get_flags(fd: BorrowedFd<'_>, dialect: FlagsDialect) -> u32 {
    let Some(linux) = linux_flags(fd) else {
        return 0;
    };
    table(dialect)
        .iter()
        .filter(|(_, l)| linux & l != 0)
        .fold(0, |acc, (b, _)| acc | b)
}

/// `set_flags` on an open file. Filesystems without flags are ignored silently, as borg does.
pub fn set_flags(
    fd: BorrowedFd<'_>,
    bsd_flags: u32,
    dialect: FlagsDialect,
    name: &[u8],
) -> Result<(), FsError> {
    let wanted = table(dialect)
        .iter()
        .filter(|(b, _)| bsd_flags & b != 0)
        .fold(0, |acc, (_, l)| acc | l);
    let mut flags = match dialect {
        FlagsDialect::Borg12 => wanted,
        FlagsDialect::Borg14 => {
            let Some(current) = linux_flags(fd) else {
                return Ok(());
            };
            let mask = FS_NODUMP_FL | FS_IMMUTABLE_FL | FS_APPEND_FL;
            (current & !mask) | (wanted & mask)
        }
    };
    // SAFETY: the ioctl reads one int from `flags`.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FS_IOC_SETFLAGS, &mut flags) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        let ignored = match dialect {
            FlagsDialect::Borg12 => [libc::EOPNOTSUPP, libc::EOPNOTSUPP],
            FlagsDialect::Borg14 => [libc::EOPNOTSUPP, libc::ENOTTY],
        };
        if !e.raw_os_error().is_some_and(|c| ignored.contains(&c)) {
            return Err(FsError::new("set_flags", name, e));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn nodump_roundtrips_where_the_filesystem_has_flags() {
        let d = tempfile::tempdir().unwrap();
        let f = std::fs::File::create(d.path().join("f")).unwrap();
        if linux_flags(f.as_fd()).is_none() {
            eprintln!("filesystem without inode flags; only the no-op path is checked");
            assert_eq!(get_flags(f.as_fd(), FlagsDialect::Borg14), 0);
            return;
        }
        set_flags(f.as_fd(), UF_NODUMP, FlagsDialect::Borg14, b"f").unwrap();
        assert_eq!(get_flags(f.as_fd(), FlagsDialect::Borg14), UF_NODUMP);
        set_flags(f.as_fd(), 0, FlagsDialect::Borg14, b"f").unwrap();
        assert_eq!(get_flags(f.as_fd(), FlagsDialect::Borg14), 0);
    }
}
