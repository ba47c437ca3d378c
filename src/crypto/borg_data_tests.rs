//! Unit tests over data real borg 1.2.4 and 1.4.5 wrote (`vendor-testdata/crypto/`, made by
//! its `make.sh`): every encryption mode's key opens with the passphrase, the manifest and the
//! archive decrypt and TAM-verify, ids match, and our key exports equal borg's byte for byte.

use std::path::{Path, PathBuf};

use super::key::{KeyStorage, KeyType};
use super::keyblob::{decrypt_key, unwrap_base64};
use super::keyfile::blob_of_key_file_text;
use super::keymanager::{export_paper, export_plain, import_paper, import_plain};
use super::nonces::tests::MemRepo;
use super::open::open_key;
use super::passphrase::{NoPrompt, Passphrase};
use super::settings::CryptoSettings;
use super::tam::TamStatus;
use crate::manifest::{DefaultCodec, Manifest, PayloadCodec};
use crate::msgpack::Value;

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("vendor-testdata/crypto")
}

fn read_hex32(path: &Path) -> [u8; 32] {
    let text = std::fs::read_to_string(path).unwrap();
    hex::decode(text.trim()).unwrap().try_into().unwrap()
}

struct Case {
    dir: PathBuf,
    key_type: KeyType,
    repo_id: [u8; 32],
    archive_id: [u8; 32],
    manifest: Vec<u8>,
    archive: Vec<u8>,
}

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    for version in ["1.2.4", "1.4.5"] {
        for key_type in KeyType::INIT_MODES {
            let dir = data_dir().join(version).join(key_type.mode_name());
            out.push(Case {
                key_type,
                repo_id: read_hex32(&dir.join("repo_id")),
                archive_id: read_hex32(&dir.join("archive_id")),
                manifest: std::fs::read(dir.join("manifest.bin")).unwrap(),
                archive: std::fs::read(dir.join("archive.bin")).unwrap(),
                dir,
            });
        }
    }
    assert_eq!(out.len(), 14);
    out
}

fn blob_of(case: &Case) -> Option<String> {
    match case.key_type.storage() {
        KeyStorage::None => None,
        KeyStorage::Repo => Some(std::fs::read_to_string(case.dir.join("repokey")).unwrap()),
        KeyStorage::Keyfile => Some(blob_of_key_file_text(
            &std::fs::read_to_string(case.dir.join("keyfile")).unwrap(),
        )),
    }
}

#[test]
fn borg_repositories_open_and_verify() {
    let pass = Passphrase::new("rborg-test");
    for case in cases() {
        let what = case.dir.display().to_string();
        assert_eq!(case.manifest[0], case.key_type.type_byte(), "{what}");
        // Open the key the way a command does, through a repository holding borg's data.
        let t = tempfile::tempdir().unwrap();
        let mut settings = CryptoSettings::under(t.path());
        settings.passphrase = Some(pass.clone());
        let mut repo = MemRepo {
            id: case.repo_id,
            ..MemRepo::default()
        };
        repo.objects.insert([0; 32], case.manifest.clone());
        repo.objects.insert(case.archive_id, case.archive.clone());
        match case.key_type.storage() {
            KeyStorage::Repo => repo.key = blob_of(&case).unwrap().into_bytes(),
            KeyStorage::Keyfile => {
                let text = std::fs::read_to_string(case.dir.join("keyfile")).unwrap();
                // Another repository's key in the keys dir is skipped over.
                super::keyfile::write_key_file(
                    &settings.keys_dir.join("a-other"),
                    &[9; 32],
                    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                    true,
                )
                .unwrap();
                super::keyfile::write_key_file(
                    &settings.keys_dir.join("b-borg"),
                    &case.repo_id,
                    &blob_of_key_file_text(&text),
                    true,
                )
                .unwrap();
                assert_eq!(
                    std::fs::read_to_string(settings.keys_dir.join("b-borg")).unwrap(),
                    text,
                    "{what}: key file bytes"
                );
            }
            KeyStorage::None => {}
        }
        let opened =
            open_key(&mut repo, &case.manifest, "/repo", &settings, &mut NoPrompt).unwrap();
        let key = &opened.key;
        assert_eq!(key.key_type(), case.key_type);
        if let Some(m) = key.material() {
            assert_eq!(m.repository_id, case.repo_id, "{what}");
            assert!(m.tam_required);
            assert_eq!(m.id_key.len(), case.key_type.mac_key_len());
        }
        let (manifest, _) = Manifest::load(&mut repo, key, &DefaultCodec, false).unwrap();
        assert!(manifest.tam_verified, "{what}");
        let entry = manifest.archive("a1").expect("archive a1 in manifest");
        assert_eq!(entry.id, case.archive_id);
        assert_eq!(
            manifest.config.get("tam_required").and_then(Value::as_bool),
            (case.key_type != KeyType::Plaintext).then_some(true)
        );
        // The archive: MAC, decompression, id and TAM.
        let plain = key
            .decrypt_and_verify(&case.archive_id, &case.archive, |p| {
                DefaultCodec.decompress(p)
            })
            .unwrap();
        let (meta, status) = key.unpack_and_verify_archive(&plain, true).unwrap();
        assert!(matches!(status, TamStatus::Verified { .. }), "{what}");
        assert_eq!(meta.get("name").and_then(Value::as_str), Some("a1"));
        // A flipped bit in the archive is caught by the MAC (encrypted) or the id check.
        let mut bad = case.archive.clone();
        let n = bad.len();
        bad[n - 1] ^= 1;
        assert!(
            key.decrypt_and_verify(&case.archive_id, &bad, |p| DefaultCodec.decompress(p))
                .is_err(),
            "{what}"
        );
    }
}

#[test]
fn borg_key_blobs_and_exports() {
    let pass = Passphrase::new("rborg-test");
    for case in cases() {
        let Some(blob) = blob_of(&case) else { continue };
        let what = case.dir.display().to_string();
        assert!(decrypt_key(&blob, &pass).unwrap().is_some(), "{what}");
        assert!(decrypt_key(&blob, &Passphrase::new("rborg-tesT"))
            .unwrap()
            .is_none());
        // Our exports are byte-identical to borg's.
        let borg_plain = std::fs::read_to_string(case.dir.join("export.txt")).unwrap();
        assert_eq!(export_plain(&case.repo_id, &blob), borg_plain, "{what}");
        let borg_paper = std::fs::read_to_string(case.dir.join("export-paper.txt")).unwrap();
        assert_eq!(
            export_paper(&case.repo_id, &blob).unwrap(),
            borg_paper,
            "{what}"
        );
        // And borg's exports import.
        let imported = import_plain(&case.repo_id, &borg_plain).unwrap();
        assert_eq!(
            unwrap_base64(&imported).unwrap(),
            unwrap_base64(&blob).unwrap()
        );
        let from_paper = import_paper(&case.repo_id, &borg_paper).unwrap();
        assert_eq!(
            unwrap_base64(&from_paper).unwrap(),
            unwrap_base64(&blob).unwrap()
        );
    }
}

/// rborg's writers produce borg's bytes: re-packing borg's manifest and archive metadata with
/// the same content and TAM salt gives the plaintext borg wrote, byte for byte.
#[test]
fn repacking_borg_metadata_is_byte_identical() {
    let pass = Passphrase::new("rborg-test");
    for case in cases() {
        let what = case.dir.display().to_string();
        let key = match blob_of(&case) {
            None => super::key::Key::plaintext(),
            Some(blob) => {
                let k = decrypt_key(&blob, &pass).unwrap().unwrap();
                super::key::Key::new(case.key_type, k.material).unwrap()
            }
        };
        let salt_of = |data: &[u8]| -> [u8; 64] {
            let v = crate::msgpack::decode(data).unwrap();
            v.get("tam")
                .and_then(|t| t.get("salt"))
                .and_then(Value::as_bytes)
                .unwrap()
                .try_into()
                .unwrap()
        };
        let plain = DefaultCodec
            .decompress(&key.decrypt(None, &case.manifest).unwrap())
            .unwrap();
        let manifest = Manifest::from_plaintext(&key, &plain, false).unwrap();
        assert_eq!(
            manifest.pack_with_salt(&key, &salt_of(&plain)),
            plain,
            "{what}: manifest"
        );
        let plain = DefaultCodec
            .decompress(&key.decrypt(None, &case.archive).unwrap())
            .unwrap();
        let (meta, _) = key.unpack_and_verify_archive(&plain, true).unwrap();
        let again = key.pack_and_authenticate_with_salt(
            &meta,
            super::tam::TamContext::Archive,
            &salt_of(&plain),
        );
        assert_eq!(again, plain, "{what}: archive");
        assert_eq!(key.id_hash(&again), case.archive_id);
    }
}

/// A borg manifest whose TAM was removed or damaged (and re-encrypted, as an attacker with the
/// key could not do but a buggy writer could) is refused with the right error.
#[test]
fn damaged_borg_manifests_are_refused() {
    use super::tam::TamError;
    use crate::manifest::ManifestError;
    let pass = Passphrase::new("rborg-test");
    for case in cases().into_iter().filter(|c| c.key_type.is_encrypted()) {
        let k = decrypt_key(&blob_of(&case).unwrap(), &pass)
            .unwrap()
            .unwrap();
        let key = super::key::Key::new(case.key_type, k.material).unwrap();
        let plain = DefaultCodec
            .decompress(&key.decrypt(None, &case.manifest).unwrap())
            .unwrap();
        let mut v = crate::msgpack::decode(&plain).unwrap();
        v.remove("tam");
        let missing = key.encrypt(1, &DefaultCodec.compress(&crate::msgpack::encode(&v)));
        assert!(matches!(
            Manifest::from_envelope(&key, &missing, &DefaultCodec, false),
            Err(ManifestError::Tam(TamError::ManifestTamRequired))
        ));
        let mut broken = plain.clone();
        let pos = broken.windows(9).position(|w| w == b"timestamp").unwrap() + 12;
        broken[pos] ^= 1;
        let broken = key.encrypt(1, &DefaultCodec.compress(&broken));
        assert!(matches!(
            Manifest::from_envelope(&key, &broken, &DefaultCodec, false),
            Err(ManifestError::Tam(TamError::ManifestTamInvalid))
        ));
        // Damage to the envelope itself is caught by the MAC first.
        let mut bad = case.manifest.clone();
        bad[50] ^= 4;
        assert!(matches!(
            Manifest::from_envelope(&key, &bad, &DefaultCodec, false),
            Err(ManifestError::Envelope(
                super::envelope::EnvelopeError::MacFailed(_)
            ))
        ));
    }
}
