//! A repository behind `borg serve`, reached through the RPC client (borg's
//! `RemoteRepository`).

use crate::location::Location;
use crate::msgpack::Value;
use crate::rpc::version::{
    APPEND_ONLY_SINCE, MAKE_PARENT_DIRS_SINCE, MAX_DURATION_SINCE, SCAN_SINCE,
};
use crate::rpc::{ClientOptions, RpcClient, ServerVersion};
use crate::transport::{connect_ssh, ServerExit, SshKind, SshSettings, Transport};

use super::{CommitOptions, ObjectId, OpenOptions, Repository, RepositoryError};

/// A remote repository: an RPC session on which `open` succeeded.
pub struct RemoteRepository {
    client: RpcClient,
    id: ObjectId,
    path: String,
}

fn id_value(id: &ObjectId) -> Value {
    Value::bytes(id)
}

fn ids_from(value: Value, method: &str) -> Result<Vec<ObjectId>, RepositoryError> {
    let Value::Array(items) = value else {
        return Err(RepositoryError::UnexpectedRpcData(format!(
            "{method} returned {value:?}"
        )));
    };
    items
        .into_iter()
        .map(|item| match item {
            Value::Raw(bytes) => <ObjectId>::try_from(bytes.as_slice()).map_err(|_| {
                RepositoryError::UnexpectedRpcData(format!(
                    "{method} returned an id of {} bytes",
                    bytes.len()
                ))
            }),
            other => Err(RepositoryError::UnexpectedRpcData(format!(
                "{method} returned {other:?} as an id"
            ))),
        })
        .collect()
}

/// `exclusive` as borg's `open` takes it: `None` asks the server for a shared lock that it
/// upgrades when a transaction starts (what old clients relied on).
fn exclusive_value(options: &OpenOptions) -> Value {
    if options.upgrade_lock && !options.exclusive {
        Value::Nil
    } else {
        Value::Bool(options.exclusive)
    }
}

/// borg's client sends `--lock-wait` as an int; keep whole numbers ints on the wire.
fn lock_wait_value(lock_wait: Option<f64>) -> Value {
    match lock_wait {
        None => Value::Nil,
        Some(w) if w.fract() == 0.0 && w.abs() < 1e15 => Value::Int(w as i128),
        Some(w) => Value::Float(w),
    }
}

impl RemoteRepository {
    /// Starts an RPC session over `transport` and opens the repository at `path` (exactly the
    /// location's path, see [`crate::location::Location::path`]).
    pub fn open(
        transport: Box<dyn Transport>,
        path: &str,
        options: &OpenOptions,
        client_options: ClientOptions,
    ) -> Result<RemoteRepository, RepositoryError> {
        let mut client = RpcClient::connect(transport, client_options)?;
        match Self::send_open(&mut client, path, options) {
            Ok(id) => Ok(RemoteRepository {
                client,
                id,
                path: path.to_string(),
            }),
            Err(e) => {
                let _ = client.close();
                Err(e)
            }
        }
    }

    /// Connects to a remote location through ssh (`kind` picks the system `ssh` or libssh2) and
    /// opens the repository at the location's path. Transport failures (ssh not found, host
    /// key refused, authentication failed) come back as [`RepositoryError::Transport`].
    pub fn connect(
        location: &Location,
        settings: &SshSettings,
        kind: SshKind,
        options: &OpenOptions,
        mut client_options: ClientOptions,
    ) -> Result<RemoteRepository, RepositoryError> {
        let transport = connect_ssh(location, settings, kind)
            .map_err(|e| RepositoryError::Transport(e.to_string()))?;
        if client_options.location.is_empty() {
            client_options.location = location.canonical_path();
        }
        Self::open(transport, &location.path, options, client_options)
    }

    fn send_open(
        client: &mut RpcClient,
        path: &str,
        options: &OpenOptions,
    ) -> Result<ObjectId, RepositoryError> {
        // borg's @api rules: a non-default value needs a server that knows the parameter.
        if options.append_only {
            client.require_version("open(append_only=True)", APPEND_ONLY_SINCE)?;
        }
        if options.make_parent_dirs {
            client.require_version("open(make_parent_dirs=True)", MAKE_PARENT_DIRS_SINCE)?;
        }
        let reply = client.call(
            "open",
            vec![
                ("path", Value::str(path)),
                ("create", Value::Bool(options.create)),
                ("lock_wait", lock_wait_value(options.lock_wait)),
                ("lock", Value::Bool(options.lock)),
                ("exclusive", exclusive_value(options)),
                ("append_only", Value::Bool(options.append_only)),
                ("make_parent_dirs", Value::Bool(options.make_parent_dirs)),
            ],
        )?;
        match reply {
            Value::Raw(bytes) if bytes.len() == 32 => {
                let mut id = [0u8; 32];
                id.copy_from_slice(&bytes);
                Ok(id)
            }
            other => Err(RepositoryError::UnexpectedRpcData(format!(
                "open returned {other:?} instead of a repository id"
            ))),
        }
    }

    /// The server's version from `negotiate`.
    pub fn server_version(&self) -> &ServerVersion {
        self.client.server_version()
    }

    /// The path sent in `open`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The RPC session, for callers that need a raw call.
    pub fn client(&mut self) -> &mut RpcClient {
        &mut self.client
    }

    /// Closes the session and reports how the server ended.
    pub fn close_with_exit(&mut self) -> Result<ServerExit, RepositoryError> {
        self.client.close()
    }

    /// Stores an object and waits for the answer, as borg's client does for the manifest
    /// (`put(id, data)` with `wait` left at its default, so `"wait": true` goes on the wire).
    pub fn put_and_wait(&mut self, id: &ObjectId, data: Vec<u8>) -> Result<(), RepositoryError> {
        self.async_error()?;
        self.nil(
            "put",
            vec![
                ("id", id_value(id)),
                ("data", Value::Raw(data)),
                ("wait", Value::Bool(true)),
            ],
        )
    }

    fn async_error(&mut self) -> Result<(), RepositoryError> {
        match self.client.take_async_error() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn nil(&mut self, method: &str, args: Vec<(&str, Value)>) -> Result<(), RepositoryError> {
        self.client.call(method, args).map(|_| ())
    }
}

impl Repository for RemoteRepository {
    fn id(&self) -> &ObjectId {
        &self.id
    }

    fn get(&mut self, id: &ObjectId) -> Result<Vec<u8>, RepositoryError> {
        match self.client.call("get", vec![("id", id_value(id))])? {
            Value::Raw(data) => Ok(data),
            other => Err(RepositoryError::UnexpectedRpcData(format!(
                "get returned {other:?}"
            ))),
        }
    }

    fn get_many(
        &mut self,
        ids: &[ObjectId],
        sink: &mut dyn FnMut(usize, Vec<u8>) -> Result<(), RepositoryError>,
    ) -> Result<(), RepositoryError> {
        self.client.get_many(ids, sink)
    }

    fn put(&mut self, id: &ObjectId, data: Vec<u8>) -> Result<(), RepositoryError> {
        self.async_error()?;
        // Like borg's `put(..., wait=False)`: no "wait" key goes on the wire.
        self.client.call_async(
            "put",
            vec![("id", id_value(id)), ("data", Value::Raw(data))],
        )
    }

    fn delete(&mut self, id: &ObjectId) -> Result<(), RepositoryError> {
        self.async_error()?;
        self.client.call_async("delete", vec![("id", id_value(id))])
    }

    fn flush(&mut self) -> Result<(), RepositoryError> {
        self.client.flush()
    }

    fn commit(&mut self, options: CommitOptions) -> Result<(), RepositoryError> {
        self.client.flush()?;
        // borg 1.2+ clients send all four arguments; a server older than 1.2 ignores the new
        // ones (borg marks them "dontcare").
        self.nil(
            "commit",
            vec![
                ("save_space", Value::Bool(false)),
                ("compact", Value::Bool(options.compact)),
                ("threshold", Value::Float(options.threshold)),
                ("cleanup_commits", Value::Bool(options.cleanup_commits)),
            ],
        )
    }

    fn rollback(&mut self) -> Result<(), RepositoryError> {
        // Answers to writes of the dropped transaction no longer matter.
        let _ = self.client.flush();
        self.nil("rollback", vec![])
    }

    fn list(
        &mut self,
        limit: Option<u32>,
        marker: Option<&ObjectId>,
    ) -> Result<Vec<ObjectId>, RepositoryError> {
        let reply = self.client.call(
            "list",
            vec![
                ("limit", limit.map_or(Value::Nil, |l| Value::Int(l.into()))),
                ("marker", marker.map_or(Value::Nil, id_value)),
            ],
        )?;
        ids_from(reply, "list")
    }

    fn scan(
        &mut self,
        limit: Option<u32>,
        marker: Option<&ObjectId>,
    ) -> Result<Vec<ObjectId>, RepositoryError> {
        self.client.require_version("scan", SCAN_SINCE)?;
        let reply = self.client.call(
            "scan",
            vec![
                ("limit", limit.map_or(Value::Nil, |l| Value::Int(l.into()))),
                ("marker", marker.map_or(Value::Nil, id_value)),
            ],
        )?;
        ids_from(reply, "scan")
    }

    fn check(&mut self, repair: bool, max_duration: u64) -> Result<bool, RepositoryError> {
        if max_duration != 0 {
            self.client
                .require_version("check(max_duration)", MAX_DURATION_SINCE)?;
        }
        let reply = self.client.call(
            "check",
            vec![
                ("repair", Value::Bool(repair)),
                ("save_space", Value::Bool(false)),
                ("max_duration", Value::Int(max_duration.into())),
            ],
        )?;
        reply
            .as_bool()
            .ok_or_else(|| RepositoryError::UnexpectedRpcData(format!("check returned {reply:?}")))
    }

    fn object_count(&mut self) -> Result<u64, RepositoryError> {
        let reply = self.client.call("__len__", vec![])?;
        reply.as_u64().ok_or_else(|| {
            RepositoryError::UnexpectedRpcData(format!("__len__ returned {reply:?}"))
        })
    }

    fn load_key(&mut self) -> Result<Vec<u8>, RepositoryError> {
        match self.client.call("load_key", vec![])? {
            Value::Raw(key) => Ok(key),
            other => Err(RepositoryError::UnexpectedRpcData(format!(
                "load_key returned {other:?}"
            ))),
        }
    }

    fn save_key(&mut self, keydata: &[u8]) -> Result<(), RepositoryError> {
        self.nil("save_key", vec![("keydata", Value::bytes(keydata))])
    }

    fn get_free_nonce(&mut self) -> Result<Option<u64>, RepositoryError> {
        match self.client.call("get_free_nonce", vec![])? {
            Value::Nil => Ok(None),
            other => other.as_u64().map(Some).ok_or_else(|| {
                RepositoryError::UnexpectedRpcData(format!("get_free_nonce returned {other:?}"))
            }),
        }
    }

    fn commit_nonce_reservation(
        &mut self,
        next_unreserved: u64,
        start_nonce: Option<u64>,
    ) -> Result<(), RepositoryError> {
        self.nil(
            "commit_nonce_reservation",
            vec![
                ("next_unreserved", Value::Int(next_unreserved.into())),
                (
                    "start_nonce",
                    start_nonce.map_or(Value::Nil, |n| Value::Int(n.into())),
                ),
            ],
        )
    }

    fn break_lock(&mut self) -> Result<(), RepositoryError> {
        self.nil("break_lock", vec![])
    }

    fn destroy(&mut self) -> Result<(), RepositoryError> {
        self.nil("destroy", vec![])
    }

    fn close(&mut self) -> Result<(), RepositoryError> {
        self.client.close().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::scripted::{negotiate_reply, reply, ScriptedTransport};
    use std::sync::{Arc, Mutex};

    /// A server of `version` answering every call with a plausible result; returns the
    /// repository and the requests the server saw.
    fn open_scripted(
        version: &'static [i64],
        options: &OpenOptions,
    ) -> (
        Result<RemoteRepository, RepositoryError>,
        Arc<Mutex<Vec<Value>>>,
    ) {
        let transport = ScriptedTransport::start(Box::new(move |request| {
            if let Value::Array(items) = request {
                return Some(vec![negotiate_reply(&items[1], version)]);
            }
            let result = match request.get("m").and_then(Value::as_str) {
                Some("open") => Value::bytes(&[9; 32]),
                Some("check") => Value::Bool(true),
                Some("scan") | Some("list") => Value::Array(vec![]),
                _ => Value::Nil,
            };
            Some(vec![reply(request, result)])
        }));
        let received = Arc::clone(&transport.received);
        let repo = RemoteRepository::open(
            Box::new(transport),
            "/repo",
            options,
            ClientOptions::default(),
        );
        (repo, received)
    }

    fn args_of(requests: &[Value], method: &str) -> Value {
        requests
            .iter()
            .find(|r| r.get("m").and_then(Value::as_str) == Some(method))
            .and_then(|r| r.get("a").cloned())
            .unwrap_or_else(|| panic!("no {method} request"))
    }

    #[test]
    fn requests_carry_borgs_arguments() {
        let (repo, received) = open_scripted(&[1, 2, 4, -1], &OpenOptions::default());
        let mut repo = repo.unwrap();
        assert_eq!(repo.id(), &[9; 32]);
        repo.put(&[1; 32], b"x".to_vec()).unwrap();
        repo.commit(CommitOptions::default()).unwrap();
        repo.check(false, 5).unwrap();
        repo.scan(Some(10), None).unwrap();
        repo.close().unwrap();
        let requests = received.lock().unwrap().clone();
        let open = args_of(&requests, "open");
        let expect_open = Value::map([
            ("path", Value::str("/repo")),
            ("create", Value::Bool(false)),
            ("lock_wait", Value::Int(1)),
            ("lock", Value::Bool(true)),
            ("exclusive", Value::Bool(false)),
            ("append_only", Value::Bool(false)),
            ("make_parent_dirs", Value::Bool(false)),
        ]);
        assert_eq!(
            crate::msgpack::encode(&open),
            crate::msgpack::encode(&expect_open)
        );
        let put = args_of(&requests, "put");
        assert!(put.get("wait").is_none(), "async puts send no wait key");
        let commit = args_of(&requests, "commit");
        for key in ["save_space", "compact", "threshold", "cleanup_commits"] {
            assert!(commit.get(key).is_some(), "commit lacks {key}");
        }
        assert_eq!(commit.get("threshold"), Some(&Value::Float(0.1)));
        assert_eq!(
            args_of(&requests, "check").get("max_duration"),
            Some(&Value::Int(5))
        );
    }

    #[test]
    fn version_gates_like_borgs_api_decorator() {
        // 1.1.0: no max_duration, but scan and make_parent_dirs exist.
        let (repo, _) = open_scripted(&[1, 1, 0, -1], &OpenOptions::default());
        let mut repo = repo.unwrap();
        assert!(repo.check(false, 0).unwrap(), "max_duration=0 is allowed");
        assert!(matches!(
            repo.check(false, 10),
            Err(RepositoryError::ServerOutdated { .. })
        ));
        assert!(repo.scan(None, None).is_ok());
        // 1.1.0b2: no scan; 1.1.8: no make_parent_dirs.
        let (repo, _) = open_scripted(&[1, 1, 0, -3, 2], &OpenOptions::default());
        assert!(matches!(
            repo.unwrap().scan(None, None),
            Err(RepositoryError::ServerOutdated { .. })
        ));
        let options = OpenOptions {
            make_parent_dirs: true,
            ..Default::default()
        };
        let (repo, received) = open_scripted(&[1, 1, 8, -1], &options);
        assert!(matches!(repo, Err(RepositoryError::ServerOutdated { .. })));
        assert_eq!(received.lock().unwrap().len(), 1, "open was never sent");
    }

    #[test]
    fn lock_wait_goes_as_int_when_whole() {
        assert_eq!(lock_wait_value(Some(1.0)), Value::Int(1));
        assert_eq!(lock_wait_value(Some(0.5)), Value::Float(0.5));
        assert_eq!(lock_wait_value(None), Value::Nil);
    }

    #[test]
    fn ids_must_be_32_bytes() {
        let ok = Value::Array(vec![Value::bytes(&[1; 32])]);
        assert_eq!(ids_from(ok, "list").unwrap(), vec![[1u8; 32]]);
        assert!(ids_from(Value::Array(vec![Value::bytes(&[1; 31])]), "list").is_err());
        assert!(ids_from(Value::Nil, "list").is_err());
    }
}
