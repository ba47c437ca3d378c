//! Deleting archives (`archiver.py: _delete_archives`, `archive.py: Archive.delete`) and whole
//! repositories (`_delete_repository`).
//!
//! Every reference an archive holds is dropped from an exactly synced chunk index: each item's
//! chunks, each item-metadata chunk, and the archive metadata object. A chunk whose count
//! reaches zero is deleted from the repository (space is freed by `compact`). The manifest is
//! written and the repository committed once for the whole command.
//!
//! `--force` ([`Force::Damaged`]) deletes an archive whose item metadata or content is partly
//! missing: where borg's `Archive.delete(forced=1)` meets a missing object it stops dropping
//! references, still drops the archive object and the manifest entry, and warns; what is left
//! becomes orphans for `check --repair`. `--force --force` ([`Force::ManifestOnly`]) only
//! removes the manifest entries, as `_delete_archives` does with `forced == 2`.

use std::cell::RefCell;

use crate::archive::{reader, ItemStreamDecoder};
use crate::cache::{ChunkCache, ChunkIndex};
use crate::crypto::Key;
use crate::manifest::{ArchiveEntry, Manifest};
use crate::repository::{ObjectId, Repository, RepositoryError};
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

/// How hard a delete tries (`--force` given zero, one or two times).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Force {
    /// Any missing or damaged object stops the command; nothing is committed.
    #[default]
    No,
    /// Missing item metadata or content is tolerated (`forced == 1`); the archive metadata
    /// object must still be readable.
    Damaged,
    /// Only the manifest entries are removed (`forced == 2`); `check --repair` cleans up.
    ManifestOnly,
}

impl Force {
    /// From the number of `--force` flags.
    pub fn from_count(n: u8) -> Force {
        match n {
            0 => Force::No,
            1 => Force::Damaged,
            _ => Force::ManifestOnly,
        }
    }
}

/// What happened to each requested archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteEvent {
    /// The archive was deleted (or would be, in a dry run): name, entry, position, total.
    Deleted(String, ArchiveEntry, usize, usize),
    /// No archive of that name: name, position, total.
    NotFound(String, usize, usize),
    /// A forced delete met missing or damaged objects of this archive; some of its references
    /// were not dropped.
    Corrupted(String),
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
    let loaded = reader::load_archive(repository, key, &entry.id, false).map_err(read_error)?;
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
    result.map_err(read_error)?;
    decref(index, &entry.id, stats, &mut to_delete, false)?;
    for id in &to_delete {
        repository.delete(id)?;
    }
    Ok(to_delete.len() as u64)
}

/// Why a forced delete stopped dropping references.
struct Missing;

/// Deletes one object for a forced delete. A local repository answers for this object at once
/// (the inner error: its `ObjectNotFound`). A remote one answers later, so an `ObjectNotFound` for
/// another object is an earlier delete's answer: like borg's `fetch_async_response` with
/// `forced`, it marks the archive `corrupted` and the delete is sent again.
fn delete_object(
    repository: &mut dyn Repository,
    id: &ObjectId,
    corrupted: &mut bool,
) -> Result<Result<(), RepositoryError>, CommandError> {
    let hex_id = hex::encode(id);
    loop {
        match repository.delete(id) {
            Ok(()) => return Ok(Ok(())),
            Err(e @ RepositoryError::ObjectNotFound { .. }) if matches!(&e, RepositoryError::ObjectNotFound { id: missing, .. } if *missing == hex_id) => {
                return Ok(Err(e))
            }
            Err(RepositoryError::ObjectNotFound { .. }) => *corrupted = true,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Drops one reference for a forced delete, deleting the object at once when it was the last
/// one. A chunk the index lacks is fatal even when forced (borg's `ChunksIndexError`); an
/// object the repository lacks is `Missing`.
fn drop_now(
    repository: &mut dyn Repository,
    index: &mut ChunkIndex,
    id: &ObjectId,
    stats: &mut DeletedStats,
    part: bool,
    deleted: &mut u64,
    corrupted: &mut bool,
) -> Result<Result<(), Missing>, CommandError> {
    let mut gone = Vec::new();
    decref(index, id, stats, &mut gone, part)?;
    for id in &gone {
        if delete_object(repository, id, corrupted)?.is_err() {
            return Ok(Err(Missing));
        }
        *deleted += 1;
    }
    Ok(Ok(()))
}

/// `Archive.delete` with `forced`: like [`delete_archive`], but a missing item-metadata chunk
/// or a missing object among those to delete ends the dropping of references instead of the
/// command (a local repository reports a missing object at once, so borg stops there too), and
/// an undecodable item-metadata chunk is skipped. The archive metadata must load (borg opens
/// the archive first); an object that fails decryption is fatal. Returns the objects deleted
/// and whether anything was missing or damaged.
pub fn delete_archive_forced(
    repository: &mut dyn Repository,
    key: &Key,
    manifest: &mut Manifest,
    index: &mut ChunkIndex,
    name: &str,
    stats: &mut DeletedStats,
) -> Result<(u64, bool), CommandError> {
    let entry = manifest
        .archive(name)
        .cloned()
        .ok_or_else(|| crate::manifest::ManifestError::ArchiveNotFound(name.to_string()))?;
    let loaded = reader::load_archive(repository, key, &entry.id, false).map_err(read_error)?;
    let mut deleted = 0;
    let mut corrupted = false;
    let mut decoder = ItemStreamDecoder::new();
    'items: for items_id in &loaded.metadata.items {
        let envelope = match repository.get(items_id) {
            Ok(e) => e,
            Err(RepositoryError::ObjectNotFound { .. }) => {
                corrupted = true;
                break;
            }
            Err(e) => return Err(e.into()),
        };
        let plaintext = reader::open_object(key, items_id, &envelope).map_err(read_error)?;
        let items = decoder.feed(&plaintext);
        let dropped = drop_now(
            repository,
            index,
            items_id,
            stats,
            false,
            &mut deleted,
            &mut corrupted,
        )?;
        if dropped.is_err() {
            corrupted = true;
            break;
        }
        let items = match items {
            Ok(items) => items,
            Err(_) => {
                // borg 1.4 starts a fresh unpacker and goes on with the next chunk.
                corrupted = true;
                decoder = ItemStreamDecoder::new();
                continue;
            }
        };
        for item in items {
            for c in item.chunks.as_deref().unwrap_or_default() {
                let part = item.part.is_some();
                let dropped = drop_now(
                    repository,
                    index,
                    &c.id,
                    stats,
                    part,
                    &mut deleted,
                    &mut corrupted,
                )?;
                if dropped.is_err() {
                    corrupted = true;
                    break 'items;
                }
            }
        }
    }
    // The archive object and the manifest entry go in any case; the archive object was just
    // read, so a failure here is a real error.
    let mut gone = Vec::new();
    decref(index, &entry.id, stats, &mut gone, false)?;
    for id in &gone {
        delete_object(repository, id, &mut corrupted)??;
        deleted += 1;
    }
    // The answers still outstanding (`while fetch_async_response(wait=True) ...`).
    loop {
        match repository.flush() {
            Ok(()) => break,
            Err(RepositoryError::ObjectNotFound { .. }) => corrupted = true,
            Err(e) => return Err(e.into()),
        }
    }
    manifest.remove_archive(name)?;
    Ok((deleted, corrupted))
}

/// A read failure as borg reports it: a missing object is the repository's `ObjectNotFound`.
fn read_error(e: reader::ReadError) -> CommandError {
    match e {
        reader::ReadError::Repository(r) => CommandError::Repository(r),
        other => CommandError::Other {
            message: other.to_string(),
            code: other.exit_code(),
        },
    }
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
    let options = DeleteOptions {
        dry_run,
        progress,
        force: Force::No,
        consider_part_files,
    };
    delete_archives_forced(session, env, names, options, on_event)
}

/// Removes only the manifest entries of the named archives (`--force --force`) and commits
/// when one was there. The chunk cache is left alone: its saved manifest id no longer
/// matches, so the next command that needs it rebuilds it.
fn delete_manifest_entries(
    session: &mut Session,
    names: &[String],
    dry_run: bool,
    on_event: &mut dyn FnMut(&DeleteEvent),
) -> Result<DeleteReport, CommandError> {
    let mut report = DeleteReport::default();
    let total = names.len();
    let mut changed = false;
    for (i, name) in names.iter().enumerate() {
        let event = match session.opened.manifest.archive(name).cloned() {
            Some(entry) => {
                if !dry_run {
                    session.opened.manifest.remove_archive(name)?;
                    changed = true;
                }
                DeleteEvent::Deleted(name.clone(), entry, i + 1, total)
            }
            None => DeleteEvent::NotFound(name.clone(), i + 1, total),
        };
        on_event(&event);
        report.events.push(event);
    }
    if changed {
        session.write_manifest_and_commit()?;
    }
    Ok(report)
}

/// How [`delete_archives_forced`] deletes.
#[derive(Debug, Clone, Copy)]
pub struct DeleteOptions {
    /// Report what would be deleted, change nothing (`--dry-run`).
    pub dry_run: bool,
    /// Show progress while the chunk cache is synchronised (`--progress`).
    pub progress: bool,
    /// borg's `--force` level.
    pub force: Force,
    /// Count part items in the statistics (`--consider-part-files`).
    pub consider_part_files: bool,
}

/// [`delete_archives`] with borg's `--force` levels (see [`Force`]).
pub fn delete_archives_forced(
    session: &mut Session,
    env: &Environment,
    names: &[String],
    options: DeleteOptions,
    on_event: &mut dyn FnMut(&DeleteEvent),
) -> Result<DeleteReport, CommandError> {
    let DeleteOptions {
        dry_run,
        progress,
        force,
        consider_part_files,
    } = options;
    if force == Force::ManifestOnly {
        return delete_manifest_entries(session, names, dry_run, on_event);
    }
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
        let deleting = matches!(event, DeleteEvent::Deleted(..));
        report.events.push(event);
        if let (true, Some(cache)) = (deleting, cache.as_mut()) {
            let repository = session.repository.as_mut();
            let key = &session.opened.key.key;
            let manifest = &mut session.opened.manifest;
            let stats = &mut report.stats;
            if force == Force::Damaged {
                let (deleted, corrupted) = delete_archive_forced(
                    repository,
                    key,
                    manifest,
                    &mut cache.index,
                    name,
                    stats,
                )?;
                report.objects_deleted += deleted;
                if corrupted {
                    let event = DeleteEvent::Corrupted(name.clone());
                    on_event(&event);
                    report.events.push(event);
                }
            } else {
                report.objects_deleted += delete_archive(
                    repository,
                    key,
                    manifest,
                    &mut cache.index,
                    name,
                    stats,
                    consider_part_files,
                )?;
            }
            changed = true;
        }
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
    use crate::archive::reader::tests::{fixture, Fixture};
    use crate::cache::sync::archive_references;
    use crate::repository::CommitOptions;

    /// A manifest that lists `f`'s archive as "a1".
    fn manifest_a1(f: &Fixture) -> Manifest {
        let mut manifest = Manifest::new();
        manifest
            .add_archive("a1", f.archive_id, "2026-01-01T00:00:00.000000")
            .expect("add");
        manifest
    }

    /// `delete_archive` of "a1" (without `--force`) from a manifest that lists `f`'s archive:
    /// the result, the manifest afterwards and the statistics.
    fn delete_a1(
        f: &mut Fixture,
        index: &mut ChunkIndex,
        consider_part_files: bool,
    ) -> (Result<u64, CommandError>, Manifest, DeletedStats) {
        let mut manifest = manifest_a1(f);
        let mut stats = DeletedStats::default();
        let result = delete_archive(
            &mut f.repo,
            &f.key,
            &mut manifest,
            index,
            "a1",
            &mut stats,
            consider_part_files,
        );
        (result, manifest, stats)
    }

    #[test]
    fn deleting_drops_every_reference_and_object() {
        let mut f = fixture();
        let mut index = archive_references(&mut f.repo, &f.key, &f.archive_id).expect("refs");
        let before = index.stats();
        let c1_csize = index.get(&f.c1).map_or(0, |e| e.csize as u64);
        // A second archive sharing c2 keeps it alive.
        let shared = f.c2;
        index.incref(&shared);
        let (deleted, manifest, stats) = delete_a1(&mut f, &mut index, false);
        let deleted = deleted.expect("delete");
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
        // borg's `--consider-part-files`: the part item's references count like the others.
        let mut g = fixture();
        let mut index = archive_references(&mut g.repo, &g.key, &g.archive_id).expect("refs");
        let all = index.stats();
        let (result, _, counted) = delete_a1(&mut g, &mut index, true);
        result.expect("delete");
        assert_eq!(counted.original_size, all.total_size);
        assert_eq!(counted.compressed_size, all.total_csize);
        assert_eq!(counted.deduplicated_size, all.unique_csize);
        // An index that lacks a referenced chunk is corrupt: nothing is half-deleted silently.
        let mut f = fixture();
        let (result, _, _) = delete_a1(&mut f, &mut ChunkIndex::new(), false);
        let message = result
            .expect_err("an index without the archive's chunks")
            .to_string();
        assert!(message.contains("missing from chunks index"), "{message}");
    }

    /// A forced delete of "a1" after `damage` was deleted from the repository (the chunk
    /// index was synced before, as a cache would be).
    fn forced(f: &mut Fixture, damage: Option<ObjectId>) -> (u64, bool, Manifest, ChunkIndex) {
        let mut index = archive_references(&mut f.repo, &f.key, &f.archive_id).expect("refs");
        if let Some(id) = damage {
            f.repo.delete(&id).expect("damage");
        }
        let mut manifest = manifest_a1(f);
        let mut stats = DeletedStats::default();
        let (deleted, corrupted) = delete_archive_forced(
            &mut f.repo,
            &f.key,
            &mut manifest,
            &mut index,
            "a1",
            &mut stats,
        )
        .expect("forced delete");
        (deleted, corrupted, manifest, index)
    }

    #[test]
    fn forced_delete_of_an_intact_archive_is_a_normal_delete() {
        let mut f = fixture();
        let (deleted, corrupted, manifest, index) = forced(&mut f, None);
        assert_eq!(
            (deleted, corrupted),
            (5, false),
            "archive, two item chunks, c1, c2"
        );
        assert!(manifest.archives.is_empty());
        assert_eq!(index.len(), 0);
    }

    #[test]
    fn forced_delete_stops_at_a_missing_object_and_still_drops_the_archive() {
        // The first item-metadata chunk is gone: no item is reached.
        let mut f = fixture();
        let first = f.item_ids[0];
        let (deleted, corrupted, manifest, index) = forced(&mut f, Some(first));
        assert!(corrupted);
        assert_eq!(deleted, 1, "only the archive object");
        assert!(manifest.archives.is_empty());
        assert!(index.get(&f.c1).is_some() && index.get(&f.c2).is_some());
        // A content chunk is gone: references after it stay (as orphans for check --repair).
        let mut f = fixture();
        let c1 = f.c1;
        let (_, corrupted, manifest, index) = forced(&mut f, Some(c1));
        assert!(corrupted);
        assert!(manifest.archives.is_empty());
        assert!(
            index.get(&f.c2).is_some(),
            "d/g comes after the missing chunk"
        );
        // Without --force the same damage stops the delete.
        let mut f = fixture();
        let c1 = f.c1;
        let mut index = archive_references(&mut f.repo, &f.key, &f.archive_id).expect("refs");
        f.repo.delete(&c1).expect("damage");
        let (err, _, _) = delete_a1(&mut f, &mut index, false);
        assert!(matches!(
            err,
            Err(CommandError::Repository(
                RepositoryError::ObjectNotFound { .. }
            ))
        ));
    }
}
