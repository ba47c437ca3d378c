//! The RPC client: one session with a `borg serve`, pipelined.
//!
//! Requests are written on the caller's thread; the server's stdout and stderr are read by two
//! threads of their own, so the server can always write and never waits for us while we wait
//! for it (borg gets the same from non-blocking pipes and `select`). Responses are matched to
//! requests by msgid. Asynchronous calls (`put`, `delete`) return once written; their errors are
//! kept and reported by a later [`RpcClient::take_async_error`] or [`RpcClient::flush`].
//! [`RpcClient::get_many`] keeps a window of `get`s in flight, as borg's preloading does.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{unbounded, Receiver, Sender};

use super::message::{decode_response, encode_negotiate, encode_request, RemoteException};
use super::stderr::{pump_stderr, ProgressCallback};
use super::version::{format_version, ServerVersion};
use crate::msgpack::{self, DecodeError, Value};
use crate::repository::RepositoryError;
use crate::transport::{ServerExit, Transport};

/// Requests are collected up to this many bytes before they are written to the server's
/// stdin: thousands of small `put`s of a backup then cost a write (and a wake-up of ssh) per
/// batch instead of one each.
const SEND_BUFFER: usize = 256 << 10;

/// borg's `MAX_INFLIGHT`: how many requests one call keeps unanswered.
pub const DEFAULT_WINDOW: usize = 100;

/// Gets in flight before `get_many` has seen an object to estimate sizes from.
const INITIAL_GET_WINDOW: usize = 8;

/// The largest message either side may send (borg's unpacker `max_buffer_size`, 60 MiB).
pub const MAX_MESSAGE_SIZE: usize = 60 * 1024 * 1024;

/// The hint borg gives when the connection ends during negotiate.
pub const NEGOTIATE_HINT: &str = "Is borg working on the server?";

/// Settings of an RPC session.
pub struct ClientOptions {
    /// The version tuple announced in `negotiate` (borg sends its own `BORG_VERSION`).
    pub client_version: Vec<i64>,
    /// Requests kept in flight by `get_many` and by runs of asynchronous calls.
    pub window: usize,
    /// `get_many` sends fewer requests at once when the objects are large: it keeps about this
    /// many bytes of answers in flight (estimated from the objects received so far), so a
    /// window of 20 MiB objects cannot fill memory. At least two gets stay in flight.
    pub max_bytes_in_flight: usize,
    /// Receives the server's progress records, if the caller shows progress.
    pub progress: Option<ProgressCallback>,
    /// How long [`RpcClient::close`] waits for the server to end before killing it.
    pub close_timeout: Duration,
    /// How the repository is named in errors where borg uses the client's own location.
    pub location: String,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            client_version: vec![
                i64::from(crate::BORG_VERSION.0),
                i64::from(crate::BORG_VERSION.1),
                i64::from(crate::BORG_VERSION.2),
                -1,
            ],
            window: DEFAULT_WINDOW,
            max_bytes_in_flight: 64 * 1024 * 1024,
            progress: None,
            close_timeout: Duration::from_secs(10),
            location: String::new(),
        }
    }
}

/// Traffic counters of a session (borg logs the same at the end of a session).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Requests sent, negotiate included.
    pub messages_sent: u64,
    /// Bytes written to the server.
    pub bytes_sent: u64,
    /// Bytes read from the server's stdout.
    pub bytes_received: u64,
    /// The most `get`s `get_many` had in flight at once.
    pub max_gets_in_flight: usize,
}

/// What the reader threads report.
enum Event {
    Message(Value),
    /// stdout ended (server exited or the connection dropped).
    Eof,
    /// stdout carried something that is not a msgpack message.
    Garbage(RepositoryError),
}

/// A session with one `borg serve`.
pub struct RpcClient {
    transport: Box<dyn Transport>,
    stdin: Option<Box<dyn Write + Send>>,
    /// Requests written but not yet handed to the server's stdin (see [`SEND_BUFFER`]).
    pending: Vec<u8>,
    events: Receiver<Event>,
    readers: Vec<JoinHandle<()>>,
    next_msgid: u64,
    responses: HashMap<u64, Result<Value, RemoteException>>,
    async_ids: HashSet<u64>,
    ignored: HashSet<u64>,
    async_errors: VecDeque<RemoteException>,
    closed: bool,
    server_version: ServerVersion,
    window: usize,
    max_bytes_in_flight: usize,
    close_timeout: Duration,
    location: String,
    stats: ClientStats,
    bytes_received: Arc<AtomicU64>,
    /// Total size and number of objects `get_many` received, for its window estimate.
    object_sizes: (u64, u64),
}

impl RpcClient {
    /// Starts a session over `transport`: spawns the reader threads and negotiates.
    ///
    /// Fails with [`RepositoryError::ConnectionClosed`] (with the hint "Is borg working on the
    /// server?") when the server ends before answering, e.g. when `--remote-path` is wrong.
    pub fn connect(
        mut transport: Box<dyn Transport>,
        options: ClientOptions,
    ) -> Result<RpcClient, RepositoryError> {
        let streams = transport
            .take_streams()
            .map_err(|e| RepositoryError::Transport(e.to_string()))?;
        let (tx, rx) = unbounded();
        let mut readers = Vec::new();
        let stdout = streams.stdout;
        let bytes_received = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&bytes_received);
        let spawn_err = |e| RepositoryError::io("starting an RPC reader thread", e);
        readers.push(
            std::thread::Builder::new()
                .name("rborg-rpc-stdout".into())
                .spawn(move || pump_stdout(stdout, tx, counter))
                .map_err(spawn_err)?,
        );
        let stderr = streams.stderr;
        let progress = options.progress;
        readers.push(
            std::thread::Builder::new()
                .name("rborg-rpc-stderr".into())
                .spawn(move || pump_stderr(stderr, progress))
                .map_err(spawn_err)?,
        );
        let mut client = RpcClient {
            transport,
            stdin: Some(streams.stdin),
            pending: Vec::new(),
            events: rx,
            readers,
            next_msgid: 0,
            responses: HashMap::new(),
            async_ids: HashSet::new(),
            ignored: HashSet::new(),
            async_errors: VecDeque::new(),
            closed: false,
            server_version: ServerVersion::fallback(),
            window: options.window.max(1),
            max_bytes_in_flight: options.max_bytes_in_flight,
            close_timeout: options.close_timeout,
            location: options.location,
            stats: ClientStats::default(),
            bytes_received,
            object_sizes: (0, 0),
        };
        match client.negotiate(&options.client_version) {
            Ok(()) => Ok(client),
            Err(e) => {
                client.kill();
                Err(e)
            }
        }
    }

    fn negotiate(&mut self, client_version: &[i64]) -> Result<(), RepositoryError> {
        self.next_msgid += 1;
        let msgid = self.next_msgid;
        let with_hint = |e: RepositoryError| match e {
            RepositoryError::ConnectionClosed { hint: _ } => RepositoryError::ConnectionClosed {
                hint: Some(NEGOTIATE_HINT.to_string()),
            },
            other => other,
        };
        self.write(&encode_negotiate(msgid, client_version))
            .map_err(with_hint)?;
        let reply = self.wait_for(msgid).map_err(with_hint)?;
        match reply.get("server_version") {
            Some(version) => {
                self.server_version = ServerVersion::from_value(version).ok_or_else(|| {
                    RepositoryError::UnexpectedRpcData(format!("server_version {version:?}"))
                })?;
                log::debug!("borg serve version {}", self.server_version);
                Ok(())
            }
            // A 1.0.x server answers with the bare protocol number 2; rborg speaks only the
            // dict format those servers lack.
            None if reply == Value::Int(2) => Err(RepositoryError::ServerOutdated {
                method: "the dict RPC format".into(),
                required: "1.1.0".into(),
            }),
            None => Err(RepositoryError::Remote {
                class: "Error".into(),
                message: format!("Server insisted on using unsupported protocol version {reply:?}"),
            }),
        }
    }

    /// The version the server announced in `negotiate`.
    pub fn server_version(&self) -> &ServerVersion {
        &self.server_version
    }

    /// Fails with [`RepositoryError::ServerOutdated`] unless the server is at least `required`
    /// (borg's `@api(since=...)`), checked before anything is sent.
    pub fn require_version(&self, what: &str, required: &[i64]) -> Result<(), RepositoryError> {
        if self.server_version.at_least(required) {
            Ok(())
        } else {
            Err(RepositoryError::ServerOutdated {
                method: what.to_string(),
                required: format_version(required),
            })
        }
    }

    fn closed_error() -> RepositoryError {
        RepositoryError::ConnectionClosed { hint: None }
    }

    /// Queues one request. Small requests collect in [`SEND_BUFFER`] and reach the server
    /// together, when the buffer is full or before this client waits for an answer; a large
    /// one is written at once (after what was queued before it).
    fn write(&mut self, bytes: &[u8]) -> Result<(), RepositoryError> {
        if self.closed || self.stdin.is_none() {
            return Err(Self::closed_error());
        }
        if self.pending.len() + bytes.len() > SEND_BUFFER {
            self.send_pending()?;
        }
        if bytes.len() >= SEND_BUFFER {
            self.write_out(bytes)?;
        } else {
            self.pending.extend_from_slice(bytes);
        }
        self.stats.messages_sent += 1;
        self.stats.bytes_sent += bytes.len() as u64;
        Ok(())
    }

    /// Hands the queued requests to the server.
    fn send_pending(&mut self) -> Result<(), RepositoryError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let result = self.write_out(&pending);
        self.pending = pending;
        self.pending.clear();
        result
    }

    fn write_out(&mut self, bytes: &[u8]) -> Result<(), RepositoryError> {
        let Some(stdin) = self.stdin.as_mut() else {
            return Err(Self::closed_error());
        };
        // The reader threads drain stdout and stderr, so a blocking write cannot deadlock.
        match stdin.write_all(bytes).and_then(|()| stdin.flush()) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.closed = true;
                log::debug!("writing to borg serve failed: {e}");
                Err(RepositoryError::ConnectionClosed {
                    hint: (e.kind() == std::io::ErrorKind::BrokenPipe)
                        .then(|| "Broken Pipe".to_string()),
                })
            }
        }
    }

    /// Sends one request and returns its msgid without waiting.
    pub fn send(&mut self, method: &str, args: Vec<(&str, Value)>) -> Result<u64, RepositoryError> {
        self.next_msgid += 1;
        let msgid = self.next_msgid;
        let bytes = encode_request(msgid, method, args);
        if bytes.len() > MAX_MESSAGE_SIZE {
            return Err(RepositoryError::IntegrityError(format!(
                "request {method} of {} bytes is larger than borg accepts",
                bytes.len()
            )));
        }
        self.write(&bytes)?;
        Ok(msgid)
    }

    /// Takes one event from the reader threads (blocking) and files it. Before it blocks, the
    /// queued requests go out: the answer waited for may depend on them.
    fn receive_one(&mut self) -> Result<(), RepositoryError> {
        if self.closed {
            return Err(Self::closed_error());
        }
        let event = match self.events.try_recv() {
            Ok(event) => event,
            Err(_) => {
                self.send_pending()?;
                self.events.recv().unwrap_or(Event::Eof)
            }
        };
        self.file_event(event)
    }

    /// Files a response under its msgid, keeps async errors, drops abandoned answers.
    fn file_event(&mut self, event: Event) -> Result<(), RepositoryError> {
        match event {
            Event::Message(value) => {
                let response = decode_response(&value)?;
                if self.async_ids.remove(&response.msgid) {
                    // borg keeps non-nil async results too, but put/delete return nothing.
                    if let Err(e) = response.outcome {
                        self.async_errors.push_back(e);
                    }
                } else if !self.ignored.remove(&response.msgid) {
                    self.responses.insert(response.msgid, response.outcome);
                }
                Ok(())
            }
            Event::Eof => {
                self.closed = true;
                Err(Self::closed_error())
            }
            Event::Garbage(e) => {
                self.closed = true;
                Err(e)
            }
        }
    }

    /// Waits for the response to `msgid`.
    pub fn wait_for(&mut self, msgid: u64) -> Result<Value, RepositoryError> {
        loop {
            if let Some(outcome) = self.responses.remove(&msgid) {
                return outcome.map_err(|e| e.into_repository_error(&self.location));
            }
            self.receive_one()?;
        }
    }

    /// Calls a method and waits for its result.
    pub fn call(
        &mut self,
        method: &str,
        args: Vec<(&str, Value)>,
    ) -> Result<Value, RepositoryError> {
        let msgid = self.send(method, args)?;
        self.wait_for(msgid)
    }

    /// Calls a method without waiting for its result; an error it raises is kept for
    /// [`RpcClient::take_async_error`] and [`RpcClient::flush`]. At most the window of such calls
    /// stay unanswered: beyond that this waits for the oldest.
    pub fn call_async(
        &mut self,
        method: &str,
        args: Vec<(&str, Value)>,
    ) -> Result<(), RepositoryError> {
        while self.async_ids.len() >= self.window {
            self.receive_one()?;
        }
        let msgid = self.send(method, args)?;
        self.async_ids.insert(msgid);
        Ok(())
    }

    /// The oldest error from an asynchronous call that has been answered, if any (borg's
    /// `async_response(wait=False)`).
    pub fn take_async_error(&mut self) -> Option<RepositoryError> {
        // File whatever already arrived, without blocking.
        while !self.closed {
            let Ok(event) = self.events.try_recv() else {
                break;
            };
            if let Err(e) = self.file_event(event) {
                return Some(e);
            }
        }
        let location = self.location.clone();
        self.async_errors
            .pop_front()
            .map(|e| e.into_repository_error(&location))
    }

    /// Waits until every asynchronous call is answered and returns the first error among them
    /// (borg's `async_response(wait=True)` loop).
    pub fn flush(&mut self) -> Result<(), RepositoryError> {
        while !self.async_ids.is_empty() {
            self.receive_one()?;
        }
        match self.async_errors.pop_front() {
            Some(e) => Err(e.into_repository_error(&self.location)),
            None => Ok(()),
        }
    }

    /// Gets many objects with up to the window of `get`s in flight, handing each to `sink` in
    /// the order of `ids`. Stops at the first error (from the server or from `sink`); answers
    /// to the requests still in flight are then discarded as they arrive.
    pub fn get_many(
        &mut self,
        ids: &[[u8; 32]],
        sink: &mut dyn FnMut(usize, Vec<u8>) -> Result<(), RepositoryError>,
    ) -> Result<(), RepositoryError> {
        let mut in_flight: VecDeque<u64> = VecDeque::new();
        let mut next = 0;
        let mut result = Ok(());
        for index in 0..ids.len() {
            // The objects so far tell how big the next ones probably are; until one arrived,
            // start small.
            let limit = match self.object_sizes.0.checked_div(self.object_sizes.1) {
                Some(average) if average > 0 => {
                    usize::try_from(self.max_bytes_in_flight as u64 / average)
                        .unwrap_or(usize::MAX)
                        .clamp(2, self.window.max(2))
                }
                _ => INITIAL_GET_WINDOW,
            }
            .min(self.window);
            while next < ids.len() && in_flight.len() < limit {
                match self.send("get", vec![("id", Value::bytes(&ids[next]))]) {
                    Ok(msgid) => in_flight.push_back(msgid),
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
                next += 1;
            }
            self.stats.max_gets_in_flight = self.stats.max_gets_in_flight.max(in_flight.len());
            if result.is_err() {
                break;
            }
            let Some(msgid) = in_flight.pop_front() else {
                break;
            };
            let step = self.wait_for(msgid).and_then(|value| match value {
                Value::Raw(data) => {
                    self.object_sizes.0 += data.len() as u64;
                    self.object_sizes.1 += 1;
                    sink(index, data)
                }
                other => Err(RepositoryError::UnexpectedRpcData(format!(
                    "get returned {other:?}"
                ))),
            });
            if let Err(e) = step {
                result = Err(e);
                break;
            }
        }
        for msgid in in_flight {
            if self.responses.remove(&msgid).is_none() {
                self.ignored.insert(msgid);
            }
        }
        result
    }

    /// Ends the session as borg does: closes the server's stdin, so `borg serve` closes the
    /// repository (releasing its lock, without commit or rollback) and exits; waits for that
    /// up to the close timeout, then kills it. Returns how the server ended.
    pub fn close(&mut self) -> Result<ServerExit, RepositoryError> {
        // What was queued is sent, as it would have been without the buffer.
        if !self.closed {
            let _ = self.send_pending();
        }
        self.stdin = None;
        let stats = self.stats();
        log::debug!(
            "RemoteRepository: {} bytes sent, {} bytes received, {} messages sent",
            stats.bytes_sent,
            stats.bytes_received,
            stats.messages_sent
        );
        let exit = self
            .transport
            .wait_timeout(self.close_timeout)
            .map_err(|e| RepositoryError::Transport(e.to_string()))?;
        let exit = match exit {
            Some(exit) => exit,
            None => {
                log::warn!(
                    "borg serve did not end within {:?} after its input was closed; killing it",
                    self.close_timeout
                );
                self.transport.kill();
                ServerExit::Other
            }
        };
        self.closed = true;
        self.join_readers();
        Ok(exit)
    }

    /// Stops the session at once, without waiting for the server.
    pub fn kill(&mut self) {
        self.stdin = None;
        self.closed = true;
        self.transport.kill();
        self.join_readers();
    }

    /// Joins the reader threads once their streams end. A grandchild that inherited the
    /// server's stderr (an ssh ControlMaster, say) can keep a pipe open long after the server
    /// is gone, so after a short grace period the threads are left to finish on their own.
    fn join_readers(&mut self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        for handle in self.readers.drain(..) {
            while !handle.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
            if handle.is_finished() {
                let _ = handle.join();
            }
        }
    }

    /// Traffic counters so far.
    pub fn stats(&self) -> ClientStats {
        ClientStats {
            bytes_received: self.bytes_received.load(Ordering::Relaxed),
            ..self.stats
        }
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// A short description of the transport, for messages.
    pub fn describe(&self) -> String {
        self.transport.describe()
    }
}

impl Drop for RpcClient {
    fn drop(&mut self) {
        if self.stdin.is_some() || !self.readers.is_empty() {
            let _ = self.close();
        }
    }
}

/// Reads the server's stdout, splits it into msgpack messages and passes them on, until EOF.
fn pump_stdout(mut stdout: Box<dyn Read + Send>, events: Sender<Event>, received: Arc<AtomicU64>) {
    let mut buffer: Vec<u8> = Vec::new();
    let mut start = 0;
    let mut chunk = vec![0u8; 1024 * 1024];
    loop {
        let n = match stdout.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log::debug!("reading from borg serve failed: {e}");
                break;
            }
        };
        received.fetch_add(n as u64, Ordering::Relaxed);
        buffer.extend_from_slice(&chunk[..n]);
        loop {
            match msgpack::decode_prefix(&buffer[start..]) {
                Ok((value, used)) => {
                    start += used;
                    if events.send(Event::Message(value)).is_err() {
                        return;
                    }
                }
                Err(DecodeError::Incomplete) => break,
                Err(e) => {
                    let tail = &buffer[start..buffer.len().min(start + 128)];
                    let _ = events.send(Event::Garbage(RepositoryError::UnexpectedRpcData(
                        format!("{e}: {tail:?}"),
                    )));
                    return;
                }
            }
        }
        if start == buffer.len() {
            buffer.clear();
            start = 0;
        } else if start > buffer.len() / 2 {
            buffer.drain(..start);
            start = 0;
        }
        if buffer.len() - start > MAX_MESSAGE_SIZE {
            let _ = events.send(Event::Garbage(RepositoryError::UnexpectedRpcData(format!(
                "a message from the server is larger than {MAX_MESSAGE_SIZE} bytes"
            ))));
            return;
        }
    }
    let _ = events.send(Event::Eof);
}

#[cfg(test)]
mod tests {
    use super::super::scripted::{error_reply, negotiate_reply, reply, ScriptedTransport};
    use super::*;
    use std::sync::Arc;

    fn method(request: &Value) -> String {
        request
            .get("m")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_default()
    }

    /// A server of `version` that answers negotiate and then hands requests to `rest`.
    fn server(
        version: &'static [i64],
        mut rest: impl FnMut(&Value) -> Option<Vec<Vec<u8>>> + Send + 'static,
    ) -> ScriptedTransport {
        ScriptedTransport::start(Box::new(move |request| match request {
            Value::Array(items) => Some(vec![negotiate_reply(&items[1], version)]),
            _ => rest(request),
        }))
    }

    #[test]
    fn negotiate_is_borgs_tuple_then_dict_requests() {
        let transport = server(&[1, 2, 4, -1], |r| Some(vec![reply(r, Value::Int(7))]));
        let received = Arc::clone(&transport.received);
        let mut client = RpcClient::connect(Box::new(transport), ClientOptions::default()).unwrap();
        assert_eq!(client.server_version().0, vec![1, 2, 4, -1]);
        assert_eq!(client.call("__len__", vec![]).unwrap(), Value::Int(7));
        client.close().unwrap();
        let received = received.lock().unwrap();
        assert_eq!(
            msgpack::encode(&received[0]),
            encode_negotiate(1, &[1, 4, 5, -1])
        );
        assert_eq!(received[1].get("i"), Some(&Value::Int(2)));
        assert_eq!(received[1].get("a"), Some(&Value::Map(vec![])));
    }

    #[test]
    fn eof_during_negotiate_carries_the_hint() {
        let transport = ScriptedTransport::start(Box::new(|_| None));
        match RpcClient::connect(Box::new(transport), ClientOptions::default()) {
            Err(RepositoryError::ConnectionClosed { hint: Some(h) }) => {
                assert_eq!(h, NEGOTIATE_HINT)
            }
            other => panic!("{:?}", other.err()),
        }
    }

    #[test]
    fn old_servers_are_refused_before_sending() {
        let transport = server(&[1, 0, 13, -1], |r| Some(vec![reply(r, Value::Nil)]));
        let received = Arc::clone(&transport.received);
        let client = RpcClient::connect(Box::new(transport), ClientOptions::default()).unwrap();
        match client.require_version("scan", super::super::version::SCAN_SINCE) {
            Err(RepositoryError::ServerOutdated { method, required }) => {
                assert_eq!((method.as_str(), required.as_str()), ("scan", "1.1.0b3"))
            }
            other => panic!("{other:?}"),
        }
        drop(client);
        assert_eq!(received.lock().unwrap().len(), 1, "only negotiate was sent");
    }

    #[test]
    fn responses_are_matched_by_msgid_not_order() {
        // The server answers every three gets in reverse order.
        let mut held: Vec<Value> = Vec::new();
        let transport = server(&[1, 4, 5, -1], move |r| {
            held.push(r.clone());
            if held.len() < 3 {
                return Some(vec![]);
            }
            Some(
                held.drain(..)
                    .rev()
                    .map(|r| {
                        let id = r.get("a").and_then(|a| a.get("id")).cloned().unwrap();
                        reply(&r, id)
                    })
                    .collect(),
            )
        });
        let options = ClientOptions {
            window: 3,
            ..Default::default()
        };
        let mut client = RpcClient::connect(Box::new(transport), options).unwrap();
        let ids: Vec<[u8; 32]> = (0..9u8).map(|i| [i; 32]).collect();
        let mut got = Vec::new();
        client
            .get_many(&ids, &mut |i, data| {
                got.push((i, data));
                Ok(())
            })
            .unwrap();
        assert_eq!(got.len(), 9);
        for (i, data) in got {
            assert_eq!(data, vec![i as u8; 32]);
        }
    }

    #[test]
    fn large_objects_shrink_the_get_window() {
        let transport = server(&[1, 4, 5, -1], |r| {
            Some(vec![reply(r, Value::Raw(vec![7; 1024 * 1024]))])
        });
        let options = ClientOptions {
            max_bytes_in_flight: 4 * 1024 * 1024,
            ..Default::default()
        };
        let mut client = RpcClient::connect(Box::new(transport), options).unwrap();
        let ids = vec![[1u8; 32]; 50];
        let mut n = 0;
        client.get_many(&ids[..1], &mut |_, _| Ok(())).unwrap();
        assert_eq!(client.stats().max_gets_in_flight, 1);
        // Now objects are known to be 1 MiB: 4 MiB allow 4 in flight.
        client
            .get_many(&ids, &mut |_, data| {
                assert_eq!(data.len(), 1024 * 1024);
                n += 1;
                Ok(())
            })
            .unwrap();
        assert_eq!(n, 50);
        assert_eq!(client.stats().max_gets_in_flight, 4);
        client.close().unwrap();
        let stats = client.stats();
        assert_eq!(stats.messages_sent, 52);
        assert!(stats.bytes_received > 51 * 1024 * 1024);
    }

    #[test]
    fn async_errors_surface_later_and_on_flush() {
        let transport = server(&[1, 4, 5, -1], |r| {
            if method(r) == "delete" {
                Some(vec![error_reply(
                    r,
                    "ObjectNotFound",
                    vec![Value::str("00"), Value::str("/r")],
                    "Object with key 00 not found in repository /r.",
                )])
            } else {
                Some(vec![reply(r, Value::Nil)])
            }
        });
        let mut client = RpcClient::connect(Box::new(transport), ClientOptions::default()).unwrap();
        client
            .call_async("delete", vec![("id", Value::bytes(&[0; 32]))])
            .unwrap();
        client
            .call_async("put", vec![("id", Value::bytes(&[1; 32]))])
            .unwrap();
        match client.flush() {
            Err(RepositoryError::ObjectNotFound { id, path }) => {
                assert_eq!((id.as_str(), path.as_str()), ("00", "/r"))
            }
            other => panic!("{other:?}"),
        }
        assert!(client.flush().is_ok(), "an error is reported once");
        // Answers that arrived before are reported by take_async_error without blocking.
        client
            .call_async("delete", vec![("id", Value::bytes(&[0; 32]))])
            .unwrap();
        client.call("__len__", vec![]).unwrap();
        assert!(matches!(
            client.take_async_error(),
            Some(RepositoryError::ObjectNotFound { .. })
        ));
        assert!(client.take_async_error().is_none());
    }

    #[test]
    fn garbage_from_the_server_is_unexpected_data() {
        let transport = server(&[1, 4, 5, -1], |_| Some(vec![vec![0xc1, 0, 0]]));
        let mut client = RpcClient::connect(Box::new(transport), ClientOptions::default()).unwrap();
        assert!(matches!(
            client.call("__len__", vec![]),
            Err(RepositoryError::UnexpectedRpcData(_))
        ));
        assert!(matches!(
            client.call("__len__", vec![]),
            Err(RepositoryError::ConnectionClosed { .. })
        ));
    }
}
