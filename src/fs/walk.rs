//! Walking the paths given to `create` in borg's order and with borg's decisions
//! (`archiver.py: do_create, _rec_walk, _process_any`; `helpers/fs.py: scandir_inorder,
//! dir_is_tagged`).
//!
//! The order is pre-order; each directory's entries are visited sorted by inode number. The
//! walker hands every object to a [`Visitor`] (which makes and stores the item), and reports
//! `--list` status lines in the order borg prints them: a directory's line comes *after* its
//! contents, because borg prints it when it returns from the directory.

use std::collections::HashSet;
use std::ffi::CStr;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::display_path;
use super::flags::{self, UF_NODUMP};
use super::metadata::{child_path, open_noatime, stat_update_check, FileOpenMode};
use super::path::{get_strip_prefix, join, normpath};
use super::stat::{fstat, stat_at, FileKind, Stat};
use super::FsError;
use crate::patterns::PatternMatcher;

/// `CACHEDIR.TAG`, the cache directory tag name (`constants.py: CACHE_TAG_NAME`).
pub const CACHE_TAG_NAME: &[u8] = b"CACHEDIR.TAG";
/// The signature a cache directory tag starts with (`CACHE_TAG_CONTENTS`).
pub const CACHE_TAG_CONTENTS: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";

/// The options of `create` that steer the walk.
#[derive(Debug, Default)]
pub struct WalkOptions {
    /// Include/exclude patterns; paths no pattern matches are included.
    pub matcher: PatternMatcher,
    /// `--one-file-system`: do not descend into directories on another device (the mount point
    /// directory itself is still archived).
    pub one_file_system: bool,
    /// `--exclude-caches`.
    pub exclude_caches: bool,
    /// `--exclude-if-present NAME`, any number.
    pub exclude_if_present: Vec<Vec<u8>>,
    /// `--keep-exclude-tags`.
    pub keep_exclude_tags: bool,
    /// `--exclude-nodump`.
    pub exclude_nodump: bool,
    /// `--read-special`.
    pub read_special: bool,
    /// `--dry-run`: walk and print `-` for everything, make no items.
    pub dry_run: bool,
    /// (inode, device) pairs never to enter: borg adds its cache directory and a local
    /// repository.
    pub skip_inodes: HashSet<(u64, u64)>,
}

/// How the object is to be processed (borg's `_process_any` dispatch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A directory.
    Directory,
    /// A regular file.
    File,
    /// A symlink.
    Symlink,
    /// A fifo stored as a fifo.
    Fifo,
    /// A character device stored as a device.
    CharDevice,
    /// A block device stored as a device.
    BlockDevice,
    /// `--read-special`: a device or fifo (or, with `follow`, a symlink to one) whose content
    /// is read and stored as a regular file.
    Special {
        /// Whether the entry is a symlink and the device is its target.
        follow: bool,
    },
}

/// One filesystem object met by the walk.
#[derive(Debug)]
pub struct Entry<'a> {
    /// The path as borg walks it: the root as given (normalised), joined with names.
    pub path: Vec<u8>,
    /// The directory the entry is in, when the walk has it open.
    pub parent: Option<BorrowedFd<'a>>,
    /// The entry's name in `parent`.
    pub name: Vec<u8>,
    /// `lstat` of the entry (for `Special { follow: true }`: `stat` of the link's target).
    pub stat: Stat,
    /// How to process it.
    pub kind: EntryKind,
    /// For directories: the open directory.
    pub dir_fd: Option<BorrowedFd<'a>>,
    /// The 1.4 `/./` strip prefix of the root this entry is under.
    pub strip_prefix: Option<&'a [u8]>,
}

impl Entry<'_> {
    /// The name relative to `parent`, or the whole path for a root.
    pub fn name_or_path(&self) -> &[u8] {
        if self.parent.is_some() && !self.name.is_empty() {
            &self.name
        } else {
            &self.path
        }
    }
}

/// A per-path problem that borg reports as a warning and walks on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkWarning {
    /// The path.
    pub path: Vec<u8>,
    /// What went wrong, in borg's words.
    pub message: String,
}

impl std::fmt::Display for WalkWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", display_path(&self.path), self.message)
    }
}

/// What a visitor's processing of an entry can end in.
#[derive(Debug, thiserror::Error)]
pub enum VisitError {
    /// A problem with this object only: borg warns, prints status `E` and goes on.
    #[error("{0}")]
    Backup(String),
    /// A problem that ends the whole run (for example, the repository failed).
    #[error("{0}")]
    Fatal(Box<dyn std::error::Error + Send + Sync>),
}

impl From<FsError> for VisitError {
    fn from(e: FsError) -> Self {
        VisitError::Backup(e.to_string())
    }
}

/// The consumer of a walk: makes items, prints status lines, shows warnings.
pub trait Visitor {
    /// Processes one object (borg's `_process_any` / `process_dir_with_fd`). Returns the
    /// status letter to print for it, or `None` when there is nothing (more) to print. The
    /// status `C` (changed while read) is printed and warned about.
    fn entry(&mut self, entry: &Entry<'_>) -> Result<Option<char>, VisitError>;
    /// One `--list` line: status letter and path.
    fn status(&mut self, status: char, path: &[u8]);
    /// A warning (borg's `BackupWarning` and friends).
    fn warning(&mut self, warning: WalkWarning);
}

/// Walks roots with fixed options.
#[derive(Debug)]
pub struct Walker {
    /// The options.
    pub options: WalkOptions,
}

struct Ctx<'o> {
    opts: &'o WalkOptions,
    skip: HashSet<(u64, u64)>,
    restrict_dev: Option<u64>,
    strip_prefix: Option<Vec<u8>>,
}

impl Walker {
    /// A walker.
    pub fn new(options: WalkOptions) -> Self {
        Walker { options }
    }

    /// Walks each root path in turn, as `borg create` does with its PATH arguments (`-` for
    /// stdin is the caller's business). Stops early only on a [`VisitError::Fatal`].
    pub fn walk(
        &self,
        roots: &[Vec<u8>],
        visitor: &mut dyn Visitor,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let mut skip = self.options.skip_inodes.clone();
        for root in roots {
            let strip_prefix = get_strip_prefix(root);
            let path = normpath(root);
            let st = match stat_at(None, &path, false) {
                Ok(st) => st,
                Err(e) => {
                    visitor.warning(WalkWarning {
                        path,
                        message: e.to_string(),
                    });
                    continue;
                }
            };
            let mut ctx = Ctx {
                opts: &self.options,
                skip: std::mem::take(&mut skip),
                restrict_dev: self.options.one_file_system.then_some(st.dev),
                strip_prefix,
            };
            rec_walk(&mut ctx, &path, None, b"", visitor)?;
            // never walk into a root twice, even when it is given twice
            ctx.skip.insert((st.ino, st.dev));
            skip = ctx.skip;
        }
        Ok(())
    }
}

/// Borg's `dir_is_tagged`: the tag names present in `path` (path-based, following symlinks,
/// as borg's `os.path.exists`).
pub fn dir_is_tagged(
    path: &[u8],
    exclude_caches: bool,
    exclude_if_present: &[Vec<u8>],
) -> Vec<Vec<u8>> {
    let mut tags = Vec::new();
    if exclude_caches && dir_is_cachedir(path) {
        tags.push(CACHE_TAG_NAME.to_vec());
    }
    for tag in exclude_if_present {
        if stat_at(None, &join(path, tag), true).is_ok() {
            tags.push(tag.clone());
        }
    }
    tags
}

/// Borg's `dir_is_cachedir`: `CACHEDIR.TAG` exists and starts with the signature.
pub fn dir_is_cachedir(path: &[u8]) -> bool {
    let tag = join(path, CACHE_TAG_NAME);
    let os: &std::ffi::OsStr = std::os::unix::ffi::OsStrExt::from_bytes(&tag);
    let Ok(mut f) = std::fs::File::open(os) else {
        return false;
    };
    let mut buf = vec![0u8; CACHE_TAG_CONTENTS.len()];
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(_) => return false,
        }
    }
    &buf[..got] == CACHE_TAG_CONTENTS
}

/// A directory's entries sorted by inode number (`scandir_inorder`): readdir order is kept
/// for equal inodes (hardlinks in the same directory), as Python's sort is stable.
pub fn scandir_inorder(dir: BorrowedFd<'_>, path: &[u8]) -> Result<Vec<Vec<u8>>, FsError> {
    // fdopendir takes ownership of the descriptor it is given, so hand it a duplicate.
    // SAFETY: dup on an open descriptor.
    let dup = unsafe { libc::fcntl(dir.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
        return Err(FsError::last("scandir", path));
    }
    // SAFETY: dup is an open directory descriptor that fdopendir now owns.
    let dirp = unsafe { libc::fdopendir(dup) };
    if dirp.is_null() {
        let e = FsError::last("scandir", path);
        // SAFETY: fdopendir failed, so the descriptor is still ours to close.
        unsafe { libc::close(dup) };
        return Err(e);
    }
    // SAFETY: dirp is a valid DIR*; rewinding makes repeated scans of one fd see everything.
    unsafe { libc::rewinddir(dirp) };
    let mut entries: Vec<(u64, Vec<u8>)> = Vec::new();
    let result = loop {
        // readdir signals errors only through errno
        // SAFETY: __errno_location is always valid for the calling thread.
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: dirp is a valid DIR*.
        let ent = unsafe { libc::readdir64(dirp) };
        if ent.is_null() {
            // SAFETY: as above.
            let err = unsafe { *libc::__errno_location() };
            break if err == 0 {
                Ok(())
            } else {
                Err(FsError::new(
                    "scandir",
                    path,
                    std::io::Error::from_raw_os_error(err),
                ))
            };
        }
        // SAFETY: ent points to a valid dirent64 until the next readdir call.
        let (ino, name) = unsafe {
            (
                (*ent).d_ino,
                CStr::from_ptr((*ent).d_name.as_ptr()).to_bytes().to_vec(),
            )
        };
        if name != b"." && name != b".." {
            entries.push((ino, name));
        }
    };
    // SAFETY: dirp is valid and closed once.
    unsafe { libc::closedir(dirp) };
    result?;
    entries.sort_by_key(|e| e.0);
    Ok(entries.into_iter().map(|e| e.1).collect())
}

type Fatal = Box<dyn std::error::Error + Send + Sync>;

fn print(visitor: &mut dyn Visitor, status: Option<char>, path: &[u8]) {
    if let Some(s) = status {
        visitor.status(s, path);
    }
}

/// One step of `_rec_walk`.
fn rec_walk(
    ctx: &mut Ctx<'_>,
    path: &[u8],
    parent: Option<BorrowedFd<'_>>,
    name: &[u8],
    visitor: &mut dyn Visitor,
) -> Result<(), Fatal> {
    let mut recurse_excluded_dir = false;
    let status = match rec_walk_inner(ctx, path, parent, name, visitor, &mut recurse_excluded_dir) {
        Ok(Some(s)) => s,
        // returned early without a status line of its own
        Ok(None) => return Ok(()),
        Err(VisitError::Fatal(e)) => return Err(e),
        Err(VisitError::Backup(msg)) => {
            visitor.warning(WalkWarning {
                path: path.to_vec(),
                message: msg,
            });
            Some('E')
        }
    };
    if status == Some('C') {
        visitor.warning(WalkWarning {
            path: path.to_vec(),
            message: "file changed while we backed it up".to_string(),
        });
    }
    if !recurse_excluded_dir {
        print(visitor, status, path);
    }
    Ok(())
}

/// The body of `_rec_walk`: `Ok(None)` where borg returns early (nothing more to print),
/// `Ok(Some(status))` where it falls through to the final status line.
fn rec_walk_inner(
    ctx: &mut Ctx<'_>,
    path: &[u8],
    parent: Option<BorrowedFd<'_>>,
    name: &[u8],
    visitor: &mut dyn Visitor,
    recurse_excluded_dir: &mut bool,
) -> Result<Option<Option<char>>, VisitError> {
    let opts = ctx.opts;
    let name_or_path: &[u8] = if parent.is_some() && !name.is_empty() {
        name
    } else {
        path
    };
    let m = opts.matcher.matches(path);
    let mut st = if m.included.unwrap_or(true) {
        stat_at(parent, name_or_path, false)?
    } else {
        visitor.status('x', path);
        // An excluded path that is not walked into is not even stat'ed (borg #3209).
        if !m.recurse_dir {
            return Ok(None);
        }
        *recurse_excluded_dir = true;
        let st = stat_at(parent, name_or_path, false)?;
        if st.kind() != FileKind::Directory {
            return Ok(None);
        }
        st
    };
    if ctx.skip.contains(&(st.ino, st.dev)) {
        return Ok(None);
    }
    let recurse = ctx.restrict_dev.map_or(true, |d| d == st.dev);
    if opts.exclude_nodump && nodump(path, &st) {
        visitor.status('x', path);
        return Ok(None);
    }
    let strip_prefix = ctx.strip_prefix.clone();
    if st.kind() != FileKind::Directory {
        return Ok(Some(process_any(
            ctx,
            path,
            parent,
            name,
            st,
            strip_prefix.as_deref(),
            visitor,
        )?));
    }
    let dir = open_noatime(parent, name_or_path, FileOpenMode::Directory, "dir_open")?;
    st = stat_update_check(&st, fstat(dir.as_fd(), path)?, path)?;
    let entry = |st: Stat| Entry {
        path: path.to_vec(),
        parent,
        name: name.to_vec(),
        stat: st,
        kind: EntryKind::Directory,
        dir_fd: Some(dir.as_fd()),
        strip_prefix: strip_prefix.as_deref(),
    };
    if recurse {
        let tags = dir_is_tagged(path, opts.exclude_caches, &opts.exclude_if_present);
        if !tags.is_empty() {
            // inside an excluded directory a tagged one needs nothing at all (borg #3991)
            if !*recurse_excluded_dir {
                if opts.keep_exclude_tags {
                    if !opts.dry_run {
                        // archived, but its own status line is the `x` below
                        visitor.entry(&entry(st))?;
                    }
                    for tag in &tags {
                        let tag_path = join(path, tag);
                        rec_walk(ctx, &tag_path, Some(dir.as_fd()), tag, visitor)
                            .map_err(VisitError::Fatal)?;
                    }
                }
                visitor.status('x', path);
            }
            return Ok(None);
        }
    }
    let mut status = None;
    if !*recurse_excluded_dir {
        status = if opts.dry_run {
            Some('-')
        } else {
            visitor.entry(&entry(st))?
        };
    }
    if recurse {
        let names = scandir_inorder(dir.as_fd(), path)?;
        for child in names {
            let child_path = child_path(path, &child);
            rec_walk(ctx, &child_path, Some(dir.as_fd()), &child, visitor)
                .map_err(VisitError::Fatal)?;
        }
    }
    Ok(Some(status))
}

/// `get_flags(path, st)` for `--exclude-nodump`.
fn nodump(path: &[u8], st: &Stat) -> bool {
    if matches!(
        st.kind(),
        FileKind::BlockDevice | FileKind::CharDevice | FileKind::Symlink
    ) {
        return false;
    }
    let Ok(c) = super::cstring(path, "flags") else {
        return false;
    };
    // SAFETY: c is NUL-terminated.
    let raw = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if raw < 0 {
        return false;
    }
    // SAFETY: raw is ours.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    flags::get_flags(fd.as_fd(), Default::default()) & UF_NODUMP != 0
}

/// Borg's `_process_any` for everything but directories.
fn process_any(
    ctx: &Ctx<'_>,
    path: &[u8],
    parent: Option<BorrowedFd<'_>>,
    name: &[u8],
    st: Stat,
    strip_prefix: Option<&[u8]>,
    visitor: &mut dyn Visitor,
) -> Result<Option<char>, VisitError> {
    let read_special = ctx.opts.read_special;
    let mut stat = st;
    let kind = match st.kind() {
        FileKind::Regular => EntryKind::File,
        FileKind::Symlink if read_special => {
            let name_or_path: &[u8] = if parent.is_some() && !name.is_empty() {
                name
            } else {
                path
            };
            match stat_at(parent, name_or_path, true) {
                Ok(target) if target.kind().is_special() => {
                    stat = target;
                    EntryKind::Special { follow: true }
                }
                _ => EntryKind::Symlink,
            }
        }
        FileKind::Symlink => EntryKind::Symlink,
        FileKind::Fifo | FileKind::CharDevice | FileKind::BlockDevice if read_special => {
            EntryKind::Special { follow: false }
        }
        FileKind::Fifo => EntryKind::Fifo,
        FileKind::CharDevice => EntryKind::CharDevice,
        FileKind::BlockDevice => EntryKind::BlockDevice,
        // unix sockets are ignored without a word
        FileKind::Socket => return Ok(None),
        FileKind::Directory | FileKind::Unknown => {
            visitor.warning(WalkWarning {
                path: path.to_vec(),
                message: "Unknown file type".to_string(),
            });
            return Ok(None);
        }
    };
    if ctx.opts.dry_run {
        return Ok(Some('-'));
    }
    visitor.entry(&Entry {
        path: path.to_vec(),
        parent,
        name: name.to_vec(),
        stat,
        kind,
        dir_fd: None,
        strip_prefix,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Record {
        lines: Vec<String>,
        entries: Vec<String>,
    }

    impl Visitor for Record {
        fn entry(&mut self, entry: &Entry<'_>) -> Result<Option<char>, VisitError> {
            self.entries.push(display_path(&entry.path));
            Ok(Some(match entry.kind {
                EntryKind::Directory => 'd',
                EntryKind::Symlink => 's',
                _ => 'A',
            }))
        }
        fn status(&mut self, status: char, path: &[u8]) {
            self.lines.push(format!("{status} {}", display_path(path)));
        }
        fn warning(&mut self, w: WalkWarning) {
            self.lines.push(format!("W {w}"));
        }
    }

    #[test]
    fn order_exclusions_and_tags() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("r");
        std::fs::create_dir_all(root.join("sub/cache")).unwrap();
        std::fs::write(root.join("sub/cache/CACHEDIR.TAG"), CACHE_TAG_CONTENTS).unwrap();
        std::fs::write(root.join("sub/cache/junk"), b"x").unwrap();
        std::fs::write(root.join("a.tmp"), b"x").unwrap();
        std::fs::write(root.join("b"), b"x").unwrap();
        std::os::unix::fs::symlink("b", root.join("l")).unwrap();
        let mut matcher = PatternMatcher::new();
        matcher.add_exclude("*.tmp").unwrap();
        let w = Walker::new(WalkOptions {
            matcher,
            exclude_caches: true,
            ..Default::default()
        });
        let rootb = root.as_os_str().as_encoded_bytes().to_vec();
        let mut rec = Record::default();
        w.walk(&[rootb.clone(), b"/nonexistent-rborg".to_vec()], &mut rec)
            .unwrap();
        let r = display_path(&rootb);
        assert!(rec.lines.contains(&format!("x {r}/a.tmp")));
        assert!(rec.lines.contains(&format!("x {r}/sub/cache")));
        assert!(!rec
            .entries
            .iter()
            .any(|e| e.contains("junk") || e.ends_with("a.tmp")));
        // the root's line comes last among its own, its entry first
        assert_eq!(rec.entries[0], r);
        let last_root_line = rec
            .lines
            .iter()
            .rposition(|l| l == &format!("d {r}"))
            .unwrap();
        assert!(rec.lines[..last_root_line]
            .iter()
            .any(|l| l == &format!("A {r}/b")));
        assert_eq!(
            rec.lines.last().unwrap(),
            "W /nonexistent-rborg: stat: [Errno 2] No such file or directory: '/nonexistent-rborg'"
        );
    }
}
