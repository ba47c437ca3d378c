//! rborg: a pure-Rust client for BorgBackup 1.x repositories.
//!
//! The library is organised as borg is: [`repository`] is the store of encrypted objects,
//! reached through [`rpc`] over a [`transport`] for remote repositories; [`crypto`] holds keys,
//! envelopes and TAMs; [`chunker`] and [`compress`] turn file contents into chunks exactly as
//! borg does; [`msgpack`] is borg's dialect of msgpack.
#![warn(missing_docs)]

/// The borg release whose repository protocol, command line, output and exit codes rborg
/// follows. It is what rborg announces where borg announces its own version: in the RPC
/// `negotiate`, in `BORG_VERSION` for `BORG_RSH` commands, in the `{borgversion}`
/// placeholders and as the version number of `rborg --version` (tools such as borgmatic choose
/// their flags by parsing that line).
pub const BORG_VERSION: (u32, u32, u32) = (1, 4, 5);

/// [`BORG_VERSION`] written as borg writes it (`1.4.5`).
pub const BORG_VERSION_TEXT: &str = "1.4.5";

pub mod archive;
pub mod cache;
pub mod check;
pub mod chunker;
pub mod commands;
pub mod compress;
pub mod crypto;
pub mod fs;
pub mod location;
pub mod manifest;
pub mod msgpack;
pub mod ops;
pub mod patterns;
pub mod pipeline;
pub mod placeholders;
pub mod prune;
pub mod repository;
pub mod rpc;
pub mod serve;
pub mod settings;
pub mod transport;
