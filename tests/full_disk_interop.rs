//! A full disk where the repository lives: `rborg create` stops with one clear error and exit
//! code 2, commits nothing, and leaves a repository that borg 1.4.5 checks clean and that takes
//! the next backup once there is room again.
//!
//! The repository sits on a small tmpfs mounted for the test (the tests run as root, as CI
//! does; a failed mount fails the test). On the native local repository rborg frees the
//! partial transaction's segments at once, as borg's own `Repository` does on ENOSPC. Behind
//! `borg serve` the server keeps them until the repository is written again, exactly as it
//! does for borg's own client, so the test frees space the way an administrator would.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{borg_ok, pseudo_random, Peer, Scratch, Sshd};

const RBORG: &str = env!("CARGO_BIN_EXE_rborg");

/// A tmpfs of `mib` MiB mounted at `path`, unmounted on drop.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, mib: u32) -> Tmpfs {
        fs::create_dir_all(path).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m")])
            .arg("tmpfs")
            .arg(path)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mounting a tmpfs at {} failed (the full-disk tests need root): {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs {
            path: path.to_path_buf(),
        }
    }

    /// Bytes still free.
    fn available(&self) -> u64 {
        let c = std::ffi::CString::new(self.path.as_os_str().as_encoded_bytes()).expect("path");
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `c` is a valid C string and `st` a buffer we own.
        let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
        assert_eq!(rc, 0, "statvfs {}", self.path.display());
        st.f_bavail * st.f_frsize
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn rborg(scratch: &Scratch, args: &[&str]) -> Output {
    Command::new(RBORG)
        .args(args)
        .current_dir(scratch.dir.path())
        .envs(scratch.borg_env())
        .output()
        .expect("run rborg")
}

fn ok(o: Output, what: &str) -> Output {
    assert!(
        o.status.success(),
        "{what} failed ({}):\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// Runs the scenario against `repo` (a local path or an ssh URL on the tmpfs). `extra` are
/// the rborg/borg options that reach it; `local` says rborg's own repository code writes it
/// (and must free the failed transaction's space by itself).
fn full_disk(
    scratch: &Scratch,
    disk: &Tmpfs,
    repo: &str,
    extra: &[&str],
    peer: &Peer,
    local: bool,
) {
    let with = |args: &[&str]| -> Vec<String> {
        let (cmd, rest) = args.split_first().expect("command");
        let mut v = vec![cmd.to_string()];
        v.extend(extra.iter().map(|s| s.to_string()));
        v.extend(rest.iter().map(|s| s.to_string()));
        v
    };
    let run = |args: &[&str]| {
        let v = with(args);
        let refs: Vec<&str> = v.iter().map(String::as_str).collect();
        rborg(scratch, &refs)
    };
    let borg = |args: &[&str]| {
        let v = with(args);
        let refs: Vec<&str> = v.iter().map(String::as_str).collect();
        borg_ok(peer, scratch, &refs)
    };

    ok(run(&["init", "-e", "repokey", repo]), "rborg init");
    let src = scratch.path("src");
    fs::create_dir_all(&src).expect("src");
    fs::write(src.join("small.txt"), b"small and precious\n").expect("write");
    ok(
        run(&["create", &format!("{repo}::first"), "src"]),
        "first create",
    );

    // A filler leaves 12 MiB free; the next backup brings 40 MiB of random data.
    let free = disk.available();
    let filler = disk.path.join("filler");
    fs::write(&filler, vec![0x5a; (free - 12 * 1024 * 1024) as usize]).expect("filler");
    fs::write(src.join("big.bin"), pseudo_random(40 << 20, 7)).expect("write");
    let out = run(&["create", &format!("{repo}::too-big"), "src"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("No space left on device") || stderr.contains("Errno 28"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    if local {
        // The partial transaction's segments are gone again: the filler is all that is left.
        assert!(
            disk.available() >= 11 * 1024 * 1024,
            "the failed transaction still holds space: {} bytes free",
            disk.available()
        );
    }
    fs::remove_file(&filler).expect("free space");

    // Nothing was committed, and the repository is sound.
    let list = borg(&["list", "--short", repo]);
    assert_eq!(String::from_utf8_lossy(&list.stdout), "first\n");
    borg(&["check", "--verify-data", repo]);

    // The next backup goes through and restores.
    fs::remove_file(src.join("big.bin")).expect("rm");
    fs::write(src.join("later.txt"), b"written after the disk was full\n").expect("write");
    ok(
        run(&["create", &format!("{repo}::second"), "src"]),
        "create after",
    );
    borg(&["check", "--verify-data", repo]);
    let dest = scratch.path("restore");
    fs::create_dir_all(&dest).expect("restore dir");
    let v = with(&["extract", &format!("{repo}::second")]);
    let refs: Vec<&str> = v.iter().map(String::as_str).collect();
    let out = Command::new(&peer.borg)
        .args(&refs)
        .current_dir(&dest)
        .envs(scratch.borg_env())
        .output()
        .expect("borg extract");
    ok(out, "borg extract");
    for f in ["small.txt", "later.txt"] {
        assert_eq!(
            fs::read(dest.join("src").join(f)).expect("restored"),
            fs::read(src.join(f)).expect("source"),
            "{f}"
        );
    }
}

#[test]
fn full_disk_on_a_local_repository() {
    let peer = common::borg14();
    let scratch = Scratch::new();
    let disk = Tmpfs::mount(&scratch.path("disk"), 48);
    let repo = disk.path.join("repo").display().to_string();
    full_disk(&scratch, &disk, &repo, &[], &peer, true);
}

/// The scenario through the loopback sshd, with `remote_path` as the server.
fn full_disk_over_ssh(remote_path: &str, server_frees_space: bool) {
    let peer = common::borg14();
    let sshd = Sshd::start();
    let scratch = Scratch::new();
    let disk = Tmpfs::mount(&scratch.path("disk"), 48);
    let repo = sshd.url(&disk.path.join("repo"));
    let rsh = sshd.rsh();
    full_disk(
        &scratch,
        &disk,
        &repo,
        &["--rsh", &rsh, "--remote-path", remote_path],
        &peer,
        server_frees_space,
    );
}

#[test]
fn full_disk_behind_borg_1_4_serve() {
    full_disk_over_ssh(&common::borg14().borg.display().to_string(), false);
}

#[test]
fn full_disk_behind_rborg_serve() {
    // rborg serve writes with rborg's repository code: the failed transaction's space is
    // free again once the client has gone.
    full_disk_over_ssh(&format!("{RBORG} serve"), true);
}
