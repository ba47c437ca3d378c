//! The run: hook order, hook environment, failure of each hook type, retries with back-off,
//! exit codes, and check scheduling across runs. Hooks are real `sh -c` commands; the archive
//! actions are a stand-in that logs to the same file as the hooks, so the log shows the true
//! order of everything.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rborg::ops::config::{CheckName, Config};
use rborg::ops::runner::{
    ActionFailure, ActionKind, ActionReport, ActionRequest, ActionStatus, Actions, ArchiveStats,
    RunPlan, RunSummary, Runner,
};

/// A stand-in for the archive commands: logs `action:<name>:<label>` and answers as scripted.
struct Scripted {
    log: PathBuf,
    /// (action, label) → answers for successive attempts; missing means success.
    answers: BTreeMap<(String, String), Vec<Result<ActionReport, ActionFailure>>>,
    requests: Vec<(ActionKind, String, Vec<CheckName>, u32)>,
}

impl Scripted {
    fn new(log: &Path) -> Scripted {
        Scripted {
            log: log.to_path_buf(),
            answers: BTreeMap::new(),
            requests: Vec::new(),
        }
    }
    fn answer(
        mut self,
        action: &str,
        label: &str,
        answers: Vec<Result<ActionReport, ActionFailure>>,
    ) -> Scripted {
        self.answers
            .insert((action.to_string(), label.to_string()), answers);
        self
    }
}

impl Actions for Scripted {
    fn run(&mut self, req: &ActionRequest<'_>) -> Result<ActionReport, ActionFailure> {
        let label = req.repository.name().to_string();
        append(
            &self.log,
            &format!("action:{}:{label}", req.action.as_str()),
        );
        self.requests
            .push((req.action, label.clone(), req.checks.to_vec(), req.attempt));
        let key = (req.action.as_str().to_string(), label);
        match self.answers.get_mut(&key) {
            Some(list) if !list.is_empty() => list.remove(0),
            _ => Ok(ActionReport {
                warnings: vec![],
                stats: (req.action == ActionKind::Create).then_some(ArchiveStats {
                    nfiles: 3,
                    original_size: 300,
                    compressed_size: 200,
                    deduplicated_size: 100,
                }),
            }),
        }
    }
}

fn append(log: &Path, line: &str) {
    use std::io::Write;
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    writeln!(f, "{line}").unwrap();
}

fn read_log(log: &Path) -> Vec<String> {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        Setup {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn log(&self) -> PathBuf {
        self.dir.path().join("log")
    }
    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }
    /// Parses `yaml` with `$LOG` replaced by the log path.
    fn config(&self, yaml: &str) -> Config {
        let text = yaml.replace("$LOG", &self.log().display().to_string());
        Config::parse(&text, "test.yaml", &BTreeMap::new()).unwrap()
    }
    fn plan(&self, actions: &[ActionKind]) -> RunPlan {
        let mut plan = RunPlan::new(self.state());
        plan.actions = actions.to_vec();
        plan.config_path = "test.yaml".into();
        plan.hostname = "testhost".into();
        plan
    }
    fn run(&self, config: &Config, actions: &[ActionKind], stand_in: &mut Scripted) -> RunSummary {
        Runner::new(config, self.plan(actions))
            .with_sleep(|_| {})
            .run(stand_in)
    }
}

const ALL_HOOKS: &str = r#"
repositories:
  - path: /repo/one
    label: one
before_everything: ["echo before_everything >> $LOG"]
before_actions: ["echo before_repository:$RBORG_REPOSITORY_LABEL >> $LOG"]
before_backup: ["echo before_create:$RBORG_REPOSITORY_LABEL >> $LOG"]
after_backup: ["echo after_create_ok:$RBORG_REPOSITORY_LABEL >> $LOG"]
before_prune: ["echo before_prune >> $LOG"]
after_prune: ["echo after_prune_ok >> $LOG"]
after_actions: ["echo after_repository_ok >> $LOG"]
on_error: ["echo on_error:{repository}:$RBORG_ERROR >> $LOG"]
after_everything: ["echo after_everything_ok >> $LOG"]
finally: ["echo finally:$RBORG_STATE:$RBORG_EXIT_STATUS >> $LOG"]
commands:
  - after: action
    when: [create]
    run: ["echo restart_after_create:$RBORG_STATE >> $LOG"]
"#;

#[test]
fn hooks_run_in_order_around_successful_actions() {
    let s = Setup::new();
    let config = s.config(ALL_HOOKS);
    let mut stand_in = Scripted::new(&s.log());
    let summary = s.run(
        &config,
        &[ActionKind::Create, ActionKind::Prune],
        &mut stand_in,
    );
    assert_eq!(summary.exit_code(), 0, "{summary}");
    assert_eq!(
        read_log(&s.log()),
        [
            "before_everything",
            "before_repository:one",
            "before_create:one",
            "action:create:one",
            "after_create_ok:one",
            "restart_after_create:finish",
            "before_prune",
            "action:prune:one",
            "after_prune_ok",
            "after_repository_ok",
            "after_everything_ok",
            "finally:finish:0",
        ]
    );
    let create = &summary.repositories[0].actions[0];
    assert_eq!(create.stats.unwrap().nfiles, 3);
}

#[test]
fn restart_hooks_run_after_a_failed_action() {
    let s = Setup::new();
    let config = s.config(ALL_HOOKS);
    let mut stand_in = Scripted::new(&s.log()).answer(
        "create",
        "one",
        vec![Err(ActionFailure::fatal(
            "Repository /repo/one does not exist.",
        ))],
    );
    let summary = s.run(
        &config,
        &[ActionKind::Create, ActionKind::Prune],
        &mut stand_in,
    );
    assert_eq!(summary.exit_code(), 2, "{summary}");
    assert_eq!(
        read_log(&s.log()),
        [
            "before_everything",
            "before_repository:one",
            "before_create:one",
            "action:create:one",
            // after_backup (success only) is skipped; the stateless after hook still restarts.
            "restart_after_create:fail",
            // prune is not attempted after create failed on this repository.
            "on_error:/repo/one:one: create: Repository /repo/one does not exist.",
            "finally:fail:2",
        ]
    );
    assert_eq!(
        summary.repositories[0].actions[0].status,
        ActionStatus::Failed
    );
}

#[test]
fn failing_before_hook_skips_the_action_but_restart_hooks_run() {
    let s = Setup::new();
    let config = s.config(&ALL_HOOKS.replace(
        "before_backup: [\"echo before_create:$RBORG_REPOSITORY_LABEL >> $LOG\"]",
        "before_backup: [\"echo stop >> $LOG\", \"exit 4\", \"echo never >> $LOG\"]",
    ));
    let mut stand_in = Scripted::new(&s.log());
    let summary = s.run(&config, &[ActionKind::Create], &mut stand_in);
    assert_eq!(summary.exit_code(), 2);
    assert!(
        stand_in.requests.is_empty(),
        "create ran after its before hook failed"
    );
    let log = read_log(&s.log());
    assert_eq!(
        log,
        [
            "before_everything",
            "before_repository:one",
            "stop",
            "restart_after_create:fail",
            "on_error:/repo/one:one: before create: hook command \"exit 4\" failed with exit status 4",
            "finally:fail:2",
        ]
    );
}

#[test]
fn failing_before_everything_aborts_the_run_but_finally_runs() {
    let s = Setup::new();
    let config = s.config(&ALL_HOOKS.replace(
        "before_everything: [\"echo before_everything >> $LOG\"]",
        "before_everything: [\"false\"]",
    ));
    let mut stand_in = Scripted::new(&s.log());
    let summary = s.run(&config, &[ActionKind::Create], &mut stand_in);
    assert_eq!(summary.exit_code(), 2);
    assert!(stand_in.requests.is_empty());
    // borgmatic: errors in `everything` hooks do not trigger error hooks.
    assert_eq!(read_log(&s.log()), ["finally:fail:2"]);
}

#[test]
fn failing_after_hooks_are_errors_and_later_after_hooks_still_run() {
    let s = Setup::new();
    let config = s.config(
        r#"
repositories: [/r]
commands:
  - after: action
    when: [create]
    run: ["exit 7"]
  - after: action
    when: [create]
    run: ["echo second_after >> $LOG"]
  - after: error
    run: ["echo error_hook >> $LOG", "exit 9"]
  - after: everything
    run: ["echo finally >> $LOG", "exit 1"]
"#,
    );
    let mut stand_in = Scripted::new(&s.log());
    let summary = s.run(&config, &[ActionKind::Create], &mut stand_in);
    assert_eq!(summary.exit_code(), 2);
    assert_eq!(
        read_log(&s.log()),
        ["action:create:/r", "second_after", "error_hook", "finally"]
    );
    let all = summary.errors.join("\n");
    assert!(
        all.contains("after create: hook command \"exit 7\""),
        "{all}"
    );
    assert!(
        all.contains("after error: hook command \"exit 9\""),
        "{all}"
    );
    assert!(
        all.contains("after everything: hook command \"exit 1\""),
        "{all}"
    );
}

#[test]
fn hook_timeout_is_an_error_naming_the_command() {
    let s = Setup::new();
    let config = s.config(
        r#"
repositories: [/r]
commands:
  - before: action
    when: [create]
    timeout: 1
    run: ["sleep 20"]
  - after: everything
    run: ["echo finally >> $LOG"]
"#,
    );
    let started = std::time::Instant::now();
    let mut stand_in = Scripted::new(&s.log());
    let summary = s.run(&config, &[ActionKind::Create], &mut stand_in);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(summary.exit_code(), 2);
    assert!(stand_in.requests.is_empty());
    assert!(summary.errors[0].contains("timed out"), "{summary}");
    assert_eq!(read_log(&s.log()), ["finally"]);
}

#[test]
fn hooks_see_the_run_in_their_environment() {
    let s = Setup::new();
    let config = s.config(
        r#"
repositories:
  - path: ssh://nas/./host
    label: nas
before_backup:
  - 'echo "$RBORG_HOOK|$RBORG_ACTION|$RBORG_REPOSITORY|$RBORG_REPOSITORY_LABEL|$RBORG_CONFIGURATION_FILENAME|$RBORG_EXIT_STATUS" >> $LOG'
  - 'echo {repository_label} {configuration_filename} >> $LOG'
"#,
    );
    let mut stand_in = Scripted::new(&s.log());
    s.run(&config, &[ActionKind::Create], &mut stand_in);
    assert_eq!(
        read_log(&s.log()),
        [
            "before action|create|ssh://nas/./host|nas|test.yaml|0",
            "nas test.yaml",
            "action:create:nas",
        ]
    );
}

#[test]
fn soft_failure_skips_the_repository_without_error() {
    let s = Setup::new();
    let config = s.config(
        r#"
repositories: [/a, /b]
before_actions: ['test "$RBORG_REPOSITORY" != /a || exit 75']
"#,
    );
    let mut stand_in = Scripted::new(&s.log());
    let summary = s.run(&config, &[ActionKind::Create], &mut stand_in);
    assert_eq!(summary.exit_code(), 0, "{summary}");
    assert_eq!(read_log(&s.log()), ["action:create:/b"]);
}

#[test]
fn connection_loss_is_retried_with_exponential_back_off() {
    let s = Setup::new();
    let config = s.config("repositories: [/r]\nretries: 3\nretry_wait: 10\n");
    let mut stand_in = Scripted::new(&s.log()).answer(
        "create",
        "/r",
        vec![
            Err(ActionFailure::connection_lost(
                "Connection closed by remote host",
            )),
            Err(ActionFailure::connection_lost(
                "Connection closed by remote host",
            )),
            Ok(ActionReport::default()),
        ],
    );
    let mut waits = Vec::new();
    let summary = Runner::new(&config, s.plan(&[ActionKind::Create]))
        .with_sleep(|d| waits.push(d))
        .run(&mut stand_in);
    assert_eq!(summary.exit_code(), 0, "{summary}");
    assert_eq!(waits, [Duration::from_secs(10), Duration::from_secs(20)]);
    assert_eq!(summary.repositories[0].actions[0].attempts, 3);
    let attempts: Vec<u32> = stand_in.requests.iter().map(|r| r.3).collect();
    assert_eq!(attempts, [1, 2, 3]);

    // Retries run out: the last failure is the error.
    let mut stand_in = Scripted::new(&s.log()).answer(
        "create",
        "/r",
        vec![Err(ActionFailure::connection_lost("gone")); 5],
    );
    let mut waits = Vec::new();
    let summary = Runner::new(&config, s.plan(&[ActionKind::Create]))
        .with_sleep(|d| waits.push(d))
        .run(&mut stand_in);
    assert_eq!(summary.exit_code(), 2);
    assert_eq!(waits.len(), 3);
    assert_eq!(waits[2], Duration::from_secs(40));
    assert_eq!(summary.repositories[0].actions[0].attempts, 4);

    // A failure that is not a lost connection is not retried.
    let mut stand_in = Scripted::new(&s.log()).answer(
        "create",
        "/r",
        vec![Err(ActionFailure::fatal("passphrase wrong"))],
    );
    let summary = s.run(&config, &[ActionKind::Create], &mut stand_in);
    assert_eq!(summary.exit_code(), 2);
    assert_eq!(stand_in.requests.len(), 1);
}

#[test]
fn exit_code_is_the_highest_severity_and_other_repositories_still_run() {
    let s = Setup::new();
    let config = s.config("repositories: [/a, /b, /c]\n");
    let warning = || {
        Ok(ActionReport {
            warnings: vec!["file changed while we backed it up".into()],
            stats: None,
        })
    };
    // Only a warning: exit 1.
    let mut stand_in = Scripted::new(&s.log()).answer("create", "/b", vec![warning()]);
    let summary = s.run(&config, &[ActionKind::Create], &mut stand_in);
    assert_eq!(summary.exit_code(), 1, "{summary}");
    assert_eq!(summary.warnings.len(), 1);
    // A warning and an error: the error wins, and /c still runs after /a failed.
    let mut stand_in = Scripted::new(&s.log())
        .answer(
            "create",
            "/a",
            vec![Err(ActionFailure::fatal("lock timeout"))],
        )
        .answer("create", "/b", vec![warning()]);
    let summary = s.run(
        &config,
        &[ActionKind::Create, ActionKind::Prune],
        &mut stand_in,
    );
    assert_eq!(summary.exit_code(), 2, "{summary}");
    let ran: Vec<String> = stand_in
        .requests
        .iter()
        .map(|r| format!("{}:{}", r.0.as_str(), r.1))
        .collect();
    assert_eq!(
        ran,
        [
            "create:/a",
            "create:/b",
            "prune:/b",
            "create:/c",
            "prune:/c"
        ]
    );
    let text = summary.to_string();
    assert!(text.contains("rborg run failed"), "{text}");
    assert!(text.contains("FAILED: lock timeout"), "{text}");
}

const CHECKS: &str = r#"
repositories:
  - path: /repo/one
    label: one
checks:
  - name: repository
    frequency: 1 week
  - name: archives
    frequency: always
  - name: data
    frequency: 2 weeks
  - name: extract
    frequency: disabled
"#;

fn at(days: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + days * 86_400)
}

fn run_checks_at(
    s: &Setup,
    config: &Config,
    when: SystemTime,
    force: bool,
) -> (RunSummary, Vec<Vec<CheckName>>) {
    let mut stand_in = Scripted::new(&s.log());
    let mut plan = s.plan(&[ActionKind::Check]);
    plan.force_checks = force;
    let summary = Runner::new(config, plan)
        .with_clock(move || when)
        .run(&mut stand_in);
    let checks = stand_in.requests.iter().map(|r| r.2.clone()).collect();
    (summary, checks)
}

#[test]
fn checks_run_when_due_and_state_persists_between_runs() {
    use CheckName::*;
    let s = Setup::new();
    let config = s.config(CHECKS);
    let (summary, ran) = run_checks_at(&s, &config, at(0), false);
    assert_eq!(summary.exit_code(), 0);
    assert_eq!(ran, [vec![Repository, Archives, Data]]);
    // The next day only the "always" check is due.
    let (_, ran) = run_checks_at(&s, &config, at(1), false);
    assert_eq!(ran, [vec![Archives]]);
    // A week later the repository check is due again, the data check not yet.
    let (_, ran) = run_checks_at(&s, &config, at(7), false);
    assert_eq!(ran, [vec![Repository, Archives]]);
    let (_, ran) = run_checks_at(&s, &config, at(14), false);
    assert_eq!(ran, [vec![Repository, Archives, Data]]);
    // --force runs everything that is not disabled.
    let (_, ran) = run_checks_at(&s, &config, at(15), true);
    assert_eq!(ran, [vec![Repository, Archives, Data]]);
    // The state is one JSON file per repository and check.
    let files: Vec<_> = walk(&s.state());
    assert_eq!(files.len(), 3, "{files:?}");
    assert!(files.iter().all(|f| f.ends_with(".json")));
}

#[test]
fn nothing_due_skips_the_check_and_failed_checks_are_not_recorded() {
    let s = Setup::new();
    let config = s.config(
        "repositories: [/r]\nchecks: [{name: repository, frequency: 1 week}]\nbefore_check: ['echo before_check >> $LOG']\n",
    );
    // A check that finds problems (borg rc 1) is a failure, as in borgmatic, and is not recorded.
    let mut stand_in = Scripted::new(&s.log()).answer(
        "check",
        "/r",
        vec![Ok(ActionReport {
            warnings: vec!["1 orphaned object".into()],
            stats: None,
        })],
    );
    let mut plan = s.plan(&[ActionKind::Check]);
    plan.actions = vec![ActionKind::Check];
    let summary = Runner::new(&config, plan)
        .with_clock(|| at(0))
        .run(&mut stand_in);
    assert_eq!(summary.exit_code(), 2);
    assert!(walk(&s.state()).is_empty());
    // Passing now: recorded; a second run the same day skips the action and its hooks.
    let (summary, ran) = run_checks_at(&s, &config, at(0), false);
    assert_eq!((summary.exit_code(), ran.len()), (0, 1));
    fs::remove_file(s.log()).unwrap();
    let (summary, ran) = run_checks_at(&s, &config, at(1), false);
    assert_eq!((summary.exit_code(), ran.len()), (0, 0));
    assert_eq!(
        summary.repositories[0].actions[0].status,
        ActionStatus::Skipped
    );
    assert!(
        read_log(&s.log()).is_empty(),
        "hooks ran for a skipped check"
    );
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

/// An action that raises SIGTERM against this process, as systemd does on `systemctl stop`.
struct Terminated {
    log: PathBuf,
    saw_cancel: bool,
}

impl Actions for Terminated {
    fn run(&mut self, req: &ActionRequest<'_>) -> Result<ActionReport, ActionFailure> {
        append(
            &self.log,
            &format!("action:{}:{}", req.action.as_str(), req.repository.name()),
        );
        // SAFETY: raise(3) only sends a signal to this process; the handler sets a flag.
        unsafe {
            libc::raise(libc::SIGTERM);
        }
        let cancel = req.cancel.expect("the plan has a cancel flag");
        self.saw_cancel = cancel.load(std::sync::atomic::Ordering::SeqCst);
        Err(ActionFailure::connection_lost("interrupted"))
    }
}

#[test]
fn sigterm_stops_the_run_but_the_restart_hooks_still_run() {
    let s = Setup::new();
    let config = s.config(
        r#"
repositories: [/a, /b]
retries: 3
before_backup: ["echo stop_services >> $LOG"]
commands:
  - after: action
    when: [create]
    run: ["echo start_services:$RBORG_STATE >> $LOG"]
on_error: ["echo on_error >> $LOG"]
finally: ["echo finally >> $LOG"]
"#,
    );
    let mut plan = s.plan(&[ActionKind::Create, ActionKind::Prune]);
    plan.cancel = Some(rborg::ops::runner::cancel_on_signals().unwrap());
    let mut stand_in = Terminated {
        log: s.log(),
        saw_cancel: false,
    };
    let summary = Runner::new(&config, plan)
        .with_sleep(|_| {})
        .run(&mut stand_in);
    // Still alive: the signal only set the flag. No retry, no prune, no second repository.
    assert!(stand_in.saw_cancel);
    assert_eq!(summary.exit_code(), 2);
    assert_eq!(
        read_log(&s.log()),
        [
            "stop_services",
            "action:create:/a",
            "start_services:fail",
            "on_error",
            "finally",
        ]
    );
    assert!(
        summary.to_string().contains("interrupted by a signal"),
        "{summary}"
    );
}

#[test]
fn hook_timeout_applies_to_every_hook_without_its_own() {
    let s = Setup::new();
    let config = s.config(
        "repositories: [/r]\nhook_timeout: 1\nbefore_everything: ['sleep 20']\nfinally: ['echo finally >> $LOG']\n",
    );
    let started = std::time::Instant::now();
    let mut stand_in = Scripted::new(&s.log());
    let summary = s.run(&config, &[ActionKind::Create], &mut stand_in);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(summary.exit_code(), 2);
    assert!(
        summary.errors[0].contains("timed out after 1 s"),
        "{summary}"
    );
    assert_eq!(read_log(&s.log()), ["finally"]);
}

#[test]
fn only_selected_repositories_run_and_check_repositories_limits_checks() {
    let s = Setup::new();
    let config = s.config(
        "repositories:\n  - path: /a\n    label: a\n  - path: /b\n    label: b\ncheck_repositories: [b]\nchecks: [{name: repository, frequency: always}]\n",
    );
    let mut plan = s.plan(&[ActionKind::Create]);
    plan.only_repositories = vec!["/b".into()];
    let mut stand_in = Scripted::new(&s.log());
    Runner::new(&config, plan).run(&mut stand_in);
    assert_eq!(read_log(&s.log()), ["action:create:b"]);

    fs::remove_file(s.log()).unwrap();
    let mut stand_in = Scripted::new(&s.log());
    let summary = s.run(&config, &[ActionKind::Check], &mut stand_in);
    assert_eq!(read_log(&s.log()), ["action:check:b"]);
    assert_eq!(
        summary.repositories[0].actions[0].status,
        ActionStatus::Skipped
    );
}
