//! Replays the `key_blob` and `envelope_decrypt` fuzz corpora through the fuzz bodies.

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
        n += 1;
    }
    assert!(n > 0, "the corpus in {} is empty", dir.display());
}

#[test]
fn key_blob_corpus_replays_cleanly() {
    replay("key_blob", rborg::crypto::keyblob::fuzz_key_blob);
}

#[test]
fn envelope_decrypt_corpus_replays_cleanly() {
    replay("envelope_decrypt", rborg::crypto::envelope::fuzz_decrypt);
}

/// The seeds reach the interesting paths: the well-formed key blobs open.
#[test]
fn key_blob_seeds_open() {
    use rborg::crypto::keyblob::decrypt_key;
    use rborg::crypto::Passphrase;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/key_blob");
    for (name, opens) in [
        ("hmac_key", true),
        ("blake2_key", true),
        ("wrong_pass", false),
    ] {
        let text = fs::read_to_string(dir.join(name)).expect("seed");
        let got = decrypt_key(&text, &Passphrase::new("fuzz")).expect("seed parses");
        assert_eq!(got.is_some(), opens, "{name}");
    }
}
