//! rborg's compression interoperates with borg's both ways: borg 1.2.4 and 1.4.5 decompress
//! everything rborg writes, rborg decompresses everything they write, and where the output is
//! deterministic it is byte-identical (same liblz4, libzstd, zlib and liblzma).

mod borg_python;

use std::fs;
use std::path::Path;

use rborg::compress::{compress, decompress, CompressionSpec};
use rborg::pipeline::bench_data;
use sha2::{Digest, Sha256};

const SPECS: [&str; 17] = [
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
    "auto,zstd,3",
    "auto,zlib,6",
    "auto,lzma,6",
    "obfuscate,1,lz4",
    "obfuscate,110,zstd,3",
    "obfuscate,250,auto,zstd,3",
];

/// Obfuscation with random padding cannot be byte-compared.
fn deterministic(spec: &str) -> bool {
    !(spec.starts_with("obfuscate,1,") || spec.starts_with("obfuscate,110,"))
}

fn inputs() -> Vec<(&'static str, Vec<u8>)> {
    let mut mixed = bench_data::text(300_000, 5);
    mixed.extend(bench_data::random(200_000, 6));
    vec![
        ("empty", Vec::new()),
        ("hello", b"hello world".repeat(10)),
        ("text", bench_data::text(1 << 20, 3)),
        ("random", bench_data::random(256 << 10, 4)),
        ("zeros", vec![0; 1 << 20]),
        ("mixed", mixed),
    ]
}

#[test]
fn stored_vectors_from_borg() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("vendor-testdata/compress");
    let hello = b"hello world".repeat(10);
    for file in ["compress_vectors.out", "compress_vectors_145.out"] {
        let text = fs::read_to_string(dir.join(file)).unwrap();
        let mut n = 0;
        for line in text.lines().filter(|l| l.contains(" hex=")) {
            let spec = line.split_whitespace().next().unwrap();
            let want = hex::decode(line.rsplit("hex=").next().unwrap()).unwrap();
            let spec: CompressionSpec = spec.parse().unwrap();
            assert_eq!(compress(&spec, &hello).unwrap(), want, "{file}: {line}");
            assert_eq!(decompress(&want).unwrap(), hello, "{file}: {line}");
            n += 1;
        }
        assert_eq!(n, 16, "{file}");
        for line in text.lines().filter(|l| l.starts_with("obfuscate,")) {
            // Random padding: the inner blob is deterministic, and borg's layout decompresses.
            let spec = line.split(':').next().unwrap();
            let inner = line
                .split("inner=")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap();
            let inner = hex::decode(inner).unwrap();
            let ours = compress(&spec.parse().unwrap(), &hello).unwrap();
            assert_eq!(&ours[6..6 + inner.len()], &inner[..], "{line}");
            let mut theirs = vec![4, 0];
            theirs.extend((inner.len() as u32).to_be_bytes());
            theirs.extend(&inner);
            theirs.extend([0; 17]);
            assert_eq!(decompress(&theirs).unwrap(), hello);
        }
    }
}

/// Mirrors `vendor-testdata/compress/make_borg_blobs.py`.
fn blob_input(name: &str) -> Vec<u8> {
    match name {
        "hello" => b"hello world".repeat(10),
        "text" => (0..300)
            .flat_map(|i| format!("chunk {i} archive {}\n", i * 7 % 13).into_bytes())
            .collect(),
        "random" => bench_data::xorshift_stream(3000, 0x0123_4567_89AB_CDEF),
        "zeros" => vec![0; 5000],
        "empty" => Vec::new(),
        _ => panic!("unknown input {name}"),
    }
}

#[test]
fn stored_blobs_from_borg() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("vendor-testdata/compress/borg_blobs.txt");
    let text = fs::read_to_string(path).unwrap();
    let mut n = 0;
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let (spec, input, blob) = (f[0], blob_input(f[1]), hex::decode(f[2]).unwrap());
        assert_eq!(decompress(&blob).unwrap(), input, "{spec} {}", f[1]);
        let random_padding = spec.starts_with("obfuscate,1,")
            || spec.starts_with("obfuscate,113,")
            || spec.starts_with("obfuscate,3,");
        if !random_padding {
            let ours = compress(&spec.parse().unwrap(), &input).unwrap();
            assert!(
                ours == blob,
                "{spec} {}: rborg's bytes differ from borg's",
                f[1]
            );
        }
        n += 1;
    }
    assert_eq!(n, 95);
}

const BORG_SIDE: &str = r#"
import hashlib, os, sys
from borg.compress import CompressionSpec, Compressor
d, tag = sys.argv[1], sys.argv[2]
specs = sys.argv[3:]
names = sorted(f[3:-4] for f in os.listdir(d) if f.startswith('in_'))
for name in names:
    data = open(os.path.join(d, f'in_{name}.bin'), 'rb').read()
    for i, spec in enumerate(specs):
        blob = open(os.path.join(d, f'r_{name}_{i}.bin'), 'rb').read()
        out = Compressor('lz4').decompress(blob)
        print(name, i, hashlib.sha256(bytes(out)).hexdigest())
        try:
            c = CompressionSpec(spec).compressor
        except Exception as e:
            print(name, i, 'unsupported', type(e).__name__)
            continue
        open(os.path.join(d, f'b{tag}_{name}_{i}.bin'), 'wb').write(c.compress(data))
"#;

#[test]
fn both_ways_with_both_borgs() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = inputs();
    let mut expect = String::new();
    for (name, data) in &inputs {
        fs::write(dir.path().join(format!("in_{name}.bin")), data).unwrap();
    }
    let mut sorted: Vec<_> = inputs.iter().collect();
    sorted.sort_by_key(|(n, _)| *n);
    for (name, data) in &sorted {
        let digest = hex::encode(Sha256::digest(data));
        for (i, spec) in SPECS.iter().enumerate() {
            let ours = compress(&spec.parse().unwrap(), data).unwrap();
            assert_eq!(&decompress(&ours).unwrap(), data, "own round trip {spec}");
            fs::write(dir.path().join(format!("r_{name}_{i}.bin")), ours).unwrap();
            expect.push_str(&format!("{name} {i} {digest}\n"));
        }
    }
    let d = dir.path().to_str().unwrap();
    for (tag, (label, python)) in borg_python::peers().into_iter().enumerate() {
        let tag = tag.to_string();
        let mut args = vec![d, &tag];
        args.extend(SPECS);
        let out =
            String::from_utf8(borg_python::run_python(&python, BORG_SIDE, &args, b"")).unwrap();
        // borg decompressed each of our blobs to the original.
        let decompressed: String = out
            .lines()
            .filter(|l| !l.contains("unsupported"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(decompressed, expect, "{label} decompressing rborg's output");
        // Only Padmé (250) may be unknown, and only to 1.2.
        for l in out.lines().filter(|l| l.contains("unsupported")) {
            let i: usize = l.split_whitespace().nth(1).unwrap().parse().unwrap();
            assert!(
                label.contains("1.2") && SPECS[i].starts_with("obfuscate,250"),
                "{label}: {l}"
            );
        }
        // We decompress what borg wrote, and deterministic modes are byte-identical.
        let mut compared = 0;
        for (name, data) in &inputs {
            for (i, spec) in SPECS.iter().enumerate() {
                let path = dir.path().join(format!("b{tag}_{name}_{i}.bin"));
                let Ok(theirs) = fs::read(&path) else {
                    continue;
                };
                assert_eq!(&decompress(&theirs).unwrap(), data, "{label} {spec} {name}");
                if deterministic(spec) {
                    let ours = fs::read(dir.path().join(format!("r_{name}_{i}.bin"))).unwrap();
                    assert!(ours == theirs, "{label} {spec} {name}: bytes differ");
                }
                compared += 1;
            }
        }
        assert!(
            compared >= inputs.len() * (SPECS.len() - 1),
            "{label}: {compared}"
        );
    }
}
