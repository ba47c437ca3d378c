//! The crypto hot path: chunk ids and envelopes for a 2 MiB chunk (borg's default target
//! chunk size), per key family. Run with `cargo bench --bench crypto_envelope`.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use rborg::crypto::key::{Key, KeyType};

fn bench(c: &mut Criterion) {
    let data: Vec<u8> = (0..2u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut g = c.benchmark_group("crypto");
    g.throughput(Throughput::Bytes(data.len() as u64));
    for key_type in [KeyType::Repokey, KeyType::RepokeyBlake2] {
        let key = Key::generate(key_type, &[0; 32]).unwrap();
        let name = key_type.mode_name();
        g.bench_function(format!("{name}/id_hash"), |b| {
            b.iter(|| key.id_hash(black_box(&data)))
        });
        g.bench_function(format!("{name}/encrypt"), |b| {
            b.iter(|| key.encrypt(7, black_box(&data)))
        });
        let mut buf = vec![0u8; 41 + data.len()];
        g.bench_function(format!("{name}/encrypt_in_place"), |b| {
            b.iter(|| key.encrypt_in_place(7, black_box(&mut buf)))
        });
        let env = key.encrypt(7, &data);
        g.bench_function(format!("{name}/decrypt"), |b| {
            b.iter(|| key.decrypt(None, black_box(&env)).unwrap())
        });
    }
    let plain = Key::plaintext();
    g.bench_function("none/id_hash", |b| {
        b.iter(|| plain.id_hash(black_box(&data)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
