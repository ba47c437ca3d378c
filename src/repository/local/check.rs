//! The repository check and repair (`Repository.check`): verify every segment entry's CRC,
//! rebuild the index from the segments and compare it with the committed one; with repair,
//! salvage damaged segments and write the rebuilt index and hints.

use std::time::{Duration, Instant};

use super::hashindex::NsIndex;
use super::LocalRepository;
use crate::repository::RepositoryError;

/// Runs the check; returns `true` when no error was found, or when repairing.
pub(super) fn check(
    repo: &mut LocalRepository,
    repair: bool,
    max_duration: u64,
) -> Result<bool, RepositoryError> {
    let budget = (max_duration > 0).then(|| Duration::from_secs(max_duration));
    check_with_budget(repo, repair, budget)
}

/// The check with the partial-mode time budget as a duration (`None` = full check), so tests
/// can give a zero budget.
pub(super) fn check_with_budget(
    repo: &mut LocalRepository,
    repair: bool,
    budget: Option<Duration>,
) -> Result<bool, RepositoryError> {
    if repo.append_only && repair {
        return Err(RepositoryError::AppendOnly(repo.path_str.clone()));
    }
    if repo.active_txn {
        return Err(super::python_error(
            "AssertionError",
            "check called with an active transaction",
        ));
    }
    let mut errors: Vec<String> = Vec::new();
    let mut report = |msg: String| {
        log::error!("{msg}");
        errors.push(msg);
    };
    log::info!("Starting repository check");
    // The committed index as found on disk, if it can be read at all.
    let (mut transaction_id, current_index) = match committed_index(repo) {
        Ok((tid, index)) => (tid, index),
        Err(e) => {
            log::debug!("Failed to read committed index ({e})");
            (repo.io()?.segments_transaction_id(), None)
        }
    };
    if transaction_id.is_none() {
        transaction_id = repo.index_transaction_id();
    }
    if transaction_id.is_none() {
        transaction_id = repo.io()?.latest_segment();
    }
    let Some(transaction_id) = transaction_id else {
        report("This repository contains no valid data.".into());
        return Ok(false);
    };
    // Taking the transaction needs the exclusive lock; check holds it as borg's does.
    repo.require_exclusive(true)?;
    if repair {
        repo.io()?.cleanup(Some(transaction_id))?;
    }
    let segments_tid = repo.io()?.segments_transaction_id();
    repo.active_txn = true;
    repo.txn_prepared = true;
    repo.index = Some(NsIndex::default());
    repo.reset_state();
    let partial = budget.is_some();
    if partial && repair {
        repo.active_txn = false;
        return Err(super::python_error(
            "AssertionError",
            "a partial check cannot repair",
        ));
    }
    let last_checked: i128 = if partial {
        repo.config
            .get("repository", "last_segment_checked")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(-1)
    } else {
        repo.config.remove("repository", "last_segment_checked");
        repo.save_config()?;
        -1
    };
    let start = Instant::now();
    let mut finished = true;
    let segments = repo.io()?.segments();
    for (seg, _) in segments {
        if (seg as i128) <= last_checked || seg > transaction_id {
            continue;
        }
        let (mut entries, err) = repo.io()?.iter_objects(seg, 0);
        if let Some(e) = err {
            report(e.to_string());
            entries.clear();
            if repair {
                repo.io()?.recover_segment(seg)?;
                let (again, err) = repo.io()?.iter_objects(seg, 0);
                if let Some(e) = err {
                    repo.active_txn = false;
                    return Err(e);
                }
                entries = again;
            }
        }
        if !partial {
            repo.update_index(seg, &entries, &mut |msg| {
                report(msg);
                Ok(())
            })?;
        }
        if budget.is_some_and(|b| start.elapsed() >= b) {
            log::info!("finished partial segment check, last segment checked is {seg}");
            repo.config
                .set("repository", "last_segment_checked", &seg.to_string());
            repo.save_config()?;
            finished = false;
            break;
        }
    }
    if finished {
        repo.config.remove("repository", "last_segment_checked");
        repo.save_config()?;
    }
    if repair && segments_tid.is_none() {
        report(format!("Adding commit tag to segment {transaction_id}"));
        let io = repo.io()?;
        io.segment = transaction_id + 1;
        io.write_commit(false)?;
    }
    if !partial {
        log::info!("Starting repository index check");
        if let (Some(current), false) = (current_index.as_ref(), repair) {
            let rebuilt = repo.index.take().unwrap_or_default();
            if current.len() != rebuilt.len() {
                report("Index object count mismatch.".into());
                report(format!("committed index: {} objects", current.len()));
                report(format!("rebuilt index:   {} objects", rebuilt.len()));
            }
            for (key, s, o) in rebuilt.iter() {
                if current.get(&key) != Some((s, o)) {
                    report(format!(
                        "ID: {} rebuilt index: {:?} committed index: {:?}",
                        hex::encode(key),
                        (s, o),
                        current.get(&key)
                    ));
                }
            }
            for (key, s, o) in current.iter() {
                if !rebuilt.contains(&key) {
                    report(format!(
                        "ID: {} rebuilt index: <not found> committed index: {:?}",
                        hex::encode(key),
                        (s, o)
                    ));
                }
            }
            repo.index = Some(rebuilt);
        }
        if repair {
            repo.write_index()?;
        }
    }
    repo.rollback_state();
    let mode = if partial { "partial" } else { "full" };
    if errors.is_empty() {
        log::info!("Finished {mode} repository check, no problems found.");
    } else if repair {
        log::info!("Finished {mode} repository check, errors found and repaired.");
    } else {
        log::error!("Finished {mode} repository check, errors found.");
    }
    Ok(errors.is_empty() || repair)
}

/// The committed transaction id and its index, replaying first if needed (borg's
/// `get_transaction_id` + `open_index` inside check).
fn committed_index(
    repo: &mut LocalRepository,
) -> Result<(Option<u64>, Option<NsIndex>), RepositoryError> {
    let tid = repo.transaction_id()?;
    let Some(t) = tid else {
        return Ok((None, Some(NsIndex::default())));
    };
    repo.index = None;
    repo.ensure_index()?;
    let index = repo.index.take();
    Ok((Some(t), index))
}
