//! Replays the `rpc_response` fuzz corpus through the fuzz body, so a crash the fuzzer once
//! found stays fixed.

use std::fs;
use std::path::Path;

#[test]
fn rpc_response_corpus_replays_cleanly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/rpc_response");
    let mut n = 0;
    for entry in fs::read_dir(&dir).expect("corpus directory") {
        let data = fs::read(entry.expect("corpus entry").path()).expect("corpus file");
        rborg::rpc::fuzz_response(&data);
        // Every prefix too: a server can die anywhere in a message.
        for cut in (0..data.len()).step_by(7) {
            rborg::rpc::fuzz_response(&data[..cut]);
        }
        n += 1;
    }
    assert!(n > 0, "the corpus in {} is empty", dir.display());
}

/// A cheap stand-in for the fuzzer in every `cargo test`: deterministic byte flips, inserts
/// and truncations of the corpus must never panic the response decoder.
#[test]
fn rpc_response_survives_mutations() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/rpc_response");
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for entry in fs::read_dir(&dir).expect("corpus directory") {
        let original = fs::read(entry.expect("corpus entry").path()).expect("corpus file");
        for _ in 0..2000 {
            let mut data = original.clone();
            for _ in 0..1 + next() % 4 {
                if data.is_empty() {
                    data.push(next() as u8);
                    continue;
                }
                let at = (next() as usize) % data.len();
                match next() % 4 {
                    0 => data[at] = next() as u8,
                    1 => data[at] ^= 1 << (next() % 8),
                    2 => data.insert(at, next() as u8),
                    _ => data.truncate(at),
                }
            }
            rborg::rpc::fuzz_response(&data);
        }
    }
}
