//! Archives: the archive metadata object and the items of its item-metadata stream, in the exact
//! form borg 1.x writes them.
//!
//! This module is format only (values to bytes and back); where the bytes go is the business of
//! the repository and the commands.

mod item;
mod metadata;
pub mod reader;
mod stream;
pub mod writer;

pub use item::{ChunkRef, Item, ItemError, ITEM_KEYS};
pub use metadata::{format_time, parse_time, ArchiveMetadata};
pub use stream::{ItemStreamDecoder, StreamError};
