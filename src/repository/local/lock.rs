//! Repository locking compatible with borg's `locking.py`, so borg and rborg exclude each
//! other on the same repository.
//!
//! * `lock.exclusive/` is a directory holding one empty file named
//!   `<hostid>.<pid>-<thread in hex>`. It is taken by creating a temporary directory with that
//!   file and renaming it onto `lock.exclusive`, which fails while another holder's directory is
//!   there (`ExclusiveLock`).
//! * `lock.roster` is JSON `{"shared": [[host, pid, thread], ...], "exclusive": [[...]]}`,
//!   only modified while `lock.exclusive` is held (`LockRoster`).
//! * A shared lock briefly takes `lock.exclusive`, adds itself to `shared` and lets go; an
//!   exclusive lock waits until `shared` is empty and keeps `lock.exclusive` (`Lock`).
//!
//! Stale locks of dead processes on this host are removed when found. Borg 1.2 and 1.4 always
//! do so (`kill_stale_locks = True`; the `BORG_HOSTNAME_IS_UNIQUE` switch of borg 1.1 no longer
//! exists), and a process on another host is always assumed alive.

use std::ffi::{CStr, CString};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::repository::RepositoryError;

/// Who holds a lock: host id, process id and thread id (always 0, as in borg).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LockId {
    /// `<fqdn>@<48-bit node id>` or `$BORG_HOST_ID`.
    pub host: String,
    /// The process id.
    pub pid: u64,
    /// The thread id; borg always uses 0.
    pub thread: u64,
}

impl LockId {
    /// This process's id on the host `host_id`.
    pub fn current(host_id: &str) -> LockId {
        LockId {
            host: host_id.to_string(),
            pid: std::process::id() as u64,
            thread: 0,
        }
    }

    /// The name of the file inside `lock.exclusive/` (`"%s.%d-%x" % id`).
    pub fn unique_name(&self) -> String {
        format!("{}.{}-{:x}", self.host, self.pid, self.thread)
    }

    /// Parses a file name from `lock.exclusive/` (`ExclusiveLock.kill_stale_lock`).
    pub fn parse_unique_name(name: &str) -> Option<LockId> {
        let (host_pid, thread) = name.rsplit_once('-')?;
        let (host, pid) = host_pid.rsplit_once('.')?;
        Some(LockId {
            host: host.to_string(),
            pid: pid.parse().ok()?,
            thread: u64::from_str_radix(thread, 16).ok()?,
        })
    }
}

/// The host id borg computes when `BORG_HOST_ID` is not set: `"<fqdn>@<uuid.getnode()>"`
/// (`platform/base.py`). The node is the MAC address of the first interface with an IPv4
/// address and a non-zero hardware address, which is what libuuid (behind Python's
/// `uuid.getnode()`) picks on Linux.
pub fn default_host_id() -> String {
    format!("{}@{}", fqdn(), node_id())
}

fn fqdn() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it or
    // truncates, and the last byte stays 0.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
    if rc != 0 {
        return "localhost".to_string();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let hostname = String::from_utf8_lossy(&buf[..end]).into_owned();
    // borg's patched getfqdn: the first canonical name getaddrinfo reports, else the name.
    let Ok(c_name) = CString::new(hostname.clone()) else {
        return hostname;
    };
    // SAFETY: hints is zero-initialised as getaddrinfo expects; the result list is freed once.
    unsafe {
        let mut hints: libc::addrinfo = std::mem::zeroed();
        hints.ai_socktype = libc::SOCK_DGRAM;
        hints.ai_flags = libc::AI_CANONNAME;
        let mut res: *mut libc::addrinfo = std::ptr::null_mut();
        if libc::getaddrinfo(c_name.as_ptr(), std::ptr::null(), &hints, &mut res) != 0 {
            return hostname;
        }
        let mut name = hostname;
        let mut p = res;
        while !p.is_null() {
            let canon = (*p).ai_canonname;
            if !canon.is_null() {
                let s = CStr::from_ptr(canon).to_string_lossy();
                if !s.is_empty() {
                    name = s.into_owned();
                    break;
                }
            }
            p = (*p).ai_next;
        }
        libc::freeaddrinfo(res);
        name
    }
}

fn node_id() -> u64 {
    let mut names: Vec<String> = Vec::new();
    // SAFETY: getifaddrs allocates a list we walk read-only and free once.
    unsafe {
        let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
        if libc::getifaddrs(&mut ifap) == 0 {
            let mut p = ifap;
            while !p.is_null() {
                let addr = (*p).ifa_addr;
                if !addr.is_null() && (*addr).sa_family as i32 == libc::AF_INET {
                    let name = CStr::from_ptr((*p).ifa_name).to_string_lossy().into_owned();
                    if !names.contains(&name) {
                        names.push(name);
                    }
                }
                p = (*p).ifa_next;
            }
            libc::freeifaddrs(ifap);
        }
    }
    for name in names {
        let Ok(mac) = fs::read_to_string(format!("/sys/class/net/{name}/address")) else {
            continue;
        };
        let hex: String = mac.trim().chars().filter(|c| *c != ':').collect();
        if let Ok(node) = u64::from_str_radix(&hex, 16) {
            if node != 0 && hex.len() == 12 {
                return node;
            }
        }
    }
    // No hardware address: Python falls back to a random node with the multicast bit set.
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes[2..]);
    (u64::from_be_bytes(bytes) | (1 << 40)) & 0xffff_ffff_ffff
}

/// Whether a process that holds a lock may still be alive (`platform.process_alive`).
pub fn process_alive(own_host: &str, id: &LockId) -> bool {
    if id.host != own_host || id.thread != 0 {
        return true;
    }
    let Ok(pid) = libc::pid_t::try_from(id.pid) else {
        return true;
    };
    // SAFETY: signal 0 only checks whether the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

fn lock_failed(path: &Path, err: impl std::fmt::Display) -> RepositoryError {
    RepositoryError::LockFailed {
        path: path.display().to_string(),
        reason: err.to_string(),
    }
}

/// Borg's `TimeoutTimer`: a deadline and a sleep interval.
struct Timer {
    end: Option<Instant>,
    sleep: Duration,
}

impl Timer {
    fn new(timeout: Option<f64>, sleep: Option<f64>) -> Timer {
        let sleep = sleep.unwrap_or(match timeout {
            None => 1.0,
            Some(t) => (t / 10.0).min(60.0),
        });
        Timer {
            end: timeout.map(|t| Instant::now() + Duration::from_secs_f64(t.max(0.0))),
            sleep: Duration::from_secs_f64(sleep.max(0.0)),
        }
    }

    fn timed_out_or_sleep(&self) -> bool {
        if self.end.is_some_and(|end| Instant::now() >= end) {
            return true;
        }
        std::thread::sleep(self.sleep);
        false
    }
}

/// `lock.exclusive/`: the directory lock (`ExclusiveLock`).
struct ExclusiveLock {
    path: PathBuf,
    id: LockId,
    timeout: Option<f64>,
}

impl ExclusiveLock {
    fn unique_path(&self) -> PathBuf {
        self.path.join(self.id.unique_name())
    }

    fn by_me(&self) -> bool {
        self.unique_path().exists()
    }

    fn acquire(&self) -> Result<(), RepositoryError> {
        let parent = self.path.parent().unwrap_or(Path::new("."));
        let base = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut rnd = [0u8; 6];
        getrandom::fill(&mut rnd).map_err(|e| lock_failed(&self.path, e))?;
        let temp = parent.join(format!("{base}.{}.tmp", hex::encode(rnd)));
        fs::create_dir(&temp).map_err(|e| lock_failed(&self.path, e))?;
        let temp_unique = temp.join(self.id.unique_name());
        let cleanup = |temp: &Path| {
            let _ = fs::remove_file(&temp_unique);
            let _ = fs::remove_dir(temp);
        };
        if let Err(e) = fs::File::create(&temp_unique) {
            cleanup(&temp);
            return Err(lock_failed(&self.path, e));
        }
        let timer = Timer::new(self.timeout, None);
        loop {
            match fs::rename(&temp, &self.path) {
                Ok(()) => return Ok(()),
                Err(_) => {
                    if self.by_me() {
                        cleanup(&temp);
                        return Ok(());
                    }
                    self.kill_stale_lock();
                    if timer.timed_out_or_sleep() {
                        cleanup(&temp);
                        return Err(RepositoryError::LockTimeout(
                            self.path.display().to_string(),
                        ));
                    }
                }
            }
        }
    }

    fn release(&self) -> Result<(), RepositoryError> {
        if !self.path.exists() {
            return Err(RepositoryError::NotLocked(self.path.display().to_string()));
        }
        if !self.by_me() {
            return Err(RepositoryError::NotMyLock(self.path.display().to_string()));
        }
        fs::remove_file(self.unique_path()).map_err(|e| lock_failed(&self.path, e))?;
        match fs::remove_dir(&self.path) {
            // Not empty or already gone: someone else raced us, which is fine.
            Err(e) if e.kind() != io::ErrorKind::NotFound && !is_not_empty(&e) => {
                Err(lock_failed(&self.path, e))
            }
            _ => Ok(()),
        }
    }

    /// Removes lock files of dead local processes, then the directory if it became empty.
    fn kill_stale_lock(&self) -> bool {
        let Ok(entries) = fs::read_dir(&self.path) else {
            return false;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(id) = LockId::parse_unique_name(&name) else {
                log::error!(
                    "Found malformed lock {name} in {}. Please check/fix manually.",
                    self.path.display()
                );
                return false;
            };
            if process_alive(&self.id.host, &id) {
                return false;
            }
            if let Err(e) = fs::remove_file(entry.path()) {
                log::error!("Found stale lock {name}, but cannot delete due to {e}");
                return false;
            }
            log::warn!("Killed stale lock {name}.");
        }
        fs::remove_dir(&self.path).is_ok()
    }
}

fn is_not_empty(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOTEMPTY) | Some(libc::EEXIST))
}

type RosterEntry = (String, u64, u64);

/// `lock.roster`: who holds the lock, shared or exclusive (`LockRoster`).
struct Roster {
    path: PathBuf,
    own_host: String,
}

impl Roster {
    /// Loads the roster, dropping entries of dead local processes. A missing or corrupt
    /// file is an empty roster.
    fn load(&self) -> Vec<(String, Vec<RosterEntry>)> {
        let Ok(text) = fs::read_to_string(&self.path) else {
            return Vec::new();
        };
        let Ok(serde_json::Value::Object(map)) = serde_json::from_str(&text) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (key, list) in map {
            let mut entries = Vec::new();
            for e in list.as_array().into_iter().flatten() {
                let (Some(host), Some(pid), Some(thread)) = (
                    e.get(0).and_then(|v| v.as_str()),
                    e.get(1).and_then(|v| v.as_u64()),
                    e.get(2).and_then(|v| v.as_u64()),
                ) else {
                    continue;
                };
                let id = LockId {
                    host: host.to_string(),
                    pid,
                    thread,
                };
                if process_alive(&self.own_host, &id) {
                    entries.push((id.host, id.pid, id.thread));
                } else {
                    log::warn!(
                        "Removed stale {key} roster lock for host {host} pid {pid} thread {thread}."
                    );
                }
            }
            out.push((key, entries));
        }
        out
    }

    fn save(&self, data: &[(String, Vec<RosterEntry>)]) -> Result<(), RepositoryError> {
        // json.dump's layout: ", " and ": " separators.
        let sections: Vec<String> = data
            .iter()
            .map(|(key, entries)| {
                let items: Vec<String> = entries
                    .iter()
                    .map(|(h, p, t)| {
                        format!("[{}, {p}, {t}]", serde_json::Value::String(h.clone()))
                    })
                    .collect();
                format!(
                    "{}: [{}]",
                    serde_json::Value::String(key.clone()),
                    items.join(", ")
                )
            })
            .collect();
        fs::write(&self.path, format!("{{{}}}", sections.join(", ")))
            .map_err(|e| lock_failed(&self.path, e))
    }

    fn get(&self, key: &str) -> Vec<RosterEntry> {
        self.load()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, e)| e)
            .unwrap_or_default()
    }

    fn modify(&self, key: &str, id: &LockId, add: bool) -> Result<(), RepositoryError> {
        let mut data = self.load();
        let me = (id.host.clone(), id.pid, id.thread);
        let pos = match data.iter().position(|(k, _)| k == key) {
            Some(p) => p,
            None => {
                data.push((key.to_string(), Vec::new()));
                data.len() - 1
            }
        };
        let entries = &mut data[pos].1;
        entries.retain(|e| *e != me);
        if add {
            entries.push(me);
        }
        self.save(&data)
    }

    fn is_empty(&self) -> bool {
        self.load().iter().all(|(_, e)| e.is_empty())
    }

    fn remove(&self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// A shared or exclusive repository lock (`locking.Lock`) on `REPO/lock`.
pub struct Lock {
    base: PathBuf,
    id: LockId,
    exclusive: bool,
    timeout: Option<f64>,
    held: bool,
}

const SHARED: &str = "shared";
const EXCLUSIVE: &str = "exclusive";

impl Lock {
    /// A lock on the repository at `repo`, not yet acquired.
    pub fn new(repo: &Path, host_id: &str, exclusive: bool, timeout: Option<f64>) -> Lock {
        Lock {
            base: repo.join("lock"),
            id: LockId::current(host_id),
            exclusive,
            timeout,
            held: false,
        }
    }

    fn dir_lock(&self) -> ExclusiveLock {
        ExclusiveLock {
            path: self.base.with_extension("exclusive"),
            id: self.id.clone(),
            timeout: self.timeout,
        }
    }

    fn roster(&self) -> Roster {
        Roster {
            path: self.base.with_extension("roster"),
            own_host: self.id.host.clone(),
        }
    }

    /// Whether the lock is held exclusively.
    pub fn got_exclusive_lock(&self) -> bool {
        self.held && self.exclusive
    }

    /// Takes the lock in the mode given at construction.
    pub fn acquire(&mut self) -> Result<(), RepositoryError> {
        let exclusive = self.exclusive;
        self.acquire_mode(exclusive, None)
    }

    fn acquire_mode(
        &mut self,
        exclusive: bool,
        remove: Option<&str>,
    ) -> Result<(), RepositoryError> {
        let dir = self.dir_lock();
        let roster = self.roster();
        if exclusive {
            // _wait_for_readers_finishing: hold lock.exclusive once no reader is left.
            let timer = Timer::new(self.timeout, Some(0.2));
            loop {
                dir.acquire()?;
                let step = (|| {
                    if let Some(key) = remove {
                        roster.modify(key, &self.id, false)?;
                    }
                    if roster.get(SHARED).is_empty() {
                        return Ok(true);
                    }
                    if let Some(key) = remove {
                        roster.modify(key, &self.id, true)?;
                    }
                    Ok(false)
                })();
                match step {
                    Ok(true) => break,
                    Ok(false) => {
                        dir.release()?;
                        if timer.timed_out_or_sleep() {
                            return Err(RepositoryError::LockTimeout(
                                self.base.display().to_string(),
                            ));
                        }
                    }
                    Err(e) => {
                        let _ = dir.release();
                        return Err(e);
                    }
                }
            }
            if let Err(e) = roster.modify(EXCLUSIVE, &self.id, true) {
                let _ = dir.release();
                return Err(e);
            }
        } else {
            dir.acquire()?;
            let result = (|| {
                if let Some(key) = remove {
                    roster.modify(key, &self.id, false)?;
                }
                roster.modify(SHARED, &self.id, true)
            })();
            dir.release()?;
            result?;
        }
        self.exclusive = exclusive;
        self.held = true;
        Ok(())
    }

    /// Turns a shared lock into an exclusive one (`Lock.upgrade`).
    pub fn upgrade(&mut self) -> Result<(), RepositoryError> {
        if !self.got_exclusive_lock() {
            self.acquire_mode(true, Some(SHARED))?;
        }
        Ok(())
    }

    /// Releases the lock (`Lock.release`).
    pub fn release(&mut self) -> Result<(), RepositoryError> {
        if !self.held {
            return Ok(());
        }
        self.held = false;
        let roster = self.roster();
        let dir = self.dir_lock();
        if self.exclusive {
            roster.modify(EXCLUSIVE, &self.id, false)?;
            if roster.is_empty() {
                roster.remove();
            }
            dir.release()
        } else {
            dir.acquire()?;
            let result = roster.modify(SHARED, &self.id, false);
            if roster.is_empty() {
                roster.remove();
            }
            dir.release()?;
            result
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        if self.held {
            let _ = self.release();
        }
    }
}

/// Removes the repository lock regardless of its holder (`Lock.break_lock`).
pub fn break_lock(repo: &Path) -> Result<(), RepositoryError> {
    let roster = repo.join("lock.roster");
    let dir = repo.join("lock.exclusive");
    match fs::remove_file(&roster) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(lock_failed(&roster, e)),
        _ => {}
    }
    if dir.exists() {
        for entry in fs::read_dir(&dir).map_err(|e| lock_failed(&dir, e))? {
            let entry = entry.map_err(|e| lock_failed(&dir, e))?;
            fs::remove_file(entry.path()).map_err(|e| lock_failed(&dir, e))?;
        }
        fs::remove_dir(&dir).map_err(|e| lock_failed(&dir, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_parse_back() {
        let id = LockId {
            host: "vm.example@3281355014145".into(),
            pid: 10913,
            thread: 0,
        };
        assert_eq!(id.unique_name(), "vm.example@3281355014145.10913-0");
        assert_eq!(LockId::parse_unique_name(&id.unique_name()), Some(id));
        assert_eq!(LockId::parse_unique_name("garbage"), None);
    }

    #[test]
    fn exclusive_excludes_and_shared_share() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = Lock::new(dir.path(), "h@1", true, Some(0.2));
        a.acquire().unwrap();
        assert!(dir.path().join("lock.exclusive").is_dir());
        // Another process id on the same host: simulate by a different host string, which is
        // always presumed alive.
        let mut b = Lock::new(dir.path(), "other@2", false, Some(0.2));
        assert!(matches!(b.acquire(), Err(RepositoryError::LockTimeout(_))));
        a.release().unwrap();
        assert!(!dir.path().join("lock.exclusive").exists());
        assert!(!dir.path().join("lock.roster").exists());
        b.acquire().unwrap();
        let mut c = Lock::new(dir.path(), "third@3", false, Some(0.2));
        c.acquire().unwrap();
        let mut d = Lock::new(dir.path(), "fourth@4", true, Some(0.3));
        assert!(matches!(d.acquire(), Err(RepositoryError::LockTimeout(_))));
        c.release().unwrap();
        b.upgrade().unwrap();
        assert!(b.got_exclusive_lock());
        b.release().unwrap();
        assert!(!dir.path().join("lock.roster").exists());
    }

    #[test]
    fn stale_local_locks_are_killed() {
        let dir = tempfile::tempdir().unwrap();
        let ex = dir.path().join("lock.exclusive");
        fs::create_dir(&ex).unwrap();
        // pid 2^22+1 is above Linux's default pid_max, so it cannot be alive.
        fs::File::create(ex.join("h@1.4194305-0")).unwrap();
        fs::write(
            dir.path().join("lock.roster"),
            r#"{"exclusive": [["h@1", 4194305, 0]]}"#,
        )
        .unwrap();
        let mut a = Lock::new(dir.path(), "h@1", true, Some(1.0));
        a.acquire().unwrap();
        let roster = fs::read_to_string(dir.path().join("lock.roster")).unwrap();
        assert_eq!(
            roster,
            format!(r#"{{"exclusive": [["h@1", {}, 0]]}}"#, std::process::id())
        );
        a.release().unwrap();
    }

    #[test]
    fn break_lock_removes_everything() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = Lock::new(dir.path(), "other@9", true, Some(1.0));
        a.acquire().unwrap();
        break_lock(dir.path()).unwrap();
        assert!(!dir.path().join("lock.exclusive").exists());
        assert!(!dir.path().join("lock.roster").exists());
        std::mem::forget(a);
    }
}
