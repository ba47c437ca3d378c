//! The prune decision: which candidate archives are kept, by which rule, and which are pruned.
//!
//! Mirrors `archiver.py:do_prune` with `helpers/misc.py:prune_within / prune_split` of borg
//! 1.2 and 1.4 (they agree on everything but the quarterly rules, which only 1.4.1+ has).

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fmt;

use super::period::{period, Period};
use super::{PruneArchive, PruneError, PruneRules, PruneSettings, Rule};
use crate::repository::ObjectId;

/// Why an archive is kept: the rule and the rule's running number, as `--list` prints them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepReason {
    /// The rule that kept it.
    pub rule: Rule,
    /// Kept by the "oldest archive fills an unmet quota" step of `prune_split`
    /// (printed as `<rule>[oldest]`).
    pub oldest: bool,
    /// How many archives this rule had kept, counting this one (1-based).
    pub number: usize,
}

impl fmt::Display for KeepReason {
    /// `daily #1`, `yearly[oldest] #3`: the text inside `Keeping archive (rule: ...)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let oldest = if self.oldest { "[oldest]" } else { "" };
        write!(f, "{}{} #{}", self.rule.name(), oldest, self.number)
    }
}

/// What prune does with one candidate archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Kept by a rule.
    Keep(KeepReason),
    /// The newest checkpoint, kept because no complete archive is newer.
    KeepCheckpoint,
    /// To be deleted.
    Prune,
}

/// The decision for one candidate archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The archive.
    pub archive: PruneArchive,
    /// What happens to it.
    pub verdict: Verdict,
}

/// Whether `name` is a checkpoint name: it ends in `.checkpoint` or `.checkpoint.<digits>`
/// (`do_prune`'s `is_checkpoint`).
pub fn is_checkpoint_name(name: &str) -> bool {
    let Some(dot) = name.rfind(".checkpoint") else {
        return false;
    };
    let chars: Vec<char> = name[dot..].chars().collect();
    super::glob::checkpoint_suffix_ok(&chars)
}

/// Decide, as `borg prune` does, what happens to each archive.
///
/// `archives` are the manifest's entries in manifest order; the order only matters between
/// archives with the same timestamp (borg sorts stably, then reverses). Archives the filter does
/// not match get no decision. The result lists the candidates newest first, which is the order
/// borg deletes and lists them in.
///
/// Fails if the rules are not valid for `settings.version` (e.g. no rule at all), or the glob
/// cannot be compiled.
pub fn prune(
    archives: &[PruneArchive],
    rules: &PruneRules,
    settings: &PruneSettings,
) -> Result<Vec<Decision>, PruneError> {
    rules.check(settings.version)?;
    let matcher = settings.filter.compile()?;

    // Archives.list(sort_by=['ts'], reverse=True): a stable ascending sort, then reversed.
    let mut candidates: Vec<&PruneArchive> = archives
        .iter()
        .filter(|a| matcher.matches(&a.name))
        .collect();
    candidates.sort_by_key(|a| a.ts);
    candidates.reverse();

    let is_checkpoint: Vec<bool> = candidates.iter().map(|a| a.is_checkpoint()).collect();
    // The newest checkpoint survives only if it is the newest candidate of all.
    let keep_first_checkpoint = is_checkpoint.first() == Some(&true);

    // Checkpoints never count for any rule.
    let normal: Vec<usize> = (0..candidates.len())
        .filter(|i| !is_checkpoint[*i])
        .collect();

    // Keyed by archive id like borg's `kept_because`: "already kept" is a question about ids.
    let mut kept_because: HashMap<ObjectId, KeepReason> = HashMap::new();
    let mut kept = vec![false; candidates.len()];

    if let Some(hours) = rules.within_hours.filter(|h| *h > 0) {
        // prune_within: ts > now - hours, strictly.
        let limit = i128::from(settings.now.as_microsecond()) - i128::from(hours) * 3_600_000_000;
        let mut number = 0;
        for &i in &normal {
            if i128::from(candidates[i].ts.as_microsecond()) > limit {
                number += 1;
                kept_because.insert(
                    candidates[i].id,
                    KeepReason {
                        rule: Rule::Within,
                        oldest: false,
                        number,
                    },
                );
                kept[i] = true;
            }
        }
    }

    let local: Vec<_> = normal
        .iter()
        .map(|&i| settings.zone.local_time(candidates[i].ts))
        .collect();
    for rule in Rule::PERIOD_RULES {
        let n = rules.count(rule);
        if n == 0 {
            continue;
        }
        let archives: Vec<(usize, ObjectId, Period)> = normal
            .iter()
            .zip(&local)
            .map(|(&i, t)| (i, candidates[i].id, period(rule, t)))
            .collect();
        let fallback = settings.version.has_oldest_fallback();
        for i in prune_split(&archives, rule, n, fallback, &mut kept_because) {
            kept[i] = true;
        }
    }

    let decisions = candidates
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let verdict = if is_checkpoint[i] {
                if i == 0 && keep_first_checkpoint {
                    Verdict::KeepCheckpoint
                } else {
                    Verdict::Prune
                }
            } else if kept[i] {
                // borg looks the reason up by id; with unique ids this is this archive's own.
                kept_because
                    .get(&a.id)
                    .copied()
                    .map_or(Verdict::Prune, Verdict::Keep)
            } else {
                Verdict::Prune
            };
            Decision {
                archive: (*a).clone(),
                verdict,
            }
        })
        .collect();
    Ok(decisions)
}

/// borg's `prune_split` for one rule over `(index, id, period)` newest first: keep the newest
/// archive of each period not yet kept by an earlier rule, up to `n` (unlimited if negative).
/// A period whose newest archive is already kept is used up without counting. Returns the
/// indices it keeps and records them in `kept_because`.
fn prune_split(
    archives: &[(usize, ObjectId, Period)],
    rule: Rule,
    n: i64,
    oldest_fallback: bool,
    kept_because: &mut HashMap<ObjectId, KeepReason>,
) -> Vec<usize> {
    let mut keep = Vec::new();
    let mut last: Option<Period> = None;
    let quota_met = |kept: usize| i64::try_from(kept).is_ok_and(|k| k == n);
    for &(i, id, p) in archives {
        if last == Some(p) {
            continue;
        }
        last = Some(p);
        if let Entry::Vacant(slot) = kept_because.entry(id) {
            keep.push(i);
            slot.insert(KeepReason {
                rule,
                oldest: false,
                number: keep.len(),
            });
            if quota_met(keep.len()) {
                return keep;
            }
        }
    }
    // The walk ran out before the quota was met: the oldest archive (the last one visited) is
    // kept too, unless it already is. A negative n never gets here (`len(keep) < n` is false).
    let short = i64::try_from(keep.len()).is_ok_and(|k| k < n);
    if oldest_fallback && short {
        if let Some(&(i, id, _)) = archives.last() {
            if let Entry::Vacant(slot) = kept_because.entry(id) {
                keep.push(i);
                slot.insert(KeepReason {
                    rule,
                    oldest: true,
                    number: keep.len(),
                });
            }
        }
    }
    keep
}
