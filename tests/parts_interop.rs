//! `.borg_part_N` items (checkpoints in the middle of a file) against real borg 1.2.4 and 1.4.5.
//!
//! borg cuts a file into part items when its checkpoint interval passes while it chunks the
//! file (`ChunksProcessor.maybe_checkpoint`). To make borg's cuts deterministic, borg runs here
//! with a clock that ticks one second per reading in `borg.archive` (one reading per chunk), so
//! `--checkpoint-interval 3` cuts after every 4th chunk; rborg runs through the library with
//! `PartTrigger::EveryChunks(4)`, the same rule. Both archives of one source tree in one
//! repository must then hold the same items, byte for byte, part items included, with the same
//! statistics; borg must check, list and extract rborg's, and rborg borg's. A second test cuts
//! stdin by the real clock through the command line.

#[allow(dead_code)]
mod borg_python;
mod common;

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{borg, borg12, borg14, borg_ok, pseudo_random, Peer, Scratch, Sshd};
use rborg::archive::reader::{for_each_item, load_archive};
use rborg::archive::{ArchiveMetadata, Item};
use rborg::cache::FilesCacheMode;
use rborg::commands::create::{
    create, CreateOptions, CreateOutput, CreateResult, PartTrigger, StopFlags,
};
use rborg::commands::Session;
use rborg::crypto::passphrase::NoPrompt;
use rborg::fs::{MetadataOptions, WalkOptions};
use rborg::location::Location;
use rborg::manifest::Operation;
use rborg::repository::{AccessSettings, OpenOptions};
use rborg::rpc::ClientOptions;
use rborg::settings::Environment;
use rborg::transport::SshKind;

/// Small chunks, so a few hundred KiB are dozens of chunks.
const CHUNKER: &str = "buzhash,10,16,12,4095";

/// borg with a `time` in `borg.archive` whose `monotonic()` advances one second per call.
const FAKE_CLOCK_BORG: &str = r#"
import sys, time as real_time
import borg.archive

class TickingClock:
    def __init__(self):
        self.now = 0.0
    def monotonic(self):
        self.now += 1.0
        return self.now
    def __getattr__(self, name):
        return getattr(real_time, name)

borg.archive.time = TickingClock()
from borg.archiver import main
sys.argv = ['borg'] + sys.argv[1:]
main()
"#;

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn python_of(peer: &Peer) -> PathBuf {
    let label = format!(
        "borg {}",
        if peer.name == "1.2" { "1.2.4" } else { "1.4.5" }
    );
    borg_python::peers()
        .into_iter()
        .find(|(l, _)| *l == label)
        .map(|(_, p)| p)
        .expect("peer python")
}

/// Runs `borg args` with the ticking clock, in the scratch directory, feeding `stdin`.
fn fake_clock_borg(peer: &Peer, scratch: &Scratch, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(python_of(peer))
        .arg("-c")
        .arg(FAKE_CLOCK_BORG)
        .args(args)
        .envs(scratch.borg_env())
        .current_dir(scratch.dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start borg's python");
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let o = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(
        o.status.success(),
        "borg {args:?} (ticking clock): {}",
        text(&o)
    );
    o
}

fn rborg(scratch: &Scratch, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rborg"))
        .args(args)
        .envs(scratch.borg_env())
        .current_dir(scratch.dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("run rborg")
}

fn rborg_ok(scratch: &Scratch, args: &[&str]) -> Output {
    let o = rborg(scratch, args);
    assert!(o.status.success(), "rborg {args:?}: {}", text(&o));
    o
}

fn setxattr(path: &Path, name: &str, value: &[u8]) {
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    // SAFETY: valid C strings and buffer for the duration of the call.
    let r = unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(r, 0, "setxattr {}", std::io::Error::last_os_error());
}

/// A tree whose files are cut in several places: a large file with an xattr and a second
/// hard link (so its parts carry `hardlink_master`), a one-chunk file, a middle-sized one.
fn make_tree(src: &Path) {
    fs::create_dir_all(src.join("sub")).unwrap();
    let big = src.join("big");
    fs::write(&big, pseudo_random(300_000, 3)).unwrap();
    setxattr(&big, "user.note", b"only on the full item");
    fs::hard_link(&big, src.join("sub/link")).unwrap();
    fs::write(src.join("small"), b"one chunk").unwrap();
    fs::write(src.join("sub/mid"), pseudo_random(90_000, 7)).unwrap();
    fs::write(src.join("empty"), b"").unwrap();
}

fn session(scratch: &Scratch, repo: &str) -> (Session, Environment) {
    // The ssh settings a remote test put into the process environment, as the CLI reads them.
    let ssh = std::env::vars_os().filter(|(k, _)| k == "BORG_RSH" || k == "BORG_REMOTE_PATH");
    let env = Environment::from_pairs(scratch.borg_env().into_iter().chain(ssh));
    let access = AccessSettings::from_env(&env, None, None, SshKind::Process);
    let open = OpenOptions {
        exclusive: true,
        ..OpenOptions::default()
    };
    let s = Session::open(
        &Location::parse(repo, None).unwrap(),
        &access,
        &open,
        ClientOptions::default(),
        env.crypto_settings(),
        &mut NoPrompt,
        &[Operation::Write],
    )
    .expect("open session");
    (s, env)
}

struct Quiet;

impl CreateOutput for Quiet {
    fn status(&mut self, _status: char, _path: &[u8]) {}
    fn warning(&mut self, message: &str) {
        panic!("unexpected warning: {message}");
    }
}

/// `create` through the library with the deterministic part trigger.
fn rborg_create(
    scratch: &Scratch,
    repo: &str,
    name: &str,
    src: &Path,
    trigger: PartTrigger,
) -> CreateResult {
    let (mut s, env) = session(scratch, repo);
    let opts = CreateOptions {
        name: name.into(),
        paths: vec![src.as_os_str().as_bytes().to_vec()],
        stdin_name: "stdin".into(),
        compression: "lz4".parse().unwrap(),
        chunker_params: CHUNKER.parse().unwrap(),
        comment: String::new(),
        timestamp: None,
        // No checkpoints between files: only the cuts of the trigger.
        checkpoint_interval: Duration::ZERO,
        dry_run: false,
        walk: WalkOptions::default(),
        metadata: MetadataOptions::default(),
        files_cache_mode: FilesCacheMode::parse("ctime,size,inode").unwrap(),
        files_cache_ttl: 20,
        sparse: false,
        cmdline: vec!["rborg".into(), "create".into()],
        hostname: "host".into(),
        username: "user".into(),
        cwd: scratch.dir.path().to_string_lossy().into_owned(),
        threads: 2,
        part_trigger: trigger,
    };
    let r = create(&mut s, &env, opts, &StopFlags::default(), &mut Quiet).expect("create");
    s.close().unwrap();
    r
}

/// An archive's metadata and all its items (part items included), read by rborg.
fn archive_items(scratch: &Scratch, repo: &str, name: &str) -> (ArchiveMetadata, Vec<Item>) {
    let (mut s, _) = session(scratch, repo);
    let id = s.opened.manifest.archive(name).expect("archive").id;
    let key = &s.opened.key.key;
    let loaded = load_archive(s.repository.as_mut(), key, &id, false).unwrap();
    let mut items = Vec::new();
    for_each_item(
        s.repository.as_mut(),
        key,
        &loaded.metadata,
        true,
        &mut |i| {
            items.push(i);
            Ok(())
        },
    )
    .unwrap();
    s.close().unwrap();
    (loaded.metadata, items)
}

fn json_lines(o: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

const LIST_FORMAT: &str = "{mode}{user}{group}{uid}{gid}{path}{source}{size}{csize}{mtime}{ctime}{health}{num_chunks}{sha256}{type}";

/// `list --json-lines` by `prog` (borg or rborg) of `archive`, with or without part items.
fn list(run: &dyn Fn(&[&str]) -> Output, archive: &str, parts: bool) -> Vec<serde_json::Value> {
    let mut args = vec!["list", "--json-lines", "--format", LIST_FORMAT];
    if parts {
        args.push("--consider-part-files");
    }
    args.push(archive);
    json_lines(&run(&args))
}

fn paths(items: &[serde_json::Value]) -> Vec<String> {
    items
        .iter()
        .map(|i| i["path"].as_str().unwrap().to_string())
        .collect()
}

fn stats(m: &ArchiveMetadata) -> [Option<u64>; 6] {
    [
        m.size,
        m.csize,
        m.nfiles,
        m.size_parts,
        m.csize_parts,
        m.nfiles_parts,
    ]
}

fn same_tree(a: &Path, b: &Path) {
    for rel in ["big", "sub/link", "small", "sub/mid", "empty"] {
        assert_eq!(
            fs::read(a.join(rel)).unwrap(),
            fs::read(b.join(rel)).unwrap(),
            "{rel} differs"
        );
    }
}

fn parts_match_borg(peer: Peer, encryption: &str, over_ssh: bool) {
    let scratch = Scratch::new();
    let src = scratch.path("src");
    make_tree(&src);
    let src_arg = src.to_str().unwrap();
    let sshd = over_ssh.then(Sshd::start);
    let repo = match &sshd {
        Some(sshd) => {
            // Checkpoints mid-file commit while puts are still in flight over the RPC.
            let wrapper = scratch.serve_wrapper(&peer, "serve", "");
            std::env::set_var("BORG_RSH", sshd.rsh());
            std::env::set_var("BORG_REMOTE_PATH", wrapper.to_str().unwrap());
            sshd.url(&scratch.path("repo"))
        }
        None => scratch.path("repo").to_str().unwrap().to_string(),
    };
    let repo = repo.as_str();
    borg_ok(&peer, &scratch, &["init", "-e", encryption, repo]);
    // borg first, so that rborg's chunks all dedup against borg's and the two archives'
    // chunk lists (ids and stored sizes) can only be equal if the cuts and items are.
    fake_clock_borg(
        &peer,
        &scratch,
        &[
            "create",
            "--checkpoint-interval",
            "3",
            "--chunker-params",
            CHUNKER,
            "--compression",
            "lz4",
            &format!("{repo}::b"),
            src_arg,
        ],
        b"",
    );
    let result = rborg_create(&scratch, repo, "r", &src, PartTrigger::EveryChunks(4));
    let (bm, b_items) = archive_items(&scratch, repo, "b");
    let (rm, r_items) = archive_items(&scratch, repo, "r");
    let b_parts: Vec<&Item> = b_items.iter().filter(|i| i.part.is_some()).collect();
    assert!(
        b_parts.len() >= 10,
        "borg made only {} part items",
        b_parts.len()
    );
    // Byte for byte the same items: part items (names, numbers, chunks, the keys borg copies
    // and the ones it leaves out) and full items alike.
    assert_eq!(r_items.len(), b_items.len());
    for (r, b) in r_items.iter().zip(&b_items) {
        assert_eq!(
            rborg::msgpack::encode(&r.to_value()),
            rborg::msgpack::encode(&b.to_value()),
            "item {} differs:\nrborg {r:?}\nborg  {b:?}",
            String::from_utf8_lossy(&b.path)
        );
    }
    // The large file's parts (whichever of its two links came first is the master): the
    // stat keys and `hardlink_master` of the item as borg has it while chunking, no xattrs.
    let master = b_items
        .iter()
        .find(|i| i.part.is_none() && i.hardlink_master == Some(true))
        .expect("hardlink master");
    assert!(master.xattrs.is_some());
    let mut prefix = master.path.clone();
    prefix.extend_from_slice(b".borg_part_");
    let master_parts: Vec<&&Item> = b_parts
        .iter()
        .filter(|i| i.path.starts_with(&prefix))
        .collect();
    assert!(master_parts.len() >= 5, "{}", master_parts.len());
    assert!(master_parts.iter().all(|p| p.xattrs.is_none()));
    assert!(master_parts.iter().all(|p| p.hardlink_master == Some(true)));
    // The statistics borg writes: parts counted apart (1.2.4 also counts the item stream in
    // size/csize, which 1.4.2+ and rborg keep out).
    if peer.name == "1.4" {
        assert_eq!(stats(&rm), stats(&bm));
    } else {
        assert_eq!(stats(&rm)[2..], stats(&bm)[2..]);
    }
    assert_eq!(rm.nfiles_parts, Some(b_parts.len() as u64));
    assert_eq!(
        rm.size_parts,
        Some(b_parts.iter().map(|p| p.size.unwrap()).sum::<u64>())
    );
    assert_eq!(result.stats.nfiles_parts, b_parts.len() as u64);
    // Only the final archive stays; every checkpoint was dropped again.
    let names = borg_ok(
        &peer,
        &scratch,
        &["list", "--consider-checkpoints", "--short", repo],
    );
    let mut names: Vec<String> = String::from_utf8_lossy(&names.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    names.sort();
    assert_eq!(names, ["b", "r"]);
    let check = borg(&peer, &scratch, &["check", "--verify-data", repo]);
    assert!(check.status.success(), "borg check: {}", text(&check));
    let by_borg = |args: &[&str]| borg_ok(&peer, &scratch, args);
    let by_rborg = |args: &[&str]| rborg_ok(&scratch, args);
    let (ra, ba) = (format!("{repo}::r"), format!("{repo}::b"));
    // borg reads rborg's parts as its own; rborg reads borg's as borg does.
    assert_eq!(list(&by_borg, &ra, true), list(&by_borg, &ba, true));
    assert_eq!(list(&by_rborg, &ba, true), list(&by_borg, &ba, true));
    assert_eq!(list(&by_rborg, &ba, false), list(&by_borg, &ba, false));
    let hidden = paths(&list(&by_borg, &ra, false));
    assert!(
        hidden.iter().all(|p| !p.contains(".borg_part_")),
        "{hidden:?}"
    );
    let shown = paths(&list(&by_rborg, &ba, true));
    let master_path = String::from_utf8(master.path.clone()).unwrap();
    for n in 1..=5 {
        let want = format!("{master_path}.borg_part_{n}");
        assert!(shown.contains(&want), "{want} not in {shown:?}");
    }
    for (label, args) in [
        ("plain", vec!["info", "--json"]),
        ("parts", vec!["info", "--json", "--consider-part-files"]),
    ] {
        let mut a = args.clone();
        a.push(&ba);
        let theirs: serde_json::Value = serde_json::from_slice(&by_borg(&a).stdout).unwrap();
        let ours: serde_json::Value = serde_json::from_slice(&by_rborg(&a).stdout).unwrap();
        let (t, o) = (
            &theirs["archives"][0]["stats"],
            &ours["archives"][0]["stats"],
        );
        assert_eq!(o["nfiles"], t["nfiles"], "{label}: {o} vs {t}");
        assert_eq!(
            o["original_size"], t["original_size"],
            "{label}: {o} vs {t}"
        );
    }
    // Extracted, the final archives are the source (part items stay hidden).
    for (prog, archive) in [("borg", &ra), ("rborg", &ba)] {
        let dest = scratch.path(&format!("x-{prog}"));
        fs::create_dir_all(&dest).unwrap();
        let o = if prog == "borg" {
            Command::new(&peer.borg)
                .args(["extract", archive])
                .envs(scratch.borg_env())
                .current_dir(&dest)
                .output()
                .unwrap()
        } else {
            Command::new(env!("CARGO_BIN_EXE_rborg"))
                .args(["extract", archive])
                .envs(scratch.borg_env())
                .current_dir(&dest)
                .output()
                .unwrap()
        };
        assert!(o.status.success(), "{prog} extract: {}", text(&o));
        let root = dest.join(src_arg.trim_start_matches('/'));
        same_tree(&src, &root);
        let mut names: Vec<OsString> = fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["big", "empty", "small", "sub"], "{prog}");
    }
    // With `--consider-part-files` (a common option: before or after the command) both
    // extract the part files too; the master's parts concatenated are the file.
    let mut trees = Vec::new();
    for prog in ["borg", "rborg"] {
        let dest = scratch.path(&format!("p-{prog}"));
        fs::create_dir_all(&dest).unwrap();
        let (exe, args): (PathBuf, Vec<&str>) = if prog == "borg" {
            (
                peer.borg.clone(),
                vec!["extract", "--consider-part-files", &ba],
            )
        } else {
            (
                PathBuf::from(env!("CARGO_BIN_EXE_rborg")),
                vec!["--consider-part-files", "extract", &ba],
            )
        };
        let o = Command::new(exe)
            .args(&args)
            .envs(scratch.borg_env())
            .current_dir(&dest)
            .output()
            .unwrap();
        assert!(o.status.success(), "{prog} extract parts: {}", text(&o));
        trees.push(files_under(&dest));
    }
    assert_eq!(trees[0], trees[1]);
    let mut joined = Vec::new();
    for n in 1..=master_parts.len() {
        let name = format!("{master_path}.borg_part_{n}");
        joined.extend_from_slice(&trees[1][&name]);
    }
    assert!(joined == fs::read(src.join("big")).unwrap());
    let check = rborg(&scratch, &["check", "--consider-part-files", repo]);
    assert!(check.status.success(), "rborg check: {}", text(&check));
}

/// Every regular file under `dir`: relative path to content.
fn files_under(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.insert(rel, fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn parts_match_borg12_byte_for_byte_over_ssh() {
    parts_match_borg(borg12(), "repokey", true);
}

#[test]
fn parts_match_borg14_byte_for_byte() {
    parts_match_borg(borg14(), "authenticated-blake2", false);
}

/// The keys of an item as stored, without the times stdin items take from the clock.
fn keys_and_values(item: &Item) -> Vec<(String, Vec<u8>)> {
    let rborg::msgpack::Value::Map(m) = item.to_value() else {
        panic!("item is not a map")
    };
    m.into_iter()
        .map(|(k, v)| {
            let k = String::from_utf8_lossy(k.as_bytes().unwrap()).into_owned();
            let v = if k.ends_with("time") || k == "chunks" || k == "size" {
                vec![]
            } else {
                rborg::msgpack::encode(&v)
            };
            (k, v)
        })
        .collect()
}

/// stdin fed slowly, cut by the real clock through the command line: the parts are borg's
/// (names, keys, numbering, sizes adding up), borg checks and extracts the archive, and the
/// part items carry the same keys as those borg 1.4.5 writes for stdin.
#[test]
fn stdin_cut_by_the_clock_reads_back_in_borg() {
    let peer = borg14();
    let scratch = Scratch::new();
    let repo = scratch.path("repo");
    let repo = repo.to_str().unwrap();
    borg_ok(&peer, &scratch, &["init", "-e", "repokey", repo]);
    let data = pseudo_random(5 * 65536, 11);
    let mut child = Command::new(env!("CARGO_BIN_EXE_rborg"))
        .args([
            "create",
            "--checkpoint-interval",
            "1",
            "--chunker-params",
            CHUNKER,
            &format!("{repo}::s"),
            "-",
        ])
        .envs(scratch.borg_env())
        .current_dir(scratch.dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let feed = data.clone();
    let writer = std::thread::spawn(move || {
        for (i, block) in feed.chunks(65536).enumerate() {
            if i > 0 {
                std::thread::sleep(Duration::from_millis(1100));
            }
            input.write_all(block).unwrap();
            input.flush().unwrap();
        }
    });
    let o = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(o.status.success(), "rborg create: {}", text(&o));
    let by_borg = |args: &[&str]| borg_ok(&peer, &scratch, args);
    let archive = format!("{repo}::s");
    let all = list(&by_borg, &archive, true);
    let names = paths(&all);
    let k = names.len() - 1;
    // Four pauses of more than the interval: at least one cut, and a last part after it.
    assert!(k >= 2, "{names:?}");
    let want: Vec<String> = (1..=k)
        .map(|n| format!("stdin.borg_part_{n}"))
        .chain(["stdin".to_string()])
        .collect();
    assert_eq!(names, want);
    let part_sum: u64 = all[..k].iter().map(|i| i["size"].as_u64().unwrap()).sum();
    assert_eq!(part_sum, data.len() as u64);
    assert_eq!(all[k]["size"].as_u64(), Some(data.len() as u64));
    assert_eq!(paths(&list(&by_borg, &archive, false)), ["stdin"]);
    let check = borg(&peer, &scratch, &["check", "--verify-data", repo]);
    assert!(check.status.success(), "borg check: {}", text(&check));
    let out = by_borg(&["extract", "--stdout", &archive]);
    assert!(out.stdout == data, "extracted stdin differs");
    let info = by_borg(&["info", "--json", "--consider-part-files", &archive]);
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["archives"][0]["stats"]["nfiles"], 1 + k as u64);
    // borg 1.4.5 cutting the same stdin: part items with the same keys and values.
    fake_clock_borg(
        &peer,
        &scratch,
        &[
            "create",
            "--checkpoint-interval",
            "3",
            "--chunker-params",
            CHUNKER,
            &format!("{repo}::b"),
            "-",
        ],
        &data,
    );
    let (_, ours) = archive_items(&scratch, repo, "s");
    let (_, theirs) = archive_items(&scratch, repo, "b");
    let our_part = ours.iter().find(|i| i.part == Some(1)).unwrap();
    let their_part = theirs.iter().find(|i| i.part == Some(1)).unwrap();
    assert_eq!(keys_and_values(our_part), keys_and_values(their_part));
    let (our_full, their_full) = (ours.last().unwrap(), theirs.last().unwrap());
    assert_eq!(our_full.part, None);
    assert_eq!(our_full.chunks, their_full.chunks);
    assert_eq!(keys_and_values(our_full), keys_and_values(their_full));
}

/// Sets the SIGINT flag once `after` chunks have been stored (`progress` runs per chunk).
struct CtrlCAfter {
    stop: StopFlags,
    calls: u64,
    after: u64,
}

impl CreateOutput for CtrlCAfter {
    fn status(&mut self, _status: char, _path: &[u8]) {}
    fn warning(&mut self, message: &str) {
        panic!("unexpected warning: {message}");
    }
    fn progress(&mut self, _progress: &rborg::commands::create::Progress) {
        self.calls += 1;
        if self.calls == self.after {
            self.stop
                .sigint
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Ctrl-C in the middle of a file: the checkpoint written at the next chunk holds the file as
/// far as it was stored, as `<path>.borg_part_1`; borg checks it and extracts that part as a
/// prefix of the file with `--consider-part-files`, and shows nothing of it without.
#[test]
fn ctrl_c_inside_a_file_leaves_a_checkpoint_with_its_part() {
    let peer = borg14();
    let scratch = Scratch::new();
    let src = scratch.path("src");
    fs::create_dir_all(&src).unwrap();
    // Over 1 MiB: smaller files go through the cross-file pool whole and are checkpointed
    // only after they are stored.
    let data = pseudo_random(1_500_000, 5);
    fs::write(src.join("big"), &data).unwrap();
    let repo = scratch.path("repo");
    let repo = repo.to_str().unwrap();
    borg_ok(&peer, &scratch, &["init", "-e", "repokey", repo]);
    let (mut s, env) = session(&scratch, repo);
    let stop = StopFlags::default();
    let mut out = CtrlCAfter {
        stop: stop.clone(),
        calls: 0,
        after: 20,
    };
    let opts = CreateOptions {
        name: "cut".into(),
        paths: vec![src.as_os_str().as_bytes().to_vec()],
        stdin_name: "stdin".into(),
        compression: "lz4".parse().unwrap(),
        chunker_params: CHUNKER.parse().unwrap(),
        comment: String::new(),
        timestamp: None,
        checkpoint_interval: Duration::from_secs(1800),
        dry_run: false,
        walk: WalkOptions::default(),
        metadata: MetadataOptions::default(),
        files_cache_mode: FilesCacheMode::parse("ctime,size,inode").unwrap(),
        files_cache_ttl: 20,
        sparse: false,
        cmdline: vec!["rborg".into(), "create".into()],
        hostname: "host".into(),
        username: "user".into(),
        cwd: scratch.dir.path().to_string_lossy().into_owned(),
        threads: 2,
        part_trigger: PartTrigger::Interval,
    };
    let e = create(&mut s, &env, opts, &stop, &mut out).expect_err("stopped by Ctrl-C");
    assert_eq!(e.to_string(), "Got Ctrl-C / SIGINT.");
    s.close().unwrap();
    let names = borg_ok(
        &peer,
        &scratch,
        &["list", "--consider-checkpoints", "--short", repo],
    );
    assert_eq!(String::from_utf8_lossy(&names.stdout), "cut.checkpoint\n");
    let check = borg(&peer, &scratch, &["check", "--verify-data", repo]);
    assert!(check.status.success(), "borg check: {}", text(&check));
    let by_borg = |args: &[&str]| borg_ok(&peer, &scratch, args);
    let archive = format!("{repo}::cut.checkpoint");
    let prefix = src.to_str().unwrap().trim_start_matches('/');
    let shown = paths(&list(&by_borg, &archive, true));
    assert_eq!(shown.last().unwrap(), &format!("{prefix}/big.borg_part_1"));
    assert!(paths(&list(&by_borg, &archive, false))
        .iter()
        .all(|p| !p.contains("big")));
    let part = by_borg(&[
        "extract",
        "--stdout",
        "--consider-part-files",
        &archive,
        &format!("{prefix}/big.borg_part_1"),
    ]);
    assert!(part.stdout.len() >= 20 * 1024, "{}", part.stdout.len());
    assert!(part.stdout.len() < data.len());
    assert!(
        data.starts_with(&part.stdout),
        "the part is not a prefix of the file"
    );
}

/// The references rborg counts while it writes parts (one per part item entry and one per full
/// item entry) are what the items hold: deleting the archive with the index saved by that very
/// `create` leaves nothing but the manifest, and borg checks the repository clean throughout.
#[test]
fn deleting_an_archive_with_parts_frees_every_chunk() {
    let peer = borg14();
    let scratch = Scratch::new();
    let src = scratch.path("src");
    fs::create_dir_all(&src).unwrap();
    // Repeated content: the same chunk ids several times within one file and across parts.
    let block = pseudo_random(50_000, 9);
    let data: Vec<u8> = block.iter().cycle().take(200_000).copied().collect();
    fs::write(src.join("rep"), &data).unwrap();
    fs::write(src.join("other"), pseudo_random(60_000, 4)).unwrap();
    let repo = scratch.path("repo");
    let repo = repo.to_str().unwrap();
    borg_ok(&peer, &scratch, &["init", "-e", "repokey-blake2", repo]);
    let r = rborg_create(&scratch, repo, "r", &src, PartTrigger::EveryChunks(3));
    assert!(r.stats.nfiles_parts >= 4, "{:?}", r.stats);
    let check = borg(&peer, &scratch, &["check", "--verify-data", repo]);
    assert!(check.status.success(), "borg check: {}", text(&check));
    // `delete --stats --consider-part-files` by borg (on a copy) and by rborg: the same
    // numbers, part references counted.
    let copy = scratch.path("copy");
    let cp = Command::new("cp")
        .args(["-a", repo, copy.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(cp.success());
    let args = |r: &str| {
        vec![
            "delete".to_string(),
            "--stats".to_string(),
            "--consider-part-files".to_string(),
            format!("{r}::r"),
        ]
    };
    let deleted = |o: &Output| {
        String::from_utf8_lossy(&o.stderr)
            .lines()
            .filter(|l| l.starts_with("Deleted data:") || l.starts_with("All archives:"))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
    };
    // The copy has the same repository id: borg gets a base directory (security and cache
    // directories) of its own for it.
    let theirs = Command::new(&peer.borg)
        .args(args(copy.to_str().unwrap()))
        .envs(scratch.borg_env())
        .env("BORG_BASE_DIR", scratch.path("base-copy"))
        .output()
        .unwrap();
    assert!(theirs.status.success(), "borg delete: {}", text(&theirs));
    let ours_args = args(repo);
    let ours = rborg_ok(
        &scratch,
        &ours_args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert_eq!(deleted(&ours), deleted(&theirs));
    assert_eq!(deleted(&ours).len(), 2, "{}", text(&ours));
    let check = borg(&peer, &scratch, &["check", repo]);
    assert!(check.status.success(), "borg check: {}", text(&check));
    let (mut s, _) = session(&scratch, repo);
    assert_eq!(s.repository.object_count().unwrap(), 1, "only the manifest");
    s.close().unwrap();
}
