//! Memory per entry of the client caches, counted by a global allocator in this test binary:
//! the chunk index must stay at or below borg's 164 bytes per chunk and the files cache at or
//! below borg's 240 bytes per file (borg's docs, "Indexes / Caches memory usage":
//! `chunk_count * 164 + total_file_count * 240`).
//!
//! Counted are the bytes the structure asks the allocator for (live after it is built, and the
//! peak while it is built or loaded), at realistic sizes and at the sizes just past a table
//! resize, where a hash table is emptiest. Allocator overhead (glibc's 8-16 bytes per block)
//! is not in these numbers; the structures keep the number of blocks per entry at zero.
//!
//! Run with `--nocapture` to see the table that `docs/performance.md` quotes.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use rborg::cache::{ChunkIndex, FileStat, FileStatus, FilesCache, FilesCacheMode};

/// Counts the live and peak bytes of the current thread's allocations (each test measures on
/// its own thread, so parallel tests do not mix).
struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn account(delta: isize) {
    let _ = LIVE.try_with(|l| {
        let now = l.get() + delta;
        l.set(now);
        let _ = PEAK.try_with(|p| {
            if now > p.get() {
                p.set(now)
            }
        });
    });
}

// SAFETY: every call is forwarded to the system allocator unchanged; only counters are kept.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            account(layout.size() as isize);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            account(layout.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        account(-(layout.size() as isize));
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            account(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Live bytes now and resets the peak to them.
fn mark() -> isize {
    let live = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(live));
    live
}

fn peak() -> isize {
    PEAK.with(Cell::get)
}

fn live() -> isize {
    LIVE.with(Cell::get)
}

/// A chunk id from a counter: uniformly spread, as real ids are.
fn id(n: u64) -> [u8; 32] {
    rborg::pipeline::bench_data::spread_id(n)
}

/// Per-entry figures of one structure.
struct PerEntry {
    /// Live bytes per entry once built.
    built: f64,
    /// The most live bytes per entry at any size from n/2 to n while building (right after
    /// a table grew, it is at its emptiest).
    worst: f64,
    /// Peak bytes per entry while building (a growing table holds old and new slots).
    peak: f64,
    /// Live bytes per entry when loaded from disk.
    loaded: f64,
    /// Peak bytes per entry while loading (the file's contents are in memory too).
    load_peak: f64,
}

impl std::fmt::Display for PerEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "built {:.1} (worst from n/2 to n {:.1}, peak {:.1}), loaded {:.1} (peak {:.1})",
            self.built, self.worst, self.peak, self.loaded, self.load_peak
        )
    }
}

/// Live bytes per entry after each of the `n` steps, worst over the second half.
fn sweep(n: u64, base: isize, mut step: impl FnMut(u64)) -> f64 {
    let mut worst = 0f64;
    for i in 0..n {
        step(i);
        if i >= n / 2 {
            worst = worst.max((live() - base) as f64 / (i + 1) as f64);
        }
    }
    worst
}

/// A chunk index of `n` chunks built by `add`, then saved and loaded.
fn chunk_index(n: u64, dir: &std::path::Path) -> PerEntry {
    let base = mark();
    let mut ix = ChunkIndex::new();
    let worst = sweep(n, base, |i| {
        ix.add(&id(i), 1000 + (i % 5000) as u32, 700).expect("add");
    });
    let built = (
        (live() - base) as f64 / n as f64,
        (peak() - base) as f64 / n as f64,
    );
    let path = dir.join(format!("chunks-{n}"));
    ix.save(&path).expect("save");
    drop(ix);
    let base = mark();
    let ix = ChunkIndex::load(&path).expect("load").expect("present");
    let loaded = (
        (live() - base) as f64 / n as f64,
        (peak() - base) as f64 / n as f64,
    );
    assert_eq!(ix.len() as u64, n);
    assert!(ix.contains(&id(n - 1)));
    PerEntry {
        built: built.0,
        worst,
        peak: built.1,
        loaded: loaded.0,
        load_peak: loaded.1,
    }
}

fn stat(i: u64) -> FileStat {
    FileStat {
        inode: 1_000_000 + i,
        size: 4096 + i,
        ctime: 1_700_000_000_000_000_000 + i as i64,
        mtime: 1_700_000_000_000_000_000 + i as i64,
    }
}

/// A files cache of `n` files of `k` chunks each, memorized in a run, then saved and loaded
/// by the next run.
fn files_cache(n: u64, k: u64, dir: &std::path::Path) -> PerEntry {
    let base = mark();
    let mut fc = FilesCache::new(FilesCacheMode::default(), 20);
    let worst = sweep(n, base, |i| {
        let ids = (0..k).map(|j| id(i * 16 + j)).collect();
        fc.memorize(id(u64::MAX - i), &stat(i), ids);
    });
    let built = (
        (live() - base) as f64 / n as f64,
        (peak() - base) as f64 / n as f64,
    );
    // One more, newer file: save keeps only entries older than the newest of the run.
    fc.memorize(id(u64::MAX - n), &stat(n + 10), vec![]);
    let path = dir.join(format!("files-{n}-{k}"));
    fc.save(&path).expect("save");
    drop(fc);
    let base = mark();
    let mut fc = FilesCache::load(&path, FilesCacheMode::default(), 20).expect("load");
    let loaded = (
        (live() - base) as f64 / n as f64,
        (peak() - base) as f64 / n as f64,
    );
    assert_eq!(fc.len() as u64, n);
    let want: Vec<[u8; 32]> = (0..k).map(|j| id((n - 1) * 16 + j)).collect();
    assert_eq!(
        fc.lookup(&id(u64::MAX - (n - 1)), &stat(n - 1)),
        FileStatus::Unchanged(want)
    );
    PerEntry {
        built: built.0,
        worst,
        peak: built.1,
        loaded: loaded.0,
        load_peak: loaded.1,
    }
}

/// What one more chunk id per file costs in the files cache, built and loaded: files of four
/// chunks against files of one.
fn chunk_id_cost(dir: &std::path::Path) -> (f64, f64) {
    let one = files_cache(20_000, 1, dir);
    let four = files_cache(20_000, 4, dir);
    (
        (four.built - one.built) / 3.0,
        (four.loaded - one.loaded) / 3.0,
    )
}

/// borg's figures.
const CHUNK_TARGET: f64 = 164.0;
const FILE_TARGET: f64 = 240.0;

#[test]
fn chunk_index_bytes_per_chunk() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 1,000,000 chunks: about 2 TB at borg's default chunk size (2 MiB).
    let n = 1_000_000;
    let m = chunk_index(n, dir.path());
    println!("ChunkIndex n={n}: B/chunk {m}");
    assert!(
        m.worst <= CHUNK_TARGET && m.loaded <= CHUNK_TARGET,
        "chunk index above borg's {CHUNK_TARGET} B/chunk: {m}"
    );
    // Growing briefly holds the old and the new table; that must stay below too.
    assert!(
        m.peak <= CHUNK_TARGET,
        "chunk index peaks above {CHUNK_TARGET}: {m}"
    );
    // borg's 164 B/chunk also covers the chunk's id in the files cache (80 of the 164):
    // rborg's chunk index and that id together must stay within it.
    let (id_cost, _) = chunk_id_cost(dir.path());
    assert!(
        m.worst.max(m.loaded) + id_cost <= CHUNK_TARGET,
        "chunk index {m} + files cache id {id_cost:.1} B/chunk"
    );
}

#[test]
fn files_cache_bytes_per_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 200,000 files of one chunk each (most files are small).
    let n = 200_000;
    let m = files_cache(n, 1, dir.path());
    println!("FilesCache n={n}, 1 chunk/file: B/file {m}");
    assert!(
        m.worst <= FILE_TARGET && m.loaded <= FILE_TARGET,
        "files cache above borg's {FILE_TARGET} B/file: {m}"
    );
    assert!(
        m.peak <= FILE_TARGET,
        "files cache peaks above {FILE_TARGET}: {m}"
    );
    // Files of several chunks: each further chunk id costs its 32 bytes (plus the arena's
    // growth reserve of up to a quarter while a run adds files), not more.
    let (built, loaded) = chunk_id_cost(dir.path());
    println!(
        "FilesCache: each further chunk id of a file costs {built:.1} B built, {loaded:.1} B loaded"
    );
    assert!(built <= 32.0 * 1.25 + 1.0, "{built}");
    assert!(loaded <= 32.0 + 1.0, "{loaded}");
}
