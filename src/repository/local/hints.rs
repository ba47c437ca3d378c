//! The `hints.N` file: per-segment bookkeeping that lets compaction find sparse segments
//! without reading them (`Repository.write_index`, `prepare_txn`).
//!
//! It is a msgpack map `{version: 2, segments: {seg: live PUTs}, compact: {seg: freeable
//! bytes}, storage_quota_use: int, shadow_index: {id: [seg, ...]}}`. Version 1 (borg 1.0) has
//! `compact` as a plain list of segments whose byte counts must be rebuilt.

use super::ordered::OrderedMap;

use crate::msgpack::{self, Value};
use crate::repository::ObjectId;

/// Why a hints file was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HintsError {
    /// Not msgpack.
    #[error("hints file is not valid msgpack: {0}")]
    Decode(String),
    /// Not the expected shape.
    #[error("hints file is malformed: {0}")]
    Malformed(&'static str),
    /// Neither version 1 nor 2.
    #[error("Unknown hints file version: {0}")]
    UnknownVersion(i128),
}

/// The content of a hints file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hints {
    /// Live PUT count per segment.
    pub segments: OrderedMap<u64, i64>,
    /// Freeable bytes per segment.
    pub compact: OrderedMap<u64, u64>,
    /// Bytes counted against the storage quota.
    pub storage_quota_use: u64,
    /// Segments still holding older PUTs of deleted or overwritten ids.
    pub shadow_index: OrderedMap<ObjectId, Vec<u64>>,
    /// For version 1 hints: the segments whose freeable bytes must be rebuilt by scanning.
    pub v1_compact: Option<Vec<u64>>,
}

fn int_map(v: &Value, what: &'static str) -> Result<Vec<(i128, i128)>, HintsError> {
    let pairs = v.as_map().ok_or(HintsError::Malformed(what))?;
    pairs
        .iter()
        .map(|(k, v)| match (k, v) {
            (Value::Int(k), Value::Int(v)) => Ok((*k, *v)),
            _ => Err(HintsError::Malformed(what)),
        })
        .collect()
}

fn seg(i: i128, what: &'static str) -> Result<u64, HintsError> {
    u64::try_from(i).map_err(|_| HintsError::Malformed(what))
}

impl Hints {
    /// Parses a hints file.
    pub fn decode(bytes: &[u8]) -> Result<Hints, HintsError> {
        let v = msgpack::decode(bytes).map_err(|e| HintsError::Decode(e.to_string()))?;
        let version = match v.get("version") {
            Some(Value::Int(n)) => *n,
            _ => return Err(HintsError::Malformed("no version")),
        };
        let mut hints = Hints::default();
        let segments = v
            .get("segments")
            .ok_or(HintsError::Malformed("no segments"))?;
        for (k, n) in int_map(segments, "segments")? {
            let n = i64::try_from(n).map_err(|_| HintsError::Malformed("segments"))?;
            hints.segments.insert(seg(k, "segments")?, n);
        }
        match version {
            1 => {
                let list = v
                    .get("compact")
                    .and_then(Value::as_array)
                    .ok_or(HintsError::Malformed("compact"))?;
                let mut segs = Vec::new();
                for s in list {
                    match s {
                        Value::Int(n) => segs.push(seg(*n, "compact")?),
                        _ => return Err(HintsError::Malformed("compact")),
                    }
                }
                hints.v1_compact = Some(segs);
            }
            2 => {
                let compact = v
                    .get("compact")
                    .ok_or(HintsError::Malformed("no compact"))?;
                for (k, n) in int_map(compact, "compact")? {
                    hints.compact.insert(seg(k, "compact")?, seg(n, "compact")?);
                }
                hints.storage_quota_use = match v.get("storage_quota_use") {
                    None => 0,
                    Some(Value::Int(n)) => seg(*n, "storage_quota_use")?,
                    Some(_) => return Err(HintsError::Malformed("storage_quota_use")),
                };
                if let Some(shadow) = v.get("shadow_index") {
                    let pairs = shadow
                        .as_map()
                        .ok_or(HintsError::Malformed("shadow_index"))?;
                    for (k, list) in pairs {
                        let key: ObjectId = k
                            .as_bytes()
                            .and_then(|b| b.try_into().ok())
                            .ok_or(HintsError::Malformed("shadow_index key"))?;
                        let list = list
                            .as_array()
                            .ok_or(HintsError::Malformed("shadow_index list"))?;
                        let mut segs = Vec::with_capacity(list.len());
                        for s in list {
                            match s {
                                Value::Int(n) => segs.push(seg(*n, "shadow_index")?),
                                _ => return Err(HintsError::Malformed("shadow_index")),
                            }
                        }
                        hints.shadow_index.insert(key, segs);
                    }
                }
            }
            other => return Err(HintsError::UnknownVersion(other)),
        }
        Ok(hints)
    }

    /// The version 2 file bytes.
    pub fn encode(&self) -> Vec<u8> {
        let segments = Value::Map(
            self.segments
                .iter()
                .map(|(s, n)| (Value::Int(s as i128), Value::Int(*n as i128)))
                .collect(),
        );
        let compact = Value::Map(
            self.compact
                .iter()
                .map(|(s, n)| (Value::Int(s as i128), Value::Int(*n as i128)))
                .collect(),
        );
        let shadow_index = Value::Map(
            self.shadow_index
                .iter()
                .map(|(k, segs)| {
                    (
                        Value::bytes(&k),
                        Value::Array(segs.iter().map(|s| Value::Int(*s as i128)).collect()),
                    )
                })
                .collect(),
        );
        encode_in_order([
            ("version", Value::Int(2)),
            ("segments", segments),
            ("compact", compact),
            (
                "storage_quota_use",
                Value::Int(self.storage_quota_use as i128),
            ),
            ("shadow_index", shadow_index),
        ])
    }
}

/// Encodes a map with text keys, keeping the order of `pairs` and of every nested map. Borg
/// packs these files from plain dicts (not `StableDict`), so keys appear in insertion order.
pub fn encode_in_order<const N: usize>(pairs: [(&str, Value); N]) -> Vec<u8> {
    let map = Value::Map(pairs.into_iter().map(|(k, v)| (Value::str(k), v)).collect());
    let mut out = Vec::new();
    msgpack::encode_unsorted_into(&map, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_hints_roundtrip() {
        let mut h = Hints::default();
        h.segments.insert(0, 1);
        h.segments.insert(1, 0);
        h.compact.insert(1, 9);
        h.storage_quota_use = 522;
        let bytes = h.encode();
        assert_eq!(&bytes[..9], b"\x85\xa7version");
        // 70 bytes, like the hints.1 of a fresh `borg init` with a 481-byte manifest.
        assert_eq!(bytes.len(), 70);
        assert_eq!(Hints::decode(&bytes).unwrap(), h);
    }

    #[test]
    fn shadow_index_keeps_insertion_order() {
        let mut h = Hints::default();
        h.shadow_index.insert([9; 32], vec![]);
        h.shadow_index.insert([1; 32], vec![70000]);
        let bytes = h.encode();
        let at9 = bytes.windows(32).position(|w| w == [9; 32]).unwrap();
        let at1 = bytes.windows(32).position(|w| w == [1; 32]).unwrap();
        assert!(at9 < at1);
        assert_eq!(Hints::decode(&bytes).unwrap(), h);
    }

    #[test]
    fn shadow_index_roundtrips_and_bad_versions_fail() {
        let mut h = Hints::default();
        h.shadow_index.insert([3; 32], vec![4, 5]);
        assert_eq!(Hints::decode(&h.encode()).unwrap(), h);
        let v3 = msgpack::encode(&Value::map([
            ("version", Value::Int(3)),
            ("segments", Value::Map(vec![])),
        ]));
        assert_eq!(Hints::decode(&v3), Err(HintsError::UnknownVersion(3)));
    }
}
