//! End to end: `rborg run` against a repository served by real borg 1.4.5 over a loopback
//! sshd does create, prune (7/4/6), compact and the scheduled checks; hooks run around the
//! backup; the Pushgateway shows status 0 and a fresh timestamp; Prometheus's `wal` and
//! `chunks_head` are excluded; borg itself then checks and lists the repository.

mod common;

use std::fs;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use common::pushgateway::{get, sample, start_gateway};
use common::{borg_ok, Scratch, Sshd};

const RBORG: &str = env!("CARGO_BIN_EXE_rborg");

#[test]
fn daily_job_against_borg_1_4_5_serve_over_ssh() {
    let peer = common::borg14();
    let sshd = Sshd::start();
    let gateway = start_gateway();
    let scratch = Scratch::new();

    // A source tree with a Prometheus data directory.
    let src = scratch.path("src");
    let prom = src.join("prometheus/metrics2");
    for d in ["01HBLOCK", "wal", "chunks_head"] {
        fs::create_dir_all(prom.join(d)).expect("mkdir");
        fs::write(
            prom.join(d).join("data"),
            format!("{d} contents\n").repeat(500),
        )
        .expect("write");
    }
    fs::write(src.join("app.conf"), b"setting = 1\n").expect("write");

    let repo = scratch.path("repo");
    let url = sshd.url(&repo);
    let remote = peer.borg.display().to_string();
    let out = Command::new(RBORG)
        .args([
            "init",
            "-e",
            "repokey",
            "--rsh",
            &sshd.rsh(),
            "--remote-path",
            &remote,
            &url,
        ])
        .envs(scratch.borg_env())
        .output()
        .expect("rborg init");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let hooks_log = scratch.path("hooks.log");
    let config = scratch.path("config.yaml");
    fs::write(
        &config,
        format!(
            r#"source_directories:
    - {src}
repositories:
    - path: {url}
      label: nas
      ssh_command: {rsh}
      remote_path: {remote}
exclude_patterns:
    - {src}/prometheus/metrics2/wal
    - {src}/prometheus/metrics2/chunks_head
encryption_passphrase: rborg-test-passphrase
compression: auto,zstd
archive_name_format: 'app-{{now:%Y-%m-%dT%H:%M:%S.%f}}'
keep_daily: 7
keep_weekly: 4
keep_monthly: 6
checks:
    - name: repository
      frequency: 1 week
    - name: archives
      frequency: 1 week
    - name: data
      frequency: 1 week
commands:
    - before: action
      when: [create]
      run:
          - echo before-create >> {log}
    - after: action
      when: [create]
      run:
          - echo after-create >> {log}
pushgateway:
    url: http://127.0.0.1:{port}
    job: rborg
    instance: test-host
"#,
            src = src.display(),
            url = url,
            rsh = sshd.rsh(),
            remote = remote,
            log = hooks_log.display(),
            port = gateway.port,
        ),
    )
    .expect("config");
    let state = scratch.path("state");
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    for _ in 0..2 {
        let out = Command::new(RBORG)
            .args(["run", "-c", config.to_str().expect("utf-8"), "--state-dir"])
            .arg(&state)
            .envs(scratch.borg_env())
            .output()
            .expect("rborg run");
        assert!(
            out.status.success(),
            "rborg run failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Hooks ran around each create.
    let log = fs::read_to_string(&hooks_log).expect("hooks ran");
    assert_eq!(
        log,
        "before-create\nafter-create\nbefore-create\nafter-create\n"
    );

    // Two archives were made the same day; daily 7 keeps both (one per day, plus the oldest
    // fills the unmet quota), and borg agrees with what is there and checks it clean.
    let list = borg_ok(
        &peer,
        &scratch,
        &[
            "list",
            "--short",
            "--rsh",
            &sshd.rsh(),
            "--remote-path",
            &remote,
            &url,
        ],
    );
    let names = String::from_utf8_lossy(&list.stdout).lines().count();
    assert!(
        (1..=2).contains(&names),
        "{}",
        String::from_utf8_lossy(&list.stdout)
    );
    borg_ok(
        &peer,
        &scratch,
        &[
            "check",
            "--verify-data",
            "--rsh",
            &sshd.rsh(),
            "--remote-path",
            &remote,
            &url,
        ],
    );

    // The Prometheus exclusions held: only the block directory is in the archive.
    let last = String::from_utf8_lossy(&list.stdout)
        .lines()
        .last()
        .expect("archive")
        .to_string();
    let contents = borg_ok(
        &peer,
        &scratch,
        &[
            "list",
            "--short",
            "--rsh",
            &sshd.rsh(),
            "--remote-path",
            &remote,
            &format!("{url}::{last}"),
        ],
    );
    let contents = String::from_utf8_lossy(&contents.stdout);
    assert!(
        contents.contains("prometheus/metrics2/01HBLOCK/data"),
        "{contents}"
    );
    assert!(!contents.contains("/wal"), "{contents}");
    assert!(!contents.contains("chunks_head"), "{contents}");

    // The checks were due on the first run and recorded: the state directory has them.
    assert!(fs::read_dir(&state).expect("state dir").count() > 0);

    // The gateway has status 0 and a fresh success timestamp.
    let (status, metrics) = get(gateway.port, "/metrics").expect("gateway");
    assert_eq!(status, 200);
    let labels = [("job", "rborg"), ("instance", "test-host")];
    assert_eq!(
        sample(&metrics, "borgmatic_last_run_status", &labels),
        Some(0.0),
        "{metrics}"
    );
    let ts = sample(&metrics, "borgmatic_last_run_timestamp_seconds", &labels).expect("timestamp");
    assert!(
        ts >= before.floor(),
        "timestamp {ts} older than the run ({before})"
    );
}
