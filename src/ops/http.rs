//! The smallest HTTP/1.1 client the monitoring hooks need: one request per connection over
//! `std::net::TcpStream`, plain HTTP only, with a timeout on every step.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use base64::Engine;

/// What can go wrong sending a request.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Not an `http://host[:port][/path]` URL.
    #[error("bad URL {0:?}: expected http://host[:port]/path (https is not supported)")]
    BadUrl(String),
    /// Name resolution, connect, send or receive failed.
    #[error("{url}: {reason}")]
    Io {
        /// The URL.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The server answered with something that is not HTTP.
    #[error("{url}: malformed response: {reason}")]
    Malformed {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The server answered with a status outside 2xx.
    #[error("{url}: HTTP {status}: {body}")]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
        /// The first part of the body.
        body: String,
    },
}

/// A parsed `http://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// Host name or address (brackets removed for IPv6).
    pub host: String,
    /// Port (80 when absent).
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Url {
    /// Parses `http://host[:port][/path]`.
    pub fn parse(url: &str) -> Result<Url, HttpError> {
        let bad = || HttpError::BadUrl(url.to_string());
        let rest = url.strip_prefix("http://").ok_or_else(bad)?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.contains('@') || authority.is_empty() {
            return Err(bad());
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, tail) = v6.split_once(']').ok_or_else(bad)?;
            let port = match tail.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad())?,
                None if tail.is_empty() => 80,
                None => return Err(bad()),
            };
            (h.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.parse().map_err(|_| bad())?),
                None => (authority.to_string(), 80),
            }
        };
        Ok(Url {
            host,
            port,
            path: path.to_string(),
        })
    }

    fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == 80 {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// One request.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// `PUT`, `POST`, `GET`, `DELETE`.
    pub method: &'a str,
    /// The full URL.
    pub url: &'a str,
    /// `Content-Type` of the body.
    pub content_type: &'a str,
    /// The body.
    pub body: &'a [u8],
    /// Basic-auth user and password.
    pub basic_auth: Option<(&'a str, &'a str)>,
    /// Timeout for connect, and for each read and write.
    pub timeout: Duration,
}

/// A response: status and body.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body (up to 1 MiB).
    pub body: Vec<u8>,
}

/// Sends `req` and returns the response if its status is 2xx.
pub fn send(req: &Request<'_>) -> Result<Response, HttpError> {
    let url = Url::parse(req.url)?;
    let io = |reason: String| HttpError::Io {
        url: req.url.to_string(),
        reason,
    };
    let addrs: Vec<_> = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|e| io(format!("cannot resolve {}: {e}", url.host)))?
        .collect();
    let mut last_error = format!("no address for {}", url.host);
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, req.timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_error = format!("connect to {addr}: {e}"),
        }
    }
    let mut stream = stream.ok_or_else(|| io(last_error))?;
    stream
        .set_read_timeout(Some(req.timeout))
        .and_then(|_| stream.set_write_timeout(Some(req.timeout)))
        .map_err(|e| io(e.to_string()))?;
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: rborg/{}\r\nConnection: close\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
        req.method,
        url.path,
        url.host_header(),
        env!("CARGO_PKG_VERSION"),
        req.content_type,
        req.body.len()
    );
    if let Some((user, password)) = req.basic_auth {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        head.push_str(&format!("Authorization: Basic {token}\r\n"));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .and_then(|_| stream.write_all(req.body))
        .and_then(|_| stream.flush())
        .map_err(|e| io(format!("send: {e}")))?;
    let mut raw = Vec::new();
    if let Err(e) = stream.take(1 << 20).read_to_end(&mut raw) {
        // A server that rejects a request (401, 413) may answer and close without reading our
        // body; the kernel then resets the connection. Keep the answer if it arrived whole.
        if !raw.windows(4).any(|w| w == b"\r\n\r\n") {
            return Err(io(format!("receive: {e}")));
        }
    }
    let response = parse_response(&raw).map_err(|reason| HttpError::Malformed {
        url: req.url.to_string(),
        reason,
    })?;
    if !(200..300).contains(&response.status) {
        let body = String::from_utf8_lossy(&response.body);
        return Err(HttpError::Status {
            url: req.url.to_string(),
            status: response.status,
            body: body
                .chars()
                .take(200)
                .collect::<String>()
                .trim()
                .to_string(),
        });
    }
    Ok(response)
}

/// Splits a `Connection: close` response into status and body (de-chunking if needed).
fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| "headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("status line {status_line:?}"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("status line {status_line:?}"))?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let mut body = raw[split + 4..].to_vec();
    if chunked {
        body = dechunk(&body)?;
    }
    Ok(Response { status, body })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunk size")?;
        let size_text = std::str::from_utf8(&data[..eol]).map_err(|_| "bad chunk size")?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = Url::parse("http://127.0.0.1:9091/base").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 9091, "/base")
        );
        let u = Url::parse("http://example.org").unwrap();
        assert_eq!((u.port, u.path.as_str()), (80, "/"));
        let u = Url::parse("http://[::1]:8080/x").unwrap();
        assert_eq!(
            (u.host.as_str(), u.host_header()),
            ("::1", "[::1]:8080".to_string())
        );
        assert!(Url::parse("https://x").is_err());
        assert!(Url::parse("http://u:p@x").is_err());
        assert!(Url::parse("http://x:port").is_err());
    }

    #[test]
    fn responses() {
        let r = parse_response(b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (202, &b"ok"[..]));
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.body, b"abcde");
        assert!(parse_response(b"garbage").is_err());
    }
}
