//! Keys, object envelopes, TAMs and nonces for every borg 1.x encryption mode.
//!
//! * [`key`]: the key types and their secrets; [`Key`] is what the rest of rborg holds.
//! * [`envelope`]: chunk ids and the object envelope (encrypt, decrypt, MAC and id checks).
//! * [`tam`]: the MAC inside the manifest and archive metadata.
//! * [`keyblob`]: the passphrase-encrypted key blob; [`keyfile`]: key files in the keys dir.
//! * [`passphrase`]: getting a passphrase the way borg does.
//! * [`nonces`]: the AES-CTR counter and its reservations; [`security`]: the security dir.
//! * [`open`]: finding and unlocking the key of a repository; [`init`]: `borg init`;
//!   [`keymanager`]: `borg key export/import/change-passphrase`.
//! * [`settings`]: the `BORG_*` environment, read once.

#[cfg(test)]
mod borg_data_tests;
pub mod envelope;
pub mod init;
pub mod key;
pub mod keyblob;
pub mod keyfile;
pub mod keymanager;
pub mod nonces;
pub mod open;
pub mod passphrase;
pub mod security;
pub mod settings;
pub mod tam;

pub use envelope::{num_cipher_blocks, EnvelopeError};
pub use key::{Key, KeyError, KeyMaterial, KeyStorage, KeyType};
pub use nonces::NonceManager;
pub use passphrase::Passphrase;
pub use settings::CryptoSettings;
pub use tam::{TamContext, TamError, TamStatus};
