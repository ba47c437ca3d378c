//! Interop of rborg's local repository with real borg 1.2.4 and 1.4.5 on the same paths.
//!
//! Each test works in its own temporary directory. borg is driven through its CLI and through
//! its Python `borg.repository.Repository` (which reads and writes objects without a key).
//! Tests fail when a peer is missing.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rborg::repository::local::{LocalRepository, LocalSettings};
use rborg::repository::{
    CommitOptions, ObjectId, OpenOptions, Repository, RepositoryError, MANIFEST_ID,
};
use sha2::{Digest, Sha256};

#[derive(Clone, Copy, Debug)]
enum Borg {
    V12,
    V14,
}

const BOTH: [Borg; 2] = [Borg::V12, Borg::V14];

impl Borg {
    fn exe(self) -> PathBuf {
        let (var, default) = match self {
            Borg::V12 => ("RBORG_BORG12", "/usr/bin/borg"),
            Borg::V14 => (
                "RBORG_BORG14",
                "/work/main/target/peers/borg-1.4.5/bin/borg",
            ),
        };
        let p = PathBuf::from(std::env::var(var).unwrap_or_else(|_| default.to_string()));
        assert!(p.exists(), "borg peer missing: {} ({var})", p.display());
        p
    }

    /// The Python that can import this borg's modules.
    fn python(self) -> PathBuf {
        match self {
            Borg::V12 => {
                let exe = self.exe();
                // A distribution borg: its script names the interpreter in the shebang.
                let text = fs::read_to_string(&exe).unwrap_or_default();
                let shebang = text.lines().next().unwrap_or("");
                let py = shebang.trim_start_matches("#!").trim();
                if py.is_empty() || !Path::new(py).exists() {
                    PathBuf::from("/usr/bin/python3")
                } else {
                    PathBuf::from(py)
                }
            }
            Borg::V14 => {
                let p = self.exe().with_file_name("python");
                assert!(p.exists(), "python of borg 1.4 missing: {}", p.display());
                p
            }
        }
    }
}

/// A scratch area: the repository lives in `dir/repo`, borg's config/cache in `dir/base`.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    fn command(&self, program: &Path) -> Command {
        let mut c = Command::new(program);
        c.env("BORG_BASE_DIR", self.dir.path().join("base"))
            .env("BORG_RELOCATED_REPO_ACCESS_IS_OK", "yes")
            .env("BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK", "yes")
            .env("BORG_CHECK_I_KNOW_WHAT_I_AM_DOING", "YES")
            .env("BORG_PASSPHRASE", "secret passphrase")
            .env_remove("BORG_REPO");
        c
    }

    fn borg(&self, borg: Borg, args: &[&str]) -> Output {
        self.command(&borg.exe()).args(args).output().unwrap()
    }

    fn borg_ok(&self, borg: Borg, args: &[&str]) -> Output {
        let out = self.borg(borg, args);
        assert!(
            out.status.success(),
            "{borg:?} borg {args:?} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn python(&self, borg: Borg, script: &str, args: &[&str]) -> String {
        let out = self
            .command(&borg.python())
            .arg("-c")
            .arg(format!("{PY_PRELUDE}{script}"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{borg:?} python failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Every object as borg's `Repository` sees it: id hex → sha256 hex of the data.
    fn borg_objects(&self, borg: Borg) -> BTreeMap<String, String> {
        let text = self.python(borg, DUMP_SCRIPT, &[self.repo().to_str().unwrap()]);
        text.lines()
            .map(|l| {
                let (id, digest) = l.split_once(' ').unwrap();
                (id.to_string(), digest.to_string())
            })
            .collect()
    }

    fn check_repository_only(&self, borg: Borg) {
        self.borg_ok(
            borg,
            &["check", "--repository-only", self.repo().to_str().unwrap()],
        );
    }
}

/// borg's modules refuse to log before logging is set up.
const PY_PRELUDE: &str = "from borg.logger import setup_logging\nsetup_logging(level='warning')\n";

const DUMP_SCRIPT: &str = r#"
import sys, hashlib
from borg.repository import Repository
with Repository(sys.argv[1], exclusive=False) as r:
    marker = None
    n = len(r)
    seen = 0
    while True:
        ids = r.list(limit=1000, marker=marker)
        if not ids:
            break
        for i in ids:
            print(i.hex(), hashlib.sha256(r.get(i)).hexdigest())
        seen += len(ids)
        marker = ids[-1]
    assert seen == n, (seen, n)
"#;

/// Puts `count` objects with ids sha256("<seed>-k"), deletes the ids given, commits.
const WRITE_SCRIPT: &str = r#"
import sys, hashlib
from borg.repository import Repository
path, seed, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
deletes = sys.argv[4:]
with Repository(path, exclusive=True) as r:
    for k in range(count):
        key = hashlib.sha256(('%s-%d' % (seed, k)).encode()).digest()
        r.put(key, (('%s-%d ' % (seed, k)) * (k + 1)).encode())
    for h in deletes:
        r.delete(bytes.fromhex(h))
    r.commit(compact=False)
"#;

fn borg_written(seed: &str, count: usize) -> BTreeMap<String, String> {
    (0..count)
        .map(|k| {
            let id = Sha256::digest(format!("{seed}-{k}").as_bytes());
            let data = format!("{seed}-{k} ").repeat(k + 1);
            (
                hex::encode(id),
                hex::encode(Sha256::digest(data.as_bytes())),
            )
        })
        .collect()
}

fn settings() -> LocalSettings {
    LocalSettings::from_env(&rborg::settings::Environment::from_process())
}

fn small_segments() -> LocalSettings {
    LocalSettings {
        new_segment_limits: Some((64 * 1024, 4)),
        ..LocalSettings::from_env(&rborg::settings::Environment::from_process())
    }
}

fn exclusive() -> OpenOptions {
    OpenOptions {
        exclusive: true,
        ..OpenOptions::default()
    }
}

fn create(path: &Path, settings: &LocalSettings) -> LocalRepository {
    LocalRepository::create(path, &exclusive(), settings).unwrap()
}

fn open(path: &Path) -> LocalRepository {
    LocalRepository::open(path, &exclusive(), &settings()).unwrap()
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn object_id(n: u64) -> ObjectId {
    Sha256::digest(n.to_le_bytes()).into()
}

fn digest(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Everything rborg sees: id hex → sha256 hex, read through `list` pages and `get`.
fn rborg_objects(repo: &mut LocalRepository) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut marker: Option<ObjectId> = None;
    loop {
        let ids = repo.list(Some(700), marker.as_ref()).unwrap();
        if ids.is_empty() {
            break;
        }
        for id in &ids {
            out.insert(hex::encode(id), digest(&repo.get(id).unwrap()));
        }
        marker = ids.last().copied();
    }
    assert_eq!(out.len() as u64, repo.object_count().unwrap());
    out
}

fn commit(repo: &mut LocalRepository) {
    repo.commit(CommitOptions::default()).unwrap();
}

fn compact(repo: &mut LocalRepository) {
    repo.commit(CommitOptions {
        compact: true,
        ..CommitOptions::default()
    })
    .unwrap();
}

/// Fills a fresh rborg repository with several commits, overwrites, deletes and a compaction;
/// returns what it should contain.
fn populate(path: &Path) -> BTreeMap<String, String> {
    let mut expected = BTreeMap::new();
    let mut repo = create(path, &small_segments());
    fn put(
        repo: &mut LocalRepository,
        expected: &mut BTreeMap<String, String>,
        n: u64,
        len: usize,
    ) {
        let id = object_id(n);
        let data = bytes(n, len);
        repo.put(&id, data.clone()).unwrap();
        expected.insert(hex::encode(id), digest(&data));
    }
    for n in 0..300 {
        put(&mut repo, &mut expected, n, (n as usize * 37) % 5000);
    }
    // Large objects: larger than a segment, up to borg's limit.
    put(&mut repo, &mut expected, 1000, 3 * 1024 * 1024);
    put(&mut repo, &mut expected, 1001, 20_971_479);
    let manifest = b"manifest v1".to_vec();
    repo.put(&MANIFEST_ID, manifest.clone()).unwrap();
    commit(&mut repo);
    for n in (0..300).step_by(3) {
        repo.delete(&object_id(n)).unwrap();
        expected.remove(&hex::encode(object_id(n)));
    }
    for n in (1..300).step_by(7) {
        put(&mut repo, &mut expected, n, 777);
    }
    put(&mut repo, &mut expected, 1001, 10);
    repo.put(&MANIFEST_ID, b"manifest v2".to_vec()).unwrap();
    commit(&mut repo);
    for n in 300..350 {
        put(&mut repo, &mut expected, n, 100);
    }
    commit(&mut repo);
    // `borg compact` re-puts the manifest to open the transaction its commit needs.
    repo.put(&MANIFEST_ID, b"manifest v2".to_vec()).unwrap();
    compact(&mut repo);
    expected.insert(hex::encode(MANIFEST_ID), digest(b"manifest v2"));
    assert_eq!(rborg_objects(&mut repo), expected);
    repo.close().unwrap();
    expected
}

#[test]
fn rborg_writes_borg_reads_and_writes_back() {
    let s = Scratch::new();
    let repo_path = s.repo();
    let mut expected = populate(&repo_path);
    let names: Vec<String> = fs::read_dir(&repo_path)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for name in ["README", "config", "data", "nonce"] {
        if name != "nonce" {
            assert!(
                names.contains(&name.to_string()),
                "{name} missing: {names:?}"
            );
        }
    }
    assert_eq!(
        fs::read_to_string(repo_path.join("README")).unwrap(),
        "This is a Borg Backup repository.\nSee https://borgbackup.readthedocs.io/\n"
    );
    // Several segment directories exist (segments_per_dir = 4).
    assert!(fs::read_dir(repo_path.join("data")).unwrap().count() > 2);

    for borg in BOTH {
        s.check_repository_only(borg);
        assert_eq!(
            s.borg_objects(borg),
            expected,
            "{borg:?} sees other objects"
        );
    }
    // borg's CLI reads an object without a key.
    let out_file = s.dir.path().join("obj");
    let id_hex = hex::encode(object_id(5));
    s.borg_ok(
        Borg::V14,
        &[
            "debug",
            "get-obj",
            repo_path.to_str().unwrap(),
            &id_hex,
            out_file.to_str().unwrap(),
        ],
    );
    assert_eq!(digest(&fs::read(&out_file).unwrap()), expected[&id_hex]);

    // borg writes into rborg's repository, rborg reads it.
    let victim = hex::encode(object_id(4));
    s.python(
        Borg::V12,
        WRITE_SCRIPT,
        &[repo_path.to_str().unwrap(), "b12", "40", &victim],
    );
    expected.remove(&victim);
    expected.extend(borg_written("b12", 40));
    s.python(
        Borg::V14,
        WRITE_SCRIPT,
        &[repo_path.to_str().unwrap(), "b14", "40"],
    );
    expected.extend(borg_written("b14", 40));
    let mut repo = open(&repo_path);
    assert_eq!(rborg_objects(&mut repo), expected);
    assert!(repo.check(false, 0).unwrap());
    repo.close().unwrap();
    s.check_repository_only(Borg::V12);
}

/// borg creates a repository with an archive; rborg reads every object, writes, compacts;
/// both borgs' checks stay clean.
fn borg_writes_rborg_reads(creator: Borg) {
    let s = Scratch::new();
    let repo = s.repo();
    let repo_s = repo.to_str().unwrap();
    let src = s.dir.path().join("src");
    fs::create_dir(&src).unwrap();
    for n in 0..20u64 {
        fs::write(src.join(format!("f{n}")), bytes(n, (n as usize) * 3000)).unwrap();
    }
    s.borg_ok(creator, &["init", "-e", "repokey", repo_s]);
    s.borg_ok(
        creator,
        &["create", &format!("{repo_s}::a1"), src.to_str().unwrap()],
    );
    let borg_view = s.borg_objects(creator);
    assert!(borg_view.len() > 20);

    let mut r = open(&repo);
    assert_eq!(rborg_objects(&mut r), borg_view);
    assert!(r.load_key().unwrap().len() > 100, "repokey not found");
    let nonce = r.get_free_nonce().unwrap();
    assert!(nonce.is_some());
    // scan lists the same objects in on-disk order.
    let mut scanned = Vec::new();
    let mut marker = None;
    loop {
        let page = r.scan(Some(5), marker.as_ref()).unwrap();
        if page.is_empty() {
            break;
        }
        marker = page.last().copied();
        scanned.extend(page);
    }
    assert_eq!(scanned.len(), borg_view.len());
    // Write extra objects, then remove them again (a full borg check would report them as
    // orphans), re-put the manifest as `borg compact` does, and compact.
    for n in 0..50 {
        r.put(&object_id(5000 + n), bytes(n, 2000)).unwrap();
    }
    commit(&mut r);
    assert_eq!(r.object_count().unwrap() as usize, borg_view.len() + 50);
    for n in 0..50 {
        r.delete(&object_id(5000 + n)).unwrap();
    }
    commit(&mut r);
    let manifest = r.get(&MANIFEST_ID).unwrap();
    r.put(&MANIFEST_ID, manifest).unwrap();
    compact(&mut r);
    assert_eq!(rborg_objects(&mut r), borg_view);
    r.close().unwrap();
    for borg in BOTH {
        s.check_repository_only(borg);
        s.borg_ok(borg, &["check", repo_s]);
        assert_eq!(s.borg_objects(borg), borg_view);
    }
    // The archive is still listed by borg; borg keeps writing (a second archive, a delete, a
    // compaction) and rborg follows.
    let out = s.borg_ok(Borg::V14, &["list", &format!("{repo_s}::a1")]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("f19"));
    fs::write(src.join("new"), bytes(77, 50_000)).unwrap();
    s.borg_ok(
        creator,
        &["create", &format!("{repo_s}::a2"), src.to_str().unwrap()],
    );
    s.borg_ok(creator, &["delete", &format!("{repo_s}::a1")]);
    s.borg_ok(creator, &["compact", repo_s]);
    let borg_view = s.borg_objects(creator);
    let mut r = open(&repo);
    assert_eq!(rborg_objects(&mut r), borg_view);
    assert!(r.check(false, 0).unwrap());
    r.close().unwrap();
}

#[test]
fn borg12_writes_rborg_reads() {
    borg_writes_rborg_reads(Borg::V12);
}

#[test]
fn borg14_writes_rborg_reads() {
    borg_writes_rborg_reads(Borg::V14);
}

#[test]
fn rborg_host_id_matches_borgs() {
    let s = Scratch::new();
    for borg in BOTH {
        let mut c = s.command(&borg.python());
        c.env_remove("BORG_HOST_ID");
        let out = c
            .args(["-c", "from borg.platform import hostid; print(hostid)"])
            .output()
            .unwrap();
        assert!(out.status.success());
        let borg_id = String::from_utf8(out.stdout).unwrap().trim().to_string();
        assert_eq!(rborg::repository::local::lock::default_host_id(), borg_id);
    }
}

fn wait_for(path: &Path, what: &str) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{what} never appeared"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kills a child started in its own process group, with everything it spawned.
fn kill(mut child: Child) {
    let pgid = child.id() as i32;
    // SAFETY: signals only the process group we created for this child.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
    let _ = child.wait();
}

#[test]
fn borg_and_rborg_exclude_each_other() {
    let s = Scratch::new();
    let repo = s.repo();
    let repo_s = repo.to_str().unwrap().to_string();
    let mut r = create(&repo, &settings());
    r.put(&MANIFEST_ID, b"m".to_vec()).unwrap();
    commit(&mut r);
    // rborg holds the exclusive lock: borg gives up with its lock error.
    for borg in BOTH {
        let out = s.borg(
            borg,
            &["--lock-wait", "1", "check", "--repository-only", &repo_s],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{borg:?}: {err}");
        assert!(
            err.contains("Failed to create/acquire the lock"),
            "{borg:?}: {err}"
        );
    }
    r.close().unwrap();
    // A shared rborg lock still keeps a borg writer out.
    let mut shared = LocalRepository::open(&repo, &OpenOptions::default(), &settings()).unwrap();
    assert_eq!(shared.get(&MANIFEST_ID).unwrap(), b"m");
    let out = s.borg(
        Borg::V14,
        &["--lock-wait", "1", "check", "--repository-only", &repo_s],
    );
    assert_eq!(out.status.code(), Some(2));
    // …while borg readers share it.
    for borg in BOTH {
        assert_eq!(s.borg_objects(borg).len(), 1);
    }
    let roster = fs::read_to_string(repo.join("lock.roster")).unwrap();
    assert!(roster.starts_with("{\"shared\": [["), "{roster}");
    shared.close().unwrap();

    // borg holds the lock: rborg times out, then gets in once borg is gone.
    for borg in BOTH {
        let child = s
            .command(&borg.exe())
            .args(["with-lock", &repo_s, "sleep", "20"])
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for(&repo.join("lock.roster"), "borg's lock roster");
        let options = OpenOptions {
            exclusive: true,
            lock_wait: Some(0.5),
            ..OpenOptions::default()
        };
        let started = Instant::now();
        let err = LocalRepository::open(&repo, &options, &settings()).unwrap_err();
        assert!(matches!(err, RepositoryError::LockTimeout(_)), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let shared_options = OpenOptions {
            lock_wait: Some(0.3),
            ..OpenOptions::default()
        };
        let err = LocalRepository::open(&repo, &shared_options, &settings()).unwrap_err();
        assert!(matches!(err, RepositoryError::LockTimeout(_)), "{err}");
        kill(child);
        // borg was killed: its lock is stale (same host, dead pid) and is broken.
        let mut r = LocalRepository::open(&repo, &options, &settings()).unwrap();
        assert_eq!(r.get(&MANIFEST_ID).unwrap(), b"m");
        r.close().unwrap();
        assert!(!repo.join("lock.exclusive").exists());
        assert!(!repo.join("lock.roster").exists());
    }
}

/// Rewrites a lock left by this process so it looks like one of a dead process.
fn make_lock_stale(repo: &Path) -> String {
    let dir = repo.join("lock.exclusive");
    let me = format!(".{}-0", std::process::id());
    let entry = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|n| n.ends_with(&me))
        .expect("our lock file");
    let host = entry.trim_end_matches(&me).to_string();
    // 4194305 is above Linux's pid_max, so no such process can exist.
    fs::rename(dir.join(&entry), dir.join(format!("{host}.4194305-0"))).unwrap();
    let roster = fs::read_to_string(repo.join("lock.roster")).unwrap();
    fs::write(
        repo.join("lock.roster"),
        roster.replace(&format!(", {}, 0]", std::process::id()), ", 4194305, 0]"),
    )
    .unwrap();
    host
}

#[test]
fn interrupted_transactions_leave_the_last_commit() {
    let s = Scratch::new();
    let repo = s.repo();
    let repo_s = repo.to_str().unwrap().to_string();
    let mut r = create(&repo, &small_segments());
    for n in 0..20 {
        r.put(&object_id(n), bytes(n, 3000)).unwrap();
    }
    commit(&mut r);
    let committed = rborg_objects(&mut r);
    // A transaction that never commits, abandoned as a crashed process would leave it: data
    // written, lock still on disk.
    for n in 20..80 {
        r.put(&object_id(n), bytes(n, 3000)).unwrap();
    }
    r.delete(&object_id(1)).unwrap();
    r.flush().unwrap();
    std::mem::forget(r);
    let host = make_lock_stale(&repo);
    assert!(host.contains('@'));
    // borg breaks the dead process's lock, discards the uncommitted segments and is clean.
    for borg in BOTH {
        s.check_repository_only(borg);
        assert_eq!(s.borg_objects(borg), committed);
    }
    let mut r = open(&repo);
    assert_eq!(rborg_objects(&mut r), committed);
    // A torn write: half an entry at the end of a new segment.
    r.put(&object_id(99), bytes(99, 100)).unwrap();
    r.flush().unwrap();
    drop(r);
    let mut segs: Vec<PathBuf> = Vec::new();
    for d in fs::read_dir(repo.join("data")).unwrap() {
        for f in fs::read_dir(d.unwrap().path()).unwrap() {
            segs.push(f.unwrap().path());
        }
    }
    let newest = segs
        .iter()
        .max_by_key(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .unwrap()
        .clone();
    let len = fs::metadata(&newest).unwrap().len();
    let f = fs::OpenOptions::new().write(true).open(&newest).unwrap();
    f.set_len(len - 50).unwrap();
    let mut r = open(&repo);
    assert_eq!(rborg_objects(&mut r), committed);
    assert!(r.check(false, 0).unwrap());
    // The next transaction starts from the commit and deletes the leftovers.
    r.put(&object_id(100), b"after".to_vec()).unwrap();
    commit(&mut r);
    assert!(!newest.exists() || fs::metadata(&newest).unwrap().len() != len - 50);
    r.close().unwrap();
    for borg in BOTH {
        s.check_repository_only(borg);
    }

    // borg killed in the middle of a transaction: rborg sees the last commit.
    let child = s
        .command(&Borg::V14.python())
        .args([
            "-c",
            r#"
from borg.logger import setup_logging
setup_logging(level='warning')
import sys, os, time
from borg.repository import Repository
r = Repository(sys.argv[1], exclusive=True)
r.__enter__()
for k in range(200):
    r.put(os.urandom(32), os.urandom(5000))
r.io.get_write_fd().f.flush()
open(sys.argv[2], 'w').close()
time.sleep(60)
"#,
            &repo_s,
            s.dir.path().join("ready").to_str().unwrap(),
        ])
        .process_group(0)
        .spawn()
        .unwrap();
    wait_for(&s.dir.path().join("ready"), "borg writer");
    kill(child);
    let mut r = open(&repo);
    let after = rborg_objects(&mut r);
    assert_eq!(after.len(), committed.len() + 1);
    assert!(r.check(false, 0).unwrap());
    r.close().unwrap();
    s.check_repository_only(Borg::V12);
}

/// Deletes `index.*`, `hints.*` and `integrity.*`, as if they were lost.
fn remove_index_files(repo: &Path) {
    for e in fs::read_dir(repo).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if ["index.", "hints.", "integrity."]
            .iter()
            .any(|prefix| name.starts_with(prefix))
        {
            fs::remove_file(p).unwrap();
        }
    }
}

fn segment_files(repo: &Path) -> Vec<(u64, PathBuf)> {
    let mut segs = Vec::new();
    for d in fs::read_dir(repo.join("data")).unwrap() {
        for f in fs::read_dir(d.unwrap().path()).unwrap() {
            let p = f.unwrap().path();
            let n = p.file_name().unwrap().to_str().unwrap().parse().unwrap();
            segs.push((n, p));
        }
    }
    segs.sort();
    segs
}

#[test]
fn damaged_segments_are_found_and_repaired() {
    let s = Scratch::new();
    let repo = s.repo();
    let mut r = create(&repo, &small_segments());
    for n in 0..200 {
        r.put(&object_id(n), bytes(n, 2000)).unwrap();
    }
    commit(&mut r);
    assert!(r.check(false, 0).unwrap());
    r.close().unwrap();
    for borg in BOTH {
        s.check_repository_only(borg);
    }
    let segs = segment_files(&repo);
    assert!(segs.len() > 4);
    // Flip a byte in the data of the second segment, truncate the third.
    let (_, flip) = &segs[1];
    let mut data = fs::read(flip).unwrap();
    data[100] ^= 0x55;
    fs::write(flip, &data).unwrap();
    let (_, cut) = &segs[2];
    let len = fs::metadata(cut).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(cut)
        .unwrap()
        .set_len(len - 1000)
        .unwrap();

    let mut r = open(&repo);
    assert!(
        !r.check(false, 0).unwrap(),
        "rborg's check missed the damage"
    );
    r.close().unwrap();
    for borg in BOTH {
        let out = s.borg(
            borg,
            &["check", "--repository-only", repo.to_str().unwrap()],
        );
        assert!(!out.status.success(), "{borg:?} check missed the damage");
    }
    let mut r = open(&repo);
    assert!(r.check(true, 0).unwrap());
    assert!(r.check(false, 0).unwrap(), "not clean after repair");
    let left = rborg_objects(&mut r);
    assert!(
        left.len() < 200 && left.len() > 150,
        "{} objects left",
        left.len()
    );
    for (id, d) in &left {
        let n = (0..200u64)
            .find(|n| hex::encode(object_id(*n)) == *id)
            .unwrap();
        assert_eq!(*d, digest(&bytes(n, 2000)));
    }
    r.close().unwrap();
    for borg in BOTH {
        s.check_repository_only(borg);
        assert_eq!(s.borg_objects(borg), left);
    }

    // A lost index is rebuilt by replaying the segments.
    remove_index_files(&repo);
    let mut r = open(&repo);
    assert_eq!(rborg_objects(&mut r), left);
    // A partial check finishes on a small repository and leaves no position behind.
    assert!(r.check(false, 3600).unwrap());
    r.close().unwrap();
    let config = fs::read_to_string(repo.join("config")).unwrap();
    assert!(!config.contains("last_segment_checked"));
    s.check_repository_only(Borg::V14);
}

#[test]
fn config_matches_borgs_layout() {
    let s = Scratch::new();
    let repo = s.repo();
    let mut r = create(&repo, &settings());
    r.save_key(b"line one\nline two").unwrap();
    r.put(&MANIFEST_ID, b"m".to_vec()).unwrap();
    commit(&mut r);
    assert_eq!(r.load_key().unwrap(), b"line one\nline two");
    assert_eq!(r.get_free_nonce().unwrap(), None);
    r.commit_nonce_reservation(0x1122334455, None).unwrap();
    assert_eq!(r.get_free_nonce().unwrap(), Some(0x1122334455));
    assert!(r.commit_nonce_reservation(5, None).is_err());
    let id = hex::encode(r.id());
    r.close().unwrap();
    assert_eq!(
        fs::read_to_string(repo.join("nonce")).unwrap(),
        "0000001122334455"
    );
    let config = fs::read_to_string(repo.join("config")).unwrap();
    assert_eq!(
        config,
        format!(
            "[repository]\nversion = 1\nsegments_per_dir = 1000\nmax_segment_size = 524288000\n\
             append_only = 0\nstorage_quota = 0\nadditional_free_space = 0\nid = {id}\n\
             key = line one\n\tline two\n\n"
        )
    );
    assert!(!repo.join("config.old").exists());
    // borg reads the key and id the same way.
    let out = s.python(
        Borg::V12,
        "import sys\nfrom borg.repository import Repository\n\
         with Repository(sys.argv[1]) as r: print(r.id.hex()); print(repr(r.load_key()))",
        &[repo.to_str().unwrap()],
    );
    assert_eq!(out, format!("{id}\nb'line one\\nline two'\n"));
    // Files after a commit: one index/hints/integrity triple, named by the commit segment.
    let index_files: Vec<String> = fs::read_dir(&repo)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.starts_with("index.") || n.starts_with("hints.") || n.starts_with("integrity.")
        })
        .collect();
    assert_eq!(index_files.len(), 3, "{index_files:?}");
    // Init shape: manifest in segment 0, COMMIT alone in segment 1 (17 bytes).
    assert_eq!(fs::metadata(repo.join("data/0/1")).unwrap().len(), 17);
    assert!(index_files.contains(&"index.1".to_string()));
    assert_eq!(fs::metadata(repo.join("index.1")).unwrap().len(), 41258);
}

#[test]
fn append_only_and_quota_follow_borg() {
    let s = Scratch::new();
    let repo = s.repo();
    let options = OpenOptions {
        exclusive: true,
        append_only: true,
        ..OpenOptions::default()
    };
    let mut r = LocalRepository::create(&repo, &options, &settings()).unwrap();
    r.put(&object_id(1), b"one".to_vec()).unwrap();
    commit(&mut r);
    r.delete(&object_id(1)).unwrap();
    r.put(&object_id(2), b"two".to_vec()).unwrap();
    compact(&mut r);
    // No compaction in append-only mode: the old PUT's segment is still there.
    assert!(repo.join("data/0/0").exists());
    assert!(matches!(
        r.check(true, 0),
        Err(RepositoryError::AppendOnly(_))
    ));
    assert!(matches!(r.destroy(), Err(RepositoryError::AppendOnly(_))));
    r.close().unwrap();
    let log = fs::read_to_string(repo.join("transactions")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert!(lines[0].starts_with("transaction 1, UTC time 20"), "{log}");
    assert!(fs::read_to_string(repo.join("config"))
        .unwrap()
        .contains("append_only = 1\n"));
    s.check_repository_only(Borg::V12);
    assert_eq!(s.borg_objects(Borg::V14).len(), 1);

    // Storage quota: the put that crosses it fails, and so do later puts and the commit.
    let s2 = Scratch::new();
    let quota = LocalSettings {
        storage_quota: Some(10_000),
        ..settings()
    };
    let mut r = LocalRepository::create(&s2.repo(), &exclusive(), &quota).unwrap();
    r.put(&object_id(1), vec![1; 6000]).unwrap();
    let err = r.put(&object_id(2), vec![2; 6000]).unwrap_err();
    match &err {
        RepositoryError::StorageQuotaExceeded { quota, used } => {
            assert_eq!((quota.as_str(), used.as_str()), ("10.00 kB", "12.08 kB"));
        }
        other => panic!("{other}"),
    }
    assert!(r.put(&object_id(3), vec![3; 10]).is_err());
    assert!(matches!(
        r.commit(CommitOptions::default()),
        Err(RepositoryError::StorageQuotaExceeded { .. })
    ));
    assert_eq!(r.object_count().unwrap(), 0);
    r.close().unwrap();
}

/// Runs a script of repository operations through borg's `Repository`:
/// `P n len` put, `D n` delete, `M text` put the manifest, `C` commit, `K` commit with compaction,
/// `X` commit with compaction and `cleanup_commits`.
const OPS_SCRIPT: &str = r#"
import sys, hashlib, struct
from borg.repository import Repository
def oid(n):
    return hashlib.sha256(struct.pack('<Q', n)).digest()
def data(n, length):
    return ((b'%d.' % n) * (length + 1))[:length]
path = sys.argv[1]
limits = sys.argv[3:]
if limits:
    # Create, then give the repository small segments the way rborg's settings do.
    Repository(path, create=True, exclusive=True).__enter__().close()
    cfg = open(path + '/config').read()
    cfg = cfg.replace('max_segment_size = 524288000', 'max_segment_size = ' + limits[0])
    cfg = cfg.replace('segments_per_dir = 1000', 'segments_per_dir = ' + limits[1])
    open(path + '/config', 'w').write(cfg)
    r = Repository(path, exclusive=True)
else:
    r = Repository(path, create=True, exclusive=True)
r.__enter__()
for line in sys.argv[2].split(';'):
    op = line.split()
    if op[0] == 'P':
        r.put(oid(int(op[1])), data(int(op[1]), int(op[2])))
    elif op[0] == 'D':
        r.delete(oid(int(op[1])))
    elif op[0] == 'M':
        r.put(bytes(32), op[1].encode())
    elif op[0] == 'C':
        r.commit(compact=False)
    elif op[0] == 'K':
        r.commit(compact=True)
    elif op[0] == 'X':
        r.commit(compact=True, cleanup_commits=True)
r.__exit__(None, None, None)
"#;

fn ops_data(n: u64, len: usize) -> Vec<u8> {
    format!("{n}.").repeat(len + 1).into_bytes()[..len].to_vec()
}

fn run_ops(repo: &mut LocalRepository, ops: &str) {
    for line in ops.split(';') {
        let op: Vec<&str> = line.split_whitespace().collect();
        let num = |i: usize| op[i].parse::<u64>().unwrap();
        match op[0] {
            "P" => repo
                .put(&object_id(num(1)), ops_data(num(1), num(2) as usize))
                .unwrap(),
            "D" => repo.delete(&object_id(num(1))).unwrap(),
            "M" => repo.put(&MANIFEST_ID, op[1].as_bytes().to_vec()).unwrap(),
            "C" => commit(repo),
            "K" => compact(repo),
            "X" => repo
                .commit(CommitOptions {
                    compact: true,
                    cleanup_commits: true,
                    ..CommitOptions::default()
                })
                .unwrap(),
            other => panic!("unknown op {other}"),
        }
    }
}

/// Every file of a repository except the lock, with the config's random id blanked.
fn repo_files(repo: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![repo.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(repo).unwrap().to_string_lossy().into_owned();
            if rel.starts_with("lock") {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                let mut bytes = fs::read(&p).unwrap();
                if rel == "config" {
                    let text = String::from_utf8(bytes).unwrap();
                    bytes = text
                        .lines()
                        .filter(|l| !l.starts_with("id = "))
                        .collect::<Vec<_>>()
                        .join("\n")
                        .into_bytes();
                }
                out.insert(rel, bytes);
            }
        }
    }
    out
}

#[test]
fn rborg_writes_the_same_bytes_as_borg_with_small_segments() {
    // Small segments: rollover, several data directories, and a compaction whose target
    // segment fills up (intermediate commits).
    let mut ops: Vec<String> = vec!["M m1".into()];
    ops.extend((0..60).map(|n| format!("P {n} {}", 300 + n * 20)));
    ops.push("C".into());
    ops.extend((0..60).filter(|n| n % 3 != 1).map(|n| format!("D {n}")));
    ops.extend((0..60).step_by(9).map(|n| format!("P {n} 500")));
    ops.push("M m2".into());
    ops.push("C".into());
    ops.push("M m3".into());
    ops.push("K".into());
    ops.push("M m4".into());
    ops.push("K".into());
    let ops = ops.join(";");
    let s = Scratch::new();
    let theirs = s.dir.path().join("borg");
    s.python(
        Borg::V14,
        OPS_SCRIPT,
        &[theirs.to_str().unwrap(), &ops, "2000", "3"],
    );
    let ours = s.repo();
    let small = LocalSettings {
        new_segment_limits: Some((2000, 3)),
        ..settings()
    };
    let mut r = create(&ours, &small);
    run_ops(&mut r, &ops);
    r.close().unwrap();
    assert!(fs::read_dir(ours.join("data")).unwrap().count() > 3);
    let commit_tag = [0x40, 0xf4, 0x3c, 0x25, 0x09, 0, 0, 0, 2];
    let intermediate_commits = segment_files(&ours)
        .iter()
        .filter(|(_, p)| {
            let b = fs::read(p).unwrap();
            b.len() > 17 && b.ends_with(&commit_tag)
        })
        .count();
    assert!(
        intermediate_commits > 0,
        "compaction never filled a segment"
    );
    assert_same_files(&theirs, &ours);
}

#[test]
fn rborg_writes_the_same_bytes_as_borg12_without_overwrites() {
    // Borg 1.2.4 does not record overwritten PUTs in the shadow index (1.2.7+ and 1.4 do, as
    // rborg does), so this sequence overwrites nothing.
    let mut ops: Vec<String> = vec!["M m1".into()];
    ops.extend((0..50).map(|n| format!("P {n} {}", 200 + n * 30)));
    ops.push("C".into());
    ops.extend((0..50).step_by(3).map(|n| format!("D {n}")));
    ops.push("P 60 10".into());
    ops.push("C".into());
    ops.push("P 61 10".into());
    ops.push("K".into());
    let ops = ops.join(";");
    let s = Scratch::new();
    let theirs = s.dir.path().join("borg");
    s.python(
        Borg::V12,
        OPS_SCRIPT,
        &[theirs.to_str().unwrap(), &ops, "3000", "2"],
    );
    let ours = s.repo();
    let small = LocalSettings {
        new_segment_limits: Some((3000, 2)),
        ..settings()
    };
    let mut r = create(&ours, &small);
    run_ops(&mut r, &ops);
    r.close().unwrap();
    assert_same_files(&theirs, &ours);
}

#[test]
fn rborg_writes_the_same_bytes_as_borg() {
    let mut ops: Vec<String> = vec!["M m1".into()];
    ops.extend((0..40).map(|n| format!("P {n} {}", n * 50)));
    ops.push("C".into());
    ops.push("M m2".into());
    ops.extend((0..40).step_by(4).map(|n| format!("D {n}")));
    ops.extend((1..40).step_by(5).map(|n| format!("P {n} 33")));
    ops.push("C".into());
    ops.push("M m3".into());
    ops.push("K".into());
    ops.extend((100..105).map(|n| format!("P {n} 7")));
    ops.push("D 101".into());
    ops.push("C".into());
    ops.push("P 102 9".into());
    ops.push("C".into());
    ops.push("M m4".into());
    ops.push("X".into());
    let ops = ops.join(";");
    let s = Scratch::new();
    let theirs = s.dir.path().join("borg");
    s.python(Borg::V14, OPS_SCRIPT, &[theirs.to_str().unwrap(), &ops]);
    let ours = s.repo();
    let mut r = create(&ours, &settings());
    run_ops(&mut r, &ops);
    r.close().unwrap();
    assert_same_files(&theirs, &ours);
    // Both rebuild a lost index and hints by replaying the segments, to the same bytes.
    for repo in [&theirs, &ours] {
        remove_index_files(repo);
    }
    let borg_count = s.python(
        Borg::V14,
        "import sys\nfrom borg.repository import Repository\n\
         with Repository(sys.argv[1], exclusive=True) as r: print(len(r))",
        &[theirs.to_str().unwrap()],
    );
    let mut r = open(&ours);
    // 41 puts, 10 deletes, 2 of the deleted ids put again, 5 more puts, 1 more delete.
    assert_eq!(borg_count.trim(), "37");
    assert_eq!(r.object_count().unwrap(), 37);
    r.close().unwrap();
    assert_same_files(&theirs, &ours);
}

fn assert_same_files(theirs: &Path, ours: &Path) {
    let (a, b) = (repo_files(theirs), repo_files(ours));
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "different files"
    );
    for (name, bytes) in &a {
        assert!(b[name] == *bytes, "{name} differs");
    }
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let target = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &target);
        } else {
            fs::copy(&p, &target).unwrap();
        }
    }
}

#[test]
fn repair_gives_the_same_bytes_as_borgs_repair() {
    let s = Scratch::new();
    let ours = s.repo();
    let mut r = create(&ours, &small_segments());
    for n in 0..120 {
        r.put(&object_id(n), bytes(n, 1500 + n as usize * 10))
            .unwrap();
    }
    commit(&mut r);
    for n in (0..120).step_by(5) {
        r.delete(&object_id(n)).unwrap();
    }
    commit(&mut r);
    r.close().unwrap();
    let segs = segment_files(&ours);
    // Garbage inside an entry of one segment, a truncated tail of another.
    let (_, flip) = &segs[0];
    let mut data = fs::read(flip).unwrap();
    for b in &mut data[3000..3010] {
        *b ^= 0xa5;
    }
    fs::write(flip, &data).unwrap();
    let (_, cut) = &segs[1];
    let len = fs::metadata(cut).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(cut)
        .unwrap()
        .set_len(len - 700)
        .unwrap();
    let copies: Vec<(Borg, PathBuf)> = BOTH
        .iter()
        .map(|&borg| {
            let copy = s.dir.path().join(format!("{borg:?}"));
            copy_dir(&ours, &copy);
            let args = [
                "check",
                "--repository-only",
                "--repair",
                copy.to_str().unwrap(),
            ];
            s.borg_ok(borg, &args);
            (borg, copy)
        })
        .collect();
    let mut r = open(&ours);
    assert!(r.check(true, 0).unwrap());
    r.close().unwrap();
    for (borg, theirs) in &copies {
        match borg {
            Borg::V14 => assert_same_files(theirs, &ours),
            // Borg 1.2.4's rebuild does not fill the shadow index (1.4's does, and so does
            // rborg), so its hints, and the integrity data over them, differ.
            Borg::V12 => {
                let skip = |m: BTreeMap<String, Vec<u8>>| -> BTreeMap<String, Vec<u8>> {
                    m.into_iter()
                        .filter(|(n, _)| !n.starts_with("hints.") && !n.starts_with("integrity."))
                        .collect()
                };
                let (a, b) = (skip(repo_files(theirs)), skip(repo_files(&ours)));
                assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
                for (name, bytes) in &a {
                    assert!(b[name] == *bytes, "{name} differs from borg 1.2's repair");
                }
            }
        }
    }
}

/// Runs as the parent: starts this same test in a child process that writes without
/// committing, kills it, and checks what borg and rborg see. Runs as the child when the
/// environment names the repository.
#[test]
fn killed_rborg_writer_leaves_the_last_commit() {
    const REPO_VAR: &str = "RBORG_LOCAL_CHILD_REPO";
    const READY_VAR: &str = "RBORG_LOCAL_CHILD_READY";
    if let (Ok(repo), Ok(ready)) = (std::env::var(REPO_VAR), std::env::var(READY_VAR)) {
        let mut r = open(Path::new(&repo));
        for n in 500..700 {
            r.put(&object_id(n), bytes(n, 4000)).unwrap();
        }
        r.delete(&object_id(1)).unwrap();
        r.flush().unwrap();
        fs::write(ready, b"").unwrap();
        std::thread::sleep(Duration::from_secs(60));
        return;
    }
    let s = Scratch::new();
    let repo = s.repo();
    let mut r = create(&repo, &small_segments());
    for n in 0..10 {
        r.put(&object_id(n), bytes(n, 3000)).unwrap();
    }
    commit(&mut r);
    let committed = rborg_objects(&mut r);
    r.close().unwrap();
    let ready = s.dir.path().join("ready");
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "killed_rborg_writer_leaves_the_last_commit",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(REPO_VAR, &repo)
        .env(READY_VAR, &ready)
        .stdout(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    wait_for(&ready, "rborg writer");
    assert!(repo.join("lock.exclusive").exists());
    kill(child);
    // The dead writer's lock is stale on this host: borg breaks it and sees the last commit.
    for borg in BOTH {
        s.check_repository_only(borg);
        assert_eq!(s.borg_objects(borg), committed);
    }
    let mut r = open(&repo);
    assert_eq!(rborg_objects(&mut r), committed);
    r.put(&object_id(42), b"next".to_vec()).unwrap();
    commit(&mut r);
    assert_eq!(r.object_count().unwrap(), 11);
    r.close().unwrap();
    s.check_repository_only(Borg::V12);
}

/// Every id borg's `Repository.scan` lists, one hex id a line, read in pages of `limit`.
const SCAN_SCRIPT: &str = r#"
import sys
from borg.repository import Repository
with Repository(sys.argv[1], exclusive=False) as r:
    marker = None
    while True:
        ids = r.scan(limit=int(sys.argv[2]), marker=marker)
        if not ids:
            break
        for i in ids:
            print(i.hex())
        marker = ids[-1]
"#;

fn rborg_scan(repo: &Path, limit: u32) -> Vec<String> {
    let mut r = open(repo);
    let mut out = Vec::new();
    let mut marker = None;
    loop {
        let page = r.scan(Some(limit), marker.as_ref()).unwrap();
        if page.is_empty() {
            break;
        }
        marker = page.last().copied();
        out.extend(page.iter().map(hex::encode));
    }
    r.close().unwrap();
    out
}

/// borg's `scan` reads entry headers only: an entry whose data fails its CRC is still listed,
/// and a broken header ends its segment. rborg's `scan` lists the same ids in the same order.
#[test]
fn scan_over_damaged_entries_matches_borgs() {
    for borg in BOTH {
        let s = Scratch::new();
        let repo = s.repo();
        let repo_s = repo.to_str().unwrap();
        s.borg_ok(borg, &["init", "-e", "none", repo_s]);
        s.python(borg, WRITE_SCRIPT, &[repo_s, "scan", "30"]);
        let written = borg_written("scan", 30);
        let key = |k: usize| Sha256::digest(format!("scan-{k}").as_bytes());
        // Where the entry of object k starts: segment file and offset.
        let entry = |k: usize| {
            segment_files(&repo)
                .into_iter()
                .find_map(|(_, p)| {
                    let data = fs::read(&p).unwrap();
                    let at = data.windows(32).position(|w| w == key(k).as_slice())?;
                    Some((p, at - 9))
                })
                .unwrap()
        };
        // Both scans, whole and in pages of 4 (markers); returns the ids listed.
        let compare = |what: &str| {
            let mut listed = Vec::new();
            for limit in [1000, 4] {
                let text = s.python(borg, SCAN_SCRIPT, &[repo_s, &limit.to_string()]);
                let borgs: Vec<String> = text.lines().map(str::to_string).collect();
                assert_eq!(
                    rborg_scan(&repo, limit),
                    borgs,
                    "{borg:?}, {what}, limit {limit}"
                );
                listed = borgs;
            }
            listed
        };
        let intact = compare("intact");
        assert_eq!(intact.len(), written.len() + 1, "{borg:?}");

        // A flipped data byte: the CRC no longer matches, the entry is still listed.
        let (file, at) = entry(10);
        let mut data = fs::read(&file).unwrap();
        data[at + 41 + 3] ^= 0x10;
        fs::write(&file, &data).unwrap();
        let mut r = open(&repo);
        assert!(r.get(&key(10).into()).is_err(), "{borg:?}: damage not seen");
        r.close().unwrap();
        assert_eq!(compare("data flipped"), intact);

        // A size field beyond borg's limit: the rest of that segment is skipped.
        let (file, at) = entry(20);
        let mut data = fs::read(&file).unwrap();
        data[at + 7] = 0xff;
        fs::write(&file, &data).unwrap();
        let listed = compare("header broken");
        assert!(listed.contains(&hex::encode(key(10))), "{borg:?}");
        assert!(!listed.contains(&hex::encode(key(20))), "{borg:?}");
        assert!(listed.len() < intact.len(), "{borg:?}");
    }
}
