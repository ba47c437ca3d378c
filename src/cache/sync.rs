//! Rebuilding the chunk index from the repository's archives (`cache.py: LocalCache.sync`).
//!
//! The index is only trustworthy for the manifest it was built from: when another client has
//! written since (the manifest id differs), it is rebuilt. Rebuilding reads every archive, so
//! each archive's own contribution is kept in a per-archive index (borg's `chunks.archive.d`)
//! and only archives not seen before are read.
//!
//! Reference counting is borg's: one reference for each archive metadata object, one for each
//! occurrence of an item-metadata chunk id in an archive's `items`, and one for each entry of
//! every item's `chunks` (part items included, `chunks_healthy` not). The manifest is not in
//! the index. Sizes are the plaintext length; stored sizes are the lengths of the stored
//! objects (a zero `csize` in an item, written by borg's ad-hoc cache, is fetched).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::archive::reader::{self, ReadError};
use crate::crypto::Key;
use crate::manifest::Manifest;
use crate::repository::{ObjectId, Repository};
use crate::settings::Environment;

use super::{repository_cache_dir, CacheError, ChunkIndex};

const MASTER_FILE: &str = "rborg-chunks";
const MANIFEST_ID_FILE: &str = "rborg-chunks.manifest";
const ARCHIVES_DIR: &str = "rborg-chunks.archive.d";
const MANIFEST_ID_MAGIC: &[u8; 8] = b"RBCHMID1";

/// Why the chunk index could not be built or saved.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// A cache file failed.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// Reading an archive failed.
    #[error("cache sync: archive {archive}: {source}")]
    Archive {
        /// The archive name.
        archive: String,
        /// What failed.
        #[source]
        source: ReadError,
    },
    /// Two different chunks under one id.
    #[error(transparent)]
    SizeMismatch(#[from] super::chunk_index::SizeMismatch),
}

impl SyncError {
    /// borg 1.4's modern exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            SyncError::Archive { source, .. } => source.exit_code(),
            _ => 2,
        }
    }
}

/// The chunk index of one repository, kept on disk between commands.
#[derive(Debug)]
pub struct ChunkCache {
    dir: PathBuf,
    /// The index, valid for the manifest it was loaded or synced for.
    pub index: ChunkIndex,
}

impl ChunkCache {
    /// Loads the index saved for the current manifest, or rebuilds it from the archives
    /// (reusing per-archive indexes of archives already seen). With `progress`, each archive
    /// read is logged at info level.
    pub fn load_or_sync(
        repository: &mut dyn Repository,
        key: &Key,
        manifest: &Manifest,
        env: &Environment,
        progress: bool,
    ) -> Result<ChunkCache, SyncError> {
        let dir = repository_cache_dir(env, repository.id())?;
        let index = match (manifest.id, load_manifest_id(&dir)?) {
            (Some(current), Some(saved)) if current == saved => {
                match ChunkIndex::load(&dir.join(MASTER_FILE)) {
                    Ok(Some(index)) => Some(index),
                    Ok(None) => None,
                    Err(CacheError::Corrupt { path, reason }) => {
                        log::warn!(
                            "cache file {} is damaged ({reason}), rebuilding",
                            path.display()
                        );
                        None
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            _ => None,
        };
        let index = match index {
            Some(i) => i,
            None => sync(repository, key, manifest, &dir, progress)?,
        };
        Ok(ChunkCache { dir, index })
    }

    /// [`ChunkCache::load_or_sync`] for an open session.
    pub fn for_session(
        session: &mut crate::commands::Session,
        env: &Environment,
        progress: bool,
    ) -> Result<ChunkCache, SyncError> {
        ChunkCache::load_or_sync(
            session.repository.as_mut(),
            &session.opened.key.key,
            &session.opened.manifest,
            env,
            progress,
        )
    }

    /// Saves the index as valid for `manifest` (call after the manifest was written and the
    /// repository committed). Per-archive indexes of archives no longer listed are removed.
    pub fn save(&self, manifest: &Manifest) -> Result<(), CacheError> {
        // The manifest id goes last: a crash in between leaves an id that does not match.
        let id_path = self.dir.join(MANIFEST_ID_FILE);
        remove_if_exists(&id_path)?;
        self.index.save(&self.dir.join(MASTER_FILE))?;
        prune_archive_indexes(&self.dir, manifest)?;
        if let Some(id) = manifest.id {
            super::write_atomically(&id_path, MANIFEST_ID_MAGIC, &id)?;
        }
        Ok(())
    }

    /// Forgets the saved index (the next command rebuilds it).
    pub fn invalidate(&self) -> Result<(), CacheError> {
        remove_if_exists(&self.dir.join(MANIFEST_ID_FILE))
    }

    /// Stores the per-archive index of an archive just written, so the next sync need not read
    /// it (a `create` calls this with the references its archive holds).
    pub fn save_archive_index(
        &self,
        archive_id: &ObjectId,
        index: &ChunkIndex,
    ) -> Result<(), CacheError> {
        index.save(&archive_index_path(&self.dir, archive_id))
    }

    /// Carries an archive's per-archive index over to its rewritten metadata object (rename):
    /// the references stay, only the metadata object's entry changes. Without a stored index
    /// for `old` nothing happens (the next sync reads the archive).
    pub fn move_archive_index(
        &self,
        old: &ObjectId,
        new: &ObjectId,
        size: u32,
        csize: u32,
    ) -> Result<(), CacheError> {
        let old_path = archive_index_path(&self.dir, old);
        let Some(mut index) = ChunkIndex::load(&old_path).ok().flatten() else {
            return Ok(());
        };
        index.decref(old);
        if index.add(new, size, csize).is_ok() {
            index.save(&archive_index_path(&self.dir, new))?;
        }
        remove_if_exists(&old_path)
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn remove_if_exists(path: &Path) -> Result<(), CacheError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(CacheError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn load_manifest_id(dir: &Path) -> Result<Option<ObjectId>, CacheError> {
    let path = dir.join(MANIFEST_ID_FILE);
    match super::read_checked(&path, MANIFEST_ID_MAGIC) {
        Ok(Some(b)) => Ok(b.as_slice().try_into().ok()),
        Ok(None) | Err(CacheError::Corrupt { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

fn archive_index_path(dir: &Path, archive_id: &ObjectId) -> PathBuf {
    dir.join(ARCHIVES_DIR).join(hex::encode(archive_id))
}

fn prune_archive_indexes(dir: &Path, manifest: &Manifest) -> Result<(), CacheError> {
    let wanted: BTreeSet<String> = manifest
        .archives
        .values()
        .map(|e| hex::encode(e.id))
        .collect();
    let adir = dir.join(ARCHIVES_DIR);
    let entries = match std::fs::read_dir(&adir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(CacheError::Io { path: adir, source }),
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !wanted.contains(&name) {
            remove_if_exists(&entry.path())?;
        }
    }
    Ok(())
}

/// The references one archive holds (its contribution to the chunk index), read from the
/// repository (borg's `fetch_and_build_idx`).
pub fn archive_references(
    repository: &mut dyn Repository,
    key: &Key,
    archive_id: &ObjectId,
) -> Result<ChunkIndex, ReadError> {
    let loaded = reader::load_archive(repository, key, archive_id, false)?;
    let index = std::cell::RefCell::new(ChunkIndex::new());
    let mismatch = |e: super::chunk_index::SizeMismatch| ReadError::Consumer(e.to_string());
    index
        .borrow_mut()
        .add(archive_id, loaded.size, loaded.csize)
        .map_err(mismatch)?;
    let mut zero_csize: Vec<ObjectId> = Vec::new();
    reader::visit_item_stream(
        repository,
        key,
        &loaded.metadata,
        &mut |id, size, csize| {
            index
                .borrow_mut()
                .add(id, size as u32, csize as u32)
                .map(|_| ())
                .map_err(mismatch)
        },
        &mut |item| {
            let mut index = index.borrow_mut();
            for c in item.chunks.as_deref().unwrap_or_default() {
                if c.csize == 0 {
                    zero_csize.push(c.id);
                }
                index
                    .add(&c.id, c.size as u32, c.csize as u32)
                    .map_err(mismatch)?;
            }
            Ok(())
        },
    )?;
    let mut index = index.into_inner();
    // Chunk lists written by borg's ad-hoc cache carry csize 0: use the stored length. Merging
    // a one-reference entry fills a zero csize; the extra reference is dropped again.
    zero_csize.sort_unstable();
    zero_csize.dedup();
    zero_csize.retain(|id| index.get(id).is_some_and(|e| e.csize == 0));
    for id in zero_csize {
        let stored = repository.get(&id)?;
        let Some(entry) = index.get(&id) else {
            continue;
        };
        let mut fill = ChunkIndex::new();
        fill.add(&id, entry.size, stored.len() as u32)
            .map_err(mismatch)?;
        index.merge(&fill);
        index.decref(&id);
    }
    Ok(index)
}

/// Rebuilds the index of all archives of `manifest` (`LocalCache.sync`).
fn sync(
    repository: &mut dyn Repository,
    key: &Key,
    manifest: &Manifest,
    dir: &Path,
    progress: bool,
) -> Result<ChunkIndex, SyncError> {
    log::info!("Synchronizing chunks cache...");
    prune_archive_indexes(dir, manifest)?;
    let total = manifest.archives.len();
    let mut cached = 0usize;
    let mut master = ChunkIndex::new();
    for (n, (name, entry)) in manifest.archives.iter().enumerate() {
        let name = String::from_utf8_lossy(name).into_owned();
        let path = archive_index_path(dir, &entry.id);
        let existing = match ChunkIndex::load(&path) {
            Ok(i) => i,
            Err(CacheError::Corrupt { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        let index = match existing {
            Some(i) => {
                cached += 1;
                i
            }
            None => {
                if progress {
                    log::info!(
                        "Fetching and building archive index for {name} ({}/{total}) ...",
                        n + 1
                    );
                }
                let i = archive_references(repository, key, &entry.id).map_err(|source| {
                    SyncError::Archive {
                        archive: name.clone(),
                        source,
                    }
                })?;
                i.save(&path)?;
                i
            }
        };
        master.merge(&index);
    }
    log::info!(
        "Archives: {total}, w/ cached Idx: {cached}, w/ outdated Idx: 0, w/o cached Idx: {}.",
        total - cached
    );
    Ok(master)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::reader::tests::fixture;
    use crate::repository::Repository;

    #[test]
    fn references_follow_borg_rules_and_indexes_are_reused() {
        let mut f = fixture();
        let refs = archive_references(&mut f.repo, &f.key, &f.archive_id).expect("refs");
        // c1: twice in d/f, once in the part item; c2 once; each item chunk and the
        // archive object once.
        assert_eq!(refs.get(&f.c1).map(|e| e.refcount), Some(3));
        assert_eq!(refs.get(&f.c1).map(|e| e.size), Some(1000));
        assert_eq!(refs.get(&f.c2).map(|e| e.refcount), Some(1));
        for id in &f.item_ids {
            assert_eq!(refs.get(id).map(|e| e.refcount), Some(1));
        }
        let a = refs.get(&f.archive_id).expect("archive object");
        assert_eq!(a.refcount, 1);
        // csize is the stored length, not what the item claims.
        let stored = f.repo.get(&f.archive_id).expect("get").len() as u32;
        assert_eq!(a.csize, stored);
        assert_eq!(refs.len(), 5);

        let cache_dir = f.dir.path().join("cache");
        let env = Environment::from_pairs([("BORG_CACHE_DIR", cache_dir.as_os_str())]);
        let mut manifest = Manifest::new();
        manifest
            .add_archive("a1", f.archive_id, "2026-01-01T00:00:00.000000")
            .expect("add");
        manifest.id = Some([1u8; 32]);
        let cache =
            ChunkCache::load_or_sync(&mut f.repo, &f.key, &manifest, &env, false).expect("sync");
        assert_eq!(cache.index, refs);
        cache.save(&manifest).expect("save");

        // Without the item chunks the archive cannot be read again: a sync for a newer
        // manifest that still succeeds used the per-archive index.
        for id in &f.item_ids {
            f.repo.delete(id).expect("delete");
        }
        manifest.id = Some([2u8; 32]);
        let again =
            ChunkCache::load_or_sync(&mut f.repo, &f.key, &manifest, &env, false).expect("reuse");
        assert_eq!(again.index, refs);
        // A rename moves the per-archive index to the new metadata object.
        let renamed = [9u8; 32];
        again
            .move_archive_index(&f.archive_id, &renamed, 10, 20)
            .expect("move");
        let mut moved_manifest = Manifest::new();
        moved_manifest
            .add_archive("b1", renamed, "2026-01-01T00:00:00.000000")
            .expect("add");
        moved_manifest.id = Some([5u8; 32]);
        let moved = ChunkCache::load_or_sync(&mut f.repo, &f.key, &moved_manifest, &env, false)
            .expect("moved index reused");
        assert!(!moved.index.contains(&f.archive_id));
        assert_eq!(moved.index.get(&renamed).map(|e| e.refcount), Some(1));
        assert_eq!(moved.index.len(), refs.len());
        again
            .move_archive_index(&renamed, &f.archive_id, a.size, a.csize)
            .expect("move back");
        // A vanished archive's per-archive index is dropped; the damaged archive cannot be
        // synced from scratch.
        manifest.remove_archive("a1").expect("remove");
        manifest.id = Some([3u8; 32]);
        let empty =
            ChunkCache::load_or_sync(&mut f.repo, &f.key, &manifest, &env, false).expect("empty");
        assert!(empty.index.is_empty());
        manifest
            .add_archive("a1", f.archive_id, "2026-01-01T00:00:00.000000")
            .expect("add");
        manifest.id = Some([4u8; 32]);
        let err = ChunkCache::load_or_sync(&mut f.repo, &f.key, &manifest, &env, false);
        assert!(matches!(err, Err(SyncError::Archive { .. })), "{err:?}");
    }
}
