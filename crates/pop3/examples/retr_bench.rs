//! Measures POP3 retrieval the way `bench/run` does: a real Maildir with
//! 1,000 messages of 4 KiB in a temporary directory, the real
//! `handle_connection` on a multi-thread runtime behind a TCP loopback
//! socket, and a blocking client on its own thread that logs in, then times
//! `LIST` and `RETR 1..n` one command at a time, then `QUIT` (no `DELE`).
//!
//! `cargo run --release -p postamt-pop3 --example retr_bench [-- MESSAGES SESSIONS]`

use postamt_config::Config;
use postamt_directory::Directory;
use postamt_directory::auth::Authenticator;
use postamt_pop3::{Pop3Context, handle_connection};
use postamt_store::MailStore;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const PASSWORD: &str = "bench password";
const MESSAGE_SIZE: usize = 4096;

fn message(i: usize) -> Vec<u8> {
    let mut m =
        format!("From: sender@example.org\r\nTo: alice@example.org\r\nSubject: bench {i}\r\n\r\n")
            .into_bytes();
    let line = b"The quick brown fox jumps over the lazy dog, again and again.\r\n";
    while m.len() + line.len() <= MESSAGE_SIZE {
        m.extend_from_slice(line);
    }
    m.resize(MESSAGE_SIZE - 2, b'x');
    m.extend_from_slice(b"\r\n");
    m
}

/// A blocking POP3 client with its buffers.
struct Client {
    s: TcpStream,
    /// The last reply.
    buf: Vec<u8>,
    chunk: Vec<u8>,
}

impl Client {
    /// Reads one reply into `buf`: a status line, or (`multi`) up to the
    /// final `.` line.
    fn reply(&mut self, multi: bool) -> Result<(), String> {
        self.buf.clear();
        loop {
            let n = self.s.read(&mut self.chunk).map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("server closed the connection".into());
            }
            self.buf.extend_from_slice(&self.chunk[..n]);
            if self.buf.starts_with(b"-ERR") && self.buf.ends_with(b"\r\n") {
                return Err(String::from_utf8_lossy(&self.buf).into_owned());
            }
            let done = if multi {
                self.buf.ends_with(b"\r\n.\r\n")
            } else {
                self.buf.ends_with(b"\r\n")
            };
            if done {
                return Ok(());
            }
        }
    }

    fn ask(&mut self, cmd: &str, multi: bool) -> Result<(), String> {
        self.s
            .write_all(format!("{cmd}\r\n").as_bytes())
            .map_err(|e| e.to_string())?;
        self.reply(multi)
    }
}

/// One session; returns (login, LIST + RETR all) durations.
fn session(addr: std::net::SocketAddr, n: usize) -> Result<(Duration, Duration), String> {
    let s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let mut c = Client {
        s,
        buf: Vec::with_capacity(64 * 1024),
        chunk: vec![0; 64 * 1024],
    };
    c.reply(false)?;
    let t0 = Instant::now();
    c.ask("USER alice", false)?;
    c.ask(&format!("PASS {PASSWORD}"), false)?;
    let login = t0.elapsed();
    let t1 = Instant::now();
    c.ask("LIST", true)?;
    for i in 1..=n {
        c.ask(&format!("RETR {i}"), true)?;
        if c.buf.len() < MESSAGE_SIZE {
            return Err(format!("RETR {i}: short reply of {} bytes", c.buf.len()));
        }
    }
    let retr = t1.elapsed();
    c.ask("QUIT", false)?;
    Ok((login, retr))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1000);
    let sessions: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(10);

    // RETR_BENCH_DIR: keep the mailbox there and reuse it on later runs
    // (handy under a profiler); otherwise a temporary directory.
    let keep = std::env::var_os("RETR_BENCH_DIR").map(std::path::PathBuf::from);
    let tmp = match &keep {
        Some(_) => None,
        None => Some(
            tempfile::Builder::new()
                .prefix("retr_bench")
                .tempdir_in("/var/tmp")?,
        ),
    };
    let root = keep
        .or_else(|| tmp.as_ref().map(|t| t.path().to_path_buf()))
        .ok_or("no mailbox directory")?;
    let directory = Arc::new(Directory::open_in_memory()?);
    directory.add_user("alice", PASSWORD, false)?;
    let auth = Arc::new(Authenticator::with_delays(
        directory,
        Duration::from_millis(1),
        Duration::from_millis(4),
    ));
    let template = format!("{}/%u", root.display());
    let store = Arc::new(MailStore::new(&template, "example.org", true));
    let have = store.open("alice")?.messages()?.len();
    let t = Instant::now();
    for i in have..n {
        store.deliver("alice", &message(i), &format!("{i:08x}"))?;
    }
    eprintln!(
        "delivered {} messages in {:.0} ms",
        n.saturating_sub(have),
        ms(t.elapsed())
    );
    let ctx = Arc::new(Pop3Context {
        config: Arc::new(Config {
            hostname: "pop.example.org".into(),
            domains: vec!["example.org".into()],
            ..Config::default()
        }),
        auth,
        store,
        tls: None,
    });

    // Like `postamt serve`: a default multi-thread runtime.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let server_ctx = Arc::clone(&ctx);
    let server_shutdown = shutdown.clone();
    rt.spawn(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let ctx = Arc::clone(&server_ctx);
            let shutdown = server_shutdown.clone();
            tokio::spawn(handle_connection(stream, peer, ctx, shutdown));
        }
    });

    let client = std::thread::spawn(move || {
        let mut runs = Vec::new();
        for _ in 0..sessions {
            runs.push(session(addr, n)?);
        }
        Ok::<_, String>(runs)
    });
    let runs = client
        .join()
        .map_err(|_| "client thread panicked")?
        .map_err(|e| format!("client: {e}"))?;
    shutdown.cancel();
    drop(rt);

    for (i, (login, retr)) in runs.iter().enumerate() {
        println!(
            "session {:2}: login {:7.2} ms, LIST + {n} x RETR {:7.2} ms",
            i + 1,
            ms(*login),
            ms(*retr)
        );
    }
    let mut retr: Vec<f64> = runs.iter().map(|r| ms(r.1)).collect();
    retr.sort_by(f64::total_cmp);
    if let (Some(min), Some(med)) = (retr.first(), retr.get(retr.len() / 2)) {
        println!(
            "LIST + RETR {n}: min {min:.2} ms, median {med:.2} ms ({:.1} us per RETR at the median)",
            med * 1000.0 / n as f64
        );
    }
    Ok(())
}
