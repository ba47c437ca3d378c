//! A real `prometheus-pushgateway` on a free loopback port, killed on drop, and a plain HTTP
//! GET written independently of the code under test. The binary comes from
//! `RBORG_PUSHGATEWAY` (default Debian's `/usr/bin/prometheus-pushgateway`); a missing one fails
//! the test.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the gateway however the test ends.
pub struct Gateway {
    child: Child,
    /// The port it listens on.
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts a gateway without authentication.
pub fn start_gateway() -> Gateway {
    start_gateway_with(None)
}

/// Starts a gateway; with `web_config`, that text is its `--web.config.file` (basic auth).
pub fn start_gateway_with(web_config: Option<&str>) -> Gateway {
    let bin = PathBuf::from(
        std::env::var("RBORG_PUSHGATEWAY")
            .unwrap_or_else(|_| "/usr/bin/prometheus-pushgateway".into()),
    );
    assert!(
        bin.exists(),
        "{} is missing: install Debian's prometheus-pushgateway (scripts/install-peers.sh)",
        bin.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut command = Command::new(&bin);
    if let Some(text) = web_config {
        let path = dir.path().join("web.yml");
        std::fs::write(&path, text).unwrap();
        command.arg(format!("--web.config.file={}", path.display()));
    }
    let child = command
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!(
            "--persistence.file={}",
            dir.path().join("pushgateway.data").display()
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let gateway = Gateway {
        child,
        port,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok((status, _)) = get(port, "/-/ready") {
            // 401: up, but behind basic auth.
            if status == 200 || status == 401 {
                return gateway;
            }
        }
        assert!(
            Instant::now() < deadline,
            "pushgateway did not become ready"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A plain GET, written here independently of the code under test.
pub fn get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    get_with_auth(port, path, None)
}

/// A GET with an optional ready-made `Authorization` value.
pub fn get_with_auth(port: u16, path: &str, auth: Option<&str>) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n{auth}Connection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    Ok((status, body.to_string()))
}

/// The value of the sample of `name` whose labels include all of `labels`.
pub fn sample(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        if !rest.starts_with('{') && !rest.starts_with(' ') {
            return None;
        }
        let (label_part, value) = rest.rsplit_once(' ')?;
        labels
            .iter()
            .all(|(k, v)| label_part.contains(&format!("{k}=\"{v}\"")))
            .then(|| value.parse().ok())?
    })
}
