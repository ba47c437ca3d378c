//! The `rborg` command line: parses arguments, calls the library, prints, and exits with borg's
//! exit codes.

fn main() {
    eprintln!("rborg {}", env!("CARGO_PKG_VERSION"));
}
