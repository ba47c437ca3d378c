//! The run: hooks, actions for every repository with retries, check schedules, one summary,
//! borg's exit code, and monitoring at the end.
//!
//! Order, as borgmatic 2 documents it:
//! before everything → [monitoring start] → per repository: before repository → per action:
//! before action, the action, after action → after repository → after error (if anything failed)
//! → after everything → [monitoring finish/fail, Pushgateway].
//!
//! A failing `before` hook skips what it guards (the action, the repository, or the whole run)
//! and counts as an error, but the matching `after` hooks whose `states` include `fail` (or that
//! list no states: rborg's `finally`) still run, so services stopped for the backup are started
//! again. An action failure stops the remaining actions of that repository; the next repository
//! still runs.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::config::{CheckName, Config, HookPoint, HookState, PingState, RepositoryConfig};
use super::healthchecks;
use super::hooks::{HookContext, HookError, HookRunner};
use super::pushgateway;
use super::schedule::{CheckState, ScheduleError};

/// The archive actions a run can include, in borgmatic's default order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActionKind {
    /// `borg create`.
    Create,
    /// `borg prune`.
    Prune,
    /// `borg compact`.
    Compact,
    /// `borg check` (only the checks that are due).
    Check,
}

impl ActionKind {
    /// borgmatic's name for the action (used in `when:` and hook variables).
    pub fn as_str(&self) -> &'static str {
        match self {
            ActionKind::Create => "create",
            ActionKind::Prune => "prune",
            ActionKind::Compact => "compact",
            ActionKind::Check => "check",
        }
    }

    /// Parses an action name.
    pub fn parse(name: &str) -> Option<ActionKind> {
        match name {
            "create" => Some(ActionKind::Create),
            "prune" => Some(ActionKind::Prune),
            "compact" => Some(ActionKind::Compact),
            "check" => Some(ActionKind::Check),
            _ => None,
        }
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The statistics of a created archive (`borg create --json`'s `archive.stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArchiveStats {
    /// Number of files.
    pub nfiles: u64,
    /// Bytes before compression.
    pub original_size: u64,
    /// Bytes after compression.
    pub compressed_size: u64,
    /// Bytes new to the repository.
    pub deduplicated_size: u64,
}

/// What the runner asks an action to do.
#[derive(Debug)]
pub struct ActionRequest<'a> {
    /// Which action.
    pub action: ActionKind,
    /// On which repository.
    pub repository: &'a RepositoryConfig,
    /// The whole configuration (sources, retention, compression, …).
    pub config: &'a Config,
    /// For `Check`: the checks that are due (never empty for a check request).
    pub checks: &'a [CheckName],
    /// 1 for the first attempt, 2 for the first retry, …
    pub attempt: u32,
    /// Set when the run is asked to stop (SIGTERM): a long action should end early, as an
    /// interrupted borg would, and return a failure.
    pub cancel: Option<&'a AtomicBool>,
}

/// A finished action: fine, or fine with warnings (borg's rc 1).
#[derive(Debug, Clone, Default)]
pub struct ActionReport {
    /// Warnings (files that changed while read, …); non-empty makes the action a warning.
    pub warnings: Vec<String>,
    /// For `Create`: the new archive's statistics.
    pub stats: Option<ArchiveStats>,
}

/// A failed action.
#[derive(Debug, Clone)]
pub struct ActionFailure {
    /// One line saying what went wrong.
    pub message: String,
    /// Output of the failed command worth showing to `on_error` hooks (`{output}`).
    pub output: String,
    /// Whether trying again may help (connection lost, lock timeout): only these are retried.
    pub retryable: bool,
}

impl ActionFailure {
    /// A failure that a retry will not fix.
    pub fn fatal(message: impl Into<String>) -> ActionFailure {
        ActionFailure {
            message: message.into(),
            output: String::new(),
            retryable: false,
        }
    }

    /// A lost connection or similar, worth retrying.
    pub fn connection_lost(message: impl Into<String>) -> ActionFailure {
        ActionFailure {
            message: message.into(),
            output: String::new(),
            retryable: true,
        }
    }
}

/// The archive commands, provided by the caller: the real create/prune/compact/check, or a
/// stand-in in tests.
pub trait Actions {
    /// Runs one action on one repository.
    fn run(&mut self, request: &ActionRequest<'_>) -> Result<ActionReport, ActionFailure>;
}

/// borg's severity classes; the highest one of a run is its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Severity {
    /// rc 0.
    #[default]
    Success,
    /// rc 1.
    Warning,
    /// rc 2.
    Error,
}

impl Severity {
    /// borg's legacy exit code for the class.
    pub fn exit_code(&self) -> i32 {
        match self {
            Severity::Success => 0,
            Severity::Warning => 1,
            Severity::Error => 2,
        }
    }
}

/// How one action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionStatus {
    /// Done, no warnings.
    Ok,
    /// Done with warnings.
    Warning,
    /// Failed (or its before hook failed, or its after hook failed).
    Failed,
    /// Not run: no checks due, or a soft failure.
    Skipped,
}

impl ActionStatus {
    /// Whether the action did its job (with or without warnings).
    pub fn succeeded(&self) -> bool {
        matches!(self, ActionStatus::Ok | ActionStatus::Warning)
    }
}

/// One action of one repository in the summary.
#[derive(Debug, Clone)]
pub struct ActionOutcome {
    /// Which action.
    pub action: ActionKind,
    /// How it ended.
    pub status: ActionStatus,
    /// Why it failed, warned or was skipped.
    pub message: Option<String>,
    /// Attempts made (0 when it never ran).
    pub attempts: u32,
    /// Time spent in the action itself.
    pub duration: Duration,
    /// For `Create`: statistics of the new archive.
    pub stats: Option<ArchiveStats>,
    /// For `Check`: the checks that ran.
    pub checks: Vec<CheckName>,
}

/// One repository in the summary.
#[derive(Debug, Clone)]
pub struct RepositoryOutcome {
    /// Its label (or path).
    pub label: String,
    /// Its path.
    pub path: String,
    /// Its actions, in the order they ran.
    pub actions: Vec<ActionOutcome>,
}

/// The result of a whole run.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// When the run started.
    pub started: SystemTime,
    /// When its last hook finished (before monitoring).
    pub finished: SystemTime,
    /// Per repository.
    pub repositories: Vec<RepositoryOutcome>,
    /// Every error, one line each (actions, hooks, check state).
    pub errors: Vec<String>,
    /// Every warning, one line each (action warnings, monitoring failures).
    pub warnings: Vec<String>,
    /// The highest severity seen; monitoring failures do not raise it.
    pub severity: Severity,
    /// The actions the run was asked to do (what the metrics may speak for).
    pub planned_actions: Vec<ActionKind>,
}

impl RunSummary {
    /// borg's exit code for the run: 0 ok, 1 warning, 2 error.
    pub fn exit_code(&self) -> i32 {
        self.severity.exit_code()
    }

    /// How long the run took.
    pub fn duration(&self) -> Duration {
        self.finished
            .duration_since(self.started)
            .unwrap_or(Duration::ZERO)
    }
}

impl fmt::Display for RunSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = match self.severity {
            Severity::Success => "succeeded",
            Severity::Warning => "succeeded with warnings",
            Severity::Error => "failed",
        };
        writeln!(
            f,
            "rborg run {word} in {:.1} s (exit code {})",
            self.duration().as_secs_f64(),
            self.exit_code()
        )?;
        for repo in &self.repositories {
            writeln!(f, "{}:", repo.label)?;
            for a in &repo.actions {
                let status = match a.status {
                    ActionStatus::Ok => "ok",
                    ActionStatus::Warning => "warning",
                    ActionStatus::Failed => "FAILED",
                    ActionStatus::Skipped => "skipped",
                };
                write!(f, "  {:<8} {status}", a.action.as_str())?;
                if a.attempts > 1 {
                    write!(f, " after {} attempts", a.attempts)?;
                }
                if !a.checks.is_empty() {
                    let names: Vec<_> = a.checks.iter().map(|c| c.as_str()).collect();
                    write!(f, " [{}]", names.join(", "))?;
                }
                if let Some(s) = &a.stats {
                    write!(
                        f,
                        " ({} files, {} B original, {} B compressed, {} B deduplicated)",
                        s.nfiles, s.original_size, s.compressed_size, s.deduplicated_size
                    )?;
                }
                if let Some(m) = &a.message {
                    write!(f, ": {m}")?;
                }
                writeln!(f)?;
            }
        }
        for e in &self.errors {
            writeln!(f, "error: {e}")?;
        }
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        Ok(())
    }
}

/// What to run, and where to keep state.
#[derive(Debug, Clone)]
pub struct RunPlan {
    /// Actions in order (default: create, prune, compact, check).
    pub actions: Vec<ActionKind>,
    /// Directory for check state (`/var/lib/rborg` under systemd's `StateDirectory=`).
    pub state_dir: PathBuf,
    /// Run every configured check, due or not (`--force`), and record them.
    pub force_checks: bool,
    /// Only these repositories (label or path); empty means all.
    pub only_repositories: Vec<String>,
    /// The configuration file's name, for hooks' `{configuration_filename}`.
    pub config_path: String,
    /// This host's name, the default Pushgateway `instance`.
    pub hostname: String,
    /// Extra environment variables for hook commands (on top of rborg's own environment).
    pub hook_environment: BTreeMap<String, String>,
    /// When this becomes true (see [`cancel_on_signals`]) the run starts no further action or
    /// retry, but still runs the `after`, error and `finally` hooks so stopped services start.
    pub cancel: Option<Arc<AtomicBool>>,
}

/// A flag that SIGTERM, SIGINT and SIGHUP set instead of ending the process, for
/// [`RunPlan::cancel`]. Under systemd (`KillMode=mixed`) this is what lets a stopped backup
/// restart the services it stopped.
pub fn cancel_on_signals() -> std::io::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(signal, Arc::clone(&flag))?;
    }
    Ok(flag)
}

impl RunPlan {
    /// borgmatic's default actions with state under `state_dir`.
    pub fn new(state_dir: impl Into<PathBuf>) -> RunPlan {
        RunPlan {
            actions: vec![
                ActionKind::Create,
                ActionKind::Prune,
                ActionKind::Compact,
                ActionKind::Check,
            ],
            state_dir: state_dir.into(),
            force_checks: false,
            only_repositories: Vec::new(),
            config_path: String::new(),
            hostname: pushgateway::hostname(),
            hook_environment: BTreeMap::new(),
            cancel: None,
        }
    }
}

/// One hook entry, normalised from `commands:` or the borgmatic-1 keys.
#[derive(Debug, Clone)]
struct HookSet {
    before: bool,
    point: HookPoint,
    when: Vec<String>,
    states: Vec<HookState>,
    run: Vec<String>,
    timeout: Option<Duration>,
}

fn hook_sets(config: &Config) -> Vec<HookSet> {
    let mut sets = Vec::new();
    let mut add =
        |before: bool, point: HookPoint, when: &[&str], states: &[HookState], run: &[String]| {
            if !run.is_empty() {
                sets.push(HookSet {
                    before,
                    point,
                    when: when.iter().map(|s| s.to_string()).collect(),
                    states: states.to_vec(),
                    run: run.to_vec(),
                    timeout: None,
                });
            }
        };
    let finish = [HookState::Finish];
    // borgmatic 1's keys: `after_*` ran only when what they follow succeeded.
    add(
        true,
        HookPoint::Everything,
        &[],
        &[],
        &config.before_everything,
    );
    add(
        true,
        HookPoint::Repository,
        &[],
        &[],
        &config.before_actions,
    );
    add(
        true,
        HookPoint::Action,
        &["create"],
        &[],
        &config.before_backup,
    );
    add(
        true,
        HookPoint::Action,
        &["prune"],
        &[],
        &config.before_prune,
    );
    add(
        true,
        HookPoint::Action,
        &["compact"],
        &[],
        &config.before_compact,
    );
    add(
        true,
        HookPoint::Action,
        &["check"],
        &[],
        &config.before_check,
    );
    add(
        false,
        HookPoint::Action,
        &["create"],
        &finish,
        &config.after_backup,
    );
    add(
        false,
        HookPoint::Action,
        &["prune"],
        &finish,
        &config.after_prune,
    );
    add(
        false,
        HookPoint::Action,
        &["compact"],
        &finish,
        &config.after_compact,
    );
    add(
        false,
        HookPoint::Action,
        &["check"],
        &finish,
        &config.after_check,
    );
    add(
        false,
        HookPoint::Repository,
        &[],
        &finish,
        &config.after_actions,
    );
    add(false, HookPoint::Error, &[], &[], &config.on_error);
    add(
        false,
        HookPoint::Everything,
        &[],
        &finish,
        &config.after_everything,
    );
    add(
        false,
        HookPoint::Everything,
        &[],
        &[],
        &config.finally_commands,
    );
    for c in &config.commands {
        let (before, point) = match (c.before, c.after) {
            (Some(p), _) => (true, p),
            (None, Some(p)) => (false, p),
            (None, None) => continue,
        };
        // One configuration file per run: `configuration` and `everything` coincide.
        let point = if point == HookPoint::Configuration {
            HookPoint::Everything
        } else {
            point
        };
        sets.push(HookSet {
            before,
            point,
            when: c.when.clone(),
            states: c.states.clone(),
            run: c.run.clone(),
            timeout: c.timeout.map(Duration::from_secs),
        });
    }
    sets
}

/// Runs a plan against a configuration.
pub struct Runner<'a> {
    config: &'a Config,
    plan: RunPlan,
    hooks: HookRunner,
    hook_sets: Vec<HookSet>,
    clock: Box<dyn Fn() -> SystemTime + 'a>,
    sleep: Box<dyn FnMut(Duration) + 'a>,
    // Run state.
    summary: RunSummary,
    first_error: Option<FirstError>,
    current_repository: Option<(String, String)>,
    cancel_recorded: bool,
}

/// The first error of a run, for `after: error` hooks (`{error}`, `{output}`, `{repository}`).
#[derive(Debug, Clone, Default)]
struct FirstError {
    message: String,
    output: String,
    repository: Option<(String, String)>,
}

impl FirstError {
    fn context(&self, base: HookContext) -> HookContext {
        let mut c = base
            .with("error", self.message.clone())
            .with("output", self.output.clone());
        if let Some((path, label)) = &self.repository {
            c = c
                .with("repository", path.clone())
                .with("repository_label", label.clone());
        }
        c
    }
}

/// The longest wait between retries, however many there are.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(6 * 3600);

impl<'a> Runner<'a> {
    /// A runner using the system clock and real sleeps.
    pub fn new(config: &'a Config, plan: RunPlan) -> Runner<'a> {
        let now = SystemTime::now();
        Runner {
            config,
            hooks: HookRunner {
                working_directory: config.working_directory.as_ref().map(PathBuf::from),
                default_timeout: config.default_hook_timeout(),
                environment: plan.hook_environment.clone(),
            },
            hook_sets: hook_sets(config),
            plan,
            clock: Box::new(SystemTime::now),
            sleep: Box::new(std::thread::sleep),
            summary: RunSummary {
                started: now,
                finished: now,
                repositories: Vec::new(),
                errors: Vec::new(),
                warnings: Vec::new(),
                severity: Severity::Success,
                planned_actions: Vec::new(),
            },
            first_error: None,
            current_repository: None,
            cancel_recorded: false,
        }
    }

    /// Replaces the clock (tests, or a caller that fixes "now" for a whole run).
    pub fn with_clock(mut self, clock: impl Fn() -> SystemTime + 'a) -> Runner<'a> {
        self.clock = Box::new(clock);
        self
    }

    /// Replaces the sleep used between retries.
    pub fn with_sleep(mut self, sleep: impl FnMut(Duration) + 'a) -> Runner<'a> {
        self.sleep = Box::new(sleep);
        self
    }

    fn error(&mut self, message: String, output: String) {
        log::error!("{message}");
        if self.first_error.is_none() {
            self.first_error = Some(FirstError {
                message: message.clone(),
                output,
                repository: self.current_repository.clone(),
            });
        }
        self.summary.errors.push(message);
        self.summary.severity = self.summary.severity.max(Severity::Error);
    }

    /// Whether the run was asked to stop; the first time, records it as an error.
    fn cancelled(&mut self) -> bool {
        let set = self
            .plan
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::SeqCst));
        if set && !self.cancel_recorded {
            self.cancel_recorded = true;
            self.error(
                "interrupted by a signal: skipping the remaining actions".to_string(),
                String::new(),
            );
        }
        set
    }

    fn base_context(&self) -> HookContext {
        HookContext::default()
            .with("configuration_filename", self.plan.config_path.clone())
            .with("exit_status", self.summary.severity.exit_code().to_string())
    }

    fn planned(&self, name: &str) -> bool {
        self.plan.actions.iter().any(|a| a.as_str() == name)
    }

    /// Runs the hooks of one point. `before` hooks stop at the first failure; `after` hooks all
    /// run (each entry stops at its own first failure) so one failed restart does not prevent
    /// the next. Returns the failures (soft failures included, so callers can tell them apart).
    fn run_hooks(
        &mut self,
        before: bool,
        point: HookPoint,
        action: Option<ActionKind>,
        failed: bool,
        context: &HookContext,
    ) -> Vec<HookError> {
        let mut errors = Vec::new();
        let sets: Vec<HookSet> = self
            .hook_sets
            .iter()
            .filter(|s| s.before == before && s.point == point)
            .filter(|s| {
                s.when.is_empty()
                    || match action {
                        Some(a) => s.when.iter().any(|w| w == a.as_str()),
                        None => s.when.iter().any(|w| self.planned(w)),
                    }
            })
            .filter(|s| {
                s.states.is_empty()
                    || s.states.contains(if failed {
                        &HookState::Fail
                    } else {
                        &HookState::Finish
                    })
            })
            .cloned()
            .collect();
        let mut context = context.clone();
        context = context.with(
            "hook",
            format!(
                "{} {}",
                if before { "before" } else { "after" },
                match point {
                    HookPoint::Action => "action",
                    HookPoint::Repository => "repository",
                    HookPoint::Configuration => "configuration",
                    HookPoint::Everything => "everything",
                    HookPoint::Error => "error",
                }
            ),
        );
        if !before {
            context = context.with("state", if failed { "fail" } else { "finish" });
        }
        for set in sets {
            if let Err(e) = self.hooks.run_all(&set.run, &context, set.timeout) {
                log::warn!("{e}");
                let stop = before;
                errors.push(e);
                if stop {
                    break;
                }
            }
        }
        errors
    }

    /// Runs the plan: hooks, every action on every repository, monitoring. Never panics on
    /// failures; everything that went wrong is in the summary and its exit code.
    pub fn run(mut self, actions: &mut dyn Actions) -> RunSummary {
        let wall = Instant::now();
        self.summary.started = (self.clock)();
        self.summary.planned_actions = self.plan.actions.clone();
        let base = self.base_context();
        let before_errors = self.run_hooks(true, HookPoint::Everything, None, false, &base);
        let mut aborted = false;
        for e in before_errors {
            if matches!(e, HookError::SoftFailure { .. }) {
                log::info!("{e}; skipping the run");
            } else {
                self.error(format!("before everything: {e}"), String::new());
            }
            aborted = true;
        }
        if !aborted {
            self.ping(PingState::Start);
            let repos: Vec<RepositoryConfig> = self
                .config
                .repositories
                .iter()
                .filter(|r| {
                    self.plan.only_repositories.is_empty()
                        || self
                            .plan
                            .only_repositories
                            .iter()
                            .any(|o| o == &r.path || Some(o) == r.label.as_ref())
                })
                .cloned()
                .collect();
            for repo in &repos {
                if self.cancelled() {
                    break;
                }
                self.current_repository = Some((repo.path.clone(), repo.name().to_string()));
                let outcome = self.run_repository(repo, actions);
                self.current_repository = None;
                self.summary.repositories.push(outcome);
            }
        }
        let failed = self.summary.severity == Severity::Error;
        if failed && !aborted {
            let context = self
                .first_error
                .clone()
                .unwrap_or_default()
                .context(self.base_context());
            for e in self.run_hooks(false, HookPoint::Error, None, true, &context) {
                // An error hook's own failure is reported but does not recurse.
                self.summary.errors.push(format!("after error: {e}"));
            }
        }
        let mut context = self.base_context();
        if let Some(first) = &self.first_error {
            context = context
                .with("error", first.message.clone())
                .with("output", first.output.clone());
        }
        for e in self.run_hooks(false, HookPoint::Everything, None, failed, &context) {
            if !matches!(e, HookError::SoftFailure { .. }) {
                self.error(format!("after everything: {e}"), String::new());
            }
        }
        // `finished` comes from the injected clock plus the real time spent, so tests with a
        // fixed clock still see a duration.
        self.summary.finished = self.summary.started + wall.elapsed();
        self.report();
        self.summary
    }

    fn run_repository(
        &mut self,
        repo: &RepositoryConfig,
        actions: &mut dyn Actions,
    ) -> RepositoryOutcome {
        let mut outcome = RepositoryOutcome {
            label: repo.name().to_string(),
            path: repo.path.clone(),
            actions: Vec::new(),
        };
        let repo_context = self
            .base_context()
            .with("repository", repo.path.clone())
            .with("repository_label", repo.name().to_string());
        let errors_before = self.summary.errors.len();
        let mut skip_rest = false;
        for e in self.run_hooks(true, HookPoint::Repository, None, false, &repo_context) {
            skip_rest = true;
            if matches!(e, HookError::SoftFailure { .. }) {
                log::info!("{}: {e}; skipping this repository", repo.name());
            } else {
                self.error(
                    format!("{}: before repository: {e}", repo.name()),
                    String::new(),
                );
            }
        }
        if !skip_rest {
            for action in self.plan.actions.clone() {
                if self.cancelled() {
                    break;
                }
                let (a, stop) = self.run_action(repo, action, actions, &repo_context);
                if let Some(a) = a {
                    outcome.actions.push(a);
                }
                if stop {
                    break;
                }
            }
        }
        let failed = self.summary.errors.len() > errors_before;
        for e in self.run_hooks(false, HookPoint::Repository, None, failed, &repo_context) {
            if !matches!(e, HookError::SoftFailure { .. }) {
                self.error(
                    format!("{}: after repository: {e}", repo.name()),
                    String::new(),
                );
            }
        }
        outcome
    }

    /// Runs one action with its hooks; returns its outcome and whether to stop this repository.
    fn run_action(
        &mut self,
        repo: &RepositoryConfig,
        action: ActionKind,
        actions: &mut dyn Actions,
        repo_context: &HookContext,
    ) -> (Option<ActionOutcome>, bool) {
        let mut outcome = ActionOutcome {
            action,
            status: ActionStatus::Ok,
            message: None,
            attempts: 0,
            duration: Duration::ZERO,
            stats: None,
            checks: Vec::new(),
        };
        let now = (self.clock)();
        if action == ActionKind::Check {
            match self.due_checks(repo, now) {
                Ok(due) if due.is_empty() => {
                    outcome.status = ActionStatus::Skipped;
                    outcome.message = Some("no checks due".into());
                    return (Some(outcome), false);
                }
                Ok(due) => outcome.checks = due,
                Err(e) => {
                    let message = format!("{}: check: {e}", repo.name());
                    outcome.status = ActionStatus::Failed;
                    outcome.message = Some(e.to_string());
                    self.error(message, String::new());
                    return (Some(outcome), true);
                }
            }
        }
        let context = repo_context.clone().with("action", action.as_str());
        let mut ran = false;
        let mut soft = false;
        for e in self.run_hooks(true, HookPoint::Action, Some(action), false, &context) {
            if matches!(e, HookError::SoftFailure { .. }) {
                soft = true;
                outcome.status = ActionStatus::Skipped;
                outcome.message = Some(e.to_string());
            } else {
                outcome.status = ActionStatus::Failed;
                outcome.message = Some(format!("before {action}: {e}"));
                self.error(
                    format!("{}: before {action}: {e}", repo.name()),
                    String::new(),
                );
            }
        }
        if outcome.status == ActionStatus::Ok {
            ran = true;
            self.attempt_action(repo, action, actions, &mut outcome);
        }
        if soft {
            // A soft failure skips the rest of this repository without after hooks.
            return (Some(outcome), true);
        }
        let failed = outcome.status == ActionStatus::Failed;
        let mut after_context = context;
        if let Some(m) = &outcome.message {
            if failed {
                after_context = after_context.with("error", m.clone());
            }
        }
        for e in self.run_hooks(
            false,
            HookPoint::Action,
            Some(action),
            failed,
            &after_context,
        ) {
            if matches!(e, HookError::SoftFailure { .. }) {
                continue;
            }
            self.error(
                format!("{}: after {action}: {e}", repo.name()),
                String::new(),
            );
            outcome.status = ActionStatus::Failed;
            outcome
                .message
                .get_or_insert_with(|| format!("after {action}: {e}"));
        }
        if ran && action == ActionKind::Check && outcome.status == ActionStatus::Ok {
            for check in &outcome.checks {
                let state = CheckState::new(&self.plan.state_dir, &repo.path, check.as_str());
                if let Err(e) = state.record((self.clock)()) {
                    self.error(format!("{}: {e}", repo.name()), String::new());
                }
            }
        }
        let stop = outcome.status == ActionStatus::Failed;
        (Some(outcome), stop)
    }

    fn attempt_action(
        &mut self,
        repo: &RepositoryConfig,
        action: ActionKind,
        actions: &mut dyn Actions,
        outcome: &mut ActionOutcome,
    ) {
        let started = Instant::now();
        let checks = outcome.checks.clone();
        let cancel = self.plan.cancel.clone();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let request = ActionRequest {
                action,
                repository: repo,
                config: self.config,
                checks: &checks,
                attempt,
                cancel: cancel.as_deref(),
            };
            match actions.run(&request) {
                Ok(report) => {
                    outcome.stats = report.stats;
                    // borgmatic treats check's rc 1 (problems found) as an error.
                    if !report.warnings.is_empty() && action == ActionKind::Check {
                        outcome.status = ActionStatus::Failed;
                        let message = report.warnings.join("; ");
                        outcome.message = Some(message.clone());
                        self.error(format!("{}: check: {message}", repo.name()), String::new());
                    } else if !report.warnings.is_empty() {
                        outcome.status = ActionStatus::Warning;
                        outcome.message = Some(report.warnings.join("; "));
                        for w in report.warnings {
                            self.summary
                                .warnings
                                .push(format!("{}: {action}: {w}", repo.name()));
                        }
                        self.summary.severity = self.summary.severity.max(Severity::Warning);
                    }
                    break;
                }
                Err(failure)
                    if failure.retryable
                        && attempt <= self.config.retries
                        && !cancel.as_ref().is_some_and(|c| c.load(Ordering::SeqCst)) =>
                {
                    let factor = 1u64 << (attempt - 1).min(20);
                    let wait = Duration::from_secs(self.config.retry_wait.saturating_mul(factor))
                        .min(MAX_RETRY_WAIT);
                    log::warn!(
                        "{}: {action} attempt {attempt} failed: {}; retrying in {} s",
                        repo.name(),
                        failure.message,
                        wait.as_secs()
                    );
                    (self.sleep)(wait);
                    if self.cancelled() {
                        outcome.status = ActionStatus::Failed;
                        outcome.message = Some(format!(
                            "{}; not retried: interrupted by a signal",
                            failure.message
                        ));
                        break;
                    }
                }
                Err(failure) => {
                    outcome.status = ActionStatus::Failed;
                    outcome.message = Some(failure.message.clone());
                    self.error(
                        format!("{}: {action}: {}", repo.name(), failure.message),
                        failure.output,
                    );
                    break;
                }
            }
        }
        outcome.attempts = attempt;
        outcome.duration = started.elapsed();
    }

    /// The configured checks that are due on `repo` at `now` (all of them with `force_checks`).
    fn due_checks(
        &self,
        repo: &RepositoryConfig,
        now: SystemTime,
    ) -> Result<Vec<CheckName>, ScheduleError> {
        if !self.config.check_repositories.is_empty()
            && !self
                .config
                .check_repositories
                .iter()
                .any(|c| c == &repo.path || Some(c) == repo.label.as_ref())
        {
            return Ok(Vec::new());
        }
        let mut due = Vec::new();
        for check in self.config.effective_checks() {
            let state = CheckState::new(&self.plan.state_dir, &repo.path, check.name.as_str());
            let frequency_allows = check.frequency != super::schedule::Frequency::Disabled;
            if (self.plan.force_checks && frequency_allows)
                || state.due(check.frequency, check.only_run_on, now)?
            {
                due.push(check.name);
            }
        }
        Ok(due)
    }

    fn ping(&mut self, state: PingState) {
        let Some(hc) = self.config.healthchecks.clone() else {
            return;
        };
        let body = if state == PingState::Start {
            String::new()
        } else {
            self.summary.to_string()
        };
        if let Err(e) = healthchecks::ping(&hc, state, &body) {
            self.summary.warnings.push(format!("healthchecks: {e}"));
        }
    }

    /// Monitoring after the run; failures become warnings without changing the exit code.
    fn report(&mut self) {
        let failed = self.summary.severity == Severity::Error;
        self.ping(if failed {
            PingState::Fail
        } else {
            PingState::Finish
        });
        if let Some(pg) = self.config.pushgateway.clone() {
            let body = pushgateway::exposition(&self.summary);
            if body.is_empty() {
                return;
            }
            if let Err(e) = pushgateway::push(&pg, &self.plan.hostname, &body) {
                log::warn!("{e}");
                self.summary.warnings.push(e.to_string());
            }
        }
    }
}
