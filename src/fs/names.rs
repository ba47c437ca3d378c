//! User and group names for ids and back (`platform/posix.pyx: uid2user, gid2group, user2uid,
//! group2gid`), cached per run as borg's `lru_cache` does.

use std::collections::HashMap;
use std::ffi::{CStr, CString};

/// Cached lookups in the passwd and group databases.
#[derive(Debug, Default)]
pub struct NameCache {
    users: HashMap<u32, Option<Vec<u8>>>,
    groups: HashMap<u32, Option<Vec<u8>>>,
    uids: HashMap<Vec<u8>, Option<u32>>,
    gids: HashMap<Vec<u8>, Option<u32>>,
}

/// Runs a `get*_r` call with a growing buffer; returns the filled record or `None` when the
/// entry does not exist (or the lookup failed, which borg treats the same way).
fn lookup_r<T>(
    call: impl Fn(*mut T, *mut libc::c_char, usize, *mut *mut T) -> libc::c_int,
) -> Option<(T, Vec<libc::c_char>)> {
    let mut size = 1024usize;
    loop {
        let mut buf: Vec<libc::c_char> = vec![0; size];
        // SAFETY: T is a plain C struct (passwd/group) for which all-zero is valid.
        let mut rec: T = unsafe { std::mem::zeroed() };
        let mut result: *mut T = std::ptr::null_mut();
        let rc = call(&mut rec, buf.as_mut_ptr(), buf.len(), &mut result);
        if rc == libc::ERANGE && size < (1 << 20) {
            size *= 4;
            continue;
        }
        if rc != 0 || result.is_null() {
            return None;
        }
        // The record points into buf, so both travel together.
        let out = (rec, std::mem::take(&mut buf));
        return Some(out);
    }
}

fn user_name(uid: u32) -> Option<Vec<u8>> {
    // The strings inside the returned record point into the returned buffer, which is alive
    // while the name is copied out.
    let (pw, _buf) = lookup_r(|rec: *mut libc::passwd, b, n, r| {
        // SAFETY: all pointers are valid for the call; n is the buffer's length.
        unsafe { libc::getpwuid_r(uid, rec, b, n, r) }
    })?;
    // SAFETY: pw_name points into _buf, NUL-terminated by libc.
    Some(unsafe { CStr::from_ptr(pw.pw_name) }.to_bytes().to_vec())
}

fn group_name(gid: u32) -> Option<Vec<u8>> {
    let (gr, _buf) = lookup_r(|rec: *mut libc::group, b, n, r| {
        // SAFETY: as in user_name.
        unsafe { libc::getgrgid_r(gid, rec, b, n, r) }
    })?;
    // SAFETY: gr_name points into _buf, NUL-terminated.
    Some(unsafe { CStr::from_ptr(gr.gr_name) }.to_bytes().to_vec())
}

fn user_id(name: &[u8]) -> Option<u32> {
    let c = CString::new(name).ok()?;
    let (pw, _buf) = lookup_r(|rec: *mut libc::passwd, b, n, r| {
        // SAFETY: c is NUL-terminated; other pointers valid for the call.
        unsafe { libc::getpwnam_r(c.as_ptr(), rec, b, n, r) }
    })?;
    Some(pw.pw_uid)
}

fn group_id(name: &[u8]) -> Option<u32> {
    let c = CString::new(name).ok()?;
    let (gr, _buf) = lookup_r(|rec: *mut libc::group, b, n, r| {
        // SAFETY: as in user_id.
        unsafe { libc::getgrnam_r(c.as_ptr(), rec, b, n, r) }
    })?;
    Some(gr.gr_gid)
}

impl NameCache {
    /// An empty cache.
    pub fn new() -> Self {
        NameCache::default()
    }

    /// `uid2user`: the user name of an id, `None` when unknown.
    pub fn uid2user(&mut self, uid: u32) -> Option<Vec<u8>> {
        self.users
            .entry(uid)
            .or_insert_with(|| user_name(uid))
            .clone()
    }

    /// `gid2group`: the group name of an id, `None` when unknown.
    pub fn gid2group(&mut self, gid: u32) -> Option<Vec<u8>> {
        self.groups
            .entry(gid)
            .or_insert_with(|| group_name(gid))
            .clone()
    }

    /// `user2uid`: the id of a user name, `None` when unknown or the name is empty.
    pub fn user2uid(&mut self, name: &[u8]) -> Option<u32> {
        if name.is_empty() {
            return None;
        }
        *self
            .uids
            .entry(name.to_vec())
            .or_insert_with(|| user_id(name))
    }

    /// `group2gid`: the id of a group name, `None` when unknown or empty.
    pub fn group2gid(&mut self, name: &[u8]) -> Option<u32> {
        if name.is_empty() {
            return None;
        }
        *self
            .gids
            .entry(name.to_vec())
            .or_insert_with(|| group_id(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_resolves_both_ways() {
        let mut c = NameCache::new();
        assert_eq!(c.uid2user(0).as_deref(), Some(&b"root"[..]));
        assert_eq!(c.gid2group(0).as_deref(), Some(&b"root"[..]));
        assert_eq!(c.user2uid(b"root"), Some(0));
        assert_eq!(c.group2gid(b"root"), Some(0));
        assert_eq!(c.uid2user(3_999_999_999), None);
        assert_eq!(c.user2uid(b"no-such-user-rborg"), None);
        assert_eq!(c.user2uid(b""), None);
    }
}
