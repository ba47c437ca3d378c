use super::*;

fn hx(s: &str) -> Vec<u8> {
    hex::decode(s.replace(' ', "")).expect("test hex")
}

#[test]
fn negotiate_request_matches_borg_client_bytes() {
    // [1, 1, "negotiate", [{"client_version": [1, 2, 4, -1]}]] as sent by borg 1.2.4
    // (spec/protocol.md §2.3).
    let v = Value::Array(vec![
        1.into(),
        1.into(),
        "negotiate".into(),
        Value::Array(vec![Value::map([(
            "client_version",
            Value::Array(vec![1.into(), 2.into(), 4.into(), (-1).into()]),
        )])]),
    ]);
    let want = [
        &hx("94 01 01 a9")[..],
        b"negotiate",
        &hx("91 81 ae"),
        b"client_version",
        &hx("94 01 02 04 ff"),
    ]
    .concat();
    assert_eq!(encode(&v), want);
    assert_eq!(decode(&want).unwrap(), v);
}

#[test]
fn raw_lengths_never_use_str8_or_bin() {
    assert_eq!(encode(&Value::Raw(vec![7; 31]))[0], 0xbf);
    let id = encode(&Value::Raw(vec![0; 32]));
    assert_eq!(&id[..3], &[0xda, 0x00, 0x20]);
    assert_eq!(id.len(), 35);
    assert_eq!(&encode(&Value::Raw(vec![0; 64]))[..3], &[0xda, 0x00, 0x40]);
    assert_eq!(
        &encode(&Value::Raw(vec![0; 65535]))[..3],
        &[0xda, 0xff, 0xff]
    );
    assert_eq!(
        &encode(&Value::Raw(vec![0; 65536]))[..5],
        &[0xdb, 0x00, 0x01, 0x00, 0x00]
    );
}

#[test]
fn integers_take_their_smallest_form() {
    let cases: &[(i128, &str)] = &[
        (0, "00"),
        (127, "7f"),
        (128, "cc80"),
        (255, "ccff"),
        (256, "cd0100"),
        (16877, "cd41ed"),
        (65536, "ce00010000"),
        (4294967296, "cf0000000100000000"),
        (u64::MAX as i128, "cfffffffffffffffff"),
        (-1, "ff"),
        (-32, "e0"),
        (-33, "d0df"),
        (-128, "d080"),
        (-129, "d1ff7f"),
        (-32769, "d2ffff7fff"),
        (-2147483649, "d3ffffffff7fffffff"),
        (i64::MIN as i128, "d38000000000000000"),
    ];
    for (i, h) in cases {
        let enc = encode(&Value::Int(*i));
        assert_eq!(hex::encode(&enc), *h, "encoding {i}");
        assert_eq!(decode(&enc).unwrap(), Value::Int(*i));
    }
}

#[test]
fn map_keys_are_sorted_bytewise() {
    let v = Value::map([
        ("time", 1.into()),
        ("id", 2.into()),
        ("archives", Value::Nil),
    ]);
    let want = [
        &hx("83 a8")[..],
        b"archives",
        &hx("c0 a2"),
        b"id",
        &hx("02 a4"),
        b"time",
        &hx("01"),
    ]
    .concat();
    assert_eq!(encode(&v), want);
}

#[test]
fn headers_for_large_arrays_and_maps() {
    let a = Value::Array(vec![Value::Nil; 23]);
    assert_eq!(&encode(&a)[..3], &[0xdc, 0x00, 0x17]);
    let m = Value::Map((0..17).map(|i| (Value::Int(i), Value::Nil)).collect());
    assert_eq!(&encode(&m)[..3], &[0xde, 0x00, 0x11]);
    assert_eq!(decode(&encode(&m)).unwrap(), m);
}

#[test]
fn floats_bools_nil() {
    assert_eq!(encode(&Value::Float(1.5)), hx("cb 3ff8000000000000"));
    assert_eq!(encode(&Value::Bool(true)), hx("c3"));
    assert_eq!(encode(&Value::Bool(false)), hx("c2"));
    assert_eq!(encode(&Value::Nil), hx("c0"));
    assert_eq!(decode(&hx("ca 3fc00000")).unwrap(), Value::Float(1.5));
}

#[test]
fn reads_every_string_and_bin_form_as_raw() {
    for h in [
        "a3616263",
        "d903616263",
        "da0003616263",
        "db00000003616263",
        "c403616263",
        "c50003616263",
        "c600000003616263",
    ] {
        assert_eq!(decode(&hx(h)).unwrap(), Value::str("abc"), "{h}");
    }
}

#[test]
fn truncated_and_bad_input_are_errors_not_panics() {
    assert_eq!(decode(&hx("da 00 20 00")), Err(DecodeError::Incomplete));
    assert_eq!(decode(&hx("dd ff ff ff ff")), Err(DecodeError::Incomplete));
    assert_eq!(decode(&hx("df ff ff ff ff")), Err(DecodeError::Incomplete));
    assert_eq!(decode(&hx("c1")), Err(DecodeError::UnsupportedType(0xc1)));
    assert_eq!(
        decode(&hx("d4 01 02")),
        Err(DecodeError::UnsupportedType(0xd4))
    );
    assert_eq!(decode(&hx("01 02")), Err(DecodeError::TrailingBytes(1)));
    let deep = vec![0x91u8; 1000];
    assert_eq!(decode(&deep), Err(DecodeError::TooDeep));
}

#[test]
fn stream_decoder_keeps_position_on_incomplete() {
    let mut data = encode(&Value::str("one"));
    data.extend(encode(&Value::Int(300)));
    data.extend(&hx("da 00 10 41"));
    let mut d = Decoder::new(&data);
    assert_eq!(d.next_value().unwrap(), Value::str("one"));
    assert_eq!(d.next_value().unwrap(), Value::Int(300));
    let pos = d.position();
    assert_eq!(d.next_value(), Err(DecodeError::Incomplete));
    assert_eq!(d.position(), pos);
}

#[test]
fn value_accessors() {
    let mut v = Value::map([("a", 1.into()), ("b", "x".into())]);
    assert_eq!(v.get("a").and_then(Value::as_u64), Some(1));
    assert_eq!(v.get("b").and_then(Value::as_str), Some("x"));
    v.insert("a", 5.into());
    v.insert("c", Value::Nil);
    assert_eq!(v.get("a").and_then(Value::as_i64), Some(5));
    assert!(v.get("c").unwrap().is_nil());
    assert_eq!(v.remove("b"), Some(Value::str("x")));
    assert!(v.get("b").is_none());
}

/// Objects stored by real borg 1.2.4 and 1.4.5 (`vendor-testdata/msgpack/make.sh`): decoding and
/// re-encoding gives the very same bytes.
#[test]
fn borg_objects_reencode_byte_exact() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("vendor-testdata/msgpack");
    for version in ["borg12", "borg14"] {
        for what in ["manifest", "archive", "items"] {
            let path = dir.join(format!("{version}_{what}.msgpack"));
            let data = std::fs::read(&path).expect("vendor test data");
            let mut d = Decoder::new(&data);
            let mut again = Vec::new();
            let mut n = 0;
            while !d.is_empty() {
                let v = d.next_value().expect("borg object decodes");
                encode_into(&v, &mut again);
                n += 1;
            }
            assert!(n >= 1);
            assert_eq!(again, data, "{} re-encodes differently", path.display());
        }
    }
    // The archive's items list is a list of 32-byte ids written as raw16.
    let data = std::fs::read(dir.join("borg14_archive.msgpack")).expect("vendor test data");
    let archive = decode(&data).expect("archive decodes");
    let items = archive
        .get("items")
        .and_then(Value::as_array)
        .expect("items");
    assert!(items
        .iter()
        .all(|i| i.as_bytes().map(<[u8]>::len) == Some(32)));
    assert_eq!(archive.get("version").and_then(Value::as_u64), Some(1));
}
