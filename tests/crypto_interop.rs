//! Crypto interop with real borg 1.2.4 and 1.4.5, without the RPC client: keys, key files,
//! envelopes, manifests, archives and key exports made by rborg are opened by borg's own Python
//! code, and those made by real `borg init`/`borg create` are opened by rborg.
//!
//! Peers come from `RBORG_BORG12` / `RBORG_BORG14` (defaults: `/usr/bin/borg` with
//! `/usr/bin/python3`, and the 1.4.5 virtualenv). A missing peer fails the tests.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rborg::crypto::key::{KeyStorage, KeyType};
use rborg::crypto::keyblob::{decrypt_key, encrypt_key};
use rborg::crypto::keyfile::{blob_of_key_file_text, write_key_file};
use rborg::crypto::keymanager::{export_paper, export_plain, import_paper, import_plain};
use rborg::crypto::nonces::{read_nonce_file, NonceManager, NONCE_SPACE_RESERVATION};
use rborg::crypto::open::open_key;
use rborg::crypto::passphrase::NoPrompt;
use rborg::crypto::{CryptoSettings, Key, Passphrase, TamContext};
use rborg::manifest::{DefaultCodec, Manifest, PayloadCodec};
use rborg::msgpack::Value;
use rborg::repository::{CommitOptions, ObjectId, Repository, RepositoryError};

const PASS: &str = "rborg-test";

struct Peer {
    name: &'static str,
    borg: PathBuf,
    python: PathBuf,
}

fn peers() -> Vec<Peer> {
    let b12 =
        PathBuf::from(std::env::var("RBORG_BORG12").unwrap_or_else(|_| "/usr/bin/borg".into()));
    let b14 = PathBuf::from(
        std::env::var("RBORG_BORG14")
            .unwrap_or_else(|_| "/work/main/target/peers/borg-1.4.5/bin/borg".into()),
    );
    // The Debian borg runs on the system python; the 1.4.5 virtualenv has its own beside borg.
    let py12 = if b12 == Path::new("/usr/bin/borg") {
        PathBuf::from("/usr/bin/python3")
    } else {
        b12.with_file_name("python")
    };
    let py14 = b14.with_file_name("python");
    let peers = vec![
        Peer {
            name: "1.2",
            borg: b12,
            python: py12,
        },
        Peer {
            name: "1.4",
            borg: b14,
            python: py14,
        },
    ];
    for p in &peers {
        assert!(
            p.borg.exists(),
            "borg peer {} missing at {}",
            p.name,
            p.borg.display()
        );
        assert!(
            p.python.exists(),
            "python for borg {} missing at {}",
            p.name,
            p.python.display()
        );
    }
    peers
}

/// Runs a command with the test environment; panics with its output on failure.
fn run(cmd: &mut Command, stdin: Option<&str>) -> String {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A borg environment in `dir`: passphrase, base dir, keys dir.
fn borg_env<'a>(cmd: &'a mut Command, dir: &Path) -> &'a mut Command {
    cmd.env("BORG_PASSPHRASE", PASS)
        .env("BORG_BASE_DIR", dir.join("base"))
        .env("BORG_KEYS_DIR", dir.join("keys"))
        .env("BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK", "yes")
        .env("BORG_RELOCATED_REPO_ACCESS_IS_OK", "yes")
        .env_remove("BORG_PASSCOMMAND")
        .env_remove("BORG_KEY_FILE")
}

fn settings_for(dir: &Path) -> CryptoSettings {
    let mut s = CryptoSettings::from_lookup(|name| match name {
        "BORG_BASE_DIR" => Some(dir.join("base").display().to_string()),
        "BORG_KEYS_DIR" => Some(dir.join("keys").display().to_string()),
        _ => None,
    });
    s.passphrase = Some(Passphrase::new(PASS));
    s
}

/// borg's own key classes open what rborg wrote: the key (blob or key file), the manifest
/// envelope with its TAM, and the archive envelope with its id and TAM.
const OPEN_IN_BORG: &str = r#"
import sys, hmac
from borg.logger import setup_logging; setup_logging()
from borg.helpers import Location, msgpack
from borg.crypto.key import identify_key
d = sys.argv[1]
rid = bytes.fromhex(open(d + '/repo_id').read())
class Repo:
    id = rid
    id_str = rid.hex()
    _location = Location('/rborg/fake')
    def load_key(self):
        return open(d + '/repokey', 'rb').read()
    def get_free_nonce(self):
        return None
    def commit_nonce_reservation(self, a, b):
        pass
manifest = open(d + '/manifest.bin', 'rb').read()
key = identify_key(manifest).detect(Repo(), manifest)
data = key.decrypt(None, manifest)
m, verified = key.unpack_and_verify_manifest(data)
names = sorted(n.decode() for n in m[b'archives'])
aid = bytes.fromhex(open(d + '/archive_id').read())
adata = key.decrypt(aid, open(d + '/archive.bin', 'rb').read())
if hasattr(key, 'unpack_and_verify_archive'):
    a, averified, _ = key.unpack_and_verify_archive(adata)
else:
    # borg 1.2.4 has no archive TAM check yet; use its TAM key the way 1.2.5 does.
    a = msgpack.unpackb(adata)
    tam = a[b'tam']
    buf = bytearray(adata)
    off = buf.index(tam[b'hmac'])
    buf[off:off + 64] = bytes(64)
    averified = hmac.compare_digest(hmac.digest(key._tam_key(tam[b'salt'], b'archive'), bytes(buf), 'sha512'), tam[b'hmac'])
print('type=%d manifest_tam=%s archive_tam=%s archives=%s name=%s seed=%d' % (
    key.TYPE, verified, averified, ','.join(names), a[b'name'].decode(), key.chunk_seed))
"#;

fn archive_metadata(name: &str) -> Value {
    Value::map([
        ("version", Value::from(1)),
        ("name", Value::str(name)),
        ("items", Value::Array(vec![])),
        (
            "cmdline",
            Value::Array(vec![Value::str("rborg"), Value::str("create")]),
        ),
        ("hostname", Value::str("host")),
        ("username", Value::str("user")),
        ("time", Value::str("2024-05-06T07:08:09.123456")),
        ("time_end", Value::str("2024-05-06T07:08:10.123456")),
        (
            "chunker_params",
            Value::Array(vec![
                Value::str("buzhash"),
                19.into(),
                23.into(),
                21.into(),
                4095.into(),
            ]),
        ),
    ])
}

/// Writes rborg's key, manifest and archive for `key_type` into `dir` the way a repository and
/// keys dir would hold them. Returns the key.
fn write_rborg_objects(dir: &Path, key_type: KeyType, tamper_manifest: bool) -> Key {
    let mut repo_id = [0u8; 32];
    getrandom::fill(&mut repo_id).unwrap();
    std::fs::write(dir.join("repo_id"), hex::encode(repo_id)).unwrap();
    let key = Key::generate(key_type, &repo_id).unwrap();
    if let Some(m) = key.material() {
        let blob = encrypt_key(m, &Passphrase::new(PASS)).unwrap();
        match key_type.storage() {
            KeyStorage::Repo => std::fs::write(dir.join("repokey"), &blob).unwrap(),
            KeyStorage::Keyfile => {
                write_key_file(&dir.join("keys").join("rborg_repo"), &repo_id, &blob, true).unwrap()
            }
            KeyStorage::None => {}
        }
    }
    let archive = key
        .pack_and_authenticate(&archive_metadata("a1"), TamContext::Archive)
        .unwrap();
    let archive_id = key.id_hash(&archive);
    std::fs::write(dir.join("archive_id"), hex::encode(archive_id)).unwrap();
    std::fs::write(
        dir.join("archive.bin"),
        key.encrypt(1000, &DefaultCodec.compress(&archive)),
    )
    .unwrap();
    let mut manifest = Manifest::new();
    manifest
        .add_archive("a1", archive_id, "2024-05-06T07:08:09.123456")
        .unwrap();
    let mut data = manifest.pack(&key, std::time::SystemTime::now()).unwrap();
    if tamper_manifest {
        // Change one character of the timestamp, which the TAM covers.
        let pos = data.windows(4).position(|w| w == b"tamp").unwrap() + 10;
        data[pos] ^= 1;
    }
    std::fs::write(
        dir.join("manifest.bin"),
        key.encrypt(0, &DefaultCodec.compress(&data)),
    )
    .unwrap();
    key
}

#[test]
fn rborg_keys_and_objects_open_in_borg() {
    for peer in peers() {
        for key_type in KeyType::INIT_MODES {
            let t = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(t.path().join("keys")).unwrap();
            let key = write_rborg_objects(t.path(), key_type, false);
            let mut cmd = Command::new(&peer.python);
            borg_env(&mut cmd, t.path())
                .arg("-c")
                .arg(OPEN_IN_BORG)
                .arg(t.path());
            let out = run(&mut cmd, None);
            let expected = format!(
                "type={} manifest_tam=True archive_tam=True archives=a1 name=a1 seed={}",
                key_type.type_byte(),
                key.chunk_seed()
            );
            assert_eq!(out.trim(), expected, "borg {} {key_type:?}", peer.name);
        }
    }
}

#[test]
fn borg_rejects_rborg_manifest_with_broken_tam() {
    for peer in peers() {
        for key_type in [
            KeyType::Repokey,
            KeyType::KeyfileBlake2,
            KeyType::Authenticated,
        ] {
            let t = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(t.path().join("keys")).unwrap();
            write_rborg_objects(t.path(), key_type, true);
            let mut cmd = Command::new(&peer.python);
            borg_env(&mut cmd, t.path())
                .arg("-c")
                .arg(OPEN_IN_BORG)
                .arg(t.path());
            let out = cmd.output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                !out.status.success(),
                "borg {} accepted a broken TAM",
                peer.name
            );
            assert!(
                stderr.contains("TAMInvalid"),
                "borg {}: {stderr}",
                peer.name
            );
        }
    }
}

/// Serves the objects of a borg repository dumped by borg's Python, and the repository's own
/// `nonce` file and config key. Only what opening a key and reserving nonces needs.
struct DumpedRepo {
    id: ObjectId,
    path: PathBuf,
    objects: BTreeMap<ObjectId, Vec<u8>>,
    key: Vec<u8>,
}

impl Repository for DumpedRepo {
    fn id(&self) -> &ObjectId {
        &self.id
    }
    fn get(&mut self, id: &ObjectId) -> Result<Vec<u8>, RepositoryError> {
        self.objects
            .get(id)
            .cloned()
            .ok_or_else(|| RepositoryError::ObjectNotFound {
                id: hex::encode(id),
                path: self.path.display().to_string(),
            })
    }
    fn get_many(
        &mut self,
        ids: &[ObjectId],
        sink: &mut dyn FnMut(usize, Vec<u8>) -> Result<(), RepositoryError>,
    ) -> Result<(), RepositoryError> {
        for (i, id) in ids.iter().enumerate() {
            let d = self.get(id)?;
            sink(i, d)?;
        }
        Ok(())
    }
    fn put(&mut self, _id: &ObjectId, _data: Vec<u8>) -> Result<(), RepositoryError> {
        unimplemented!("read-only")
    }
    fn delete(&mut self, _id: &ObjectId) -> Result<(), RepositoryError> {
        unimplemented!("read-only")
    }
    fn flush(&mut self) -> Result<(), RepositoryError> {
        Ok(())
    }
    fn commit(&mut self, _o: CommitOptions) -> Result<(), RepositoryError> {
        unimplemented!("read-only")
    }
    fn rollback(&mut self) -> Result<(), RepositoryError> {
        Ok(())
    }
    fn list(
        &mut self,
        _l: Option<u32>,
        _m: Option<&ObjectId>,
    ) -> Result<Vec<ObjectId>, RepositoryError> {
        Ok(self.objects.keys().copied().collect())
    }
    fn scan(
        &mut self,
        _l: Option<u32>,
        _m: Option<&ObjectId>,
    ) -> Result<Vec<ObjectId>, RepositoryError> {
        Ok(self.objects.keys().copied().collect())
    }
    fn check(&mut self, _r: bool, _d: u64) -> Result<bool, RepositoryError> {
        Ok(true)
    }
    fn object_count(&mut self) -> Result<u64, RepositoryError> {
        Ok(self.objects.len() as u64)
    }
    fn load_key(&mut self) -> Result<Vec<u8>, RepositoryError> {
        Ok(self.key.clone())
    }
    fn save_key(&mut self, _k: &[u8]) -> Result<(), RepositoryError> {
        unimplemented!("read-only")
    }
    fn get_free_nonce(&mut self) -> Result<Option<u64>, RepositoryError> {
        read_nonce_file(&self.path.join("nonce"))
            .map_err(|e| RepositoryError::IntegrityError(e.to_string()))
    }
    fn commit_nonce_reservation(
        &mut self,
        next: u64,
        start: Option<u64>,
    ) -> Result<(), RepositoryError> {
        assert_eq!(
            self.get_free_nonce()?,
            start,
            "repository nonce changed under us"
        );
        std::fs::write(self.path.join("nonce"), hex::encode(next.to_be_bytes()))
            .map_err(|e| RepositoryError::io("nonce", e))
    }
    fn break_lock(&mut self) -> Result<(), RepositoryError> {
        Ok(())
    }
    fn destroy(&mut self) -> Result<(), RepositoryError> {
        unimplemented!("read-only")
    }
    fn close(&mut self) -> Result<(), RepositoryError> {
        Ok(())
    }
}

/// Dumps every object of a borg repository (hex id, space, hex data per line) and its key.
const DUMP_REPO: &str = r#"
import sys, configparser
from borg.logger import setup_logging; setup_logging()
from borg.repository import Repository
with Repository(sys.argv[1], exclusive=False, lock=False) as repo:
    print(repo.id.hex())
    for i in repo.list(limit=100000):
        print(i.hex(), repo.get(i).hex())
"#;

fn borg_init_create(peer: &Peer, dir: &Path, mode: &str) -> PathBuf {
    let repo = dir.join("repo");
    let input = dir.join("input");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("file"), "some data\n".repeat(100)).unwrap();
    run(
        borg_env(&mut Command::new(&peer.borg), dir)
            .args(["init", "-e", mode])
            .arg(&repo),
        None,
    );
    run(
        borg_env(&mut Command::new(&peer.borg), dir)
            .arg("create")
            .arg(format!("{}::a1", repo.display()))
            .arg(".")
            .current_dir(&input),
        None,
    );
    repo
}

fn dump(peer: &Peer, dir: &Path, repo: &Path) -> DumpedRepo {
    let mut cmd = Command::new(&peer.python);
    let out = run(
        borg_env(&mut cmd, dir).arg("-c").arg(DUMP_REPO).arg(repo),
        None,
    );
    let mut lines = out.lines();
    let id: ObjectId = hex::decode(lines.next().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let objects = lines
        .map(|l| {
            let (i, d) = l.split_once(' ').unwrap();
            (
                hex::decode(i).unwrap().try_into().unwrap(),
                hex::decode(d).unwrap(),
            )
        })
        .collect();
    let config = std::fs::read_to_string(repo.join("config")).unwrap();
    // ConfigParser continuation lines start with a tab; joined with newlines on read.
    let mut key = String::new();
    let mut in_key = false;
    for line in config.lines() {
        if let Some(v) = line.strip_prefix("key = ") {
            key.push_str(v);
            in_key = true;
        } else if in_key && line.starts_with('\t') {
            key.push('\n');
            key.push_str(line.trim());
        } else {
            in_key = false;
        }
    }
    DumpedRepo {
        id,
        path: repo.to_path_buf(),
        objects,
        key: key.into_bytes(),
    }
}

#[test]
fn borg_repositories_open_in_rborg() {
    for peer in peers() {
        for key_type in KeyType::INIT_MODES {
            let t = tempfile::tempdir().unwrap();
            let repo_path = borg_init_create(&peer, t.path(), key_type.mode_name());
            let mut repo = dump(&peer, t.path(), &repo_path);
            let settings = settings_for(t.path());
            let envelope = repo.get(&[0; 32]).unwrap();
            let opened = open_key(
                &mut repo,
                &envelope,
                &repo_path.display().to_string(),
                &settings,
                &mut NoPrompt,
            )
            .unwrap_or_else(|e| panic!("borg {} {key_type:?}: {e}", peer.name));
            assert_eq!(opened.key.key_type(), key_type);
            let (manifest, _) =
                Manifest::load(&mut repo, &opened.key, &DefaultCodec, false).unwrap();
            assert!(manifest.tam_verified);
            let entry = manifest.archive("a1").unwrap().clone();
            let data = opened
                .key
                .decrypt_and_verify(&entry.id, &repo.get(&entry.id).unwrap(), |p| {
                    DefaultCodec.decompress(p)
                })
                .unwrap();
            let (meta, status) = opened.key.unpack_and_verify_archive(&data, true).unwrap();
            assert!(status.is_verified());
            // Every item-stream chunk the archive lists decrypts and matches its id.
            for item_chunk in meta.get("items").and_then(Value::as_array).unwrap() {
                let id: ObjectId = item_chunk.as_bytes().unwrap().try_into().unwrap();
                opened
                    .key
                    .decrypt_and_verify(&id, &repo.get(&id).unwrap(), |p| {
                        DefaultCodec.decompress(p)
                    })
                    .unwrap();
            }
        }
    }
}

#[test]
fn key_exports_cross_import() {
    for peer in peers() {
        for mode in ["keyfile", "repokey-blake2"] {
            let t = tempfile::tempdir().unwrap();
            let dir = t.path();
            let repo = borg_init_create(&peer, dir, mode);
            let borg_export = run(
                borg_env(&mut Command::new(&peer.borg), dir)
                    .args(["key", "export"])
                    .arg(&repo),
                None,
            );
            let repo_id: [u8; 32] = hex::decode(&borg_export[9..73])
                .unwrap()
                .try_into()
                .unwrap();
            // borg's export parses in rborg and opens with the passphrase.
            let blob = import_plain(&repo_id, &borg_export).unwrap();
            assert!(decrypt_key(&blob, &Passphrase::new(PASS))
                .unwrap()
                .is_some());
            let borg_paper = run(
                borg_env(&mut Command::new(&peer.borg), dir)
                    .args(["key", "export", "--paper"])
                    .arg(&repo),
                None,
            );
            let from_paper = import_paper(&repo_id, &borg_paper).unwrap();
            assert!(decrypt_key(&from_paper, &Passphrase::new(PASS))
                .unwrap()
                .is_some());
            // rborg's exports import into borg: plain, then paper (typed in on stdin).
            let ours = export_plain(&repo_id, &blob);
            std::fs::write(dir.join("export.txt"), &ours).unwrap();
            if mode == "keyfile" {
                std::fs::remove_dir_all(dir.join("keys")).unwrap();
                std::fs::create_dir_all(dir.join("keys")).unwrap();
            }
            run(
                borg_env(&mut Command::new(&peer.borg), dir)
                    .args(["key", "import"])
                    .arg(&repo)
                    .arg(dir.join("export.txt")),
                None,
            );
            let list = run(
                borg_env(&mut Command::new(&peer.borg), dir)
                    .arg("list")
                    .arg("--short")
                    .arg(&repo),
                None,
            );
            assert_eq!(list.trim(), "a1", "borg {} {mode}", peer.name);
            let paper = export_paper(&repo_id, &blob).unwrap();
            let typed: String = paper
                .lines()
                .filter_map(|l| l.split_once(": ").map(|(_, rest)| format!("{rest}\n")))
                .collect();
            if mode == "keyfile" {
                std::fs::remove_dir_all(dir.join("keys")).unwrap();
                std::fs::create_dir_all(dir.join("keys")).unwrap();
            }
            run(
                borg_env(&mut Command::new(&peer.borg), dir)
                    .args(["key", "import", "--paper"])
                    .arg(&repo),
                Some(&typed),
            );
            let list = run(
                borg_env(&mut Command::new(&peer.borg), dir)
                    .arg("list")
                    .arg("--short")
                    .arg(&repo),
                None,
            );
            assert_eq!(
                list.trim(),
                "a1",
                "borg {} {mode} after paper import",
                peer.name
            );
            if mode == "keyfile" {
                let files: Vec<_> = std::fs::read_dir(dir.join("keys")).unwrap().collect();
                assert_eq!(files.len(), 1);
                let text = std::fs::read_to_string(files[0].as_ref().unwrap().path()).unwrap();
                assert!(
                    decrypt_key(&blob_of_key_file_text(&text), &Passphrase::new(PASS))
                        .unwrap()
                        .is_some()
                );
            }
        }
    }
}

/// rborg and borg share the counter space: a reservation rborg makes through the repository
/// and the security dir is respected by the next `borg create`, and rborg starts past
/// everything borg reserved.
#[test]
fn nonce_reservations_are_shared_with_borg() {
    let iv = |e: &[u8]| u64::from_be_bytes(e[33..41].try_into().unwrap());
    for peer in peers() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path();
        let repo_path = borg_init_create(&peer, dir, "repokey");
        let mut repo = dump(&peer, dir, &repo_path);
        let settings = settings_for(dir);
        let borg_repo_nonce = read_nonce_file(&repo_path.join("nonce")).unwrap().unwrap();
        let envelope = repo.get(&[0; 32]).unwrap();
        let opened = open_key(
            &mut repo,
            &envelope,
            &repo_path.display().to_string(),
            &settings,
            &mut NoPrompt,
        )
        .unwrap();
        let mut nonces: NonceManager = opened.nonce_manager(&settings, Some(&envelope));
        let local = settings.repo_security_dir(&repo.id).join("nonce");
        assert!(
            read_nonce_file(&local).unwrap().is_some(),
            "borg wrote no security-dir nonce"
        );
        let start = nonces.allocate(&mut repo, 10).unwrap();
        assert!(
            start >= borg_repo_nonce,
            "rborg started below borg's reservation"
        );
        let end = nonces.end_of_reservation().unwrap();
        assert_eq!(end, start + 10 + NONCE_SPACE_RESERVATION);
        assert_eq!(read_nonce_file(&local).unwrap(), Some(end));
        assert_eq!(
            read_nonce_file(&repo_path.join("nonce")).unwrap(),
            Some(end)
        );
        // Python borg's next archive uses counter values past rborg's reservation.
        let input = dir.join("input");
        run(
            borg_env(&mut Command::new(&peer.borg), dir)
                .arg("create")
                .arg(format!("{}::a2", repo_path.display()))
                .arg(".")
                .current_dir(&input),
            None,
        );
        let mut after = dump(&peer, dir, &repo_path);
        let new_manifest = after.get(&[0; 32]).unwrap();
        assert!(
            iv(&new_manifest) >= end,
            "borg {} reused rborg's counters",
            peer.name
        );
    }
}

/// borg 1.4.5's related-secrets file and rborg's are the same bytes, and each side's file
/// makes the other's new repository share the id key and chunker seed.
#[test]
fn related_secrets_match_borg_145() {
    use rborg::crypto::keymanager::RelatedSecrets;
    let peer = peers().into_iter().find(|p| p.name == "1.4").unwrap();
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let repo_path = borg_init_create(&peer, dir, "repokey-blake2");
    let borg_json = run(
        borg_env(&mut Command::new(&peer.borg), dir)
            .args(["key", "export-related-secrets"])
            .arg(&repo_path)
            .arg("-"),
        None,
    );
    let mut repo = dump(&peer, dir, &repo_path);
    let settings = settings_for(dir);
    let envelope = repo.get(&[0; 32]).unwrap();
    let opened = open_key(
        &mut repo,
        &envelope,
        &repo_path.display().to_string(),
        &settings,
        &mut NoPrompt,
    )
    .unwrap();
    let ours = RelatedSecrets::of(&opened.key).unwrap();
    assert_eq!(ours.to_json(), borg_json);
    assert_eq!(RelatedSecrets::from_json(&borg_json).unwrap(), ours);
    // rborg's file makes borg's new repository related.
    std::fs::write(dir.join("related.json"), ours.to_json()).unwrap();
    let repo2 = dir.join("repo2");
    run(
        borg_env(&mut Command::new(&peer.borg), dir)
            .args(["init", "-e", "keyfile-blake2", "--import-related-secrets"])
            .arg(dir.join("related.json"))
            .arg(&repo2),
        None,
    );
    let borg_json2 = run(
        borg_env(&mut Command::new(&peer.borg), dir)
            .args(["key", "export-related-secrets"])
            .arg(&repo2)
            .arg("-"),
        None,
    );
    let theirs = RelatedSecrets::from_json(&borg_json2).unwrap();
    assert_eq!(theirs.id_key, ours.id_key);
    assert_eq!(theirs.chunk_seed, ours.chunk_seed);
    assert_eq!(theirs.key_name, "key file BLAKE2b");
}

/// A repository served by borg's own Python `Repository` class through a line protocol on a
/// child process: real borg on-disk format, no RPC client needed. Used to run rborg's `init`
/// against real storage and check the result with the real borg command line.
struct BorgBridge {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
    id: ObjectId,
}

const BRIDGE: &str = r#"
import sys
from borg.logger import setup_logging; setup_logging()
from borg.repository import Repository
repo = Repository(sys.argv[1], create=sys.argv[2] == 'create', exclusive=True)
repo.__enter__()
print(repo.id.hex(), flush=True)
for line in sys.stdin:
    p = line.split()
    try:
        r = ''
        if p[0] == 'get':
            r = repo.get(bytes.fromhex(p[1])).hex()
        elif p[0] == 'put':
            repo.put(bytes.fromhex(p[1]), bytes.fromhex(p[2]))
        elif p[0] == 'commit':
            repo.commit(compact=False)
        elif p[0] == 'load_key':
            r = repo.load_key().hex()
        elif p[0] == 'save_key':
            repo.save_key(bytes.fromhex(p[1]))
        elif p[0] == 'get_free_nonce':
            n = repo.get_free_nonce()
            r = '-' if n is None else str(n)
        elif p[0] == 'commit_nonce_reservation':
            repo.commit_nonce_reservation(int(p[1]), None if p[2] == '-' else int(p[2]))
        elif p[0] == 'close':
            repo.__exit__(None, None, None)
            print('ok', flush=True)
            break
        print('ok ' + r, flush=True)
    except Exception as e:
        print('err %s %s' % (type(e).__name__, str(e).replace('\n', ' ')), flush=True)
"#;

impl BorgBridge {
    fn start(peer: &Peer, path: &Path, create: bool) -> BorgBridge {
        use std::io::BufRead;
        let mut child = Command::new(&peer.python)
            .arg("-c")
            .arg(BRIDGE)
            .arg(path)
            .arg(if create { "create" } else { "open" })
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        let id = hex::decode(first.trim())
            .expect("repository id from the bridge")
            .try_into()
            .unwrap();
        BorgBridge {
            child,
            stdin,
            stdout,
            id,
        }
    }

    fn call(&mut self, line: &str) -> Result<String, RepositoryError> {
        use std::io::BufRead;
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
        let mut reply = String::new();
        self.stdout.read_line(&mut reply).unwrap();
        let reply = reply.trim_end();
        if let Some(r) = reply.strip_prefix("ok") {
            return Ok(r.trim().to_string());
        }
        let rest = reply.strip_prefix("err ").unwrap_or(reply);
        let (class, message) = rest.split_once(' ').unwrap_or((rest, ""));
        Err(match class {
            "ObjectNotFound" => RepositoryError::ObjectNotFound {
                id: message.into(),
                path: "bridge".into(),
            },
            _ => RepositoryError::Remote {
                class: class.into(),
                message: message.into(),
            },
        })
    }

    fn finish(mut self) {
        self.call("close").unwrap();
        assert!(self.child.wait().unwrap().success());
    }
}

impl Repository for BorgBridge {
    fn id(&self) -> &ObjectId {
        &self.id
    }
    fn get(&mut self, id: &ObjectId) -> Result<Vec<u8>, RepositoryError> {
        Ok(hex::decode(self.call(&format!("get {}", hex::encode(id)))?).unwrap())
    }
    fn get_many(
        &mut self,
        ids: &[ObjectId],
        sink: &mut dyn FnMut(usize, Vec<u8>) -> Result<(), RepositoryError>,
    ) -> Result<(), RepositoryError> {
        for (i, id) in ids.iter().enumerate() {
            let d = self.get(id)?;
            sink(i, d)?;
        }
        Ok(())
    }
    fn put(&mut self, id: &ObjectId, data: Vec<u8>) -> Result<(), RepositoryError> {
        self.call(&format!("put {} {}", hex::encode(id), hex::encode(data)))
            .map(|_| ())
    }
    fn delete(&mut self, _id: &ObjectId) -> Result<(), RepositoryError> {
        unimplemented!("not needed")
    }
    fn flush(&mut self) -> Result<(), RepositoryError> {
        Ok(())
    }
    fn commit(&mut self, _o: CommitOptions) -> Result<(), RepositoryError> {
        self.call("commit").map(|_| ())
    }
    fn rollback(&mut self) -> Result<(), RepositoryError> {
        unimplemented!("not needed")
    }
    fn list(
        &mut self,
        _l: Option<u32>,
        _m: Option<&ObjectId>,
    ) -> Result<Vec<ObjectId>, RepositoryError> {
        unimplemented!("not needed")
    }
    fn scan(
        &mut self,
        _l: Option<u32>,
        _m: Option<&ObjectId>,
    ) -> Result<Vec<ObjectId>, RepositoryError> {
        unimplemented!("not needed")
    }
    fn check(&mut self, _r: bool, _d: u64) -> Result<bool, RepositoryError> {
        unimplemented!("not needed")
    }
    fn object_count(&mut self) -> Result<u64, RepositoryError> {
        unimplemented!("not needed")
    }
    fn load_key(&mut self) -> Result<Vec<u8>, RepositoryError> {
        Ok(hex::decode(self.call("load_key")?).unwrap())
    }
    fn save_key(&mut self, keydata: &[u8]) -> Result<(), RepositoryError> {
        self.call(&format!("save_key {}", hex::encode(keydata)))
            .map(|_| ())
    }
    fn get_free_nonce(&mut self) -> Result<Option<u64>, RepositoryError> {
        let r = self.call("get_free_nonce")?;
        Ok(if r == "-" {
            None
        } else {
            Some(r.parse().unwrap())
        })
    }
    fn commit_nonce_reservation(
        &mut self,
        next: u64,
        start: Option<u64>,
    ) -> Result<(), RepositoryError> {
        let start = start.map_or_else(|| "-".to_string(), |s| s.to_string());
        self.call(&format!("commit_nonce_reservation {next} {start}"))
            .map(|_| ())
    }
    fn break_lock(&mut self) -> Result<(), RepositoryError> {
        unimplemented!("not needed")
    }
    fn destroy(&mut self) -> Result<(), RepositoryError> {
        unimplemented!("not needed")
    }
    fn close(&mut self) -> Result<(), RepositoryError> {
        self.call("close").map(|_| ())
    }
}

/// rborg's `init` on real borg storage, then real borg uses the repository (list, create,
/// check), then rborg opens it again, adds an archive and rewrites the manifest, and borg
/// lists and checks that too. Exercises the key storage, the manifest, TAMs, nonce
/// reservations and the security dir against borg end to end.
#[test]
fn rborg_init_then_borg_uses_the_repository() {
    use rborg::crypto::init::{init, InitOptions};
    use rborg::crypto::keyfile::KeyLocation;
    use rborg::manifest::{open_repository, Operation};
    for peer in peers() {
        for (n, key_type) in KeyType::INIT_MODES.into_iter().enumerate() {
            let what = format!("borg {} {key_type:?}", peer.name);
            let t = tempfile::tempdir().unwrap();
            let dir = t.path();
            let repo_path = dir.join("repo");
            let location = repo_path.display().to_string();
            let settings = settings_for(dir);
            let mut bridge = BorgBridge::start(&peer, &repo_path, true);
            let done = init(
                &mut bridge,
                InitOptions::new(key_type, &KeyLocation::local(&location)),
                &settings,
                &mut NoPrompt,
                &DefaultCodec,
            )
            .unwrap_or_else(|e| panic!("{what}: {e}"));
            bridge.finish();
            assert_eq!(
                done.key_file.is_some(),
                key_type.storage() == KeyStorage::Keyfile
            );
            // borg must succeed without a warning or a question on stderr.
            let borg = |args: &[&str]| {
                let mut cmd = Command::new(&peer.borg);
                borg_env(&mut cmd, dir)
                    .env_remove("BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK")
                    .args(args);
                let out = cmd.stdin(Stdio::null()).output().unwrap();
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert!(
                    out.status.success() && stderr.is_empty(),
                    "{what}: borg {args:?}: {stderr}"
                );
                String::from_utf8_lossy(&out.stdout).into_owned()
            };
            assert_eq!(borg(&["list", "--short", &location]).trim(), "", "{what}");
            let input = dir.join("input");
            std::fs::create_dir_all(&input).unwrap();
            std::fs::write(input.join("f"), "data\n".repeat(1000)).unwrap();
            run(
                borg_env(&mut Command::new(&peer.borg), dir)
                    .arg("create")
                    // borg writes the manifest with the command's compressor; cover them all.
                    .args([
                        "-C",
                        [
                            "zstd,3",
                            "zlib,6",
                            "lzma,1",
                            "lz4",
                            "none",
                            "auto,zstd",
                            "obfuscate,3,zstd",
                        ][n],
                    ])
                    .arg(format!("{location}::a1"))
                    .arg(".")
                    .current_dir(&input),
                None,
            );
            // rborg again: open (borg's newer manifest passes the replay check), add an
            // empty archive of its own, rewrite the manifest.
            let mut bridge = BorgBridge::start(&peer, &repo_path, false);
            let mut opened = open_repository(
                &mut bridge,
                &location,
                &[Operation::Write],
                &settings,
                &mut NoPrompt,
                &DefaultCodec,
            )
            .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(opened.manifest.archive("a1").is_some());
            let key = &opened.key.key;
            let mut meta = archive_metadata("rb");
            meta.insert("items", Value::Array(vec![]));
            let packed = key
                .pack_and_authenticate(&meta, TamContext::Archive)
                .unwrap();
            let archive_id = key.id_hash(&packed);
            let envelope = key
                .encrypt_next(
                    &mut opened.nonces,
                    &mut bridge,
                    &DefaultCodec.compress(&packed),
                )
                .unwrap();
            bridge.put(&archive_id, envelope).unwrap();
            opened
                .manifest
                .add_archive("rb", archive_id, "2024-05-06T07:08:09.123456")
                .unwrap();
            opened
                .write_manifest_and_commit(&mut bridge, &location, &settings, &DefaultCodec)
                .unwrap();
            bridge.finish();
            let list = borg(&["list", "--short", "--sort-by", "name", &location]);
            assert_eq!(list.lines().collect::<Vec<_>>(), ["a1", "rb"], "{what}");
            borg(&["check", "--verify-data", &location]);
        }
    }
}

/// `key change-passphrase` by rborg on a repository borg made: borg then needs the new
/// passphrase and refuses the old one.
#[test]
fn rborg_changes_passphrase_of_borg_repository() {
    use rborg::crypto::keymanager::change_passphrase;
    for peer in peers() {
        for mode in ["repokey", "keyfile-blake2", "authenticated"] {
            let what = format!("borg {} {mode}", peer.name);
            let t = tempfile::tempdir().unwrap();
            let dir = t.path();
            let repo_path = borg_init_create(&peer, dir, mode);
            let location = repo_path.display().to_string();
            let mut bridge = BorgBridge::start(&peer, &repo_path, false);
            let envelope = bridge.get(&[0; 32]).unwrap();
            let settings = settings_for(dir);
            let mut opened =
                open_key(&mut bridge, &envelope, &location, &settings, &mut NoPrompt).unwrap();
            let mut new_settings = settings.clone();
            new_settings.new_passphrase = Some(Passphrase::new("changed by rborg"));
            change_passphrase(&mut bridge, &mut opened, &new_settings, &mut NoPrompt).unwrap();
            bridge.finish();
            let list = |pass: &str| {
                let mut cmd = Command::new(&peer.borg);
                borg_env(&mut cmd, dir)
                    .env("BORG_PASSPHRASE", pass)
                    .args(["list", "--short"])
                    .arg(&repo_path);
                cmd.stdin(Stdio::null()).output().unwrap()
            };
            let new = list("changed by rborg");
            assert!(
                new.status.success(),
                "{what}: {}",
                String::from_utf8_lossy(&new.stderr)
            );
            assert_eq!(String::from_utf8_lossy(&new.stdout).trim(), "a1");
            let old = list(PASS);
            assert!(!old.status.success(), "{what}: old passphrase still works");
            assert!(
                String::from_utf8_lossy(&old.stderr).contains("upplied in BORG_PASSPHRASE"),
                "{what}"
            );
        }
    }
}
