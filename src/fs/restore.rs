//! The extract side: creating the object for an item and restoring its metadata
//! (`archive.py: Archive.extract_item, extract_helper, restore_attrs, _check_safe_parent`),
//! with the directory deferral and `--strip-components` of `archiver.py: do_extract`.
//!
//! Attribute order follows borg (1.2.4 and 1.4.5 alike): ownership, mode, ACLs, xattrs (after
//! chown, which drops capabilities), times (ns, not following symlinks), flags last (they may
//! make the file immutable). Directories get their attributes after their contents.

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::acl;
use super::flags::{self, FlagsDialect};
use super::names::NameCache;
use super::path::join;
use super::stat::{lstat, FileKind};
use super::xattr::{self, Target};
use super::{cstring, display_path, FsError};
use crate::archive::{ChunkRef, Item};

/// Why one item could not be extracted. borg reports these as warnings and goes on.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// A system call failed.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// The item path is absolute or starts with `../`.
    #[error("Path should be relative and local")]
    NotLocal,
    /// A parent component is `..` (`BackupPathTraversalError`).
    #[error("{0}: not extracted, path contains \"../\" (malicious or corrupted archive)")]
    PathTraversal(String),
    /// An existing parent is a symlink or not a directory (`BackupSymlinkParentError`).
    #[error(
        "{0}: not extracted, a parent directory is a symlink (malicious or corrupted archive)"
    )]
    SymlinkParent(String),
    /// A hardlink's source path is unsafe (`BackupHardlinkSourceError`).
    #[error("{0}: not extracted, hardlink source path is unsafe (malicious or corrupted archive)")]
    HardlinkSource(String),
    /// The content written does not add up to the item's size.
    #[error("Size inconsistency detected: size {size}, chunks size {written}")]
    SizeInconsistency {
        /// `size` in the item.
        size: u64,
        /// What was written.
        written: u64,
    },
    /// The item has all-zero replacement chunks.
    #[error("File has damaged (all-zero) chunks. Try running borg check --repair.")]
    DamagedChunks,
    /// A mode that is no known file type.
    #[error("Unknown archive item type {0:#o}")]
    UnknownType(u32),
    /// The item has no mode.
    #[error("item has no mode")]
    NoMode,
    /// The content could not be fetched or written (from the caller's content writer).
    #[error("{0}")]
    Content(String),
}

/// The `extract` options that shape restoring.
#[derive(Debug, Clone, Copy, Default)]
pub struct RestoreOptions {
    /// `--numeric-ids`: use the stored ids, ignore names.
    pub numeric_ids: bool,
    /// `--noacls`.
    pub noacls: bool,
    /// `--noxattrs`.
    pub noxattrs: bool,
    /// `--noflags`.
    pub noflags: bool,
    /// `--strip-components N`.
    pub strip_components: usize,
    /// `--sparse`: all-zero chunks become holes.
    pub sparse: bool,
    /// Which borg's flag handling to follow.
    pub flags_dialect: FlagsDialect,
    /// `--umask` (borg's default is 0o077): parents that are not items themselves are made
    /// with `0o777 & !umask`. `None` takes borg's default.
    pub umask: Option<u32>,
}

/// Borg's default `--umask`.
pub const DEFAULT_UMASK: u32 = 0o077;

/// A regular file being extracted; the caller writes its chunks into it.
pub struct ExtractedFile {
    file: File,
    sparse: bool,
    written: u64,
}

impl ExtractedFile {
    /// Writes the next chunk; with `--sparse`, an all-zero chunk becomes a hole.
    pub fn write_chunk(&mut self, data: &[u8]) -> io::Result<()> {
        if self.sparse && data.iter().all(|&b| b == 0) {
            self.file.seek(SeekFrom::Current(data.len() as i64))?;
        } else {
            self.file.write_all(data)?;
        }
        self.written += data.len() as u64;
        Ok(())
    }

    /// Bytes written (or skipped as holes) so far.
    pub fn written(&self) -> u64 {
        self.written
    }
}

/// Where a hardlink master's data is: its chunks (not extracted) or its extracted path.
type MasterInfo = (Option<Vec<ChunkRef>>, Option<Vec<u8>>);

/// The content writer an extraction calls for regular files: gets the chunk list to fetch
/// (the item's own, or its master's when the master was not extracted) and the file.
pub type ContentWriter<'a> =
    dyn FnMut(&[ChunkRef], &mut ExtractedFile) -> Result<(), RestoreError> + 'a;

/// Extracts items below one destination directory.
pub struct Extractor {
    dest: Vec<u8>,
    options: RestoreOptions,
    names: NameCache,
    safe_dirs: HashSet<Vec<u8>>,
    hardlink_masters: HashMap<Vec<u8>, MasterInfo>,
    dirs: Vec<Item>,
    /// Problems borg only logs (xattrs that could not be set, deferred directories that
    /// failed), as `path: message` lines.
    pub warnings: Vec<String>,
}

impl Extractor {
    /// An extractor writing below `dest` (borg extracts below its working directory).
    pub fn new(dest: &[u8], options: RestoreOptions) -> Self {
        Extractor {
            dest: dest.to_vec(),
            options,
            names: NameCache::new(),
            safe_dirs: HashSet::new(),
            hardlink_masters: HashMap::new(),
            dirs: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// For partial extraction (patterns or `--strip-components`): call for *every* archive
    /// item with whether it is extracted, so that a later hardlink slave whose master is not
    /// extracted can get the master's chunks (`do_extract: peek_and_store_hardlink_masters`).
    pub fn peek_hardlink_master(&mut self, item: &Item, matched: bool) {
        let hardlinkable = item
            .mode
            .is_some_and(|m| FileKind::from_mode(m).is_hardlinkable());
        if !matched && hardlinkable && item.hardlink_master.unwrap_or(true) && item.source.is_none()
        {
            self.hardlink_masters
                .insert(item.path.clone(), (item.chunks.clone(), None));
        }
    }

    /// `--strip-components`: the item's path without its first N components, `None` when
    /// nothing is left (borg then skips the item).
    pub fn strip(&self, path: &[u8]) -> Option<Vec<u8>> {
        let n = self.options.strip_components;
        if n == 0 {
            return Some(path.to_vec());
        }
        let parts: Vec<&[u8]> = path.split(|&b| b == b'/').collect();
        let rest = parts.get(n..).map(|p| p.join(&b'/')).unwrap_or_default();
        (!rest.is_empty()).then_some(rest)
    }

    /// The `do_extract` loop body for one item (already matched by the caller): strips
    /// components, restores the attributes of finished directories, and extracts the item;
    /// directories are created now and get their attributes later. Returns `Ok(false)` when
    /// stripping left nothing to extract.
    pub fn extract(
        &mut self,
        mut item: Item,
        content: &mut ContentWriter<'_>,
    ) -> Result<bool, RestoreError> {
        let original_path = item.path.clone();
        match self.strip(&item.path) {
            Some(p) => item.path = p,
            None => return Ok(false),
        }
        // borg compares with a plain string prefix here, without a separator
        while self
            .dirs
            .last()
            .is_some_and(|d| !item.path.starts_with(&d.path))
        {
            if let Some(dir) = self.dirs.pop() {
                self.finish_dir(&dir);
            }
        }
        if item
            .mode
            .is_some_and(|m| FileKind::from_mode(m) == FileKind::Directory)
        {
            self.extract_item(&item, &original_path, false, content)?;
            self.dirs.push(item);
        } else {
            self.extract_item(&item, &original_path, true, content)?;
        }
        Ok(true)
    }

    /// Restores the attributes of every directory still waiting, deepest first. Call once
    /// after the last item.
    pub fn finish(&mut self) {
        while let Some(dir) = self.dirs.pop() {
            self.finish_dir(&dir);
        }
    }

    fn finish_dir(&mut self, dir: &Item) {
        let path = dir.path.clone();
        if let Err(e) = self.extract_item(dir, &path, true, &mut |_, _| Ok(())) {
            self.warnings.push(format!("{}: {e}", display_path(&path)));
        }
    }

    /// Borg's `_check_safe_parent`.
    fn check_safe_parent(&mut self, archived_path: &[u8]) -> Result<(), RestoreError> {
        let comps: Vec<&[u8]> = archived_path.split(|&b| b == b'/').collect();
        let parents: Vec<&[u8]> = comps[..comps.len().saturating_sub(1)]
            .iter()
            .copied()
            .filter(|c| !c.is_empty() && *c != b".")
            .collect();
        if parents.iter().any(|c| *c == b"..") {
            return Err(RestoreError::PathTraversal(display_path(archived_path)));
        }
        let mut current = self.dest.clone();
        for c in parents {
            current = join(&current, c);
            if self.safe_dirs.contains(&current) {
                continue;
            }
            match lstat(&current) {
                Err(e) if e.errno() == Some(libc::ENOENT) => break,
                Err(e) => return Err(e.into()),
                Ok(st) if st.kind() != FileKind::Directory => {
                    return Err(RestoreError::SymlinkParent(display_path(archived_path)))
                }
                Ok(_) => {
                    self.safe_dirs.insert(current.clone());
                }
            }
        }
        Ok(())
    }

    fn make_parent(&mut self, path: &[u8]) -> Result<(), RestoreError> {
        let parent = match path.iter().rposition(|&b| b == b'/') {
            Some(0) => b"/".to_vec(),
            Some(i) => path[..i].to_vec(),
            None => return Ok(()),
        };
        if self.safe_dirs.contains(&parent) {
            return Ok(());
        }
        if lstat(&parent).is_err() {
            let os: &std::ffi::OsStr = std::os::unix::ffi::OsStrExt::from_bytes(&parent);
            let umask = self.options.umask.unwrap_or(DEFAULT_UMASK);
            std::os::unix::fs::DirBuilderExt::mode(
                std::fs::DirBuilder::new().recursive(true),
                0o777 & !umask,
            )
            .create(os)
            .map_err(|e| FsError::new("makedirs", &parent, e))?;
        }
        self.safe_dirs.insert(parent);
        Ok(())
    }

    /// Borg's `extract_helper`: for a hardlink slave, links to the already extracted master
    /// (returns `Ok(None)`), or hands back the master's chunks when it was not extracted.
    fn link_if_slave(
        &mut self,
        item: &Item,
        path: &[u8],
    ) -> Result<Option<Option<Vec<ChunkRef>>>, RestoreError> {
        let Some(source) = &item.source else {
            return Ok(Some(None));
        };
        let comps: Vec<&[u8]> = source.split(|&b| b == b'/').collect();
        let kept = comps
            .get(self.options.strip_components..)
            .map(|c| c.join(&b'/'))
            .unwrap_or_default();
        if self.check_safe_parent(&kept).is_err() {
            return Err(RestoreError::HardlinkSource(display_path(&item.path)));
        }
        let default_target = join(&self.dest, &kept);
        let (chunks, target) = self
            .hardlink_masters
            .get(source)
            .cloned()
            .unwrap_or((None, Some(default_target)));
        if let Some(target) = target {
            let from = cstring(&target, "link")?;
            let to = cstring(path, "link")?;
            // SAFETY: both are NUL-terminated; flags 0 links a symlink itself, not its target.
            if unsafe {
                libc::linkat(
                    libc::AT_FDCWD,
                    from.as_ptr(),
                    libc::AT_FDCWD,
                    to.as_ptr(),
                    0,
                )
            } != 0
            {
                return Err(FsError::last("link", &target).into());
            }
            return Ok(None);
        }
        Ok(Some(chunks))
    }

    fn note_extracted_master(&mut self, item: &Item, original_path: &[u8], path: &[u8]) {
        // borg only updates a non-empty map (`if not hardlink_set and hardlink_masters`)
        if !self.hardlink_masters.is_empty() {
            let key = item
                .source
                .clone()
                .unwrap_or_else(|| original_path.to_vec());
            self.hardlink_masters
                .insert(key, (None, Some(path.to_vec())));
        }
    }

    /// Borg's `extract_item` for one item whose path is already stripped. `original_path` is
    /// the archived path (hardlink bookkeeping); `restore_attrs` false only creates a
    /// directory.
    pub fn extract_item(
        &mut self,
        item: &Item,
        original_path: &[u8],
        restore_attrs: bool,
        content: &mut ContentWriter<'_>,
    ) -> Result<(), RestoreError> {
        if item.path.starts_with(b"/") || item.path.starts_with(b"../") {
            return Err(RestoreError::NotLocal);
        }
        let path = join(&self.dest, &item.path);
        self.safe_dirs.remove(&path);
        self.check_safe_parent(&item.path)?;
        // remove what is in the way; failures are ignored (a non-empty directory stays)
        if let Ok(st) = lstat(&path) {
            if let Ok(c) = CString::new(path.clone()) {
                // SAFETY: c is NUL-terminated.
                unsafe {
                    if st.kind() == FileKind::Directory {
                        libc::rmdir(c.as_ptr());
                    } else {
                        libc::unlink(c.as_ptr());
                    }
                }
            }
        }
        let mode = item.mode.ok_or(RestoreError::NoMode)?;
        let cpath = cstring(&path, "open")?;
        match FileKind::from_mode(mode) {
            FileKind::Regular => {
                self.make_parent(&path)?;
                let Some(master_chunks) = self.link_if_slave(item, &path)? else {
                    return Ok(());
                };
                let chunks = item.chunks.clone().or(master_chunks).unwrap_or_default();
                // SAFETY: cpath is NUL-terminated.
                let raw = unsafe {
                    libc::open(
                        cpath.as_ptr(),
                        libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
                        0o666,
                    )
                };
                if raw < 0 {
                    return Err(FsError::last("open", &item.path).into());
                }
                // SAFETY: raw is a descriptor we own.
                let file = unsafe { File::from_raw_fd(raw) };
                let mut out = ExtractedFile {
                    file,
                    sparse: self.options.sparse,
                    written: 0,
                };
                content(&chunks, &mut out)?;
                let pos = out
                    .file
                    .stream_position()
                    .map_err(|e| FsError::new("truncate_and_attrs", &item.path, e))?;
                out.file
                    .set_len(pos)
                    .map_err(|e| FsError::new("truncate_and_attrs", &item.path, e))?;
                self.restore_attrs(&path, item, Some(out.file.as_fd()))?;
                drop(out.file);
                if let Some(size) = item.size {
                    if size != out.written {
                        return Err(RestoreError::SizeInconsistency {
                            size,
                            written: out.written,
                        });
                    }
                }
                self.note_extracted_master(item, original_path, &path);
                if item.chunks_healthy.is_some() {
                    return Err(RestoreError::DamagedChunks);
                }
            }
            FileKind::Directory => {
                self.make_parent(&path)?;
                if lstat(&path).is_err() {
                    // SAFETY: cpath is NUL-terminated.
                    if unsafe { libc::mkdir(cpath.as_ptr(), 0o777) } != 0 {
                        return Err(FsError::last("mkdir", &item.path).into());
                    }
                }
                if restore_attrs {
                    self.restore_attrs(&path, item, None)?;
                }
            }
            FileKind::Symlink => {
                self.make_parent(&path)?;
                let target = cstring(item.source.as_deref().unwrap_or_default(), "symlink")?;
                // SAFETY: both NUL-terminated.
                if unsafe { libc::symlink(target.as_ptr(), cpath.as_ptr()) } != 0 {
                    return Err(FsError::last("symlink", &item.path).into());
                }
                self.restore_attrs(&path, item, None)?;
            }
            kind @ (FileKind::Fifo | FileKind::CharDevice | FileKind::BlockDevice) => {
                self.make_parent(&path)?;
                if self.link_if_slave(item, &path)?.is_none() {
                    return Ok(());
                }
                // SAFETY: cpath is NUL-terminated.
                let rc = unsafe {
                    if kind == FileKind::Fifo {
                        libc::mkfifo(cpath.as_ptr(), 0o666)
                    } else {
                        libc::mknod(cpath.as_ptr(), mode, item.rdev.unwrap_or(0))
                    }
                };
                if rc != 0 {
                    return Err(FsError::last(
                        if kind == FileKind::Fifo {
                            "mkfifo"
                        } else {
                            "mknod"
                        },
                        &item.path,
                    )
                    .into());
                }
                self.restore_attrs(&path, item, None)?;
                self.note_extracted_master(item, original_path, &path);
            }
            _ => return Err(RestoreError::UnknownType(mode)),
        }
        Ok(())
    }

    /// Borg's `restore_attrs` on `path` (through `fd` when the file is open).
    pub fn restore_attrs(
        &mut self,
        path: &[u8],
        item: &Item,
        fd: Option<BorrowedFd<'_>>,
    ) -> Result<(), RestoreError> {
        let cpath = cstring(path, "attrs")?;
        let mode = item.mode.ok_or(RestoreError::NoMode)?;
        let is_symlink = FileKind::from_mode(mode) == FileKind::Symlink;
        let (uid, gid) = self.item_uid_gid(item);
        // ownership; failures (not root) are ignored as borg ignores them
        // SAFETY: valid descriptor / NUL-terminated path.
        unsafe {
            match fd {
                Some(fd) => libc::fchown(fd.as_raw_fd(), uid, gid),
                None => libc::lchown(cpath.as_ptr(), uid, gid),
            };
        }
        // mode; Linux cannot chmod a symlink, and borg leaves it alone
        let rc = match fd {
            // SAFETY: valid descriptor.
            Some(fd) => unsafe { libc::fchmod(fd.as_raw_fd(), mode & 0o7777) },
            None if is_symlink => 0,
            // SAFETY: NUL-terminated path.
            None => unsafe { libc::chmod(cpath.as_ptr(), mode & 0o7777) },
        };
        if rc != 0 {
            return Err(FsError::last("attrs", path).into());
        }
        if !self.options.noacls {
            if let Err(e) = acl::acl_set(
                fd,
                &cpath,
                mode,
                item.acl_access.as_deref(),
                item.acl_default.as_deref(),
                &mut self.names,
                self.options.numeric_ids,
            ) {
                if !acl::is_not_supported(&e) {
                    return Err(FsError::new("attrs", path, io::Error::from(e)).into());
                }
            }
        }
        if !self.options.noxattrs {
            if let Some(x) = &item.xattrs {
                let target = fd.map_or(Target::Path(&cpath), Target::Fd);
                for w in xattr::set_all(target, x) {
                    self.warnings
                        .push(format!("{}: {w}", display_path(&item.path)));
                }
            }
        }
        let atime = item.atime.unwrap_or(item.mtime);
        let ts = |ns: i64| libc::timespec {
            tv_sec: ns.div_euclid(1_000_000_000),
            tv_nsec: ns.rem_euclid(1_000_000_000),
        };
        let times = [ts(atime), ts(item.mtime)];
        // failures are ignored, as borg ignores them
        // SAFETY: times has two entries; descriptor/path valid.
        unsafe {
            match fd {
                Some(fd) => libc::futimens(fd.as_raw_fd(), times.as_ptr()),
                None => libc::utimensat(
                    libc::AT_FDCWD,
                    cpath.as_ptr(),
                    times.as_ptr(),
                    libc::AT_SYMLINK_NOFOLLOW,
                ),
            };
        }
        if !self.options.noflags {
            if let Some(bsd) = item.bsdflags {
                // set last: the immutable flag would refuse everything after it
                let _ignored = self.set_flags(&cpath, path, bsd, fd);
            }
        }
        Ok(())
    }

    fn set_flags(
        &self,
        cpath: &CString,
        path: &[u8],
        bsd: u32,
        fd: Option<BorrowedFd<'_>>,
    ) -> Result<(), FsError> {
        if let Some(fd) = fd {
            return flags::set_flags(fd, bsd, self.options.flags_dialect, path);
        }
        let st = lstat(path)?;
        if matches!(
            st.kind(),
            FileKind::BlockDevice | FileKind::CharDevice | FileKind::Symlink
        ) {
            return Ok(());
        }
        // SAFETY: cpath is NUL-terminated.
        let raw = unsafe {
            libc::open(
                cpath.as_ptr(),
                libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(FsError::last("set_flags", path));
        }
        // SAFETY: raw is ours.
        let owned = unsafe { OwnedFd::from_raw_fd(raw) };
        flags::set_flags(owned.as_fd(), bsd, self.options.flags_dialect, path)
    }

    /// Borg's `get_item_uid_gid`: with `--numeric-ids` the stored ids; otherwise the local ids
    /// of the stored names, falling back to the stored ids.
    fn item_uid_gid(&mut self, item: &Item) -> (u32, u32) {
        let named = |n: &Option<Option<Vec<u8>>>| n.clone().flatten();
        let uid = if self.options.numeric_ids {
            None
        } else {
            named(&item.user).and_then(|u| self.names.user2uid(&u))
        }
        .or(item.uid)
        .unwrap_or(0);
        let gid = if self.options.numeric_ids {
            None
        } else {
            named(&item.group).and_then(|g| self.names.group2gid(&g))
        }
        .or(item.gid)
        .unwrap_or(0);
        (uid, gid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(path: &str, mode: u32) -> Item {
        Item {
            path: path.as_bytes().to_vec(),
            mode: Some(mode),
            mtime: 1_600_000_000_123_456_789,
            ..Item::default()
        }
    }

    #[test]
    fn refuses_traversal_and_symlinked_parents() {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().as_os_str().as_encoded_bytes().to_vec();
        let mut x = Extractor::new(&dest, RestoreOptions::default());
        let mut none = |_: &[ChunkRef], _: &mut ExtractedFile| Ok(());
        let e = x
            .extract(item("a/../../evil", 0o100644), &mut none)
            .unwrap_err();
        assert!(matches!(e, RestoreError::PathTraversal(_)), "{e}");
        let e = x
            .extract(item("/etc/evil", 0o100644), &mut none)
            .unwrap_err();
        assert!(matches!(e, RestoreError::NotLocal));
        std::os::unix::fs::symlink("/tmp", d.path().join("l")).unwrap();
        let e = x.extract(item("l/evil", 0o100644), &mut none).unwrap_err();
        assert!(matches!(e, RestoreError::SymlinkParent(_)), "{e}");
        let mut slave = item("s", 0o100644);
        slave.source = Some(b"../x".to_vec());
        let e = x.extract(slave, &mut none).unwrap_err();
        assert!(matches!(e, RestoreError::HardlinkSource(_)), "{e}");
    }

    #[test]
    fn slave_of_an_unextracted_master_gets_its_chunks_and_later_slaves_link() {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().as_os_str().as_encoded_bytes().to_vec();
        let mut x = Extractor::new(&dest, RestoreOptions::default());
        let chunk = ChunkRef {
            id: [7u8; 32],
            size: 3,
            csize: 9,
        };
        let mut master = item("a/f", 0o100644);
        master.chunks = Some(vec![chunk]);
        master.size = Some(3);
        master.hardlink_master = Some(true);
        let mut slave = item("b/g", 0o100644);
        slave.source = Some(b"a/f".to_vec());
        let mut slave2 = item("b/h", 0o100644);
        slave2.source = Some(b"a/f".to_vec());
        // a partial extract: the master is not selected
        x.peek_hardlink_master(&master, false);
        let mut seen = Vec::new();
        let mut write = |c: &[ChunkRef], f: &mut ExtractedFile| {
            seen.push(c.to_vec());
            f.write_chunk(b"abc")
                .map_err(|e| RestoreError::Content(e.to_string()))
        };
        x.extract(slave, &mut write).unwrap();
        x.extract(slave2, &mut write).unwrap();
        assert_eq!(
            seen,
            vec![vec![chunk]],
            "only the first slave fetches content"
        );
        let g = lstat(&join(&dest, b"b/g")).unwrap();
        let h = lstat(&join(&dest, b"b/h")).unwrap();
        assert_eq!((g.ino, g.nlink), (h.ino, 2));
    }

    #[test]
    fn directories_get_times_after_contents_and_strip_components() {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().as_os_str().as_encoded_bytes().to_vec();
        let mut x = Extractor::new(
            &dest,
            RestoreOptions {
                strip_components: 1,
                ..Default::default()
            },
        );
        let mut write = |_: &[ChunkRef], f: &mut ExtractedFile| {
            f.write_chunk(b"hello")
                .map_err(|e| RestoreError::Content(e.to_string()))
        };
        assert!(!x.extract(item("top", 0o040755), &mut write).unwrap());
        assert!(x.extract(item("top/dir", 0o040700), &mut write).unwrap());
        let mut f = item("top/dir/f", 0o100600);
        f.size = Some(5);
        assert!(x.extract(f, &mut write).unwrap());
        x.finish();
        assert!(x.warnings.is_empty(), "{:?}", x.warnings);
        let st = lstat(&join(&dest, b"dir")).unwrap();
        assert_eq!(st.mtime_ns, 1_600_000_000_123_456_789);
        assert_eq!(st.mode & 0o7777, 0o700);
        assert_eq!(std::fs::read(d.path().join("dir/f")).unwrap(), b"hello");
    }
}
