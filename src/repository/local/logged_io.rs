//! Where segment bytes go: the `data/` directory tree and its files (borg's `LoggedIO`).
//!
//! Segment N lives at `data/<N / segments_per_dir>/<N>`. Writes go to one open segment at a
//! time; a new one starts after a write takes it past `max_segment_size`, for any write of the
//! manifest, and for every final COMMIT. Closing a segment syncs it and its directory, so a
//! COMMIT that returned is on disk.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use super::segment::{
    self, read_full, Entry, EntryHeader, SegmentError, COMMIT_ENTRY, HEADER_SIZE, MAGIC, MAGIC_LEN,
    MAX_DATA_SIZE, PUT_HEADER_SIZE, TAG_PUT,
};
use crate::repository::{ObjectId, RepositoryError, MANIFEST_ID};

/// Read file handles kept open at most (borg's LRU holds 90).
const FD_CACHE: usize = 64;

/// A write did not fit and the caller asked to be told instead of rolling over
/// (`LoggedIO.SegmentFull`).
#[derive(Debug)]
pub struct SegmentFull;

fn io_err(context: impl Into<String>, e: io::Error) -> RepositoryError {
    RepositoryError::io(context, e)
}

fn integrity(e: SegmentError) -> RepositoryError {
    RepositoryError::IntegrityError(e.to_string())
}

/// Syncs a directory so renames, creations and deletions in it are durable.
pub fn sync_dir(path: &Path) -> Result<(), RepositoryError> {
    let dir = File::open(path).map_err(|e| io_err(format!("open {}", path.display()), e))?;
    dir.sync_all()
        .map_err(|e| io_err(format!("fsync {}", path.display()), e))
}

/// The segment files of a repository.
pub struct LoggedIo {
    path: PathBuf,
    limit: u64,
    segments_per_dir: u64,
    /// The number the next opened write segment gets (the open one while writing).
    pub segment: u64,
    offset: u64,
    write_fd: Option<BufWriter<File>>,
    fds: HashMap<u64, File>,
    /// A segment write failed with ENOSPC since the last [`LoggedIo::take_out_of_space`].
    out_of_space: bool,
}

impl LoggedIo {
    /// The segment files under `repo/data`.
    pub fn new(repo: &Path, limit: u64, segments_per_dir: u64) -> LoggedIo {
        let mut io = LoggedIo {
            path: repo.to_path_buf(),
            limit,
            segments_per_dir: segments_per_dir.max(1),
            segment: 0,
            offset: 0,
            write_fd: None,
            fds: HashMap::new(),
            out_of_space: false,
        };
        io.segment = io.latest_segment().map_or(0, |s| s + 1);
        io
    }

    /// The path of segment `n`.
    pub fn segment_filename(&self, n: u64) -> PathBuf {
        self.path
            .join("data")
            .join((n / self.segments_per_dir).to_string())
            .join(n.to_string())
    }

    fn numeric_entries(dir: &Path) -> Vec<(u64, PathBuf)> {
        let Ok(rd) = fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut out: Vec<(u64, PathBuf)> = rd
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                Some((name.parse().ok()?, e.path()))
            })
            .collect();
        out.sort();
        out
    }

    /// Every segment file in ascending order (`segment_iterator`), including empty ones.
    pub fn segments(&self) -> Vec<(u64, PathBuf)> {
        let mut out = Vec::new();
        for (_, dir) in Self::numeric_entries(&self.path.join("data")) {
            if !dir.is_dir() {
                continue;
            }
            out.extend(
                Self::numeric_entries(&dir)
                    .into_iter()
                    .filter(|(_, p)| p.is_file()),
            );
        }
        out
    }

    /// The highest segment number on disk.
    pub fn latest_segment(&self) -> Option<u64> {
        self.segments().last().map(|(n, _)| *n)
    }

    /// The newest committed segment (`get_segments_transaction_id`).
    pub fn segments_transaction_id(&self) -> Option<u64> {
        self.segments()
            .into_iter()
            .rev()
            .find(|(n, _)| self.is_committed_segment(*n))
            .map(|(n, _)| n)
    }

    /// Whether a segment is committed (`is_committed_segment`).
    pub fn is_committed_segment(&self, n: u64) -> bool {
        let path = self.segment_filename(n);
        // Cheap test first: the last 9 bytes must be a COMMIT.
        let Ok(mut f) = File::open(&path) else {
            return false;
        };
        let Ok(len) = f.metadata().map(|m| m.len()) else {
            return false;
        };
        if len < MAGIC_LEN + HEADER_SIZE as u64 {
            return false;
        }
        let mut tail = [0u8; HEADER_SIZE];
        if f.seek(SeekFrom::End(-(HEADER_SIZE as i64))).is_err() || f.read_exact(&mut tail).is_err()
        {
            return false;
        }
        if tail != COMMIT_ENTRY {
            return false;
        }
        match File::open(&path) {
            Ok(f) => segment::entries_end_committed(BufReader::with_capacity(1 << 20, f)),
            Err(_) => false,
        }
    }

    /// Deletes every segment after `transaction_id` and makes the next write segment
    /// `transaction_id + 1` (`cleanup`).
    pub fn cleanup(&mut self, transaction_id: Option<u64>) -> Result<(), RepositoryError> {
        self.close_segment()?;
        let first_bad = transaction_id.map_or(0, |t| t + 1);
        self.segment = first_bad;
        for (n, _) in self.segments().into_iter().rev() {
            if n < first_bad {
                break;
            }
            self.delete_segment(n)?;
        }
        Ok(())
    }

    /// Whether a segment exists and is not empty (`segment_exists`).
    pub fn segment_exists(&self, n: u64) -> bool {
        fs::metadata(self.segment_filename(n)).is_ok_and(|m| m.len() > 0)
    }

    /// A segment's size in bytes.
    pub fn segment_size(&self, n: u64) -> Result<u64, RepositoryError> {
        let p = self.segment_filename(n);
        fs::metadata(&p)
            .map(|m| m.len())
            .map_err(|e| io_err(format!("stat {}", p.display()), e))
    }

    /// The first 8 bytes of a segment.
    pub fn segment_magic(&mut self, n: u64) -> Result<[u8; 8], RepositoryError> {
        let mut magic = [0u8; 8];
        let f = self.get_fd(n)?;
        f.seek(SeekFrom::Start(0))
            .and_then(|_| f.read_exact(&mut magic))
            .map_err(|e| io_err(format!("read segment {n}"), e))?;
        Ok(magic)
    }

    /// Deletes a segment file (`delete_segment`).
    pub fn delete_segment(&mut self, n: u64) -> Result<(), RepositoryError> {
        self.fds.remove(&n);
        let p = self.segment_filename(n);
        match fs::remove_file(&p) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(io_err(format!("delete {}", p.display()), e))
            }
            _ => Ok(()),
        }
    }

    /// Removes empty `data/N` directories (`clear_empty_dirs`).
    pub fn clear_empty_dirs(&self) -> Result<(), RepositoryError> {
        let data = self.path.join("data");
        for (_, dir) in Self::numeric_entries(&data) {
            let _ = fs::remove_dir(dir);
        }
        sync_dir(&data)
    }

    fn get_fd(&mut self, n: u64) -> Result<&mut File, RepositoryError> {
        if !self.fds.contains_key(&n) {
            if self.fds.len() >= FD_CACHE {
                self.fds.clear();
            }
            let p = self.segment_filename(n);
            let f = File::open(&p).map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => RepositoryError::IntegrityError(format!(
                    "Segment file {} is missing. Run borg check (full check, not \
                     --archives-only) and then borg check --repair to fix the repository.",
                    p.display()
                )),
                _ => io_err(format!("open {}", p.display()), e),
            })?;
            self.fds.insert(n, f);
        }
        self.fds
            .get_mut(&n)
            .ok_or_else(|| RepositoryError::IntegrityError(format!("segment {n} unavailable")))
    }

    /// Hands buffered writes of the open segment to the OS (no fsync).
    pub fn flush(&mut self) -> Result<(), RepositoryError> {
        self.flush_write()
    }

    /// Flushes buffered writes of the open segment so reads see them.
    fn flush_write(&mut self) -> Result<(), RepositoryError> {
        if let Some(w) = self.write_fd.as_mut() {
            if let Err(e) = w.flush() {
                return Err(self.write_failed(format!("write segment {}", self.segment), e));
            }
        }
        Ok(())
    }

    /// Reads the PUT of `id` at (segment, offset), checking its header, key and CRC
    /// (`LoggedIO.read`). With `read_data` false returns only the entry size.
    pub fn read(
        &mut self,
        n: u64,
        offset: u64,
        id: &ObjectId,
        read_data: bool,
    ) -> Result<(u32, Vec<u8>), RepositoryError> {
        if n == self.segment && self.write_fd.is_some() {
            self.flush_write()?;
        }
        let f = self.get_fd(n)?;
        let ctx = |e| io_err(format!("read segment {n}"), e);
        f.seek(SeekFrom::Start(offset)).map_err(ctx)?;
        let mut header = [0u8; PUT_HEADER_SIZE];
        let got = read_full(f, &mut header).map_err(ctx)?;
        if got < PUT_HEADER_SIZE {
            return Err(integrity(SegmentError::ShortHeader { segment: n, offset }));
        }
        let mut head9 = [0u8; HEADER_SIZE];
        head9.copy_from_slice(&header[..HEADER_SIZE]);
        let h = EntryHeader::parse(&head9);
        if h.size as usize > segment::MAX_OBJECT_SIZE || (h.size as usize) < PUT_HEADER_SIZE {
            // Borg checks sizes against the 41-byte PUT header here.
            let what = if h.size as usize > segment::MAX_OBJECT_SIZE {
                "too big"
            } else {
                "too small"
            };
            return Err(integrity(SegmentError::BadSize {
                size: h.size,
                what,
                segment: n,
                offset,
            }));
        }
        let length = h.size as usize - PUT_HEADER_SIZE;
        let mut data = Vec::new();
        if read_data {
            data = vec![0u8; length];
            let got = read_full(f, &mut data).map_err(ctx)?;
            if got != length {
                return Err(integrity(SegmentError::ShortData {
                    segment: n,
                    offset,
                    expected: length,
                    got,
                }));
            }
            if segment::entry_crc(&[&header[4..], &data]) != h.crc {
                return Err(integrity(SegmentError::Checksum { segment: n, offset }));
            }
        }
        if h.tag != TAG_PUT {
            return Err(integrity(SegmentError::BadTag { segment: n, offset }));
        }
        if &header[HEADER_SIZE..] != id {
            return Err(integrity(SegmentError::WrongId { segment: n, offset }));
        }
        Ok((h.size, data))
    }

    /// Parses every entry of a segment from `offset` (0 = from the start, checking the magic),
    /// with CRC checks (`iter_objects`). Returns the entries read before the first error, and
    /// the error if there was one.
    pub fn iter_objects(&mut self, n: u64, offset: u64) -> (Vec<Entry>, Option<RepositoryError>) {
        let mut out = Vec::new();
        if n == self.segment && self.write_fd.is_some() {
            if let Err(e) = self.flush_write() {
                return (out, Some(e));
            }
        }
        let path = self.segment_filename(n);
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) => return (out, Some(io_err(format!("open {}", path.display()), e))),
        };
        if offset > 0 {
            if let Err(e) = file.seek(SeekFrom::Start(offset)) {
                return (out, Some(io_err(format!("seek {}", path.display()), e)));
            }
        }
        let mut entries =
            segment::EntryReader::new(BufReader::with_capacity(1 << 20, file), n, offset);
        if offset == 0 {
            if let Err(e) = entries.read_magic() {
                return (out, Some(integrity(e)));
            }
        }
        loop {
            match entries.next_entry() {
                Ok(Some((entry, _))) => out.push(entry),
                Ok(None) => return (out, None),
                Err(e) => return (out, Some(integrity(e))),
            }
        }
    }

    /// Lists the entries of a segment from `offset` (0 = from the start, checking the magic)
    /// by their headers alone, as borg's `iter_objects(read_data=False)` does for
    /// `Repository.scan`: no CRC is checked and data is skipped by seeking, so a damaged
    /// payload is still listed, and an entry cut short at the end of the file too. Only a bad
    /// header (short, size out of bounds, short key, unknown tag) ends the listing; the
    /// entries before it are returned with the error.
    pub fn list_objects(&mut self, n: u64, offset: u64) -> (Vec<Entry>, Option<RepositoryError>) {
        let mut out = Vec::new();
        let err = self
            .visit_objects(n, offset, &mut |e| {
                out.push(e);
                true
            })
            .err();
        (out, err)
    }

    /// [`LoggedIo::list_objects`] one entry at a time: `visit` gets each entry in order and
    /// returns whether to go on. `Repository.scan` stops as soon as it has `limit` ids, as
    /// borg's generator does, instead of listing the rest of a (up to 500 MiB) segment on
    /// every call.
    pub fn visit_objects(
        &mut self,
        n: u64,
        mut offset: u64,
        visit: &mut dyn FnMut(Entry) -> bool,
    ) -> Result<(), RepositoryError> {
        if n == self.segment && self.write_fd.is_some() {
            self.flush_write()?;
        }
        let path = self.segment_filename(n);
        let ctx = |e| io_err(format!("read {}", path.display()), e);
        // A small buffer: most of each entry is skipped, so only headers are worth buffering.
        let mut f = BufReader::new(File::open(&path).map_err(ctx)?);
        f.seek(SeekFrom::Start(offset)).map_err(ctx)?;
        if offset == 0 {
            let mut magic = [0u8; MAGIC_LEN as usize];
            if read_full(&mut f, &mut magic).map_err(ctx)? != magic.len() || &magic != MAGIC {
                return Err(integrity(SegmentError::BadMagic { segment: n }));
            }
            offset = MAGIC_LEN;
        }
        loop {
            let mut head = [0u8; HEADER_SIZE];
            match read_full(&mut f, &mut head).map_err(ctx)? {
                0 => return Ok(()),
                HEADER_SIZE => {}
                _ => return Err(integrity(SegmentError::ShortHeader { segment: n, offset })),
            }
            let h = EntryHeader::parse(&head);
            let size = h.size as usize;
            if !(HEADER_SIZE..=segment::MAX_OBJECT_SIZE).contains(&size) {
                let what = if size > segment::MAX_OBJECT_SIZE {
                    "too big"
                } else {
                    "too small"
                };
                return Err(integrity(SegmentError::BadSize {
                    size: h.size,
                    what,
                    segment: n,
                    offset,
                }));
            }
            let mut key = None;
            if h.tag == TAG_PUT || h.tag == segment::TAG_DELETE {
                let mut k = [0u8; 32];
                let got = read_full(&mut f, &mut k).map_err(ctx)?;
                if got != k.len() {
                    return Err(integrity(SegmentError::ShortData {
                        segment: n,
                        offset,
                        expected: k.len(),
                        got,
                    }));
                }
                key = Some(k);
            }
            if h.tag > segment::TAG_COMMIT {
                return Err(integrity(SegmentError::BadTag { segment: n, offset }));
            }
            let go_on = visit(Entry {
                tag: h.tag,
                key,
                offset,
                size: h.size,
            });
            if !go_on {
                return Ok(());
            }
            // Like a Python seek, this may go past the end; the next read then ends the list.
            let consumed = HEADER_SIZE + if key.is_some() { 32 } else { 0 };
            f.seek_relative(size as i64 - consumed as i64)
                .map_err(ctx)?;
            offset += size as u64;
        }
    }

    /// A streaming reader over a whole segment, its magic already checked.
    pub fn open_reader(
        &mut self,
        n: u64,
    ) -> Result<segment::EntryReader<BufReader<File>>, RepositoryError> {
        if n == self.segment && self.write_fd.is_some() {
            self.flush_write()?;
        }
        let path = self.segment_filename(n);
        let file = File::open(&path).map_err(|e| io_err(format!("open {}", path.display()), e))?;
        let mut entries = segment::EntryReader::new(BufReader::with_capacity(1 << 20, file), n, 0);
        entries.read_magic().map_err(integrity)?;
        Ok(entries)
    }

    /// Rewrites a damaged segment keeping only its sound entries (`recover_segment`).
    pub fn recover_segment(&mut self, n: u64) -> Result<(), RepositoryError> {
        self.fds.remove(&n);
        let path = self.segment_filename(n);
        let bytes = fs::read(&path).map_err(|e| io_err(format!("read {}", path.display()), e))?;
        let recovered = segment::recover(&bytes);
        save_file(&path, &recovered)
    }

    fn open_write_fd(
        &mut self,
        no_new: bool,
        want_new: bool,
        raise_full: bool,
    ) -> Result<Result<(), SegmentFull>, RepositoryError> {
        if !no_new && (want_new || (self.offset > 0 && self.offset > self.limit)) {
            // Borg raises even when no segment is open (e.g. for the manifest), which makes
            // compaction write an intermediate COMMIT into a segment of its own.
            if raise_full {
                return Ok(Err(SegmentFull));
            }
            self.close_segment()?;
        }
        if self.write_fd.is_none() {
            let dir = self
                .path
                .join("data")
                .join((self.segment / self.segments_per_dir).to_string());
            if !dir.exists() {
                fs::create_dir_all(&dir)
                    .map_err(|e| io_err(format!("create {}", dir.display()), e))?;
                sync_dir(&self.path.join("data"))?;
            }
            let p = self.segment_filename(self.segment);
            let f = match OpenOptions::new().write(true).create_new(true).open(&p) {
                Ok(f) => f,
                Err(e) => {
                    return Err(self.write_failed(format!("create segment {}", p.display()), e))
                }
            };
            let mut w = BufWriter::with_capacity(1 << 20, f);
            if let Err(e) = w.write_all(MAGIC) {
                return Err(self.write_failed(format!("write {}", p.display()), e));
            }
            self.offset = MAGIC_LEN;
            self.fds.remove(&self.segment);
            self.write_fd = Some(w);
        }
        Ok(Ok(()))
    }

    fn append(&mut self, bytes: &[u8]) -> Result<(u64, u64), RepositoryError> {
        let n = self.segment;
        let offset = self.offset;
        let w = self
            .write_fd
            .as_mut()
            .ok_or_else(|| RepositoryError::IntegrityError("no open segment".into()))?;
        if let Err(e) = w.write_all(bytes) {
            return Err(self.write_failed(format!("write segment {n}"), e));
        }
        self.offset += bytes.len() as u64;
        Ok((n, offset))
    }

    /// Writes a PUT; returns (segment, offset) or `SegmentFull` when `raise_full` and the
    /// segment is full (`write_put`).
    pub fn write_put(
        &mut self,
        id: &ObjectId,
        data: &[u8],
        raise_full: bool,
    ) -> Result<Result<(u64, u64), SegmentFull>, RepositoryError> {
        if data.len() > MAX_DATA_SIZE {
            return Err(RepositoryError::IntegrityError(format!(
                "More than allowed put data [{} > {MAX_DATA_SIZE}]",
                data.len()
            )));
        }
        if let Err(full) = self.open_write_fd(false, id == &MANIFEST_ID, raise_full)? {
            return Ok(Err(full));
        }
        let header = segment::put_header(id, data);
        let (n, offset) = self.append(&header)?;
        self.append(data)?;
        Ok(Ok((n, offset)))
    }

    /// Writes a DELETE; returns (segment, entry size) (`write_delete`).
    pub fn write_delete(
        &mut self,
        id: &ObjectId,
        raise_full: bool,
    ) -> Result<Result<(u64, u64), SegmentFull>, RepositoryError> {
        if let Err(full) = self.open_write_fd(false, id == &MANIFEST_ID, raise_full)? {
            return Ok(Err(full));
        }
        let (n, _) = self.append(&segment::delete_entry(id))?;
        Ok(Ok((n, PUT_HEADER_SIZE as u64)))
    }

    /// Writes a COMMIT and closes the segment; a final commit goes into a new segment of its
    /// own, an intermediate one is appended to the current segment after syncing it
    /// (`write_commit`). Returns the segment holding the COMMIT.
    pub fn write_commit(&mut self, intermediate: bool) -> Result<u64, RepositoryError> {
        if intermediate {
            self.sync_write()?;
        }
        let _ = self.open_write_fd(intermediate, !intermediate, false)?;
        let (n, _) = self.append(&COMMIT_ENTRY)?;
        self.close_segment()?;
        Ok(n)
    }

    fn sync_write(&mut self) -> Result<(), RepositoryError> {
        if let Some(w) = self.write_fd.as_mut() {
            let n = self.segment;
            if let Err(e) = w.flush().and_then(|_| w.get_ref().sync_data()) {
                return Err(self.write_failed(format!("sync segment {n}"), e));
            }
            // Like borg's SyncFile.sync: what was just written need not stay in the page
            // cache. Advisory only, so its result does not matter.
            // SAFETY: the descriptor is open for the lifetime of the call.
            unsafe {
                libc::posix_fadvise(w.get_ref().as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
            }
        }
        Ok(())
    }

    /// Syncs and closes the open segment, syncing its directory (`close_segment`).
    pub fn close_segment(&mut self) -> Result<(), RepositoryError> {
        if self.write_fd.is_some() {
            self.sync_write()?;
            self.write_fd = None;
            let n = self.segment;
            self.segment += 1;
            self.offset = 0;
            if let Some(dir) = self.segment_filename(n).parent() {
                sync_dir(dir)?;
            }
        }
        Ok(())
    }

    /// The error for a failed segment write; remembers ENOSPC, so that the caller's rollback
    /// can free the space the transaction took.
    fn write_failed(&mut self, context: String, e: io::Error) -> RepositoryError {
        if e.raw_os_error() == Some(libc::ENOSPC) {
            self.out_of_space = true;
        }
        io_err(context, e)
    }

    /// Whether a segment write ran out of space since the last
    /// [`LoggedIo::take_out_of_space`].
    pub fn is_out_of_space(&self) -> bool {
        self.out_of_space
    }

    /// Returns whether a segment write ran out of space, and forgets it.
    pub fn take_out_of_space(&mut self) -> bool {
        std::mem::take(&mut self.out_of_space)
    }

    /// Drops the open segment without syncing (used when a transaction is abandoned; the
    /// file is removed by the next cleanup).
    pub fn abandon(&mut self) {
        if let Some(mut w) = self.write_fd.take() {
            let _ = w.flush();
            self.segment += 1;
            self.offset = 0;
        }
        self.fds.clear();
    }
}

/// Writes a file atomically: a temp file in the same directory, fsync, rename over the
/// target, fsync the directory (borg's `SaveFile`).
pub fn save_file(path: &Path, bytes: &[u8]) -> Result<(), RepositoryError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut rnd = [0u8; 4];
    let _ = getrandom::fill(&mut rnd);
    let tmp = dir.join(format!("{name}-{}.tmp", hex::encode(rnd)));
    let ctx = |e| io_err(format!("write {}", path.display()), e);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(ctx)?;
        f.write_all(bytes).map_err(ctx)?;
        f.sync_all().map_err(ctx)?;
        fs::rename(&tmp, path).map_err(ctx)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}
