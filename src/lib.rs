//! rborg: a pure-Rust client for BorgBackup 1.x repositories.
//!
//! The library is organised as borg is: [`repository`] is the store of encrypted objects,
//! reached through [`rpc`] over a [`transport`] for remote repositories; [`crypto`] holds keys,
//! envelopes and TAMs; [`chunker`] and [`compress`] turn file contents into chunks exactly as
//! borg does; [`msgpack`] is borg's dialect of msgpack.
#![warn(missing_docs)]

pub mod archive;
pub mod cache;
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
