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
