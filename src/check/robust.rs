//! The item stream reader of `borg check`: a msgpack stream reader that can be told to
//! resynchronise after damage, skipping bytes until something that looks like an item dict
//! starts (`archive.py: RobustUnpacker`, `valid_msgpacked_dict`).

use crate::msgpack::{DecodeError, Decoder, Value};

/// Whether `d` starts like a msgpack map (fixmap or map16) whose first key is one of
/// `keys_serialized` (`valid_msgpacked_dict`).
pub fn valid_msgpacked_dict(d: &[u8], keys_serialized: &[Vec<u8>]) -> bool {
    let offs = match d.first() {
        Some(b) if b & 0xf0 == 0x80 => 1,
        Some(0xde) => 3,
        _ => return false,
    };
    let Some(&first) = d.get(offs) else {
        return false;
    };
    if first & 0xe0 != 0xa0 && !matches!(first, 0xd9..=0xdb) {
        return false;
    }
    let rest = &d[offs..];
    keys_serialized.iter().any(|k| rest.starts_with(k))
}

/// The msgpack encoding of each name (a raw string), as `valid_msgpacked_dict` compares them.
pub fn serialized_keys<'a>(names: impl IntoIterator<Item = &'a [u8]>) -> Vec<Vec<u8>> {
    names
        .into_iter()
        .map(|n| crate::msgpack::encode(&Value::Raw(n.to_vec())))
        .collect()
}

/// A restartable msgpack stream reader.
///
/// In normal mode it hands out values as they complete. After [`RobustUnpacker::resync`] it
/// keeps everything fed since, and on each read scans that buffer from its start for the first
/// offset where a plausible item dict decodes and passes the validator, as borg's
/// `RobustUnpacker.__next__` does (so an item cut by the end of one chunk is found once the
/// next chunk arrives).
pub struct RobustUnpacker {
    keys_serialized: Vec<Vec<u8>>,
    buffer: Vec<u8>,
    resync: bool,
}

impl RobustUnpacker {
    /// A reader whose resync accepts dicts starting with one of `keys_serialized`.
    pub fn new(keys_serialized: Vec<Vec<u8>>) -> Self {
        RobustUnpacker {
            keys_serialized,
            buffer: Vec::new(),
            resync: false,
        }
    }

    /// Drops what is buffered and looks for the next item start in what is fed from now on.
    pub fn resync(&mut self) {
        self.buffer.clear();
        self.resync = true;
    }

    /// Adds stream bytes.
    pub fn feed(&mut self, data: &[u8]) {
        self.buffer.extend_from_slice(data);
    }

    /// The next value, `Ok(None)` when more data is needed. A decoding error in normal mode is
    /// returned (the caller reports it and resyncs).
    pub fn next_value(&mut self) -> Result<Option<Value>, DecodeError> {
        if self.resync {
            let mut offset = 0;
            while offset < self.buffer.len() {
                let data = &self.buffer[offset..];
                if valid_msgpacked_dict(data, &self.keys_serialized) {
                    let mut d = Decoder::new(data);
                    if let Ok(v) = d.next_value() {
                        if v.get("path").is_some() {
                            let end = offset + d.position();
                            self.buffer.drain(..end);
                            self.resync = false;
                            return Ok(Some(v));
                        }
                    }
                }
                offset += 1;
            }
            return Ok(None);
        }
        if self.buffer.is_empty() {
            return Ok(None);
        }
        let mut d = Decoder::new(&self.buffer);
        match d.next_value() {
            Ok(v) => {
                let used = d.position();
                self.buffer.drain(..used);
                Ok(Some(v))
            }
            Err(DecodeError::Incomplete) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msgpack::encode;

    fn item(path: &str) -> Vec<u8> {
        encode(&Value::map([
            ("mtime", Value::from(1)),
            ("path", Value::str(path)),
        ]))
    }

    fn keys() -> Vec<Vec<u8>> {
        serialized_keys([&b"mtime"[..], b"path"])
    }

    #[test]
    fn recognises_item_dicts() {
        assert!(valid_msgpacked_dict(&item("a"), &keys()));
        assert!(!valid_msgpacked_dict(&[0x92, 0xa1], &keys()));
        assert!(!valid_msgpacked_dict(&[], &keys()));
        assert!(!valid_msgpacked_dict(
            &encode(&Value::map([("other", Value::from(1))])),
            &keys()
        ));
    }

    #[test]
    fn normal_stream_straddling_feeds() {
        let data = [item("a"), item("b")].concat();
        let mut u = RobustUnpacker::new(keys());
        u.feed(&data[..5]);
        assert_eq!(u.next_value().unwrap(), None);
        u.feed(&data[5..]);
        let a = u.next_value().unwrap().unwrap();
        assert_eq!(a.get("path").unwrap().as_bytes().unwrap(), b"a");
        assert!(u.next_value().unwrap().is_some());
        assert_eq!(u.next_value().unwrap(), None);
    }

    #[test]
    fn resync_skips_garbage_and_waits_for_the_rest_of_an_item() {
        let mut u = RobustUnpacker::new(keys());
        u.resync();
        let b = item("bbbb");
        let mut junk = vec![0x13, 0xa4, 0x99, 0x81];
        junk.extend_from_slice(&b[..4]);
        u.feed(&junk);
        assert_eq!(u.next_value().unwrap(), None);
        u.feed(&b[4..]);
        u.feed(&item("c"));
        let got = u.next_value().unwrap().unwrap();
        assert_eq!(got.get("path").unwrap().as_bytes().unwrap(), b"bbbb");
        let got = u.next_value().unwrap().unwrap();
        assert_eq!(got.get("path").unwrap().as_bytes().unwrap(), b"c");
    }

    #[test]
    fn garbage_in_normal_mode_is_an_error() {
        let mut u = RobustUnpacker::new(keys());
        u.feed(&[0xc1, 0x00]);
        assert!(u.next_value().is_err());
    }
}
