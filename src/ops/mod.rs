//! The daily job around the archive commands: configuration, hooks, check schedules, monitoring.
pub mod config;
pub mod schedule;
