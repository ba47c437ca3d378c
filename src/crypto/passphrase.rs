//! Getting a passphrase the way borg does (`crypto/key.py`, class `Passphrase`).
//!
//! Sources, in order: `BORG_PASSPHRASE` (even when empty), `BORG_PASSCOMMAND` (split like a
//! shell would, run without a shell, trailing newlines stripped), `BORG_PASSPHRASE_FD` (read to
//! the end, trailing newlines stripped). Only when none is set does borg ask, and only on a
//! terminal. A passphrase never appears in `Debug` output or logs and is zeroized on drop.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use zeroize::Zeroizing;

use super::settings::{env_answer, CryptoSettings};

/// A passphrase. Zeroized on drop; `Debug` hides it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    /// Wraps a passphrase.
    pub fn new(s: impl Into<String>) -> Passphrase {
        Passphrase(Zeroizing::new(s.into()))
    }

    /// The passphrase text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The UTF-8 bytes PBKDF2 takes (borg: `passphrase.encode('utf-8')`).
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// Whether the passphrase is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<Passphrase \"***hidden***\">")
    }
}

/// Why no usable passphrase was obtained. Messages are borg's.
#[derive(Debug, thiserror::Error)]
pub enum PassphraseError {
    /// `BORG_PASSCOMMAND` could not run or exited non-zero (`PasscommandFailure`).
    #[error("Passcommand supplied in BORG_PASSCOMMAND failed: {0}")]
    PasscommandFailure(String),
    /// `BORG_PASSPHRASE_FD` could not be read.
    #[error("cannot read the passphrase from BORG_PASSPHRASE_FD {fd}: {reason}")]
    FdFailure {
        /// The descriptor.
        fd: i32,
        /// What went wrong.
        reason: String,
    },
    /// A passphrase from the environment did not unlock the key (`PassphraseWrong`).
    #[error("Passphrase supplied in BORG_PASSPHRASE, by BORG_PASSCOMMAND, or via BORG_PASSPHRASE_FD is incorrect.")]
    PassphraseWrong,
    /// Three wrong passphrases at the prompt (`PasswordRetriesExceeded`).
    #[error("Exceeded the maximum password retries.")]
    PasswordRetriesExceeded,
    /// No source is set and there is no terminal to ask on (`NoPassphraseFailure`).
    #[error("Cannot acquire a passphrase: {0}")]
    NoPassphrase(String),
}

impl PassphraseError {
    /// Borg 1.4's exit code for this error with `BORG_EXIT_CODES=modern` (legacy: always 2).
    pub fn exit_code(&self) -> i32 {
        match self {
            PassphraseError::NoPassphrase(_) => 50,
            PassphraseError::PasscommandFailure(_) | PassphraseError::FdFailure { .. } => 51,
            PassphraseError::PassphraseWrong => 52,
            PassphraseError::PasswordRetriesExceeded => 53,
        }
    }
}

/// Asks the user things. The CLI uses [`TtyPrompter`]; tests script the answers.
pub trait Prompter {
    /// Asks for a secret without echo. `Ok(None)` means no terminal or end of input.
    fn ask_secret(&mut self, prompt: &str) -> Result<Option<Passphrase>, PassphraseError>;
    /// Asks a yes/no question. `None` means no terminal, end of input or an unclear answer.
    fn ask_yes_no(&mut self, prompt: &str) -> Option<bool>;
    /// Tells the user something (borg prints these on stderr).
    fn tell(&mut self, message: &str);
}

/// A prompter that never asks: for batch use and tests. Messages go nowhere.
#[derive(Debug, Default)]
pub struct NoPrompt;

impl Prompter for NoPrompt {
    fn ask_secret(&mut self, _prompt: &str) -> Result<Option<Passphrase>, PassphraseError> {
        Ok(None)
    }
    fn ask_yes_no(&mut self, _prompt: &str) -> Option<bool> {
        None
    }
    fn tell(&mut self, _message: &str) {}
}

/// Asks on the controlling terminal (`/dev/tty`), like Python's `getpass`. Without a terminal
/// every question comes back unanswered.
#[derive(Debug, Default)]
pub struct TtyPrompter;

impl TtyPrompter {
    fn open_tty() -> Option<std::fs::File> {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")
            .ok()
    }

    fn read_line(tty: &mut std::fs::File) -> Option<Zeroizing<String>> {
        let mut line = Zeroizing::new(Vec::new());
        let mut byte = [0u8; 1];
        loop {
            match tty.read(&mut byte) {
                Ok(0) if line.is_empty() => return None,
                Ok(0) => break,
                Ok(_) if byte[0] == b'\n' => break,
                Ok(_) => line.push(byte[0]),
                Err(_) => return None,
            }
        }
        let text = Zeroizing::new(String::from_utf8_lossy(&line).into_owned());
        Some(Zeroizing::new(text.trim_end_matches('\r').to_string()))
    }
}

impl Prompter for TtyPrompter {
    fn ask_secret(&mut self, prompt: &str) -> Result<Option<Passphrase>, PassphraseError> {
        use std::os::fd::AsRawFd;
        let Some(mut tty) = Self::open_tty() else {
            return Ok(None);
        };
        let _ = tty.write_all(prompt.as_bytes());
        let _ = tty.flush();
        let fd = tty.as_raw_fd();
        // Turn echo off for the read and restore the terminal afterwards.
        // SAFETY: `termios` is plain data and `fd` is an open terminal descriptor.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        let have_termios = unsafe { libc::tcgetattr(fd, &mut saved) } == 0;
        if have_termios {
            let mut quiet = saved;
            quiet.c_lflag &= !libc::ECHO;
            quiet.c_lflag |= libc::ECHONL;
            // SAFETY: as above.
            unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) };
        }
        let line = Self::read_line(&mut tty);
        if have_termios {
            // SAFETY: as above.
            unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
        }
        Ok(line.map(|l| Passphrase::new(l.as_str())))
    }

    fn ask_yes_no(&mut self, prompt: &str) -> Option<bool> {
        let mut tty = Self::open_tty()?;
        let _ = tty.write_all(prompt.as_bytes());
        let _ = tty.flush();
        let line = Self::read_line(&mut tty)?;
        env_answer(line.trim())
    }

    fn tell(&mut self, message: &str) {
        eprintln!("{message}");
    }
}

/// A passphrase from the environment, or `None` when no source is set (`env_passphrase`).
pub fn env_passphrase(settings: &CryptoSettings) -> Result<Option<Passphrase>, PassphraseError> {
    if let Some(p) = &settings.passphrase {
        return Ok(Some(p.clone()));
    }
    if let Some(cmd) = &settings.passcommand {
        return run_passcommand(cmd).map(Some);
    }
    if let Some(fd) = settings.passphrase_fd {
        return read_fd(fd).map(Some);
    }
    Ok(None)
}

/// Runs `BORG_PASSCOMMAND` (`env_passcommand`).
pub fn run_passcommand(cmd: &str) -> Result<Passphrase, PassphraseError> {
    let argv = crate::transport::shell_split(cmd).ok_or_else(|| {
        PassphraseError::PasscommandFailure(format!("cannot parse command line {cmd:?}"))
    })?;
    let Some((program, args)) = argv.split_first() else {
        return Err(PassphraseError::PasscommandFailure("empty command".into()));
    };
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| PassphraseError::PasscommandFailure(format!("{program}: {e}")))?;
    let stdout = Zeroizing::new(out.stdout);
    if !out.status.success() {
        return Err(PassphraseError::PasscommandFailure(format!(
            "Command {argv:?} returned non-zero exit status {}.",
            out.status
                .code()
                .map_or_else(|| "(signal)".to_string(), |c| c.to_string())
        )));
    }
    let text = String::from_utf8_lossy(&stdout);
    Ok(Passphrase::new(text.trim_end_matches('\n')))
}

/// Reads `BORG_PASSPHRASE_FD` to the end and closes it (`fd_passphrase`).
pub fn read_fd(fd: i32) -> Result<Passphrase, PassphraseError> {
    use std::os::fd::FromRawFd;
    if fd < 0 {
        return Err(PassphraseError::FdFailure {
            fd,
            reason: "not a file descriptor".into(),
        });
    }
    // Check the descriptor is open before taking ownership of it.
    // SAFETY: fcntl(F_GETFD) only inspects the descriptor.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(PassphraseError::FdFailure {
            fd,
            reason: std::io::Error::last_os_error().to_string(),
        });
    }
    // SAFETY: the descriptor is open, and borg's contract is that the passphrase fd is handed
    // to borg to read and close; nothing else in rborg uses it.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    let mut buf = Zeroizing::new(Vec::new());
    file.read_to_end(&mut buf)
        .map_err(|e| PassphraseError::FdFailure {
            fd,
            reason: e.to_string(),
        })?;
    let text = String::from_utf8_lossy(&buf);
    Ok(Passphrase::new(text.trim_end_matches('\n')))
}

/// A passphrase for a new key (`Passphrase.new`): `BORG_NEW_PASSPHRASE`, then the ordinary
/// sources, then the prompt (twice, up to 10 tries). `allow_empty` is true for keyfile and
/// repokey keys.
pub fn new_passphrase(
    settings: &CryptoSettings,
    prompter: &mut dyn Prompter,
    allow_empty: bool,
) -> Result<Passphrase, PassphraseError> {
    if let Some(p) = &settings.new_passphrase {
        return Ok(p.clone());
    }
    if let Some(p) = env_passphrase(settings)? {
        return Ok(p);
    }
    for _ in 0..10 {
        let first = ask(settings, prompter, "Enter new passphrase: ")?;
        if !allow_empty && first.is_empty() {
            prompter.tell("Passphrase must not be blank");
            continue;
        }
        let second = ask(settings, prompter, "Enter same passphrase again: ")?;
        if first != second {
            prompter.tell("Passphrases do not match");
            continue;
        }
        let show = settings
            .display_passphrase
            .as_deref()
            .and_then(env_answer)
            .or_else(|| {
                prompter.ask_yes_no(
                    "Do you want your passphrase to be displayed for verification? [yN]: ",
                )
            })
            .unwrap_or(false);
        if show {
            prompter.tell(&format!(
                "Your passphrase (between double-quotes): \"{}\"",
                first.as_str()
            ));
            prompter.tell("Make sure the passphrase displayed above is exactly what you wanted.");
        }
        return Ok(first);
    }
    Err(PassphraseError::PasswordRetriesExceeded)
}

fn ask(
    settings: &CryptoSettings,
    prompter: &mut dyn Prompter,
    prompt: &str,
) -> Result<Passphrase, PassphraseError> {
    match prompter.ask_secret(prompt)? {
        Some(p) => Ok(p),
        None => {
            let state = |set: bool| if set { "set" } else { "not set" };
            Err(PassphraseError::NoPassphrase(format!(
                "BORG_PASSPHRASE is {}. BORG_PASSCOMMAND is {}. Interactive password query failed.",
                state(settings.passphrase.is_some()),
                state(settings.passcommand.is_some())
            )))
        }
    }
}

/// Unlocks something with a passphrase the way borg opens a key (`KeyfileKeyBase.detect`):
/// a passphrase from the environment is tried once (wrong → [`PassphraseError::PassphraseWrong`]);
/// without one, the empty passphrase is tried silently, then the user is asked up to 3 times.
/// `try_unlock` returns `Ok(Some(_))` on success, `Ok(None)` for a wrong passphrase.
pub fn unlock_with<T, E: From<PassphraseError>>(
    settings: &CryptoSettings,
    prompter: &mut dyn Prompter,
    prompt: &str,
    mut try_unlock: impl FnMut(&Passphrase) -> Result<Option<T>, E>,
) -> Result<(T, Passphrase), E> {
    if let Some(p) = env_passphrase(settings)? {
        return match try_unlock(&p)? {
            Some(t) => Ok((t, p)),
            None => Err(PassphraseError::PassphraseWrong.into()),
        };
    }
    let empty = Passphrase::default();
    if let Some(t) = try_unlock(&empty)? {
        return Ok((t, empty));
    }
    for _ in 0..3 {
        let p = ask(settings, prompter, prompt)?;
        if let Some(t) = try_unlock(&p)? {
            return Ok((t, p));
        }
    }
    Err(PassphraseError::PasswordRetriesExceeded.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers prompts from a list; counts the questions.
    pub(crate) struct Scripted {
        pub answers: Vec<&'static str>,
        pub asked: usize,
    }

    impl Prompter for Scripted {
        fn ask_secret(&mut self, _prompt: &str) -> Result<Option<Passphrase>, PassphraseError> {
            self.asked += 1;
            if self.answers.is_empty() {
                return Ok(None);
            }
            Ok(Some(Passphrase::new(self.answers.remove(0))))
        }
        fn ask_yes_no(&mut self, _prompt: &str) -> Option<bool> {
            Some(false)
        }
        fn tell(&mut self, _message: &str) {}
    }

    fn with(f: impl FnOnce(&mut CryptoSettings)) -> CryptoSettings {
        let mut s = CryptoSettings::default();
        f(&mut s);
        s
    }

    #[test]
    fn sources_in_borg_order() {
        let s = with(|s| {
            s.passphrase = Some(Passphrase::new(""));
            s.passcommand = Some("false".into());
        });
        assert_eq!(env_passphrase(&s).unwrap().unwrap().as_str(), "");
        let s = with(|s| s.passcommand = Some("printf 'secret\\n\\n'".into()));
        assert_eq!(env_passphrase(&s).unwrap().unwrap().as_str(), "secret");
        let s = with(|s| s.passcommand = Some("false".into()));
        let e = env_passphrase(&s).unwrap_err();
        assert!(matches!(e, PassphraseError::PasscommandFailure(_)), "{e}");
        let s = with(|s| s.passcommand = Some("/nonexistent/rborg-cmd".into()));
        assert!(matches!(
            env_passphrase(&s),
            Err(PassphraseError::PasscommandFailure(_))
        ));
        assert!(env_passphrase(&CryptoSettings::default())
            .unwrap()
            .is_none());
    }

    #[test]
    fn passphrase_from_fd() {
        let mut fds = [0i32; 2];
        // SAFETY: a plain pipe(2) call into a two-element array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: fds[1] is the write end we just created.
        let mut w = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fds[1]) };
        w.write_all("pässwörd\n".as_bytes()).unwrap();
        drop(w);
        let s = with(|s| s.passphrase_fd = Some(fds[0]));
        assert_eq!(env_passphrase(&s).unwrap().unwrap().as_str(), "pässwörd");
        let s = with(|s| s.passphrase_fd = Some(987_654));
        assert!(matches!(
            env_passphrase(&s),
            Err(PassphraseError::FdFailure { .. })
        ));
    }

    #[test]
    fn unlock_rules() {
        let check = |p: &Passphrase| -> Result<Option<u8>, PassphraseError> {
            Ok((p.as_str() == "right").then_some(1))
        };
        // Environment: one try, then PassphraseWrong without prompting.
        let s = with(|s| s.passphrase = Some(Passphrase::new("wrong")));
        let mut pr = Scripted {
            answers: vec!["right"],
            asked: 0,
        };
        assert!(matches!(
            unlock_with(&s, &mut pr, "p: ", check),
            Err(PassphraseError::PassphraseWrong)
        ));
        assert_eq!(pr.asked, 0);
        // No environment: empty probe, then prompts.
        let s = CryptoSettings::default();
        let mut pr = Scripted {
            answers: vec!["a", "right"],
            asked: 0,
        };
        let (v, p) = unlock_with(&s, &mut pr, "p: ", check).unwrap();
        assert_eq!((v, p.as_str(), pr.asked), (1, "right", 2));
        let mut pr = Scripted {
            answers: vec!["a", "b", "c", "right"],
            asked: 0,
        };
        assert!(matches!(
            unlock_with(&s, &mut pr, "p: ", check),
            Err(PassphraseError::PasswordRetriesExceeded)
        ));
        // The empty passphrase unlocks without a prompt.
        let mut pr = Scripted {
            answers: vec![],
            asked: 0,
        };
        let empty_ok = |p: &Passphrase| -> Result<Option<u8>, PassphraseError> {
            Ok(p.is_empty().then_some(2))
        };
        assert_eq!(unlock_with(&s, &mut pr, "p: ", empty_ok).unwrap().0, 2);
        assert_eq!(pr.asked, 0);
        // No terminal.
        assert!(matches!(
            unlock_with(&s, &mut NoPrompt, "p: ", check),
            Err(PassphraseError::NoPassphrase(_))
        ));
    }

    #[test]
    fn new_passphrase_rules() {
        let s = with(|s| {
            s.new_passphrase = Some(Passphrase::new("n"));
            s.passphrase = Some(Passphrase::new("o"));
        });
        assert_eq!(
            new_passphrase(&s, &mut NoPrompt, true).unwrap().as_str(),
            "n"
        );
        let s = with(|s| s.passphrase = Some(Passphrase::new("o")));
        assert_eq!(
            new_passphrase(&s, &mut NoPrompt, true).unwrap().as_str(),
            "o"
        );
        let s = CryptoSettings::default();
        let mut pr = Scripted {
            answers: vec!["a", "b", "c", "c"],
            asked: 0,
        };
        assert_eq!(new_passphrase(&s, &mut pr, true).unwrap().as_str(), "c");
        let mut pr = Scripted {
            answers: vec!["", "x", "x"],
            asked: 0,
        };
        assert_eq!(new_passphrase(&s, &mut pr, false).unwrap().as_str(), "x");
        assert!(matches!(
            new_passphrase(&s, &mut NoPrompt, true),
            Err(PassphraseError::NoPassphrase(_))
        ));
    }

    #[test]
    fn debug_hides_the_passphrase() {
        let p = Passphrase::new("topsecret");
        assert!(!format!("{p:?}").contains("topsecret"));
    }
}
