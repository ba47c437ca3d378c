//! rborg: a pure-Rust client for BorgBackup 1.x repositories.
//!
//! The library is organised as borg is: [`repository`] is the store of encrypted objects,
//! reached through [`rpc`] over a [`transport`] for remote repositories; [`crypto`] holds keys,
//! envelopes and TAMs; [`chunker`] and [`compress`] turn file contents into chunks exactly as
//! borg does; [`msgpack`] is borg's dialect of msgpack.
#![warn(missing_docs)]

pub mod chunker;
pub mod compress;
pub mod msgpack;
pub mod pipeline;
pub mod repository;
