//! The shapes of borg's RPC messages: requests the client writes and responses it reads.
//!
//! Pure functions over [`Value`]; no I/O. See protocol notes §2.2: the dict format
//! `{"i": msgid, "m": method, "a": {args}}` / `{"i": msgid, "r": result}` or an error with
//! `exception_class` and friends, and the legacy tuple format `[1, msgid, method, [args]]` /
//! `[1, msgid, error_class_or_nil, result]` that borg still uses for the first request.

use crate::msgpack::{self, Value};
use crate::repository::RepositoryError;

/// One request in dict format, byte for byte as borg's client packs it: the envelope keys in
/// the order `i`, `m`, `a` and the arguments in the order given (borg packs plain dicts in
/// insertion order, not sorted; its stubs list arguments in signature order). Values go through
/// [`msgpack::encode_into`], so strings are raw, never bin (a 1.2 server aborts on bin).
pub fn encode_request(msgid: u64, method: &str, args: Vec<(&str, Value)>) -> Vec<u8> {
    let size = args
        .iter()
        .map(|(_, v)| match v {
            Value::Raw(b) => b.len() + 16,
            _ => 16,
        })
        .sum::<usize>();
    let request = Value::Map(vec![
        (Value::str("i"), Value::Int(msgid.into())),
        (Value::str("m"), Value::str(method)),
        (
            Value::str("a"),
            Value::Map(args.into_iter().map(|(k, v)| (Value::str(k), v)).collect()),
        ),
    ]);
    let mut out = Vec::with_capacity(32 + size);
    msgpack::encode_unsorted_into(&request, &mut out);
    out
}

/// The first request of every session, in the legacy tuple format exactly as borg's
/// `RemoteRepository.__init__` sends it: `[1, msgid, "negotiate", [{"client_version": V}]]`.
pub fn encode_negotiate(msgid: u64, client_version: &[i64]) -> Vec<u8> {
    let version = Value::Array(
        client_version
            .iter()
            .map(|v| Value::Int((*v).into()))
            .collect(),
    );
    msgpack::encode(&Value::Array(vec![
        Value::Int(1),
        Value::Int(msgid.into()),
        Value::str("negotiate"),
        Value::Array(vec![Value::map([("client_version", version)])]),
    ]))
}

/// A decoded response: which request it answers and how it went.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// The request's msgid.
    pub msgid: u64,
    /// The result, or the exception the server raised.
    pub outcome: Result<Value, RemoteException>,
}

/// An exception raised by the server while handling a request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RemoteException {
    /// The unqualified Python class name (`ObjectNotFound`, `ValueError`, …).
    pub class: String,
    /// The exception's arguments; `None` when the server sent none (old servers, tuple format).
    pub args: Option<Vec<Value>>,
    /// The short message (`exception_short` joined), or the tuple format's text.
    pub short: String,
    /// The remote traceback lines (`exception_full`).
    pub full: Vec<String>,
    /// Whether borg would show the traceback (`exception_trace`).
    pub traceback: bool,
    /// The server's system information (`sysinfo`), possibly empty.
    pub sysinfo: String,
}

fn text(v: &Value) -> Option<String> {
    v.as_bytes()
        .map(|b| String::from_utf8_lossy(b).into_owned())
}

fn lines(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(items)) => items.iter().filter_map(text).collect(),
        Some(other) => text(other).into_iter().collect(),
        None => Vec::new(),
    }
}

fn unexpected(v: &Value) -> RepositoryError {
    // borg shows the first 128 bytes of what it could not understand.
    let bytes = msgpack::encode(v);
    let shown = &bytes[..bytes.len().min(128)];
    RepositoryError::UnexpectedRpcData(format!("{shown:?}"))
}

fn msgid_of(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        _ => None,
    }
}

/// Interprets one message from the server's stdout, in either format.
pub fn decode_response(message: &Value) -> Result<Response, RepositoryError> {
    match message {
        Value::Map(_) => {
            let msgid = message
                .get("i")
                .and_then(msgid_of)
                .ok_or_else(|| unexpected(message))?;
            if let Some(class) = message.get("exception_class") {
                let class = text(class).ok_or_else(|| unexpected(message))?;
                let args = match message.get("exception_args") {
                    Some(Value::Array(a)) => Some(a.clone()),
                    _ => None,
                };
                let short = lines(message.get("exception_short")).concat();
                let exception = RemoteException {
                    short: short.trim_end().to_string(),
                    full: lines(message.get("exception_full")),
                    traceback: message
                        .get("exception_trace")
                        .and_then(Value::as_bool)
                        .unwrap_or(true),
                    sysinfo: message.get("sysinfo").and_then(text).unwrap_or_default(),
                    class,
                    args,
                };
                return Ok(Response {
                    msgid,
                    outcome: Err(exception),
                });
            }
            let result = message.get("r").cloned().unwrap_or(Value::Nil);
            Ok(Response {
                msgid,
                outcome: Ok(result),
            })
        }
        Value::Array(items) if items.len() == 4 => {
            let msgid = msgid_of(&items[1]).ok_or_else(|| unexpected(message))?;
            match &items[2] {
                Value::Nil => Ok(Response {
                    msgid,
                    outcome: Ok(items[3].clone()),
                }),
                class => {
                    let class = text(class).ok_or_else(|| unexpected(message))?;
                    Ok(Response {
                        msgid,
                        outcome: Err(RemoteException {
                            class,
                            args: None,
                            short: text(&items[3]).unwrap_or_default(),
                            full: Vec::new(),
                            traceback: true,
                            sysinfo: String::new(),
                        }),
                    })
                }
            }
        }
        other => Err(unexpected(other)),
    }
}

impl RemoteException {
    fn arg(&self, index: usize) -> String {
        // borg's client falls back to this text when an old server sent no arguments.
        self.args
            .as_ref()
            .and_then(|a| a.get(index))
            .map(|v| match v {
                Value::Raw(b) => String::from_utf8_lossy(b).into_owned(),
                other => format!("{other:?}"),
            })
            .unwrap_or_else(|| "(not available)".to_string())
    }

    /// Maps the exception to a [`RepositoryError`] as borg's `call_many.handle_error` rebuilds
    /// known classes (the 1.4 set, a superset of 1.2's). `location` stands in for the path in
    /// the errors where borg shows the client's own location.
    pub fn into_repository_error(self, location: &str) -> RepositoryError {
        use RepositoryError as E;
        match self.class.as_str() {
            "DoesNotExist" => E::DoesNotExist(location.to_string()),
            "AlreadyExists" => E::AlreadyExists(location.to_string()),
            "CheckNeeded" => E::CheckNeeded(location.to_string()),
            "InvalidRepository" => E::InvalidRepository(location.to_string()),
            "IntegrityError" => E::IntegrityError(self.arg(0)),
            "AtticRepository" => E::AtticRepository(self.arg(0)),
            "PathNotAllowed" => E::PathNotAllowed(self.arg(0)),
            "ParentPathDoesNotExist" => E::ParentPathDoesNotExist(self.arg(0)),
            "PathAlreadyExists" => E::PathAlreadyExists(self.arg(0)),
            "PathPermissionDenied" => E::PathPermissionDenied(self.arg(0)),
            "ObjectNotFound" => E::ObjectNotFound {
                id: self.arg(0),
                path: self.arg(1),
            },
            "InvalidRPCMethod" => E::InvalidRpcMethod(self.arg(0)),
            "LockTimeout" => E::LockTimeout(self.arg(0)),
            "LockFailed" => E::LockFailed {
                path: self.arg(0),
                reason: self.arg(1),
            },
            "NotLocked" => E::NotLocked(self.arg(0)),
            "NotMyLock" => E::NotMyLock(self.arg(0)),
            "InvalidRepositoryConfig" => E::InvalidRepositoryConfig {
                path: location.to_string(),
                reason: self.arg(1),
            },
            "StorageQuotaExceeded" => E::StorageQuotaExceeded {
                quota: self.arg(0),
                used: self.arg(1),
            },
            "InsufficientFreeSpaceError" => E::InsufficientFreeSpace {
                required: self.arg(0),
                available: self.arg(1),
            },
            _ => {
                if !self.full.is_empty() {
                    log::debug!("Remote traceback:\n{}", self.full.concat());
                }
                let message = if self.short.is_empty() {
                    format!("{} (no message)", self.class)
                } else {
                    self.short
                };
                E::Remote {
                    class: self.class,
                    message,
                }
            }
        }
    }
}

/// The body of the `rpc_response` fuzz target, also replayed over its corpus by `cargo test`:
/// every message in the stream decodes to a response or an error, never a panic, and every
/// error maps to a [`RepositoryError`] with a message.
#[doc(hidden)]
pub fn fuzz_response(data: &[u8]) {
    let mut decoder = msgpack::Decoder::new(data);
    while let Ok(value) = decoder.next_value() {
        match decode_response(&value) {
            Ok(Response {
                outcome: Err(exception),
                ..
            }) => {
                let _ = exception.into_repository_error("repo").to_string();
            }
            Ok(_) => {}
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiate_bytes_match_borg_1_2_4() {
        let mut want = vec![0x94, 0x01, 0x01, 0xa9];
        want.extend_from_slice(b"negotiate");
        want.extend_from_slice(&[0x91, 0x81, 0xae]);
        want.extend_from_slice(b"client_version");
        want.extend_from_slice(&[0x94, 0x01, 0x02, 0x04, 0xff]);
        assert_eq!(encode_negotiate(1, &[1, 2, 4, -1]), want);
    }

    #[test]
    fn request_uses_raw_strings_never_bin() {
        let id = [7u8; 32];
        let bytes = encode_request(5, "get", vec![("id", Value::bytes(&id))]);
        // {"i": 5, "m": "get", "a": {"id": raw16(32 bytes)}} in borg's order.
        let mut want = vec![0x83, 0xa1, b'i', 0x05, 0xa1, b'm', 0xa3, b'g', b'e', b't'];
        want.extend_from_slice(&[0xa1, b'a', 0x81, 0xa2, b'i', b'd', 0xda, 0x00, 0x20]);
        want.extend_from_slice(&id);
        assert_eq!(bytes, want);
        // Arguments keep their order, the one borg's stubs send them in.
        let bytes = encode_request(1, "x", vec![("b", Value::Nil), ("a", Value::Nil)]);
        assert_eq!(
            &bytes[bytes.len() - 7..],
            &[0x82, 0xa1, b'b', 0xc0, 0xa1, b'a', 0xc0][..]
        );
        assert_eq!(
            msgpack::decode(&bytes).unwrap().get("a"),
            Some(&Value::map([("b", Value::Nil), ("a", Value::Nil)]))
        );
    }

    #[test]
    fn dict_responses() {
        let ok = Value::map([("i", Value::Int(2)), ("r", Value::bytes(&[1; 32]))]);
        assert_eq!(
            decode_response(&ok).unwrap(),
            Response {
                msgid: 2,
                outcome: Ok(Value::bytes(&[1; 32]))
            }
        );
        let err = Value::map([
            ("i", Value::Int(3)),
            ("exception_class", Value::str("ObjectNotFound")),
            (
                "exception_args",
                Value::Array(vec![Value::str("00ff"), Value::str("/r")]),
            ),
            (
                "exception_short",
                Value::Array(vec![Value::str(
                    "Object with key 00ff not found in repository /r.",
                )]),
            ),
            ("exception_trace", Value::Bool(true)),
            ("sysinfo", Value::str("")),
        ]);
        let resp = decode_response(&err).unwrap();
        assert_eq!(resp.msgid, 3);
        let e = resp.outcome.unwrap_err().into_repository_error("ssh://h/r");
        assert_eq!(
            e.to_string(),
            "Object with key 00ff not found in repository /r."
        );
    }

    #[test]
    fn tuple_responses() {
        let ok = Value::Array(vec![
            Value::Int(1),
            Value::Int(1),
            Value::Nil,
            Value::map([(
                "server_version",
                Value::Array(vec![
                    Value::Int(1),
                    Value::Int(2),
                    Value::Int(4),
                    Value::Int(-1),
                ]),
            )]),
        ]);
        let r = decode_response(&ok).unwrap();
        assert!(r.outcome.unwrap().get("server_version").is_some());
        let err = Value::Array(vec![
            Value::Int(1),
            Value::Int(3),
            Value::str("ObjectNotFound"),
            Value::str("Remote Exception (see remote log for the traceback)"),
        ]);
        let e = decode_response(&err).unwrap().outcome.unwrap_err();
        assert!(matches!(
            e.into_repository_error("r"),
            RepositoryError::ObjectNotFound { id, .. } if id == "(not available)"
        ));
    }

    #[test]
    fn garbage_is_unexpected_data() {
        for v in [
            Value::Int(3),
            Value::Array(vec![Value::Int(1)]),
            Value::map([("r", Value::Nil)]),
            Value::map([("i", Value::Int(-1))]),
        ] {
            assert!(matches!(
                decode_response(&v),
                Err(RepositoryError::UnexpectedRpcData(_))
            ));
        }
    }

    #[test]
    fn unknown_classes_keep_class_and_message() {
        let e = RemoteException {
            class: "ValueError".into(),
            short: "ValueError: nope".into(),
            ..Default::default()
        };
        match e.into_repository_error("r") {
            RepositoryError::Remote { class, message } => {
                assert_eq!(
                    (class.as_str(), message.as_str()),
                    ("ValueError", "ValueError: nope")
                )
            }
            other => panic!("{other:?}"),
        }
    }
}
