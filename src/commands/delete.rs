//! Deleting archives (`archiver.py: _delete_archives`, `archive.py: Archive.delete`) and whole
//! repositories (`_delete_repository`).
//!
//! Every reference an archive holds is dropped from an exactly synced chunk index: each item's
//! chunks, each item-metadata chunk, and the archive metadata object. A chunk whose count
//! reaches zero is deleted from the repository (space is freed by `compact`). The manifest is
//! written and the repository committed once for the whole command.

use std::cell::RefCell;

use crate::archive::reader;
use crate::cache::{ChunkCache, ChunkIndex};
use crate::crypto::Key;
use crate::manifest::{ArchiveEntry, Manifest};
use crate::repository::{ObjectId, Repository};
use crate::settings::Environment;

use super::{CommandError, Session};

/// Sizes of what a delete released, as borg's "Deleted data:" line reports them (positive
/// numbers here; borg prints them negated).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeletedStats {
    /// Plaintext bytes of every dropped reference.
    pub original_size: u64,
    /// Stored bytes of every dropped reference.
    pub compressed_size: u64,
    /// Stored bytes of the chunks that were deleted from the repository.
    pub deduplicated_size: u64,
}

/// What happened to each requested archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteEvent {
    /// The archive was deleted (or would be, in a dry run): name, entry, position, total.
    Deleted(String, ArchiveEntry, usize, usize),
    /// No archive of that name: name, position, total.
    NotFound(String, usize, usize),
}

/// The outcome of a delete.
#[derive(Debug, Clone, Default)]
pub struct DeleteReport {
    /// What happened, per requested name, in order.
    pub events: Vec<DeleteEvent>,
    /// What was released.
    pub stats: DeletedStats,
    /// Objects deleted from the repository.
    pub objects_deleted: u64,
}

impl DeleteReport {
    /// Whether some requested archive did not exist (borg warns and ends with rc 1).
    pub fn has_missing(&self) -> bool {
        self.events
            .iter()
            .any(|e| matches!(e, DeleteEvent::NotFound(..)))
    }
}

fn missing_chunk(id: &ObjectId) -> CommandError {
    CommandError::other(format!(
        "Chunk ID {} missing from chunks index, corrupted chunks index - aborting transaction.",
        hex::encode(id)
    ))
}

/// Drops one reference, deleting the object when it was the last one.
/// Part items' chunks are released but, unless `--consider-part-files`, not counted
/// (`Statistics.update(..., part=True)`).
fn decref(
    index: &mut ChunkIndex,
    id: &ObjectId,
    stats: &mut DeletedStats,
    to_delete: &mut Vec<ObjectId>,
    part: bool,
) -> Result<(), CommandError> {
    let entry = index.get(id).ok_or_else(|| missing_chunk(id))?;
    if !part {
        stats.original_size += entry.size as u64;
        stats.compressed_size += entry.csize as u64;
    }
    if index.decref(id) == Some(true) {
        if !part {
            stats.deduplicated_size += entry.csize as u64;
        }
        to_delete.push(*id);
    }
    Ok(())
}

/// Removes one archive's references from `index` and the repository, and its manifest entry
/// (`Archive.delete`). Nothing is committed. With `consider_part_files` the references of part
/// items count in `stats` like any others, as borg's `--consider-part-files` has it.
pub fn delete_archive(
    repository: &mut dyn Repository,
    key: &Key,
    manifest: &mut Manifest,
    index: &mut ChunkIndex,
    name: &str,
    stats: &mut DeletedStats,
    consider_part_files: bool,
) -> Result<u64, CommandError> {
    let entry = manifest.remove_archive(name)?;
    let loaded = reader::load_archive(repository, key, &entry.id, false)
        .map_err(|e| CommandError::other(format!("Archive {name}: {e}")))?;
    let shared = RefCell::new((std::mem::take(index), *stats, Vec::new()));
    let result = reader::visit_item_stream(
        repository,
        key,
        &loaded.metadata,
        &mut |id, _, _| {
            let (index, stats, del) = &mut *shared.borrow_mut();
            decref(index, id, stats, del, false)
                .map_err(|e| reader::ReadError::Consumer(e.to_string()))
        },
        &mut |item| {
            let (index, stats, del) = &mut *shared.borrow_mut();
            for c in item.chunks.as_deref().unwrap_or_default() {
                let part = item.part.is_some() && !consider_part_files;
                decref(index, &c.id, stats, del, part)
                    .map_err(|e| reader::ReadError::Consumer(e.to_string()))?;
            }
            Ok(())
        },
    );
    let (new_index, new_stats, mut to_delete) = shared.into_inner();
    *index = new_index;
    *stats = new_stats;
    result.map_err(|e| CommandError::other(format!("Archive {name}: {e}")))?;
    decref(index, &entry.id, stats, &mut to_delete, false)?;
    for id in &to_delete {
        repository.delete(id)?;
    }
    Ok(to_delete.len() as u64)
}

/// Deletes the named archives with one manifest write and commit, then saves the chunk cache.
/// Names not in the manifest are reported, not fatal. `on_event` sees each archive before it
/// is deleted (for `--list`). A dry run only reports. `consider_part_files`: see
/// [`delete_archive`].
pub fn delete_archives(
    session: &mut Session,
    env: &Environment,
    names: &[String],
    dry_run: bool,
    progress: bool,
    consider_part_files: bool,
    on_event: &mut dyn FnMut(&DeleteEvent),
) -> Result<DeleteReport, CommandError> {
    let mut report = DeleteReport::default();
    let total = names.len();
    let mut cache = if dry_run {
        None
    } else {
        Some(
            ChunkCache::load_or_sync(
                session.repository.as_mut(),
                &session.opened.key.key,
                &session.opened.manifest,
                env,
                progress,
            )
            .map_err(|e| CommandError::Other {
                message: e.to_string(),
                code: e.exit_code(),
            })?,
        )
    };
    let mut changed = false;
    for (i, name) in names.iter().enumerate() {
        let event = match session.opened.manifest.archive(name) {
            Some(entry) => DeleteEvent::Deleted(name.clone(), entry.clone(), i + 1, total),
            None => DeleteEvent::NotFound(name.clone(), i + 1, total),
        };
        on_event(&event);
        if let (DeleteEvent::Deleted(..), Some(cache)) = (&event, cache.as_mut()) {
            report.objects_deleted += delete_archive(
                session.repository.as_mut(),
                &session.opened.key.key,
                &mut session.opened.manifest,
                &mut cache.index,
                name,
                &mut report.stats,
                consider_part_files,
            )?;
            changed = true;
        }
        report.events.push(event);
    }
    if let (true, Some(cache)) = (changed, cache.as_ref()) {
        // A crash between the commit and the save must not leave an index that looks current.
        cache.invalidate().map_err(cache_error)?;
        session.write_manifest_and_commit()?;
        cache.save(&session.opened.manifest).map_err(cache_error)?;
    }
    Ok(report)
}

fn cache_error(e: crate::cache::CacheError) -> CommandError {
    CommandError::other(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::reader::tests::fixture;
    use crate::cache::sync::archive_references;
    use crate::repository::CommitOptions;

    #[test]
    fn deleting_drops_every_reference_and_object() {
        let mut f = fixture();
        let mut index = archive_references(&mut f.repo, &f.key, &f.archive_id).expect("refs");
        let before = index.stats();
        let c1_csize = index.get(&f.c1).map_or(0, |e| e.csize as u64);
        // A second archive sharing c2 keeps it alive.
        let shared = f.c2;
        index.incref(&shared);
        let mut manifest = Manifest::new();
        manifest
            .add_archive("a1", f.archive_id, "2026-01-01T00:00:00.000000")
            .expect("add");
        let mut stats = DeletedStats::default();
        let deleted = delete_archive(
            &mut f.repo,
            &f.key,
            &mut manifest,
            &mut index,
            "a1",
            &mut stats,
            false,
        )
        .expect("delete");
        assert_eq!(deleted, 4, "archive object, two item chunks, c1");
        assert!(manifest.archives.is_empty());
        assert_eq!(index.len(), 1);
        assert_eq!(index.get(&shared).map(|e| e.refcount), Some(1));
        // Every reference the archive held was released; the part item's are not shown, and
        // c1's last reference is the part item's, so it is not in the deduplicated size.
        assert_eq!(stats.original_size, before.total_size - 1000);
        assert_eq!(stats.compressed_size, before.total_csize - c1_csize);
        let c2_csize = index.get(&shared).map_or(0, |e| e.csize as u64);
        assert_eq!(
            stats.deduplicated_size,
            before.unique_csize - c2_csize - c1_csize
        );
        f.repo.commit(CommitOptions::default()).expect("commit");
        assert_eq!(f.repo.object_count().expect("count"), 1);
        // An index that lacks a referenced chunk is corrupt: nothing is half-deleted silently.
        let mut f = fixture();
        let mut manifest = Manifest::new();
        manifest
            .add_archive("a1", f.archive_id, "2026-01-01T00:00:00.000000")
            .expect("add");
        // borg's `--consider-part-files`: the part item's references count like the others.
        let mut g = fixture();
        let mut index = archive_references(&mut g.repo, &g.key, &g.archive_id).expect("refs");
        let all = index.stats();
        let mut manifest = Manifest::new();
        manifest
            .add_archive("a1", g.archive_id, "2026-01-01T00:00:00.000000")
            .expect("add");
        let mut counted = DeletedStats::default();
        delete_archive(
            &mut g.repo,
            &g.key,
            &mut manifest,
            &mut index,
            "a1",
            &mut counted,
            true,
        )
        .expect("delete");
        assert_eq!(counted.original_size, all.total_size);
        assert_eq!(counted.compressed_size, all.total_csize);
        assert_eq!(counted.deduplicated_size, all.unique_csize);
        let mut empty = ChunkIndex::new();
        let err = delete_archive(
            &mut f.repo,
            &f.key,
            &mut manifest,
            &mut empty,
            "a1",
            &mut stats,
            false,
        );
        assert!(err.is_err());
    }
}
