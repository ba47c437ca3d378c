//! A scripted stand-in for `borg serve`, for unit tests of rules real servers cannot show
//! (old versions, out-of-order answers, garbage). Interop with real borg is in `tests/`.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::msgpack::{self, Value};
use crate::transport::{os_pipe, ServerExit, ServerStreams, Transport, TransportError};

/// What the script does with one request: the messages to write now (raw bytes, so a test can
/// send garbage), or `None` to end the session (close stdout).
pub(crate) type Script = Box<dyn FnMut(&Value) -> Option<Vec<Vec<u8>>> + Send>;

/// A transport whose server is a thread running a script.
pub(crate) struct ScriptedTransport {
    streams: Option<ServerStreams>,
    server: Option<JoinHandle<()>>,
    /// Every request the server received, decoded.
    pub(crate) received: Arc<Mutex<Vec<Value>>>,
}

/// The answer to a negotiate for a server of `version`.
pub(crate) fn negotiate_reply(msgid: &Value, version: &[i64]) -> Vec<u8> {
    let v = Value::Array(version.iter().map(|p| Value::Int((*p).into())).collect());
    msgpack::encode(&Value::Array(vec![
        Value::Int(1),
        msgid.clone(),
        Value::Nil,
        Value::map([("server_version", v)]),
    ]))
}

/// A dict-format success answer to `request`.
pub(crate) fn reply(request: &Value, result: Value) -> Vec<u8> {
    msgpack::encode(&Value::map([
        ("i", request.get("i").cloned().unwrap_or(Value::Nil)),
        ("r", result),
    ]))
}

/// A dict-format error answer to `request`.
pub(crate) fn error_reply(request: &Value, class: &str, args: Vec<Value>, short: &str) -> Vec<u8> {
    msgpack::encode(&Value::map([
        ("i", request.get("i").cloned().unwrap_or(Value::Nil)),
        ("exception_class", Value::str(class)),
        ("exception_args", Value::Array(args)),
        ("exception_short", Value::Array(vec![Value::str(short)])),
        ("exception_trace", Value::Bool(false)),
        ("sysinfo", Value::str("")),
    ]))
}

impl ScriptedTransport {
    /// Starts the scripted server.
    pub(crate) fn start(mut script: Script) -> ScriptedTransport {
        let (stdin_r, stdin_w) = os_pipe().expect("pipe");
        let (stdout_r, mut stdout_w) = os_pipe().expect("pipe");
        let (stderr_r, stderr_w) = os_pipe().expect("pipe");
        let received = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&received);
        let server = std::thread::spawn(move || {
            let _stderr = stderr_w;
            let mut stdin = stdin_r;
            let mut buf = Vec::new();
            let mut chunk = [0u8; 65536];
            loop {
                let n = match stdin.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                buf.extend_from_slice(&chunk[..n]);
                while let Ok((request, used)) = msgpack::decode_prefix(&buf) {
                    buf.drain(..used);
                    seen.lock().expect("lock").push(request.clone());
                    match script(&request) {
                        Some(out) => {
                            for message in out {
                                if stdout_w.write_all(&message).is_err() {
                                    return;
                                }
                            }
                        }
                        None => return,
                    }
                }
            }
        });
        ScriptedTransport {
            streams: Some(ServerStreams {
                stdin: Box::new(stdin_w),
                stdout: Box::new(stdout_r),
                stderr: Box::new(stderr_r),
            }),
            server: Some(server),
            received,
        }
    }
}

impl Transport for ScriptedTransport {
    fn take_streams(&mut self) -> Result<ServerStreams, TransportError> {
        self.streams.take().ok_or(TransportError::StreamsTaken)
    }

    fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ServerExit>, TransportError> {
        let deadline = std::time::Instant::now() + timeout;
        while self.server.as_ref().is_some_and(|s| !s.is_finished()) {
            if std::time::Instant::now() > deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        if let Some(s) = self.server.take() {
            let _ = s.join();
        }
        Ok(Some(ServerExit::Code(0)))
    }

    fn kill(&mut self) {}

    fn describe(&self) -> String {
        "scripted server".into()
    }
}
