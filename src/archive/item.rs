//! Item dicts (`item.pyx: Item`): one file, directory, link or device in an archive.

use crate::msgpack::Value;
use crate::repository::ObjectId;

/// Every item key borg 1.x knows (`constants.py: ITEM_KEYS`), sorted; the manifest's
/// `item_keys` lists exactly these.
pub const ITEM_KEYS: [&str; 23] = [
    "acl_access",
    "acl_default",
    "acl_extended",
    "acl_nfs4",
    "atime",
    "birthtime",
    "bsdflags",
    "chunks",
    "chunks_healthy",
    "ctime",
    "gid",
    "group",
    "hardlink_master",
    "mode",
    "mtime",
    "part",
    "path",
    "rdev",
    "size",
    "source",
    "uid",
    "user",
    "xattrs",
];

/// Why an item dict cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ItemError {
    /// Not a map.
    #[error("item is not a map")]
    NotAMap,
    /// A required key (`path`, `mtime`) is missing.
    #[error("item lacks the required key {0:?}")]
    Missing(&'static str),
    /// A key holds a value of the wrong type.
    #[error("item key {0:?} has a value of the wrong type")]
    WrongType(&'static str),
    /// A key borg 1.x does not know.
    #[error("item has an unknown key {0:?}")]
    UnknownKey(String),
}

/// One entry of an item's `chunks` list: `[id, size, csize]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRef {
    /// The chunk id.
    pub id: ObjectId,
    /// The plaintext size.
    pub size: u64,
    /// The stored (compressed and encrypted) size.
    pub csize: u64,
}

/// An item of an archive, with the keys borg 1.x writes. Absent keys are `None`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Item {
    /// Relative path, bytes (borg keeps non-UTF-8 names as they are).
    pub path: Vec<u8>,
    /// Full `st_mode`.
    pub mode: Option<u32>,
    /// Owner id.
    pub uid: Option<u32>,
    /// Group id.
    pub gid: Option<u32>,
    /// Owner name; `Some(None)` is an explicit nil (`--numeric-ids` or unknown user).
    pub user: Option<Option<Vec<u8>>>,
    /// Group name; `Some(None)` is an explicit nil.
    pub group: Option<Option<Vec<u8>>>,
    /// Modification time, nanoseconds since the epoch.
    pub mtime: i64,
    /// Status change time, nanoseconds.
    pub ctime: Option<i64>,
    /// Access time, nanoseconds (`--atime`).
    pub atime: Option<i64>,
    /// Birth time, nanoseconds (not on Linux).
    pub birthtime: Option<i64>,
    /// Size of the content.
    pub size: Option<u64>,
    /// The content's chunks.
    pub chunks: Option<Vec<ChunkRef>>,
    /// The original chunks of an item repaired with all-zero replacements.
    pub chunks_healthy: Option<Vec<ChunkRef>>,
    /// Extended attributes, name to value (an empty value is stored as nil, as borg does).
    pub xattrs: Option<Vec<(Vec<u8>, Vec<u8>)>>,
    /// POSIX access ACL in borg's text form.
    pub acl_access: Option<Vec<u8>>,
    /// POSIX default ACL (directories).
    pub acl_default: Option<Vec<u8>>,
    /// macOS extended ACL.
    pub acl_extended: Option<Vec<u8>>,
    /// NFSv4 ACL.
    pub acl_nfs4: Option<Vec<u8>>,
    /// BSD/Linux file flags.
    pub bsdflags: Option<u32>,
    /// Device number.
    pub rdev: Option<u64>,
    /// Symlink target, or the master's path for a hardlink slave.
    pub source: Option<Vec<u8>>,
    /// Whether this is the first of several hardlinks.
    pub hardlink_master: Option<bool>,
    /// Part number of a `.borg_part_N` item.
    pub part: Option<u32>,
}

fn int_i64(v: &Value, key: &'static str) -> Result<i64, ItemError> {
    match v {
        Value::Int(_) => v.as_i64().ok_or(ItemError::WrongType(key)),
        // borg 1.0 wrote times beyond 63 bits as little-endian signed bytes (`bigint_to_int`).
        Value::Raw(b) if b.len() <= 16 && key.ends_with("time") => {
            let mut buf = [if b.last().is_some_and(|x| x & 0x80 != 0) {
                0xff
            } else {
                0
            }; 16];
            buf[..b.len()].copy_from_slice(b);
            i64::try_from(i128::from_le_bytes(buf)).map_err(|_| ItemError::WrongType(key))
        }
        _ => Err(ItemError::WrongType(key)),
    }
}

fn int_u64(v: &Value, key: &'static str) -> Result<u64, ItemError> {
    v.as_u64().ok_or(ItemError::WrongType(key))
}

fn int_u32(v: &Value, key: &'static str) -> Result<u32, ItemError> {
    int_u64(v, key).and_then(|x| u32::try_from(x).map_err(|_| ItemError::WrongType(key)))
}

fn raw(v: &Value, key: &'static str) -> Result<Vec<u8>, ItemError> {
    v.as_bytes()
        .map(<[u8]>::to_vec)
        .ok_or(ItemError::WrongType(key))
}

fn raw_or_nil(v: &Value, key: &'static str) -> Result<Option<Vec<u8>>, ItemError> {
    if v.is_nil() {
        Ok(None)
    } else {
        raw(v, key).map(Some)
    }
}

fn chunk_list(v: &Value, key: &'static str) -> Result<Vec<ChunkRef>, ItemError> {
    let entries = v.as_array().ok_or(ItemError::WrongType(key))?;
    entries
        .iter()
        .map(|e| match e.as_array() {
            Some([id, size, csize]) => {
                let id: ObjectId = id
                    .as_bytes()
                    .and_then(|b| b.try_into().ok())
                    .ok_or(ItemError::WrongType(key))?;
                Ok(ChunkRef {
                    id,
                    size: int_u64(size, key)?,
                    csize: int_u64(csize, key)?,
                })
            }
            _ => Err(ItemError::WrongType(key)),
        })
        .collect()
}

fn chunk_list_value(chunks: &[ChunkRef]) -> Value {
    Value::Array(
        chunks
            .iter()
            .map(|c| Value::Array(vec![Value::bytes(&c.id), c.size.into(), c.csize.into()]))
            .collect(),
    )
}

impl Item {
    /// Reads an item dict. Unknown keys are refused, as `borg check` refuses them.
    pub fn from_value(v: &Value) -> Result<Item, ItemError> {
        let pairs = v.as_map().ok_or(ItemError::NotAMap)?;
        let mut item = Item::default();
        let mut have_path = false;
        let mut have_mtime = false;
        for (k, val) in pairs {
            let key = k.as_bytes().ok_or(ItemError::WrongType("key"))?;
            match key {
                b"path" => {
                    item.path = raw(val, "path")?;
                    have_path = true;
                }
                b"mode" => item.mode = Some(int_u32(val, "mode")?),
                b"uid" => item.uid = Some(int_u32(val, "uid")?),
                b"gid" => item.gid = Some(int_u32(val, "gid")?),
                b"user" => item.user = Some(raw_or_nil(val, "user")?),
                b"group" => item.group = Some(raw_or_nil(val, "group")?),
                b"mtime" => {
                    item.mtime = int_i64(val, "mtime")?;
                    have_mtime = true;
                }
                b"ctime" => item.ctime = Some(int_i64(val, "ctime")?),
                b"atime" => item.atime = Some(int_i64(val, "atime")?),
                b"birthtime" => item.birthtime = Some(int_i64(val, "birthtime")?),
                b"size" => item.size = Some(int_u64(val, "size")?),
                b"chunks" => item.chunks = Some(chunk_list(val, "chunks")?),
                b"chunks_healthy" => item.chunks_healthy = Some(chunk_list(val, "chunks_healthy")?),
                b"xattrs" => {
                    let m = val.as_map().ok_or(ItemError::WrongType("xattrs"))?;
                    item.xattrs = Some(
                        m.iter()
                            // borg stores an empty value as nil (`xattr.get_all`: `... or None`).
                            .map(|(n, x)| {
                                Ok((
                                    raw(n, "xattrs")?,
                                    raw_or_nil(x, "xattrs")?.unwrap_or_default(),
                                ))
                            })
                            .collect::<Result<_, ItemError>>()?,
                    );
                }
                b"acl_access" => item.acl_access = Some(raw(val, "acl_access")?),
                b"acl_default" => item.acl_default = Some(raw(val, "acl_default")?),
                b"acl_extended" => item.acl_extended = Some(raw(val, "acl_extended")?),
                b"acl_nfs4" => item.acl_nfs4 = Some(raw(val, "acl_nfs4")?),
                b"bsdflags" => item.bsdflags = Some(int_u32(val, "bsdflags")?),
                b"rdev" => item.rdev = Some(int_u64(val, "rdev")?),
                b"source" => item.source = Some(raw(val, "source")?),
                b"hardlink_master" => {
                    item.hardlink_master = Some(
                        val.as_bool()
                            .ok_or(ItemError::WrongType("hardlink_master"))?,
                    )
                }
                b"part" => item.part = Some(int_u32(val, "part")?),
                other => return Err(ItemError::UnknownKey(String::from_utf8_lossy(other).into())),
            }
        }
        if !have_path {
            return Err(ItemError::Missing("path"));
        }
        if !have_mtime {
            return Err(ItemError::Missing("mtime"));
        }
        Ok(item)
    }

    /// The item as borg writes it (the encoder sorts the keys).
    pub fn to_value(&self) -> Value {
        let mut m: Vec<(&str, Value)> = vec![
            ("path", Value::bytes(&self.path)),
            ("mtime", self.mtime.into()),
        ];
        let mut opt = |k: &'static str, v: Option<Value>| {
            if let Some(v) = v {
                m.push((k, v));
            }
        };
        opt("mode", self.mode.map(Value::from));
        opt("uid", self.uid.map(Value::from));
        opt("gid", self.gid.map(Value::from));
        opt("user", self.user.clone().map(Value::from));
        opt("group", self.group.clone().map(Value::from));
        opt("ctime", self.ctime.map(Value::from));
        opt("atime", self.atime.map(Value::from));
        opt("birthtime", self.birthtime.map(Value::from));
        opt("size", self.size.map(Value::from));
        opt("chunks", self.chunks.as_deref().map(chunk_list_value));
        opt(
            "chunks_healthy",
            self.chunks_healthy.as_deref().map(chunk_list_value),
        );
        opt(
            "xattrs",
            self.xattrs.as_ref().map(|x| {
                Value::Map(
                    x.iter()
                        .map(|(n, v)| {
                            let v = if v.is_empty() {
                                Value::Nil
                            } else {
                                Value::bytes(v)
                            };
                            (Value::bytes(n), v)
                        })
                        .collect(),
                )
            }),
        );
        opt("acl_access", self.acl_access.clone().map(Value::from));
        opt("acl_default", self.acl_default.clone().map(Value::from));
        opt("acl_extended", self.acl_extended.clone().map(Value::from));
        opt("acl_nfs4", self.acl_nfs4.clone().map(Value::from));
        opt("bsdflags", self.bsdflags.map(Value::from));
        opt("rdev", self.rdev.map(Value::from));
        opt("source", self.source.clone().map(Value::from));
        opt("hardlink_master", self.hardlink_master.map(Value::from));
        opt("part", self.part.map(Value::from));
        Value::map(m)
    }

    /// The content size: `size` when present, else the sum of the chunk sizes (archives from
    /// before 1.2 have no `size`).
    pub fn content_size(&self) -> u64 {
        self.size.unwrap_or_else(|| {
            self.chunks
                .as_deref()
                .map(|c| c.iter().map(|c| c.size).sum())
                .unwrap_or(0)
        })
    }
}
