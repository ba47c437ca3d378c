//! The stderr logger behind `--info`, `--debug`, … and `--log-json`.
//!
//! Library code logs through the `log` crate; this is the only place that decides how those
//! records reach the terminal. With `--log-json` every record is one JSON object per line, in
//! the shape borg's `JsonFormatter` writes (`type`, `time`, `message`, `levelname`, `name`,
//! and `msgid` for errors and per-file warnings: the name of borg's exception class).

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use log::{Level, LevelFilter, Log, Metadata, Record};

struct StderrLogger {
    level: LevelFilter,
    json: bool,
}

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut err = std::io::stderr().lock();
        if self.json {
            let time = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or_default();
            // `JsonFormatter.format`: this key order, spelled by `json.dumps`; `msgid` only
            // when the record carries one (`log::error!(msgid; ...)`).
            let mut fields = vec![
                ("type", "log_message".into()),
                ("time", time.into()),
                ("message", record.args().to_string().into()),
                ("levelname", level_name(record.level()).into()),
                ("name", record.target().into()),
            ];
            if let Some(msgid) = record.key_values().get(log::kv::Key::from_str("msgid")) {
                fields.push(("msgid", msgid.to_string().into()));
            }
            let line = super::format::python_json_object(&fields);
            let _ = writeln!(err, "{line}");
        } else {
            let _ = writeln!(err, "{}", record.args());
        }
    }

    fn flush(&self) {}
}

/// borg's level names (`WARNING`, not `WARN`).
fn level_name(level: Level) -> &'static str {
    match level {
        Level::Error => "ERROR",
        Level::Warn => "WARNING",
        Level::Info => "INFO",
        Level::Debug => "DEBUG",
        Level::Trace => "DEBUG",
    }
}

/// Installs the logger once, at start-up.
pub fn init(level: LevelFilter, json: bool) {
    if log::set_boxed_logger(Box::new(StderrLogger { level, json })).is_ok() {
        log::set_max_level(level);
    }
}
