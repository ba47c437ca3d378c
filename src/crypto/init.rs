//! `borg init` as a library function (`Archiver.do_init`).
//!
//! On a repository just opened with `create = true`: make a key, store it (repokey types via
//! `save_key`, keyfile types into the keys dir), write the empty manifest with a TAM (which
//! reserves counter values with `get_free_nonce`/`commit_nonce_reservation` first), commit,
//! and record the repository in the security dir. That is the call sequence borg's client
//! sends (spec protocol.md §2.5).

use std::path::PathBuf;

use super::key::{Key, KeyError, KeyMaterial, KeyStorage, KeyType};
use super::keyblob::{encrypt_key, KeyBlobError};
use super::keyfile::{new_key_file_target, write_key_file, KeyLocation, KeyfileError};
use super::keymanager::RelatedSecrets;
use super::nonces::NonceManager;
use super::open::{KeyTarget, OpenedKey};
use super::passphrase::{new_passphrase, Passphrase, PassphraseError, Prompter};
use super::security::{SecurityDir, SecurityError};
use super::settings::CryptoSettings;
use crate::manifest::{Manifest, ManifestError, PayloadCodec};
use crate::repository::{CommitOptions, Repository, RepositoryError};

/// Why `init` failed.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// Key generation failed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The related secrets come from the other id-hash family.
    #[error(
        "You must keep the same ID hash (HMAC-SHA256 or BLAKE2b) or deduplication will break."
    )]
    RelatedSecrets,
    /// No passphrase.
    #[error(transparent)]
    Passphrase(#[from] PassphraseError),
    /// The key blob could not be made.
    #[error(transparent)]
    Blob(#[from] KeyBlobError),
    /// The key file could not be written.
    #[error(transparent)]
    Keyfile(#[from] KeyfileError),
    /// The manifest could not be written.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The security dir could not be written.
    #[error(transparent)]
    Security(#[from] SecurityError),
    /// The repository failed.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

impl InitError {
    /// Borg 1.4's exit code for this error with `BORG_EXIT_CODES=modern` (legacy: always 2).
    pub fn exit_code(&self) -> i32 {
        match self {
            InitError::Key(e) => e.exit_code(),
            InitError::Passphrase(e) => e.exit_code(),
            InitError::Blob(e) => e.exit_code(),
            InitError::Keyfile(e) => e.exit_code(),
            InitError::Manifest(e) => e.exit_code(),
            InitError::Security(e) => e.exit_code(),
            InitError::RelatedSecrets | InitError::Repository(_) => 2,
        }
    }
}

/// What `init` made.
#[derive(Debug)]
pub struct Initialized {
    /// The new key, unlocked.
    pub key: OpenedKey,
    /// The manifest as written.
    pub manifest: Manifest,
    /// The key file, for keyfile types.
    pub key_file: Option<PathBuf>,
}

/// What `init` is asked to make.
#[derive(Debug, Clone)]
pub struct InitOptions<'a> {
    /// The encryption mode.
    pub key_type: KeyType,
    /// Where the repository is (for the key file name and the security dir).
    pub location: &'a KeyLocation,
    /// The passphrase; `None` takes it from the settings or the prompt like borg.
    pub passphrase: Option<Passphrase>,
    /// `--import-related-secrets` (borg 1.4.5): reuse another repository's id key and seed.
    pub related: Option<&'a RelatedSecrets>,
}

impl<'a> InitOptions<'a> {
    /// A mode and a location, everything else borg's default.
    pub fn new(key_type: KeyType, location: &'a KeyLocation) -> InitOptions<'a> {
        InitOptions {
            key_type,
            location,
            passphrase: None,
            related: None,
        }
    }
}

/// Initializes a repository. `none` takes no passphrase.
pub fn init(
    repository: &mut dyn Repository,
    options: InitOptions<'_>,
    settings: &CryptoSettings,
    prompter: &mut dyn Prompter,
    codec: &dyn PayloadCodec,
) -> Result<Initialized, InitError> {
    let InitOptions {
        key_type,
        location,
        passphrase,
        related,
    } = options;
    let repository_id = *repository.id();
    let security = SecurityDir::new(settings, &repository_id);
    let (key, passphrase, target) = if key_type == KeyType::Plaintext {
        (Key::plaintext(), Passphrase::default(), KeyTarget::None)
    } else {
        let passphrase = match passphrase {
            Some(p) => p,
            // Keyfile, repokey and authenticated keys all allow an empty passphrase.
            None => new_passphrase(settings, prompter, true)?,
        };
        let mut material = KeyMaterial::generate(key_type, &repository_id)?;
        if let Some(r) = related {
            if !r.fits(key_type) {
                return Err(InitError::RelatedSecrets);
            }
            material.id_key = r.id_key.to_vec();
            material.chunk_seed = r.chunk_seed;
        }
        let key = Key::new(key_type, material)?;
        let material = key.material().ok_or(KeyError::EmptyManifest)?;
        let blob = encrypt_key(material, &passphrase)?;
        let target = match key_type.storage() {
            KeyStorage::Repo => {
                repository.save_key(blob.as_bytes())?;
                KeyTarget::Repository
            }
            KeyStorage::Keyfile => {
                let path = new_key_file_target(settings, location);
                write_key_file(&path, &repository_id, &blob, true)?;
                KeyTarget::File(path)
            }
            KeyStorage::None => KeyTarget::None,
        };
        (key, passphrase, target)
    };
    let mut nonces = NonceManager::new(0, Some(security.nonce_file()));
    let mut manifest = Manifest::new();
    manifest.write(repository, &key, &mut nonces, codec)?;
    repository.commit(CommitOptions::default())?;
    let logically_encrypted = key_type.is_encrypted() && !passphrase.is_empty();
    let timestamp = manifest.timestamp.clone().unwrap_or_default();
    security.assert_secure(
        &location.canonical_path,
        key_type,
        logically_encrypted,
        &timestamp,
        None,
        false,
        settings,
        prompter,
    )?;
    if key.tam_required() {
        security.set_tam_required(true)?;
    }
    let key_file = match &target {
        KeyTarget::File(p) => Some(p.clone()),
        _ => None,
    };
    Ok(Initialized {
        key: OpenedKey {
            key,
            passphrase,
            target,
            logically_encrypted,
        },
        manifest,
        key_file,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::keymanager::{
        change_passphrase, export_paper, export_plain, import_paper, import_plain,
    };
    use crate::crypto::nonces::tests::MemRepo;
    use crate::crypto::open::{load_key_blob, open_key, OpenError};
    use crate::crypto::passphrase::NoPrompt;
    use crate::manifest::DefaultCodec;

    fn settings(t: &tempfile::TempDir, pass: &str) -> CryptoSettings {
        let mut s = CryptoSettings::under(t.path());
        s.passphrase = Some(Passphrase::new(pass));
        s
    }

    #[test]
    fn init_then_open_every_mode() {
        for key_type in KeyType::INIT_MODES {
            let t = tempfile::tempdir().unwrap();
            let s = settings(&t, "rborg-test");
            let mut repo = MemRepo {
                id: [0x33; 32],
                ..MemRepo::default()
            };
            let loc = KeyLocation::local("/tmp/r");
            let done = init(
                &mut repo,
                InitOptions::new(key_type, &loc),
                &s,
                &mut NoPrompt,
                &DefaultCodec,
            )
            .unwrap();
            // Borg's order: save_key, get_free_nonce, commit_nonce_reservation, put, commit.
            let expected: Vec<&str> = match (key_type.storage(), key_type.is_encrypted()) {
                (KeyStorage::Repo, true) => vec![
                    "save_key",
                    "get_free_nonce",
                    "commit_nonce_reservation",
                    "put",
                    "commit",
                ],
                (KeyStorage::Repo, false) => vec!["save_key", "put", "commit"],
                (_, true) => vec![
                    "get_free_nonce",
                    "commit_nonce_reservation",
                    "put",
                    "commit",
                ],
                _ => vec!["put", "commit"],
            };
            assert_eq!(repo.calls, expected, "{key_type:?}");
            let sec = SecurityDir::new(&s, &[0x33; 32]);
            assert!(sec.known());
            assert_eq!(sec.tam_required(), key_type != KeyType::Plaintext);
            assert_eq!(
                done.key_file.is_some(),
                key_type.storage() == KeyStorage::Keyfile
            );
            // Open it again as a later command would.
            let envelope = repo.objects[&[0; 32]].clone();
            assert_eq!(envelope[0], key_type.type_byte());
            let opened = open_key(&mut repo, &envelope, "/tmp/r", &s, &mut NoPrompt).unwrap();
            assert_eq!(opened.key.key_type(), key_type);
            let (m, _) = Manifest::load(&mut repo, &opened.key, &DefaultCodec, false).unwrap();
            assert!(m.tam_verified);
            assert!(m.archives.is_empty());
            sec.assert_secure(
                "/tmp/r",
                key_type,
                opened.logically_encrypted,
                m.timestamp.as_deref().unwrap(),
                None,
                true,
                &s,
                &mut NoPrompt,
            )
            .unwrap();
            if key_type.is_encrypted() {
                assert_eq!(
                    repo.nonce,
                    Some((1 << 28) + crate::crypto::num_cipher_blocks(envelope.len() - 41))
                );
                // A wrong passphrase from the environment is a clear error.
                let bad = settings(&t, "wrong");
                let e = open_key(&mut repo, &envelope, "/tmp/r", &bad, &mut NoPrompt).unwrap_err();
                assert!(
                    matches!(e, OpenError::Passphrase(PassphraseError::PassphraseWrong)),
                    "{e}"
                );
                assert_eq!(e.exit_code(), 52);
            }
        }
    }

    #[test]
    fn export_import_and_change_passphrase() {
        let t = tempfile::tempdir().unwrap();
        let s = settings(&t, "one");
        let mut repo = MemRepo {
            id: [0x44; 32],
            ..MemRepo::default()
        };
        let loc = KeyLocation::local("/r");
        let mut done = init(
            &mut repo,
            InitOptions::new(KeyType::Keyfile, &loc),
            &s,
            &mut NoPrompt,
            &DefaultCodec,
        )
        .unwrap();
        let (blob, _) = load_key_blob(&mut repo, KeyType::Keyfile, &s, "/r").unwrap();
        let plain = export_plain(&[0x44; 32], &blob);
        assert_eq!(import_plain(&[0x44; 32], &plain).unwrap(), blob);
        let paper = export_paper(&[0x44; 32], &blob).unwrap();
        let from_paper = import_paper(&[0x44; 32], &paper).unwrap();
        assert!(
            crate::crypto::keyblob::decrypt_key(&from_paper, &Passphrase::new("one"))
                .unwrap()
                .is_some()
        );
        let mut s2 = s.clone();
        s2.new_passphrase = Some(Passphrase::new("two"));
        change_passphrase(&mut repo, &mut done.key, &s2, &mut NoPrompt).unwrap();
        let envelope = repo.objects[&[0; 32]].clone();
        assert!(open_key(&mut repo, &envelope, "/r", &s, &mut NoPrompt).is_err());
        let s3 = settings(&t, "two");
        let again = open_key(&mut repo, &envelope, "/r", &s3, &mut NoPrompt).unwrap();
        assert_eq!(
            again.key.material().unwrap().enc_key,
            done.key.key.material().unwrap().enc_key
        );
    }

    #[test]
    fn related_secrets_are_reused() {
        let t = tempfile::tempdir().unwrap();
        let s = settings(&t, "p");
        let loc = KeyLocation::local("/r");
        let mut first = MemRepo {
            id: [1; 32],
            ..MemRepo::default()
        };
        let a = init(
            &mut first,
            InitOptions::new(KeyType::Repokey, &loc),
            &s,
            &mut NoPrompt,
            &DefaultCodec,
        )
        .unwrap();
        let related = RelatedSecrets::of(&a.key.key).unwrap();
        let mut second = MemRepo {
            id: [2; 32],
            ..MemRepo::default()
        };
        let options = InitOptions {
            related: Some(&related),
            ..InitOptions::new(KeyType::Authenticated, &loc)
        };
        let b = init(&mut second, options, &s, &mut NoPrompt, &DefaultCodec).unwrap();
        assert_eq!(a.key.key.id_hash(b"chunk"), b.key.key.id_hash(b"chunk"));
        assert_eq!(a.key.key.chunk_seed(), b.key.key.chunk_seed());
        assert_ne!(
            a.key.key.material().unwrap().enc_key,
            b.key.key.material().unwrap().enc_key
        );
        let mut third = MemRepo {
            id: [3; 32],
            ..MemRepo::default()
        };
        let options = InitOptions {
            related: Some(&related),
            ..InitOptions::new(KeyType::RepokeyBlake2, &loc)
        };
        assert!(matches!(
            init(&mut third, options, &s, &mut NoPrompt, &DefaultCodec),
            Err(InitError::RelatedSecrets)
        ));
    }

    #[test]
    fn empty_passphrase_is_probed_first() {
        let t = tempfile::tempdir().unwrap();
        let mut s = CryptoSettings::under(t.path());
        let mut repo = MemRepo {
            id: [0x55; 32],
            ..MemRepo::default()
        };
        let loc = KeyLocation::local("/r");
        let options = InitOptions {
            passphrase: Some(Passphrase::new("")),
            ..InitOptions::new(KeyType::Repokey, &loc)
        };
        init(&mut repo, options, &s, &mut NoPrompt, &DefaultCodec).unwrap();
        let envelope = repo.objects[&[0; 32]].clone();
        let opened = open_key(&mut repo, &envelope, "/r", &s, &mut NoPrompt).unwrap();
        assert!(!opened.logically_encrypted);
        // A repokey repository without a key in its config.
        repo.key.clear();
        s.passphrase = Some(Passphrase::new(""));
        assert!(matches!(
            open_key(&mut repo, &envelope, "/r", &s, &mut NoPrompt),
            Err(OpenError::RepoKeyNotFound(_))
        ));
        // An unknown type byte.
        let e = open_key(&mut repo, &[0x42, 1, 2], "/r", &s, &mut NoPrompt).unwrap_err();
        assert!(matches!(
            e,
            OpenError::Key(KeyError::UnsupportedPayload(0x42))
        ));
        assert_eq!(e.exit_code(), 48);
    }
}
