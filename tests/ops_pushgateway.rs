//! Monitoring against real peers on loopback: a real `prometheus-pushgateway` started by the
//! test receives the metrics of a successful and of a failed run; a gateway that is down is a
//! warning only; Healthchecks-style pings go to a loopback listener that records them.
//!
//! The gateway binary comes from `RBORG_PUSHGATEWAY` (default `/usr/bin/prometheus-pushgateway`,
//! Debian's `prometheus-pushgateway`); the test fails when it is missing.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod common;

use common::pushgateway::{
    free_port, get, get_with_auth, sample, start_gateway, start_gateway_with,
};
use rborg::ops::config::Config;
use rborg::ops::runner::{
    ActionFailure, ActionKind, ActionReport, ActionRequest, Actions, ArchiveStats, RunPlan, Runner,
};

struct StandIn {
    fail_create: bool,
}

impl Actions for StandIn {
    fn run(&mut self, req: &ActionRequest<'_>) -> Result<ActionReport, ActionFailure> {
        match req.action {
            ActionKind::Create if self.fail_create => {
                Err(ActionFailure::fatal("Repository does not exist."))
            }
            ActionKind::Create => Ok(ActionReport {
                warnings: vec![],
                stats: Some(ArchiveStats {
                    nfiles: 1234,
                    original_size: 5_000_000,
                    compressed_size: 2_000_000,
                    deduplicated_size: 300_000,
                }),
            }),
            _ => Ok(ActionReport::default()),
        }
    }
}

fn config(url: &str) -> Config {
    let text = format!(
        "repositories:\n  - path: /r\n    label: nas\npushgateway:\n  url: {url}\n  job: rborg-test\n  instance: alpha\n  timeout: 2\nchecks: [{{name: repository, frequency: always}}]\n"
    );
    Config::parse(&text, "test.yaml", &BTreeMap::new()).unwrap()
}

fn plan(state: &std::path::Path, actions: &[ActionKind]) -> RunPlan {
    let mut plan = RunPlan::new(state);
    plan.actions = actions.to_vec();
    plan
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

#[test]
fn gateway_keeps_last_success_time_across_a_failed_run() {
    let gateway = start_gateway();
    let state = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{}", gateway.port);
    let config = config(&url);
    let group = [("job", "rborg-test"), ("instance", "alpha")];

    // A successful daily run with a check.
    let summary = Runner::new(
        &config,
        plan(
            state.path(),
            &[ActionKind::Create, ActionKind::Prune, ActionKind::Check],
        ),
    )
    .with_clock(|| at(1_700_000_000))
    .run(&mut StandIn { fail_create: false });
    assert_eq!(summary.exit_code(), 0, "{summary}");
    assert!(summary.warnings.is_empty(), "{summary}");
    let (_, metrics) = get(gateway.port, "/metrics").unwrap();
    assert_eq!(
        sample(&metrics, "borgmatic_last_run_status", &group),
        Some(0.0)
    );
    let success_time = sample(&metrics, "borgmatic_last_run_timestamp_seconds", &group).unwrap();
    assert!((1_700_000_000.0..1_700_000_060.0).contains(&success_time));
    let repo = [group[0], group[1], ("repository", "nas")];
    assert_eq!(
        sample(&metrics, "rborg_last_archive_files", &repo),
        Some(1234.0)
    );
    assert_eq!(
        sample(&metrics, "rborg_last_archive_original_size_bytes", &repo),
        Some(5e6)
    );
    assert_eq!(
        sample(&metrics, "rborg_last_archive_compressed_size_bytes", &repo),
        Some(2e6)
    );
    assert_eq!(
        sample(
            &metrics,
            "rborg_last_archive_deduplicated_size_bytes",
            &repo
        ),
        Some(3e5)
    );
    assert_eq!(
        sample(&metrics, "rborg_last_check_status", &group),
        Some(0.0)
    );
    assert!(sample(&metrics, "rborg_last_check_timestamp_seconds", &group).is_some());
    assert!(sample(&metrics, "rborg_last_run_duration_seconds", &group).is_some());
    assert!(metrics.contains("# TYPE borgmatic_last_run_status gauge"));
    assert!(metrics.contains("# HELP borgmatic_last_run_timestamp_seconds "));

    // A failed run a day later, without a check.
    let summary = Runner::new(
        &config,
        plan(state.path(), &[ActionKind::Create, ActionKind::Prune]),
    )
    .with_clock(|| at(1_700_086_400))
    .run(&mut StandIn { fail_create: true });
    assert_eq!(summary.exit_code(), 2);
    let (_, metrics) = get(gateway.port, "/metrics").unwrap();
    assert_eq!(
        sample(&metrics, "borgmatic_last_run_status", &group),
        Some(1.0)
    );
    assert_eq!(
        sample(&metrics, "rborg_last_run_exit_code", &group),
        Some(2.0)
    );
    // The failure did not erase the time of the last success, nor the last check's results.
    assert_eq!(
        sample(&metrics, "borgmatic_last_run_timestamp_seconds", &group),
        Some(success_time)
    );
    assert_eq!(
        sample(&metrics, "rborg_last_check_status", &group),
        Some(0.0)
    );
    assert_eq!(
        sample(&metrics, "rborg_last_archive_files", &repo),
        Some(1234.0)
    );
    drop(gateway);
}

#[test]
fn gateway_down_is_a_warning_and_the_run_still_succeeds() {
    let port = free_port(); // nothing listens there
    let state = tempfile::tempdir().unwrap();
    let config = config(&format!("http://127.0.0.1:{port}"));
    let summary = Runner::new(&config, plan(state.path(), &[ActionKind::Create]))
        .run(&mut StandIn { fail_create: false });
    assert_eq!(summary.exit_code(), 0, "{summary}");
    assert_eq!(summary.warnings.len(), 1, "{summary}");
    assert!(
        summary.warnings[0].starts_with("pushgateway: "),
        "{summary}"
    );
    assert!(summary.to_string().contains("warning: pushgateway"));
}

#[test]
fn gateway_with_basic_auth_accepts_the_right_password_only() {
    // bcrypt("s3cret"), cost 4; the gateway's web config wants bcrypt hashes.
    let gateway = start_gateway_with(Some(
        "basic_auth_users:\n  rborg: $2b$04$93icmga1DaWOu7uImRMi0Op1PvQ8FiuTC2NSN2kZIVoiHgVGQ5ORO\n",
    ));
    let state = tempfile::tempdir().unwrap();
    for (password, should_work) in [("wrong", false), ("s3cret", true)] {
        let text = format!(
            "repositories: [/r]\npushgateway:\n  url: http://127.0.0.1:{}\n  instance: authed\n  username: rborg\n  password: {password}\n",
            gateway.port
        );
        let config = Config::parse(&text, "t", &BTreeMap::new()).unwrap();
        let summary = Runner::new(&config, plan(state.path(), &[ActionKind::Create]))
            .run(&mut StandIn { fail_create: false });
        assert_eq!(summary.exit_code(), 0, "{summary}");
        if should_work {
            assert!(summary.warnings.is_empty(), "{summary}");
        } else {
            assert_eq!(summary.warnings.len(), 1, "{summary}");
            assert!(summary.warnings[0].contains("HTTP 401"), "{summary}");
        }
    }
    // base64("rborg:s3cret")
    let (status, metrics) =
        get_with_auth(gateway.port, "/metrics", Some("Basic cmJvcmc6czNjcmV0")).unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        sample(
            &metrics,
            "borgmatic_last_run_status",
            &[("instance", "authed")]
        ),
        Some(0.0)
    );
    drop(gateway);
}

/// A recorded request: request line, headers (lower-case names), body.
type Recorded = (String, BTreeMap<String, String>, String);

/// A loopback HTTP listener that answers 200 and sends each request's head and body back.
fn recorder(count: usize) -> (u16, mpsc::Receiver<Recorded>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(count) {
            let stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let mut headers = BTreeMap::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                let (k, v) = line.split_once(':').unwrap();
                headers.insert(k.to_ascii_lowercase(), v.trim().to_string());
            }
            let len: usize = headers
                .get("content-length")
                .map(|v| v.parse().unwrap())
                .unwrap_or(0);
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            let mut stream = stream;
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK")
                .unwrap();
            tx.send((
                request_line.trim_end().to_string(),
                headers,
                String::from_utf8(body).unwrap(),
            ))
            .unwrap();
        }
    });
    (port, rx)
}

#[test]
fn push_request_carries_basic_auth_and_the_grouping_key() {
    let (port, rx) = recorder(1);
    let state = tempfile::tempdir().unwrap();
    let text = format!(
        "repositories: [/r]\npushgateway:\n  url: http://127.0.0.1:{port}/base/\n  username: rborg\n  password: s3cret\n"
    );
    let config = Config::parse(&text, "t", &BTreeMap::new()).unwrap();
    let mut plan = plan(state.path(), &[ActionKind::Create]);
    plan.hostname = "host.example".into();
    let summary = Runner::new(&config, plan).run(&mut StandIn { fail_create: false });
    assert_eq!(summary.exit_code(), 0, "{summary}");
    let (line, headers, body) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(
        line,
        "POST /base/metrics/job/rborg/instance/host.example HTTP/1.1"
    );
    // base64("rborg:s3cret")
    assert_eq!(headers["authorization"], "Basic cmJvcmc6czNjcmV0");
    assert!(headers["content-type"].starts_with("text/plain; version=0.0.4"));
    assert!(body.contains("\nborgmatic_last_run_status 0\n"), "{body}");
}

#[test]
fn healthchecks_pings_start_then_finish_or_fail() {
    let state = tempfile::tempdir().unwrap();
    for (fail, last_path) in [(false, "/ping/uuid"), (true, "/ping/uuid/fail")] {
        let (port, rx) = recorder(2);
        let text = format!(
            "repositories: [/r]\nhealthchecks:\n  ping_url: http://127.0.0.1:{port}/ping/uuid\n"
        );
        let config = Config::parse(&text, "t", &BTreeMap::new()).unwrap();
        let summary = Runner::new(&config, plan(state.path(), &[ActionKind::Create]))
            .run(&mut StandIn { fail_create: fail });
        assert_eq!(summary.exit_code(), if fail { 2 } else { 0 });
        let (start, _, _) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(start, "POST /ping/uuid/start HTTP/1.1");
        let (end, _, body) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(end, format!("POST {last_path} HTTP/1.1"));
        assert!(body.starts_with("rborg run "), "{body}");
    }
}
