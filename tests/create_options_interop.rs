//! `rborg create` options end to end against real borg 1.2.4 and 1.4.5: `--read-special`
//! (fifos fed by a writer, a char device, a block device on a loop device, symlinks to them),
//! `--one-file-system` (a tmpfs and bind mounts inside the tree), `--exclude-caches` with
//! `--exclude-if-present` and `--keep-exclude-tags` (right, wrong, short and symlinked tags,
//! tags that are directories), and the fixed chunker with `--sparse` on both sides (create and
//! extract, content and allocated blocks compared as borg's own `test_sparse_file` does).
//!
//! Every test backs the same tree up with `borg create` and `rborg create` and the same
//! options into one repository, then requires the same `--list` lines, the same
//! `borg list --json-lines` output and the same items in `borg debug dump-archive` (chunk
//! ids included), and a clean `borg check --verify-data`. The tests run as root: they make
//! device nodes, mounts and loop devices, and fail (never skip) when they cannot.
//!
//! Where rborg deliberately differs, because borg 1.2.4 and 1.4.5 fail: with the fixed chunker
//! borg cannot read a fifo (posix_fadvise on a pipe: "Illegal seek"), with `--sparse` it loops
//! forever on /dev/null, and with `--sparse` and a header size it drops the first header-size
//! bytes of a block device. rborg reads specials whole in every case (as borg does where it
//! works); `fixed_chunker_reads_fifos_and_dev_null` checks what rborg stores there.

mod common;

use std::ffi::CString;
use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{borg12, borg14, pseudo_random, Peer, Scratch};
use serde_json::Value;

/// Small buzhash chunks, so that a few hundred KiB are several chunks.
const CHUNKER: &str = "buzhash,10,16,12,4095";

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// rborg run in the scratch directory; panics unless it succeeds.
fn rborg_ok(scratch: &Scratch, args: &[&str]) -> Output {
    let o = Command::new(env!("CARGO_BIN_EXE_rborg"))
        .args(args)
        .envs(scratch.borg_env())
        .current_dir(scratch.dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("run rborg");
    assert!(
        o.status.success(),
        "rborg {args:?} failed ({}):\n{}",
        o.status,
        text(&o)
    );
    o
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
    assert!(
        o.status.success(),
        "borg {} {args:?} failed ({}):\n{}",
        peer.name,
        o.status,
        text(&o)
    );
    o
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("path without NUL")
}

fn mkfifo(p: &Path) {
    // SAFETY: a valid C string.
    let rc = unsafe { libc::mkfifo(cpath(p).as_ptr(), 0o640) };
    assert_eq!(rc, 0, "mkfifo {}", p.display());
}

fn mknod(p: &Path, kind: libc::mode_t, rdev: u64) {
    // SAFETY: a valid C string; we run as root.
    let rc = unsafe { libc::mknod(cpath(p).as_ptr(), kind | 0o640, rdev as libc::dev_t) };
    assert_eq!(
        rc,
        0,
        "mknod {} (the test must run as root): {}",
        p.display(),
        std::io::Error::last_os_error()
    );
}

fn run(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(o.status.success(), "{cmd:?} failed: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Feeds `data` once to the next reader of the fifo at `path`, from a thread: it waits (up to
/// a minute) for a reader to open the fifo, writes everything and closes it.
fn feed_fifo(path: &Path, data: Vec<u8>) -> JoinHandle<()> {
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut f = loop {
            // Non-blocking, so that the thread never hangs when no reader comes: the open fails
            // with ENXIO until one has the fifo open.
            match fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&path)
            {
                Ok(f) => break f,
                Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                    assert!(
                        Instant::now() < deadline,
                        "nobody opened {} for reading",
                        path.display()
                    );
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("open {}: {e}", path.display()),
            }
        };
        // Blocking writes from here on.
        // SAFETY: fcntl on our own open descriptor.
        unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETFL, 0) };
        f.write_all(&data).expect("write to the fifo");
    })
}

/// A loop device over an image file, detached on drop.
struct LoopDevice {
    dev: PathBuf,
}

impl LoopDevice {
    fn attach(image: &Path) -> LoopDevice {
        let dev = run(Command::new("losetup")
            .args(["-f", "--show"])
            .arg(image)
            .stdin(Stdio::null()));
        assert!(dev.starts_with("/dev/loop"), "losetup said {dev:?}");
        LoopDevice { dev: dev.into() }
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}

/// Mounts made by a test, unmounted (lazily, innermost first) on drop.
#[derive(Default)]
struct Mounts {
    targets: Vec<PathBuf>,
}

impl Mounts {
    fn mount(&mut self, args: &[&str], source: &Path, target: &Path) {
        run(Command::new("mount").args(args).arg(source).arg(target));
        self.targets.push(target.to_path_buf());
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        for t in self.targets.iter().rev() {
            let _ = Command::new("umount").arg("-l").arg(t).status();
        }
    }
}

/// `borg list --json-lines` of an archive with every field two backups of one tree share.
fn list_json(peer: &Peer, scratch: &Scratch, archive: &str) -> Vec<Value> {
    let o = borg_in(
        peer,
        scratch,
        &[
            "list",
            "--json-lines",
            "--format",
            "{type}{mode}{uid}{gid}{user}{group}{path}{source}{linktarget}{flags}{size}\
             {num_chunks}{unique_chunks}{mtime}{ctime}{isomtime}{health}{sha256}",
            archive,
        ],
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

/// The items of an archive as `borg debug dump-archive` shows them: every key borg stored,
/// chunk lists as (id, size, csize).
fn dump_items(peer: &Peer, scratch: &Scratch, archive: &str) -> Vec<Value> {
    let o = borg_in(peer, scratch, &["debug", "dump-archive", archive, "-"]);
    let v: Value = serde_json::from_slice(&o.stdout).expect("dump-archive json");
    v["_items"].as_array().expect("_items").clone()
}

/// `--list` lines from a create run's log output.
fn list_lines(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter(|l| l.len() > 2 && l.as_bytes()[1] == b' ')
        .filter(|l| "AMUCEdhsfcbx-i?".contains(&l[..1]))
        .map(str::to_string)
        .collect()
}

/// Drops the time keys of the items at `paths` (fifos: their writer moves mtime and ctime
/// between the two runs).
fn without_times(items: &[Value], paths: &[&str]) -> Vec<Value> {
    items
        .iter()
        .map(|i| {
            let mut i = i.clone();
            if paths.iter().any(|p| i["path"] == *p) {
                let o = i.as_object_mut().expect("item object");
                for k in ["mtime", "ctime", "atime", "isomtime"] {
                    o.remove(k);
                }
            }
            i
        })
        .collect()
}

fn path_of(i: &Value) -> &str {
    i["path"].as_str().unwrap_or("?")
}

/// Requires the same item list in two archives of one repository, item by item.
fn assert_same_items(
    peer: &Peer,
    scratch: &Scratch,
    borg_archive: &str,
    rborg_archive: &str,
    volatile: &[&str],
) -> Vec<Value> {
    let lb = without_times(&list_json(peer, scratch, borg_archive), volatile);
    let lr = without_times(&list_json(peer, scratch, rborg_archive), volatile);
    let paths = |l: &[Value]| l.iter().map(|i| path_of(i).to_string()).collect::<Vec<_>>();
    assert_eq!(
        paths(&lr),
        paths(&lb),
        "borg {}: item paths differ (left rborg, right borg)",
        peer.name
    );
    for (r, b) in lr.iter().zip(&lb) {
        assert_eq!(
            r,
            b,
            "borg {}: `borg list` of {} differs",
            peer.name,
            path_of(b)
        );
    }
    let db = without_times(&dump_items(peer, scratch, borg_archive), volatile);
    let dr = without_times(&dump_items(peer, scratch, rborg_archive), volatile);
    assert_eq!(dr.len(), db.len());
    for (r, b) in dr.iter().zip(&db) {
        assert_eq!(
            r,
            b,
            "borg {}: stored item {} differs (left rborg, right borg)",
            peer.name,
            path_of(b)
        );
    }
    lb
}

fn check_clean(peer: &Peer, scratch: &Scratch, repo: &str) {
    borg_in(peer, scratch, &["check", "--verify-data", repo]);
}

fn find<'a>(items: &'a [Value], path: &str) -> Option<&'a Value> {
    items.iter().find(|i| i["path"] == path)
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

// --- --read-special ------------------------------------------------------------------------

/// `chunking`: the chunker options (buzhash, or the fixed chunker with `--sparse`, which must
/// read specials whole: they cannot seek to holes).
fn read_special(peer: Peer, chunking: &[&str]) {
    let scratch = Scratch::new();
    let src = scratch.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("plain"), pseudo_random(50_000, 1)).unwrap();
    symlink("plain", src.join("link-to-plain")).unwrap();
    // Not with the fixed chunker, where borg (1.2.4 and 1.4.5) cannot read fifos and
    // /dev/null: its `dread` calls posix_fadvise, which fails on a pipe ("read: [Errno 29]
    // Illegal seek", the fifo is not archived), and with --sparse its `sparsemap` loops forever
    // on /dev/null (whose lseek answers 0 to SEEK_DATA and SEEK_HOLE alike). rborg reads both
    // (`fixed_chunker_reads_fifos_and_dev_null`).
    let fixed = chunking.iter().any(|c| c.starts_with("fixed"));
    // A fifo, and a symlink to a fifo outside the tree; each run reads each once.
    let outside_fifo = scratch.path("outside-fifo");
    if !fixed {
        mkfifo(&src.join("fifo"));
        mkfifo(&outside_fifo);
        symlink("../outside-fifo", src.join("fifolink")).unwrap();
    }
    let fifo_data = pseudo_random(300_000, 7);
    let fifo2_data = pseudo_random(70_000, 8);
    // A char device (like /dev/null: empty) and a symlink to it.
    if !fixed {
        mknod(&src.join("null"), libc::S_IFCHR, libc::makedev(1, 3));
        symlink("null", src.join("nulllink")).unwrap();
    }
    // A block device with content: a node for a loop device over an image, and an absolute
    // symlink to the loop device itself (outside the tree).
    let image = scratch.path("disk.img");
    // 512 KiB of data, a 512 KiB hole (zeros on the device), 512 KiB of data.
    let mut disk = pseudo_random(3 << 19, 9);
    disk[1 << 19..1 << 20].fill(0);
    {
        let mut f = fs::File::create(&image).unwrap();
        f.write_all(&disk[..1 << 19]).unwrap();
        f.seek(SeekFrom::Start(1 << 20)).unwrap();
        f.write_all(&disk[1 << 20..]).unwrap();
    }
    let lo = LoopDevice::attach(&image);
    let lo_meta = fs::metadata(&lo.dev).unwrap();
    assert!(lo_meta.file_type().is_block_device());
    mknod(&src.join("blockdev"), libc::S_IFBLK, lo_meta.rdev());
    symlink(&lo.dev, src.join("blklink")).unwrap();
    // A symlink to a special file that does not exist stays a symlink.
    symlink("gone-fifo", src.join("dangling")).unwrap();

    let repo = scratch.path("repo");
    let repo = repo.to_str().unwrap();
    borg_in(&peer, &scratch, &["init", "-e", "repokey-blake2", repo]);
    let create = |tool: &str, archive: &str| {
        let a = format!("{repo}::{archive}");
        let mut args = vec!["create", "--list", "--read-special", "-C", "lz4"];
        args.extend_from_slice(chunking);
        args.push(&a);
        args.push("src");
        // Each fifo is opened once per run, so one feed each.
        let feeds = if fixed {
            vec![]
        } else {
            vec![
                feed_fifo(&src.join("fifo"), fifo_data.clone()),
                feed_fifo(&outside_fifo, fifo2_data.clone()),
            ]
        };
        let o = if tool == "borg" {
            borg_in(&peer, &scratch, &args)
        } else {
            rborg_ok(&scratch, &args)
        };
        for f in feeds {
            f.join().expect("fifo writer");
        }
        list_lines(&o)
    };
    let borg_lines = create("borg", "b");
    let rborg_lines = create("rborg", "r");
    assert_eq!(
        rborg_lines, borg_lines,
        "borg {}: --list lines differ (left rborg)",
        peer.name
    );
    let volatile = ["src/fifo", "src/fifolink"];
    let items = assert_same_items(
        &peer,
        &scratch,
        &format!("{repo}::b"),
        &format!("{repo}::r"),
        &volatile,
    );
    // What --read-special means: specials and symlinks to them become regular files with the
    // content read from them; other symlinks stay.
    let expect = [
        ("src/fifo", "-", sha256_hex(&fifo_data), fifo_data.len()),
        (
            "src/fifolink",
            "-",
            sha256_hex(&fifo2_data),
            fifo2_data.len(),
        ),
        ("src/null", "-", sha256_hex(b""), 0),
        ("src/nulllink", "-", sha256_hex(b""), 0),
        ("src/blockdev", "-", sha256_hex(&disk), disk.len()),
        ("src/blklink", "-", sha256_hex(&disk), disk.len()),
    ];
    for (path, kind, sha, size) in expect {
        if fixed && (path.starts_with("src/null") || path.starts_with("src/fifo")) {
            continue;
        }
        let i = find(&items, path).unwrap_or_else(|| panic!("{path} not archived"));
        assert_eq!(i["type"], kind, "{path}: {i}");
        assert_eq!(i["sha256"], sha.as_str(), "{path}: content");
        assert_eq!(i["size"], size as u64, "{path}: {i}");
    }
    for path in ["src/link-to-plain", "src/dangling"] {
        assert_eq!(find(&items, path).expect(path)["type"], "l");
    }
    check_clean(&peer, &scratch, repo);
    drop(lo);
}

#[test]
fn read_special_borg12() {
    read_special(borg12(), &["--chunker-params", CHUNKER]);
}

#[test]
fn read_special_borg14() {
    read_special(borg14(), &["--chunker-params", CHUNKER]);
}

/// Where borg fails, rborg reads: `--read-special` with the fixed chunker on a fifo (borg's
/// posix_fadvise fails on a pipe) and with `--sparse` on a char device like /dev/null (borg's
/// `sparsemap` never gets past offset 0 there). rborg's archive holds them as regular files
/// with the content read, which borg lists and checks.
#[test]
fn fixed_chunker_reads_fifos_and_dev_null() {
    let peer = borg14();
    let scratch = Scratch::new();
    let src = scratch.path("src");
    fs::create_dir_all(&src).unwrap();
    mknod(&src.join("null"), libc::S_IFCHR, libc::makedev(1, 3));
    symlink("null", src.join("nulllink")).unwrap();
    mkfifo(&src.join("fifo"));
    let data = pseudo_random(100_000, 4);
    let repo = scratch.path("repo");
    let repo = repo.to_str().unwrap();
    borg_in(&peer, &scratch, &["init", "-e", "repokey", repo]);
    let a = format!("{repo}::r");
    let feed = feed_fifo(&src.join("fifo"), data.clone());
    rborg_ok(
        &scratch,
        &[
            "create",
            "--read-special",
            "--sparse",
            "--chunker-params",
            "fixed,4096",
            &a,
            "src",
        ],
    );
    feed.join().expect("fifo writer");
    let items = list_json(&peer, &scratch, &a);
    for (path, content) in [
        ("src/null", &b""[..]),
        ("src/nulllink", &b""[..]),
        ("src/fifo", &data[..]),
    ] {
        let i = find(&items, path).unwrap_or_else(|| panic!("{path} not archived"));
        assert_eq!(i["type"], "-", "{path}: {i}");
        assert_eq!(i["size"], content.len() as u64, "{path}: {i}");
        assert_eq!(i["sha256"], sha256_hex(content).as_str(), "{path}: {i}");
    }
    check_clean(&peer, &scratch, repo);
}

#[test]
fn read_special_fixed_sparse_borg12() {
    read_special(borg12(), &["--chunker-params", "fixed,65536", "--sparse"]);
}

/// With a header size, `--sparse` is left out: on a block device (where SEEK_HOLE fails with
/// EINVAL here) borg's `ChunkerFixed` falls back from the sparse map without seeking back from
/// the header, so its archive lacks the device's first `header_size` bytes and every block
/// is shifted (borg 1.2.4 and 1.4.5 alike). rborg reads specials whole, as borg does without
/// `--sparse`, which this compares.
#[test]
fn read_special_fixed_header_borg14() {
    read_special(borg14(), &["--chunker-params", "fixed,65536,512"]);
}

/// Runs the same `create` with borg (archive `b`) and rborg (archive `r`) into a fresh
/// repository, requires the same `--list` lines and the same items, and returns the items and
/// the repository path.
fn create_both(peer: &Peer, scratch: &Scratch, options: &[&str]) -> (Vec<Value>, String) {
    let repo = scratch.path("repo").to_str().unwrap().to_string();
    borg_in(peer, scratch, &["init", "-e", "repokey", &repo]);
    let run_one = |archive: &str, borg: bool| {
        let a = format!("{repo}::{archive}");
        let mut args = vec!["create", "--list"];
        args.extend_from_slice(options);
        args.push(&a);
        args.push("src");
        let o = if borg {
            borg_in(peer, scratch, &args)
        } else {
            rborg_ok(scratch, &args)
        };
        list_lines(&o)
    };
    let theirs = run_one("b", true);
    let ours = run_one("r", false);
    assert_eq!(
        ours, theirs,
        "borg {}: --list lines differ (left rborg)",
        peer.name
    );
    let items = assert_same_items(
        peer,
        scratch,
        &format!("{repo}::b"),
        &format!("{repo}::r"),
        &[],
    );
    (items, repo)
}

// --- --one-file-system ---------------------------------------------------------------------

fn one_file_system(peer: Peer) {
    let scratch = Scratch::new();
    let src = scratch.path("src");
    for d in [
        "src/mnt",
        "src/bind",
        "src/deeper/mnt2",
        "outside/sub",
        "tmpfs-src",
    ] {
        fs::create_dir_all(scratch.path(d)).unwrap();
    }
    fs::write(src.join("top"), b"on the source file system").unwrap();
    fs::write(src.join("fmount"), b"shadowed by a file mount").unwrap();
    fs::write(
        scratch.path("outside/sub/same-fs"),
        b"bind-mounted, same fs",
    )
    .unwrap();
    let mut mounts = Mounts::default();
    // A tmpfs on src/mnt with content: another file system (only the mount point is kept).
    mounts.mount(
        &["-t", "tmpfs", "-o", "size=4m,mode=0750"],
        Path::new("rborg-test"),
        &src.join("mnt"),
    );
    fs::create_dir_all(src.join("mnt/inner")).unwrap();
    fs::write(src.join("mnt/inner/file"), b"on tmpfs").unwrap();
    fs::write(src.join("mnt/file"), b"on tmpfs too").unwrap();
    // A bind mount of a directory of the same file system: same st_dev, so it is walked.
    mounts.mount(&["--bind"], &scratch.path("outside"), &src.join("bind"));
    // A tmpfs bind-mounted deeper down, and a file from a tmpfs bind-mounted over a file: a
    // non-directory of another file system is still archived (only directories stop).
    mounts.mount(
        &["-t", "tmpfs", "-o", "size=4m"],
        Path::new("rborg-test"),
        &scratch.path("tmpfs-src"),
    );
    fs::create_dir_all(scratch.path("tmpfs-src/d")).unwrap();
    fs::write(scratch.path("tmpfs-src/d/x"), b"deep tmpfs").unwrap();
    fs::write(scratch.path("tmpfs-src/f"), b"a file from tmpfs").unwrap();
    mounts.mount(
        &["--bind"],
        &scratch.path("tmpfs-src/d"),
        &src.join("deeper/mnt2"),
    );
    mounts.mount(
        &["--bind"],
        &scratch.path("tmpfs-src/f"),
        &src.join("fmount"),
    );
    let dev = |p: &str| fs::symlink_metadata(scratch.path(p)).unwrap().dev();
    assert_ne!(dev("src"), dev("src/mnt"), "the tmpfs is not mounted");
    assert_ne!(dev("src"), dev("src/fmount"), "the file mount is not there");
    assert_eq!(dev("src"), dev("src/bind"));

    let (items, repo) = create_both(
        &peer,
        &scratch,
        &["--one-file-system", "--chunker-params", CHUNKER],
    );
    let paths: Vec<&str> = items.iter().map(path_of).collect();
    for p in [
        "src/top",
        "src/mnt",
        "src/bind/sub/same-fs",
        "src/deeper/mnt2",
        "src/fmount",
    ] {
        assert!(
            paths.contains(&p),
            "borg {}: {p} missing: {paths:?}",
            peer.name
        );
    }
    for p in ["src/mnt/file", "src/mnt/inner", "src/deeper/mnt2/x"] {
        assert!(
            !paths.contains(&p),
            "borg {}: {p} archived: {paths:?}",
            peer.name
        );
    }
    // The mount point is archived as the root of the mounted file system (its mode).
    assert_eq!(find(&items, "src/mnt").unwrap()["mode"], "drwxr-x---");
    assert_eq!(
        find(&items, "src/fmount").unwrap()["sha256"],
        sha256_hex(b"a file from tmpfs").as_str()
    );
    check_clean(&peer, &scratch, &repo);
    drop(mounts);
}

#[test]
fn one_file_system_borg12() {
    one_file_system(borg12());
}

#[test]
fn one_file_system_borg14() {
    one_file_system(borg14());
}

// --- --exclude-caches, --exclude-if-present, --keep-exclude-tags ---------------------------

const CACHEDIR_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";

fn exclude_tags(peer: Peer, keep: bool) {
    let scratch = Scratch::new();
    let src = scratch.path("src");
    let dir = |d: &str| {
        let p = src.join(d);
        fs::create_dir_all(&p).unwrap();
        fs::write(p.join("content"), format!("content of {d}")).unwrap();
        p
    };
    let tag = |d: &Path, data: &[u8]| fs::write(d.join("CACHEDIR.TAG"), data).unwrap();
    let mut right = CACHEDIR_SIGNATURE.to_vec();
    right.extend_from_slice(b"\n# This file is a cache directory tag.\n");
    // the signature and a proper tag file: excluded
    tag(&dir("cache-right"), &right);
    // exactly the signature, nothing after it: excluded (only its first 43 bytes count)
    tag(&dir("cache-exact"), CACHEDIR_SIGNATURE);
    // a wrong signature: kept
    tag(
        &dir("cache-wrong"),
        b"Signature: 00000000000000000000000000000000\n",
    );
    // the signature cut short: kept
    tag(&dir("cache-short"), &CACHEDIR_SIGNATURE[..30]);
    // lowercase name: not a tag
    fs::write(dir("cache-lower").join("cachedir.tag"), &right).unwrap();
    // a symlink to a good tag: followed, excluded
    symlink(
        "../cache-right/CACHEDIR.TAG",
        dir("cache-symlink").join("CACHEDIR.TAG"),
    )
    .unwrap();
    // a dangling symlink and a directory named CACHEDIR.TAG: kept
    symlink("nowhere", dir("cache-dangling").join("CACHEDIR.TAG")).unwrap();
    fs::create_dir(dir("cache-dirtag").join("CACHEDIR.TAG")).unwrap();
    // --exclude-if-present: an empty file, a directory with content, a dangling symlink
    fs::write(dir("tagged-file").join(".nobackup"), b"").unwrap();
    let d = dir("tagged-dir").join(".nobackup");
    fs::create_dir_all(d.join("sub")).unwrap();
    fs::write(d.join("sub/inside"), b"inside the tag directory").unwrap();
    symlink("nowhere", dir("tagged-dangling").join(".nobackup")).unwrap();
    // both kinds of tags and the second name in one directory
    let both = dir("both");
    tag(&both, &right);
    fs::write(both.join(".nobackup"), b"x").unwrap();
    fs::write(both.join(".other"), b"y").unwrap();
    // a tagged directory below a tagged one, and one below an excluded-but-walked directory
    tag(&dir("cache-right/nested"), &right);
    let ex = dir("excluded");
    fs::write(dir("excluded/tagged").join(".nobackup"), b"").unwrap();
    fs::write(dir("excluded/keep").join("more"), b"more").unwrap();
    drop(ex);
    // a tag at the top: the root itself stays a directory item
    fs::write(src.join("plain"), pseudo_random(20_000, 3)).unwrap();

    let mut options = vec![
        "--exclude-caches",
        "--exclude-if-present",
        ".nobackup",
        "--exclude-if-present",
        ".other",
        // `=`: a separate `-src/...` would look like an option to borg's argparse
        "--pattern=+src/excluded/keep",
        "--pattern=-src/excluded",
        "--chunker-params",
        CHUNKER,
    ];
    if keep {
        options.push("--keep-exclude-tags");
    }
    let (items, repo) = create_both(&peer, &scratch, &options);
    let paths: Vec<&str> = items.iter().map(path_of).collect();
    let has = |p: &str| paths.contains(&p);
    for d in [
        "cache-wrong",
        "cache-short",
        "cache-lower",
        "cache-dangling",
        "cache-dirtag",
        "tagged-dangling",
    ] {
        assert!(
            has(&format!("src/{d}/content")),
            "{d} lost its content: {paths:?}"
        );
    }
    for d in [
        "cache-right",
        "cache-exact",
        "cache-symlink",
        "tagged-file",
        "tagged-dir",
        "both",
    ] {
        assert!(
            !has(&format!("src/{d}/content")),
            "{d} not excluded: {paths:?}"
        );
        assert_eq!(has(&format!("src/{d}")), keep, "{d}: {paths:?}");
    }
    assert!(!has("src/cache-right/nested"));
    assert!(!has("src/excluded"));
    assert!(!has("src/excluded/tagged"));
    assert!(has("src/excluded/keep/more"));
    if keep {
        for p in [
            "src/cache-right/CACHEDIR.TAG",
            "src/cache-exact/CACHEDIR.TAG",
            "src/both/CACHEDIR.TAG",
            "src/both/.nobackup",
            "src/both/.other",
            "src/tagged-file/.nobackup",
            "src/tagged-dir/.nobackup/sub/inside",
        ] {
            assert!(has(p), "{p} not kept: {paths:?}");
        }
        assert_eq!(
            find(&items, "src/cache-symlink/CACHEDIR.TAG").unwrap()["type"],
            "l"
        );
    } else {
        assert!(!paths
            .iter()
            .any(|p| p.ends_with("/CACHEDIR.TAG") && p.contains("right")));
    }
    check_clean(&peer, &scratch, &repo);
}

#[test]
fn exclude_tags_borg12() {
    exclude_tags(borg12(), false);
}

#[test]
fn exclude_tags_keep_borg12() {
    exclude_tags(borg12(), true);
}

#[test]
fn exclude_tags_borg14() {
    exclude_tags(borg14(), false);
}

#[test]
fn exclude_tags_keep_borg14() {
    exclude_tags(borg14(), true);
}

// --- fixed chunker and --sparse --------------------------------------------------------------

const BLOCK: u64 = 4 << 20;
const HOLE: u64 = 2 * BLOCK;
const TAIL_DATA: usize = 5000;

/// A file with a hole of two blocks, a block of data, 5000 bytes of data and a hole of two
/// blocks and a bit to its end (the end of a file cannot be data-less on every file system,
/// borg's test ends it with a truncate as here).
fn make_sparse(path: &Path) -> Vec<u8> {
    let data = pseudo_random(BLOCK as usize + TAIL_DATA, 21);
    let mut f = fs::File::create(path).unwrap();
    f.seek(SeekFrom::Start(HOLE)).unwrap();
    f.write_all(&data).unwrap();
    let total = HOLE + data.len() as u64 + HOLE + 12345;
    f.set_len(total).unwrap();
    let mut content = vec![0u8; total as usize];
    content[HOLE as usize..HOLE as usize + data.len()].copy_from_slice(&data);
    content
}

/// The data and hole map of a file (`SEEK_DATA`/`SEEK_HOLE`), and its allocated bytes.
fn allocation(path: &Path) -> (Vec<(u64, u64, bool)>, u64) {
    let f = fs::File::open(path).unwrap();
    let size = f.metadata().unwrap().len() as i64;
    let fd = f.as_raw_fd();
    let mut map = Vec::new();
    let mut pos = 0i64;
    while pos < size {
        // SAFETY: lseek on our own descriptor.
        let data = unsafe { libc::lseek(fd, pos, libc::SEEK_DATA) };
        let data = if data < 0 { size } else { data };
        if data > pos {
            map.push((pos as u64, data as u64, false));
        }
        if data >= size {
            break;
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        map.push((data as u64, hole as u64, true));
        pos = hole;
    }
    (map, f.metadata().unwrap().blocks() * 512)
}

/// borg's `test_sparse_file` judgement: fewer blocks than the size, a hole at 0 and the first
/// data where the content starts.
fn assert_sparse(path: &Path, what: &str) {
    let f = fs::File::open(path).unwrap();
    let st = f.metadata().unwrap();
    assert!(
        st.blocks() * 512 < st.len(),
        "{what}: not sparse ({} blocks)",
        st.blocks()
    );
    let fd = f.as_raw_fd();
    // SAFETY: lseek on our own descriptor.
    unsafe {
        assert_eq!(
            libc::lseek(fd, 0, libc::SEEK_HOLE),
            0,
            "{what}: no hole at 0"
        );
        assert_eq!(
            libc::lseek(fd, 0, libc::SEEK_DATA),
            HOLE as i64,
            "{what}: data does not start after the first hole"
        );
    }
}

fn sparse(peer: Peer) {
    let scratch = Scratch::new();
    let src = scratch.path("src");
    fs::create_dir_all(&src).unwrap();
    let content = make_sparse(&src.join("sparse"));
    let (input_map, input_alloc) = allocation(&src.join("sparse"));
    assert!(
        input_alloc < BLOCK * 2,
        "this file system did not keep the holes ({input_alloc} bytes allocated)"
    );
    assert!(input_map.len() >= 3, "no holes seen: {input_map:?}");
    // A small all-zero file that is not sparse, and an ordinary one.
    fs::write(src.join("zeros"), vec![0u8; 10_000]).unwrap();
    fs::write(src.join("plain"), pseudo_random(100_000, 5)).unwrap();

    let repo = scratch.path("repo").to_str().unwrap().to_string();
    borg_in(&peer, &scratch, &["init", "-e", "repokey", &repo]);
    let fixed = "fixed,4194304";
    // Without and with --sparse on the create side: each pair must chunk alike (with
    // --sparse the holes are found by SEEK_HOLE and cut the blocks, without it they are read).
    for (suffix, extra) in [("plain", None), ("sparse", Some("--sparse"))] {
        for (name, borg) in [("b", true), ("r", false)] {
            let a = format!("{repo}::{name}-{suffix}");
            // No files cache: the second pair must read the file again, not reuse the first
            // pair's chunk list.
            let mut args = vec![
                "create",
                "--files-cache=disabled",
                "--chunker-params",
                fixed,
            ];
            args.extend(extra);
            args.push(&a);
            args.push("src");
            if borg {
                borg_in(&peer, &scratch, &args);
            } else {
                rborg_ok(&scratch, &args);
            }
        }
        let items = assert_same_items(
            &peer,
            &scratch,
            &format!("{repo}::b-{suffix}"),
            &format!("{repo}::r-{suffix}"),
            &[],
        );
        let f = find(&items, "src/sparse").expect("sparse file archived");
        assert_eq!(f["sha256"], sha256_hex(&content).as_str());
        // Read through: 6 blocks. Cut at the holes: the leading hole in 2 blocks, the data in
        // a block and the 8 KiB file system blocks around the 5000 bytes, then the trailing
        // hole in 3 pieces.
        let expect_chunks = if extra.is_some() { 7 } else { 6 };
        assert_eq!(f["num_chunks"], expect_chunks, "{suffix}: {f}");
    }
    check_clean(&peer, &scratch, &repo);

    // Extract --sparse both ways: borg extracts rborg's archives, rborg borg's.
    let mut results = Vec::new();
    for suffix in ["plain", "sparse"] {
        for (name, borg_extracts) in [("r", true), ("b", false)] {
            let out = scratch.path(&format!("x-{name}-{suffix}"));
            fs::create_dir_all(&out).unwrap();
            let a = format!("{repo}::{name}-{suffix}");
            let args = ["extract", "--sparse", a.as_str()];
            let o = if borg_extracts {
                Command::new(&peer.borg)
                    .args(args)
                    .envs(scratch.borg_env())
                    .current_dir(&out)
                    .output()
                    .unwrap()
            } else {
                Command::new(env!("CARGO_BIN_EXE_rborg"))
                    .args(args)
                    .envs(scratch.borg_env())
                    .current_dir(&out)
                    .output()
                    .unwrap()
            };
            assert!(o.status.success(), "extract {a}: {}", text(&o));
            let what = format!(
                "{} extract --sparse of {name}-{suffix}",
                if borg_extracts { "borg" } else { "rborg" }
            );
            let got = fs::read(out.join("src/sparse")).unwrap();
            assert!(got == content, "{what}: content differs");
            assert_sparse(&out.join("src/sparse"), &what);
            // borg writes all-zero chunks as holes, the rest as data: the 5000 bytes of data
            // take their whole chunk.
            let (map, alloc) = allocation(&out.join("src/sparse"));
            results.push((what, map, alloc));
            assert_eq!(fs::read(out.join("src/zeros")).unwrap(), vec![0u8; 10_000]);
            assert_eq!(
                fs::read(out.join("src/plain")).unwrap(),
                pseudo_random(100_000, 5)
            );
        }
    }
    // Same holes, same allocation, whichever tool extracted (per archive pair).
    for pair in results.chunks(2) {
        assert_eq!(
            (&pair[0].1, pair[0].2),
            (&pair[1].1, pair[1].2),
            "{} and {} allocate differently",
            pair[0].0,
            pair[1].0
        );
    }
    // Through blocks: the data block and the block with 5000 bytes are written whole.
    let (map, alloc) = (&results[0].1, results[0].2);
    assert_eq!(
        map.iter()
            .filter(|r| r.2)
            .map(|r| (r.0, r.1))
            .collect::<Vec<_>>(),
        vec![(HOLE, HOLE + 2 * BLOCK)],
        "{}",
        results[0].0
    );
    assert!(
        (2 * BLOCK..2 * BLOCK + (1 << 20)).contains(&alloc),
        "{alloc}"
    );
    // Cut at the holes: only the data and its last file system block are allocated.
    let (map, alloc) = (&results[2].1, results[2].2);
    assert_eq!(map, &input_map, "{}", results[2].0);
    assert_eq!(alloc, input_alloc, "{}", results[2].0);
}

#[test]
fn sparse_fixed_chunker_borg12() {
    sparse(borg12());
}

#[test]
fn sparse_fixed_chunker_borg14() {
    sparse(borg14());
}
