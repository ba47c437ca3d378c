//! The encoder: writes what borg 1.x writes.

use super::Value;

/// Encodes a value the way borg 1.x packs it (raw strings without str8, smallest integers,
/// map keys sorted bytewise).
pub fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(value, &mut out);
    out
}

/// Appends the encoding of `value` to `out`, map keys sorted (borg's `StableDict`).
pub fn encode_into(value: &Value, out: &mut Vec<u8>) {
    encode_with(value, out, true);
}

/// Appends the encoding of `value` to `out` with every map in the order its pairs are listed:
/// what borg writes for plain Python dicts (RPC requests, the repository's `hints` file).
pub fn encode_unsorted_into(value: &Value, out: &mut Vec<u8>) {
    encode_with(value, out, false);
}

fn encode_with(value: &Value, out: &mut Vec<u8>, sort: bool) {
    match value {
        Value::Nil => out.push(0xc0),
        Value::Bool(false) => out.push(0xc2),
        Value::Bool(true) => out.push(0xc3),
        Value::Int(i) => encode_int(*i, out),
        Value::Float(x) => {
            out.push(0xcb);
            out.extend_from_slice(&x.to_bits().to_be_bytes());
        }
        Value::Raw(b) => encode_raw(b, out),
        Value::Array(a) => {
            encode_len(a.len(), 0x90, 0xdc, out);
            for v in a {
                encode_with(v, out, sort);
            }
        }
        Value::Map(pairs) => {
            encode_len(pairs.len(), 0x80, 0xde, out);
            // StableDict sorts by key; Python compares str keys by code point, which is the
            // bytewise order of their UTF-8. Keys that are not raw strings keep their order
            // relative to each other and sort after raw ones (borg never mixes them).
            let mut order: Vec<&(Value, Value)> = pairs.iter().collect();
            if sort {
                order.sort_by(|a, b| match (&a.0, &b.0) {
                    (Value::Raw(x), Value::Raw(y)) => x.cmp(y),
                    (Value::Raw(_), _) => std::cmp::Ordering::Less,
                    (_, Value::Raw(_)) => std::cmp::Ordering::Greater,
                    _ => std::cmp::Ordering::Equal,
                });
            }
            for (k, v) in order {
                encode_with(k, out, sort);
                encode_with(v, out, sort);
            }
        }
    }
}

/// Writes a raw string header the way msgpack-python does with `use_bin_type=False`:
/// fixstr, then raw16, then raw32. str8 (`0xd9`) is never used.
fn encode_raw(b: &[u8], out: &mut Vec<u8>) {
    let n = b.len();
    if n < 32 {
        out.push(0xa0 | n as u8);
    } else if n < 0x1_0000 {
        out.push(0xda);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
    out.extend_from_slice(b);
}

/// Array and map headers: fix form, 16-bit form, then 32-bit form (`tag16 + 1`).
fn encode_len(n: usize, fix: u8, tag16: u8, out: &mut Vec<u8>) {
    if n < 16 {
        out.push(fix | n as u8);
    } else if n < 0x1_0000 {
        out.push(tag16);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(tag16 + 1);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

fn encode_int(i: i128, out: &mut Vec<u8>) {
    if i >= 0 {
        if i < 128 {
            out.push(i as u8);
        } else if i <= u8::MAX as i128 {
            out.extend_from_slice(&[0xcc, i as u8]);
        } else if i <= u16::MAX as i128 {
            out.push(0xcd);
            out.extend_from_slice(&(i as u16).to_be_bytes());
        } else if i <= u32::MAX as i128 {
            out.push(0xce);
            out.extend_from_slice(&(i as u32).to_be_bytes());
        } else {
            // Values above u64::MAX cannot be built by the decoder; clamp rather than wrap.
            let v = u64::try_from(i).unwrap_or(u64::MAX);
            out.push(0xcf);
            out.extend_from_slice(&v.to_be_bytes());
        }
    } else if i >= -32 {
        out.push(i as i8 as u8);
    } else if i >= i8::MIN as i128 {
        out.extend_from_slice(&[0xd0, i as i8 as u8]);
    } else if i >= i16::MIN as i128 {
        out.push(0xd1);
        out.extend_from_slice(&(i as i16).to_be_bytes());
    } else if i >= i32::MIN as i128 {
        out.push(0xd2);
        out.extend_from_slice(&(i as i32).to_be_bytes());
    } else {
        let v = i64::try_from(i).unwrap_or(i64::MIN);
        out.push(0xd3);
        out.extend_from_slice(&v.to_be_bytes());
    }
}
