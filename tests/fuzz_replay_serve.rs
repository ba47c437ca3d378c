//! Replays the `serve_request` and `segment_parse` fuzz corpora through their fuzz bodies.

use std::fs;
use std::path::Path;

fn replay(target: &str, body: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in fs::read_dir(&dir).expect("corpus directory") {
        let data = fs::read(entry.expect("corpus entry").path()).expect("corpus file");
        body(&data);
        // Every prefix, too: truncated input is the common case on a broken connection.
        for cut in 0..data.len() {
            body(&data[..cut]);
        }
        n += 1;
    }
    assert!(n > 0, "the corpus in {} is empty", dir.display());
}

#[test]
fn serve_request_corpus_replays_cleanly() {
    replay("serve_request", rborg::serve::fuzz_serve);
}

#[test]
fn segment_parse_corpus_replays_cleanly() {
    replay(
        "segment_parse",
        rborg::repository::local::segment::fuzz_segment,
    );
}
