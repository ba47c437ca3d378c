//! Renaming an archive (`archive.py: Archive.rename / set_meta`): the metadata is re-packed
//! with the new name and a fresh archive TAM, so it gets a new id; the manifest entry moves to
//! the new name and id, keeping the start time; the new object gains a reference and the old
//! one loses its last and is deleted.

use crate::archive::reader;
use crate::cache::ChunkCache;
use crate::crypto::tam::TamContext;
use crate::manifest::{DefaultCodec, PayloadCodec};
use crate::repository::ObjectId;
use crate::settings::Environment;

use super::{CommandError, Session};

/// Renames archive `old` to `new`, commits, and returns the new archive id.
pub fn rename_archive(
    session: &mut Session,
    env: &Environment,
    old: &str,
    new: &str,
) -> Result<ObjectId, CommandError> {
    let manifest = &session.opened.manifest;
    let entry = manifest.archive(old).cloned().ok_or_else(|| {
        CommandError::Manifest(crate::manifest::ManifestError::ArchiveNotFound(old.into()))
    })?;
    if manifest.archive(new).is_some() {
        return Err(crate::manifest::ManifestError::ArchiveExists(new.into()).into());
    }
    let mut cache = ChunkCache::load_or_sync(
        session.repository.as_mut(),
        &session.opened.key.key,
        manifest,
        env,
        false,
    )
    .map_err(|e| CommandError::Other {
        message: e.to_string(),
        code: e.exit_code(),
    })?;
    let key = &session.opened.key.key;
    let loaded = reader::load_archive(session.repository.as_mut(), key, &entry.id, false)
        .map_err(|e| CommandError::other(format!("Archive {old}: {e}")))?;
    let mut metadata = loaded.metadata;
    metadata.name = new.to_string();
    let data = key
        .pack_and_authenticate(&metadata.to_value(), TamContext::Archive)
        .map_err(|e| CommandError::other(e.to_string()))?;
    let new_id = key.id_hash(&data);
    let payload = DefaultCodec.compress(&data);
    let envelope = key
        .encrypt_next(
            &mut session.opened.nonces,
            session.repository.as_mut(),
            &payload,
        )
        .map_err(|e| CommandError::other(e.to_string()))?;
    let csize = envelope.len() as u32;
    let size = data.len() as u32;
    if cache.index.contains(&new_id) {
        cache.index.incref(&new_id);
    } else {
        session.repository.put(&new_id, envelope)?;
        cache
            .index
            .add(&new_id, size, csize)
            .map_err(|e| CommandError::other(e.to_string()))?;
    }
    session.opened.manifest.rename_archive(old, new, new_id)?;
    if cache.index.decref(&entry.id) == Some(true) {
        session.repository.delete(&entry.id)?;
    }
    cache
        .invalidate()
        .map_err(|e| CommandError::other(e.to_string()))?;
    session.write_manifest_and_commit()?;
    // The next sync need not read the renamed archive again.
    cache
        .move_archive_index(&entry.id, &new_id, size, csize)
        .map_err(|e| CommandError::other(e.to_string()))?;
    cache
        .save(&session.opened.manifest)
        .map_err(|e| CommandError::other(e.to_string()))?;
    Ok(new_id)
}
