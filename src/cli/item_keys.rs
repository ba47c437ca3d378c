//! What borg's `ItemFormatter` (`helpers/parseformat.py`) knows beyond plain item fields: the
//! content checksum keys, the keys computed per item ("call keys"), and the key order of a
//! `--json-lines` object.

use rborg::archive::reader;
use rborg::archive::Item;

use super::format::{self, Field};

/// The checksum keys: Python's `hashlib.algorithms_guaranteed` without `shake_*`, plus
/// `xxh64` (`ItemFormatter.hash_algorithms`; the same set in borg 1.2 and 1.4).
pub const HASH_KEYS: [&str; 13] = [
    "blake2b", "blake2s", "md5", "sha1", "sha224", "sha256", "sha384", "sha3_224", "sha3_256",
    "sha3_384", "sha3_512", "sha512", "xxh64",
];

/// The computed keys other than the checksums (`ItemFormatter.call_keys`). Only the ones a
/// format names go into a `--json-lines` object.
const CALL_KEYS: [&str; 12] = [
    "size",
    "csize",
    "dsize",
    "dcsize",
    "num_chunks",
    "unique_chunks",
    "isomtime",
    "isoctime",
    "isoatime",
    "mtime",
    "ctime",
    "atime",
];

/// The keys every `--json-lines` object has, in borg's order (`ItemFormatter.get_item_data`
/// with `json_lines`).
const JSON_ALWAYS: [&str; 11] = [
    "type",
    "mode",
    "user",
    "group",
    "uid",
    "gid",
    "path",
    "healthy",
    "source",
    "linktarget",
    "flags",
];

/// The archive-level keys borg 1.4 puts first into a `--json-lines` object when the format
/// names them (borg 1.2 leaves them out).
const JSON_ARCHIVE_KEYS: [&str; 2] = ["archivename", "archiveid"];

/// The checksum keys `used` names, each once, in [`HASH_KEYS`] order.
pub fn hash_keys_used(used: &[String]) -> Vec<&'static str> {
    HASH_KEYS
        .iter()
        .copied()
        .filter(|h| used.iter().any(|u| u == h))
        .collect()
}

/// One running checksum.
enum Hasher {
    Digest(Box<dyn sha2::digest::DynDigest>),
    Xxh64(twox_hash::XxHash64),
}

/// Checksums of one file's content for several algorithms, read once
/// (`ItemFormatter.hash_item`: a file without chunks has the empty string).
pub fn hash_content(
    repository: &mut dyn rborg::repository::Repository,
    key: &rborg::crypto::Key,
    item: &Item,
    algorithms: &[&'static str],
) -> Result<Vec<(&'static str, String)>, reader::ReadError> {
    let Some(chunks) = &item.chunks else {
        return Ok(algorithms.iter().map(|a| (*a, String::new())).collect());
    };
    let mut hashers: Vec<Hasher> = algorithms.iter().map(|a| new_hasher(a)).collect();
    reader::read_content(repository, key, chunks, &mut |_, data| {
        for h in &mut hashers {
            match h {
                Hasher::Digest(d) => d.update(data),
                Hasher::Xxh64(x) => std::hash::Hasher::write(x, data),
            }
        }
        Ok(())
    })?;
    Ok(algorithms
        .iter()
        .zip(hashers)
        .map(|(a, h)| {
            let hex = match h {
                Hasher::Digest(mut d) => {
                    let mut out = vec![0u8; d.output_size()];
                    // The buffer has the digest's own size, so this cannot fail.
                    let _ = d.finalize_into_reset(&mut out);
                    hex::encode(out)
                }
                Hasher::Xxh64(x) => format!("{:016x}", std::hash::Hasher::finish(&x)),
            };
            (*a, hex)
        })
        .collect())
}

fn new_hasher(algorithm: &'static str) -> Hasher {
    let d: Box<dyn sha2::digest::DynDigest> = match algorithm {
        "xxh64" => return Hasher::Xxh64(twox_hash::XxHash64::with_seed(0)),
        "blake2b" => Box::new(<blake2::Blake2b512 as sha2::Digest>::new()),
        "blake2s" => Box::new(<blake2::Blake2s256 as sha2::Digest>::new()),
        "md5" => Box::new(<md5::Md5 as sha2::Digest>::new()),
        "sha1" => Box::new(<sha1::Sha1 as sha2::Digest>::new()),
        "sha224" => Box::new(<sha2::Sha224 as sha2::Digest>::new()),
        "sha256" => Box::new(<sha2::Sha256 as sha2::Digest>::new()),
        "sha384" => Box::new(<sha2::Sha384 as sha2::Digest>::new()),
        "sha3_224" => Box::new(<sha3::Sha3_224 as sha2::Digest>::new()),
        "sha3_256" => Box::new(<sha3::Sha3_256 as sha2::Digest>::new()),
        "sha3_384" => Box::new(<sha3::Sha3_384 as sha2::Digest>::new()),
        "sha3_512" => Box::new(<sha3::Sha3_512 as sha2::Digest>::new()),
        _ => Box::new(<sha2::Sha512 as sha2::Digest>::new()),
    };
    Hasher::Digest(d)
}

/// One `--json-lines` line in borg 1.4's key order and `json.dumps` spelling: the archive keys
/// the format names, the fixed keys, then the call keys the format names.
///
/// borg adds the call keys from a Python set, whose order changes from run to run (string
/// hashing is randomised per process); this takes them in the order the format names them,
/// which is one of the orders borg prints and the same every time.
pub fn json_line(fields: &[(String, Field)], used: &[String]) -> String {
    let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.json());
    let mut entries: Vec<(&str, serde_json::Value)> = Vec::new();
    let push = |k: &'static str, entries: &mut Vec<(&str, serde_json::Value)>| {
        if entries.iter().any(|(n, _)| *n == k) {
            return;
        }
        if let Some(v) = get(k) {
            entries.push((k, v));
        }
    };
    for k in JSON_ARCHIVE_KEYS {
        if used.iter().any(|u| u == k) {
            push(k, &mut entries);
        }
    }
    for k in JSON_ALWAYS {
        push(k, &mut entries);
    }
    for u in used {
        if let Some(k) = CALL_KEYS
            .iter()
            .chain(HASH_KEYS.iter())
            .find(|k| **k == u.as_str())
        {
            push(k, &mut entries);
        }
    }
    let mut line = format::python_json_object(&entries);
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_follow_borgs_key_order() {
        let fields: Vec<(String, Field)> = [
            ("type", Field::Text("-".into())),
            ("mode", Field::Text("-rw-r--r--".into())),
            ("user", Field::Text("root".into())),
            ("group", Field::Text("root".into())),
            ("uid", Field::Int(0)),
            ("gid", Field::Int(0)),
            ("path", Field::Text("t/d/l".into())),
            ("bpath", Field::Text("t/d/l".into())),
            ("source", Field::Text(String::new())),
            ("linktarget", Field::Text(String::new())),
            ("flags", Field::Int(0)),
            ("archivename", Field::Text("a".into())),
            ("size", Field::Int(6)),
            ("mtime", Field::Text("2026-11-26T08:30:53.159831".into())),
            ("healthy", Field::Bool(true)),
            ("sha1", Field::Text("ab".into())),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let used: Vec<String> = ["archivename", "mtime", "bpath", "sha1", "size", "NL"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            json_line(&fields, &used),
            "{\"archivename\": \"a\", \"type\": \"-\", \"mode\": \"-rw-r--r--\", \
             \"user\": \"root\", \"group\": \"root\", \"uid\": 0, \"gid\": 0, \
             \"path\": \"t/d/l\", \"healthy\": true, \"source\": \"\", \"linktarget\": \"\", \
             \"flags\": 0, \"mtime\": \"2026-11-26T08:30:53.159831\", \"sha1\": \"ab\", \
             \"size\": 6}\n"
        );
    }
}
