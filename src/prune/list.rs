//! The lines `borg prune --list` prints (logger `borg.output.list`, on stderr).

use super::engine::{Decision, Verdict};
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
