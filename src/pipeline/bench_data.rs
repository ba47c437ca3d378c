//! Deterministic inputs for the benchmarks, the stage-speed example and tests: random
//! (incompressible), text-like (compresses roughly 3-4× with zstd) and zero data.

/// `n` bytes from xorshift64: incompressible.
pub fn random(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

/// `n` bytes of log-file-like text: words from a small vocabulary, numbers, line breaks.
pub fn text(n: usize, seed: u64) -> Vec<u8> {
    const WORDS: [&str; 32] = [
        "the",
        "chunk",
        "archive",
        "repository",
        "segment",
        "backup",
        "borg",
        "key",
        "nonce",
        "file",
        "directory",
        "error",
        "warning",
        "info",
        "debug",
        "user",
        "root",
        "home",
        "var",
        "log",
        "data",
        "index",
        "cache",
        "manifest",
        "item",
        "size",
        "time",
        "create",
        "extract",
        "prune",
        "check",
        "compact",
    ];
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(n + 64);
    let mut num = itoa_buf();
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let r = x;
        out.extend_from_slice(WORDS[(r & 31) as usize].as_bytes());
        out.push(b' ');
        if r & 0x300 == 0 {
            out.extend_from_slice(fmt_u32(&mut num, (r >> 20) as u32 % 100_000));
            out.push(b' ');
        }
        if r & 0xf000 == 0 {
            out.push(b'\n');
        }
    }
    out.truncate(n);
    out
}

/// The chunker vector stream of crypto.md §4.7: xorshift64 (13, 7, 17) from `state`, the top
/// byte after each step. With state `0x0123456789ABCDEF` it is the stream borg's vectors use.
pub fn xorshift_stream(n: usize, mut state: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 56) as u8
        })
        .collect()
}

/// `n` zero bytes.
pub fn zeros(n: usize) -> Vec<u8> {
    vec![0; n]
}

fn itoa_buf() -> [u8; 10] {
    [0; 10]
}

fn fmt_u32(buf: &mut [u8; 10], mut v: u32) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            return &buf[i..];
        }
    }
}

/// A 32-byte id from a counter, spread uniformly as real chunk ids are (splitmix64 steps), for
/// filling and probing id tables.
pub fn spread_id(n: u64) -> [u8; 32] {
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let mut out = [0u8; 32];
    for c in out.chunks_mut(8) {
        x ^= x >> 31;
        x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x ^= x >> 29;
        c.copy_from_slice(&x.to_le_bytes());
    }
    out
}
