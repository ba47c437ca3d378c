//! The `rborg` command line: parses arguments, calls the library, prints, and exits with borg's
//! exit codes.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
