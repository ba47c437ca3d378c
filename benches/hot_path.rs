//! The whole hot path (buzhash → id → compress → seal) on one thread and on all cores, for
//! repokey and repokey-blake2 with `auto,zstd` and `lz4`, on text-like, random and zero data.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rborg::chunker::{BuzhashChunker, BuzhashParams};
use rborg::compress::CompressionSpec;
use rborg::pipeline::{
    bench_data, seal_stream, seal_stream_parallel, HotPath, ParallelOptions, ReferenceSealer,
};

/// Input size per data set. `cargo test --all-targets` runs benches once each in an
/// unoptimised build (without `--bench`); a small input keeps that quick.
fn size() -> usize {
    if std::env::args().any(|a| a == "--bench") {
        64 << 20
    } else {
        1 << 20
    }
}

fn hot_path(c: &mut Criterion) {
    let repokey = ReferenceSealer::repokey([1; 32], [2; 32], [3; 32]);
    let blake = ReferenceSealer::repokey_blake2([1; 32], [2; 128], [3; 128]);
    let text = bench_data::text(size(), 9);
    let random = bench_data::random(size(), 9);
    let zero = bench_data::zeros(size());
    let cases: Vec<(&str, &ReferenceSealer, &str, &str, &[u8])> = vec![
        ("repokey", &repokey, "auto,zstd,3", "text", &text),
        ("repokey", &repokey, "lz4", "text", &text),
        ("repokey-blake2", &blake, "auto,zstd,3", "text", &text),
        ("repokey-blake2", &blake, "lz4", "text", &text),
        ("repokey", &repokey, "auto,zstd,3", "random", &random),
        ("repokey", &repokey, "auto,zstd,3", "zero", &zero),
    ];
    let known = |_: &[u8; 32]| false;
    let mut g = c.benchmark_group("hot_path");
    g.throughput(Throughput::Bytes(size() as u64));
    for (key, sealer, spec, kind, data) in cases {
        let compression: CompressionSpec = spec.parse().unwrap();
        let hot = HotPath {
            sealer,
            compression: &compression,
            is_known: &known,
        };
        let id = format!("{key} {spec} {kind}");
        g.bench_with_input(BenchmarkId::new("1 thread", &id), &data, |b, d| {
            b.iter(|| {
                let mut ch = BuzhashChunker::new(*d, 0, BuzhashParams::DEFAULT).unwrap();
                let (mut iv, mut stored) = (0, 0usize);
                seal_stream(&hot, &mut ch, &mut iv, |c| {
                    stored += c.object.map_or(0, |o| o.data.len());
                    Ok(())
                })
                .unwrap();
                stored
            })
        });
        g.bench_with_input(BenchmarkId::new("all cores", &id), &data, |b, d| {
            b.iter(|| {
                let ch = BuzhashChunker::new(*d, 0, BuzhashParams::DEFAULT).unwrap();
                let (mut iv, mut stored) = (0, 0usize);
                seal_stream_parallel(&hot, ch, &mut iv, ParallelOptions::default(), |c| {
                    stored += c.object.map_or(0, |o| o.data.len());
                    Ok(())
                })
                .unwrap();
                stored
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(3));
    targets = hot_path
}
criterion_main!(benches);
