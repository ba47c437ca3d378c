//! `rborg break-lock` removes a lock that real borg holds (and that a dead borg left), after
//! which borg works on the repository again.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{borg, borg_init, borg_ok, wait_for_path, BorgProcess, Scratch};

#[test]
fn break_lock_frees_a_lock_held_by_borg() {
    for peer in [common::borg12(), common::borg14()] {
        let scratch = Scratch::new();
        let repo = scratch.path("repo");
        let repo_s = repo.to_str().expect("utf-8");
        borg_init(&peer, &scratch, &repo, "none");
        let holder = BorgProcess::spawn(&peer, &scratch, &["with-lock", repo_s, "sleep", "60"]);
        wait_for_path(&repo.join("lock.exclusive"), Duration::from_secs(20));
        // While the lock is held, borg with a short wait fails.
        let out = borg(&peer, &scratch, &["--lock-wait", "1", "list", repo_s]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "borg {} waits for the lock",
            peer.name
        );
        let out = Command::new(env!("CARGO_BIN_EXE_rborg"))
            .args(["break-lock", repo_s])
            .envs(scratch.borg_env())
            .output()
            .expect("rborg break-lock");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!repo.join("lock.exclusive").exists());
        assert!(!repo.join("lock.roster").exists());
        borg_ok(&peer, &scratch, &["--lock-wait", "1", "list", repo_s]);
        holder.terminate();
    }
}
