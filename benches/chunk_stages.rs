//! Each hot-path stage alone: chunkers, id hashes, envelope sealing, compressors, on random,
//! text-like and zero data. Short sample settings keep `cargo bench` to a few minutes.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rborg::chunker::{BuzhashChunker, BuzhashParams, ChunkSource, FixedChunker};
use rborg::compress::{compress, CompressionSpec};
use rborg::pipeline::{bench_data, blake2b_256, hmac_sha256, ChunkSealer, ReferenceSealer};

/// Input size per data set. `cargo test --all-targets` runs benches once each in an
/// unoptimised build (without `--bench`); a small input keeps that quick.
fn size() -> usize {
    if std::env::args().any(|a| a == "--bench") {
        32 << 20
    } else {
        1 << 20
    }
}
const PIECE: usize = 2 << 20;

fn datasets() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("random", bench_data::random(size(), 1)),
        ("text", bench_data::text(size(), 1)),
        ("zero", bench_data::zeros(size())),
    ]
}

fn chunkers(c: &mut Criterion) {
    let mut g = c.benchmark_group("chunker");
    g.throughput(Throughput::Bytes(size() as u64));
    for (kind, data) in datasets() {
        g.bench_with_input(
            BenchmarkId::new("buzhash,19,23,21,4095", kind),
            &data,
            |b, d| {
                b.iter(|| {
                    let mut ch = BuzhashChunker::new(&d[..], 0, BuzhashParams::DEFAULT).unwrap();
                    let mut n = 0;
                    while let Some(c) = ch.read_chunk().unwrap() {
                        n += c.size;
                    }
                    n
                })
            },
        );
        g.bench_with_input(BenchmarkId::new("fixed,1048576", kind), &data, |b, d| {
            b.iter(|| {
                let mut ch = FixedChunker::new(&d[..], 1 << 20, 0).unwrap();
                let mut n = 0;
                while let Some(c) = ch.read_chunk().unwrap() {
                    n += c.size;
                }
                n
            })
        });
    }
    g.finish();
}

fn hashes_and_sealing(c: &mut Criterion) {
    let data = bench_data::random(size(), 2);
    let key = [7u8; 32];
    let repokey = ReferenceSealer::repokey([1; 32], [2; 32], [3; 32]);
    let blake = ReferenceSealer::repokey_blake2([1; 32], [2; 128], [3; 128]);
    let mut g = c.benchmark_group("crypto");
    g.throughput(Throughput::Bytes(size() as u64));
    g.bench_function("id hmac-sha256", |b| {
        b.iter(|| {
            data.chunks(PIECE)
                .map(|p| hmac_sha256(&key, p)[0])
                .sum::<u8>()
        })
    });
    g.bench_function("id blake2b-256", |b| {
        b.iter(|| {
            data.chunks(PIECE)
                .map(|p| blake2b_256(&key, p)[0])
                .sum::<u8>()
        })
    });
    g.bench_function("seal aes-256-ctr+hmac-sha256", |b| {
        b.iter(|| {
            data.chunks(PIECE)
                .enumerate()
                .map(|(i, p)| repokey.seal(p, i as u64 * 1_000_000).len())
                .sum::<usize>()
        })
    });
    g.bench_function("seal aes-256-ctr+blake2b", |b| {
        b.iter(|| {
            data.chunks(PIECE)
                .enumerate()
                .map(|(i, p)| blake.seal(p, i as u64 * 1_000_000).len())
                .sum::<usize>()
        })
    });
    g.finish();
}

fn compressors(c: &mut Criterion) {
    let mut g = c.benchmark_group("compress");
    g.throughput(Throughput::Bytes(size() as u64));
    for (kind, data) in datasets() {
        for spec in ["lz4", "zstd,1", "zstd,3", "zstd,10", "auto,zstd,3"] {
            let s: CompressionSpec = spec.parse().unwrap();
            g.bench_with_input(BenchmarkId::new(spec, kind), &data, |b, d| {
                b.iter(|| {
                    d.chunks(PIECE)
                        .map(|p| compress(&s, p).unwrap().len())
                        .sum::<usize>()
                })
            });
        }
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = stages;
    config = config();
    targets = chunkers, hashes_and_sealing, compressors
}
criterion_main!(stages);
