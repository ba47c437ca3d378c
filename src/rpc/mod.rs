//! borg's RPC: msgpack messages over the stdin/stdout of `borg serve`.
//!
//! [`message`] knows the bytes (pure functions), [`stderr`] the server's log channel,
//! [`version`] the version tuples, and [`client`] runs a pipelined session over a
//! [`crate::transport::Transport`].

pub mod client;
pub mod message;
pub mod stderr;
pub mod version;

#[cfg(test)]
pub(crate) mod scripted;

pub use client::{ClientOptions, RpcClient};
pub use message::{decode_response, fuzz_response, RemoteException, Response};
pub use stderr::{ProgressCallback, RemoteProgress};
pub use version::ServerVersion;
