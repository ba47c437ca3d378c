//! Protocol tests of the server against an in-memory store. The interop tests with real borg
//! clients live in `tests/serve_interop.rs`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::*;

/// A minimal in-memory store, only for exercising the protocol layer.
#[derive(Default)]
struct MemStore {
    objects: BTreeMap<ObjectId, Vec<u8>>,
    key: Vec<u8>,
    nonce: Option<u64>,
    closed: bool,
}

struct MemRepo(Arc<Mutex<MemStore>>);

fn not_found(id: &ObjectId) -> RepositoryError {
    RepositoryError::ObjectNotFound {
        id: hex::encode(id),
        path: "/mem".into(),
    }
}

impl Repository for MemRepo {
    fn id(&self) -> &ObjectId {
        &[7u8; 32]
    }
    fn get(&mut self, id: &ObjectId) -> Result<Vec<u8>, RepositoryError> {
        let s = self.0.lock().expect("lock");
        s.objects.get(id).cloned().ok_or_else(|| not_found(id))
    }
    fn get_many(
        &mut self,
        ids: &[ObjectId],
        sink: &mut dyn FnMut(usize, Vec<u8>) -> Result<(), RepositoryError>,
    ) -> Result<(), RepositoryError> {
        for (i, id) in ids.iter().enumerate() {
            sink(i, self.get(id)?)?;
        }
        Ok(())
    }
    fn put(&mut self, id: &ObjectId, data: Vec<u8>) -> Result<(), RepositoryError> {
        self.0.lock().expect("lock").objects.insert(*id, data);
        Ok(())
    }
    fn delete(&mut self, id: &ObjectId) -> Result<(), RepositoryError> {
        let mut s = self.0.lock().expect("lock");
        s.objects
            .remove(id)
            .map(|_| ())
            .ok_or_else(|| not_found(id))
    }
    fn flush(&mut self) -> Result<(), RepositoryError> {
        Ok(())
    }
    fn commit(&mut self, _: CommitOptions) -> Result<(), RepositoryError> {
        Ok(())
    }
    fn rollback(&mut self) -> Result<(), RepositoryError> {
        Ok(())
    }
    fn list(
        &mut self,
        limit: Option<u32>,
        marker: Option<&ObjectId>,
    ) -> Result<Vec<ObjectId>, RepositoryError> {
        let s = self.0.lock().expect("lock");
        Ok(s.objects
            .keys()
            .filter(|k| marker.is_none_or(|m| *k > m))
            .take(limit.unwrap_or(u32::MAX) as usize)
            .copied()
            .collect())
    }
    fn scan(
        &mut self,
        limit: Option<u32>,
        marker: Option<&ObjectId>,
    ) -> Result<Vec<ObjectId>, RepositoryError> {
        self.list(limit, marker)
    }
    fn check(&mut self, _: bool, _: u64) -> Result<bool, RepositoryError> {
        Ok(true)
    }
    fn object_count(&mut self) -> Result<u64, RepositoryError> {
        Ok(self.0.lock().expect("lock").objects.len() as u64)
    }
    fn load_key(&mut self) -> Result<Vec<u8>, RepositoryError> {
        Ok(self.0.lock().expect("lock").key.clone())
    }
    fn save_key(&mut self, keydata: &[u8]) -> Result<(), RepositoryError> {
        self.0.lock().expect("lock").key = keydata.to_vec();
        Ok(())
    }
    fn get_free_nonce(&mut self) -> Result<Option<u64>, RepositoryError> {
        Ok(self.0.lock().expect("lock").nonce)
    }
    fn commit_nonce_reservation(
        &mut self,
        next: u64,
        start: Option<u64>,
    ) -> Result<(), RepositoryError> {
        let mut s = self.0.lock().expect("lock");
        if s.nonce != start {
            return Err(RepositoryError::Remote {
                class: "Exception".into(),
                message: "nonce space reservation with mismatched previous state".into(),
            });
        }
        s.nonce = Some(next);
        Ok(())
    }
    fn break_lock(&mut self) -> Result<(), RepositoryError> {
        Ok(())
    }
    fn destroy(&mut self) -> Result<(), RepositoryError> {
        self.0.lock().expect("lock").objects.clear();
        Ok(())
    }
    fn close(&mut self) -> Result<(), RepositoryError> {
        self.0.lock().expect("lock").closed = true;
        Ok(())
    }
}

struct MemOpener {
    store: Arc<Mutex<MemStore>>,
    opened: Mutex<Vec<OpenRequest>>,
}

impl RepositoryOpener for MemOpener {
    fn open(&self, request: &OpenRequest) -> Result<Box<dyn Repository>, RepositoryError> {
        if request.path.ends_with("missing") {
            return Err(RepositoryError::DoesNotExist(
                request.path.display().to_string(),
            ));
        }
        self.opened.lock().expect("lock").push(request.clone());
        Ok(Box::new(MemRepo(self.store.clone())))
    }
}

fn opener() -> MemOpener {
    MemOpener {
        store: Arc::new(Mutex::new(MemStore::default())),
        opened: Mutex::new(Vec::new()),
    }
}

fn req(i: u64, m: &str, a: Value) -> Vec<u8> {
    msgpack::encode(&Value::map([("i", i.into()), ("m", m.into()), ("a", a)]))
}

fn run(
    options: ServeOptions,
    opener: &MemOpener,
    input: &[u8],
) -> (Vec<Value>, Vec<u8>, Result<(), ServeError>) {
    let mut out = Vec::new();
    let mut log = Vec::new();
    let r = Server::new(options, opener).run(input, &mut out, &mut log);
    let mut d = msgpack::Decoder::new(&out);
    let mut replies = Vec::new();
    while let Ok(v) = d.next_value() {
        replies.push(v);
    }
    let rest = out[d.position()..].to_vec();
    (replies, rest, r)
}

fn negotiate_tuple() -> Vec<u8> {
    msgpack::encode(&Value::Array(vec![
        1.into(),
        1.into(),
        "negotiate".into(),
        Value::Array(vec![Value::map([(
            "client_version",
            Value::Array(vec![1.into(), 2.into(), 4.into(), (-1).into()]),
        )])]),
    ]))
}

#[test]
fn negotiate_open_put_get_round_trip() {
    let o = opener();
    let mut input = negotiate_tuple();
    input.extend(req(
        2,
        "open",
        Value::map([
            ("path", "/~/repo".into()),
            ("create", true.into()),
            ("exclusive", true.into()),
            ("lock_wait", 1.into()),
        ]),
    ));
    input.extend(req(
        3,
        "put",
        Value::map([
            ("id", Value::bytes(&[1; 32])),
            ("data", Value::bytes(b"hello")),
            ("wait", true.into()),
        ]),
    ));
    input.extend(req(4, "get", Value::map([("id", Value::bytes(&[1; 32]))])));
    input.extend(req(5, "__len__", Value::map([])));
    input.extend(req(
        6,
        "list",
        Value::map([("limit", 100000.into()), ("marker", Value::Nil)]),
    ));
    input.extend(req(7, "get_free_nonce", Value::map([])));
    input.extend(req(
        8,
        "commit_nonce_reservation",
        Value::map([
            ("next_unreserved", 4096.into()),
            ("start_nonce", Value::Nil),
        ]),
    ));
    input.extend(req(9, "get_free_nonce", Value::map([])));
    let options = ServeOptions {
        base_dir: Some("/home/u".into()),
        ..ServeOptions::default()
    };
    let (replies, rest, r) = run(options, &o, &input);
    assert!(r.is_ok());
    assert!(rest.is_empty());
    // Tuple in, tuple out.
    assert_eq!(
        replies[0],
        Value::Array(vec![
            1.into(),
            1.into(),
            Value::Nil,
            Value::map([(
                "server_version",
                Value::Array(vec![1.into(), 4.into(), 5.into(), (-1).into()])
            )])
        ])
    );
    assert_eq!(replies[1].get("r"), Some(&Value::bytes(&[7; 32])));
    assert_eq!(replies[2].get("r"), Some(&Value::Nil));
    assert_eq!(replies[3].get("r"), Some(&Value::bytes(b"hello")));
    assert_eq!(replies[4].get("r"), Some(&Value::Int(1)));
    assert_eq!(
        replies[5].get("r"),
        Some(&Value::Array(vec![Value::bytes(&[1; 32])]))
    );
    assert_eq!(replies[6].get("r"), Some(&Value::Nil));
    assert_eq!(replies[8].get("r"), Some(&Value::Int(4096)));
    let opened = o.opened.lock().expect("lock");
    assert_eq!(opened[0].path, PathBuf::from("/home/u/repo"));
    assert!(opened[0].options.create && opened[0].options.exclusive);
    assert!(
        o.store.lock().expect("lock").closed,
        "EOF closes the repository"
    );
}

#[test]
fn errors_travel_as_borgs_exception_dicts() {
    let o = opener();
    let mut input = negotiate_tuple();
    input.extend(req(2, "get", Value::map([("id", Value::bytes(&[1; 32]))])));
    input.extend(req(
        3,
        "open",
        Value::map([("path", "/srv/missing".into())]),
    ));
    input.extend(req(4, "open", Value::map([("path", "/srv/repo".into())])));
    input.extend(req(5, "get", Value::map([("id", Value::bytes(&[9; 32]))])));
    input.extend(req(6, "get_many", Value::map([])));
    input.extend(req(7, "get", Value::map([("id", Value::bytes(&[1; 3]))])));
    let (replies, _, r) = run(ServeOptions::default(), &o, &input);
    assert!(r.is_ok());
    let class = |v: &Value| {
        v.get("exception_class")
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    assert_eq!(class(&replies[1]).as_deref(), Some("AttributeError"));
    assert_eq!(class(&replies[2]).as_deref(), Some("DoesNotExist"));
    assert_eq!(
        replies[2].get("exception_args"),
        Some(&Value::Array(vec![realpath(Path::new("/srv/missing"))
            .display()
            .to_string()
            .as_str()
            .into()]))
    );
    assert!(replies[3].get("r").is_some());
    assert_eq!(class(&replies[4]).as_deref(), Some("ObjectNotFound"));
    let short = replies[4]
        .get("exception_short")
        .and_then(Value::as_array)
        .expect("short");
    assert_eq!(
        short[0].as_str(),
        Some(
            format!(
                "Object with key {} not found in repository /mem.",
                hex::encode([9u8; 32])
            )
            .as_str()
        )
    );
    assert_eq!(replies[4].get("exception_trace"), Some(&Value::Bool(true)));
    assert_eq!(class(&replies[5]).as_deref(), Some("InvalidRPCMethod"));
    assert_eq!(class(&replies[6]).as_deref(), Some("TypeError"));
}

#[test]
fn restrictions_refuse_paths_outside() {
    let o = opener();
    let dir = tempfile::tempdir().expect("tempdir");
    let allowed = dir.path().join("allowed");
    std::fs::create_dir(&allowed).expect("mkdir");
    let options = ServeOptions {
        restrict_to_paths: vec![allowed.clone()],
        ..ServeOptions::default()
    };
    let mut input = negotiate_tuple();
    let p = |s: &str| Value::map([("path", s.into())]);
    input.extend(req(2, "open", p(&format!("{}X/r", allowed.display()))));
    input.extend(req(3, "open", p(&format!("{}/r", allowed.display()))));
    let (replies, _, _) = run(options, &o, &input);
    assert_eq!(
        replies[1].get("exception_class").and_then(Value::as_str),
        Some("PathNotAllowed")
    );
    assert!(replies[2].get("r").is_some());

    let options = ServeOptions {
        restrict_to_repositories: vec![allowed.join("r")],
        ..ServeOptions::default()
    };
    let mut input = negotiate_tuple();
    input.extend(req(2, "open", p(&format!("{}/r/data", allowed.display()))));
    input.extend(req(3, "open", p(&format!("{}/r/", allowed.display()))));
    let (replies, _, _) = run(options, &o, &input);
    assert_eq!(
        replies[1].get("exception_class").and_then(Value::as_str),
        Some("PathNotAllowed")
    );
    assert!(replies[2].get("r").is_some());
}

#[test]
fn append_only_rule_and_legacy_tuple_errors() {
    let o = opener();
    let options = ServeOptions {
        append_only: true,
        ..ServeOptions::default()
    };
    let mut input = negotiate_tuple();
    input.extend(req(
        2,
        "open",
        Value::map([("path", "/r1".into()), ("create", true.into())]),
    ));
    input.extend(req(3, "open", Value::map([("path", "/r2".into())])));
    input.extend(msgpack::encode(&Value::Array(vec![
        1.into(),
        4.into(),
        "get".into(),
        Value::Array(vec![Value::bytes(&[3; 32])]),
    ])));
    let (replies, _, _) = run(options, &o, &input);
    let opened = o.opened.lock().expect("lock");
    assert!(
        !opened[0].options.append_only,
        "init through an append-only serve is not append-only"
    );
    assert!(opened[1].options.append_only);
    assert_eq!(
        replies[3],
        Value::Array(vec![
            1.into(),
            4.into(),
            "ObjectNotFound".into(),
            "Remote Exception (see remote log for the traceback)".into()
        ])
    );
}

#[test]
fn close_before_open_and_garbage() {
    let o = opener();
    let mut out = Vec::new();
    let r = Server::new(ServeOptions::default(), &o).run(&b""[..], &mut out, Vec::new());
    assert!(r.is_ok());
    assert!(String::from_utf8_lossy(&out)
        .ends_with("Got connection close before repository was opened.\n"));
    let (_, _, r) = run(
        ServeOptions::default(),
        &o,
        &msgpack::encode(&Value::Int(5)),
    );
    assert!(matches!(r, Err(ServeError::UnexpectedData)));
    let (_, _, r) = run(ServeOptions::default(), &o, &[0xc1]);
    assert!(matches!(r, Err(ServeError::UnexpectedData)));
}

#[test]
fn old_client_open_without_exclusive_upgrades_the_lock_on_write() {
    use crate::repository::local::{LocalRepository, LocalSettings};
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("repo");
    let settings = LocalSettings {
        host_id: "serve-test@1".into(),
        storage_quota: None,
        new_segment_limits: None,
    };
    let create = OpenOptions {
        exclusive: true,
        ..OpenOptions::default()
    };
    LocalRepository::create(&path, &create, &settings)
        .expect("create")
        .close()
        .expect("close");
    let path_value = Value::str(&path.display().to_string());
    let id = Value::bytes(&[9u8; 32]);
    let mut input = negotiate_tuple();
    // An old client: `exclusive` left out (borg's server default None).
    input.extend(req(2, "open", Value::map([("path", path_value.clone())])));
    input.extend(req(
        3,
        "put",
        Value::map([("id", id.clone()), ("data", Value::bytes(b"payload"))]),
    ));
    input.extend(req(4, "commit", Value::map([("compact", false.into())])));
    // A new client that asked for a shared lock must not write.
    input.extend(req(
        5,
        "open",
        Value::map([("path", path_value.clone()), ("exclusive", false.into())]),
    ));
    input.extend(req(
        6,
        "put",
        Value::map([("id", id.clone()), ("data", Value::bytes(b"other"))]),
    ));
    // An explicit None reads what the first session committed.
    input.extend(req(
        7,
        "open",
        Value::map([("path", path_value), ("exclusive", Value::Nil)]),
    ));
    input.extend(req(8, "get", Value::map([("id", id)])));
    let opener = LocalOpener { settings };
    let mut out = Vec::new();
    Server::new(ServeOptions::default(), &opener)
        .run(&input[..], &mut out, Vec::new())
        .expect("serve");
    let mut d = msgpack::Decoder::new(&out);
    let mut replies = Vec::new();
    while let Ok(v) = d.next_value() {
        replies.push(v);
    }
    assert_eq!(replies.len(), 8, "{replies:?}");
    for r in &replies[1..5] {
        assert!(r.get("exception_class").is_none(), "{r:?}");
    }
    assert_eq!(
        replies[5].get("exception_class").and_then(Value::as_str),
        Some("AssertionError")
    );
    assert_eq!(
        replies[5].get("exception_short"),
        Some(&Value::Array(vec![Value::str(
            "AssertionError: bug in code, exclusive lock should exist here\n"
        )]))
    );
    assert_eq!(
        replies[7].get("r").and_then(Value::as_bytes),
        Some(&b"payload"[..])
    );
    assert!(
        !path.join("lock.roster").exists() && !path.join("lock.exclusive").exists(),
        "the lock is gone once the client hangs up"
    );
}
