//! `--chunker-params`: parsing and validation exactly as borg's `ChunkerParams`
//! (`helpers/parseformat.py`), plus the sanity check borg's `Chunker.__cinit__` asserts.

use std::fmt;

/// borg's `MAX_DATA_SIZE` (`constants.py`): the largest payload a repository object may hold.
pub const MAX_DATA_SIZE: usize = 20_971_479;

/// A chunker configuration as borg records it in an archive's `chunker_params`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChunkerParams {
    /// Content-defined chunking: `buzhash,MIN_EXP,MAX_EXP,MASK_BITS,WINDOW`.
    Buzhash(BuzhashParams),
    /// Fixed-size blocks after an optional header: `fixed,BLOCK[,HEADER]`.
    Fixed {
        /// Size of every block but possibly the last of a range.
        block_size: usize,
        /// Size of the leading header chunk, 0 for none.
        header_size: usize,
    },
}

/// Parameters of the buzhash chunker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BuzhashParams {
    /// Chunks are at least `2^min_exp` bytes (except the last).
    pub min_exp: u32,
    /// Chunks are at most `2^max_exp` bytes.
    pub max_exp: u32,
    /// A cut happens where the low `mask_bits` bits of the window hash are zero.
    pub mask_bits: u32,
    /// Size of the rolling-hash window in bytes (odd).
    pub window_size: usize,
}

impl BuzhashParams {
    /// borg's default file-content parameters, `buzhash,19,23,21,4095`.
    pub const DEFAULT: BuzhashParams = BuzhashParams {
        min_exp: 19,
        max_exp: 23,
        mask_bits: 21,
        window_size: 4095,
    };
    /// borg's `ITEMS_CHUNKER_PARAMS` for the item-metadata stream, `buzhash,15,19,17,4095`.
    pub const ITEMS: BuzhashParams = BuzhashParams {
        min_exp: 15,
        max_exp: 19,
        mask_bits: 17,
        window_size: 4095,
    };

    /// Smallest chunk size that a cut may produce.
    pub fn min_size(&self) -> usize {
        1 << self.min_exp
    }
    /// Largest chunk size.
    pub fn max_size(&self) -> usize {
        1 << self.max_exp
    }
    /// Mask applied to the window hash; a cut needs `hash & mask == 0`.
    pub fn mask(&self) -> u32 {
        ((1u64 << self.mask_bits) - 1) as u32
    }

    /// Checks what borg's `Chunker` constructor asserts: the window plus the minimum size must
    /// fit in the maximum size, and the maximum must fit in a repository object.
    pub fn check(&self) -> Result<(), ChunkerParamsError> {
        if self.min_exp > 23 || self.max_exp > 23 || self.mask_bits > 32 || self.window_size == 0 {
            return Err(ChunkerParamsError::Invalid);
        }
        if self.window_size + self.min_size() + 1 > self.max_size() {
            return Err(ChunkerParamsError::TooSmallMaxSize);
        }
        Ok(())
    }
}

impl Default for ChunkerParams {
    fn default() -> Self {
        ChunkerParams::Buzhash(BuzhashParams::DEFAULT)
    }
}

/// Why a `--chunker-params` value was refused; the texts are borg's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkerParamsError {
    /// Fixed block size below 64.
    #[error("block_size must not be less than 64 Bytes")]
    BlockTooSmall,
    /// Fixed block or header above `MAX_DATA_SIZE`.
    #[error("block_size and header_size must not exceed MAX_DATA_SIZE [{MAX_DATA_SIZE}]")]
    BlockTooLarge,
    /// Buzhash exponents out of order.
    #[error("required: chunk_min <= chunk_mask <= chunk_max")]
    Order,
    /// Buzhash minimum exponent below 6.
    #[error("min. chunk size exponent must not be less than 6 (2^6 = 64B min. chunk size)")]
    MinTooSmall,
    /// Buzhash maximum exponent above 23.
    #[error("max. chunk size exponent must not be more than 23 (2^23 = 8MiB max. chunk size)")]
    MaxTooLarge,
    /// Even buzhash window (the seed would cancel out).
    #[error("window_size must be an uneven (odd) number")]
    EvenWindow,
    /// Window plus minimum size does not fit in the maximum size (borg's constructor assertion).
    #[error("too small max_size")]
    TooSmallMaxSize,
    /// A field that is not a number.
    #[error("invalid chunker params: {0:?} is not a number")]
    NotANumber(String),
    /// Anything else.
    #[error("invalid chunker params")]
    Invalid,
}

/// Python's `int(str)` for the cases that matter here: surrounding whitespace, a sign, digits
/// and single underscores between digits.
fn py_int(s: &str) -> Result<i64, ChunkerParamsError> {
    let t = s.trim();
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let bad = || ChunkerParamsError::NotANumber(s.to_string());
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
        || !digits.bytes().all(|b| b.is_ascii_digit() || b == b'_')
    {
        return Err(bad());
    }
    let v: i64 = digits.replace('_', "").parse().map_err(|_| bad())?;
    Ok(if neg { -v } else { v })
}

impl std::str::FromStr for ChunkerParams {
    type Err = ChunkerParamsError;

    /// Parses a `--chunker-params` value the way borg's `ChunkerParams` does.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let params: Vec<&str> = s.trim().split(',').collect();
        let count = params.len();
        let algo = params[0].to_lowercase();
        if algo == "fixed" && (2..=3).contains(&count) {
            let block = py_int(params[1])?;
            let header = if count == 3 { py_int(params[2])? } else { 0 };
            if block < 64 {
                return Err(ChunkerParamsError::BlockTooSmall);
            }
            if block > MAX_DATA_SIZE as i64 || header > MAX_DATA_SIZE as i64 {
                return Err(ChunkerParamsError::BlockTooLarge);
            }
            if header < 0 {
                // borg would accept this and then behave as if there were no header; refusing
                // is clearer than recording a negative size in the archive.
                return Err(ChunkerParamsError::Invalid);
            }
            return Ok(ChunkerParams::Fixed {
                block_size: block as usize,
                header_size: header as usize,
            });
        }
        if algo == "default" && count == 1 {
            return Ok(ChunkerParams::default());
        }
        // Like borg, four bare numbers are the legacy buzhash form.
        if (algo == "buzhash" && count == 5) || count == 4 {
            let mut v = [0i64; 4];
            for (slot, p) in v.iter_mut().zip(&params[count - 4..]) {
                *slot = py_int(p)?;
            }
            let [min, max, mask, window] = v;
            if !(min <= mask && mask <= max) {
                return Err(ChunkerParamsError::Order);
            }
            if min < 6 {
                return Err(ChunkerParamsError::MinTooSmall);
            }
            if max > 23 {
                return Err(ChunkerParamsError::MaxTooLarge);
            }
            if window % 2 == 0 {
                return Err(ChunkerParamsError::EvenWindow);
            }
            if window < 1 {
                return Err(ChunkerParamsError::Invalid);
            }
            let p = BuzhashParams {
                min_exp: min as u32,
                max_exp: max as u32,
                mask_bits: mask as u32,
                window_size: window as usize,
            };
            p.check()?;
            return Ok(ChunkerParams::Buzhash(p));
        }
        Err(ChunkerParamsError::Invalid)
    }
}

impl fmt::Display for ChunkerParams {
    /// The canonical spelling, e.g. `buzhash,19,23,21,4095` or `fixed,4096,0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChunkerParams::Buzhash(p) => write!(
                f,
                "buzhash,{},{},{},{}",
                p.min_exp, p.max_exp, p.mask_bits, p.window_size
            ),
            ChunkerParams::Fixed {
                block_size,
                header_size,
            } => write!(f, "fixed,{block_size},{header_size}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ChunkerParams, ChunkerParamsError> {
        s.parse()
    }

    #[test]
    fn accepts_borg_spellings() {
        assert_eq!(parse("default").unwrap(), ChunkerParams::default());
        assert_eq!(
            parse("buzhash,19,23,21,4095").unwrap(),
            ChunkerParams::default()
        );
        assert_eq!(parse(" 19,23,21,4095 ").unwrap(), ChunkerParams::default());
        assert_eq!(
            parse("BuzHash,10,16,12,4095").unwrap().to_string(),
            "buzhash,10,16,12,4095"
        );
        assert_eq!(
            parse("fixed,4096").unwrap(),
            ChunkerParams::Fixed {
                block_size: 4096,
                header_size: 0
            }
        );
        assert_eq!(
            parse("fixed,1000000,12345").unwrap().to_string(),
            "fixed,1000000,12345"
        );
        assert_eq!(parse("6,10,8,31").unwrap().to_string(), "buzhash,6,10,8,31");
    }

    #[test]
    fn refuses_what_borg_refuses() {
        use ChunkerParamsError::*;
        assert_eq!(parse("fixed,63"), Err(BlockTooSmall));
        assert_eq!(parse("fixed,20971480"), Err(BlockTooLarge));
        assert_eq!(parse("fixed,4096,20971480"), Err(BlockTooLarge));
        assert_eq!(parse("buzhash,19,23,24,4095"), Err(Order));
        assert_eq!(parse("buzhash,5,23,21,4095"), Err(MinTooSmall));
        assert_eq!(parse("buzhash,19,24,21,4095"), Err(MaxTooLarge));
        assert_eq!(parse("buzhash,19,23,21,4096"), Err(EvenWindow));
        assert_eq!(parse("buzhash,19,19,19,4095"), Err(TooSmallMaxSize));
        assert_eq!(parse("buzhash,19,23,21"), Err(NotANumber("buzhash".into())));
        assert_eq!(parse("buzhash,19,23"), Err(Invalid));
        assert_eq!(parse("fixed"), Err(Invalid));
        assert_eq!(parse("fixed,1,2,3"), Err(NotANumber("fixed".into())));
        assert_eq!(parse("default,1"), Err(Invalid));
        assert_eq!(parse("rabin,1,2,3,4"), Err(Invalid));
        assert!(matches!(parse("fixed,abc"), Err(NotANumber(_))));
        assert!(matches!(parse(""), Err(Invalid)));
    }

    #[test]
    fn python_int_quirks() {
        assert_eq!(py_int(" +4_096 ").unwrap(), 4096);
        assert_eq!(py_int("-7").unwrap(), -7);
        assert!(py_int("4__096").is_err());
        assert!(py_int("0x10").is_err());
    }
}
