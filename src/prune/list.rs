//! The lines `borg prune --list` prints (logger `borg.output.list`, on stderr).

use super::engine::{is_checkpoint_name, Decision, Verdict};
use super::{BorgVersion, LocalZone, PruneArchive};

/// borg's `format_archive`: name padded to 36 characters, local time, archive id in hex.
pub fn format_archive(archive: &PruneArchive, zone: &LocalZone) -> String {
    format!(
        "{:<36} {} [{}]",
        archive.name,
        zone.local_time(archive.ts).format_borg(),
        hex::encode(archive.id)
    )
}

/// The `--list` lines for `decisions` (in the order given, which should be [`super::prune`]'s),
/// exactly as `do_prune` prints them for `version`. With `dry_run` pruned archives say
/// `Would prune:`, otherwise `Pruning archive (i/total):` counting the pruned ones.
pub fn list_lines(
    decisions: &[Decision],
    zone: &LocalZone,
    version: BorgVersion,
    dry_run: bool,
) -> Vec<String> {
    let total = decisions
        .iter()
        .filter(|d| d.verdict == Verdict::Prune)
        .count();
    let width = version.list_message_width();
    let mut deleted = 0;
    decisions
        .iter()
        .map(|d| {
            let message = match d.verdict {
                Verdict::Keep(reason) => format!("Keeping archive (rule: {reason}):"),
                Verdict::KeepCheckpoint => "Keeping checkpoint archive:".to_string(),
                Verdict::Prune if dry_run => "Would prune:".to_string(),
                Verdict::Prune => {
                    deleted += 1;
                    format!("Pruning archive ({deleted}/{total}):")
                }
            };
            format!("{message:<width$} {}", format_archive(&d.archive, zone))
        })
        .collect()
}

/// The summary `do_prune` logs at INFO level before the list (borg 1.4.5+; empty for older
/// versions): archive and checkpoint counts of the whole manifest (`all`), of the candidates,
/// and of what is kept and pruned.
pub fn summary_lines(
    all: &[PruneArchive],
    decisions: &[Decision],
    version: BorgVersion,
) -> Vec<String> {
    if !version.has_prune_summary() {
        return Vec::new();
    }
    let total_checkpoints = all.iter().filter(|a| is_checkpoint_name(&a.name)).count();
    // (candidates, kept, pruned) for normal archives [0] and checkpoints [1]
    let mut counts = [[0usize; 3]; 2];
    for d in decisions {
        let c = &mut counts[usize::from(d.archive.is_checkpoint())];
        c[0] += 1;
        c[if d.verdict == Verdict::Prune { 2 } else { 1 }] += 1;
    }
    let [normal, checkpoints] = counts;
    vec![
        format!(
            "Repository contains {} normal archives and {total_checkpoints} checkpoint archives.",
            all.len() - total_checkpoints
        ),
        format!(
            "Applying rules to the matching {} archives and {} checkpoints...",
            normal[0], checkpoints[0]
        ),
        format!(
            "Keeping {} archives and {} checkpoints, pruning {} archives and {} checkpoints.",
            normal[1], checkpoints[1], normal[2], checkpoints[2]
        ),
    ]
}
