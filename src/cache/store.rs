//! Crash-safe cache files: magic, payload, SHA-256 trailer; temp file, fsync, rename.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::CacheError;

fn io(path: &Path, source: std::io::Error) -> CacheError {
    CacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `magic ‖ payload ‖ sha256(magic ‖ payload)` to `path` atomically: a temporary file in
/// the same directory is written and synced, then renamed over `path`, then the directory is
/// synced.
pub fn write_atomically(path: &Path, magic: &[u8; 8], payload: &[u8]) -> Result<(), CacheError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        let mut h = Sha256::new();
        h.update(magic);
        h.update(payload);
        f.write_all(magic)?;
        f.write_all(payload)?;
        f.write_all(&h.finalize())?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e| io(path, e))
}

/// Reads a file written by [`write_atomically`] and returns its payload; `Ok(None)` when the
/// file does not exist.
pub fn read_checked(path: &Path, magic: &[u8; 8]) -> Result<Option<Vec<u8>>, CacheError> {
    let data = match fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path, e)),
    };
    let corrupt = |reason: &str| CacheError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    if data.len() < 8 + 32 {
        return Err(corrupt("truncated"));
    }
    if &data[..8] != magic {
        return Err(corrupt("unknown format"));
    }
    let (body, digest) = data.split_at(data.len() - 32);
    if Sha256::digest(body).as_slice() != digest {
        return Err(corrupt("checksum mismatch"));
    }
    Ok(Some(body[8..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage_detection() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("sub/f");
        assert!(read_checked(&p, b"RBTEST01")
            .expect("missing is fine")
            .is_none());
        write_atomically(&p, b"RBTEST01", b"payload").expect("write");
        assert_eq!(
            read_checked(&p, b"RBTEST01").expect("read").as_deref(),
            Some(&b"payload"[..])
        );
        assert!(matches!(
            read_checked(&p, b"RBTEST02"),
            Err(CacheError::Corrupt { .. })
        ));
        let mut data = fs::read(&p).expect("read");
        data[9] ^= 1;
        fs::write(&p, &data).expect("write");
        assert!(matches!(
            read_checked(&p, b"RBTEST01"),
            Err(CacheError::Corrupt { .. })
        ));
        fs::write(&p, b"short").expect("write");
        assert!(matches!(
            read_checked(&p, b"RBTEST01"),
            Err(CacheError::Corrupt { .. })
        ));
        // No temporary files are left behind.
        assert_eq!(
            fs::read_dir(dir.path().join("sub")).expect("dir").count(),
            1
        );
    }
}
