//! Extended attributes as borg reads and writes them (`xattr.py: get_all, set_all`,
//! `platform/linux.pyx: listxattr`): never following symlinks, and without the
//! `system.posix_acl_*` names, which borg stores as ACLs instead.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::FsError;

/// What an xattr call works on: an open file, or a path whose last component is not followed.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// An open file descriptor (`f*xattr`).
    Fd(BorrowedFd<'a>),
    /// A path (`l*xattr`).
    Path(&'a CStr),
}

impl Target<'_> {
    fn label(&self) -> Vec<u8> {
        match self {
            Target::Fd(fd) => format!("<FD {}>", fd.as_raw_fd()).into_bytes(),
            Target::Path(p) => p.to_bytes().to_vec(),
        }
    }
}

/// Calls a size-probing xattr function with a growing buffer.
fn read_sized(mut call: impl FnMut(*mut libc::c_void, usize) -> isize) -> io::Result<Vec<u8>> {
    let mut size = 256usize;
    loop {
        let mut buf = vec![0u8; size];
        let n = call(buf.as_mut_ptr().cast(), buf.len());
        if n >= 0 {
            buf.truncate(n as usize);
            return Ok(buf);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ERANGE) && size < (1 << 26) {
            // ask for the size the value has now, then try again with room to spare
            let need = call(std::ptr::null_mut(), 0);
            size = if need > 0 {
                need as usize + 16
            } else {
                size * 4
            };
            continue;
        }
        return Err(e);
    }
}

/// All xattr names of the target, minus `system.posix_acl_*`.
pub fn list(target: Target<'_>) -> Result<Vec<Vec<u8>>, FsError> {
    let buf = read_sized(|p, n| match target {
        // SAFETY: p/n describe a writable buffer (or null/0 for a size probe).
        Target::Fd(fd) => unsafe { libc::flistxattr(fd.as_raw_fd(), p.cast(), n) },
        // SAFETY: as above; path is NUL-terminated.
        Target::Path(path) => unsafe { libc::llistxattr(path.as_ptr(), p.cast(), n) },
    })
    .map_err(|e| FsError::new("listxattr", &target.label(), e))?;
    Ok(buf
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty() && !n.starts_with(b"system.posix_acl_"))
        .map(<[u8]>::to_vec)
        .collect())
}

/// The value of one xattr; `Ok(None)` when it does not exist.
pub fn get(target: Target<'_>, name: &[u8]) -> Result<Option<Vec<u8>>, FsError> {
    let cname = CString::new(name)
        .map_err(|_| FsError::new("getxattr", name, io::Error::from_raw_os_error(libc::EINVAL)))?;
    match read_sized(|p, n| match target {
        // SAFETY: buffer as in `list`; cname is NUL-terminated.
        Target::Fd(fd) => unsafe { libc::fgetxattr(fd.as_raw_fd(), cname.as_ptr(), p, n) },
        // SAFETY: as above.
        Target::Path(path) => unsafe { libc::lgetxattr(path.as_ptr(), cname.as_ptr(), p, n) },
    }) {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.raw_os_error() == Some(libc::ENODATA) => Ok(None),
        Err(e) => Err(FsError::new("getxattr", &target.label(), e)),
    }
}

/// Sets one xattr (created or replaced).
pub fn set(target: Target<'_>, name: &[u8], value: &[u8]) -> Result<(), FsError> {
    let cname = CString::new(name)
        .map_err(|_| FsError::new("setxattr", name, io::Error::from_raw_os_error(libc::EINVAL)))?;
    let p = value.as_ptr().cast();
    let rc = match target {
        // SAFETY: value is a readable buffer of the given length; cname is NUL-terminated.
        Target::Fd(fd) => unsafe {
            libc::fsetxattr(fd.as_raw_fd(), cname.as_ptr(), p, value.len(), 0)
        },
        // SAFETY: as above.
        Target::Path(path) => unsafe {
            libc::lsetxattr(path.as_ptr(), cname.as_ptr(), p, value.len(), 0)
        },
    };
    if rc != 0 {
        return Err(FsError::last("setxattr", &target.label()));
    }
    Ok(())
}

/// Problems with single attributes that borg only warns about.
#[derive(Debug, Default)]
pub struct XattrWarnings(pub Vec<String>);

/// Attribute name and value pairs.
pub type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// `xattr.get_all`: every attribute as (name, value) in listing order. Names that vanish
/// between list and get are skipped; other per-name errors become warnings; a filesystem
/// without xattr support (`ENOTSUP`, `EPERM`) gives an empty list.
pub fn get_all(target: Target<'_>, warnings: &mut XattrWarnings) -> Result<Xattrs, FsError> {
    let names = match list(target) {
        Ok(n) => n,
        Err(e) if matches!(e.errno(), Some(libc::ENOTSUP) | Some(libc::EPERM)) => {
            return Ok(vec![])
        }
        Err(e) => return Err(e),
    };
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        match get(target, &name) {
            Ok(Some(v)) => out.push((name, v)),
            Ok(None) => {}
            Err(e) => warnings.0.push(format!(
                "when getting extended attribute {}: {}",
                String::from_utf8_lossy(&name),
                e.source
            )),
        }
    }
    Ok(out)
}

/// `xattr.set_all`: sets every attribute; failures are collected as borg's warning texts and
/// do not stop the others.
pub fn set_all(target: Target<'_>, xattrs: &[(Vec<u8>, Vec<u8>)]) -> Vec<String> {
    let mut warnings = Vec::new();
    for (k, v) in xattrs {
        if let Err(e) = set(target, k, v) {
            let detail = match e.errno() {
                Some(libc::E2BIG) => format!("too big for this filesystem ({})", e.source),
                Some(libc::ENOSPC) => format!(
                    "fs full or xattr too big? [xattr len = {}] ({})",
                    v.len(),
                    e.source
                ),
                _ => e.source.to_string(),
            };
            warnings.push(format!(
                "when setting extended attribute {}: {detail}",
                String::from_utf8_lossy(k)
            ));
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn roundtrip_on_a_file_and_acl_names_are_hidden() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        let f = std::fs::File::create(&p).unwrap();
        let t = Target::Fd(f.as_fd());
        set(t, b"user.big", &vec![7u8; 2000]).unwrap();
        set(t, b"user.empty", b"").unwrap();
        let mut w = XattrWarnings::default();
        let mut all = get_all(t, &mut w).unwrap();
        all.sort();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].1.len(), 2000);
        assert_eq!(all[1], (b"user.empty".to_vec(), vec![]));
        let cp = CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(get(Target::Path(&cp), b"user.none").unwrap(), None);
        // a mode-only ACL xattr is accepted by the kernel and must not be listed
        let acl = [
            2u8, 0, 0, 0, 1, 0, 6, 0, 255, 255, 255, 255, 4, 0, 4, 0, 255, 255, 255, 255, 32, 0, 4,
            0, 255, 255, 255, 255,
        ];
        set(t, b"system.posix_acl_access", &acl).unwrap();
        assert!(list(t).unwrap().iter().all(|n| !n.starts_with(b"system.")));
    }
}
