//! The archive metadata object (`item.pyx: ArchiveItem`, `archive.py: Archive.save`).

use chrono::{DateTime, NaiveDateTime, Utc};

use crate::msgpack::Value;
use crate::repository::ObjectId;

use super::ItemError;

/// The format of every timestamp borg 1.x stores: naive UTC with six fractional digits.
const TIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6f";

/// Formats a time as borg stores it (`2026-11-26T07:00:05.123456`).
pub fn format_time(t: &DateTime<Utc>) -> String {
    t.format(TIME_FORMAT).to_string()
}

/// Parses a stored timestamp, with or without fractional seconds (borg's `parse_timestamp`).
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S"))
        .ok()
        .map(|n| n.and_utc())
}

/// An archive's metadata. The TAM is not part of this value: the crypto layer adds it when it
/// packs the object and checks it when it unpacks one.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchiveMetadata {
    /// Always 1 in borg 1.x.
    pub version: u32,
    /// The archive name.
    pub name: String,
    /// Ids of the item-metadata stream chunks, in order.
    pub items: Vec<ObjectId>,
    /// The command line that made the archive.
    pub cmdline: Vec<String>,
    /// The short host name.
    pub hostname: String,
    /// The user name.
    pub username: String,
    /// Start time, as stored.
    pub time: String,
    /// End time, as stored.
    pub time_end: Option<String>,
    /// The comment; borg always writes the key, empty when there is none.
    pub comment: String,
    /// The chunker parameters, as stored (e.g. `["buzhash", 19, 23, 21, 4095]`).
    pub chunker_params: Option<Value>,
    /// Sum of original sizes of regular-file content (1.2+).
    pub size: Option<u64>,
    /// Sum of stored sizes (1.2+).
    pub csize: Option<u64>,
    /// Number of regular files (1.2+).
    pub nfiles: Option<u64>,
    /// `size` for part items (1.2+).
    pub size_parts: Option<u64>,
    /// `csize` for part items (1.2+).
    pub csize_parts: Option<u64>,
    /// `nfiles` for part items (1.2+).
    pub nfiles_parts: Option<u64>,
    /// The working directory at create time (1.4.4+).
    pub cwd: Option<String>,
    /// Keys this version does not model (`recreate_*`), kept so a rewrite preserves them.
    pub other: Vec<(String, Value)>,
}

fn text(v: &Value, key: &'static str) -> Result<String, ItemError> {
    // borg decodes these with surrogateescape; invalid UTF-8 is kept lossily here.
    v.as_bytes()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .ok_or(ItemError::WrongType(key))
}

fn count(v: &Value, key: &'static str) -> Result<u64, ItemError> {
    v.as_u64().ok_or(ItemError::WrongType(key))
}

impl ArchiveMetadata {
    /// Reads the metadata from its unpacked dict; a `tam` key is ignored here.
    pub fn from_value(v: &Value) -> Result<ArchiveMetadata, ItemError> {
        let pairs = v.as_map().ok_or(ItemError::NotAMap)?;
        let mut m = ArchiveMetadata {
            version: 0,
            name: String::new(),
            items: Vec::new(),
            cmdline: Vec::new(),
            hostname: String::new(),
            username: String::new(),
            time: String::new(),
            time_end: None,
            comment: String::new(),
            chunker_params: None,
            size: None,
            csize: None,
            nfiles: None,
            size_parts: None,
            csize_parts: None,
            nfiles_parts: None,
            cwd: None,
            other: Vec::new(),
        };
        let mut seen = [false; 5];
        for (k, val) in pairs {
            let key = k.as_str().ok_or(ItemError::WrongType("key"))?;
            match key {
                "version" => {
                    m.version = count(val, "version")?
                        .try_into()
                        .map_err(|_| ItemError::WrongType("version"))?;
                    seen[0] = true;
                }
                "name" => {
                    m.name = text(val, "name")?;
                    seen[1] = true;
                }
                "items" => {
                    let a = val.as_array().ok_or(ItemError::WrongType("items"))?;
                    m.items = a
                        .iter()
                        .map(|i| {
                            i.as_bytes()
                                .and_then(|b| b.try_into().ok())
                                .ok_or(ItemError::WrongType("items"))
                        })
                        .collect::<Result<_, _>>()?;
                    seen[2] = true;
                }
                "cmdline" => {
                    let a = val.as_array().ok_or(ItemError::WrongType("cmdline"))?;
                    m.cmdline = a
                        .iter()
                        .map(|x| text(x, "cmdline"))
                        .collect::<Result<_, _>>()?;
                    seen[3] = true;
                }
                "time" => {
                    m.time = text(val, "time")?;
                    seen[4] = true;
                }
                "hostname" => m.hostname = text(val, "hostname")?,
                "username" => m.username = text(val, "username")?,
                "time_end" => m.time_end = Some(text(val, "time_end")?),
                "comment" => m.comment = text(val, "comment")?,
                "chunker_params" => m.chunker_params = Some(val.clone()),
                "size" => m.size = Some(count(val, "size")?),
                "csize" => m.csize = Some(count(val, "csize")?),
                "nfiles" => m.nfiles = Some(count(val, "nfiles")?),
                "size_parts" => m.size_parts = Some(count(val, "size_parts")?),
                "csize_parts" => m.csize_parts = Some(count(val, "csize_parts")?),
                "nfiles_parts" => m.nfiles_parts = Some(count(val, "nfiles_parts")?),
                "cwd" => m.cwd = Some(text(val, "cwd")?),
                "tam" => {}
                other => m.other.push((other.to_string(), val.clone())),
            }
        }
        const REQUIRED: [&str; 5] = ["version", "name", "items", "cmdline", "time"];
        if let Some(i) = seen.iter().position(|s| !s) {
            return Err(ItemError::Missing(REQUIRED[i]));
        }
        Ok(m)
    }

    /// The metadata dict without a TAM (the crypto layer adds it).
    pub fn to_value(&self) -> Value {
        let mut m: Vec<(&str, Value)> = vec![
            ("version", self.version.into()),
            ("name", self.name.as_str().into()),
            (
                "items",
                Value::Array(self.items.iter().map(|i| Value::bytes(i)).collect()),
            ),
            (
                "cmdline",
                Value::Array(self.cmdline.iter().map(|c| c.as_str().into()).collect()),
            ),
            ("hostname", self.hostname.as_str().into()),
            ("username", self.username.as_str().into()),
            ("time", self.time.as_str().into()),
            ("comment", self.comment.as_str().into()),
        ];
        let mut opt = |k: &'static str, v: Option<Value>| {
            if let Some(v) = v {
                m.push((k, v));
            }
        };
        opt("time_end", self.time_end.as_deref().map(Value::from));
        opt("chunker_params", self.chunker_params.clone());
        opt("size", self.size.map(Value::from));
        opt("csize", self.csize.map(Value::from));
        opt("nfiles", self.nfiles.map(Value::from));
        opt("size_parts", self.size_parts.map(Value::from));
        opt("csize_parts", self.csize_parts.map(Value::from));
        opt("nfiles_parts", self.nfiles_parts.map(Value::from));
        opt("cwd", self.cwd.as_deref().map(Value::from));
        let mut v = Value::map(m);
        for (k, x) in &self.other {
            v.insert(k, x.clone());
        }
        v
    }

    /// The start time, parsed.
    pub fn start(&self) -> Option<DateTime<Utc>> {
        parse_time(&self.time)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::Item;
    use crate::msgpack::{decode, encode, Decoder};

    fn vendor(name: &str) -> Vec<u8> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("vendor-testdata/msgpack")
            .join(name);
        std::fs::read(p).expect("vendor test data")
    }

    #[test]
    fn borg_archives_and_items_round_trip_byte_exact() {
        for v in ["borg12", "borg14"] {
            let data = vendor(&format!("{v}_archive.msgpack"));
            let value = decode(&data).expect("decodes");
            let meta = ArchiveMetadata::from_value(&value).expect("archive metadata");
            assert_eq!(meta.version, 1);
            assert_eq!(meta.name, "arch1");
            assert_eq!(meta.comment, "a comment");
            assert_eq!(meta.cwd.is_some(), v == "borg14");
            assert_eq!(meta.nfiles, Some(2));
            let mut again = meta.to_value();
            again.insert("tam", value.get("tam").expect("tam").clone());
            assert_eq!(encode(&again), data, "{v} archive re-encodes");

            let data = vendor(&format!("{v}_items.msgpack"));
            let mut d = Decoder::new(&data);
            let mut out = Vec::new();
            let mut paths = Vec::new();
            while !d.is_empty() {
                let item = Item::from_value(&d.next_value().expect("item")).expect("item dict");
                paths.push(String::from_utf8_lossy(&item.path).into_owned());
                out.extend(encode(&item.to_value()));
            }
            assert_eq!(out, data, "{v} items re-encode");
            // borg walks a directory in inode order, so only the set of paths is fixed.
            paths.sort();
            assert_eq!(
                paths,
                ["src", "src/a.txt", "src/dir", "src/dir/b", "src/link"]
            );
        }
    }

    #[test]
    fn times_format_like_borg() {
        let t = parse_time("2026-11-26T07:00:05.000123").expect("time");
        assert_eq!(format_time(&t), "2026-11-26T07:00:05.000123");
        let t = parse_time("2026-11-26T07:00:05").expect("time");
        assert_eq!(format_time(&t), "2026-11-26T07:00:05.000000");
        assert!(parse_time("yesterday").is_none());
    }

    #[test]
    fn bad_items_are_errors() {
        let v = Value::map([("path", "x".into())]);
        assert_eq!(Item::from_value(&v), Err(ItemError::Missing("mtime")));
        let v = Value::map([
            ("path", "x".into()),
            ("mtime", 1.into()),
            ("nlink", 2.into()),
        ]);
        assert_eq!(
            Item::from_value(&v),
            Err(ItemError::UnknownKey("nlink".into()))
        );
        let v = Value::map([
            ("path", "x".into()),
            ("mtime", 1.into()),
            ("chunks", Value::Array(vec![Value::Array(vec![1.into()])])),
        ]);
        assert_eq!(Item::from_value(&v), Err(ItemError::WrongType("chunks")));
        // An empty xattr value is nil on the wire, both ways.
        let v = Value::map([
            ("path", "x".into()),
            ("mtime", 1.into()),
            (
                "xattrs",
                Value::Map(vec![(Value::str("user.empty"), Value::Nil)]),
            ),
        ]);
        let item = Item::from_value(&v).expect("nil xattr value");
        assert_eq!(
            item.xattrs,
            Some(vec![(b"user.empty".to_vec(), Vec::new())])
        );
        assert_eq!(encode(&item.to_value()), encode(&v));
        // borg 1.0's bytes-encoded times.
        let v = Value::map([
            ("path", "x".into()),
            ("mtime", Value::Raw(vec![0x01, 0x02])),
        ]);
        assert_eq!(Item::from_value(&v).expect("bigint time").mtime, 0x0201);
    }
}
