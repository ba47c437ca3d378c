//! Speed of the chunk index's flat table against the `std` `HashMap` it replaced (same keys,
//! same first-eight-bytes hash the old index used), at 1,000,000 chunks: insert, lookups that
//! hit, lookups that miss (what `create` does for every new chunk).
//!
//! `cargo run --release --example cache_tables`

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Instant;

use rborg::cache::ChunkIndex;

/// The hasher the old chunk index used: the id's first eight bytes.
#[derive(Default)]
struct FirstEight(u64);

impl Hasher for FirstEight {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut b = [0u8; 8];
        let n = bytes.len().min(8);
        b[..n].copy_from_slice(&bytes[..n]);
        self.0 ^= u64::from_le_bytes(b);
    }
}

fn id(n: u64) -> [u8; 32] {
    rborg::pipeline::bench_data::spread_id(n)
}

fn ns_per(n: u64, t: Instant) -> f64 {
    t.elapsed().as_nanos() as f64 / n as f64
}

fn main() {
    let n = 1_000_000u64;
    let ids: Vec<[u8; 32]> = (0..n).map(id).collect();
    let misses: Vec<[u8; 32]> = (n..2 * n).map(id).collect();
    for round in 0..3 {
        let t = Instant::now();
        let mut ix = ChunkIndex::new();
        for k in &ids {
            ix.add(k, 1000, 700).expect("add");
        }
        let add = ns_per(n, t);
        let t = Instant::now();
        let hits = ids.iter().filter(|k| ix.contains(k)).count();
        let hit = ns_per(n, t);
        let t = Instant::now();
        let found = misses.iter().filter(|k| ix.contains(k)).count();
        let miss = ns_per(n, t);
        assert_eq!((hits, found), (n as usize, 0));
        println!(
            "round {round} IdTable ChunkIndex: add {add:.0} ns, hit {hit:.0} ns, miss {miss:.0} ns"
        );

        let t = Instant::now();
        let mut map: HashMap<[u8; 32], (u32, u32, u32), BuildHasherDefault<FirstEight>> =
            HashMap::default();
        for k in &ids {
            map.entry(*k).or_insert((0, 1000, 700)).0 += 1;
        }
        let add = ns_per(n, t);
        let t = Instant::now();
        let hits = ids.iter().filter(|k| map.contains_key(*k)).count();
        let hit = ns_per(n, t);
        let t = Instant::now();
        let found = misses.iter().filter(|k| map.contains_key(*k)).count();
        let miss = ns_per(n, t);
        assert_eq!((hits, found), (n as usize, 0));
        println!(
            "round {round} std HashMap (old): add {add:.0} ns, hit {hit:.0} ns, miss {miss:.0} ns"
        );
    }
}
