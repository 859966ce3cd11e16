//! Log setup: everything to stderr, and the classic three log files
//! (receiver, delivery, retrieval) under the log directory, each fed by the
//! crates that do that job. Every event about a message carries `queue_id`,
//! so `grep <queue id> *.log` tells its whole story.

use crate::log_writer::{self, FlushGuard};
use anyhow::{Context, Result};
use postamt_config::Config;
use std::io::IsTerminal;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

/// Which crates write into which log file.
pub const LOG_FILES: [(&str, &[&str]); 3] = [
    ("receiver.log", &["postamt_receiver"]),
    (
        "delivery.log",
        &["postamt_delivery", "postamt_spool", "postamt_store"],
    ),
    ("retrieval.log", &["postamt_pop3", "postamt_imap"]),
];

/// Keeps the file writers flushing; drop at exit (writes what is left).
pub struct LogGuards(#[allow(dead_code)] Vec<FlushGuard>);

fn level(c: &Config) -> LevelFilter {
    c.logging.level.parse().unwrap_or(LevelFilter::INFO)
}

/// Installs the global subscriber for `serve`.
pub fn init_server(c: &Config) -> Result<LogGuards> {
    let lvl = level(c);
    let dir = c.log_dir();
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create log dir {}", dir.display()))?;
    let mut guards = Vec::new();
    let mut layers: Vec<Box<dyn Layer<_> + Send + Sync>> = Vec::new();
    let enabled = [c.logging.receiver, c.logging.delivery, c.logging.retrieval];
    for ((file, targets), on) in LOG_FILES.iter().zip(enabled) {
        if !on {
            continue;
        }
        // Batched and lossless: the logs are the admin's record of every
        // message (see `log_writer`).
        let path = dir.join(file);
        let (writer, guard) = log_writer::open(&path)
            .with_context(|| format!("cannot open log file {}", path.display()))?;
        guards.push(guard);
        let filter = targets
            .iter()
            .fold(Targets::new(), |f, t| f.with_target(*t, lvl));
        layers.push(
            fmt::layer()
                .with_ansi(false)
                .with_writer(writer)
                .with_filter(filter)
                .boxed(),
        );
    }
    let stderr_filter = Targets::new()
        .with_default(LevelFilter::WARN)
        .with_target("postamt", lvl);
    layers.push(
        fmt::layer()
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .with_filter(stderr_filter)
            .boxed(),
    );
    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .context("cannot install the logger")?;
    Ok(LogGuards(guards))
}
