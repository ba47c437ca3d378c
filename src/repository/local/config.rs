//! The repository `config` file: an INI file as Python's `ConfigParser(interpolation=None)`
//! reads and writes it.
//!
//! Sections and keys keep their order, unknown ones survive a rewrite, multi-line values (the
//! repokey) are written with continuation lines indented by one tab, and every section ends
//! with a blank line, as `ConfigParser.write` does.

/// Why a config file could not be understood.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A line that is neither a section header, an option, a comment nor a continuation.
    #[error("line {0} is not valid INI")]
    BadLine(usize),
    /// An option before the first section header.
    #[error("line {0} is outside any section")]
    NoSection(usize),
    /// A value that should be a number or size is not.
    #[error("invalid value for {key}: {value:?}")]
    BadValue {
        /// The option name.
        key: String,
        /// Its value.
        value: String,
    },
}

/// A parsed INI file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IniFile {
    sections: Vec<(String, Vec<(String, String)>)>,
}

impl IniFile {
    /// Parses INI text.
    pub fn parse(text: &str) -> Result<IniFile, ConfigError> {
        let mut ini = IniFile::default();
        // Index of the option that continuation lines extend, if any.
        let mut last: Option<(usize, usize)> = None;
        for (n, raw) in text.lines().enumerate() {
            let line_no = n + 1;
            let trimmed = raw.trim();
            let indented = raw.starts_with([' ', '\t']);
            if indented && !trimmed.is_empty() {
                if let Some((s, o)) = last {
                    let value = &mut ini.sections[s].1[o].1;
                    value.push('\n');
                    value.push_str(trimmed);
                    continue;
                }
            }
            if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
                // A blank line ends a value unless more indented lines follow; borg never
                // writes blank lines inside values, so ending it here is enough.
                if trimmed.is_empty() {
                    last = None;
                }
                continue;
            }
            if trimmed.starts_with('[') && trimmed.ends_with(']') {
                let name = trimmed[1..trimmed.len() - 1].to_string();
                ini.sections.push((name, Vec::new()));
                last = None;
                continue;
            }
            let split = raw.find(['=', ':']).ok_or(ConfigError::BadLine(line_no))?;
            let key = raw[..split].trim().to_lowercase();
            let value = raw[split + 1..].trim().to_string();
            if key.is_empty() {
                return Err(ConfigError::BadLine(line_no));
            }
            let s = ini
                .sections
                .len()
                .checked_sub(1)
                .ok_or(ConfigError::NoSection(line_no))?;
            let options = &mut ini.sections[s].1;
            if let Some(o) = options.iter().position(|(k, _)| *k == key) {
                options[o].1 = value;
                last = Some((s, o));
            } else {
                options.push((key, value));
                last = Some((s, options.len() - 1));
            }
        }
        Ok(ini)
    }

    /// The text `ConfigParser.write` produces.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for (name, options) in &self.sections {
            out.push('[');
            out.push_str(name);
            out.push_str("]\n");
            for (k, v) in options {
                out.push_str(k);
                out.push_str(" = ");
                out.push_str(&v.replace('\n', "\n\t"));
                out.push('\n');
            }
            out.push('\n');
        }
        out
    }

    /// Whether a section exists.
    pub fn has_section(&self, section: &str) -> bool {
        self.sections.iter().any(|(s, _)| s == section)
    }

    /// An option's value.
    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.sections
            .iter()
            .find(|(s, _)| s == section)
            .and_then(|(_, o)| o.iter().find(|(k, _)| k == key))
            .map(|(_, v)| v.as_str())
    }

    /// Sets an option, adding the section or key at the end if missing.
    pub fn set(&mut self, section: &str, key: &str, value: &str) {
        let s = match self.sections.iter().position(|(s, _)| s == section) {
            Some(s) => s,
            None => {
                self.sections.push((section.to_string(), Vec::new()));
                self.sections.len() - 1
            }
        };
        let options = &mut self.sections[s].1;
        match options.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value.to_string(),
            None => options.push((key.to_string(), value.to_string())),
        }
    }

    /// Removes an option; returns whether it was there.
    pub fn remove(&mut self, section: &str, key: &str) -> bool {
        if let Some((_, options)) = self.sections.iter_mut().find(|(s, _)| s == section) {
            let before = options.len();
            options.retain(|(k, _)| k != key);
            return options.len() != before;
        }
        false
    }
}

/// Parses an integer the way `ConfigParser.getint` does.
pub fn parse_int(key: &str, value: &str) -> Result<i64, ConfigError> {
    value.trim().parse().map_err(|_| ConfigError::BadValue {
        key: key.to_string(),
        value: value.to_string(),
    })
}

/// Parses a boolean the way `ConfigParser.getboolean` does.
pub fn parse_bool(key: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Ok(true),
        "0" | "no" | "false" | "off" => Ok(false),
        _ => Err(ConfigError::BadValue {
            key: key.to_string(),
            value: value.to_string(),
        }),
    }
}

/// Parses a size with an optional decimal suffix K, M, G, T or P (`parse_file_size`).
pub fn parse_file_size(key: &str, value: &str) -> Result<u64, ConfigError> {
    let bad = || ConfigError::BadValue {
        key: key.to_string(),
        value: value.to_string(),
    };
    let s = value.trim();
    let factor: f64 = match s.chars().last() {
        Some('K') => 1e3,
        Some('M') => 1e6,
        Some('G') => 1e9,
        Some('T') => 1e12,
        Some('P') => 1e15,
        _ => {
            return s.parse::<u64>().map_err(|_| bad());
        }
    };
    let number: f64 = s[..s.len() - 1].parse().map_err(|_| bad())?;
    if !(number.is_finite() && number >= 0.0) {
        return Err(bad());
    }
    Ok((number * factor) as u64)
}

/// Formats a size as borg's `format_file_size` does (decimal units, two decimals).
pub fn format_file_size(v: u64) -> String {
    let units = ["", "k", "M", "G", "T", "P", "E", "Z"];
    let mut num = v as f64;
    let mut unit = "Y";
    for u in units {
        if (num * 100.0).round() / 100.0 < 1000.0 {
            unit = u;
            break;
        }
        num /= 1000.0;
    }
    format!("{num:.2} {unit}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    const BORG_CONFIG: &str = "[repository]\nversion = 1\nsegments_per_dir = 1000\n\
        max_segment_size = 524288000\nappend_only = 0\nstorage_quota = 0\n\
        additional_free_space = 0\nid = 00ff\nkey = line1\n\tline2\n\n";

    #[test]
    fn borg_config_roundtrips_byte_for_byte() {
        let ini = IniFile::parse(BORG_CONFIG).unwrap();
        assert_eq!(ini.get("repository", "key"), Some("line1\nline2"));
        assert_eq!(ini.get("repository", "version"), Some("1"));
        assert_eq!(ini.to_text(), BORG_CONFIG);
    }

    #[test]
    fn set_and_remove_keep_order() {
        let mut ini = IniFile::parse(BORG_CONFIG).unwrap();
        ini.set("repository", "last_segment_checked", "5");
        assert!(ini
            .to_text()
            .ends_with("\tline2\nlast_segment_checked = 5\n\n"));
        assert!(ini.remove("repository", "last_segment_checked"));
        assert_eq!(ini.to_text(), BORG_CONFIG);
    }

    #[test]
    fn sizes_and_bools() {
        assert_eq!(parse_file_size("k", "500M").unwrap(), 500_000_000);
        assert_eq!(parse_file_size("k", "1.5K").unwrap(), 1500);
        assert_eq!(parse_file_size("k", "123").unwrap(), 123);
        assert!(parse_file_size("k", "x").is_err());
        assert!(parse_bool("a", "yes").unwrap());
        assert!(!parse_bool("a", "0").unwrap());
        assert_eq!(format_file_size(10_000_000), "10.00 MB");
        assert_eq!(format_file_size(12_000_082), "12.00 MB");
        assert_eq!(format_file_size(500), "500.00 B");
    }
}
