//! The control socket: how the CLI tells a running server to act now
//! (`flush`, `rescan`). A Unix socket under `<data_dir>/run/`, owned by the
//! server's user; one command line in, one reply line out.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Commands the server understands on the control socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Make every queued message due now and deliver.
    Flush,
    /// Re-read the queue (after hold/release/delete by the CLI).
    Rescan,
}

impl Command {
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Flush => "flush",
            Command::Rescan => "rescan",
        }
    }
    pub fn parse(s: &str) -> Option<Command> {
        match s.trim() {
            "flush" => Some(Command::Flush),
            "rescan" => Some(Command::Rescan),
            _ => None,
        }
    }
}

/// The socket's path for a given run directory.
pub fn socket_path(run_dir: &Path) -> PathBuf {
    run_dir.join("control.sock")
}

/// Sends `cmd` to the running server. `Ok(false)` when no server listens
/// (not an error: the change takes effect at the next start).
pub fn notify(run_dir: &Path, cmd: Command) -> std::io::Result<bool> {
    let mut s = match UnixStream::connect(socket_path(run_dir)) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(false);
        }
        Err(e) => return Err(e),
    };
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(format!("{}\n", cmd.as_str()).as_bytes())?;
    let mut line = String::new();
    BufReader::new(s.take_limit()).read_line(&mut line)?;
    if line.starts_with("ok") {
        Ok(true)
    } else {
        Err(std::io::Error::other(format!(
            "server answered: {}",
            line.trim()
        )))
    }
}

trait TakeLimit {
    fn take_limit(self) -> std::io::Take<UnixStream>;
}

impl TakeLimit for UnixStream {
    fn take_limit(self) -> std::io::Take<UnixStream> {
        std::io::Read::take(self, 4096)
    }
}
