//! borgmatic (Debian's 1.7.7) as a real caller of the rborg command line: its `local_path`
//! points at the rborg binary, and it drives `init`, its default actions (prune, compact,
//! create, check with `--verify-data`), `list --json`, `info --json` and `extract` the way it
//! drives borg. Real borg then checks and lists what rborg wrote. One test uses a local
//! repository; the other goes through the loopback sshd to borg 1.2.4's `borg serve`.
//!
//! borgmatic chooses its flags by the version `rborg --version` reports (it only runs
//! `compact` for borg 1.2 and later), so the logs are checked for the commands it ran.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{borg_ok, pseudo_random, Peer, Scratch, Sshd};

const RBORG: &str = env!("CARGO_BIN_EXE_rborg");

/// Debian's borgmatic; the test fails (it does not skip) when it is missing.
fn borgmatic() -> PathBuf {
    let path = std::env::var_os("RBORG_BORGMATIC")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/borgmatic"));
    assert!(
        path.is_file(),
        "borgmatic not found at {} (apt-get install borgmatic, or set RBORG_BORGMATIC)",
        path.display()
    );
    path
}

/// A source tree: text, a multi-chunk random file, an empty file, a symlink, a subdirectory.
fn make_source(root: &Path) {
    fs::create_dir_all(root.join("etc/app")).expect("mkdir");
    fs::write(root.join("etc/app/app.conf"), b"listen = 127.0.0.1\n").expect("write");
    fs::write(root.join("etc/app/empty"), b"").expect("write");
    fs::write(root.join("data.bin"), pseudo_random(5_000_000, 3)).expect("write");
    fs::write(root.join("notes.txt"), "daily notes\n".repeat(20_000)).expect("write");
    std::os::unix::fs::symlink("etc/app/app.conf", root.join("link")).expect("symlink");
}

struct Borgmatic<'a> {
    scratch: &'a Scratch,
    config: PathBuf,
    log: PathBuf,
}

impl Borgmatic<'_> {
    /// Runs borgmatic with this test's config, home and log file; returns its output.
    fn run(&self, args: &[&str]) -> Output {
        let home = self.scratch.path("home");
        fs::create_dir_all(&home).expect("home");
        Command::new(borgmatic())
            .arg("-c")
            .arg(&self.config)
            // A log file instead of syslog (this machine's /dev/log refuses connections),
            // with every command borgmatic runs in it.
            .arg("--log-file")
            .arg(&self.log)
            .args(["--log-file-verbosity", "2"])
            .args(args)
            .env("HOME", &home)
            .envs(self.scratch.borg_env())
            .output()
            .expect("run borgmatic")
    }

    fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "borgmatic {args:?} failed ({}):\n{}\n{}\nlog:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            fs::read_to_string(&self.log).unwrap_or_default()
        );
        out
    }

    /// The rborg command lines borgmatic logged (the program path shortened to `rborg`).
    fn commands(&self) -> Vec<String> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once(&format!("{RBORG} ")).map(|(_, rest)| rest))
            .map(|rest| format!("rborg {rest}"))
            .collect()
    }
}

/// Extra lines for borgmatic 1.7's `location:` and `storage:` sections.
#[derive(Default)]
struct Extra {
    location: String,
    storage: String,
}

fn write_config(scratch: &Scratch, src: &Path, repo: &str, extra: &Extra) -> PathBuf {
    let config = scratch.path("config.yaml");
    fs::write(
        &config,
        format!(
            r#"location:
    source_directories:
        - {src}
    repositories:
        - {repo}
    local_path: {rborg}
{location_extra}storage:
    encryption_passphrase: "rborg-test-passphrase"
    compression: auto,zstd
{storage_extra}retention:
    keep_daily: 7
    keep_weekly: 4
    keep_monthly: 6
consistency:
    checks:
        - name: repository
        - name: archives
        - name: data
"#,
            src = src.display(),
            rborg = RBORG,
            location_extra = extra.location,
            storage_extra = extra.storage,
        ),
    )
    .expect("write config");
    fs::set_permissions(&config, fs::Permissions::from_mode(0o600)).expect("chmod config");
    config
}

/// The whole borgmatic life cycle against `repo`; `borg_args` are what real borg needs to
/// reach the same repository (`--rsh`/`--remote-path` for ssh) when it checks the result.
fn borgmatic_drives_rborg(
    scratch: &Scratch,
    repo: &str,
    extra: &Extra,
    peer: &Peer,
    borg_args: &[&str],
) {
    let src = scratch.path("src");
    make_source(&src);
    let bm = Borgmatic {
        scratch,
        config: write_config(scratch, &src, repo, extra),
        log: scratch.path("borgmatic.log"),
    };

    bm.ok(&["init", "--encryption", "repokey"]);
    // Two days' worth of borgmatic's default run: prune, compact, create, check.
    bm.ok(&[]);
    fs::write(src.join("etc/app/app.conf"), b"listen = 127.0.0.2\n").expect("write");
    bm.ok(&[]);

    let commands = bm.commands();
    let ran = |action: &str| {
        commands
            .iter()
            .any(|c| c.starts_with(&format!("rborg {action} ")))
    };
    for action in ["init", "prune", "compact", "create", "check"] {
        assert!(
            ran(action),
            "borgmatic never ran rborg {action}: {commands:#?}"
        );
    }
    assert!(
        commands
            .iter()
            .any(|c| c.starts_with("rborg check") && c.contains("--verify-data")),
        "{commands:#?}"
    );

    // borgmatic's JSON views come straight from rborg's --json output.
    let out = bm.ok(&["list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("list json");
    let archives = list[0]["archives"].as_array().expect("archives").clone();
    assert_eq!(archives.len(), 2, "{list}");
    let latest = archives[1]["name"].as_str().expect("name").to_string();
    let out = bm.ok(&["info", "--json", "--archive", "latest"]);
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).expect("info json");
    assert_eq!(info[0]["archives"][0]["name"], latest.as_str(), "{info}");
    assert_eq!(info[0]["encryption"]["mode"], "repokey", "{info}");

    // borgmatic extract restores the newest archive into a destination directory.
    let dest = scratch.path("restore");
    fs::create_dir_all(&dest).expect("mkdir");
    bm.ok(&[
        "extract",
        "--archive",
        "latest",
        "--destination",
        dest.to_str().expect("utf-8"),
    ]);
    let restored = dest.join(src.strip_prefix("/").expect("absolute"));
    for file in ["data.bin", "notes.txt", "etc/app/app.conf", "etc/app/empty"] {
        assert_eq!(
            fs::read(restored.join(file)).expect("restored file"),
            fs::read(src.join(file)).expect("source file"),
            "{file}"
        );
    }
    assert_eq!(
        fs::read_link(restored.join("link")).expect("symlink"),
        Path::new("etc/app/app.conf")
    );

    // Real borg reads what borgmatic made rborg write: same archives, clean data check.
    let mut args = vec!["list", "--short"];
    args.extend_from_slice(borg_args);
    args.push(repo);
    let out = borg_ok(peer, scratch, &args);
    let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    let rborg_names: Vec<&str> = archives
        .iter()
        .map(|a| a["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, rborg_names);
    let mut args = vec!["info", "--json"];
    args.extend_from_slice(borg_args);
    let latest_location = format!("{repo}::{latest}");
    args.push(&latest_location);
    let out = borg_ok(peer, scratch, &args);
    let borg_info: serde_json::Value = serde_json::from_slice(&out.stdout).expect("borg info");
    for key in ["nfiles", "original_size", "compressed_size"] {
        assert_eq!(
            info[0]["archives"][0]["stats"][key], borg_info["archives"][0]["stats"][key],
            "{key}: rborg {info} borg {borg_info}"
        );
    }
    let mut args = vec!["check", "--verify-data"];
    args.extend_from_slice(borg_args);
    args.push(repo);
    borg_ok(peer, scratch, &args);
}

#[test]
fn borgmatic_drives_rborg_on_a_local_repository() {
    let scratch = Scratch::new();
    let repo = scratch.path("repo").display().to_string();
    borgmatic_drives_rborg(&scratch, &repo, &Extra::default(), &common::borg14(), &[]);
}

#[test]
fn borgmatic_drives_rborg_over_ssh_to_borg_1_2_serve() {
    let peer = common::borg12();
    let sshd = Sshd::start();
    let scratch = Scratch::new();
    let repo = sshd.url(&scratch.path("repo"));
    let remote = peer.borg.display().to_string();
    let rsh = sshd.rsh();
    let extra = Extra {
        location: format!("    remote_path: {remote}\n"),
        storage: format!("    ssh_command: {rsh}\n"),
    };
    borgmatic_drives_rborg(
        &scratch,
        &repo,
        &extra,
        &peer,
        &["--rsh", &rsh, "--remote-path", &remote],
    );
}
