//! `rborg list` prints what borg 1.2.4 and 1.4.5 print, byte for byte: `--format` with every
//! item key (all content checksums included), `--format` with every archive key, and
//! `--json-lines` objects with borg's key order and `json.dumps` spelling.

mod common;

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{borg12, borg14, borg_init, Peer, Scratch};

fn run(program: &Path, scratch: &Scratch, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .envs(scratch.borg_env())
        .env("TZ", "Europe/Berlin")
        .current_dir(scratch.dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{} {args:?} failed:\n{}",
        program.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn rborg(scratch: &Scratch, args: &[&str]) -> Output {
    run(Path::new(env!("CARGO_BIN_EXE_rborg")), scratch, args)
}

/// Files of every kind `list` shows differently, with names JSON has to escape.
fn make_tree(root: &Path) {
    let t = root.join("t");
    std::fs::create_dir_all(t.join("dir/ünï")).expect("dirs");
    std::fs::write(t.join("a.txt"), b"hello\n").expect("file");
    std::fs::write(t.join("empty"), b"").expect("file");
    let mut big = Vec::with_capacity(3 << 19);
    let mut x: u32 = 7;
    for _ in 0..(3 << 19) {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        big.push((x >> 16) as u8);
    }
    std::fs::write(t.join("dir/big.bin"), &big).expect("big");
    std::os::unix::fs::symlink("a.txt", t.join("link")).expect("symlink");
    std::fs::hard_link(t.join("a.txt"), t.join("dir/hard")).expect("hardlink");
    std::fs::write(t.join("dir/ünï/ö 😀.txt"), b"umlaut").expect("unicode");
    std::fs::write(t.join("quote\"back\\slash"), b"q").expect("quotes");
    let raw = std::ffi::OsStr::from_bytes(b"raw-\xff-name");
    std::fs::write(t.join(raw), b"x").expect("non-utf8 name");
}

/// Every item key borg 1.2 and 1.4 know (`ItemFormatter.available_keys`).
const ITEM_KEYS: &[&str] = &[
    "type",
    "mode",
    "uid",
    "gid",
    "user",
    "group",
    "path",
    "bpath",
    "source",
    "linktarget",
    "flags",
    "size",
    "csize",
    "dsize",
    "dcsize",
    "num_chunks",
    "unique_chunks",
    "mtime",
    "ctime",
    "atime",
    "isomtime",
    "isoctime",
    "isoatime",
    "blake2b",
    "blake2s",
    "md5",
    "sha1",
    "sha224",
    "sha256",
    "sha384",
    "sha3_224",
    "sha3_256",
    "sha3_384",
    "sha3_512",
    "sha512",
    "xxh64",
    "archiveid",
    "archivename",
    "extra",
    "health",
];

/// Every archive key of borg 1.4 (`ArchiveFormatter.available_keys`).
const ARCHIVE_KEYS: &[&str] = &[
    "archive",
    "name",
    "barchive",
    "comment",
    "bcomment",
    "id",
    "tam",
    "start",
    "time",
    "end",
    "command_line",
    "hostname",
    "username",
];

fn template(keys: &[&str]) -> String {
    let mut t: String = keys.iter().map(|k| format!("{{{k}}}|")).collect();
    t.push_str("{NL}");
    t
}

/// borg adds a `--json-lines` object's computed keys in a Python set's order, which changes
/// from run to run; rborg uses the format's order. Puts borg's computed keys (everything after
/// `"flags": N`) into `order` so the bytes can be compared.
fn computed_keys_in_order(line: &str, order: &[&str]) -> String {
    let Some(start) = line.find("\"flags\": ") else {
        return line.to_string();
    };
    let after_flags = start + line[start..].find(", ").unwrap_or(line.len() - start - 1);
    let (head, tail) = line.split_at(after_flags);
    let tail = tail.trim_end_matches('}');
    let mut entries: Vec<&str> = tail.split(", ").filter(|e| !e.is_empty()).collect();
    entries.sort_by_key(|e| {
        order
            .iter()
            .position(|k| e.starts_with(&format!("\"{k}\": ")))
            .unwrap_or(usize::MAX)
    });
    let mut out = head.to_string();
    for e in entries {
        out.push_str(", ");
        out.push_str(e);
    }
    out.push('}');
    out
}

fn check_peer(peer: &Peer, scratch: &Scratch, archives: &[&str]) {
    let item_format = template(ITEM_KEYS);
    for archive in archives {
        let loc = format!("repo::{archive}");
        // Text: every item key, byte for byte.
        let args = ["list", "--format", &item_format, &loc];
        let theirs = run(&peer.borg, scratch, &args).stdout;
        let ours = rborg(scratch, &args).stdout;
        assert!(theirs.len() > 1000, "borg {} listed too little", peer.name);
        assert_eq!(
            String::from_utf8_lossy(&theirs),
            String::from_utf8_lossy(&ours),
            "list --format <all item keys> {loc}, borg {}",
            peer.name
        );

        // Time keys hand their format spec to strftime (`OutputTimestamp.__format__`).
        let times = "{mtime:%Y-%m-%d %H:%M:%S.%f} {ctime:<9} {atime:%j %a %p %%}|{path}{NL}";
        let args = ["list", "--format", times, &loc];
        assert_eq!(
            String::from_utf8_lossy(&run(&peer.borg, scratch, &args).stdout),
            String::from_utf8_lossy(&rborg(scratch, &args).stdout),
            "list --format {times:?}, borg {}",
            peer.name
        );

        // Python's format-spec mini-language on text and numbers.
        let specs = "{size:>12,} {size:08} {num_chunks:+} {uid:#x} {gid:_b} {path:.5}|{mode:*^14}|{user:>8.3}{NL}";
        let args = ["list", "--format", specs, &loc];
        assert_eq!(
            String::from_utf8_lossy(&run(&peer.borg, scratch, &args).stdout),
            String::from_utf8_lossy(&rborg(scratch, &args).stdout),
            "list --format {specs:?}, borg {}",
            peer.name
        );

        // JSON lines: the default format (two computed keys), one checksum, archive keys.
        let formats: [(Option<&str>, &[&str]); 4] = [
            (None, &["size", "mtime"]),
            (Some("{sha256}"), &["sha256"]),
            (Some("{path}{bpath}{extra}{health}{NL}"), &[]),
            (
                Some("{archivename} {archiveid} {md5} {num_chunks}"),
                &["md5", "num_chunks"],
            ),
        ];
        for (fmt, computed) in formats {
            let mut args = vec!["list", "--json-lines"];
            if let Some(f) = fmt {
                args.extend(["--format", f]);
            }
            args.push(&loc);
            let theirs = String::from_utf8(run(&peer.borg, scratch, &args).stdout).expect("utf-8");
            let ours = String::from_utf8(rborg(scratch, &args).stdout).expect("utf-8");
            let theirs: Vec<String> = theirs
                .lines()
                .map(|l| computed_keys_in_order(l, computed))
                .collect();
            let mut ours: Vec<String> = ours.lines().map(str::to_string).collect();
            if peer.name == "1.2" {
                // borg 1.2 leaves the archive keys out of JSON lines; rborg follows 1.4.
                for l in &mut ours {
                    if let Some(i) = l.find("\"type\": ") {
                        if l.starts_with("{\"archivename\"") {
                            *l = format!("{{{}", &l[i..]);
                        }
                    }
                }
            }
            assert!(theirs.len() >= 10, "too few items");
            assert_eq!(theirs, ours, "list {args:?}, borg {}", peer.name);
        }
    }

    // Archives: every archive key (borg 1.2.4 predates `tam`).
    let keys: Vec<&str> = ARCHIVE_KEYS
        .iter()
        .copied()
        .filter(|k| peer.name != "1.2" || *k != "tam")
        .collect();
    let mut archive_format = template(&keys);
    archive_format
        .push_str("{time:%d.%m.%Y %H:%M:%S.%f} {end:<9} {start:%A} {id:.8} {archive:>6.2}{NL}");
    let args = ["list", "--format", &archive_format, "repo"];
    let theirs = run(&peer.borg, scratch, &args).stdout;
    let ours = rborg(scratch, &args).stdout;
    assert_eq!(
        String::from_utf8_lossy(&theirs),
        String::from_utf8_lossy(&ours),
        "list --format <all archive keys>, borg {}",
        peer.name
    );
    // `--json` carries the keys a format names (`command_line` as a list).
    let args = ["list", "--json", "--format", &template(&keys), "repo"];
    assert_eq!(
        String::from_utf8_lossy(&run(&peer.borg, scratch, &args).stdout),
        String::from_utf8_lossy(&rborg(scratch, &args).stdout),
        "list --json --format <all archive keys>, borg {}",
        peer.name
    );
}

#[test]
fn list_formats_and_json_lines_match_borg() {
    let scratch = Scratch::new();
    let root = scratch.dir.path();
    make_tree(root);
    let (b12, b14) = (borg12(), borg14());
    borg_init(&b12, &scratch, &root.join("repo"), "repokey-blake2");
    run(
        &b12.borg,
        &scratch,
        &["create", "--comment", "from 1.2 \"q\"", "repo::a12", "t"],
    );
    std::fs::write(root.join("t/a.txt"), b"changed\n").expect("change");
    run(
        &b14.borg,
        &scratch,
        &["create", "--comment", "ünï", "repo::a14", "t"],
    );
    for peer in [&b12, &b14] {
        check_peer(peer, &scratch, &["a12", "a14"]);
    }
}
