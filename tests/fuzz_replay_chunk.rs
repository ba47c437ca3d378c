//! Replays the `decompress` and `chunker` fuzz corpora through the fuzz bodies.

use std::fs;
use std::path::Path;

fn replay(target: &str, body: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in fs::read_dir(&dir).expect("corpus directory") {
        let path = entry.expect("corpus entry").path();
        let data = fs::read(&path).expect("corpus file");
        body(&data);
        n += 1;
    }
    assert!(n > 0, "the corpus in {} is empty", dir.display());
}

#[test]
fn decompress_corpus_replays_cleanly() {
    replay("decompress", rborg::compress::fuzz_decompress);
}

#[test]
fn chunker_corpus_replays_cleanly() {
    replay("chunker", rborg::chunker::fuzz_against_reference);
}
