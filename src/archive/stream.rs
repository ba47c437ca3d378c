//! Reading an archive's item-metadata stream: the decrypted item chunks, concatenated, hold
//! msgpack item dicts one after another, and an item may straddle two chunks
//! (`archive.py: DownloadPipeline.unpack_many`).

use crate::msgpack::{DecodeError, Decoder};

use super::{Item, ItemError};

/// Why the item stream could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The bytes are not msgpack.
    #[error("item stream is not valid msgpack: {0}")]
    Msgpack(DecodeError),
    /// A decoded object is not a valid item.
    #[error("item stream holds an invalid item: {0}")]
    Item(ItemError),
    /// The stream ended in the middle of an item.
    #[error("item stream ends inside an item ({0} bytes left over)")]
    Truncated(usize),
}

/// Incremental decoder of an item stream: feed it chunk after chunk, take the items out.
#[derive(Debug, Default)]
pub struct ItemStreamDecoder {
    pending: Vec<u8>,
}

impl ItemStreamDecoder {
    /// A decoder at the start of a stream.
    pub fn new() -> Self {
        ItemStreamDecoder::default()
    }

    /// Adds the next chunk and returns every item completed by it.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<Item>, StreamError> {
        self.pending.extend_from_slice(chunk);
        let mut items = Vec::new();
        let mut d = Decoder::new(&self.pending);
        loop {
            if d.is_empty() {
                break;
            }
            match d.next_value() {
                Ok(v) => items.push(Item::from_value(&v).map_err(StreamError::Item)?),
                Err(DecodeError::Incomplete) => break,
                Err(e) => return Err(StreamError::Msgpack(e)),
            }
        }
        let used = d.position();
        self.pending.drain(..used);
        Ok(items)
    }

    /// Ends the stream; bytes left over mean it was cut inside an item.
    pub fn finish(self) -> Result<(), StreamError> {
        if self.pending.is_empty() {
            Ok(())
        } else {
            Err(StreamError::Truncated(self.pending.len()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_straddling_chunks_are_reassembled() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("vendor-testdata/msgpack/borg14_items.msgpack");
        let data = std::fs::read(path).expect("vendor data");
        for cut in [1usize, 7, 50, 200] {
            let mut dec = ItemStreamDecoder::new();
            let mut items = Vec::new();
            for piece in data.chunks(cut) {
                items.extend(dec.feed(piece).expect("decodes"));
            }
            dec.finish().expect("complete");
            assert_eq!(items.len(), 5, "cut {cut}");
        }
        let mut dec = ItemStreamDecoder::new();
        dec.feed(&data[..data.len() - 3]).expect("partial");
        assert!(matches!(dec.finish(), Err(StreamError::Truncated(_))));
        let mut dec = ItemStreamDecoder::new();
        assert!(matches!(dec.feed(&[0xc1]), Err(StreamError::Msgpack(_))));
        let mut dec = ItemStreamDecoder::new();
        assert!(matches!(dec.feed(&[0x01]), Err(StreamError::Item(_))));
    }
}
