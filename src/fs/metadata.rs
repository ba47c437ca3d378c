//! Filesystem object to item (`archive.py: MetadataCollector` and the metadata half of
//! `FilesystemObjectProcessors`): everything of an item except `chunks` and `size`, which the
//! content pipeline adds.

use std::collections::HashMap;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::acl;
use super::flags::{self, FlagsDialect};
use super::names::NameCache;
use super::path::{archive_path, join};
use super::stat::{fstat, safe_ns, stat_at, FileKind, Stat};
use super::walk::{Entry, EntryKind};
use super::xattr::{self, Target, XattrWarnings};
use super::{cstring, FsError};
use crate::archive::Item;

/// The `create` options that shape item metadata.
#[derive(Debug, Clone, Copy, Default)]
pub struct MetadataOptions {
    /// `--atime`: store atime.
    pub atime: bool,
    /// `--noctime`.
    pub noctime: bool,
    /// `--nobirthtime` (Linux has no birthtime anyway).
    pub nobirthtime: bool,
    /// `--numeric-ids`: `user`/`group` are nil, ACLs carry ids.
    pub numeric_ids: bool,
    /// `--noflags` (or `--nobsdflags`).
    pub noflags: bool,
    /// `--noacls`.
    pub noacls: bool,
    /// `--noxattrs`.
    pub noxattrs: bool,
    /// Which borg's flag table to use.
    pub flags_dialect: FlagsDialect,
}

/// Reads metadata into items (borg's `MetadataCollector`).
#[derive(Debug, Default)]
pub struct MetadataCollector {
    /// The options.
    pub options: MetadataOptions,
    /// uid/gid name lookups, cached.
    pub names: NameCache,
}

impl MetadataCollector {
    /// A collector with the given options.
    pub fn new(options: MetadataOptions) -> Self {
        MetadataCollector {
            options,
            names: NameCache::new(),
        }
    }

    /// `stat_simple_attrs`: mode, ids, names and times.
    pub fn stat_simple_attrs(&mut self, st: &Stat, item: &mut Item) {
        item.mode = Some(st.mode);
        item.uid = Some(st.uid);
        item.gid = Some(st.gid);
        item.mtime = safe_ns(st.mtime_ns);
        if self.options.atime {
            item.atime = Some(safe_ns(st.atime_ns));
        }
        if !self.options.noctime {
            item.ctime = Some(safe_ns(st.ctime_ns));
        }
        // Linux has no birthtime in stat; borg stores none there.
        if self.options.numeric_ids {
            item.user = Some(None);
            item.group = Some(None);
        } else {
            item.user = Some(self.names.uid2user(st.uid));
            item.group = Some(self.names.gid2group(st.gid));
        }
    }

    /// `stat_ext_attrs`: `bsdflags` (non-zero only), `xattrs` (non-empty only) and ACLs.
    /// `fd` is the object's open descriptor where borg has one; `path` is used otherwise.
    /// Per-attribute problems borg only logs are appended to `warnings`.
    pub fn stat_ext_attrs(
        &mut self,
        st: &Stat,
        path: &[u8],
        fd: Option<BorrowedFd<'_>>,
        item: &mut Item,
        warnings: &mut Vec<String>,
    ) -> Result<(), FsError> {
        let kind = st.kind();
        let cpath = cstring(path, "extended stat")?;
        if !self.options.noflags {
            let f = get_flags_for(kind, &cpath, fd, self.options.flags_dialect);
            if f != 0 {
                item.bsdflags = Some(f);
            }
        }
        if !self.options.noxattrs {
            let target = fd.map_or(Target::Path(&cpath), Target::Fd);
            let mut w = XattrWarnings::default();
            let x = xattr::get_all(target, &mut w).map_err(|e| FsError {
                op: "extended stat (xattrs)",
                ..e
            })?;
            warnings.extend(w.0);
            if !x.is_empty() {
                item.xattrs = Some(x);
            }
        }
        if !self.options.noacls {
            match acl::acl_get(
                fd,
                &cpath,
                st.mode,
                &mut self.names,
                self.options.numeric_ids,
            ) {
                Ok(t) => {
                    item.acl_access = t.access;
                    item.acl_default = t.default;
                }
                Err(e) if acl::is_not_supported(&e) => {}
                Err(e) => {
                    return Err(FsError::new(
                        "extended stat (ACLs)",
                        path,
                        io::Error::from(e),
                    ))
                }
            }
        }
        Ok(())
    }
}

/// `get_flags`: devices and symlinks are never opened; other objects use `fd`, or are opened
/// by path (read-only, non-blocking, not following symlinks). Any failure gives 0.
fn get_flags_for(
    kind: FileKind,
    path: &CString,
    fd: Option<BorrowedFd<'_>>,
    dialect: FlagsDialect,
) -> u32 {
    if matches!(
        kind,
        FileKind::BlockDevice | FileKind::CharDevice | FileKind::Symlink
    ) {
        return 0;
    }
    if let Some(fd) = fd {
        return flags::get_flags(fd, dialect);
    }
    // SAFETY: path is NUL-terminated.
    let raw = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if raw < 0 {
        return 0;
    }
    // SAFETY: raw is a freshly opened descriptor we own.
    let owned = unsafe { OwnedFd::from_raw_fd(raw) };
    flags::get_flags(owned.as_fd(), dialect)
}

/// The flags borg opens an object's content with (`helpers/fs.py: flags_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileOpenMode {
    /// Regular files and fifos: read-only, non-blocking, not following symlinks.
    Normal,
    /// `--read-special` devices and fifos: blocking, not following symlinks.
    Special,
    /// `--read-special` symlinks to devices: blocking, following the link.
    SpecialFollow,
    /// Directories.
    Directory,
}

impl FileOpenMode {
    fn flags(self) -> libc::c_int {
        let base = libc::O_RDONLY | libc::O_NOCTTY | libc::O_CLOEXEC;
        match self {
            FileOpenMode::Normal => base | libc::O_NONBLOCK | libc::O_NOFOLLOW,
            FileOpenMode::Special => base | libc::O_NOFOLLOW,
            FileOpenMode::SpecialFollow => base,
            FileOpenMode::Directory => {
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC
            }
        }
    }
}

/// `os_open(..., noatime=True)`: opens `name` relative to `dir` (or the path when there is no
/// directory), trying `O_NOATIME` first and retrying without it on `EPERM`.
pub fn open_noatime(
    dir: Option<BorrowedFd<'_>>,
    name: &[u8],
    mode: FileOpenMode,
    op: &'static str,
) -> Result<OwnedFd, FsError> {
    let c = cstring(name, op)?;
    let dirfd = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    let flags = mode.flags();
    // SAFETY: c is NUL-terminated; dirfd is open or AT_FDCWD.
    let mut raw = unsafe { libc::openat(dirfd, c.as_ptr(), flags | libc::O_NOATIME) };
    if raw < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EPERM) {
        // SAFETY: as above.
        raw = unsafe { libc::openat(dirfd, c.as_ptr(), flags) };
    }
    if raw < 0 {
        return Err(FsError::last(op, name));
    }
    // SAFETY: raw is a freshly opened descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Borg's `stat_update_check`: the object opened must still be the one stat'ed by name.
pub fn stat_update_check(old: &Stat, new: Stat, path: &[u8]) -> Result<Stat, FsError> {
    let why = if old.mode & libc::S_IFMT != new.mode & libc::S_IFMT {
        "file type changed (race condition), skipping file"
    } else if old.ino != new.ino {
        "file inode changed (race condition), skipping file"
    } else {
        return Ok(new);
    };
    Err(FsError::new(
        "race condition",
        path,
        io::Error::other(format!(
            "{why}: file type or inode changed while we backed it up (race condition, skipped file)"
        )),
    ))
}

/// Remembers the first item of each multiply-linked inode (`FilesystemObjectProcessors.
/// hard_links`), keyed by (inode, device).
#[derive(Debug, Default)]
pub struct HardlinkTracker {
    masters: HashMap<(u64, u64), Vec<u8>>,
}

impl HardlinkTracker {
    /// An empty tracker.
    pub fn new() -> Self {
        HardlinkTracker::default()
    }

    /// The archived path of the master of this inode, if one was added.
    pub fn master(&self, st: &Stat) -> Option<&[u8]> {
        self.masters.get(&(st.ino, st.dev)).map(Vec::as_slice)
    }

    /// Records `path` as the master of this inode.
    pub fn remember(&mut self, st: &Stat, path: Vec<u8>) {
        self.masters.insert((st.ino, st.dev), path);
    }
}

/// An item made from one walked entry, waiting for its content (if any).
#[derive(Debug)]
pub struct ItemDraft {
    /// The item, complete except for `chunks` and `size`.
    pub item: Item,
    /// The status letter borg prints for it, when it is known now (`d`, `s`, `f`, `c`, `b`,
    /// `h`); `None` for files whose status (`A`, `M`, `U`) the files cache decides.
    pub status: Option<char>,
    /// For files whose content must be stored (not hardlink slaves): the open descriptor to
    /// read it from.
    pub content: Option<OwnedFd>,
    /// Whether the content is a device or fifo read with `--read-special` (never memorized in
    /// the files cache, and read without sparse hints).
    pub special: bool,
    /// The stat the item was made from (the files cache keys on it).
    pub stat: Stat,
    /// Whether this item is the first of several hardlinks: call
    /// [`FsObjectProcessor::added`] once it is in the archive.
    pub hardlink_master: bool,
    /// Warnings borg only logs (unreadable single xattrs).
    pub warnings: Vec<String>,
}

/// Turns walked entries into items (borg's `FilesystemObjectProcessors` without the content
/// part).
#[derive(Debug, Default)]
pub struct FsObjectProcessor {
    /// The metadata reader.
    pub collector: MetadataCollector,
    /// Hardlink masters seen so far.
    pub hardlinks: HardlinkTracker,
}

impl FsObjectProcessor {
    /// A processor with the given metadata options.
    pub fn new(options: MetadataOptions) -> Self {
        FsObjectProcessor {
            collector: MetadataCollector::new(options),
            hardlinks: HardlinkTracker::new(),
        }
    }

    /// Makes the item for one entry. `Ok(None)` is borg's "no item" for a directory level
    /// above a `/./` strip prefix (status `x`).
    pub fn process(&mut self, entry: &Entry<'_>) -> Result<Option<ItemDraft>, FsError> {
        let Some(apath) = archive_path(&entry.path, entry.strip_prefix) else {
            return Ok(None);
        };
        let kind = entry.kind;
        let hardlinkable = !matches!(kind, EntryKind::Directory | EntryKind::Symlink);
        let hardlinked = hardlinkable && entry.stat.nlink > 1;
        let mut item = Item {
            path: apath.clone(),
            ..Item::default()
        };
        let mut status = match kind {
            EntryKind::Directory => Some('d'),
            EntryKind::Symlink => Some('s'),
            EntryKind::Fifo => Some('f'),
            EntryKind::CharDevice => Some('c'),
            EntryKind::BlockDevice => Some('b'),
            EntryKind::File | EntryKind::Special { .. } => None,
        };
        let mut master = false;
        if hardlinked {
            if let Some(source) = self.hardlinks.master(&entry.stat) {
                item.source = Some(source.to_vec());
                status = Some('h');
            } else {
                master = true;
            }
        }
        let slave = hardlinked && !master;
        let mut warnings = Vec::new();
        let mut st = entry.stat;
        let mut content = None;
        let mut special = false;
        let c = &mut self.collector;
        match kind {
            EntryKind::Directory => {
                let fd = entry.dir_fd;
                c.stat_simple_attrs(&st, &mut item);
                c.stat_ext_attrs(&st, &entry.path, fd, &mut item, &mut warnings)?;
            }
            EntryKind::Symlink => {
                let target = readlink_at(entry.parent, entry.name_or_path())?;
                item.source = Some(target);
                c.stat_simple_attrs(&st, &mut item);
                c.stat_ext_attrs(&st, &entry.path, None, &mut item, &mut warnings)?;
            }
            EntryKind::Fifo => {
                let fd = open_noatime(
                    entry.parent,
                    entry.name_or_path(),
                    FileOpenMode::Normal,
                    "open",
                )?;
                st = stat_update_check(&st, fstat(fd.as_fd(), &entry.path)?, &entry.path)?;
                if !slave {
                    item.hardlink_master = Some(hardlinked);
                }
                c.stat_simple_attrs(&st, &mut item);
                c.stat_ext_attrs(&st, &entry.path, Some(fd.as_fd()), &mut item, &mut warnings)?;
            }
            EntryKind::CharDevice | EntryKind::BlockDevice => {
                let now = stat_at(entry.parent, entry.name_or_path(), false)?;
                st = stat_update_check(&st, now, &entry.path)?;
                item.rdev = Some(st.rdev);
                if !slave {
                    item.hardlink_master = Some(hardlinked);
                }
                c.stat_simple_attrs(&st, &mut item);
                c.stat_ext_attrs(&st, &entry.path, None, &mut item, &mut warnings)?;
            }
            EntryKind::File | EntryKind::Special { .. } => {
                let mode = match kind {
                    EntryKind::Special { follow: true } => FileOpenMode::SpecialFollow,
                    EntryKind::Special { follow: false } => FileOpenMode::Special,
                    _ => FileOpenMode::Normal,
                };
                let fd = open_noatime(entry.parent, entry.name_or_path(), mode, "open")?;
                st = stat_update_check(&st, fstat(fd.as_fd(), &entry.path)?, &entry.path)?;
                c.stat_simple_attrs(&st, &mut item);
                special = st.kind().is_special();
                if special {
                    // read like a file, so stored as one (borg: "reflect that in mode")
                    item.mode = Some(libc::S_IFREG | (st.mode & 0o7777));
                }
                if !slave {
                    item.hardlink_master = Some(hardlinked);
                }
                c.stat_ext_attrs(&st, &entry.path, Some(fd.as_fd()), &mut item, &mut warnings)?;
                if !slave {
                    content = Some(fd);
                }
            }
        }
        Ok(Some(ItemDraft {
            item,
            status,
            content,
            special,
            stat: st,
            hardlink_master: master,
            warnings,
        }))
    }

    /// Call once a draft's item was added to the archive: a hardlink master becomes the
    /// `source` of later links (borg remembers it only after a successful add).
    pub fn added(&mut self, draft: &ItemDraft) {
        if draft.hardlink_master {
            self.hardlinks
                .remember(&draft.stat, draft.item.path.clone());
        }
    }
}

/// `readlink` relative to a directory (or by path).
pub fn readlink_at(dir: Option<BorrowedFd<'_>>, name: &[u8]) -> Result<Vec<u8>, FsError> {
    let c = cstring(name, "readlink")?;
    let dirfd = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: buf is writable for its length; c is NUL-terminated.
        let n = unsafe { libc::readlinkat(dirfd, c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            return Err(FsError::last("readlink", name));
        }
        let n = n as usize;
        if n < buf.len() {
            buf.truncate(n);
            return Ok(buf);
        }
        buf.resize(buf.len() * 2, 0);
    }
}

/// One range of a file: `(offset, length, is_data)`.
pub type SparseRange = (u64, u64, bool);

/// Borg's `sparsemap`: the data and hole ranges of an open file from its current position to
/// its end, found with `SEEK_DATA`/`SEEK_HOLE`. The position is restored afterwards. A chunker
/// working with `--sparse` can skip reading the holes.
pub fn sparse_map(fd: BorrowedFd<'_>) -> io::Result<Vec<SparseRange>> {
    let raw = fd.as_raw_fd();
    let seek = |off: i64, whence| {
        // SAFETY: lseek on an open descriptor.
        let r = unsafe { libc::lseek(raw, off, whence) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r)
        }
    };
    let curr = seek(0, libc::SEEK_CUR)?;
    let file_len = seek(0, libc::SEEK_END)?;
    let mut out = Vec::new();
    let mut start = curr;
    let mut whence = libc::SEEK_HOLE;
    let result = loop {
        let is_data = whence == libc::SEEK_HOLE;
        let end = match seek(start, whence) {
            Ok(e) => e,
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                if !is_data && start < file_len {
                    out.push((start as u64, (file_len - start) as u64, false));
                }
                break Ok(());
            }
            Err(e) => break Err(e),
        };
        if end > start {
            out.push((start as u64, (end - start) as u64, is_data));
        }
        start = end;
        whence = if is_data {
            libc::SEEK_DATA
        } else {
            libc::SEEK_HOLE
        };
    };
    seek(curr, libc::SEEK_SET)?;
    result.map(|()| out)
}

/// The path an entry's children are joined under (borg joins names to the walk path).
pub fn child_path(parent: &[u8], name: &[u8]) -> Vec<u8> {
    super::path::normpath(&join(parent, name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom, Write};

    #[test]
    fn sparse_map_finds_the_hole() {
        let d = tempfile::tempdir().unwrap();
        let mut f = std::fs::File::create(d.path().join("s")).unwrap();
        f.write_all(&[1u8; 4096]).unwrap();
        f.seek(SeekFrom::Start(4 << 20)).unwrap();
        f.write_all(&[2u8; 4096]).unwrap();
        f.set_len((8 << 20) as u64).unwrap();
        let f = std::fs::File::open(d.path().join("s")).unwrap();
        let m = sparse_map(f.as_fd()).unwrap();
        let total: u64 = m.iter().map(|r| r.1).sum();
        assert_eq!(total, 8 << 20);
        assert_eq!(m.first().map(|r| r.2), Some(true));
        assert_eq!(m.last().map(|r| r.2), Some(false), "{m:?}");
    }
}
