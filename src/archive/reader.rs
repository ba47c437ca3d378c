//! Reading archives from a repository: the archive metadata object (decrypted, its TAM checked
//! with borg's ordinary-read rules), the item-metadata stream, and the content chunks of a file
//! (`archive.py: Archive._load_meta`, `DownloadPipeline.unpack_many / fetch_many`).
//!
//! Every object read here goes through the same steps: `get_many` (so a remote repository keeps
//! many requests in flight), decrypt with the session key, decompress, and check that the
//! plaintext hashes to the id it was stored under.

use crate::crypto::envelope::EnvelopeError;
use crate::crypto::tam::{TamError, TamStatus};
use crate::crypto::Key;
use crate::manifest::{DefaultCodec, PayloadCodec};
use crate::repository::{ObjectId, Repository, RepositoryError};

use super::{ArchiveMetadata, ChunkRef, Item, ItemError, ItemStreamDecoder, StreamError};

/// Why an archive could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The repository failed (including a missing object).
    #[error(transparent)]
    Repository(#[from] RepositoryError),
    /// An object failed decryption or its id check.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// An object's payload could not be decompressed.
    #[error("Data integrity error: Chunk {id}: {reason}")]
    Decompress {
        /// The object id in hex.
        id: String,
        /// What the decompressor said.
        reason: String,
    },
    /// The archive TAM is invalid (or required and missing).
    #[error(transparent)]
    Tam(#[from] TamError),
    /// The archive metadata dict is malformed.
    #[error("archive metadata is invalid: {0}")]
    Metadata(ItemError),
    /// The archive metadata has a version other than 1.
    #[error("Unknown archive metadata version")]
    Version(u32),
    /// The item stream is malformed.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// A consumer of items or content stopped the reading.
    #[error("{0}")]
    Consumer(String),
}

impl ReadError {
    /// borg 1.4's modern exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            ReadError::Repository(e) => e.exit_code(),
            ReadError::Envelope(e) => e.exit_code(),
            ReadError::Decompress { .. } => 92,
            ReadError::Tam(e) => e.exit_code(),
            ReadError::Metadata(_) | ReadError::Stream(_) | ReadError::Version(_) => 90,
            ReadError::Consumer(_) => 2,
        }
    }
}

/// An archive's metadata as loaded from the repository.
#[derive(Debug, Clone)]
pub struct LoadedArchive {
    /// The archive metadata object's id.
    pub id: ObjectId,
    /// The metadata.
    pub metadata: ArchiveMetadata,
    /// How the archive TAM check came out (a missing TAM is tolerated on ordinary reads).
    pub tam: TamStatus,
    /// Length of the plaintext metadata object (its `size` in the chunk index).
    pub size: u32,
    /// Length of the stored object (its `csize` in the chunk index).
    pub csize: u32,
}

/// Receives each fetched object: its id, plaintext and stored length.
pub type ObjectSink<'a> = dyn FnMut(&ObjectId, Vec<u8>, usize) -> Result<(), ReadError> + 'a;

/// Receives each content chunk of a file with its plaintext.
pub type ContentSink<'a> = dyn FnMut(&ChunkRef, &[u8]) -> Result<(), ReadError> + 'a;

/// Decrypts, decompresses and id-checks one object.
pub fn open_object(key: &Key, id: &ObjectId, envelope: &[u8]) -> Result<Vec<u8>, ReadError> {
    let payload = key.decrypt(Some(id), envelope)?;
    let plaintext = DefaultCodec
        .decompress(&payload)
        .map_err(|reason| ReadError::Decompress {
            id: hex::encode(id),
            reason,
        })?;
    key.assert_id(id, &plaintext)?;
    Ok(plaintext)
}

/// Loads the archive metadata stored under `id` (`Archive._load_meta`). `tam_required` is
/// `false` for ordinary reads (borg 1.2.5+ tolerates a missing archive TAM there but rejects an
/// invalid one) and `key.tam_required()` for `check`.
pub fn load_archive(
    repository: &mut dyn Repository,
    key: &Key,
    id: &ObjectId,
    tam_required: bool,
) -> Result<LoadedArchive, ReadError> {
    let envelope = repository.get(id)?;
    let plaintext = open_object(key, id, &envelope)?;
    let (value, tam) = key.unpack_and_verify_archive(&plaintext, tam_required)?;
    let metadata = ArchiveMetadata::from_value(&value).map_err(ReadError::Metadata)?;
    if metadata.version != 1 {
        return Err(ReadError::Version(metadata.version));
    }
    Ok(LoadedArchive {
        id: *id,
        metadata,
        tam,
        size: plaintext.len() as u32,
        csize: envelope.len() as u32,
    })
}

/// Runs `get_many` over `ids`, handing each object's id, plaintext and stored length to `sink`
/// in order. Errors of `sink` come back unchanged.
pub fn fetch_plaintexts(
    repository: &mut dyn Repository,
    key: &Key,
    ids: &[ObjectId],
    sink: &mut ObjectSink<'_>,
) -> Result<(), ReadError> {
    // `get_many`'s sink can only return a RepositoryError; ours is parked here meanwhile.
    let mut failure: Option<ReadError> = None;
    let result = repository.get_many(ids, &mut |i, envelope| {
        let id = &ids[i];
        let stored_len = envelope.len();
        let step = open_object(key, id, &envelope).and_then(|p| sink(id, p, stored_len));
        step.map_err(|e| {
            failure = Some(e);
            RepositoryError::Transport("reading stopped".into())
        })
    });
    match (result, failure) {
        (_, Some(e)) => Err(e),
        (Err(e), None) => Err(e.into()),
        (Ok(()), None) => Ok(()),
    }
}

/// Visits the raw item stream of an archive: `on_chunk` sees each item-metadata chunk (id,
/// plaintext length, stored length) and `on_item` every item in order, part items included.
pub fn visit_item_stream(
    repository: &mut dyn Repository,
    key: &Key,
    metadata: &ArchiveMetadata,
    on_chunk: &mut dyn FnMut(&ObjectId, usize, usize) -> Result<(), ReadError>,
    on_item: &mut dyn FnMut(Item) -> Result<(), ReadError>,
) -> Result<(), ReadError> {
    let mut decoder = ItemStreamDecoder::new();
    fetch_plaintexts(
        repository,
        key,
        &metadata.items,
        &mut |id, plaintext, stored_len| {
            on_chunk(id, plaintext.len(), stored_len)?;
            for item in decoder.feed(&plaintext)? {
                on_item(item)?;
            }
            Ok(())
        },
    )?;
    decoder.finish()?;
    Ok(())
}

/// Visits an archive's items in order. Part items (`.borg_part_N`) are skipped unless
/// `include_parts`, like borg's `Archive.item_filter` without `--consider-part-files`.
pub fn for_each_item(
    repository: &mut dyn Repository,
    key: &Key,
    metadata: &ArchiveMetadata,
    include_parts: bool,
    on_item: &mut dyn FnMut(Item) -> Result<(), ReadError>,
) -> Result<(), ReadError> {
    visit_item_stream(
        repository,
        key,
        metadata,
        &mut |_, _, _| Ok(()),
        &mut |item| {
            if item.part.is_some() && !include_parts {
                return Ok(());
            }
            on_item(item)
        },
    )
}

/// Streams a file's content: each chunk of `chunks` is fetched (pipelined), decrypted,
/// decompressed, id-checked and handed to `sink` in order.
pub fn read_content(
    repository: &mut dyn Repository,
    key: &Key,
    chunks: &[ChunkRef],
    sink: &mut ContentSink<'_>,
) -> Result<(), ReadError> {
    let ids: Vec<ObjectId> = chunks.iter().map(|c| c.id).collect();
    let mut index = 0;
    fetch_plaintexts(repository, key, &ids, &mut |_, plaintext, _| {
        let chunk = &chunks[index];
        index += 1;
        sink(chunk, &plaintext)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::ITEM_KEYS;

    #[test]
    fn exit_codes_follow_borg() {
        let e = ReadError::Decompress {
            id: "00".into(),
            reason: "x".into(),
        };
        assert_eq!(e.exit_code(), 92);
        assert_eq!(ReadError::Version(2).exit_code(), 90);
        assert!(ITEM_KEYS.contains(&"part"));
    }
}
