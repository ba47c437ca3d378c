//! The bytes of a segment file (borg's `LoggedIO` format), without any I/O.
//!
//! A segment starts with the magic `BORG_SEG` and holds entries back to back. Each entry is
//! `crc32 (u32 LE) | size (u32 LE) | tag (u8) | [key (32)] | [data]`, where `size` counts the
//! whole entry and the CRC covers everything after the CRC field.

use std::io::{self, Read};

use crate::repository::ObjectId;

/// The magic at the start of every segment file.
pub const MAGIC: &[u8; 8] = b"BORG_SEG";
/// The magic of an Attic segment, which borg refuses to open without `borg upgrade`.
pub const ATTIC_MAGIC: &[u8; 8] = b"ATTICSEG";
/// Length of the magic.
pub const MAGIC_LEN: u64 = 8;
/// Size of the common entry header: crc, size, tag.
pub const HEADER_SIZE: usize = 9;
/// Size of a PUT/DELETE header: the common header plus the 32-byte key.
pub const PUT_HEADER_SIZE: usize = 41;
/// Largest entry borg accepts (`MAX_OBJECT_SIZE`, 20 MiB).
pub const MAX_OBJECT_SIZE: usize = 20 * 1024 * 1024;
/// Largest object data a PUT may carry (`MAX_DATA_SIZE`).
pub const MAX_DATA_SIZE: usize = MAX_OBJECT_SIZE - PUT_HEADER_SIZE;
/// Tags above this are treated as corruption (`MAX_TAG_ID`).
pub const MAX_TAG_ID: u8 = 15;

/// Tag of an entry that stores an object.
pub const TAG_PUT: u8 = 0;
/// Tag of an entry that deletes an object.
pub const TAG_DELETE: u8 = 1;
/// Tag of the entry that ends a transaction.
pub const TAG_COMMIT: u8 = 2;

/// The complete COMMIT entry; its bytes never change.
pub const COMMIT_ENTRY: [u8; HEADER_SIZE] = [0x40, 0xf4, 0x3c, 0x25, 0x09, 0, 0, 0, TAG_COMMIT];

/// What is wrong with an entry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SegmentError {
    /// Reading the segment file failed.
    #[error("Segment read error [segment {segment}, offset {offset}]: {message}")]
    Io {
        /// The segment number.
        segment: u64,
        /// Where reading failed.
        offset: u64,
        /// The I/O error.
        message: String,
    },
    /// The file does not start with `BORG_SEG`.
    #[error("Invalid segment magic [segment {segment}, offset 0]")]
    BadMagic {
        /// The segment number.
        segment: u64,
    },
    /// The header is cut short.
    #[error("Invalid segment entry header [segment {segment}, offset {offset}]: short read")]
    ShortHeader {
        /// The segment number.
        segment: u64,
        /// The entry offset.
        offset: u64,
    },
    /// The size field is out of range.
    #[error("Invalid segment entry size {size} - {what} [segment {segment}, offset {offset}]")]
    BadSize {
        /// The size field.
        size: u32,
        /// "too big" or "too small".
        what: &'static str,
        /// The segment number.
        segment: u64,
        /// The entry offset.
        offset: u64,
    },
    /// The entry is cut short.
    #[error("Segment entry data short read [segment {segment}, offset {offset}]: expected {expected}, got {got} bytes")]
    ShortData {
        /// The segment number.
        segment: u64,
        /// The entry offset.
        offset: u64,
        /// Bytes the size field promised.
        expected: usize,
        /// Bytes present.
        got: usize,
    },
    /// The CRC does not match.
    #[error("Segment entry checksum mismatch [segment {segment}, offset {offset}]")]
    Checksum {
        /// The segment number.
        segment: u64,
        /// The entry offset.
        offset: u64,
    },
    /// The tag is not one the reader accepts here.
    #[error("Invalid segment entry header, did not get acceptable tag [segment {segment}, offset {offset}]")]
    BadTag {
        /// The segment number.
        segment: u64,
        /// The entry offset.
        offset: u64,
    },
    /// The entry's key is not the id asked for.
    #[error(
        "Invalid segment entry header, is not for wanted id [segment {segment}, offset {offset}]"
    )]
    WrongId {
        /// The segment number.
        segment: u64,
        /// The entry offset.
        offset: u64,
    },
}

/// The fixed part of an entry header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryHeader {
    /// The stored CRC32.
    pub crc: u32,
    /// The whole entry's length.
    pub size: u32,
    /// PUT, DELETE or COMMIT.
    pub tag: u8,
}

impl EntryHeader {
    /// Reads the 9-byte header.
    pub fn parse(bytes: &[u8; HEADER_SIZE]) -> EntryHeader {
        EntryHeader {
            crc: u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
            size: u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
            tag: bytes[8],
        }
    }

    /// The smallest size an entry with this tag can have.
    pub fn min_size(&self) -> usize {
        if self.tag == TAG_PUT || self.tag == TAG_DELETE {
            PUT_HEADER_SIZE
        } else {
            HEADER_SIZE
        }
    }

    /// Checks the size field against borg's limits (`LoggedIO._read`).
    pub fn check_size(&self, segment: u64, offset: u64) -> Result<(), SegmentError> {
        let size = self.size as usize;
        if size > MAX_OBJECT_SIZE {
            return Err(SegmentError::BadSize {
                size: self.size,
                what: "too big",
                segment,
                offset,
            });
        }
        if size < self.min_size() {
            return Err(SegmentError::BadSize {
                size: self.size,
                what: "too small",
                segment,
                offset,
            });
        }
        Ok(())
    }
}

/// CRC32 (zlib) over the parts of an entry after its CRC field.
pub fn entry_crc(parts: &[&[u8]]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize()
}

fn entry_with_crc(tag: u8, key: &ObjectId, data: &[u8]) -> Vec<u8> {
    let size = (PUT_HEADER_SIZE + data.len()) as u32;
    let mut out = Vec::with_capacity(size as usize);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&size.to_le_bytes());
    out.push(tag);
    out.extend_from_slice(key);
    out.extend_from_slice(data);
    let crc = entry_crc(&[&out[4..]]);
    out[..4].copy_from_slice(&crc.to_le_bytes());
    out
}

/// A complete PUT entry. The caller has checked `data.len() <= MAX_DATA_SIZE`.
pub fn put_entry(id: &ObjectId, data: &[u8]) -> Vec<u8> {
    entry_with_crc(TAG_PUT, id, data)
}

/// The 41-byte header of a PUT entry for `data`, CRC included, so the data itself can be
/// written without copying it. The caller has checked `data.len() <= MAX_DATA_SIZE`.
pub fn put_header(id: &ObjectId, data: &[u8]) -> [u8; PUT_HEADER_SIZE] {
    let mut head = [0u8; PUT_HEADER_SIZE];
    head[4..8].copy_from_slice(&((PUT_HEADER_SIZE + data.len()) as u32).to_le_bytes());
    head[8] = TAG_PUT;
    head[HEADER_SIZE..].copy_from_slice(id);
    let crc = entry_crc(&[&head[4..], data]);
    head[..4].copy_from_slice(&crc.to_le_bytes());
    head
}

/// A complete DELETE entry (always 41 bytes).
pub fn delete_entry(id: &ObjectId) -> Vec<u8> {
    entry_with_crc(TAG_DELETE, id, &[])
}

/// One parsed entry of a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// PUT, DELETE or COMMIT.
    pub tag: u8,
    /// The object id (PUT and DELETE).
    pub key: Option<ObjectId>,
    /// Offset of the entry in its segment.
    pub offset: u64,
    /// The whole entry's length.
    pub size: u32,
}

/// Whether a whole segment file's bytes form a committed segment: magic, every entry valid,
/// ends with COMMIT, and nothing but COMMITs after the first COMMIT
/// (`LoggedIO.is_committed_segment`).
pub fn is_committed(bytes: &[u8]) -> bool {
    if bytes.len() < MAGIC.len() + HEADER_SIZE || bytes[bytes.len() - HEADER_SIZE..] != COMMIT_ENTRY
    {
        return false;
    }
    entries_end_committed(bytes)
}

/// The entry walk of [`is_committed`], for a reader positioned at the start of the file (the
/// caller checks the last 9 bytes itself).
pub fn entries_end_committed<R: Read>(reader: R) -> bool {
    let mut entries = EntryReader::new(reader, 0, 0);
    if entries.read_magic().is_err() {
        return false;
    }
    let mut seen_commit = false;
    loop {
        match entries.next_entry() {
            Ok(Some((entry, _))) => {
                if entry.tag == TAG_COMMIT {
                    seen_commit = true;
                } else if seen_commit {
                    return false;
                }
            }
            Ok(None) => return seen_commit,
            Err(_) => return false,
        }
    }
}

/// Reads until `buf` is full or the input ends; returns how many bytes were read.
pub fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Reads the entries of a segment one at a time from any reader, checking each CRC, so a
/// segment never has to be in memory whole (`LoggedIO.iter_objects`).
pub struct EntryReader<R> {
    reader: R,
    segment: u64,
    pos: u64,
    buf: Vec<u8>,
}

impl<R: Read> EntryReader<R> {
    /// A reader of segment `segment` whose next byte is at file offset `pos`.
    pub fn new(reader: R, segment: u64, pos: u64) -> EntryReader<R> {
        EntryReader {
            reader,
            segment,
            pos,
            buf: Vec::new(),
        }
    }

    fn io(&self, e: io::Error) -> SegmentError {
        SegmentError::Io {
            segment: self.segment,
            offset: self.pos,
            message: e.to_string(),
        }
    }

    /// Reads and checks the 8-byte magic.
    pub fn read_magic(&mut self) -> Result<(), SegmentError> {
        let mut magic = [0u8; 8];
        let got = read_full(&mut self.reader, &mut magic).map_err(|e| self.io(e))?;
        if got != 8 || &magic != MAGIC {
            return Err(SegmentError::BadMagic {
                segment: self.segment,
            });
        }
        self.pos += 8;
        Ok(())
    }

    /// The next entry and its data (the bytes after the key for PUT/DELETE), or `None` at the
    /// end of the file. After an error the reader is unusable.
    pub fn next_entry(&mut self) -> Result<Option<(Entry, &[u8])>, SegmentError> {
        let (segment, offset) = (self.segment, self.pos);
        let mut head = [0u8; HEADER_SIZE];
        let got = read_full(&mut self.reader, &mut head).map_err(|e| self.io(e))?;
        if got == 0 {
            return Ok(None);
        }
        if got < HEADER_SIZE {
            return Err(SegmentError::ShortHeader { segment, offset });
        }
        let header = EntryHeader::parse(&head);
        let size = header.size as usize;
        if !(HEADER_SIZE..=MAX_OBJECT_SIZE).contains(&size) {
            return Err(SegmentError::BadSize {
                size: header.size,
                what: if size > MAX_OBJECT_SIZE {
                    "too big"
                } else {
                    "too small"
                },
                segment,
                offset,
            });
        }
        self.buf.resize(size - HEADER_SIZE, 0);
        let got = read_full(&mut self.reader, &mut self.buf).map_err(|e| self.io(e))?;
        if got != self.buf.len() {
            return Err(SegmentError::ShortData {
                segment,
                offset,
                expected: self.buf.len(),
                got,
            });
        }
        if entry_crc(&[&head[4..], &self.buf]) != header.crc {
            return Err(SegmentError::Checksum { segment, offset });
        }
        if header.tag > TAG_COMMIT {
            return Err(SegmentError::BadTag { segment, offset });
        }
        self.pos += size as u64;
        let (key, data) = if header.tag == TAG_PUT || header.tag == TAG_DELETE {
            if self.buf.len() < 32 {
                return Err(SegmentError::ShortData {
                    segment,
                    offset,
                    expected: 32,
                    got: self.buf.len(),
                });
            }
            let mut key = [0u8; 32];
            key.copy_from_slice(&self.buf[..32]);
            (Some(key), &self.buf[32..])
        } else {
            (None, &self.buf[..])
        };
        Ok(Some((
            Entry {
                tag: header.tag,
                key,
                offset,
                size: header.size,
            },
            data,
        )))
    }
}

/// Salvages what can be salvaged from a damaged segment (`LoggedIO.recover_segment`): keeps
/// every entry whose header is sane and whose CRC matches, scanning byte by byte over garbage.
pub fn recover(bytes: &[u8]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    if bytes.len() < MAGIC.len() + HEADER_SIZE {
        return out;
    }
    // Borg scans from the start of the file, magic included (the magic never parses as an
    // entry with a matching CRC).
    let mut d = bytes;
    while d.len() >= HEADER_SIZE {
        let mut head = [0u8; HEADER_SIZE];
        head.copy_from_slice(&d[..HEADER_SIZE]);
        let h = EntryHeader::parse(&head);
        let size = h.size as usize;
        if size > MAX_OBJECT_SIZE
            || h.tag > MAX_TAG_ID
            || size < HEADER_SIZE
            || size > d.len()
            || entry_crc(&[&d[4..size]]) != h.crc
        {
            d = &d[1..];
            continue;
        }
        out.extend_from_slice(&d[..size]);
        d = &d[size..];
    }
    out
}

/// The body of the `segment_parse` fuzz target, also replayed over its corpus by `cargo test`:
/// reading entries from any bytes ends in entries or an error, never a panic or a huge
/// allocation; the committed-segment test and salvage agree with what they read; salvaged output
/// reads back without errors and salvaging it again changes nothing.
#[doc(hidden)]
pub fn fuzz_segment(data: &[u8]) {
    let mut reader = EntryReader::new(data, 0, 0);
    if reader.read_magic().is_ok() {
        let mut n = 0usize;
        while let Ok(Some((entry, body))) = reader.next_entry() {
            assert!(entry.size as usize >= body.len());
            n += 1;
            assert!(n <= data.len(), "more entries than bytes");
        }
    }
    let _ = is_committed(data);
    let salvaged = recover(data);
    assert!(salvaged.starts_with(MAGIC));
    let mut again = EntryReader::new(&salvaged[..], 0, 0);
    again.read_magic().expect("salvaged segment has the magic");
    while again
        .next_entry()
        .expect("salvaged entries read cleanly")
        .is_some()
    {}
    assert_eq!(recover(&salvaged), salvaged, "salvage is idempotent");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses the one entry at the start of `bytes` (segment 0, offset 8).
    fn parse(bytes: &[u8]) -> Result<(Entry, Vec<u8>), SegmentError> {
        let mut reader = EntryReader::new(bytes, 0, 8);
        let (entry, data) = reader.next_entry()?.expect("an entry");
        Ok((entry, data.to_vec()))
    }

    #[test]
    fn commit_entry_matches_its_crc() {
        assert_eq!(
            entry_crc(&[&COMMIT_ENTRY[4..]]).to_le_bytes(),
            COMMIT_ENTRY[..4]
        );
    }

    #[test]
    fn put_and_delete_parse_back() {
        let id = [7u8; 32];
        let put = put_entry(&id, b"hello");
        assert_eq!(put.len(), 46);
        assert_eq!(put_header(&id, b"hello"), put[..41]);
        let (e, data) = parse(&put).unwrap();
        assert_eq!(e.tag, TAG_PUT);
        assert_eq!(e.key, Some(id));
        assert_eq!(data, b"hello");
        let del = delete_entry(&id);
        assert_eq!(del.len(), 41);
        let (e, data) = parse(&del).unwrap();
        assert_eq!((e.tag, data.len()), (TAG_DELETE, 0));
    }

    #[test]
    fn damage_is_reported() {
        let id = [1u8; 32];
        let mut put = put_entry(&id, b"data");
        put[44] ^= 1;
        assert_eq!(
            parse(&put).unwrap_err(),
            SegmentError::Checksum {
                segment: 0,
                offset: 8
            }
        );
        let put = put_entry(&id, b"data");
        assert!(matches!(
            parse(&put[..20]),
            Err(SegmentError::ShortData { .. })
        ));
    }

    #[test]
    fn committed_segments_are_recognised() {
        let mut seg = MAGIC.to_vec();
        seg.extend(put_entry(&[2; 32], b"x"));
        assert!(!is_committed(&seg));
        seg.extend(COMMIT_ENTRY);
        assert!(is_committed(&seg));
        let mut bad = seg.clone();
        bad[20] ^= 0xff;
        assert!(!is_committed(&bad));
    }

    #[test]
    fn entry_reader_streams_and_stops_at_damage() {
        let mut seg = MAGIC.to_vec();
        seg.extend(put_entry(&[1; 32], b"one"));
        seg.extend(delete_entry(&[1; 32]));
        seg.extend(COMMIT_ENTRY);
        let mut r = EntryReader::new(&seg[..], 4, 0);
        r.read_magic().unwrap();
        let (e, data) = r.next_entry().unwrap().unwrap();
        assert_eq!(
            (e.tag, e.offset, e.size, data),
            (TAG_PUT, 8, 44, &b"one"[..])
        );
        let (e, _) = r.next_entry().unwrap().unwrap();
        assert_eq!((e.tag, e.offset), (TAG_DELETE, 52));
        let (e, _) = r.next_entry().unwrap().unwrap();
        assert_eq!((e.tag, e.offset), (TAG_COMMIT, 93));
        assert!(r.next_entry().unwrap().is_none());
        let cut = &seg[..70];
        let mut r = EntryReader::new(cut, 4, 0);
        r.read_magic().unwrap();
        r.next_entry().unwrap().unwrap();
        assert!(matches!(
            r.next_entry(),
            Err(SegmentError::ShortData { offset: 52, .. })
        ));
    }

    #[test]
    fn recover_drops_garbage_and_keeps_good_entries() {
        let a = put_entry(&[1; 32], b"aaaa");
        let b = put_entry(&[2; 32], b"bbbb");
        let mut seg = MAGIC.to_vec();
        seg.extend(&a);
        seg.extend(b"garbage!");
        let mut broken = b.clone();
        broken[44] ^= 1;
        seg.extend(&broken);
        seg.extend(&b);
        let mut expect = MAGIC.to_vec();
        expect.extend(&a);
        expect.extend(&b);
        assert_eq!(recover(&seg), expect);
    }
}
