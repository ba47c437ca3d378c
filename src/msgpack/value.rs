//! The dynamic value that borg's msgpack decodes into.

use std::fmt;

/// One msgpack object as borg sees it.
///
/// Strings and byte strings are one kind, [`Value::Raw`], because borg reads with `raw=True` and
/// writes with `use_bin_type=False`. Integers are held as `i128`, which covers both the
/// `uint64` and the `int64` range.
#[derive(Clone, PartialEq)]
pub enum Value {
    /// msgpack nil (`None` in Python).
    Nil,
    /// A boolean.
    Bool(bool),
    /// Any integer from `i64::MIN` to `u64::MAX`.
    Int(i128),
    /// A float (borg writes float64).
    Float(f64),
    /// A raw string: text or bytes.
    Raw(Vec<u8>),
    /// An array (a Python list or tuple).
    Array(Vec<Value>),
    /// A map as a list of pairs in the order they were read or built. The encoder sorts the
    /// keys, as borg's `StableDict` does.
    Map(Vec<(Value, Value)>),
}

impl Value {
    /// A raw string from text.
    pub fn str(s: &str) -> Value {
        Value::Raw(s.as_bytes().to_vec())
    }

    /// A raw string from bytes.
    pub fn bytes(b: &[u8]) -> Value {
        Value::Raw(b.to_vec())
    }

    /// A map from `(key, value)` pairs whose keys are text, the shape of every borg dict.
    pub fn map<'a, I>(pairs: I) -> Value
    where
        I: IntoIterator<Item = (&'a str, Value)>,
    {
        Value::Map(pairs.into_iter().map(|(k, v)| (Value::str(k), v)).collect())
    }

    /// Looks up a text key in a map. `None` when this is not a map or the key is absent.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(pairs) => pairs
                .iter()
                .find(|(k, _)| matches!(k, Value::Raw(b) if b == key.as_bytes()))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// Mutable access to the value of a text key in a map.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        match self {
            Value::Map(pairs) => pairs
                .iter_mut()
                .find(|(k, _)| matches!(k, Value::Raw(b) if b == key.as_bytes()))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// Sets a text key in a map, replacing an existing value. Does nothing on a non-map.
    pub fn insert(&mut self, key: &str, value: Value) {
        if let Value::Map(pairs) = self {
            if let Some(slot) = pairs
                .iter_mut()
                .find(|(k, _)| matches!(k, Value::Raw(b) if b == key.as_bytes()))
            {
                slot.1 = value;
            } else {
                pairs.push((Value::str(key), value));
            }
        }
    }

    /// Removes a text key from a map and returns its value.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        if let Value::Map(pairs) = self {
            let pos = pairs
                .iter()
                .position(|(k, _)| matches!(k, Value::Raw(b) if b == key.as_bytes()))?;
            return Some(pairs.remove(pos).1);
        }
        None
    }

    /// The bytes of a raw string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Raw(b) => Some(b),
            _ => None,
        }
    }

    /// A raw string as UTF-8 text.
    pub fn as_str(&self) -> Option<&str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    /// An integer that fits `u64`.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Int(i) => u64::try_from(*i).ok(),
            _ => None,
        }
    }

    /// An integer that fits `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => i64::try_from(*i).ok(),
            _ => None,
        }
    }

    /// A float, or an integer read as a float.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(*f),
            Value::Int(i) => Some(*i as f64),
            _ => None,
        }
    }

    /// A boolean.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The elements of an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The pairs of a map.
    pub fn as_map(&self) -> Option<&[(Value, Value)]> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// Whether this is nil.
    pub fn is_nil(&self) -> bool {
        matches!(self, Value::Nil)
    }
}

impl fmt::Debug for Value {
    /// Shows raw strings as text when they are printable UTF-8 and as hex otherwise, so that
    /// dumps of borg objects stay readable.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Nil => write!(f, "nil"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x:?}"),
            Value::Raw(b) => match std::str::from_utf8(b) {
                Ok(s) if !s.chars().any(|c| c.is_control()) => write!(f, "{s:?}"),
                _ => write!(f, "h'{}'", hex::encode(b)),
            },
            Value::Array(a) => f.debug_list().entries(a).finish(),
            Value::Map(m) => f
                .debug_map()
                .entries(m.iter().map(|(k, v)| (k, v)))
                .finish(),
        }
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

macro_rules! from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(i: $t) -> Self {
                Value::Int(i as i128)
            }
        }
    )*};
}
from_int!(u8, u16, u32, u64, usize, i8, i16, i32, i64, isize);

impl From<f64> for Value {
    fn from(x: f64) -> Self {
        Value::Float(x)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::str(s)
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Raw(s.into_bytes())
    }
}

impl From<&[u8]> for Value {
    fn from(b: &[u8]) -> Self {
        Value::Raw(b.to_vec())
    }
}

impl From<Vec<u8>> for Value {
    fn from(b: Vec<u8>) -> Self {
        Value::Raw(b)
    }
}

impl From<Vec<Value>> for Value {
    fn from(a: Vec<Value>) -> Self {
        Value::Array(a)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(o: Option<T>) -> Self {
        o.map_or(Value::Nil, Into::into)
    }
}
