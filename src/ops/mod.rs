//! The daily job around the archive commands (what `rborg run` and `rborg config` use):
//! the configuration file ([`config`]), check schedules ([`schedule`]), command hooks
//! ([`hooks`]), the run itself with retries and one summary ([`runner`]), and monitoring
//! ([`pushgateway`], [`healthchecks`], over the small client in [`http`]).
//!
//! The archive commands plug in through the [`runner::Actions`] trait:
//!
//! ```no_run
//! use rborg::ops::{config::Config, runner::{Actions, ActionReport, ActionFailure, ActionRequest, Runner, RunPlan}};
//! struct Real;
//! impl Actions for Real {
//!     fn run(&mut self, req: &ActionRequest<'_>) -> Result<ActionReport, ActionFailure> {
//!         // call create/prune/compact/check on req.repository here
//!         Ok(ActionReport::default())
//!     }
//! }
//! let env = std::env::vars().collect();
//! let config = Config::load("/etc/rborg/config.yaml".as_ref(), &env).unwrap();
//! let summary = Runner::new(&config, RunPlan::new("/var/lib/rborg")).run(&mut Real);
//! eprint!("{summary}");
//! std::process::exit(summary.exit_code());
//! ```
pub mod config;
pub mod healthchecks;
pub mod hooks;
pub mod http;
pub mod pushgateway;
pub mod runner;
pub mod schedule;

pub use config::{generate_sample, validate, Config, ConfigError};
pub use runner::{
    ActionFailure, ActionKind, ActionReport, ActionRequest, Actions, RunPlan, RunSummary, Runner,
};
