//! Statistics for `info` (`archive.py: Archive.info / _calc_stats`, `cache.py:
//! CacheStatsMixin.stats`), computed from an exactly synced chunk index and the archives'
//! metadata, with borg 1.4's rules.

use std::collections::HashMap;

use crate::archive::reader::{self, LoadedArchive, ReadError};
use crate::cache::{ChunkIndex, ChunkStats};
use crate::crypto::Key;
use crate::manifest::Manifest;
use crate::repository::{ObjectId, Repository};

/// The most data one object may hold (`MAX_DATA_SIZE`); `info` reports how much of it an
/// archive's metadata object uses.
pub const MAX_DATA_SIZE: u64 = 20_971_479;

/// One archive's statistics (`Statistics.as_dict`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArchiveStats {
    /// Sum of the original sizes of regular-file content.
    pub original_size: u64,
    /// Sum of the stored sizes.
    pub compressed_size: u64,
    /// Stored size of the chunks no other archive references.
    pub deduplicated_size: u64,
    /// Number of regular files.
    pub nfiles: u64,
}

/// Sizes and counts from the metadata, or from the items for archives older than borg 1.2,
/// whose metadata has no totals.
fn metadata_totals(
    repository: &mut dyn Repository,
    key: &Key,
    loaded: &LoadedArchive,
    consider_part_files: bool,
) -> Result<(u64, u64, u64), ReadError> {
    let m = &loaded.metadata;
    if let (Some(size), Some(csize), Some(nfiles)) = (m.size, m.csize, m.nfiles) {
        let mut t = (size, csize, nfiles);
        if consider_part_files {
            t.0 += m.size_parts.unwrap_or(0);
            t.1 += m.csize_parts.unwrap_or(0);
            t.2 += m.nfiles_parts.unwrap_or(0);
        }
        return Ok(t);
    }
    let mut t = (0u64, 0u64, 0u64);
    reader::for_each_item(repository, key, m, consider_part_files, &mut |item| {
        if let Some(chunks) = &item.chunks {
            t.0 += chunks.iter().map(|c| c.size).sum::<u64>();
            t.1 += chunks.iter().map(|c| c.csize).sum::<u64>();
            if item.mode.is_some_and(|m| m & 0o170000 == 0o100000) {
                t.2 += 1;
            }
        }
        Ok(())
    })?;
    Ok(t)
}

/// The statistics of one archive. The deduplicated size counts the content chunks (of all
/// items, part items included) whose every reference comes from this archive; borg 1.4.2+
/// leaves the metadata chunks out of it (issue #9003).
pub fn archive_stats(
    repository: &mut dyn Repository,
    key: &Key,
    index: &ChunkIndex,
    loaded: &LoadedArchive,
    consider_part_files: bool,
) -> Result<ArchiveStats, ReadError> {
    let mut own: HashMap<ObjectId, (u32, u64)> = HashMap::new();
    reader::visit_item_stream(
        repository,
        key,
        &loaded.metadata,
        &mut |_, _, _| Ok(()),
        &mut |item| {
            for c in item.chunks.as_deref().unwrap_or_default() {
                own.entry(c.id).or_insert((0, c.csize)).0 += 1;
            }
            Ok(())
        },
    )?;
    let deduplicated_size = own
        .iter()
        .filter(|(id, (refs, _))| index.get(id).is_some_and(|e| e.refcount == *refs))
        .map(|(id, (_, csize))| index.get(id).map_or(*csize, |e| e.csize as u64))
        .sum();
    let (original_size, compressed_size, nfiles) =
        metadata_totals(repository, key, loaded, consider_part_files)?;
    Ok(ArchiveStats {
        original_size,
        compressed_size,
        deduplicated_size,
        nfiles,
    })
}

/// The "All archives" statistics: unique figures from the index, totals summed over the
/// archives' metadata (borg 1.2+ does so because part files would count twice otherwise).
pub fn repository_stats(
    repository: &mut dyn Repository,
    key: &Key,
    manifest: &Manifest,
    index: &ChunkIndex,
    consider_part_files: bool,
) -> Result<ChunkStats, ReadError> {
    let mut stats = index.stats();
    stats.total_size = 0;
    stats.total_csize = 0;
    for entry in manifest.archives.values() {
        let loaded = reader::load_archive(repository, key, &entry.id, false)?;
        let (size, csize, _) = metadata_totals(repository, key, &loaded, consider_part_files)?;
        stats.total_size += size;
        stats.total_csize += csize;
    }
    Ok(stats)
}

/// How much of the most an object may hold the archive's metadata object uses
/// (`limits.max_archive_size`).
pub fn max_archive_size_ratio(index: &ChunkIndex, archive_id: &ObjectId) -> f64 {
    index
        .get(archive_id)
        .map_or(0.0, |e| e.csize as f64 / MAX_DATA_SIZE as f64)
}
