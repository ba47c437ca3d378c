//! `--compression` specs, parsed and validated like borg's `CompressionSpec` (`compress.pyx`).

use std::fmt;

/// A compression setting, e.g. `lz4`, `zstd,3`, `auto,zstd,10`, `obfuscate,250,lz4`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CompressionSpec {
    /// Store as is (`00 00` header).
    None,
    /// Raw LZ4 block (`01 00`), borg's default.
    Lz4,
    /// One zstd frame with the content size (`03 00`); level 1..=22.
    Zstd(i32),
    /// A plain zlib stream without a borg header (legacy); level 0..=9.
    Zlib(u32),
    /// An .xz container without integrity check (`02 00`); preset 0..=9.
    Lzma(u32),
    /// borg's `auto`: try LZ4 first, use the inner compressor only when LZ4 finds redundancy.
    Auto(Box<CompressionSpec>),
    /// Pads the inner compressor's output to hide its size (`04 00`).
    Obfuscate {
        /// borg's SPEC number: 1..=6 (relative), 110..=123 (absolute), 250 (Padmé).
        level: u32,
        /// What compresses the data before padding.
        inner: Box<CompressionSpec>,
    },
}

impl Default for CompressionSpec {
    /// borg's default `--compression`, `lz4`.
    fn default() -> Self {
        CompressionSpec::Lz4
    }
}

/// Why a compression spec was refused; the texts are borg's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// zlib/lzma level outside 0..=9.
    #[error("level must be >= 0 and <= 9")]
    Level0To9,
    /// zstd level outside 1..=22.
    #[error("level must be >= 1 and <= 22")]
    Level1To22,
    /// Too many fields for zlib/lzma/zstd.
    #[error("too many arguments")]
    TooMany,
    /// Wrong field count for auto/obfuscate.
    #[error("bad arguments")]
    BadArguments,
    /// Obfuscation SPEC out of range.
    #[error("level must be (inclusively) within 1...6, 110...123 or equal to 250")]
    ObfuscateLevel,
    /// Unknown algorithm name.
    #[error("unsupported compression type")]
    Unsupported,
    /// A level that is not a number.
    #[error("invalid compression level: {0:?}")]
    NotANumber(String),
}

fn py_int(s: &str) -> Result<i64, SpecError> {
    let t = s.trim().replace('_', "");
    let t = t.strip_prefix('+').unwrap_or(&t);
    t.parse::<i64>()
        .map_err(|_| SpecError::NotANumber(s.to_string()))
}

impl std::str::FromStr for CompressionSpec {
    type Err = SpecError;

    /// Parses like borg's `CompressionSpec.__init__`, including its leniency: extra fields
    /// after `none` and `lz4` are ignored.
    fn from_str(s: &str) -> Result<Self, SpecError> {
        let values: Vec<&str> = s.split(',').collect();
        let count = values.len();
        let level_of = |lo: i64, hi: i64, default: i64, err: SpecError| match count {
            1 => Ok(default),
            2 => {
                let l = py_int(values[1])?;
                if (lo..=hi).contains(&l) {
                    Ok(l)
                } else {
                    Err(err)
                }
            }
            _ => Err(SpecError::TooMany),
        };
        match values[0] {
            "none" => Ok(CompressionSpec::None),
            "lz4" => Ok(CompressionSpec::Lz4),
            "zlib" => Ok(CompressionSpec::Zlib(
                level_of(0, 9, 6, SpecError::Level0To9)? as u32,
            )),
            "lzma" => Ok(CompressionSpec::Lzma(
                level_of(0, 9, 6, SpecError::Level0To9)? as u32,
            )),
            "zstd" => Ok(CompressionSpec::Zstd(
                level_of(1, 22, 3, SpecError::Level1To22)? as i32,
            )),
            "auto" => {
                if !(2..=3).contains(&count) {
                    return Err(SpecError::BadArguments);
                }
                let inner: CompressionSpec = values[1..].join(",").parse()?;
                Ok(CompressionSpec::Auto(Box::new(inner)))
            }
            "obfuscate" => {
                if !(3..=5).contains(&count) {
                    return Err(SpecError::BadArguments);
                }
                let level = py_int(values[1])?;
                if !((1..=6).contains(&level) || (110..=123).contains(&level) || level == 250) {
                    return Err(SpecError::ObfuscateLevel);
                }
                let inner: CompressionSpec = values[2..].join(",").parse()?;
                Ok(CompressionSpec::Obfuscate {
                    level: level as u32,
                    inner: Box::new(inner),
                })
            }
            _ => Err(SpecError::Unsupported),
        }
    }
}

impl fmt::Display for CompressionSpec {
    /// The canonical spelling with explicit levels, e.g. `auto,zstd,3`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompressionSpec::None => f.write_str("none"),
            CompressionSpec::Lz4 => f.write_str("lz4"),
            CompressionSpec::Zstd(l) => write!(f, "zstd,{l}"),
            CompressionSpec::Zlib(l) => write!(f, "zlib,{l}"),
            CompressionSpec::Lzma(l) => write!(f, "lzma,{l}"),
            CompressionSpec::Auto(inner) => write!(f, "auto,{inner}"),
            CompressionSpec::Obfuscate { level, inner } => write!(f, "obfuscate,{level},{inner}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<CompressionSpec, SpecError> {
        s.parse()
    }

    #[test]
    fn parses_borg_specs() {
        use CompressionSpec::*;
        assert_eq!(p("none").unwrap(), None);
        assert_eq!(p("lz4").unwrap(), Lz4);
        assert_eq!(p("lz4,9").unwrap(), Lz4, "borg ignores extra fields here");
        assert_eq!(p("zstd").unwrap(), Zstd(3));
        assert_eq!(p("zstd,22").unwrap(), Zstd(22));
        assert_eq!(p("zlib").unwrap(), Zlib(6));
        assert_eq!(p("zlib,0").unwrap(), Zlib(0));
        assert_eq!(p("lzma,9").unwrap(), Lzma(9));
        assert_eq!(p("auto,zstd").unwrap(), Auto(Box::new(Zstd(3))));
        assert_eq!(p("auto,zlib,9").unwrap().to_string(), "auto,zlib,9");
        assert_eq!(
            p("obfuscate,250,auto,zstd,7").unwrap().to_string(),
            "obfuscate,250,auto,zstd,7"
        );
        assert_eq!(
            p("obfuscate,110,none").unwrap().to_string(),
            "obfuscate,110,none"
        );
    }

    #[test]
    fn refuses_what_borg_refuses() {
        use SpecError::*;
        assert_eq!(p("zstd,0"), Err(Level1To22));
        assert_eq!(p("zstd,23"), Err(Level1To22));
        assert_eq!(p("zlib,10"), Err(Level0To9));
        assert_eq!(p("lzma,-1"), Err(Level0To9));
        assert_eq!(p("zstd,3,4"), Err(TooMany));
        assert_eq!(p("auto"), Err(BadArguments));
        assert_eq!(p("auto,zstd,3,4"), Err(BadArguments));
        assert_eq!(p("obfuscate,1"), Err(BadArguments));
        assert_eq!(p("obfuscate,7,lz4"), Err(ObfuscateLevel));
        assert_eq!(p("obfuscate,124,lz4"), Err(ObfuscateLevel));
        assert_eq!(p("auto,brotli"), Err(Unsupported));
        assert_eq!(p(""), Err(Unsupported));
        assert_eq!(p("LZ4"), Err(Unsupported));
        assert!(matches!(p("zstd,x"), Err(NotANumber(_))));
    }
}
