//! The decoder: reads everything borg reads.

use super::Value;

/// Deepest nesting the decoder follows. Borg objects nest a handful of levels; the bound keeps a
/// hostile input from overflowing the stack.
const MAX_DEPTH: usize = 64;

/// Why a byte string is not a msgpack object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ends inside an object. A stream reader waits for more bytes.
    #[error("msgpack data is truncated")]
    Incomplete,
    /// A type byte that borg never writes and never reads (ext types, the reserved `0xc1`).
    #[error("msgpack type byte 0x{0:02x} is not supported")]
    UnsupportedType(u8),
    /// Arrays and maps nested deeper than the decoder allows.
    #[error("msgpack data is nested more than {MAX_DEPTH} levels deep")]
    TooDeep,
    /// Bytes left after the one object that was expected.
    #[error("{0} unexpected bytes after the msgpack object")]
    TrailingBytes(usize),
}

/// Decodes exactly one object that fills all of `data`.
pub fn decode(data: &[u8]) -> Result<Value, DecodeError> {
    let (value, used) = decode_prefix(data)?;
    if used != data.len() {
        return Err(DecodeError::TrailingBytes(data.len() - used));
    }
    Ok(value)
}

/// Decodes the first object in `data` and returns it with the number of bytes it took.
///
/// Returns [`DecodeError::Incomplete`] when `data` holds only the start of an object.
pub fn decode_prefix(data: &[u8]) -> Result<(Value, usize), DecodeError> {
    let mut d = Decoder { data, pos: 0 };
    let v = d.value(0)?;
    Ok((v, d.pos))
}

/// A cursor over a byte string holding concatenated msgpack objects, such as an archive's item
/// stream or one chunk of it.
#[derive(Debug)]
pub struct Decoder<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    /// Starts reading at the beginning of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Decoder { data, pos: 0 }
    }

    /// How many bytes have been consumed.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Whether every byte has been consumed.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// Reads the next object. On [`DecodeError::Incomplete`] the position is left where it was,
    /// so the caller can keep the unread tail and retry with more data.
    pub fn next_value(&mut self) -> Result<Value, DecodeError> {
        let start = self.pos;
        let r = self.value(0);
        if r.is_err() {
            self.pos = start;
        }
        r
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Incomplete)?;
        if end > self.data.len() {
            return Err(DecodeError::Incomplete);
        }
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn be<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn len16(&mut self) -> Result<usize, DecodeError> {
        Ok(u16::from_be_bytes(self.be()?) as usize)
    }

    fn len32(&mut self) -> Result<usize, DecodeError> {
        Ok(u32::from_be_bytes(self.be()?) as usize)
    }

    fn raw(&mut self, n: usize) -> Result<Value, DecodeError> {
        Ok(Value::Raw(self.take(n)?.to_vec()))
    }

    fn array(&mut self, n: usize, depth: usize) -> Result<Value, DecodeError> {
        // Every element takes at least one byte: never reserve more than the input can hold.
        let mut items = Vec::with_capacity(n.min(self.data.len() - self.pos));
        for _ in 0..n {
            items.push(self.value(depth + 1)?);
        }
        Ok(Value::Array(items))
    }

    fn map(&mut self, n: usize, depth: usize) -> Result<Value, DecodeError> {
        let mut pairs = Vec::with_capacity(n.min((self.data.len() - self.pos) / 2));
        for _ in 0..n {
            let k = self.value(depth + 1)?;
            let v = self.value(depth + 1)?;
            pairs.push((k, v));
        }
        Ok(Value::Map(pairs))
    }

    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::TooDeep);
        }
        let t = self.byte()?;
        match t {
            0x00..=0x7f => Ok(Value::Int(t as i128)),
            0x80..=0x8f => self.map((t & 0x0f) as usize, depth),
            0x90..=0x9f => self.array((t & 0x0f) as usize, depth),
            0xa0..=0xbf => self.raw((t & 0x1f) as usize),
            0xc0 => Ok(Value::Nil),
            0xc2 => Ok(Value::Bool(false)),
            0xc3 => Ok(Value::Bool(true)),
            // bin 8/16/32 and str 8/16/32: borg reads all of them as bytes.
            0xc4 | 0xd9 => {
                let n = self.byte()? as usize;
                self.raw(n)
            }
            0xc5 | 0xda => {
                let n = self.len16()?;
                self.raw(n)
            }
            0xc6 | 0xdb => {
                let n = self.len32()?;
                self.raw(n)
            }
            0xca => Ok(Value::Float(f32::from_be_bytes(self.be()?) as f64)),
            0xcb => Ok(Value::Float(f64::from_be_bytes(self.be()?))),
            0xcc => Ok(Value::Int(self.byte()? as i128)),
            0xcd => Ok(Value::Int(u16::from_be_bytes(self.be()?) as i128)),
            0xce => Ok(Value::Int(u32::from_be_bytes(self.be()?) as i128)),
            0xcf => Ok(Value::Int(u64::from_be_bytes(self.be()?) as i128)),
            0xd0 => Ok(Value::Int(self.byte()? as i8 as i128)),
            0xd1 => Ok(Value::Int(i16::from_be_bytes(self.be()?) as i128)),
            0xd2 => Ok(Value::Int(i32::from_be_bytes(self.be()?) as i128)),
            0xd3 => Ok(Value::Int(i64::from_be_bytes(self.be()?) as i128)),
            0xdc => {
                let n = self.len16()?;
                self.array(n, depth)
            }
            0xdd => {
                let n = self.len32()?;
                self.array(n, depth)
            }
            0xde => {
                let n = self.len16()?;
                self.map(n, depth)
            }
            0xdf => {
                let n = self.len32()?;
                self.map(n, depth)
            }
            0xe0..=0xff => Ok(Value::Int(t as i8 as i128)),
            other => Err(DecodeError::UnsupportedType(other)),
        }
    }
}
