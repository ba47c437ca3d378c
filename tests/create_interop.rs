//! `rborg create` against real borg 1.2.4 and 1.4.5: what rborg writes, borg lists, checks
//! with `--verify-data` and extracts exactly; dedup works both ways; the files cache skips
//! unchanged files; a killed run leaves a consistent repository; bad input ends as borg's does.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{borg, borg12, borg14, borg_ok, pseudo_random, Peer, Scratch, Sshd};

/// Small chunks so that a file of a few hundred KiB is several chunks.
const CHUNKER: &str = "buzhash,10,16,12,4095";

fn rborg_cmd(scratch: &Scratch, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rborg"));
    c.args(args)
        .envs(scratch.borg_env())
        .current_dir(scratch.dir.path())
        .stdin(Stdio::null());
    c
}

fn rborg(scratch: &Scratch, args: &[&str]) -> Output {
    rborg_cmd(scratch, args).output().expect("run rborg")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn rborg_ok(scratch: &Scratch, args: &[&str]) -> Output {
    let o = rborg(scratch, args);
    assert!(
        o.status.success(),
        "rborg {args:?} failed ({}):\n{}",
        o.status,
        text(&o)
    );
    o
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("bad json ({e}):\n{}", text(o)))
}

fn setxattr(path: &Path, name: &str, value: &[u8]) {
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    // SAFETY: valid C strings and buffer.
    let r = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(r, 0, "setxattr {}", path.display());
}

/// A tree with every file type borg stores, xattrs, ACLs, hardlinks, a sparse file, unicode and
/// non-UTF-8 names, empty files and a file of many chunks. The last file written is
/// `zz-newest` (the files cache never keeps the newest file, as in borg).
fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("dir/sub")).unwrap();
    fs::write(root.join("empty"), b"").unwrap();
    fs::write(root.join("dir/small.txt"), b"hello world\n").unwrap();
    let mut big = pseudo_random(600_000, 3);
    big.extend(vec![b'a'; 300_000]);
    fs::write(root.join("dir/big.bin"), &big).unwrap();
    fs::write(root.join("dir/sub/hl1"), b"linked content").unwrap();
    fs::hard_link(root.join("dir/sub/hl1"), root.join("hl2")).unwrap();
    symlink("dir/small.txt", root.join("link")).unwrap();
    symlink("nowhere", root.join("dangling")).unwrap();
    fs::write(root.join("unicodé ☃.txt"), "schnee").unwrap();
    fs::write(root.join(OsStr::from_bytes(b"latin1-\xe9\xff")), b"bytes").unwrap();
    let fifo = std::ffi::CString::new(root.join("fifo").as_os_str().as_bytes()).unwrap();
    // SAFETY: valid path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o640) }, 0);
    let dev = std::ffi::CString::new(root.join("null-dev").as_os_str().as_bytes()).unwrap();
    // SAFETY: valid path; a char device like /dev/null (we run as root).
    assert_eq!(
        unsafe { libc::mknod(dev.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(1, 3)) },
        0
    );
    // Sparse: a hole, data, a hole.
    let f = fs::File::create(root.join("sparse")).unwrap();
    f.set_len(3 << 20).unwrap();
    drop(f);
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = fs::OpenOptions::new()
            .write(true)
            .open(root.join("sparse"))
            .unwrap();
        f.seek(SeekFrom::Start(1 << 20)).unwrap();
        f.write_all(&pseudo_random(70_000, 9)).unwrap();
    }
    setxattr(&root.join("dir/small.txt"), "user.comment", b"an xattr");
    setxattr(&root.join("dir"), "user.empty", b"");
    let acl = Command::new("setfacl")
        .args(["-m", "u:12345:rw,g:54321:r"])
        .arg(root.join("dir/small.txt"))
        .status()
        .expect("setfacl");
    assert!(acl.success());
    let acl = Command::new("setfacl")
        .args(["-d", "-m", "u:12345:rx"])
        .arg(root.join("dir/sub"))
        .status()
        .expect("setfacl");
    assert!(acl.success());
    fs::set_permissions(
        root.join("empty"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    fs::write(root.join("zz-newest"), b"newest").unwrap();
}

/// Everything extract must reproduce, per path: type, mode, owner, mtime, content, link
/// target, xattrs (ACLs included, as `system.posix_acl_*`), and which paths share an inode.
const SNAPSHOT_PY: &str = r#"
import os, sys, hashlib, json
root = os.fsencode(sys.argv[1])
out = {}
inodes = {}
for dirpath, dirnames, filenames in os.walk(root):
    for name in sorted(dirnames + filenames):
        p = os.path.join(dirpath, name)
        st = os.lstat(p)
        rel = os.path.relpath(p, root).hex()
        e = {"mode": st.st_mode, "uid": st.st_uid, "gid": st.st_gid}
        import stat as S
        if not S.S_ISDIR(st.st_mode) and not S.S_ISLNK(st.st_mode):
            e["mtime"] = st.st_mtime_ns
        if S.S_ISREG(st.st_mode):
            e["sha"] = hashlib.sha256(open(p, "rb").read()).hexdigest()
            e["size"] = st.st_size
        if S.S_ISLNK(st.st_mode):
            e["target"] = os.readlink(p).hex()
        if S.S_ISCHR(st.st_mode) or S.S_ISBLK(st.st_mode):
            e["rdev"] = st.st_rdev
        if not S.S_ISLNK(st.st_mode):
            e["xattrs"] = {os.fsdecode(k): os.getxattr(p, k).hex() for k in sorted(os.listxattr(p))}
        if st.st_nlink > 1 and not S.S_ISDIR(st.st_mode):
            e["link_group"] = inodes.setdefault(st.st_ino, rel)
        out[rel] = e
print(json.dumps(out, sort_keys=True))
"#;

fn snapshot(dir: &Path) -> serde_json::Value {
    let o = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(SNAPSHOT_PY)
        .arg(dir)
        .output()
        .expect("python3");
    assert!(o.status.success(), "snapshot: {}", text(&o));
    serde_json::from_slice(&o.stdout).expect("snapshot json")
}

/// `borg list --json-lines` of an archive with the fields two backups of one tree share.
fn items(peer: &Peer, scratch: &Scratch, archive: &str) -> Vec<serde_json::Value> {
    let o = borg_in(
        peer,
        scratch,
        &[
            "list",
            "--json-lines",
            "--format",
            "{mode}{user}{group}{uid}{gid}{path}{source}{size}{csize}{mtime}{health}{num_chunks}{sha256}{type}",
            archive,
        ],
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

/// borg run in the scratch directory (where rborg runs too, so relative paths agree).
fn borg_in(peer: &Peer, scratch: &Scratch, args: &[&str]) -> Output {
    let o = Command::new(&peer.borg)
        .args(args)
        .envs(scratch.borg_env())
        .current_dir(scratch.dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("run borg");
    assert!(o.status.success(), "borg {args:?}: {}", text(&o));
    o
}

/// The full round trip for one peer and one repository URL.
fn round_trip(peer: &Peer, scratch: &Scratch, repo: &str, encryption: &str) {
    let src = scratch.path("src");
    make_tree(&src);
    borg_ok(peer, scratch, &["init", "-e", encryption, repo]);
    let a = format!("{repo}::r1");
    let out = rborg_ok(
        scratch,
        &[
            "create",
            "--json",
            "--list",
            "--chunker-params",
            CHUNKER,
            "-C",
            "auto,zstd,3",
            &a,
            "src",
        ],
    );
    let j = json(&out);
    assert_eq!(j["archive"]["name"], "r1");
    // Regular files; the hardlink slave is not counted (borg counts it neither).
    assert_eq!(j["archive"]["stats"]["nfiles"], 8, "{j}");
    let listed = String::from_utf8_lossy(&out.stderr).into_owned();
    for line in [
        "A src/dir/big.bin",
        "d src/dir",
        "s src/link",
        "f src/fifo",
        "c src/null-dev",
    ] {
        assert!(listed.contains(line), "--list lacks {line:?}:\n{listed}");
    }
    // One of the two links is the master (the first met in inode order), the other `h`.
    assert_eq!(
        listed.lines().filter(|l| l.starts_with("h src/")).count(),
        1,
        "{listed}"
    );
    // borg reads and verifies everything.
    let check = borg(peer, scratch, &["check", "--verify-data", repo]);
    assert!(check.status.success(), "borg check: {}", text(&check));
    // Extract reproduces the tree.
    let ex = scratch.path("ex");
    fs::create_dir_all(&ex).unwrap();
    let o = Command::new(&peer.borg)
        .args(["extract", &a])
        .envs(scratch.borg_env())
        .current_dir(&ex)
        .output()
        .unwrap();
    assert!(o.status.success(), "extract: {}", text(&o));
    assert_eq!(snapshot(&ex.join("src")), snapshot(&src));
    // borg's own archive of the same tree lists the same items, and dedups against ours.
    let b = format!("{repo}::b1");
    let o = borg_in(
        peer,
        scratch,
        &[
            "create",
            "--json",
            "--chunker-params",
            CHUNKER,
            "-C",
            "auto,zstd,3",
            &b,
            "src",
        ],
    );
    // borg's archive is made of the chunks rborg stored: no new content. (borg 1.2 counts
    // its new metadata objects in the deduplicated size; 1.4 keeps them out.)
    let dedup = json(&o)["archive"]["stats"]["deduplicated_size"]
        .as_u64()
        .unwrap();
    let limit = if peer.name == "1.2" { 4096 } else { 0 };
    assert!(
        dedup <= limit,
        "borg stored {dedup} new bytes: {}",
        text(&o)
    );
    let ours = items(peer, scratch, &a);
    let theirs = items(peer, scratch, &b);
    assert_eq!(ours.len(), theirs.len());
    for (x, y) in ours.iter().zip(&theirs) {
        let mut x = x.clone();
        let mut y = y.clone();
        // csize depends on the compressor's run-time choices only through identical code, but
        // random IVs make no difference in size; still, compare it too.
        for v in [&mut x, &mut y] {
            v.as_object_mut().unwrap().remove("csize");
        }
        assert_eq!(x, y);
    }
}

#[test]
fn borg14_local_round_trip_list_check_extract() {
    let scratch = Scratch::new();
    let repo = scratch.path("repo");
    round_trip(&borg14(), &scratch, repo.to_str().unwrap(), "repokey");
}

#[test]
fn borg12_over_sshd_round_trip() {
    let scratch = Scratch::new();
    let peer = borg12();
    let sshd = Sshd::start();
    let wrapper = scratch.serve_wrapper(&peer, "serve", "");
    let repo = sshd.url(&scratch.path("repo"));
    std::env::set_var("BORG_RSH", sshd.rsh());
    std::env::set_var("BORG_REMOTE_PATH", wrapper.to_str().unwrap());
    round_trip(&peer, &scratch, &repo, "repokey-blake2");
}

#[test]
fn borg14_first_then_rborg_dedups_and_files_cache_skips_reading() {
    let scratch = Scratch::new();
    let peer = borg14();
    let src = scratch.path("src");
    make_tree(&src);
    let repo = scratch.path("repo");
    let repo = repo.to_str().unwrap();
    borg_in(&peer, &scratch, &["init", "-e", "repokey", repo]);
    borg_in(
        &peer,
        &scratch,
        &[
            "create",
            "--chunker-params",
            CHUNKER,
            &format!("{repo}::b1"),
            "src",
        ],
    );
    // rborg syncs its chunk index from borg's archive and stores no new content.
    let o = rborg_ok(
        &scratch,
        &[
            "create",
            "--json",
            "--chunker-params",
            CHUNKER,
            &format!("{repo}::r1"),
            "src",
        ],
    );
    let j = json(&o);
    assert_eq!(j["archive"]["stats"]["deduplicated_size"], 0, "{j}");
    assert!(j["rborg"]["files_read"].as_u64().unwrap() >= 8);
    let full_size = j["archive"]["stats"]["original_size"].clone();
    // Unchanged tree: only `zz-newest` is read again (the files cache never keeps the newest
    // file of a run, as borg's), everything else comes from the cache.
    let o = rborg_ok(
        &scratch,
        &[
            "create",
            "--json",
            "--list",
            "--chunker-params",
            CHUNKER,
            &format!("{repo}::r2"),
            "src",
        ],
    );
    let j = json(&o);
    assert_eq!(j["rborg"]["files_read"], 1, "{}", text(&o));
    assert_eq!(j["rborg"]["bytes_read"], 6, "{}", text(&o));
    let listed = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(listed.contains("U src/dir/big.bin"), "{listed}");
    // Files from the cache count in the archive's statistics like files read.
    assert_eq!(j["archive"]["stats"]["original_size"], full_size);
    // A changed file is read again and listed as modified.
    fs::write(src.join("dir/small.txt"), b"changed\n").unwrap();
    let o = rborg_ok(
        &scratch,
        &["create", "--json", "--list", &format!("{repo}::r3"), "src"],
    );
    let listed = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(listed.contains("M src/dir/small.txt"), "{listed}");
    // Everything is consistent for borg.
    let check = borg(&peer, &scratch, &["check", repo]);
    assert!(check.status.success(), "{}", text(&check));
    let info = borg_in(&peer, &scratch, &["info", "--json", &format!("{repo}::r2")]);
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["archives"][0]["stats"]["nfiles"], 8);
}

#[test]
fn killed_run_leaves_a_consistent_repository() {
    let scratch = Scratch::new();
    let peer = borg14();
    let src = scratch.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("first"), b"first archive").unwrap();
    let repo = scratch.path("repo");
    let repo = repo.to_str().unwrap();
    borg_in(&peer, &scratch, &["init", "-e", "repokey", repo]);
    rborg_ok(&scratch, &["create", &format!("{repo}::before"), "src"]);
    // Enough incompressible data to take a while in a debug build.
    for i in 0..6 {
        fs::write(src.join(format!("big{i}")), pseudo_random(8 << 20, i + 1)).unwrap();
    }
    let mut child = rborg_cmd(
        &scratch,
        &[
            "create",
            "--checkpoint-interval",
            "1",
            &format!("{repo}::killed"),
            "src",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let finished = child.try_wait().unwrap();
    assert!(
        finished.is_none(),
        "rborg finished before it could be killed"
    );
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
    let check = borg(&peer, &scratch, &["check", repo]);
    assert!(
        check.status.success(),
        "borg check after kill: {}",
        text(&check)
    );
    let list = borg_in(
        &peer,
        &scratch,
        &["list", "--consider-checkpoints", "--short", repo],
    );
    let names = String::from_utf8_lossy(&list.stdout).into_owned();
    assert!(names.lines().any(|l| l == "before"), "{names}");
    let ex = borg(
        &peer,
        &scratch,
        &["extract", "--dry-run", &format!("{repo}::before")],
    );
    assert!(ex.status.success(), "{}", text(&ex));
    // A new run succeeds and reuses what the checkpoint kept.
    rborg_ok(&scratch, &["create", &format!("{repo}::after"), "src"]);
    let check = borg(&peer, &scratch, &["check", "--verify-data", repo]);
    assert!(check.status.success(), "{}", text(&check));
}

#[test]
fn bad_input_warnings_and_errors() {
    let scratch = Scratch::new();
    let peer = borg14();
    let src = scratch.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("ok"), b"fine").unwrap();
    let repo = scratch.path("repo");
    let repo = repo.to_str().unwrap();
    borg_in(&peer, &scratch, &["init", "-e", "repokey", repo]);
    // An unreadable file (reading /proc/self/mem at offset 0 fails with EIO, even for root)
    // and a path that does not exist: warnings, exit 1, the rest is backed up.
    let o = rborg(
        &scratch,
        &[
            "create",
            "--list",
            &format!("{repo}::a1"),
            "src",
            "/proc/self/mem",
            "missing",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("missing: stat: [Errno 2] No such file or directory"),
        "{t}"
    );
    assert!(t.contains("E /proc/self/mem"), "{t}");
    let list = borg_in(
        &peer,
        &scratch,
        &["list", "--short", &format!("{repo}::a1")],
    );
    assert_eq!(String::from_utf8_lossy(&list.stdout), "src\nsrc/ok\n");
    let check = borg(&peer, &scratch, &["check", "--verify-data", repo]);
    assert!(check.status.success(), "{}", text(&check));
    // borg 1.4's modern code for a missing file alone is FileNotFound's 107.
    let o = rborg_cmd(
        &scratch,
        &["create", &format!("{repo}::a0"), "src", "missing"],
    )
    .env("BORG_EXIT_CODES", "modern")
    .output()
    .unwrap();
    assert_eq!(o.status.code(), Some(107), "{}", text(&o));
    // A bad pattern: exit 2.
    let o = rborg(
        &scratch,
        &[
            "create",
            "--pattern",
            "Z:nonsense",
            &format!("{repo}::a2"),
            "src",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    // An existing archive name: exit 2, modern 30.
    let o = rborg(&scratch, &["create", &format!("{repo}::a1"), "src"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("Archive a1 already exists"),
        "{}",
        text(&o)
    );
    let o = rborg_cmd(&scratch, &["create", &format!("{repo}::a1"), "src"])
        .env("BORG_EXIT_CODES", "modern")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(30), "{}", text(&o));
    // --dry-run stores nothing.
    let o = rborg_ok(
        &scratch,
        &[
            "create",
            "--dry-run",
            "--list",
            &format!("{repo}::dry"),
            "src",
        ],
    );
    assert!(text(&o).contains("- src/ok"), "{}", text(&o));
    // Like borg, a dry run does not mind an archive name that is taken.
    let o = rborg_ok(
        &scratch,
        &["create", "--dry-run", &format!("{repo}::a1"), "src"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let list = borg_in(&peer, &scratch, &["list", "--short", repo]);
    assert_eq!(String::from_utf8_lossy(&list.stdout), "a1\na0\n");
}

#[test]
fn sigint_writes_a_checkpoint_and_stops() {
    let scratch = Scratch::new();
    let peer = borg14();
    let src = scratch.path("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..8 {
        fs::write(src.join(format!("big{i}")), pseudo_random(6 << 20, i + 11)).unwrap();
    }
    let repo = scratch.path("repo");
    let repo = repo.to_str().unwrap();
    borg_in(&peer, &scratch, &["init", "-e", "repokey", repo]);
    let child = rborg_cmd(&scratch, &["create", &format!("{repo}::cp"), "src"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("Got Ctrl-C / SIGINT."), "{}", text(&o));
    let list = borg_in(
        &peer,
        &scratch,
        &["list", "--consider-checkpoints", "--short", repo],
    );
    assert_eq!(String::from_utf8_lossy(&list.stdout), "cp.checkpoint\n");
    let check = borg(&peer, &scratch, &["check", "--verify-data", repo]);
    assert!(check.status.success(), "{}", text(&check));
    // The next run finishes and drops nothing borg needs.
    rborg_ok(&scratch, &["create", &format!("{repo}::cp"), "src"]);
    let check = borg(&peer, &scratch, &["check", repo]);
    assert!(check.status.success(), "{}", text(&check));
}
