//! A log file writer that batches: the threads that log append their
//! formatted lines to a shared buffer, and one writer thread per file
//! writes what gathered at most [`FLUSH_DELAY`] later, in one `write`.
//!
//! A line-at-a-time channel (tracing-appender's) woke the writer thread
//! and made a system call for every line, three or more per message; here
//! a busy server wakes it about [`FLUSH_DELAY`]⁻¹ times a second. Nothing is
//! dropped: past [`MAX_BUFFERED`] bytes the logging thread writes the
//! buffer out itself. The file is opened for appending, so logrotate's
//! `copytruncate` works. Dropping the [`FlushGuard`] writes what is left
//! and stops the thread; a `kill -9` loses at most the last
//! [`FLUSH_DELAY`] of lines (as any buffered logger would).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;
use tracing_subscriber::fmt::MakeWriter;

/// How long the writer thread lets lines gather before writing them.
pub const FLUSH_DELAY: Duration = Duration::from_millis(20);
/// Past this many buffered bytes the logging thread writes them itself.
pub const MAX_BUFFERED: usize = 4 * 1024 * 1024;

struct State {
    buf: Vec<u8>,
    closing: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    /// Held while writing, so that the thread's and a logging thread's
    /// writes never interleave or reorder.
    file: Mutex<File>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the buffer and writes it, holding the file lock from before
    /// the take so a later batch can never overtake this one. A failure
    /// is reported on stderr (the log itself cannot take it) and the bytes
    /// are dropped: a full disk must not stop the server.
    fn flush_now(&self) {
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let bytes = std::mem::take(&mut self.state().buf);
        if !bytes.is_empty()
            && let Err(e) = file.write_all(&bytes)
        {
            eprintln!("postamt: writing a log file failed: {e}");
        }
    }
}

/// The `MakeWriter` given to a `tracing_subscriber::fmt` layer.
#[derive(Clone)]
pub struct BatchWriter {
    shared: Arc<Shared>,
}

/// Writes what is left and stops the writer thread when dropped.
pub struct FlushGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// Opens (appending, creating) `path` and starts its writer thread.
pub fn open(path: &Path) -> io::Result<(BatchWriter, FlushGuard)> {
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            buf: Vec::new(),
            closing: false,
        }),
        wake: Condvar::new(),
        file: Mutex::new(file),
    });
    let worker = Arc::clone(&shared);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let thread = std::thread::Builder::new()
        .name(format!("log-{name}"))
        .spawn(move || run(&worker, FLUSH_DELAY))?;
    Ok((
        BatchWriter {
            shared: Arc::clone(&shared),
        },
        FlushGuard {
            shared,
            thread: Some(thread),
        },
    ))
}

/// The writer thread: sleeps until a line arrives, lets more gather for
/// `delay`, writes them all; on close, writes the rest and ends.
fn run(shared: &Shared, delay: Duration) {
    loop {
        let mut st = shared.state();
        while st.buf.is_empty() && !st.closing {
            st = shared.wake.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        let closing = st.closing;
        if !closing {
            // Gather: a close cuts the wait short.
            st = shared
                .wake
                .wait_timeout_while(st, delay, |s| !s.closing)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        let closing = closing || st.closing;
        drop(st);
        shared.flush_now();
        if closing {
            return;
        }
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        self.shared.state().closing = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // Lines logged after the thread ended (during shutdown).
        self.shared.flush_now();
    }
}

/// One event's bytes, appended to the shared buffer in one piece when the
/// formatter is done with it.
pub struct LineWriter {
    shared: Arc<Shared>,
    line: Vec<u8>,
}

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.line.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if self.line.is_empty() {
            return;
        }
        let mut st = self.shared.state();
        let was_empty = st.buf.is_empty();
        st.buf.extend_from_slice(&self.line);
        // Closing: the writer thread is gone or going, so write now.
        let now = st.closing || st.buf.len() >= MAX_BUFFERED;
        drop(st);
        if now {
            self.shared.flush_now();
        } else if was_empty {
            self.shared.wake.notify_one();
        }
    }
}

impl<'a> MakeWriter<'a> for BatchWriter {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter {
            shared: Arc::clone(&self.shared),
            line: Vec::with_capacity(256),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(w: &BatchWriter, text: &str) {
        let mut lw = w.make_writer();
        lw.write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn lines_reach_the_file_in_order_and_all_on_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        std::fs::write(&path, b"old\n").unwrap();
        let (w, guard) = open(&path).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let w = w.clone();
                std::thread::spawn(move || {
                    for i in 0..500 {
                        line(&w, &format!("t{t} {i}\n"));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(guard);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("old\n"), "appends, never truncates");
        let lines: Vec<&str> = text.lines().skip(1).collect();
        assert_eq!(lines.len(), 2000, "no line lost");
        for t in 0..4 {
            let mine: Vec<usize> = lines
                .iter()
                .filter_map(|l| l.strip_prefix(&format!("t{t} ")))
                .map(|n| n.parse().unwrap())
                .collect();
            assert_eq!(mine, (0..500).collect::<Vec<_>>(), "thread {t} in order");
        }
    }

    #[test]
    fn a_line_is_written_without_a_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("y.log");
        let (w, _guard) = open(&path).unwrap();
        line(&w, "hello\n");
        // The writer thread writes it within FLUSH_DELAY; poll, bounded.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(&path).unwrap() != "hello\n" {
            assert!(std::time::Instant::now() < deadline, "line never written");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_full_buffer_is_written_by_the_logging_thread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("z.log");
        let (w, guard) = open(&path).unwrap();
        // Stop the thread from writing: hold the file lock, then log more
        // than MAX_BUFFERED from another thread; it must not grow the
        // buffer without bound but write (waiting for the lock) itself.
        let big = "x".repeat(1024) + "\n";
        let file_lock = guard.shared.file.lock().unwrap();
        let logger = {
            let w = w.clone();
            let big = big.clone();
            std::thread::spawn(move || {
                for _ in 0..(MAX_BUFFERED / big.len() + 10) {
                    line(&w, &big);
                }
            })
        };
        // The logger blocks on the file lock once the buffer is full.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while guard.shared.state().buf.len() < MAX_BUFFERED {
            assert!(std::time::Instant::now() < deadline, "buffer never filled");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(guard.shared.state().buf.len() < MAX_BUFFERED + 2 * big.len());
        drop(file_lock);
        logger.join().unwrap();
        drop(guard);
        let n = std::fs::read_to_string(&path).unwrap().lines().count();
        assert_eq!(n, MAX_BUFFERED / big.len() + 10);
    }
}
