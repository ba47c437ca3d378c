//! `rborg check` and `rborg compact` against repositories made by real borg 1.2.4 and 1.4.5:
//! clean repositories are clean for both; damage made on purpose (a flipped byte in a segment,
//! a deleted file chunk, a broken archive TAM, a deleted manifest) is reported by both with
//! rc 1; after `rborg check --repair` borg's own check is clean.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{borg, borg12, borg14, borg_init, borg_ok, Peer, Scratch, Sshd};
use rborg::archive::ItemStreamDecoder;
use rborg::commands::Session;
use rborg::crypto::passphrase::NoPrompt;
use rborg::location::Location;
use rborg::manifest::{DefaultCodec, Operation, PayloadCodec};
use rborg::repository::{AccessSettings, CommitOptions, ObjectId, OpenOptions, MANIFEST_ID};
use rborg::rpc::ClientOptions;
use rborg::settings::Environment;
use rborg::transport::SshKind;

fn rborg(scratch: &Scratch, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rborg"))
        .args(args)
        .envs(scratch.borg_env())
        .stdin(Stdio::null())
        .output()
        .expect("run rborg")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn rc(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn files(scratch: &Scratch) -> String {
    let src = scratch.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut big = Vec::new();
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for _ in 0..400_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        big.extend_from_slice(&x.to_le_bytes()[..5]);
    }
    std::fs::write(src.join("big"), &big).unwrap();
    let lines: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
    std::fs::write(src.join("text"), lines).unwrap();
    std::fs::write(src.join("small"), b"hello").unwrap();
    src.to_string_lossy().into_owned()
}

/// A repository made by `peer` with three archives a1..a3.
fn make_repo(peer: &Peer, scratch: &Scratch, encryption: &str) -> String {
    let repo = scratch.path("repo");
    borg_init(peer, scratch, &repo, encryption);
    let src = files(scratch);
    let r = repo.to_string_lossy().into_owned();
    for (i, name) in ["a1", "a2", "a3"].iter().enumerate() {
        std::fs::write(scratch.path("src").join("small"), format!("v{i}")).unwrap();
        borg_ok(peer, scratch, &["create", &format!("{r}::{name}"), &src]);
    }
    r
}

fn session(scratch: &Scratch, repo: &str) -> Session {
    let env = Environment::from_pairs(scratch.borg_env());
    let access = AccessSettings::from_env(&env, None, None, SshKind::Process);
    let open = OpenOptions {
        exclusive: true,
        ..OpenOptions::default()
    };
    Session::open(
        &Location::parse(repo, None).unwrap(),
        &access,
        &open,
        ClientOptions::default(),
        env.crypto_settings(),
        &mut NoPrompt,
        &[Operation::Write],
    )
    .expect("open session")
}

fn decrypt(s: &Session, id: &ObjectId, envelope: &[u8]) -> Vec<u8> {
    let payload = s.opened.key.key.decrypt(Some(id), envelope).unwrap();
    DefaultCodec.decompress(&payload).unwrap()
}

/// The first file chunk of the item `suffix` in `archive`.
fn file_chunk(s: &mut Session, archive: &str, suffix: &str) -> ObjectId {
    let id = s.opened.manifest.archive(archive).unwrap().id;
    let env = s.repository.get(&id).unwrap();
    let meta = rborg::msgpack::decode(&decrypt(s, &id, &env)).unwrap();
    let mut dec = ItemStreamDecoder::new();
    for item_id in meta.get("items").unwrap().as_array().unwrap() {
        let item_id: ObjectId = item_id.as_bytes().unwrap().try_into().unwrap();
        let env = s.repository.get(&item_id).unwrap();
        for item in dec.feed(&decrypt(s, &item_id, &env)).unwrap() {
            if item.path.ends_with(suffix.as_bytes()) {
                return item.chunks.unwrap()[0].id;
            }
        }
    }
    panic!("no item {suffix} in {archive}");
}

fn assert_rc(o: &Output, want: i32, what: &str) {
    assert_eq!(rc(o), want, "{what}:\n{}", text(o));
}

#[test]
fn clean_repositories_are_clean_in_every_mode_and_compact_frees_space() {
    for (peer, enc) in [(borg12(), "repokey"), (borg14(), "repokey-blake2")] {
        let scratch = Scratch::new();
        let repo = make_repo(&peer, &scratch, enc);
        for mode in [
            &[][..],
            &["--repository-only"],
            &["--archives-only"],
            &["--verify-data"],
            &["--full"],
            &["--archives-only", "--last", "1"],
            &["--archives-only", "-a", "a[12]"],
        ] {
            let mut args = vec!["check", "-v"];
            args.extend_from_slice(mode);
            args.push(&repo);
            let o = rborg(&scratch, &args);
            assert_rc(&o, 0, &format!("rborg {args:?} on borg {}", peer.name));
        }
        let o = rborg(&scratch, &["check", "-v", "--full", &repo]);
        let t = text(&o);
        assert!(
            t.contains("verified 11 chunks with 0 integrity errors")
                || t.contains("chunks with 0 integrity errors"),
            "{t}"
        );
        assert!(
            t.contains("Archive consistency check complete, no problems found."),
            "{t}"
        );
        // One archive (REPO::ARCHIVE): no orphan check; an unknown one is a problem (rc 1).
        let one = format!("{repo}::a2");
        let o = rborg(&scratch, &["check", "-v", "--archives-only", &one]);
        assert_rc(&o, 0, "one archive");
        assert!(
            text(&o).contains("Orphaned objects check skipped"),
            "{}",
            text(&o)
        );
        let o = rborg(
            &scratch,
            &["check", "--archives-only", &format!("{repo}::nope")],
        );
        assert_rc(&o, 1, "unknown archive");
        assert!(
            text(&o).contains("Archive 'nope' not found."),
            "{}",
            text(&o)
        );
        // --log-json: every stderr line is one of borg's JSON records.
        let o = rborg(
            &scratch,
            &["--log-json", "check", "-v", "--progress", "--full", &repo],
        );
        assert_rc(&o, 0, "--log-json check");
        let stderr = String::from_utf8_lossy(&o.stderr);
        let mut kinds = std::collections::BTreeSet::new();
        for line in stderr.lines() {
            let v: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            kinds.insert(v["type"].as_str().unwrap().to_string());
        }
        assert!(
            kinds.contains("log_message") && kinds.contains("progress_percent"),
            "{kinds:?}"
        );
        let o = rborg(
            &scratch,
            &["check", "-v", "--archives-only", "--last", "1", &repo],
        );
        assert!(
            text(&o).contains("Orphaned objects check skipped"),
            "{}",
            text(&o)
        );
        // A repository check with a time limit is partial.
        let o = rborg(
            &scratch,
            &[
                "check",
                "-v",
                "--repository-only",
                "--max-duration",
                "30",
                &repo,
            ],
        );
        assert_rc(&o, 0, "partial repository check");
        assert!(text(&o).contains("partial"), "{}", text(&o));
        // Argument rules as borg's.
        let o = rborg(
            &scratch,
            &["check", "--repository-only", "--verify-data", &repo],
        );
        assert_rc(&o, 2, "--repository-only with --verify-data");
        let o = rborg(&scratch, &["check", "--max-duration", "5", &repo]);
        assert_rc(&o, 2, "--max-duration without --repository-only");
        assert_rc(&borg(&peer, &scratch, &["check", &repo]), 0, "borg check");

        // compact: delete an archive whose big file differs, then compact frees space.
        std::fs::write(scratch.path("src").join("unique"), vec![7u8; 3_000_000]).unwrap();
        borg_ok(
            &peer,
            &scratch,
            &[
                "create",
                &format!("{repo}::big"),
                scratch.path("src").to_str().unwrap(),
            ],
        );
        borg_ok(&peer, &scratch, &["delete", &format!("{repo}::big")]);
        let before = dir_size(&scratch.path("repo/data"));
        let o = rborg(&scratch, &["compact", "-v", &repo]);
        assert_rc(&o, 0, "rborg compact");
        assert!(text(&o).contains("compaction freed about"), "{}", text(&o));
        let after = dir_size(&scratch.path("repo/data"));
        assert!(
            after + 10_000 < before,
            "compact freed nothing: {before} -> {after}"
        );
        assert_rc(
            &borg(&peer, &scratch, &["check", "--verify-data", &repo]),
            0,
            "borg check after compact",
        );
        assert_rc(
            &rborg(&scratch, &["check", "--full", &repo]),
            0,
            "rborg check after compact",
        );
    }
}

fn dir_size(p: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        total += if m.is_dir() {
            dir_size(&e.path())
        } else {
            m.len()
        };
    }
    total
}

#[test]
fn deleted_file_chunk_is_found_and_repaired_with_zero_chunks() {
    let peer = borg14();
    let scratch = Scratch::new();
    let repo = make_repo(&peer, &scratch, "repokey-blake2");
    {
        let mut s = session(&scratch, &repo);
        let id = file_chunk(&mut s, "a1", "/text");
        s.repository.delete(&id).unwrap();
        s.repository.commit(CommitOptions::default()).unwrap();
        s.close().unwrap();
    }
    assert_rc(&borg(&peer, &scratch, &["check", &repo]), 1, "borg check");
    assert_rc(
        &borg(&borg12(), &scratch, &["check", &repo]),
        1,
        "borg 1.2 check",
    );
    for mode in [&["--archives-only"][..], &[], &["--full"]] {
        let mut args = vec!["check"];
        args.extend_from_slice(mode);
        args.push(&repo);
        let o = rborg(&scratch, &args);
        assert_rc(&o, 1, &format!("rborg {args:?}"));
        assert!(
            text(&o).contains("New missing file chunk detected"),
            "{}",
            text(&o)
        );
        assert!(text(&o).contains("Would replace it with all-zero chunk with --repair."));
    }
    // Repository-level structure is fine.
    assert_rc(
        &rborg(&scratch, &["check", "--repository-only", &repo]),
        0,
        "repository-only",
    );
    let o = rborg(&scratch, &["check", "-v", "--repair", &repo]);
    assert_rc(&o, 0, "rborg check --repair");
    assert!(
        text(&o).contains("Replacing with all-zero chunk."),
        "{}",
        text(&o)
    );
    let o = borg(&peer, &scratch, &["check", "-v", "--verify-data", &repo]);
    assert_rc(&o, 0, "borg check after rborg repair");
    assert!(
        text(&o).contains("Previously missing file chunk is still missing"),
        "{}",
        text(&o)
    );
    assert_rc(
        &borg(&borg12(), &scratch, &["check", &repo]),
        0,
        "borg 1.2 check after repair",
    );
    assert_rc(
        &rborg(&scratch, &["check", "--full", &repo]),
        0,
        "rborg check after repair",
    );
    // Backing the same data up again brings the chunk back; the next repair heals the file.
    borg_ok(
        &peer,
        &scratch,
        &[
            "create",
            &format!("{repo}::a4"),
            scratch.path("src").to_str().unwrap(),
        ],
    );
    let o = rborg(&scratch, &["check", "-v", "--archives-only", &repo]);
    assert_rc(&o, 0, "check before healing");
    assert!(
        text(&o).contains("Missing file chunk would be healed with --repair!"),
        "{}",
        text(&o)
    );
    let o = rborg(
        &scratch,
        &["check", "-v", "--repair", "--archives-only", &repo],
    );
    assert!(
        text(&o).contains("Completely healed previously damaged file!"),
        "{}",
        text(&o)
    );
    let o = borg(&peer, &scratch, &["check", "-v", "--verify-data", &repo]);
    assert_rc(&o, 0, "borg check after healing");
    assert!(!text(&o).contains("still missing"), "{}", text(&o));
}

#[test]
fn flipped_byte_in_a_segment_is_found_and_repaired() {
    let peer = borg14();
    let scratch = Scratch::new();
    let repo = make_repo(&peer, &scratch, "repokey");
    // The biggest segment holds the file data; damage its middle.
    let mut segs = Vec::new();
    for d in std::fs::read_dir(scratch.path("repo/data")).unwrap() {
        for f in std::fs::read_dir(d.unwrap().path()).unwrap() {
            let p = f.unwrap().path();
            segs.push((std::fs::metadata(&p).unwrap().len(), p));
        }
    }
    segs.sort();
    let (len, seg) = segs.last().unwrap().clone();
    let mut data = std::fs::read(&seg).unwrap();
    data[(len / 2) as usize] ^= 0x55;
    std::fs::write(&seg, data).unwrap();

    assert_rc(&borg(&peer, &scratch, &["check", &repo]), 1, "borg check");
    let o = rborg(&scratch, &["check", &repo]);
    assert_rc(&o, 1, "rborg check");
    assert!(
        text(&o).contains("Finished full repository check, errors found."),
        "{}",
        text(&o)
    );
    let o = rborg(
        &scratch,
        &["check", "--archives-only", "--verify-data", &repo],
    );
    assert_rc(&o, 1, "rborg verify-data");
    assert!(text(&o).contains("integrity error"), "{}", text(&o));
    let o = rborg(&scratch, &["check", "-v", "--repair", &repo]);
    assert_rc(&o, 0, "rborg repair");
    let o = borg(&peer, &scratch, &["check", "--verify-data", &repo]);
    assert_rc(&o, 0, "borg check after repair");
}

#[test]
fn broken_archive_tam_and_missing_manifest() {
    let peer = borg14();
    let scratch = Scratch::new();
    let repo = make_repo(&peer, &scratch, "repokey");
    {
        // Rewrite a2's metadata with one bit of its TAM flipped, under the new id.
        let mut s = session(&scratch, &repo);
        let entry = s.opened.manifest.archive("a2").unwrap().clone();
        let env = s.repository.get(&entry.id).unwrap();
        let mut plain = decrypt(&s, &entry.id, &env);
        let pos = plain.windows(5).position(|w| w == b"\xa4hmac").unwrap() + 5 + 3;
        plain[pos] ^= 1;
        let new_id = s.opened.key.key.id_hash(&plain);
        let payload = DefaultCodec.compress(&plain);
        let env = s
            .opened
            .key
            .key
            .encrypt_next(&mut s.opened.nonces, s.repository.as_mut(), &payload)
            .unwrap();
        s.repository.put(&new_id, env).unwrap();
        s.repository.delete(&entry.id).unwrap();
        s.opened.manifest.archives.get_mut(&b"a2"[..]).unwrap().id = new_id;
        s.write_manifest_and_commit().unwrap();
        s.close().unwrap();
    }
    let o = borg(&peer, &scratch, &["check", &repo]);
    assert_rc(&o, 1, "borg check");
    assert!(text(&o).contains("Archive TAM authentication issue for archive a2"));
    let o = rborg(&scratch, &["check", &repo]);
    assert_rc(&o, 1, "rborg check");
    assert!(
        text(&o).contains("Archive TAM authentication issue for archive a2"),
        "{}",
        text(&o)
    );
    assert!(text(&o).contains("would be *removed*"), "{}", text(&o));
    // Repair without confirmation is refused.
    let o = Command::new(env!("CARGO_BIN_EXE_rborg"))
        .args(["check", "--repair", &repo])
        .envs(
            scratch
                .borg_env()
                .into_iter()
                .filter(|(k, _)| k != "BORG_CHECK_I_KNOW_WHAT_I_AM_DOING"),
        )
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_rc(&o, 2, "unconfirmed repair");
    assert_rc(
        &rborg(&scratch, &["check", "--repair", &repo]),
        0,
        "rborg repair",
    );
    assert_rc(
        &borg(&peer, &scratch, &["check", &repo]),
        0,
        "borg check after repair",
    );
    let list = text(&borg_ok(&peer, &scratch, &["list", "--short", &repo]));
    assert_eq!(list.split_whitespace().collect::<Vec<_>>(), ["a1", "a3"]);

    // Now lose the manifest.
    {
        let mut s = session(&scratch, &repo);
        s.repository.delete(&MANIFEST_ID).unwrap();
        s.repository.commit(CommitOptions::default()).unwrap();
        s.close().unwrap();
    }
    assert_rc(
        &borg(&peer, &scratch, &["check", &repo]),
        1,
        "borg check, no manifest",
    );
    let o = rborg(&scratch, &["check", "-v", &repo]);
    assert_rc(&o, 1, "rborg check, no manifest");
    assert!(
        text(&o).contains("Repository manifest not found!"),
        "{}",
        text(&o)
    );
    assert!(text(&o).contains("Found archive a1"), "{}", text(&o));
    assert_rc(
        &rborg(&scratch, &["check", "--repository-only", &repo]),
        0,
        "repository-only",
    );
    assert_rc(
        &rborg(&scratch, &["check", "--repair", &repo]),
        0,
        "rborg rebuilds the manifest",
    );
    assert_rc(
        &borg(&peer, &scratch, &["check", &repo]),
        0,
        "borg check after rebuild",
    );
    let list = text(&borg_ok(&peer, &scratch, &["list", "--short", &repo]));
    let mut names: Vec<_> = list.split_whitespace().collect();
    names.sort();
    assert_eq!(names, ["a1", "a3"]);
}

#[test]
fn remote_check_over_sshd() {
    let peer = borg12();
    let scratch = Scratch::new();
    let repo = make_repo(&peer, &scratch, "repokey");
    let sshd = Sshd::start();
    let url = sshd.url(Path::new(&repo));
    let wrapper = scratch.serve_wrapper(&peer, "serve", "");
    let rsh = sshd.rsh();
    let wrapper = wrapper.to_string_lossy().into_owned();
    let base = ["--rsh", rsh.as_str(), "--remote-path", wrapper.as_str()];
    let mut args: Vec<&str> = base.to_vec();
    args.extend(["check", "-v", "--full", &url]);
    let o = rborg(&scratch, &args);
    assert_rc(&o, 0, "remote full check");
    assert!(
        text(&o).contains("Finished full repository check, no problems found."),
        "{}",
        text(&o)
    );
    // Prune and compact over ssh too; borg's check stays clean (exact refcounts).
    let mut args: Vec<&str> = base.to_vec();
    args.extend(["prune", "--list", "--keep-last", "1", &url]);
    let o = rborg(&scratch, &args);
    assert_rc(&o, 0, "remote prune");
    assert!(text(&o).contains("Pruning archive (2/2):"), "{}", text(&o));
    let mut args: Vec<&str> = base.to_vec();
    args.extend(["compact", &url]);
    assert_rc(&rborg(&scratch, &args), 0, "remote compact");
    assert_rc(
        &borg(&peer, &scratch, &["check", "--verify-data", &repo]),
        0,
        "borg check after remote prune",
    );
    let list = text(&borg_ok(&peer, &scratch, &["list", "--short", &repo]));
    assert_eq!(list.split_whitespace().collect::<Vec<_>>(), ["a3"]);
    {
        let mut s = session(&scratch, &repo);
        let id = file_chunk(&mut s, "a3", "/big");
        s.repository.delete(&id).unwrap();
        s.repository.commit(CommitOptions::default()).unwrap();
        s.close().unwrap();
    }
    let mut args: Vec<&str> = base.to_vec();
    args.extend(["check", "--verify-data", &url]);
    let o = rborg(&scratch, &args);
    assert_rc(&o, 1, "remote check of a damaged repository");
    assert!(
        text(&o).contains("New missing file chunk detected"),
        "{}",
        text(&o)
    );
    let mut args: Vec<&str> = base.to_vec();
    args.extend(["check", "--repair", &url]);
    assert_rc(&rborg(&scratch, &args), 0, "remote repair");
    assert_rc(
        &borg(&peer, &scratch, &["check", "--verify-data", &repo]),
        0,
        "borg check after remote repair",
    );
}

/// The item chunk ids of `archive`.
fn item_chunk_ids(scratch: &Scratch, repo: &str, archive: &str) -> Vec<ObjectId> {
    let mut s = session(scratch, repo);
    let id = s.opened.manifest.archive(archive).unwrap().id;
    let env = s.repository.get(&id).unwrap();
    let meta = rborg::msgpack::decode(&decrypt(&s, &id, &env)).unwrap();
    let ids = meta
        .get("items")
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_bytes().unwrap().try_into().unwrap())
        .collect();
    s.close().unwrap();
    ids
}

#[test]
fn repaired_item_stream_is_the_one_borg_repair_writes() {
    let peer = borg14();
    let a = Scratch::new();
    let repo_a = a.path("repo");
    borg_init(&peer, &a, &repo_a, "repokey-blake2");
    // Enough files for an item stream of several items-chunker pieces (~1 MB of metadata).
    let src = a.path("src");
    for d in 0..40 {
        let dir = src.join(format!("directory-{d:02}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..150 {
            std::fs::write(dir.join(format!("file-{f:03}.txt")), format!("{d}/{f}\n")).unwrap();
        }
    }
    let lines: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
    std::fs::write(src.join("text"), lines).unwrap();
    let r_a = repo_a.to_str().unwrap().to_string();
    borg_ok(
        &peer,
        &a,
        &["create", &format!("{r_a}::a1"), src.to_str().unwrap()],
    );
    let before = item_chunk_ids(&a, &r_a, "a1");
    {
        let mut s = session(&a, &r_a);
        let id = file_chunk(&mut s, "a1", "/text");
        s.repository.delete(&id).unwrap();
        s.repository.commit(CommitOptions::default()).unwrap();
        s.close().unwrap();
    }
    // The same damage in a second repository with its own borg base dir.
    let b = Scratch::new();
    let repo_b = b.path("repo");
    let cp = Command::new("cp")
        .args(["-a", &r_a, repo_b.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(cp.success());
    let r_b = repo_b.to_str().unwrap().to_string();
    let o = borg(&peer, &a, &["check", "--repair", &r_a]);
    assert!(
        text(&o).contains("Replacing with all-zero chunk"),
        "{}",
        text(&o)
    );
    let o = rborg(&b, &["check", "-v", "--repair", &r_b]);
    assert_rc(&o, 0, "rborg check --repair");
    let by_borg = item_chunk_ids(&a, &r_a, "a1");
    let by_rborg = item_chunk_ids(&b, &r_b, "a1");
    assert!(by_borg.len() >= 3, "a multi-piece item stream");
    assert_ne!(by_borg, before, "the repair rewrote the item stream");
    assert_eq!(
        by_rborg, by_borg,
        "rborg's repair cut the stream as borg's did"
    );
    let o = borg(&peer, &b, &["check", "-v", "--verify-data", &r_b]);
    assert_rc(&o, 0, "borg check after rborg repair");
}
