//! `rborg serve`: borg's RPC server on stdin/stdout.
//!
//! A borg 1.x client (or rborg) starts `borg serve` through ssh and talks msgpack over its stdin
//! and stdout (spec: protocol.md §2). This server answers the same way borg's
//! `RepositoryServer.serve` does: requests are handled strictly in arrival order, each gets one
//! reply in the format it came in (dict in, dict out; legacy tuple in, tuple out), the method
//! must be on borg's allow-list, unknown arguments are dropped, and errors travel as borg's
//! exception dicts so that a borg client rebuilds them as its own exceptions.
//!
//! The repository itself is reached through a [`RepositoryOpener`], so the server does not care
//! whether the store behind it is the native local repository or anything else.

mod path;

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::msgpack::{self, DecodeError, Value};
use crate::repository::{CommitOptions, ObjectId, OpenOptions, Repository, RepositoryError};

pub use path::{realpath, resolve_repository_path};

/// The version this server reports in `negotiate`. A borg 1.2 or 1.4 client gates features on
/// it (protocol.md §2.10); everything those clients send is supported.
pub const SERVER_VERSION: (u32, u32, u32) = crate::BORG_VERSION;

/// The methods a client may call (`RepositoryServer.rpc_methods`).
pub const RPC_METHODS: [&str; 18] = [
    "__len__",
    "check",
    "commit",
    "delete",
    "destroy",
    "get",
    "list",
    "scan",
    "negotiate",
    "open",
    "put",
    "rollback",
    "save_key",
    "load_key",
    "break_lock",
    "get_free_nonce",
    "commit_nonce_reservation",
    "inject_exception",
];

/// The most a single request may be; borg's limited unpacker allows 3 × 20 MiB.
const MAX_MESSAGE: usize = 60 * 1024 * 1024;

/// What the server's own command line (and a forced `command=` in `authorized_keys`) decides.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// `--restrict-to-path`: repositories must be at or below one of these.
    pub restrict_to_paths: Vec<PathBuf>,
    /// `--restrict-to-repository`: repositories must be exactly one of these.
    pub restrict_to_repositories: Vec<PathBuf>,
    /// `--append-only`: every repository opened (but not one being created) is append-only.
    pub append_only: bool,
    /// `--storage-quota` in bytes.
    pub storage_quota: Option<u64>,
    /// Borg's base directory for `/~/` and `~/` paths (`BORG_BASE_DIR`, else `HOME`).
    pub base_dir: Option<PathBuf>,
}

/// What the server needs to know to open a repository.
#[derive(Debug, Clone)]
pub struct OpenRequest {
    /// The resolved, absolute path.
    pub path: PathBuf,
    /// The client's `open` arguments, with the server's append-only rule applied.
    pub options: OpenOptions,
    /// The server's storage quota, if any.
    pub storage_quota: Option<u64>,
}

/// Opens or creates the repository a client asked for.
pub trait RepositoryOpener {
    /// Opens (or with `options.create`, creates) the repository.
    fn open(&self, request: &OpenRequest) -> Result<Box<dyn Repository>, RepositoryError>;
}

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Reading stdin or writing stdout failed.
    #[error("serve: {0}")]
    Io(#[from] io::Error),
    /// The client sent something that is not a borg RPC request (borg's
    /// `UnexpectedRPCDataFormatFromClient`).
    #[error("Got unexpected RPC data format from client.")]
    UnexpectedData,
}

/// A failed call, as it goes back to the client.
struct RpcFailure {
    class: String,
    args: Vec<Value>,
    short: String,
    trace: bool,
}

impl RpcFailure {
    fn new(class: &str, args: Vec<Value>, short: String, trace: bool) -> Self {
        RpcFailure {
            class: class.to_string(),
            args,
            short,
            trace,
        }
    }

    /// Python's `format_exception_only` for a builtin exception with one message.
    fn builtin(class: &str, message: &str) -> Self {
        RpcFailure::new(
            class,
            vec![message.into()],
            format!("{class}: {message}\n"),
            true,
        )
    }
}

/// Maps a repository error to the exception borg's server would raise for it.
fn failure_of(e: &RepositoryError) -> RpcFailure {
    use RepositoryError as E;
    let short = e.to_string();
    let s = |x: &str| Value::str(x);
    let (class, args, trace): (&str, Vec<Value>, bool) = match e {
        E::ObjectNotFound { id, path } => ("ObjectNotFound", vec![s(id), s(path)], true),
        E::IntegrityError(m) => ("IntegrityError", vec![s(m)], true),
        E::DoesNotExist(p) => ("DoesNotExist", vec![s(p)], false),
        E::AlreadyExists(p) => ("AlreadyExists", vec![s(p)], false),
        E::PathAlreadyExists(p) => ("PathAlreadyExists", vec![s(p)], false),
        E::ParentPathDoesNotExist(p) => ("ParentPathDoesNotExist", vec![s(p)], false),
        E::PathPermissionDenied(p) => ("PathPermissionDenied", vec![s(p)], false),
        E::InvalidRepository(p) => ("InvalidRepository", vec![s(p)], false),
        E::InvalidRepositoryConfig { path, reason } => {
            ("InvalidRepositoryConfig", vec![s(path), s(reason)], false)
        }
        E::AtticRepository(p) => ("AtticRepository", vec![s(p)], false),
        E::CheckNeeded(p) => ("CheckNeeded", vec![s(p)], true),
        E::PathNotAllowed(p) => ("PathNotAllowed", vec![s(p)], false),
        E::InvalidRpcMethod(m) => ("InvalidRPCMethod", vec![s(m)], false),
        E::LockTimeout(p) => ("LockTimeout", vec![s(p)], false),
        E::LockFailed { path, reason } => ("LockFailed", vec![s(path), s(reason)], true),
        E::NotLocked(p) => ("NotLocked", vec![s(p)], true),
        E::NotMyLock(p) => ("NotMyLock", vec![s(p)], true),
        E::StorageQuotaExceeded { quota, used } => {
            ("StorageQuotaExceeded", vec![s(quota), s(used)], false)
        }
        E::InsufficientFreeSpace {
            required,
            available,
        } => (
            "InsufficientFreeSpaceError",
            vec![s(required), s(available)],
            false,
        ),
        E::AppendOnly(_) => return RpcFailure::builtin("ValueError", &short),
        // A message that is already Python's `Class: text` line (from a server behind this
        // one) travels as it is; a bare one is formatted as Python formats a builtin error.
        E::Remote { class, message } if message.starts_with(&format!("{class}: ")) => {
            return RpcFailure::new(class, vec![s(message)], message.clone(), true)
        }
        E::Remote { class, message } => return RpcFailure::builtin(class, message),
        _ => ("Error", vec![s(&short)], false),
    };
    RpcFailure::new(class, args, short, trace)
}

/// One decoded request.
struct Request {
    msgid: Value,
    method: String,
    args: Value,
    dict_format: bool,
}

/// Positional argument names of the legacy tuple format (`compatMap` in `remote.py`).
fn compat_names(method: &str) -> &'static [&'static str] {
    match method {
        "open" => &[
            "path",
            "create",
            "lock_wait",
            "lock",
            "exclusive",
            "append_only",
        ],
        "check" => &["repair", "save_space"],
        "commit" => &["save_space"],
        "list" => &["limit", "marker"],
        "put" => &["id", "data"],
        "get" | "delete" => &["id"],
        "save_key" => &["keydata"],
        "negotiate" => &["client_data"],
        "commit_nonce_reservation" => &["next_unreserved", "start_nonce"],
        _ => &[],
    }
}

/// Removes the entry `name` from a map and returns its value, so large values (a `put`'s
/// object) move instead of being copied.
fn take_entry(map: &mut Value, name: &str) -> Option<Value> {
    let Value::Map(entries) = map else {
        return None;
    };
    let at = entries
        .iter()
        .position(|(k, _)| k.as_bytes() == Some(name.as_bytes()))?;
    Some(entries.swap_remove(at).1)
}

fn parse_request(v: Value) -> Result<Request, ServeError> {
    match v {
        Value::Map(_) => {
            let msgid = v.get("i").cloned().unwrap_or(Value::Nil);
            let method = v
                .get("m")
                .and_then(Value::as_str)
                .ok_or(ServeError::UnexpectedData)?
                .to_string();
            // Moved, not cloned: a `put` carries its object here.
            let mut v = v;
            let args = take_entry(&mut v, "a").unwrap_or(Value::Map(Vec::new()));
            Ok(Request {
                msgid,
                method,
                args,
                dict_format: true,
            })
        }
        Value::Array(mut a) if a.len() == 4 => {
            let positional = a.pop().unwrap_or(Value::Nil);
            let method = a
                .pop()
                .and_then(|m| m.as_str().map(str::to_string))
                .ok_or(ServeError::UnexpectedData)?;
            let msgid = a.pop().unwrap_or(Value::Nil);
            let names = compat_names(&method);
            let values = match positional {
                Value::Array(values) => values,
                _ => Vec::new(),
            };
            let args = Value::Map(
                names
                    .iter()
                    .zip(values)
                    .map(|(n, v)| (Value::str(n), v))
                    .collect(),
            );
            Ok(Request {
                msgid,
                method,
                args,
                dict_format: false,
            })
        }
        _ => Err(ServeError::UnexpectedData),
    }
}

/// The RPC server state for one connection.
pub struct Server<'a> {
    options: ServeOptions,
    opener: &'a dyn RepositoryOpener,
    repository: Option<Box<dyn Repository>>,
    repository_path: String,
    json_logging: bool,
}

impl<'a> Server<'a> {
    /// A server that opens repositories through `opener`.
    pub fn new(options: ServeOptions, opener: &'a dyn RepositoryOpener) -> Self {
        Server {
            options,
            opener,
            repository: None,
            repository_path: String::new(),
            json_logging: false,
        }
    }

    /// Serves requests from `input` until it ends, writing replies to `output` and log lines to
    /// `log`. On end of input the repository is closed (releasing its lock) without a commit,
    /// as borg's server does.
    pub fn run(
        &mut self,
        mut input: impl Read,
        mut output: impl Write,
        mut log: impl Write,
    ) -> Result<(), ServeError> {
        let mut buf: Vec<u8> = Vec::new();
        let mut chunk = vec![0u8; 1 << 20];
        loop {
            let n = match input.read(&mut chunk) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            if n == 0 {
                match self.repository.take() {
                    Some(mut repo) => {
                        let _ = repo.close();
                    }
                    // borg writes this to stdout, not stderr (`serve()` sets stderr_fd to stdout).
                    None => {
                        let _ = writeln!(
                            output,
                            "rborg {}: Got connection close before repository was opened.",
                            env!("CARGO_PKG_VERSION")
                        );
                    }
                }
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
            let mut used = 0;
            loop {
                match msgpack::decode_prefix(&buf[used..]) {
                    Ok((value, len)) => {
                        used += len;
                        let request = match parse_request(value) {
                            Ok(r) => r,
                            Err(e) => {
                                self.close_repository();
                                let _ = writeln!(log, "rborg: {e}");
                                return Err(e);
                            }
                        };
                        let reply = self.handle(request, &mut log);
                        output.write_all(&reply)?;
                        output.flush()?;
                    }
                    Err(DecodeError::Incomplete) => break,
                    Err(_) => {
                        self.close_repository();
                        let _ = writeln!(log, "rborg: {}", ServeError::UnexpectedData);
                        return Err(ServeError::UnexpectedData);
                    }
                }
            }
            buf.drain(..used);
            if buf.len() > MAX_MESSAGE {
                self.close_repository();
                return Err(ServeError::UnexpectedData);
            }
        }
    }

    fn close_repository(&mut self) {
        if let Some(mut repo) = self.repository.take() {
            let _ = repo.close();
        }
    }

    /// Handles one request and returns the encoded reply.
    fn handle(&mut self, mut req: Request, log: &mut dyn Write) -> Vec<u8> {
        let result = if RPC_METHODS.contains(&req.method.as_str()) {
            self.call(&req.method, &mut req.args)
        } else {
            Err(failure_of(&RepositoryError::InvalidRpcMethod(
                req.method.clone(),
            )))
        };
        if req.method == "negotiate"
            && req
                .args
                .get("client_data")
                .is_some_and(|c| c.as_map().is_some())
        {
            self.json_logging = true;
        }
        match (result, req.dict_format) {
            (Ok(r), true) => msgpack::encode(&Value::map([("i", req.msgid), ("r", r)])),
            (Ok(r), false) => {
                msgpack::encode(&Value::Array(vec![1.into(), req.msgid, Value::Nil, r]))
            }
            (Err(f), true) => {
                let full = vec![Value::str(&format!(
                    "{}: {}\n",
                    f.class,
                    f.short.trim_end()
                ))];
                msgpack::encode(&Value::map([
                    ("i", req.msgid),
                    ("exception_class", Value::str(&f.class)),
                    ("exception_args", Value::Array(f.args)),
                    ("exception_full", Value::Array(full)),
                    ("exception_short", Value::Array(vec![Value::str(&f.short)])),
                    ("exception_trace", f.trace.into()),
                    ("sysinfo", Value::str("")),
                ]))
            }
            (Err(f), false) => {
                let _ = self.log(log, "ERROR", &f.short);
                msgpack::encode(&Value::Array(vec![
                    1.into(),
                    req.msgid,
                    Value::str(&f.class),
                    Value::str("Remote Exception (see remote log for the traceback)"),
                ]))
            }
        }
    }

    fn log(&self, log: &mut dyn Write, level: &str, message: &str) -> io::Result<()> {
        if self.json_logging {
            let line = serde_json::json!({
                "type": "log_message",
                "time": std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or_default(),
                "message": message,
                "levelname": level,
                "name": "borg.remote",
            });
            writeln!(log, "{line}")
        } else {
            writeln!(log, "$LOG {level} borg.remote Remote: {message}")
        }
    }

    fn call(&mut self, method: &str, args: &mut Value) -> Result<Value, RpcFailure> {
        match method {
            "negotiate" => {
                let (a, b, c) = SERVER_VERSION;
                let client = args.get("client_data").cloned().unwrap_or(Value::Nil);
                // A 1.0.x client sends the int 2 and expects it back.
                if client.as_u64() == Some(2) {
                    return Ok(2.into());
                }
                Ok(Value::map([(
                    "server_version",
                    Value::Array(vec![a.into(), b.into(), c.into(), (-1).into()]),
                )]))
            }
            "open" => self.open(args),
            "inject_exception" => Err(self.injected(args)),
            _ => {
                let path = self.repository_path.clone();
                let repo = self.repository.as_mut().ok_or_else(|| {
                    RpcFailure::builtin(
                        "AttributeError",
                        &format!("'NoneType' object has no attribute '{method}'"),
                    )
                })?;
                let payload = match method {
                    "put" => take_entry(args, "data"),
                    _ => None,
                };
                let r = Self::dispatch(repo.as_mut(), method, args, payload);
                if method == "destroy" && r.is_ok() {
                    self.repository = None;
                }
                r.map_err(|e| match e {
                    CallError::Repository(e) => failure_of(&e),
                    CallError::BadArgument(name) => RpcFailure::builtin(
                        "TypeError",
                        &format!(
                            "{method}() got a bad or missing argument '{name}' (repository {path})"
                        ),
                    ),
                })
            }
        }
    }

    fn open(&mut self, args: &Value) -> Result<Value, RpcFailure> {
        let raw_path = args.get("path").and_then(Value::as_bytes).ok_or_else(|| {
            RpcFailure::builtin(
                "TypeError",
                "open() missing 1 required positional argument: 'path'",
            )
        })?;
        let raw_path = String::from_utf8_lossy(raw_path).into_owned();
        let path = resolve_repository_path(&raw_path, self.options.base_dir.as_deref());
        let with_sep = |p: &Path| {
            let mut s = p.as_os_str().to_os_string();
            if !s.to_string_lossy().ends_with('/') {
                s.push("/");
            }
            s
        };
        let path_sep = with_sep(&path);
        let shown = path.display().to_string();
        if !self.options.restrict_to_paths.is_empty()
            && !self.options.restrict_to_paths.iter().any(|r| {
                let r = with_sep(&realpath(r));
                path_sep
                    .as_encoded_bytes()
                    .starts_with(r.as_encoded_bytes())
            })
        {
            return Err(failure_of(&RepositoryError::PathNotAllowed(shown)));
        }
        if !self.options.restrict_to_repositories.is_empty()
            && !self
                .options
                .restrict_to_repositories
                .iter()
                .any(|r| with_sep(&realpath(r)) == path_sep)
        {
            return Err(failure_of(&RepositoryError::PathNotAllowed(shown)));
        }
        let flag =
            |name: &str, default: bool| args.get(name).and_then(Value::as_bool).unwrap_or(default);
        let create = flag("create", false);
        // `exclusive` defaults to None in borg's `RepositoryServer.open`: an old client (or one
        // that leaves it out) gets a shared lock that `prepare_txn` upgrades on the first write.
        let exclusive = match args.get("exclusive") {
            None | Some(Value::Nil) => None,
            Some(Value::Int(i)) => Some(*i != 0),
            Some(v) => Some(v.as_bool().unwrap_or(true)),
        };
        let options = OpenOptions {
            create,
            lock: flag("lock", true),
            exclusive: exclusive.unwrap_or(false),
            upgrade_lock: exclusive.is_none(),
            lock_wait: args.get("lock_wait").and_then(Value::as_f64),
            // borg: `(not create and self.append_only) or append_only`
            append_only: (!create && self.options.append_only) || flag("append_only", false),
            make_parent_dirs: flag("make_parent_dirs", false),
        };
        let request = OpenRequest {
            path: path.clone(),
            options,
            storage_quota: self.options.storage_quota,
        };
        // Opening again replaces the old repository; close it first so its lock is released.
        self.close_repository();
        let repo = self.opener.open(&request).map_err(|e| failure_of(&e))?;
        let id = *repo.id();
        self.repository = Some(repo);
        self.repository_path = shown;
        Ok(Value::bytes(&id))
    }

    fn injected(&self, args: &Value) -> RpcFailure {
        let kind = args.get("kind").and_then(Value::as_str).unwrap_or_default();
        let s1 = "test string".to_string();
        let e = match kind {
            "DoesNotExist" => RepositoryError::DoesNotExist(s1),
            "AlreadyExists" => RepositoryError::AlreadyExists(s1),
            "CheckNeeded" => RepositoryError::CheckNeeded(s1),
            "IntegrityError" => RepositoryError::IntegrityError(s1),
            "PathNotAllowed" => RepositoryError::PathNotAllowed("foo".into()),
            "ObjectNotFound" => RepositoryError::ObjectNotFound {
                id: s1,
                path: "test string2".into(),
            },
            "InvalidRPCMethod" => RepositoryError::InvalidRpcMethod(s1),
            _ => {
                return RpcFailure::builtin(
                    "ZeroDivisionError",
                    "integer division or modulo by zero",
                )
            }
        };
        failure_of(&e)
    }

    /// Runs one repository method. `payload` is a `put`'s `data`, already taken out of `args`.
    fn dispatch(
        repo: &mut dyn Repository,
        method: &str,
        args: &Value,
        payload: Option<Value>,
    ) -> Result<Value, CallError> {
        let id = |name: &'static str| -> Result<ObjectId, CallError> {
            args.get(name)
                .and_then(Value::as_bytes)
                .and_then(|b| b.try_into().ok())
                .ok_or(CallError::BadArgument(name))
        };
        let opt_id = |name: &'static str| -> Result<Option<ObjectId>, CallError> {
            match args.get(name) {
                None | Some(Value::Nil) => Ok(None),
                Some(_) => id(name).map(Some),
            }
        };
        let opt_u64 = |name: &'static str| -> Result<Option<u64>, CallError> {
            match args.get(name) {
                None | Some(Value::Nil) => Ok(None),
                Some(v) => v.as_u64().map(Some).ok_or(CallError::BadArgument(name)),
            }
        };
        let flag =
            |name: &str, default: bool| args.get(name).and_then(Value::as_bool).unwrap_or(default);
        let ids = |v: Vec<ObjectId>| Value::Array(v.iter().map(|i| Value::bytes(i)).collect());
        Ok(match method {
            "get" => Value::Raw(repo.get(&id("id")?)?),
            "put" => {
                let Some(Value::Raw(data)) = payload else {
                    return Err(CallError::BadArgument("data"));
                };
                repo.put(&id("id")?, data)?;
                repo.flush()?;
                Value::Nil
            }
            "delete" => {
                repo.delete(&id("id")?)?;
                repo.flush()?;
                Value::Nil
            }
            "commit" => {
                repo.commit(CommitOptions {
                    // The server's default is to compact; borg 1.2+ clients always say.
                    compact: flag("compact", true),
                    threshold: args.get("threshold").and_then(Value::as_f64).unwrap_or(0.1),
                    cleanup_commits: flag("cleanup_commits", false),
                })?;
                Value::Nil
            }
            "rollback" => {
                repo.rollback()?;
                Value::Nil
            }
            "list" => {
                let limit = opt_u64("limit")?.map(|l| l.min(u32::MAX as u64) as u32);
                ids(repo.list(limit, opt_id("marker")?.as_ref())?)
            }
            "scan" => {
                let limit = opt_u64("limit")?.map(|l| l.min(u32::MAX as u64) as u32);
                if limit == Some(0) {
                    return Err(CallError::Repository(RepositoryError::Remote {
                        class: "ValueError".into(),
                        message: "ValueError: limit must be >= 1\n".into(),
                    }));
                }
                ids(repo.scan(limit, opt_id("marker")?.as_ref())?)
            }
            "check" => {
                let max_duration = opt_u64("max_duration")?.unwrap_or(0);
                Value::Bool(repo.check(flag("repair", false), max_duration)?)
            }
            "destroy" => {
                repo.destroy()?;
                Value::Nil
            }
            "__len__" => repo.object_count()?.into(),
            "load_key" => Value::Raw(repo.load_key()?),
            "save_key" => {
                let data = args
                    .get("keydata")
                    .and_then(Value::as_bytes)
                    .ok_or(CallError::BadArgument("keydata"))?;
                repo.save_key(data)?;
                Value::Nil
            }
            "break_lock" => {
                repo.break_lock()?;
                Value::Nil
            }
            "get_free_nonce" => repo.get_free_nonce()?.into(),
            "commit_nonce_reservation" => {
                let next =
                    opt_u64("next_unreserved")?.ok_or(CallError::BadArgument("next_unreserved"))?;
                repo.commit_nonce_reservation(next, opt_u64("start_nonce")?)?;
                Value::Nil
            }
            other => {
                return Err(CallError::Repository(RepositoryError::InvalidRpcMethod(
                    other.to_string(),
                )))
            }
        })
    }
}

enum CallError {
    Repository(RepositoryError),
    BadArgument(&'static str),
}

impl From<RepositoryError> for CallError {
    fn from(e: RepositoryError) -> Self {
        CallError::Repository(e)
    }
}

/// Opens repositories with the native local repository (what `rborg serve` uses).
pub struct LocalOpener {
    /// Settings of the local repository (host id for locks).
    pub settings: crate::repository::local::LocalSettings,
}

impl RepositoryOpener for LocalOpener {
    fn open(&self, request: &OpenRequest) -> Result<Box<dyn Repository>, RepositoryError> {
        let mut settings = self.settings.clone();
        if request.storage_quota.is_some() {
            settings.storage_quota = request.storage_quota;
        }
        let repo = crate::repository::local::LocalRepository::open(
            &request.path,
            &request.options,
            &settings,
        )?;
        Ok(Box::new(repo))
    }
}

/// Parses a `--storage-quota` value with borg's decimal units (`10M` = 10,000,000 bytes); it
/// must be 0 or at least 10M, as borg requires.
pub fn parse_storage_quota(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (num, mult) = match t.chars().last() {
        Some('K') => (&t[..t.len() - 1], 1e3),
        Some('M') => (&t[..t.len() - 1], 1e6),
        Some('G') => (&t[..t.len() - 1], 1e9),
        Some('T') => (&t[..t.len() - 1], 1e12),
        Some('P') => (&t[..t.len() - 1], 1e15),
        _ => (t, 1.0),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid storage quota {text:?}"))?;
    let bytes = (n * mult) as u64;
    if bytes != 0 && bytes < 10_000_000 {
        return Err(format!("quota is too small (<10M): {text}"));
    }
    Ok(bytes)
}

/// An opener that refuses every path, for fuzzing the server's message handling.
struct RefuseAll;

impl RepositoryOpener for RefuseAll {
    fn open(&self, request: &OpenRequest) -> Result<Box<dyn Repository>, RepositoryError> {
        Err(RepositoryError::DoesNotExist(
            request.path.display().to_string(),
        ))
    }
}

/// The body of the `serve_request` fuzz target, also replayed over its corpus by `cargo test`:
/// any byte stream on stdin ends in replies and a clean exit or a protocol error, never a
/// panic, and every reply is valid msgpack.
#[doc(hidden)]
pub fn fuzz_serve(data: &[u8]) {
    let options = ServeOptions {
        restrict_to_paths: vec![PathBuf::from("/nonexistent-fuzz-root")],
        ..ServeOptions::default()
    };
    let mut out = Vec::new();
    let _ = Server::new(options, &RefuseAll).run(data, &mut out, io::sink());
    // No repository ever opens, so a clean end writes borg's text line after the replies.
    let tail = format!(
        "rborg {}: Got connection close before repository was opened.\n",
        env!("CARGO_PKG_VERSION")
    );
    let replies = out.strip_suffix(tail.as_bytes()).unwrap_or(&out);
    let mut d = msgpack::Decoder::new(replies);
    while !d.is_empty() {
        let reply = d.next_value().expect("every reply is one msgpack object");
        assert!(
            matches!(reply, Value::Map(_) | Value::Array(_)),
            "reply {reply:?} is neither dict nor tuple format"
        );
    }
}

#[cfg(test)]
mod tests;
