//! borg's fixed-size chunker (`ChunkerFixed` in `chunker.pyx`): an optional header chunk, then
//! blocks of one size, cut separately inside each range of a file map. With `--sparse` the map
//! comes from `SEEK_DATA`/`SEEK_HOLE`, and holes are skipped by seeking instead of reading.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

use super::params::{ChunkerParamsError, MAX_DATA_SIZE};
use super::{is_all_zero, Allocation, ChunkRef, ChunkSource};

/// One range of a file map, borg's `(start, length, is_data)` tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileRange {
    /// Offset of the range in the file.
    pub start: u64,
    /// Length of the range.
    pub len: u64,
    /// `true` for data, `false` for a hole.
    pub is_data: bool,
}

type SeekFn<R> = fn(&mut R, SeekFrom) -> io::Result<u64>;

/// The fixed-size chunker.
pub struct FixedChunker<R> {
    reader: R,
    block_size: usize,
    ranges: VecDeque<FileRange>,
    /// Present when the reader can seek (sparse mode); holes and gaps need it.
    seek: Option<SeekFn<R>>,
    offset: u64,
    buf: Vec<u8>,
    done: bool,
}

/// borg's "whole file is data" map: the header range, then an endless data range.
fn dense_map(header_size: usize) -> VecDeque<FileRange> {
    let mut m = VecDeque::new();
    if header_size > 0 {
        m.push_back(FileRange {
            start: 0,
            len: header_size as u64,
            is_data: true,
        });
    }
    m.push_back(FileRange {
        start: header_size as u64,
        len: 1 << 62,
        is_data: true,
    });
    m
}

fn check_sizes(block_size: usize, header_size: usize) -> Result<(), ChunkerParamsError> {
    if block_size == 0 {
        return Err(ChunkerParamsError::BlockTooSmall);
    }
    if block_size > MAX_DATA_SIZE || header_size > MAX_DATA_SIZE {
        return Err(ChunkerParamsError::BlockTooLarge);
    }
    Ok(())
}

impl<R: Read> FixedChunker<R> {
    /// A chunker that reads the whole input (no sparse handling), reading from the current
    /// position as if it were offset 0.
    pub fn new(
        reader: R,
        block_size: usize,
        header_size: usize,
    ) -> Result<Self, ChunkerParamsError> {
        check_sizes(block_size, header_size)?;
        Ok(FixedChunker {
            reader,
            block_size,
            ranges: dense_map(header_size),
            seek: None,
            offset: 0,
            buf: vec![0; block_size],
            done: false,
        })
    }

    /// Reads up to `want` bytes into the buffer, short only at EOF.
    fn read_block(&mut self, want: usize) -> io::Result<usize> {
        let mut got = 0;
        while got < want {
            match self.reader.read(&mut self.buf[got..want]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(got)
    }

    fn seek_to(&mut self, to: SeekFrom) -> io::Result<u64> {
        match self.seek {
            Some(f) => f(&mut self.reader, to),
            None => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the fixed chunker's file map needs a seekable input",
            )),
        }
    }
}

impl<R: Read + Seek> FixedChunker<R> {
    /// A chunker driven by an explicit file map (borg's `fmap`): only the listed ranges are
    /// read, holes are seeked over and yield [`Allocation::Hole`] chunks.
    pub fn with_map(
        reader: R,
        block_size: usize,
        map: Vec<FileRange>,
    ) -> Result<Self, ChunkerParamsError> {
        check_sizes(block_size, 0)?;
        Ok(FixedChunker {
            reader,
            block_size,
            ranges: map.into(),
            seek: Some(|r: &mut R, to| r.seek(to)),
            offset: 0,
            buf: vec![0; block_size],
            done: false,
        })
    }
}

impl FixedChunker<File> {
    /// borg's `ChunkerFixed(block, header, sparse=True)`: maps the file's data and holes with
    /// `SEEK_DATA`/`SEEK_HOLE` (after the header) and chunks each range separately. If the
    /// file cannot be mapped, falls back to reading it whole, as borg does. Expects the file
    /// positioned at 0.
    pub fn sparse(
        mut file: File,
        block_size: usize,
        header_size: usize,
    ) -> Result<Self, ChunkerParamsError> {
        check_sizes(block_size, header_size)?;
        let map = (|| -> io::Result<Vec<FileRange>> {
            let mut map = Vec::new();
            if header_size > 0 {
                map.push(FileRange {
                    start: 0,
                    len: header_size as u64,
                    is_data: true,
                });
                file.seek(SeekFrom::Start(header_size as u64))?;
                let body = sparse_map(&mut file);
                file.seek(SeekFrom::Start(0))?;
                map.extend(body?);
            } else {
                map.extend(sparse_map(&mut file)?);
            }
            Ok(map)
        })();
        Ok(FixedChunker {
            reader: file,
            block_size,
            ranges: match map {
                Ok(m) => m.into(),
                Err(_) => dense_map(header_size),
            },
            seek: Some(|r: &mut File, to| r.seek(to)),
            offset: 0,
            buf: vec![0; block_size],
            done: false,
        })
    }
}

/// borg's `sparsemap`: the data and hole ranges from the file's current position to its end,
/// found with `SEEK_HOLE`/`SEEK_DATA`. The file position is restored afterwards.
pub fn sparse_map(file: &mut File) -> io::Result<Vec<FileRange>> {
    use std::os::unix::io::AsRawFd;
    let fd = file.as_raw_fd();
    let curr = file.stream_position()?;
    let file_len = file.seek(SeekFrom::End(0))?;
    let result = (|| {
        let mut out = Vec::new();
        let mut start = curr;
        let mut whence = libc::SEEK_HOLE;
        loop {
            let is_data = whence == libc::SEEK_HOLE;
            // SAFETY: lseek on a descriptor we borrow from a live File; no memory is touched.
            let end = unsafe { libc::lseek(fd, start as libc::off_t, whence) };
            if end < 0 {
                let err = io::Error::last_os_error();
                if err.raw_os_error() == Some(libc::ENXIO) {
                    // A hole that runs to EOF cannot be found with SEEK_DATA.
                    if !is_data && start < file_len {
                        out.push(FileRange {
                            start,
                            len: file_len - start,
                            is_data,
                        });
                    }
                    return Ok(out);
                }
                return Err(err);
            }
            let end = end as u64;
            if end > start {
                out.push(FileRange {
                    start,
                    len: end - start,
                    is_data,
                });
            }
            start = end;
            whence = if is_data {
                libc::SEEK_DATA
            } else {
                libc::SEEK_HOLE
            };
        }
    })();
    file.seek(SeekFrom::Start(curr))?;
    result
}

impl<R: Read> ChunkSource for FixedChunker<R> {
    fn read_chunk(&mut self) -> io::Result<Option<ChunkRef<'_>>> {
        loop {
            if self.done {
                return Ok(None);
            }
            let Some(range) = self.ranges.front_mut() else {
                self.done = true;
                return Ok(None);
            };
            if range.len == 0 {
                self.ranges.pop_front();
                continue;
            }
            let (start, len, is_data) = (range.start, range.len, range.is_data);
            if start != self.offset {
                // The map need not cover the file contiguously.
                self.offset = start;
                self.seek_to(SeekFrom::Start(start))?;
            }
            let wanted = len.min(self.block_size as u64) as usize;
            let got = if is_data {
                self.read_block(wanted)?
            } else {
                let pos = self.seek_to(SeekFrom::Current(wanted as i64))?;
                (pos - self.offset) as usize
            };
            if got < wanted {
                // Like borg: a short block means EOF, whatever the map says.
                self.done = true;
            }
            if got == 0 {
                continue;
            }
            self.offset += got as u64;
            if let Some(r) = self.ranges.front_mut() {
                r.len -= got as u64;
                r.start += got as u64;
            }
            let chunk = if !is_data {
                ChunkRef {
                    allocation: Allocation::Hole,
                    size: got,
                    data: None,
                }
            } else if is_all_zero(&self.buf[..got]) {
                ChunkRef {
                    allocation: Allocation::Alloc,
                    size: got,
                    data: None,
                }
            } else {
                ChunkRef {
                    allocation: Allocation::Data,
                    size: got,
                    data: Some(&self.buf[..got]),
                }
            };
            return Ok(Some(chunk));
        }
    }
}

impl<R: Read> Iterator for FixedChunker<R> {
    type Item = io::Result<super::Chunk>;
    fn next(&mut self) -> Option<Self::Item> {
        self.read_chunk()
            .map(|c| c.map(|c| c.to_owned_chunk()))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn header_then_blocks() {
        let data: Vec<u8> = (0..8_388_608u32).map(|i| (i % 251) as u8 + 1).collect();
        let sizes: Vec<usize> = FixedChunker::new(&data[..], 1_000_000, 12345)
            .unwrap()
            .map(|c| c.unwrap().size)
            .collect();
        let mut want = vec![12345];
        want.extend([1_000_000; 8]);
        want.push(376263);
        assert_eq!(sizes, want);
    }

    #[test]
    fn header_longer_than_a_block_is_cut_in_blocks() {
        // borg 1.2.4: ChunkerFixed(100, 250) on 520 bytes -> [100, 100, 50, 100, 100, 70]
        let data = vec![b'x'; 520];
        let sizes: Vec<usize> = FixedChunker::new(&data[..], 100, 250)
            .unwrap()
            .map(|c| c.unwrap().size)
            .collect();
        assert_eq!(sizes, [100, 100, 50, 100, 100, 70]);
    }

    #[test]
    fn zero_blocks_are_alloc() {
        let mut data = vec![0u8; 300];
        data[150] = 1;
        let chunks: Vec<_> = FixedChunker::new(&data[..], 100, 0)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let kinds: Vec<_> = chunks.iter().map(|c| c.allocation).collect();
        assert_eq!(
            kinds,
            [Allocation::Alloc, Allocation::Data, Allocation::Alloc]
        );
        assert_eq!(chunks[1].data.as_deref(), Some(&data[100..200]));
    }

    #[test]
    fn empty_input() {
        assert_eq!(FixedChunker::new(&b""[..], 64, 10).unwrap().count(), 0);
    }

    #[test]
    fn sparse_file_matches_borg_observation() {
        // crypto.md §4.5: 6 MiB file, data at 0 (4 KiB) and 3 MiB (8 KiB), BLOCK 1 MiB.
        let mut f = tempfile::tempfile().unwrap();
        f.set_len(6 << 20).unwrap();
        f.write_all(&[1u8; 4096]).unwrap();
        f.seek(SeekFrom::Start(3 << 20)).unwrap();
        f.write_all(&[2u8; 8192]).unwrap();
        f.seek(SeekFrom::Start(0)).unwrap();
        let map = sparse_map(&mut f).unwrap();
        if map.len() == 1 {
            // The file system does not report holes; nothing sparse to test here.
            panic!("temp file system reports no holes: {map:?}");
        }
        let chunks: Vec<_> = FixedChunker::sparse(f, 1 << 20, 0)
            .unwrap()
            .map(Result::unwrap)
            .map(|c| (c.size, c.allocation))
            .collect();
        use Allocation::*;
        assert_eq!(
            chunks,
            [
                (4096, Data),
                (1048576, Hole),
                (1048576, Hole),
                (1044480, Hole),
                (8192, Data),
                (1048576, Hole),
                (1048576, Hole),
                (1040384, Hole)
            ]
        );
    }
}
