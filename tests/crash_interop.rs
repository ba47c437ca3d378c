//! Crash safety, repeated: `rborg create` and `rborg compact` are killed with SIGKILL at
//! pseudo-random moments, many times, on a native local repository and behind `rborg serve`
//! (where client and server die together). After every kill borg 1.4.5 checks the repository
//! clean and lists exactly the archives that were committed; at the end every committed
//! archive extracts to what was backed up, and `borg check --verify-data` and `rborg check
//! --verify-data` are clean.
//!
//! The kill moments come from a fixed seed spread over the measured length of a whole run, so
//! kills land before, during and after the writes, and a failure can be replayed.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{borg, pseudo_random, Peer, Scratch};

const RBORG: &str = env!("CARGO_BIN_EXE_rborg");

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The scenario's state: where the repository is, how to reach it, what is committed.
struct Rig<'a> {
    scratch: &'a Scratch,
    peer: Peer,
    repo: String,
    /// Options before the command's own arguments (`--rsh`, `--remote-path`).
    extra: Vec<String>,
    /// Committed archives and the file contents each one holds.
    committed: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    /// Where the rsh stand-in records the pid of the server it starts, if there is one.
    server_pid_file: Option<std::path::PathBuf>,
}

impl Rig<'_> {
    fn rborg_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(RBORG);
        cmd.arg(args[0])
            .args(&self.extra)
            .args(&args[1..])
            .current_dir(self.scratch.dir.path())
            .envs(self.scratch.borg_env());
        cmd
    }

    fn rborg_ok(&self, args: &[&str]) -> Output {
        let out = self.rborg_command(args).output().expect("run rborg");
        assert!(out.status.success(), "rborg {args:?}: {}", text(&out));
        out
    }

    fn borg_ok(&self, args: &[&str]) -> Output {
        let mut v: Vec<&str> = vec![args[0]];
        v.extend(self.extra.iter().map(String::as_str));
        v.extend_from_slice(&args[1..]);
        let out = borg(&self.peer, self.scratch, &v);
        assert!(out.status.success(), "borg {v:?}: {}", text(&out));
        out
    }

    fn source_snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        let src = self.scratch.path("src");
        let mut files = BTreeMap::new();
        for entry in fs::read_dir(&src).expect("read src") {
            let entry = entry.expect("entry");
            let name = entry.file_name().to_string_lossy().into_owned();
            files.insert(name, fs::read(entry.path()).expect("read"));
        }
        files
    }

    /// Runs `args` in its own process group and kills the group with SIGKILL after `delay`
    /// unless it finished first. Returns whether it finished successfully.
    fn run_killed(&self, args: &[&str], delay: Duration) -> bool {
        let mut child = self
            .rborg_command(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn rborg");
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status.success();
            }
            if start.elapsed() >= delay {
                // SAFETY: signals only the process group created for this child (rborg and,
                // behind `rborg serve`, its ssh stand-in and the server).
                unsafe {
                    libc::kill(-(child.id() as i32), libc::SIGKILL);
                }
                let _ = child.wait();
                self.reap_server();
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits for the killed server process to be gone. It was rborg's child, so it is now
    /// an orphan; this machine's init does not reap orphans, and a zombie's pid still looks
    /// alive to the stale-lock test (`kill(pid, 0)`), so the test process, a child
    /// subreaper, reaps it.
    fn reap_server(&self) {
        let Some(file) = &self.server_pid_file else {
            return;
        };
        let Some(pid) = fs::read_to_string(file)
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
        else {
            return;
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut status = 0;
            // SAFETY: waits only for the given pid, which the kill above ended.
            let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if rc == pid || (rc < 0 && unsafe { libc::kill(pid, 0) } != 0) {
                return;
            }
            assert!(Instant::now() < deadline, "server {pid} did not go away");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// borg checks the repository and archives clean and lists exactly the committed
    /// archives (`maybe` may or may not have been committed when the kill came).
    fn verify(&mut self, maybe: Option<(&str, BTreeMap<String, Vec<u8>>)>) {
        let repo = self.repo.clone();
        self.borg_ok(&["check", &repo]);
        let out = self.borg_ok(&["list", "--short", &repo]);
        let listed: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        let mut expected: BTreeSet<String> = self.committed.keys().cloned().collect();
        if let Some((name, files)) = maybe {
            if listed.contains(name) {
                self.committed.insert(name.to_string(), files);
                expected.insert(name.to_string());
            }
        }
        assert_eq!(listed, expected, "archives after a kill");
    }
}

fn crash_loop(rig: &mut Rig<'_>, rounds: u64, seed: u64) {
    let src = rig.scratch.path("src");
    fs::create_dir_all(&src).expect("src");
    for i in 0..6 {
        fs::write(
            src.join(format!("big{i}")),
            pseudo_random(4 << 20, seed + i),
        )
        .expect("write");
    }
    for i in 0..100 {
        fs::write(
            src.join(format!("small{i:03}")),
            format!("small file {i}\n").repeat(i + 1),
        )
        .expect("write");
    }
    let repo = rig.repo.clone();
    rig.rborg_ok(&["init", "-e", "repokey", &repo]);

    rig.rborg_ok(&["create", &format!("{repo}::base"), "src"]);
    let snapshot = rig.source_snapshot();
    rig.committed.insert("base".into(), snapshot);
    // How long one round's create takes here (one big file is new): the kill moments are
    // spread over 0-125 % of it.
    fs::write(src.join("big0"), pseudo_random(4 << 20, seed + 99)).expect("write");
    let start = Instant::now();
    rig.rborg_ok(&["create", &format!("{repo}::warm"), "src"]);
    let full = start.elapsed().max(Duration::from_millis(100));
    let snapshot = rig.source_snapshot();
    rig.committed.insert("warm".into(), snapshot);
    let mut killed = 0;

    let mut rng = Rng(seed | 1);
    for round in 0..rounds {
        // New data for this round: one big file changes.
        let which = round % 6;
        fs::write(
            src.join(format!("big{which}")),
            pseudo_random(4 << 20, seed * 1000 + round),
        )
        .expect("write");
        let name = format!("a{round}");
        let delay = full.mul_f64((rng.next() % 1000) as f64 / 800.0);
        let snapshot = rig.source_snapshot();
        let finished = rig.run_killed(&["create", &format!("{repo}::{name}"), "src"], delay);
        if finished {
            rig.committed.insert(name.clone(), snapshot.clone());
        } else {
            killed += 1;
        }
        rig.verify(Some((&name, snapshot)));

        // Every other round: delete the oldest-but-one archive, then kill compact.
        if round % 2 == 1 && rig.committed.len() > 2 {
            let victim = rig
                .committed
                .keys()
                .find(|n| n.as_str() != "base")
                .cloned()
                .expect("an archive");
            rig.rborg_ok(&["delete", &format!("{repo}::{victim}")]);
            rig.committed.remove(&victim);
            let delay = Duration::from_millis(rng.next() % 400);
            rig.run_killed(&["compact", "--threshold", "0", &repo], delay);
            rig.verify(None);
        }
    }

    assert!(
        killed * 3 >= rounds,
        "only {killed} of {rounds} creates were killed before they finished"
    );

    // Every committed archive restores what it backed up.
    for (name, files) in rig.committed.clone() {
        let dest = rig.scratch.path(&format!("restore-{name}"));
        fs::create_dir_all(&dest).expect("dest");
        let mut v: Vec<String> = vec!["extract".into()];
        v.extend(rig.extra.iter().cloned());
        v.push(format!("{repo}::{name}"));
        let out = Command::new(&rig.peer.borg)
            .args(&v)
            .current_dir(&dest)
            .envs(rig.scratch.borg_env())
            .output()
            .expect("borg extract");
        assert!(out.status.success(), "extract {name}: {}", text(&out));
        for (file, content) in files {
            let restored = fs::read(dest.join("src").join(&file)).expect("restored file");
            assert!(restored == content, "{name}: {file} differs");
        }
    }
    rig.borg_ok(&["check", "--verify-data", &repo]);
    rig.rborg_ok(&["check", "--verify-data", &repo]);
}

#[test]
fn killed_create_and_compact_on_a_local_repository() {
    let scratch = Scratch::new();
    let repo = scratch.path("repo").display().to_string();
    let mut rig = Rig {
        scratch: &scratch,
        peer: common::borg14(),
        repo,
        extra: Vec::new(),
        committed: BTreeMap::new(),
        server_pid_file: None,
    };
    crash_loop(&mut rig, 10, 11);
}

#[test]
fn killed_create_and_compact_behind_rborg_serve() {
    let scratch = Scratch::new();
    // `rborg serve` on the far side of a pipe: the rsh stand-in runs the remote command in
    // the same process group, so a kill takes client and server down together.
    let rsh = scratch.path("rsh.sh");
    let pid_file = scratch.path("server.pid");
    fs::write(
        &rsh,
        format!(
            "#!/bin/sh\nshift\necho $$ > '{}'\nexec $*\n",
            pid_file.display()
        ),
    )
    .expect("rsh");
    // Orphaned servers become this process's children, so that they can be reaped.
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER only changes this process's attributes.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(rc, 0, "prctl(PR_SET_CHILD_SUBREAPER)");
    fs::set_permissions(&rsh, fs::Permissions::from_mode(0o755)).expect("chmod rsh");
    let repo = format!("ssh://localhost{}", scratch.path("repo").display());
    let peer = common::borg14();
    let mut rig = Rig {
        scratch: &scratch,
        peer,
        repo,
        extra: vec![
            "--rsh".into(),
            rsh.display().to_string(),
            "--remote-path".into(),
            format!("{RBORG} serve"),
        ],
        committed: BTreeMap::new(),
        server_pid_file: Some(pid_file),
    };
    crash_loop(&mut rig, 6, 23);
}
