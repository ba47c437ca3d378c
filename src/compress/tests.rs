use super::*;

fn c(spec: &str, data: &[u8]) -> Vec<u8> {
    compress(&spec.parse().unwrap(), data).unwrap()
}

fn hello() -> Vec<u8> {
    b"hello world".repeat(10)
}

/// Text-like data that compresses, but not trivially.
fn text(n: usize) -> Vec<u8> {
    let words = [
        "chunk ",
        "archive ",
        "borg ",
        "repository ",
        "segment ",
        "\n",
        "key ",
        "nonce ",
    ];
    let mut x: u32 = 12345;
    let mut out = Vec::with_capacity(n + 16);
    while out.len() < n {
        x = x.wrapping_mul(1103515245).wrapping_add(12345);
        out.extend_from_slice(words[(x >> 16) as usize % words.len()].as_bytes());
        out.extend_from_slice(format!("{} ", x % 1000).as_bytes());
    }
    out.truncate(n);
    out
}

fn random(n: usize) -> Vec<u8> {
    crate::pipeline::bench_data::random(n, 0x9e37_79b9_7f4a_7c15)
}

#[test]
fn vectors_from_borg() {
    // crypto.md §5.5, identical from borg 1.2.4 and 1.4.5.
    let d = hello();
    assert_eq!(c("none", &d), [&[0u8, 0][..], &d].concat());
    assert_eq!(
        hex::encode(c("lz4", &d)),
        "0100bf68656c6c6f20776f726c640b004b50776f726c64"
    );
    for spec in ["zstd,1", "zstd,3", "zstd,22", "zstd"] {
        assert_eq!(
            hex::encode(c(spec, &d)),
            "030028b52ffd206e9500005868656c6c6f20776f726c640100c069f102",
            "{spec}"
        );
    }
    assert_eq!(
        hex::encode(c("lzma,6", &d)),
        "0200fd377a585a000000ff12d9410200210116000000742fe5a3e0006d00115d00341949ee8de917893a33600971212e3800000000000001256e93297f6206729e7a010000000000595a"
    );
    // auto,zstd: zstd's 29 bytes are not < 0.99 × lz4's 23, so lz4 wins.
    assert_eq!(c("auto,zstd,3", &d), c("lz4", &d));
    // Incompressible input falls back to "none" for lz4; zlib never falls back.
    let r: Vec<u8> = (0..=255u8).collect();
    assert_eq!(c("lz4", &r), [&[0u8, 0][..], &r].concat());
    assert_eq!(&c("zlib,6", &r)[..2], &[0x78, 0x9c]);
}

#[test]
fn zlib_headers_and_detection() {
    let d = hello();
    for (level, h) in [
        (0, "7801"),
        (1, "7801"),
        (2, "785e"),
        (5, "785e"),
        (6, "789c"),
        (7, "78da"),
        (9, "78da"),
    ] {
        let out = c(&format!("zlib,{level}"), &d);
        assert_eq!(hex::encode(&out[..2]), h, "level {level}");
        assert_eq!(decompress(&out).unwrap(), d);
    }
    // borg's own zlib,6 bytes decompress here.
    let borg = hex::decode("789ccb48cdc9c95728cf2fca49c9a03d130072d92b99").unwrap();
    assert_eq!(decompress(&borg).unwrap(), d);
    let auto = c("auto,zlib,6", &d);
    assert_eq!(&auto[..2], &[0x78, 0x9c]);
}

#[test]
fn obfuscate_layouts() {
    let d = hello();
    let out = c("obfuscate,250,lz4", &d);
    assert_eq!(
        hex::encode(&out),
        "0400000000170100bf68656c6c6f20776f726c640b004b50776f726c6400"
    );
    for (n, extra) in [
        (1, 0),
        (9, 1),
        (23, 1),
        (100, 4),
        (1000, 24),
        (4097, 255),
        (65537, 2047),
        (1000000, 15808),
    ] {
        assert_eq!(padme_padding(n), extra, "{n}");
    }
    for spec in [
        "obfuscate,1,lz4",
        "obfuscate,6,zstd,3",
        "obfuscate,110,none",
    ] {
        let out = c(spec, &d);
        assert_eq!(&out[..2], &HEADER_OBFUSCATE);
        let n = u32::from_be_bytes(out[2..6].try_into().unwrap()) as usize;
        assert!(out[6 + n..].iter().all(|&b| b == 0));
        assert_eq!(decompress(&out).unwrap(), d);
    }
    // Nested: obfuscate around obfuscate, as `obfuscate,1,obfuscate,2,lz4` spells it.
    let out = c("obfuscate,1,obfuscate,2,lz4", &d);
    assert_eq!(decompress(&out).unwrap(), d);
}

#[test]
fn round_trips_in_every_mode() {
    let inputs = [
        Vec::new(),
        vec![7u8],
        hello(),
        text(300_000),
        random(200_000),
        vec![0u8; 1 << 20],
    ];
    let specs = [
        "none",
        "lz4",
        "zstd,1",
        "zstd,3",
        "zstd,19",
        "zlib,0",
        "zlib,6",
        "zlib,9",
        "lzma,0",
        "lzma,6",
        "auto,lz4",
        "auto,zstd",
        "auto,zlib,9",
        "auto,lzma,1",
        "obfuscate,3,auto,zstd",
        "obfuscate,250,zstd,3",
        "obfuscate,113,zlib,1",
    ];
    for spec in specs {
        for d in &inputs {
            let out = c(spec, d);
            assert_eq!(&decompress(&out).unwrap(), d, "{spec} on {} bytes", d.len());
        }
    }
}

#[test]
fn auto_picks_like_borg() {
    // Incompressible: lz4 falls back to none, and auto keeps that.
    let r = random(100_000);
    assert_eq!(&c("auto,zstd", &r)[..2], &HEADER_NONE);
    // Compressible text: zstd beats lz4 by more than 1%.
    let t = text(200_000);
    assert_eq!(&c("auto,zstd", &t)[..2], &HEADER_ZSTD);
    assert_eq!(&c("auto,lzma", &t)[..2], &HEADER_LZMA);
}

#[test]
fn corrupt_and_truncated_inputs_are_errors() {
    let t = text(100_000);
    assert!(matches!(
        decompress(b""),
        Err(DecompressError::UnknownHeader(_))
    ));
    assert!(matches!(
        decompress(b"\x01"),
        Err(DecompressError::UnknownHeader(_))
    ));
    assert!(matches!(
        decompress(b"\x05\x00abc"),
        Err(DecompressError::UnknownHeader(_))
    ));
    for spec in ["lz4", "zstd,3", "zlib,6", "lzma,6", "obfuscate,250,zstd"] {
        let good = c(spec, &t);
        // Obfuscation padding may be cut without harm; cut into the compressed part instead.
        let end = if spec.starts_with("obfuscate") {
            6 + u32::from_be_bytes(good[2..6].try_into().unwrap()) as usize
        } else {
            good.len()
        };
        for cut in [3, end / 2, end - 1] {
            let r = decompress(&good[..cut]);
            assert!(
                r.is_err() || r.unwrap() != t,
                "{spec} truncated to {cut} decoded fully"
            );
        }
        let mut bad = good.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0x55;
        bad[mid + 1] ^= 0xaa;
        if let Ok(out) = decompress(&bad) {
            // LZ4 has no checksum; it may decode to something else, but never to garbage
            // lengths beyond the limit.
            assert!(out.len() <= DECOMPRESS_LIMIT);
        }
    }
    // zstd without content size is refused, as borg refuses it.
    let mut enc = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
    std::io::Write::write_all(&mut enc, &t).unwrap();
    let frame = enc.finish().unwrap();
    let e = decompress(&[&HEADER_ZSTD[..], &frame].concat()).unwrap_err();
    assert_eq!(e, DecompressError::Zstd("original size unknown".into()));
    // An lz4 block that expands past the limit is refused without allocating it whole.
    // One literal, then a match of offset 1 whose length bytes add up to ~178 MB, then the
    // closing literals.
    let mut huge = vec![0x01, 0x00, 0x1f, 0x00, 0x01, 0x00];
    huge.resize(huge.len() + 700_000, 0xff);
    huge.extend_from_slice(&[0x00, 0x50, 1, 2, 3, 4, 5]);
    assert_eq!(decompress(&huge), Err(DecompressError::Lz4));
    // The same block with a length that fits decodes, through the growth loop.
    let mut big = vec![0x01, 0x00, 0x1f, 0x00, 0x01, 0x00];
    big.resize(big.len() + 60_000, 0xff);
    big.extend_from_slice(&[0x00, 0x50, 1, 2, 3, 4, 5]);
    let out = decompress(&big).unwrap();
    assert_eq!(out.len(), 1 + 19 + 255 * 60_000 + 5);
}

#[test]
fn reused_zstd_context_gives_the_bytes_of_a_fresh_one() {
    let inputs: Vec<Vec<u8>> = vec![
        b"a".repeat(100_000),
        (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect(),
        b"short text, short text, short text".to_vec(),
        vec![0; 3 << 20],
    ];
    // Alternate levels and sizes so the cached context is both reused and replaced.
    for level in [3, 3, 10, 1, 3] {
        for data in &inputs {
            let fresh = zstd::bulk::compress(data, level).unwrap();
            let ours = super::zstd(data, level).unwrap();
            assert_eq!(
                &ours[2..],
                &fresh[..],
                "level {level}, {} bytes",
                data.len()
            );
        }
    }
}
