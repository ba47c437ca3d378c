//! Healthchecks-style pings (borgmatic's `healthchecks:` hook): `<ping_url>/start` when a run
//! starts, `<ping_url>` when it finishes well, `<ping_url>/fail` when it fails, each a POST whose
//! body is the run's summary. Plain HTTP only; a failed ping is a warning of the run.

use std::time::Duration;

use super::config::{HealthchecksConfig, PingState};
use super::http;

/// borgmatic's default limit on the ping body (NEWS #889).
pub const DEFAULT_BODY_LIMIT: usize = 100_000;

/// Whether `state` should be pinged under `config` (default: start, finish and fail).
pub fn wants(config: &HealthchecksConfig, state: PingState) -> bool {
    if config.states.is_empty() {
        state != PingState::Log
    } else {
        config.states.contains(&state)
    }
}

/// The URL for `state`.
pub fn ping_url(config: &HealthchecksConfig, state: PingState) -> String {
    let base = config.ping_url.trim_end_matches('/');
    match state {
        PingState::Start => format!("{base}/start"),
        PingState::Fail => format!("{base}/fail"),
        PingState::Log => format!("{base}/log"),
        PingState::Finish => base.to_string(),
    }
}

/// Pings `state` with `body` (cut to the body limit at a character boundary) if configured to.
pub fn ping(
    config: &HealthchecksConfig,
    state: PingState,
    body: &str,
) -> Result<(), http::HttpError> {
    if !wants(config, state) {
        return Ok(());
    }
    let limit = config.ping_body_limit.unwrap_or(DEFAULT_BODY_LIMIT);
    let body = if config.send_logs == Some(false) {
        ""
    } else if body.len() > limit {
        let mut end = limit;
        while !body.is_char_boundary(end) {
            end -= 1;
        }
        &body[..end]
    } else {
        body
    };
    let url = ping_url(config, state);
    http::send(&http::Request {
        method: "POST",
        url: &url,
        content_type: "text/plain; charset=utf-8",
        body: body.as_bytes(),
        basic_auth: None,
        timeout: Duration::from_secs(10),
    })
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_states() {
        let mut c = HealthchecksConfig {
            ping_url: "http://hc/ping/abc/".into(),
            states: vec![],
            send_logs: None,
            ping_body_limit: None,
            verify_tls: None,
            create_slug: None,
        };
        assert_eq!(ping_url(&c, PingState::Start), "http://hc/ping/abc/start");
        assert_eq!(ping_url(&c, PingState::Finish), "http://hc/ping/abc");
        assert_eq!(ping_url(&c, PingState::Fail), "http://hc/ping/abc/fail");
        assert!(wants(&c, PingState::Start));
        c.states = vec![PingState::Fail];
        assert!(!wants(&c, PingState::Start));
        assert!(wants(&c, PingState::Fail));
    }
}
