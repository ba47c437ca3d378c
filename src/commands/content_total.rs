//! How many content bytes a `create` run will meet, for the ETA of `--progress` (borg shows no
//! ETA; this is rborg's addition).
//!
//! The total comes from a second walk over the same paths with the same walk options (patterns,
//! exclusions, `--one-file-system`) that only looks at each object's `lstat` size, never opening
//! a file. It runs on its own thread beside the backup, so it costs no wall-clock time on a
//! machine with a spare core, and it warms the dentry and inode caches the backup's own walk
//! uses; until it has finished there is no total, hence no ETA. Each inode counts once (later
//! hard links have no content of their own, as in the archive). The estimate is as good as the
//! sizes at walk time: files that grow or shrink meanwhile, and `--read-special` devices (whose
//! size `lstat` does not tell), are not reflected.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::fs::{Entry, EntryKind, VisitError, Visitor, WalkOptions, WalkWarning, Walker};

/// Counts the bytes of regular-file content under `roots` as `create` would walk them with
/// `options`; `cancel` stops the count early (the result is then `None`).
pub fn count_content(roots: &[Vec<u8>], options: WalkOptions, cancel: &AtomicBool) -> Option<u64> {
    let mut counter = Counter {
        total: 0,
        seen: HashSet::new(),
        cancel,
    };
    let walked = Walker::new(WalkOptions {
        // A dry run never calls the visitor for objects.
        dry_run: false,
        ..options
    })
    .walk(roots, &mut counter);
    match walked {
        Ok(()) if !cancel.load(Ordering::Relaxed) => Some(counter.total),
        _ => None,
    }
}

struct Counter<'a> {
    total: u64,
    /// (inode, device) of files with several links already counted.
    seen: HashSet<(u64, u64)>,
    cancel: &'a AtomicBool,
}

impl Visitor for Counter<'_> {
    fn entry(&mut self, entry: &Entry<'_>) -> Result<Option<char>, VisitError> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(VisitError::Fatal("count cancelled".into()));
        }
        let st = &entry.stat;
        if entry.kind == EntryKind::File && (st.nlink <= 1 || self.seen.insert((st.ino, st.dev))) {
            self.total += st.size.max(0) as u64;
        }
        Ok(None)
    }

    fn status(&mut self, _status: char, _path: &[u8]) {}

    fn warning(&mut self, _warning: WalkWarning) {}
}

/// [`count_content`] on a background thread; the total becomes known when it finishes.
#[derive(Debug)]
pub struct ContentTotal {
    total: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
    cancel: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ContentTotal {
    /// Starts counting `roots` walked with `options` (build them as for the backup itself).
    pub fn start(roots: Vec<Vec<u8>>, options: WalkOptions) -> std::io::Result<ContentTotal> {
        let total = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let cancel = Arc::new(AtomicBool::new(false));
        let (t, d, c) = (total.clone(), done.clone(), cancel.clone());
        let thread = std::thread::Builder::new()
            .name("content-total".into())
            .spawn(move || {
                if let Some(n) = count_content(&roots, options, &c) {
                    t.store(n, Ordering::Relaxed);
                    d.store(true, Ordering::Release);
                }
            })?;
        Ok(ContentTotal {
            total,
            done,
            cancel,
            thread: Some(thread),
        })
    }

    /// The total, once the count has finished.
    pub fn total(&self) -> Option<u64> {
        self.done
            .load(Ordering::Acquire)
            .then(|| self.total.load(Ordering::Relaxed))
    }
}

impl Drop for ContentTotal {
    /// Stops the count if it still runs and waits for its thread.
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_files_once_per_inode_and_honours_excludes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("src");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir_all(root.join("skip")).unwrap();
        std::fs::write(root.join("a"), vec![1u8; 1000]).unwrap();
        std::fs::write(root.join("sub/b"), vec![2u8; 250]).unwrap();
        std::fs::hard_link(root.join("sub/b"), root.join("b2")).unwrap();
        std::fs::write(root.join("skip/big"), vec![3u8; 5000]).unwrap();
        std::os::unix::fs::symlink("a", root.join("link")).unwrap();
        let roots = vec![root.as_os_str().as_encoded_bytes().to_vec()];
        let cancel = AtomicBool::new(false);
        assert_eq!(
            count_content(&roots, WalkOptions::default(), &cancel),
            Some(6250)
        );
        let mut matcher = crate::patterns::PatternMatcher::new();
        matcher.add_exclude("*/skip").unwrap();
        let opts = WalkOptions {
            matcher,
            ..WalkOptions::default()
        };
        assert_eq!(count_content(&roots, opts, &cancel), Some(1250));
        cancel.store(true, Ordering::Relaxed);
        assert_eq!(count_content(&roots, WalkOptions::default(), &cancel), None);
        let bg = ContentTotal::start(roots, WalkOptions::default()).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while bg.total().is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(bg.total(), Some(6250));
    }
}
