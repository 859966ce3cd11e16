//! Running an outside command (systemctl, useradd) with a time limit,
//! its output captured and bounded.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Most bytes kept of a command's stdout or stderr.
const MAX_OUTPUT: u64 = 64 * 1024;

/// What a finished command said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Why a command gave no outcome.
#[derive(Debug)]
pub enum CommandError {
    /// It could not be started (not found, not executable).
    Spawn(std::io::Error),
    /// It ran longer than allowed and was killed.
    TimedOut(Duration),
}

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CommandError::Spawn(e) => write!(f, "cannot start it: {e}"),
            CommandError::TimedOut(d) => write!(f, "no answer within {} s: killed", d.as_secs()),
        }
    }
}

fn read_bounded(r: Option<impl Read>) -> String {
    let mut buf = Vec::new();
    if let Some(r) = r {
        let _ = r.take(MAX_OUTPUT).read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Runs `words` (program first) with no input, waiting at most `limit`.
pub fn run(words: &[String], limit: Duration) -> Result<Outcome, CommandError> {
    let Some((program, args)) = words.split_first() else {
        return Err(CommandError::Spawn(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "empty command",
        )));
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(CommandError::Spawn)?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let out_reader = std::thread::spawn(move || read_bounded(stdout));
    let err_reader = std::thread::spawn(move || read_bounded(stderr));
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = match rx.recv_timeout(limit) {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => return Err(CommandError::Spawn(e)),
        Err(_) => {
            if let Ok(pid) = libc::pid_t::try_from(pid) {
                // SAFETY: kill has no memory preconditions; the child is
                // not reaped yet (its waiter is still blocked), so the pid
                // is still ours.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
            return Err(CommandError::TimedOut(limit));
        }
    };
    Ok(Outcome {
        code: status.code(),
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(ws: &[&str]) -> Vec<String> {
        ws.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn output_and_exit_code_are_captured() {
        let o = run(
            &w(&["sh", "-c", "echo out; echo err >&2; exit 3"]),
            Duration::from_secs(30),
        )
        .unwrap();
        assert_eq!(o.code, Some(3));
        assert_eq!(o.stdout, "out\n");
        assert_eq!(o.stderr, "err\n");
        assert!(!o.success());
    }

    #[test]
    fn a_missing_program_is_a_spawn_error() {
        assert!(matches!(
            run(&w(&["/nonexistent/postamt-nope"]), Duration::from_secs(5)),
            Err(CommandError::Spawn(_))
        ));
        assert!(matches!(
            run(&[], Duration::from_secs(5)),
            Err(CommandError::Spawn(_))
        ));
    }

    #[test]
    fn a_hanging_command_is_killed() {
        let r = run(&w(&["sleep", "30"]), Duration::from_millis(200));
        assert!(matches!(r, Err(CommandError::TimedOut(_))), "{r:?}");
    }
}
