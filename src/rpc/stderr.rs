//! The server's stderr channel: log records and progress (protocol notes §2.8).
//!
//! After a dict-format negotiate, `borg serve` writes one JSON object per line; before it (or
//! from very old servers) lines look like `$LOG LEVEL LOGGER Remote: message`; anything else
//! (Python warnings, C library messages) is plain text. borg's `handle_remote_line` re-logs all
//! of them on the client with a `Remote: ` prefix; so do we, through the `log` crate.

use std::io::Read;

/// A progress record from the server (`progress_percent` or `progress_message`).
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteProgress {
    /// `progress_percent` or `progress_message`.
    pub kind: String,
    /// What is progressing, e.g. `repository.check`.
    pub msgid: Option<String>,
    /// The operation number, the same for all records of one progress display.
    pub operation: Option<u64>,
    /// The text to show; absent in the final record.
    pub message: Option<String>,
    /// Items done, for percent progress.
    pub current: Option<u64>,
    /// Items in all, for percent progress.
    pub total: Option<u64>,
    /// True in the last record of an operation.
    pub finished: bool,
}

/// Receives progress records; called on the stderr reader thread.
pub type ProgressCallback = Box<dyn FnMut(&RemoteProgress) + Send>;

fn level_from_name(name: &str) -> log::Level {
    // borg maps unknown level names to CRITICAL; `log` has nothing above Error.
    match name {
        "DEBUG" => log::Level::Debug,
        "INFO" => log::Level::Info,
        "WARNING" | "WARN" => log::Level::Warn,
        _ => log::Level::Error,
    }
}

/// Handles one complete line from the server's stderr (without its terminator).
pub fn handle_remote_line(line: &str, progress: &mut Option<ProgressCallback>) {
    if line.starts_with('{') {
        let Ok(record) = serde_json::from_str::<serde_json::Value>(line) else {
            log::warn!(target: "borg.remote", "Remote: {line}");
            return;
        };
        let field = |name: &str| {
            record
                .get(name)
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        match record.get("type").and_then(|t| t.as_str()) {
            Some("log_message") => {
                let level = level_from_name(&field("levelname").unwrap_or_default());
                let target = field("name").unwrap_or_else(|| "borg.remote".to_string());
                let message = field("message").unwrap_or_default();
                log::log!(target: &target, level, "Remote: {message}");
            }
            Some(kind @ ("progress_percent" | "progress_message")) => {
                if let Some(callback) = progress.as_mut() {
                    callback(&RemoteProgress {
                        kind: kind.to_string(),
                        msgid: field("msgid"),
                        operation: record.get("operation").and_then(|v| v.as_u64()),
                        message: field("message"),
                        current: record.get("current").and_then(|v| v.as_u64()),
                        total: record.get("total").and_then(|v| v.as_u64()),
                        finished: record
                            .get("finished")
                            .and_then(|v| v.as_bool())
                            .unwrap_or(false),
                    });
                }
            }
            other => {
                log::warn!(
                    target: "borg.remote",
                    "Dropped remote log message with unknown type {other:?}: {line}"
                );
            }
        }
    } else if let Some(rest) = line.strip_prefix("$LOG ") {
        // "$LOG LEVEL [LOGGER] Remote: message"
        let (level, msg) = rest.split_once(' ').unwrap_or((rest, ""));
        let level = level_from_name(level);
        if msg.starts_with("Remote:") {
            log::log!(target: "borg.remote", level, "{}", msg.trim_end());
        } else {
            let (logger, msg) = msg.split_once(' ').unwrap_or(("borg.remote", msg));
            log::log!(target: logger, level, "{}", msg.trim_end());
        }
    } else if !line.trim().is_empty() {
        // We do not know the priority of a plain line; borg shows it, so make it visible.
        log::warn!(target: "borg.remote", "Remote: {}", line.trim_end());
    }
}

/// Reads the server's stderr until EOF, splitting at `\n` or `\r` as borg does, and handles
/// each line. Runs on its own thread so a chatty server never blocks on a full pipe.
pub fn pump_stderr(mut stderr: impl Read, mut progress: Option<ProgressCallback>) {
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 32 * 1024];
    loop {
        let n = match stderr.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        pending.extend_from_slice(&buf[..n]);
        while let Some(end) = pending.iter().position(|b| *b == b'\n' || *b == b'\r') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            handle_remote_line(&String::from_utf8_lossy(&line[..end]), &mut progress);
        }
    }
    if !pending.is_empty() {
        handle_remote_line(&String::from_utf8_lossy(&pending), &mut progress);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn progress_records_reach_the_callback() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        let callback: ProgressCallback = Box::new(move |p| sink.lock().unwrap().push(p.clone()));
        let input = concat!(
            "{\"message\": \"Checking segments 10.0%\", \"current\": 2, \"total\": 10, \"info\": null, ",
            "\"operation\": 1, \"msgid\": \"repository.check\", \"type\": \"progress_percent\", ",
            "\"finished\": false, \"time\": 1.5}\n",
            "{\"type\": \"log_message\", \"time\": 1.0, \"message\": \"hi\", \"levelname\": \"INFO\", \"name\": \"borg.repository\"}\r",
            "$LOG DEBUG borg.logger Remote: using builtin fallback logging configuration\n",
            "plain text\n",
            "{\"operation\": 1, \"msgid\": \"repository.check\", \"type\": \"progress_percent\", \"finished\": true, \"time\": 2}"
        );
        pump_stderr(input.as_bytes(), Some(callback));
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].message.as_deref(), Some("Checking segments 10.0%"));
        assert_eq!((seen[0].current, seen[0].total), (Some(2), Some(10)));
        assert_eq!(seen[0].msgid.as_deref(), Some("repository.check"));
        assert!(!seen[0].finished);
        assert!(seen[1].finished && seen[1].message.is_none());
    }
}
