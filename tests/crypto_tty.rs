//! The passphrase prompt on a real terminal: run under `script`, which gives the child a
//! pseudo-terminal, it reads the passphrase from `/dev/tty` without echoing it, and asks twice
//! for a new one. Without a terminal (`setsid`, no controlling tty) it asks nothing.

use std::io::Write;
use std::process::{Command, Stdio};

use rborg::crypto::passphrase::{
    new_passphrase, unlock_with, PassphraseError, Prompter, TtyPrompter,
};
use rborg::crypto::{CryptoSettings, Passphrase};

/// The part that runs on the terminal, started by the tests below (ignored on its own).
#[test]
#[ignore = "run by the other tests in this file on a pseudo-terminal"]
fn tty_child() {
    let mode = std::env::var("RBORG_TTY_CHILD").expect("started by another test");
    let settings = CryptoSettings::default();
    let mut tty = TtyPrompter;
    match mode.as_str() {
        "unlock" => {
            let r = unlock_with(
                &settings,
                &mut tty,
                "Enter passphrase for key /r: ",
                |p: &Passphrase| {
                    Ok::<_, PassphraseError>((p.as_str() == "right one").then_some(()))
                },
            );
            match r {
                Ok((_, p)) => println!("\nRESULT unlocked len={}", p.as_str().len()),
                Err(e) => println!("\nRESULT error {e}"),
            }
        }
        "new" => match new_passphrase(&settings, &mut tty, true) {
            Ok(p) => println!("\nRESULT new len={}", p.as_str().len()),
            Err(e) => println!("\nRESULT error {e}"),
        },
        _ => {
            let got = tty.ask_secret("x: ").unwrap();
            println!("\nRESULT none={}", got.is_none());
        }
    }
}

fn on_terminal(mode: &str, input: &str) -> String {
    let exe = std::env::current_exe().unwrap();
    let cmd = format!(
        "{} --exact tty_child --include-ignored --nocapture --test-threads=1",
        exe.display()
    );
    let mut child = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("RBORG_TTY_CHILD", mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script(1) from util-linux");
    let mut stdin = child.stdin.take().unwrap();
    // Type one line at a time, as a user would, so the echo setting applies to each.
    for line in input.split_inclusive('\n') {
        std::thread::sleep(std::time::Duration::from_millis(300));
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.flush().unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn prompt_reads_the_terminal_without_echo() {
    let out = on_terminal("unlock", "wrong\nright one\n");
    assert!(out.contains("RESULT unlocked len=9"), "{out}");
    assert_eq!(
        out.matches("Enter passphrase for key /r: ").count(),
        2,
        "{out}"
    );
    assert!(
        !out.contains("right one") && !out.contains("wrong"),
        "passphrase echoed: {out}"
    );
    let out = on_terminal("unlock", "a\nb\nc\n");
    assert!(
        out.contains("RESULT error Exceeded the maximum password retries."),
        "{out}"
    );
}

#[test]
fn new_passphrase_is_asked_twice() {
    let out = on_terminal("new", "one\ntwo\nsame\nsame\nn\n");
    assert!(out.contains("RESULT new len=4"), "{out}");
    assert_eq!(
        out.matches("Enter same passphrase again: ").count(),
        2,
        "{out}"
    );
}

#[test]
fn no_terminal_no_prompt() {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("setsid")
        .arg(exe)
        .args([
            "--exact",
            "tty_child",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("RBORG_TTY_CHILD", "none")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains("RESULT none=true"), "{out}");
}
