//! rborg's chunkers cut exactly where borg's do: against the stored vectors made by real borg
//! (`vendor-testdata/chunker/`, see the scripts there) and live against borg 1.2.4 and 1.4.5.

mod borg_python;

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use rborg::chunker::{
    Allocation, BuzhashChunker, BuzhashParams, Chunk, ChunkerParams, FixedChunker,
};
use sha2::{Digest, Sha256};

fn vendor() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("vendor-testdata/chunker")
}

/// crypto.md §4.7's stream: xorshift64 (13, 7, 17), top byte after each step.
fn prng(n: usize, state: u64) -> Vec<u8> {
    rborg::pipeline::bench_data::xorshift_stream(n, state)
}

fn buz(min_exp: u32, max_exp: u32, mask_bits: u32, window_size: usize) -> BuzhashParams {
    BuzhashParams {
        min_exp,
        max_exp,
        mask_bits,
        window_size,
    }
}

fn buzhash_chunks(data: &[u8], seed: i64, p: BuzhashParams) -> Vec<Chunk> {
    BuzhashChunker::new(data, seed, p)
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn sizes(chunks: &[Chunk]) -> Vec<usize> {
    chunks.iter().map(|c| c.size).collect()
}

#[test]
fn full_stream_size_vectors() {
    let data = prng(8 << 20, 0x0123_4567_89AB_CDEF);
    let mut n = 0;
    for entry in fs::read_dir(vendor()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let Some(rest) = name
            .strip_prefix("chunker_sizes_seed")
            .and_then(|r| r.strip_suffix(".txt"))
        else {
            continue;
        };
        let f: Vec<&str> = rest.split('_').collect();
        let seed: i64 = f[0].parse().unwrap();
        let p = buz(
            f[1].parse().unwrap(),
            f[2].parse().unwrap(),
            f[3].parse().unwrap(),
            f[4].parse().unwrap(),
        );
        let want: Vec<usize> = fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| l.parse().unwrap())
            .collect();
        assert_eq!(sizes(&buzhash_chunks(&data, seed, p)), want, "{name}");
        n += 1;
    }
    assert_eq!(n, 8, "expected the eight chunker_sizes_* vector files");
    // Fixed chunker with a header on the same stream (crypto.md §4.7).
    let fixed: Vec<usize> = FixedChunker::new(&data[..], 1_000_000, 12345)
        .unwrap()
        .map(|c| c.unwrap().size)
        .collect();
    let mut want = vec![12345];
    want.extend([1_000_000; 8]);
    want.push(376263);
    assert_eq!(fixed, want);
}

#[test]
fn small_vectors() {
    let text = fs::read_to_string(vendor().join("small_chunker_vectors.out")).unwrap();
    let data = prng(1 << 16, 0x0123_4567_89AB_CDEF);
    let mut n = 0;
    for line in text.lines() {
        // "first N PRNG bytes, seed=S (0x..), params=(a, b, c, d): K chunks: [x, y, ...]"
        let num = |s: &str| s.trim().parse::<i64>().unwrap();
        let len = num(line.split_whitespace().nth(1).unwrap()) as usize;
        let seed = num(line
            .split("seed=")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap());
        let params = line
            .split("params=(")
            .nth(1)
            .unwrap()
            .split(')')
            .next()
            .unwrap();
        let p: Vec<i64> = params.split(',').map(num).collect();
        let list = line.rsplit('[').next().unwrap().trim_end_matches(']');
        let want: Vec<usize> = list.split(',').map(|s| num(s) as usize).collect();
        let p = buz(p[0] as u32, p[1] as u32, p[2] as u32, p[3] as usize);
        assert_eq!(
            sizes(&buzhash_chunks(&data[..len], seed, p)),
            want,
            "{line}"
        );
        n += 1;
    }
    assert_eq!(n, 4);
}

/// Mirrors `make_borg_chunks.py`.
fn borg_inputs() -> Vec<(&'static str, Vec<u8>)> {
    let base = prng(3 << 20, 0x0123_4567_89AB_CDEF);
    let mut mixed = base[..700000].to_vec();
    mixed.extend(vec![0u8; 2 << 20]);
    mixed.extend(&base[700000..1500000]);
    mixed.extend(vec![0u8; 5000]);
    let tail = base[..100 + 4095 + 1024].to_vec();
    vec![("prng3m", base), ("zeros_mixed", mixed), ("tail", tail)]
}

fn describe(chunks: &[Chunk]) -> Vec<String> {
    chunks
        .iter()
        .map(|c| {
            let alloc = match c.allocation {
                Allocation::Data => 0,
                Allocation::Alloc => 1,
                Allocation::Hole => 2,
            };
            let data = c.data.clone().unwrap_or_else(|| vec![0; c.size]);
            let h = hex::encode(Sha256::digest(&data));
            format!("{} {} {}", c.size, alloc, &h[..16])
        })
        .collect()
}

fn sparse_file(dir: &Path) -> PathBuf {
    let path = dir.join("sparse.bin");
    let mut f = fs::File::create(&path).unwrap();
    f.set_len(6 << 20).unwrap();
    f.write_all(&prng(4096, 0x0123_4567_89AB_CDEF)).unwrap();
    f.seek(SeekFrom::Start(3 << 20)).unwrap();
    f.write_all(&prng(8192, 42)).unwrap();
    f.seek(SeekFrom::Start((5 << 20) + 100)).unwrap();
    f.write_all(&prng(3000, 43)).unwrap();
    path
}

#[test]
fn chunks_cut_by_real_borg() {
    let text = fs::read_to_string(vendor().join("borg_chunks.txt")).unwrap();
    let inputs = borg_inputs();
    let dir = tempfile::tempdir().unwrap();
    let sparse = sparse_file(dir.path());
    let mut lines = text.lines();
    let mut cases = 0;
    while let Some(header) = lines.next() {
        let want: Vec<String> = lines
            .by_ref()
            .take_while(|l| *l != "end")
            .map(str::to_string)
            .collect();
        let field = |k: &str| {
            header
                .split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .unwrap_or_else(|| panic!("{k} missing in {header}"))
        };
        let kind = header.split_whitespace().next().unwrap();
        let got = match kind {
            "buzhash" | "fixed" => {
                let iname = header.split_whitespace().nth(1).unwrap();
                let data = &inputs.iter().find(|(n, _)| *n == iname).unwrap().1;
                if kind == "buzhash" {
                    let p: Vec<u32> = field("params=")
                        .split(',')
                        .map(|s| s.parse().unwrap())
                        .collect();
                    let len: usize = field("len=").parse().unwrap();
                    let seed: i64 = field("seed=").parse().unwrap();
                    buzhash_chunks(&data[..len], seed, buz(p[0], p[1], p[2], p[3] as usize))
                } else {
                    let block = field("block=").parse().unwrap();
                    let header_size = field("header=").parse().unwrap();
                    FixedChunker::new(&data[..], block, header_size)
                        .unwrap()
                        .map(Result::unwrap)
                        .collect()
                }
            }
            "sparsefile" => {
                let block = field("block=").parse().unwrap();
                let header_size = field("header=").parse().unwrap();
                let f = fs::File::open(&sparse).unwrap();
                let chunker = if field("sparse=") == "1" {
                    FixedChunker::sparse(f, block, header_size).unwrap()
                } else {
                    FixedChunker::new(f, block, header_size).unwrap()
                };
                chunker.map(Result::unwrap).collect()
            }
            _ => panic!("unknown case {header}"),
        };
        assert_eq!(describe(&got), want, "{header}");
        cases += 1;
    }
    assert_eq!(cases, 48);
}

/// Fresh data, a fresh seed and several parameter sets, chunked by both borgs right now.
#[test]
fn live_against_both_borgs() {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let seed = (nanos as u32) as i32 as i64;
    // Random bytes with runs of text and of zeros, so cuts, zero chunks and tails all occur.
    let mut data = prng(1_500_000, nanos | 1);
    for (i, b) in data[200_000..400_000].iter_mut().enumerate() {
        *b = b"borg chunk "[i % 11];
    }
    data[600_000..800_000].fill(0);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("input.bin");
    fs::write(&path, &data).unwrap();
    let specs = [
        "10,16,12,4095",
        "6,10,8,31",
        "6,8,7,31",
        "buzhash,12,14,13,1023",
        "fixed,4096,100",
    ];
    let code = r#"
import io, sys
from borg.chunker import Chunker, ChunkerFixed
from borg.helpers import ChunkerParams
data = open(sys.argv[1], 'rb').read()
seed = int(sys.argv[2])
for spec in sys.argv[3:]:
    p = ChunkerParams(spec)
    ch = Chunker(seed, *p[1:]) if p[0] == 'buzhash' else ChunkerFixed(*p[1:])
    print(spec, ' '.join(f"{c.meta['size']}:{c.meta['allocation']}" for c in ch.chunkify(io.BytesIO(data))))
"#;
    let mut ours = String::new();
    for spec in specs {
        let params: ChunkerParams = spec.parse().unwrap();
        let chunks: Vec<Chunk> = rborg::chunker::AnyChunker::new(&data[..], params, seed)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let list: Vec<String> = chunks
            .iter()
            .map(|c| {
                let a = match c.allocation {
                    Allocation::Data => 0,
                    Allocation::Alloc => 1,
                    Allocation::Hole => 2,
                };
                format!("{}:{a}", c.size)
            })
            .collect();
        ours.push_str(&format!("{spec} {}\n", list.join(" ")));
    }
    let mut args = vec![path.to_str().unwrap().to_string(), seed.to_string()];
    args.extend(specs.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    for (label, python) in borg_python::peers() {
        let theirs = String::from_utf8(borg_python::run_python(&python, code, &args, b"")).unwrap();
        assert_eq!(ours, theirs, "{label}, seed {seed}");
    }
}
