//! The shipped deployment files: every sample and example config parses, bad configs name the
//! line, `systemd-analyze verify` accepts the units, `promtool` accepts and passes the alert
//! rules' unit tests, and the example's quiescing hooks run in the right order around a backup,
//! including after a failed one (with stand-in `podman`, `systemctl` and `logger` on PATH that
//! record their calls).
//!
//! `systemd-analyze` and `promtool` are real peers (Debian's `systemd` and `prometheus`); the
//! tests fail when they are missing.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use rborg::ops::config::{Config, ConfigError};
use rborg::ops::runner::{
    ActionFailure, ActionKind, ActionReport, ActionRequest, Actions, RunPlan, Runner,
};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tool(name: &str, env: &str) -> PathBuf {
    let path = std::env::var(env).map(PathBuf::from).unwrap_or_else(|_| {
        ["/usr/bin", "/bin", "/usr/local/bin"]
            .iter()
            .map(|d| Path::new(d).join(name))
            .find(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from(name))
    });
    assert!(
        path.exists(),
        "{name} is missing (set {env} or run scripts/install-peers.sh)"
    );
    path
}

fn no_env() -> BTreeMap<String, String> {
    BTreeMap::new()
}

#[test]
fn sample_and_example_configs_parse() {
    let sample = rborg::ops::generate_sample();
    let c = Config::parse(sample, "sample", &no_env()).unwrap();
    assert_eq!(c.repositories.len(), 1);

    let example = root().join("contrib/config.example.yaml");
    let c = Config::load(&example, &no_env()).unwrap();
    assert_eq!(c.repositories[0].label.as_deref(), Some("nas"));
    assert_eq!(c.lock_wait(&c.repositories[0]), 600);
    assert_eq!(
        (c.keep_daily, c.keep_weekly, c.keep_monthly),
        (Some(7), Some(4), Some(6))
    );
    assert_eq!(c.compression.as_deref(), Some("auto,zstd"));
    assert!(c.exclude_patterns.iter().any(|p| p.ends_with("/wal")));
    assert!(c
        .exclude_patterns
        .iter()
        .any(|p| p.ends_with("/chunks_head")));
    assert_eq!(c.effective_checks().len(), 3);
    assert!(c.pushgateway.is_some());
    // `validate` is what `rborg config validate` calls.
    rborg::ops::validate(&example, &rborg::settings::Environment::from_process()).unwrap();
}

#[test]
fn bad_config_files_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "unknown key",
            "repositories:\n    - path: /r\nkeep_daily: 7\nkeep_wekly: 4\n",
            4,
            "keep_wekly",
        ),
        (
            "unknown key in a repository",
            "repositories:\n    - path: /r\n      lable: nas\n",
            3,
            "lable",
        ),
        (
            "wrong type",
            "repositories: [/r]\nsource_directories: [/etc]\nkeep_daily: seven\n",
            3,
            "keep_daily",
        ),
        (
            "wrong type in a nested map",
            "repositories: [/r]\npushgateway:\n    url: http://x:9091\n    timeout: [1]\n",
            4,
            "timeout",
        ),
        (
            "missing repositories",
            "source_directories:\n    - /etc\nkeep_daily: 7\n",
            1,
            "repositories",
        ),
        (
            "empty repositories",
            "source_directories: [/etc]\nrepositories: []\n",
            2,
            "repositories",
        ),
        (
            "bad check name",
            "repositories: [/r]\nchecks:\n    - name: everything\n",
            3,
            "everything",
        ),
    ];
    for (what, text, line, key) in cases {
        let path = dir.path().join("config.yaml");
        fs::write(&path, text).unwrap();
        let err =
            rborg::ops::validate(&path, &rborg::settings::Environment::from_process()).unwrap_err();
        let shown = err.to_string();
        match &err {
            ConfigError::Invalid { line: Some(l), .. } => {
                assert_eq!(*l, line, "{what}: {shown}")
            }
            other => panic!("{what}: no line in {other:?}"),
        }
        assert!(
            shown.starts_with(&format!("{}:{line}:", path.display())),
            "{what}: {shown}"
        );
        assert!(shown.contains(key), "{what}: {shown}");
    }
}

/// Copies the units to a temporary directory with ExecStart pointing at the built binary
/// (`systemd-analyze verify` insists that the executable exists).
fn units_in_tempdir() -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for name in [
        "rborg.service",
        "rborg.timer",
        "rborg-check.service",
        "rborg-check.timer",
    ] {
        let text = fs::read_to_string(root().join("contrib/systemd").join(name)).unwrap();
        let text = text.replace("/usr/local/bin/rborg", env!("CARGO_BIN_EXE_rborg"));
        let path = dir.path().join(name);
        fs::write(&path, text).unwrap();
        files.push(path);
    }
    (dir, files)
}

fn verify(files: &[PathBuf]) -> (bool, String) {
    let out = Command::new(tool("systemd-analyze", "RBORG_SYSTEMD_ANALYZE"))
        .arg("verify")
        .args(files)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout),
    )
}

#[test]
fn systemd_units_verify_cleanly() {
    let (_dir, files) = units_in_tempdir();
    let (ok, output) = verify(&files);
    // systemd-analyze only warns about bad values, so any output at all is a failure.
    assert!(ok && output.trim().is_empty(), "{output}");

    // The same check notices a broken unit (the assertion above can fail).
    let broken = files[0].with_file_name("broken.service");
    let text = fs::read_to_string(&files[0])
        .unwrap()
        .replace("ProtectSystem=full", "ProtectSystem=fully");
    fs::write(&broken, text).unwrap();
    let (_, output) = verify(&[broken]);
    assert!(
        output.contains("broken.service:") && output.contains("fully"),
        "{output}"
    );

    // What the timers promise: 07:00 daily and Sundays 10:00, persistent; the check randomised.
    let timer = fs::read_to_string(&files[1]).unwrap();
    assert!(timer.contains("OnCalendar=*-*-* 07:00:00") && timer.contains("Persistent=true"));
    let check_timer = fs::read_to_string(&files[3]).unwrap();
    assert!(check_timer.contains("OnCalendar=Sun *-*-* 10:00:00"));
    assert!(check_timer.contains("RandomizedDelaySec=10m"));
    let out = Command::new(tool("systemd-analyze", "RBORG_SYSTEMD_ANALYZE"))
        .args(["calendar", "--iterations=2", "Sun *-*-* 10:00:00"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Sun ") && text.contains("10:00:00"), "{text}");
}

#[test]
fn alert_rules_check_and_pass_their_unit_tests() {
    let promtool = tool("promtool", "RBORG_PROMTOOL");
    let dir = root().join("contrib/prometheus");
    let out = Command::new(&promtool)
        .args(["check", "rules", "backup.rules.yml"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(&promtool)
        .args(["test", "rules", "backup.rules.test.yml"])
        .current_dir(&dir)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.contains("SUCCESS"), "{text}");
}

/// Stand-in programs that append their argv to `$FAKE_LOG`.
fn fake_bin(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).unwrap();
    let podman = r#"#!/bin/sh
echo "podman $*" >> "$FAKE_LOG"
if [ "$1" = volume ] && [ "$2" = export ]; then
    [ "${FAKE_FAIL:-}" = export ] && { echo "Error: volume busy" >&2; exit 125; }
    out=""; prev=""
    for a in "$@"; do [ "$prev" = --output ] && out=$a; prev=$a; done
    [ -n "$out" ] || exit 125
    echo "volume contents" > "$out"
fi
exit 0
"#;
    let simple = |name: &str| format!("#!/bin/sh\necho \"{name} $*\" >> \"$FAKE_LOG\"\n");
    for (name, body) in [
        ("podman", podman.to_string()),
        ("systemctl", simple("systemctl")),
        ("logger", simple("logger")),
    ] {
        let p = bin.join(name);
        fs::write(&p, body).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    }
    bin
}

/// The archive actions: `create` logs, checks the export is in the staging directory, and
/// succeeds or fails as told.
struct Backup {
    log: PathBuf,
    staging: PathBuf,
    fail_create: bool,
    saw_export: Option<String>,
}

impl Actions for Backup {
    fn run(&mut self, req: &ActionRequest<'_>) -> Result<ActionReport, ActionFailure> {
        let mut f = fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.log)
            .unwrap();
        use std::io::Write;
        writeln!(f, "action {}", req.action.as_str()).unwrap();
        if req.action == ActionKind::Create {
            self.saw_export = fs::read_to_string(self.staging.join("app-db-data.tar")).ok();
            if self.fail_create {
                return Err(ActionFailure::fatal("Connection closed by remote host"));
            }
        }
        Ok(ActionReport::default())
    }
}

fn run_example(fail_create: bool, fail_export: bool) -> (i32, Vec<String>, Backup) {
    let dir = tempfile::tempdir().unwrap();
    let staging = dir.path().join("staging");
    let log = dir.path().join("calls");
    let bin = fake_bin(dir.path());
    let script = root().join("contrib/hooks/rborg-quiesce.sh");
    let text = fs::read_to_string(root().join("contrib/config.example.yaml"))
        .unwrap()
        .replace(
            "/usr/local/lib/rborg/rborg-quiesce.sh",
            &script.display().to_string(),
        )
        .replace("/var/lib/rborg/staging", &staging.display().to_string());
    let mut config = Config::parse(&text, "example", &no_env()).unwrap();
    // Monitoring is tested elsewhere; never reach for the example's host name.
    config.pushgateway = None;
    let mut plan = RunPlan::new(dir.path().join("state"));
    plan.actions = vec![ActionKind::Create, ActionKind::Prune, ActionKind::Compact];
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    plan.hook_environment = BTreeMap::from([
        ("PATH".to_string(), path),
        ("FAKE_LOG".to_string(), log.display().to_string()),
        (
            "FAKE_FAIL".to_string(),
            if fail_export { "export" } else { "" }.to_string(),
        ),
    ]);
    let mut backup = Backup {
        log: log.clone(),
        staging: staging.clone(),
        fail_create,
        saw_export: None,
    };
    let summary = Runner::new(&config, plan).run(&mut backup);
    let calls = fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .map(|l| l.replace(&staging.display().to_string(), "$STAGING"))
        .collect();
    // Nothing is left in the staging directory after the run, whatever happened.
    let left: Vec<_> = fs::read_dir(&staging)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "staging not cleaned: {left:?}");
    (summary.exit_code(), calls, backup)
}

#[test]
fn quiesce_hooks_stop_export_and_restart_around_a_backup() {
    let (code, calls, backup) = run_example(false, false);
    assert_eq!(code, 0);
    assert_eq!(
        calls,
        [
            "systemctl stop grafana-server.service",
            "podman stop --time 30 app-db",
            "podman volume export --output $STAGING/.app-db-data.tar.partial app-db-data",
            "podman start app-db",
            "action create",
            "podman start app-db",
            "systemctl start grafana-server.service",
            "action prune",
            "action compact",
        ]
    );
    assert_eq!(backup.saw_export.as_deref(), Some("volume contents\n"));
}

#[test]
fn services_restart_after_a_failed_backup() {
    let (code, calls, _) = run_example(true, false);
    assert_eq!(code, 2);
    assert_eq!(
        calls,
        [
            "systemctl stop grafana-server.service",
            "podman stop --time 30 app-db",
            "podman volume export --output $STAGING/.app-db-data.tar.partial app-db-data",
            "podman start app-db",
            "action create",
            "podman start app-db",
            "systemctl start grafana-server.service",
            "logger -t rborg -p user.err backup failed: nas: create: Connection closed by remote host",
        ]
    );
}

#[test]
fn services_restart_after_a_failed_export() {
    let (code, calls, backup) = run_example(false, true);
    assert_eq!(code, 2);
    assert_eq!(
        calls,
        [
            "systemctl stop grafana-server.service",
            "podman stop --time 30 app-db",
            "podman volume export --output $STAGING/.app-db-data.tar.partial app-db-data",
            // The backup never started; the container and the unit are started again.
            "podman start app-db",
            "systemctl start grafana-server.service",
            "logger -t rborg -p user.err backup failed: nas: before create: hook command \"$SCRIPT export-volume app-db-data $STAGING\" failed with exit status 2"
                .replace("$SCRIPT", &root().join("contrib/hooks/rborg-quiesce.sh").display().to_string())
                .as_str(),
        ]
    );
    assert_eq!(backup.saw_export, None);
}
