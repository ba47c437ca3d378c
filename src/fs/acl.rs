//! POSIX ACLs in borg's text form, read from and written to the kernel's
//! `system.posix_acl_access` / `system.posix_acl_default` xattrs directly (no libacl).
//!
//! Borg gets the text from libacl's `acl_to_text` and post-processes it
//! (`platform/linux.pyx: acl_get, acl_append_numeric_ids, acl_numeric_ids`). We build the same
//! bytes, including two quirks of that path:
//!
//! * `acl_to_text` appends `\t#effective:...` to entries the mask restricts; borg strips the
//!   comment but keeps the tab, so such entries read `user:bob:rwx\t:1001`;
//! * a directory with an extended access ACL but no default ACL gets `acl_default` = empty.

use std::ffi::CStr;
use std::io;
use std::os::fd::BorrowedFd;

use super::names::NameCache;
use super::xattr::{self, Target};
use super::FsError;

/// xattr holding the access ACL.
pub const ACCESS_XATTR: &[u8] = b"system.posix_acl_access";
/// xattr holding a directory's default ACL.
pub const DEFAULT_XATTR: &[u8] = b"system.posix_acl_default";

const ACL_EA_VERSION: u32 = 2;
const ACL_UNDEFINED_ID: u32 = u32::MAX;
/// Size of a minimal (three-entry) ACL xattr: header plus three entries.
const BASE_SIZE: usize = 4 + 3 * 8;

/// An ACL entry's tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tag {
    /// `user::` (the owner).
    UserObj = 0x01,
    /// `user:NAME:` (a named user).
    User = 0x02,
    /// `group::` (the owning group).
    GroupObj = 0x04,
    /// `group:NAME:`.
    Group = 0x08,
    /// `mask::`.
    Mask = 0x10,
    /// `other::`.
    Other = 0x20,
}

impl Tag {
    fn from_u16(v: u16) -> Option<Tag> {
        Some(match v {
            0x01 => Tag::UserObj,
            0x02 => Tag::User,
            0x04 => Tag::GroupObj,
            0x08 => Tag::Group,
            0x10 => Tag::Mask,
            0x20 => Tag::Other,
            _ => return None,
        })
    }
}

/// One entry: tag, permission bits (r=4, w=2, x=1) and, for named entries, the id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AclEntry {
    /// The tag.
    pub tag: Tag,
    /// rwx bits.
    pub perm: u16,
    /// uid or gid for `User`/`Group`, else `u32::MAX`.
    pub id: u32,
}

/// Why an ACL could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum AclError {
    /// The xattr value is not a version-2 POSIX ACL.
    #[error("malformed POSIX ACL xattr")]
    Malformed,
    /// A text entry borg's form does not allow.
    #[error("invalid ACL text entry {0:?}")]
    BadText(String),
    /// A system call failed.
    #[error(transparent)]
    Fs(#[from] FsError),
}

/// Parses an ACL xattr value.
pub fn parse_xattr(data: &[u8]) -> Result<Vec<AclEntry>, AclError> {
    if data.len() < 4 || (data.len() - 4) % 8 != 0 {
        return Err(AclError::Malformed);
    }
    let version = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
    if version != ACL_EA_VERSION {
        return Err(AclError::Malformed);
    }
    data[4..]
        .chunks_exact(8)
        .map(|e| {
            let tag = Tag::from_u16(u16::from_le_bytes([e[0], e[1]])).ok_or(AclError::Malformed)?;
            Ok(AclEntry {
                tag,
                perm: u16::from_le_bytes([e[2], e[3]]) & 7,
                id: u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
            })
        })
        .collect()
}

/// Builds an ACL xattr value; entries are put in the order the kernel requires.
pub fn build_xattr(entries: &[AclEntry]) -> Vec<u8> {
    let mut sorted = entries.to_vec();
    sorted.sort_by_key(|e| (e.tag, e.id));
    let mut out = ACL_EA_VERSION.to_le_bytes().to_vec();
    for e in sorted {
        out.extend_from_slice(&(e.tag as u16).to_le_bytes());
        out.extend_from_slice(&e.perm.to_le_bytes());
        let id = if matches!(e.tag, Tag::User | Tag::Group) {
            e.id
        } else {
            ACL_UNDEFINED_ID
        };
        out.extend_from_slice(&id.to_le_bytes());
    }
    out
}

/// The three-entry ACL equivalent to a mode (what libacl returns when there is no xattr).
pub fn from_mode(mode: u32) -> Vec<AclEntry> {
    let e = |tag, shift: u32| AclEntry {
        tag,
        perm: ((mode >> shift) & 7) as u16,
        id: ACL_UNDEFINED_ID,
    };
    vec![e(Tag::UserObj, 6), e(Tag::GroupObj, 3), e(Tag::Other, 0)]
}

fn perm_text(perm: u16) -> [u8; 3] {
    [
        if perm & 4 != 0 { b'r' } else { b'-' },
        if perm & 2 != 0 { b'w' } else { b'-' },
        if perm & 1 != 0 { b'x' } else { b'-' },
    ]
}

/// Borg's stored text for a list of entries: `acl_to_text` plus `acl_append_numeric_ids`
/// (names, then the numeric id) or `acl_numeric_ids` (the id in both places).
pub fn to_borg_text(entries: &[AclEntry], names: &mut NameCache, numeric_ids: bool) -> Vec<u8> {
    let mask = entries.iter().find(|e| e.tag == Tag::Mask).map(|e| e.perm);
    let mut lines: Vec<Vec<u8>> = Vec::with_capacity(entries.len());
    for e in entries {
        let mut line = Vec::new();
        let (kind, name): (&[u8], Option<Vec<u8>>) = match e.tag {
            Tag::UserObj => (b"user", None),
            Tag::User => (
                b"user",
                Some(
                    names
                        .uid2user(e.id)
                        .unwrap_or_else(|| e.id.to_string().into_bytes()),
                ),
            ),
            Tag::GroupObj => (b"group", None),
            Tag::Group => (
                b"group",
                Some(
                    names
                        .gid2group(e.id)
                        .unwrap_or_else(|| e.id.to_string().into_bytes()),
                ),
            ),
            Tag::Mask => (b"mask", None),
            Tag::Other => (b"other", None),
        };
        // `user2uid(name, name)`: the id of the name acl_to_text printed, or the name itself
        let resolved_id = name.as_ref().map(|n| {
            let id = if e.tag == Tag::User {
                names.user2uid(n)
            } else {
                names.group2gid(n)
            };
            id.map_or_else(|| n.clone(), |i| i.to_string().into_bytes())
        });
        line.extend_from_slice(kind);
        line.push(b':');
        if let (Some(n), Some(id)) = (&name, &resolved_id) {
            line.extend_from_slice(if numeric_ids { id } else { n });
        }
        line.push(b':');
        line.extend_from_slice(&perm_text(e.perm));
        if let Some(m) = mask {
            // acl_to_text's effective-rights comment; borg's `_comment_re` (` *#.*`) removes
            // the comment but not the tab in front of it.
            if matches!(e.tag, Tag::User | Tag::GroupObj | Tag::Group) && e.perm & m != e.perm {
                line.push(b'\t');
            }
        }
        if let Some(id) = resolved_id {
            line.push(b':');
            line.extend_from_slice(&id);
        }
        lines.push(line);
    }
    lines.join(&b'\n')
}

/// Parses borg's stored text back into entries, resolving ids as borg's `acl_set` does:
/// `--numeric-ids` uses the stored id (`posix_acl_use_stored_uid_gid`), otherwise the local
/// id of the stored name, falling back to the stored id (`acl_use_local_uid_gid`).
pub fn from_borg_text(
    text: &[u8],
    names: &mut NameCache,
    numeric_ids: bool,
) -> Result<Vec<AclEntry>, AclError> {
    let bad = |l: &[u8]| AclError::BadText(String::from_utf8_lossy(l).into_owned());
    let mut out = Vec::new();
    for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let fields: Vec<&[u8]> = line.split(|&b| b == b':').collect();
        if fields.len() < 3 {
            return Err(bad(line));
        }
        let qualifier: Vec<u8> = if fields[1].is_empty() {
            Vec::new()
        } else if numeric_ids {
            if fields.len() == 4 {
                fields[3]
            } else {
                fields[1]
            }
            .to_vec()
        } else {
            let local = match fields[0] {
                b"user" => names.user2uid(fields[1]),
                b"group" => names.group2gid(fields[1]),
                _ => None,
            };
            match (local, fields.get(3)) {
                (Some(id), _) => id.to_string().into_bytes(),
                (None, Some(stored)) => stored.to_vec(),
                (None, None) => fields[1].to_vec(),
            }
        };
        let tag = match (fields[0], qualifier.is_empty()) {
            (b"user" | b"u", true) => Tag::UserObj,
            (b"user" | b"u", false) => Tag::User,
            (b"group" | b"g", true) => Tag::GroupObj,
            (b"group" | b"g", false) => Tag::Group,
            (b"mask" | b"m", _) => Tag::Mask,
            (b"other" | b"o", _) => Tag::Other,
            _ => return Err(bad(line)),
        };
        let id = if matches!(tag, Tag::User | Tag::Group) {
            let q = std::str::from_utf8(&qualifier)
                .map_err(|_| bad(line))?
                .trim();
            match q.parse::<u32>() {
                Ok(id) => id,
                // acl_from_text also accepts a name it can resolve
                Err(_) => match tag {
                    Tag::User => names.user2uid(q.as_bytes()),
                    _ => names.group2gid(q.as_bytes()),
                }
                .ok_or_else(|| bad(line))?,
            }
        } else {
            ACL_UNDEFINED_ID
        };
        let mut perm = 0u16;
        for &c in fields[2].iter().filter(|c| !c.is_ascii_whitespace()) {
            perm |= match c {
                b'r' => 4,
                b'w' => 2,
                b'x' => 1,
                b'-' => 0,
                _ => return Err(bad(line)),
            };
        }
        out.push(AclEntry { tag, perm, id });
    }
    Ok(out)
}

/// The ACL keys borg stores for one object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclTexts {
    /// `acl_access`.
    pub access: Option<Vec<u8>>,
    /// `acl_default` (directories only).
    pub default: Option<Vec<u8>>,
}

fn raw_xattr(target: Target<'_>, name: &[u8]) -> Result<Option<Vec<u8>>, FsError> {
    match xattr::get(target, name) {
        Err(e) if e.errno() == Some(libc::ENOTSUP) => Ok(None),
        other => other,
    }
}

/// Borg's `acl_get` for one object: nothing unless the ACL is extended beyond the mode bits
/// (libacl's `acl_extended_file` rule: an access ACL bigger than three entries, or any
/// default ACL). `fd` is used for the access ACL when given, `path` for the default ACL of a
/// directory; symlinks have no ACLs.
pub fn acl_get(
    fd: Option<BorrowedFd<'_>>,
    path: &CStr,
    mode: u32,
    names: &mut NameCache,
    numeric_ids: bool,
) -> Result<AclTexts, AclError> {
    let kind = mode & libc::S_IFMT;
    if kind == libc::S_IFLNK {
        return Ok(AclTexts::default());
    }
    let access_target = fd.map_or(Target::Path(path), Target::Fd);
    let access = raw_xattr(access_target, ACCESS_XATTR)?;
    let is_dir = kind == libc::S_IFDIR;
    let default = if is_dir {
        raw_xattr(Target::Path(path), DEFAULT_XATTR)?
    } else {
        None
    };
    let extended = access.as_ref().is_some_and(|a| a.len() > BASE_SIZE)
        || default.as_ref().is_some_and(|d| d.len() >= BASE_SIZE);
    if !extended {
        return Ok(AclTexts::default());
    }
    let access_entries = match &access {
        Some(a) => parse_xattr(a)?,
        None => from_mode(mode),
    };
    let mut out = AclTexts {
        access: Some(to_borg_text(&access_entries, names, numeric_ids)),
        default: None,
    };
    if is_dir {
        let default_entries = match &default {
            Some(d) => parse_xattr(d)?,
            None => Vec::new(),
        };
        out.default = Some(to_borg_text(&default_entries, names, numeric_ids));
    }
    Ok(out)
}

/// Borg's `acl_set`: writes `acl_access` (through `fd` when given) and a non-empty
/// `acl_default` (by path). Symlinks are skipped, as Linux has no ACLs on them.
pub fn acl_set(
    fd: Option<BorrowedFd<'_>>,
    path: &CStr,
    mode: u32,
    access: Option<&[u8]>,
    default: Option<&[u8]>,
    names: &mut NameCache,
    numeric_ids: bool,
) -> Result<(), AclError> {
    if mode & libc::S_IFMT == libc::S_IFLNK {
        return Ok(());
    }
    if let Some(text) = access.filter(|t| !t.is_empty()) {
        let value = build_xattr(&from_borg_text(text, names, numeric_ids)?);
        let target = fd.map_or(Target::Path(path), Target::Fd);
        xattr::set(target, ACCESS_XATTR, &value)?;
    }
    if let Some(text) = default.filter(|t| !t.is_empty()) {
        let value = build_xattr(&from_borg_text(text, names, numeric_ids)?);
        xattr::set(Target::Path(path), DEFAULT_XATTR, &value)?;
    }
    Ok(())
}

/// Whether an error is "the filesystem has no ACLs", which borg ignores.
pub fn is_not_supported(e: &AclError) -> bool {
    match e {
        AclError::Fs(f) => f.errno() == Some(libc::ENOTSUP),
        _ => false,
    }
}

impl From<AclError> for io::Error {
    fn from(e: AclError) -> io::Error {
        match e {
            AclError::Fs(f) => f.source,
            other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(tag: Tag, perm: u16, id: u32) -> AclEntry {
        AclEntry { tag, perm, id }
    }

    #[test]
    fn text_matches_borgs_with_effective_tabs() {
        // the ACL borg 1.2.4 stored as
        // user::rw-\nuser:12:rw-\t:12\nuser:1234567890:rwx\t:1234567890\ngroup::rwx\t\n
        // group:2000000000:rwx\t:2000000000\nmask::--x\nother::r--
        let acl = vec![
            e(Tag::UserObj, 6, ACL_UNDEFINED_ID),
            e(Tag::User, 6, 12),
            e(Tag::User, 7, 1234567890),
            e(Tag::GroupObj, 7, ACL_UNDEFINED_ID),
            e(Tag::Group, 7, 2000000000),
            e(Tag::Mask, 1, ACL_UNDEFINED_ID),
            e(Tag::Other, 4, ACL_UNDEFINED_ID),
        ];
        let mut names = NameCache::new();
        let text = to_borg_text(&acl, &mut names, false);
        assert_eq!(
            text,
            b"user::rw-\nuser:12:rw-\t:12\nuser:1234567890:rwx\t:1234567890\ngroup::rwx\t\ngroup:2000000000:rwx\t:2000000000\nmask::--x\nother::r--"
        );
        assert_eq!(from_borg_text(&text, &mut names, false).unwrap(), acl);
        assert_eq!(from_borg_text(&text, &mut names, true).unwrap(), acl);
        let bin = build_xattr(&acl);
        assert_eq!(parse_xattr(&bin).unwrap(), acl);
    }

    #[test]
    fn names_and_numeric_ids() {
        let acl = vec![
            e(Tag::UserObj, 6, ACL_UNDEFINED_ID),
            e(Tag::User, 7, 0),
            e(Tag::GroupObj, 4, ACL_UNDEFINED_ID),
            e(Tag::Mask, 7, ACL_UNDEFINED_ID),
            e(Tag::Other, 4, ACL_UNDEFINED_ID),
        ];
        let mut names = NameCache::new();
        assert_eq!(
            to_borg_text(&acl, &mut names, false),
            b"user::rw-\nuser:root:rwx:0\ngroup::r--\nmask::rwx\nother::r--"
        );
        assert_eq!(
            to_borg_text(&acl, &mut names, true),
            b"user::rw-\nuser:0:rwx:0\ngroup::r--\nmask::rwx\nother::r--"
        );
    }

    #[test]
    fn kernel_binary_from_setfacl() {
        // getfattr of `setfacl -m u:nobody:rwx,u:4242:r,g:daemon:rw,m::r f`
        let bin = hex::decode("0200000001000600ffffffff020004009210000002000700feff000004000400ffffffff080006000100000010000400ffffffff20000400ffffffff").unwrap();
        let acl = parse_xattr(&bin).unwrap();
        assert_eq!(build_xattr(&acl), bin);
        let mut names = NameCache::new();
        let text = to_borg_text(&acl, &mut names, true);
        assert_eq!(
            text,
            b"user::rw-\nuser:4242:r--:4242\nuser:65534:rwx\t:65534\ngroup::r--\ngroup:1:rw-\t:1\nmask::r--\nother::r--"
        );
    }
}
