//! `lstat`/`fstat` results with nanosecond times.

use std::os::fd::{AsRawFd, BorrowedFd};

use super::{cstring, FsError};

/// The file type bits of `st_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A regular file.
    Regular,
    /// A directory.
    Directory,
    /// A symbolic link.
    Symlink,
    /// A named pipe.
    Fifo,
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A unix socket (borg skips these).
    Socket,
    /// Anything else.
    Unknown,
}

impl FileKind {
    /// The kind encoded in a full `st_mode`.
    pub fn from_mode(mode: u32) -> FileKind {
        match mode & libc::S_IFMT {
            libc::S_IFREG => FileKind::Regular,
            libc::S_IFDIR => FileKind::Directory,
            libc::S_IFLNK => FileKind::Symlink,
            libc::S_IFIFO => FileKind::Fifo,
            libc::S_IFCHR => FileKind::CharDevice,
            libc::S_IFBLK => FileKind::BlockDevice,
            libc::S_IFSOCK => FileKind::Socket,
            _ => FileKind::Unknown,
        }
    }

    /// Block/char devices and fifos: what `--read-special` reads like files (`is_special`).
    pub fn is_special(self) -> bool {
        matches!(
            self,
            FileKind::Fifo | FileKind::CharDevice | FileKind::BlockDevice
        )
    }

    /// The kinds borg tracks as hardlinks (`helpers/fs.py: hardlinkable`).
    pub fn is_hardlinkable(self) -> bool {
        matches!(
            self,
            FileKind::Regular | FileKind::Fifo | FileKind::CharDevice | FileKind::BlockDevice
        )
    }
}

/// The fields of `struct stat` borg uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Device of the containing filesystem.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Full mode (type and permission bits).
    pub mode: u32,
    /// Number of hard links.
    pub nlink: u64,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Device number of a device node.
    pub rdev: u64,
    /// Size in bytes.
    pub size: i64,
    /// 512-byte blocks allocated.
    pub blocks: i64,
    /// Access time, ns since the epoch.
    pub atime_ns: i64,
    /// Modification time, ns.
    pub mtime_ns: i64,
    /// Status change time, ns.
    pub ctime_ns: i64,
}

impl Stat {
    /// The file type.
    pub fn kind(&self) -> FileKind {
        FileKind::from_mode(self.mode)
    }

    fn from_raw(st: &libc::stat) -> Stat {
        let ns = |s: i64, n: i64| s.saturating_mul(1_000_000_000).saturating_add(n);
        Stat {
            dev: st.st_dev,
            ino: st.st_ino,
            mode: st.st_mode,
            nlink: st.st_nlink,
            uid: st.st_uid,
            gid: st.st_gid,
            rdev: st.st_rdev,
            size: st.st_size,
            blocks: st.st_blocks,
            atime_ns: ns(st.st_atime, st.st_atime_nsec),
            mtime_ns: ns(st.st_mtime, st.st_mtime_nsec),
            ctime_ns: ns(st.st_ctime, st.st_ctime_nsec),
        }
    }
}

/// `fstatat(dir, name)`; `dir` `None` means the current directory. `follow` chooses between
/// `stat` and `lstat` semantics.
pub fn stat_at(dir: Option<BorrowedFd<'_>>, name: &[u8], follow: bool) -> Result<Stat, FsError> {
    let c = cstring(name, "stat")?;
    let dirfd = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    let flags = if follow { 0 } else { libc::AT_SYMLINK_NOFOLLOW };
    // SAFETY: zeroed is a valid bit pattern for the plain C struct `stat`.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: c is NUL-terminated, st is a valid out pointer.
    if unsafe { libc::fstatat(dirfd, c.as_ptr(), &mut st, flags) } != 0 {
        return Err(FsError::last("stat", name));
    }
    Ok(Stat::from_raw(&st))
}

/// `lstat(path)`.
pub fn lstat(path: &[u8]) -> Result<Stat, FsError> {
    stat_at(None, path, false)
}

/// Asks the kernel to start reading the whole file behind `fd` into the page cache
/// (`posix_fadvise(POSIX_FADV_WILLNEED)`) and returns at once. Only a hint: errors are ignored.
pub fn will_need(fd: BorrowedFd<'_>) {
    // SAFETY: plain syscall on a borrowed, open descriptor; no memory is passed.
    unsafe {
        libc::posix_fadvise(fd.as_raw_fd(), 0, 0, libc::POSIX_FADV_WILLNEED);
    }
}

/// `fstat(fd)`.
pub fn fstat(fd: BorrowedFd<'_>, name: &[u8]) -> Result<Stat, FsError> {
    // SAFETY: zeroed is a valid bit pattern for `stat`.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fd is open for the lifetime of the borrow; st is a valid out pointer.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(FsError::last("fstat", name));
    }
    Ok(Stat::from_raw(&st))
}

/// Borg's clamp of nanosecond times to what 32-bit platforms can hold (`helpers/time.py:
/// safe_ns`): negative becomes 0, beyond 2038 minus 48 hours becomes that limit.
pub fn safe_ns(ns: i64) -> i64 {
    const MAX_NS: i64 = ((1i64 << 31) - 1 - 48 * 3600) * 1_000_000_000;
    ns.clamp(0, MAX_NS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_ns_clamps_like_borg() {
        assert_eq!(safe_ns(-5), 0);
        assert_eq!(
            safe_ns(1_700_000_000_123_456_789),
            1_700_000_000_123_456_789
        );
        assert_eq!(safe_ns(i64::MAX), 2_147_310_847_000_000_000);
    }

    #[test]
    fn lstat_sees_a_symlink() {
        let d = tempfile::tempdir().unwrap();
        let l = d.path().join("l");
        std::os::unix::fs::symlink("nowhere", &l).unwrap();
        let st = lstat(l.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(st.kind(), FileKind::Symlink);
        assert!(stat_at(None, l.as_os_str().as_encoded_bytes(), true).is_err());
    }
}
