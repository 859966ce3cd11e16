//! Reading the three log files (receiver, delivery, retrieval) back: the
//! log viewer's filtered search and the message trace (every event of one
//! message, by queue id, sender, recipient or Message-ID, as a timeline).
//! Reads are bounded (newest files first, a cap on lines scanned and
//! returned).
//!
//! The files are written by tracing-subscriber's default formatter
//! (`crates/postamt/src/logging.rs`, no ANSI colours):
//! `2026-01-02T03:04:05.123456Z  INFO postamt_receiver::session: message queued queue_id=... from=a@b size=12`
//! — time stamp, level, target, message, then `key=value` fields, where a
//! `?`-formatted string value is quoted with Rust escapes and a
//! `%`-formatted one is written as is (and may hold spaces). Rotated
//! copies (`receiver.log.1`, `receiver.log.2026-01-01`, by logrotate)
//! are read after the live file, newest first;
//! compressed ones are skipped.

use crate::OpsError;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

mod parse;
mod reader;

pub use parse::parse_line;
pub(crate) use parse::{parse_head, time_micros};
pub(crate) use reader::RevLines;

/// One parsed log line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LogEvent {
    /// RFC 3339 time stamp as written.
    pub time: String,
    /// Unix seconds (0 when the stamp did not parse).
    pub unix: i64,
    /// `receiver`, `delivery` or `retrieval`.
    pub log: String,
    pub level: String,
    pub message: String,
    /// The structured fields (queue_id, from, to, status, ...), in order.
    pub fields: Vec<(String, String)>,
    /// The raw line.
    pub raw: String,
}

impl LogEvent {
    /// The value of field `name`, if the line has it.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A log viewer query; every set field must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogQuery {
    /// Which logs (empty = all three).
    pub logs: Vec<String>,
    pub queue_id: Option<String>,
    /// An address appearing in any field (case-insensitive).
    pub address: Option<String>,
    /// Free text, case-insensitive, anywhere in the line.
    pub text: Option<String>,
    /// Unix seconds, inclusive.
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// Most events returned (newest last); capped at 5,000.
    pub limit: usize,
}

/// How a message trace is looked up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraceKey {
    QueueId(String),
    Sender(String),
    Recipient(String),
    MessageId(String),
}

/// The story of one message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Trace {
    pub queue_id: String,
    /// Every event with this queue id, oldest first, across the logs.
    pub events: Vec<LogEvent>,
}

/// The three logs, in the order they are listed.
pub const LOG_NAMES: [&str; 3] = ["receiver", "delivery", "retrieval"];
/// Bytes scanned by one search or trace, over all files.
pub const MAX_SCAN_BYTES: u64 = 50 * 1024 * 1024;
/// Most events one search returns.
pub const MAX_RESULTS: usize = 5_000;
/// Most traces one lookup returns.
pub const MAX_TRACES: usize = 100;
/// Most events in one trace.
pub const MAX_TRACE_EVENTS: usize = 5_000;
/// Most rotated files read per log.
const MAX_FILES: usize = 32;

/// The files of log `name` in `dir`, newest first: the live file, then
/// rotated uncompressed copies by modification time.
pub(crate) fn log_files(dir: &Path, name: &str) -> Vec<PathBuf> {
    let live = format!("{name}.log");
    let rotated_prefix = format!("{live}.");
    let mut live_path = None;
    let mut rotated = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    for entry in entries.flatten().take(10_000) {
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
        if !is_file {
            continue;
        }
        if file_name == live {
            live_path = Some(entry.path());
        } else if let Some(suffix) = file_name.strip_prefix(&rotated_prefix) {
            let compressed = [".gz", ".xz", ".bz2", ".zst", ".lz4", ".z"]
                .iter()
                .any(|c| suffix.to_ascii_lowercase().ends_with(c));
            if !compressed {
                let mtime = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(std::time::UNIX_EPOCH);
                // Numbered copies: a smaller number is newer.
                let number = suffix.parse::<u64>().unwrap_or(u64::MAX);
                rotated.push((mtime, std::cmp::Reverse(number), entry.path()));
            }
        }
    }
    rotated.sort_by_key(|r| std::cmp::Reverse((r.0, r.1)));
    live_path
        .into_iter()
        .chain(rotated.into_iter().map(|(_, _, p)| p))
        .take(MAX_FILES)
        .collect()
}

/// A line's parse together with its sort key.
struct Found {
    micros: i64,
    /// Position in the scan (for a stable order of equal stamps).
    seq: usize,
    event: LogEvent,
}

fn selected_logs(logs: &[String]) -> Result<Vec<&'static str>, OpsError> {
    if logs.is_empty() {
        return Ok(LOG_NAMES.to_vec());
    }
    let mut out = Vec::new();
    for l in logs {
        match LOG_NAMES.iter().find(|n| **n == l.as_str()) {
            Some(n) if !out.contains(n) => out.push(*n),
            Some(_) => {}
            None => {
                return Err(OpsError::Invalid(format!(
                    "logs: unknown log `{l}` (receiver, delivery or retrieval)"
                )));
            }
        }
    }
    Ok(out)
}

/// Splits the scan budget: each log gets an equal share of what is left,
/// smaller logs first so that their unused share goes to the bigger ones.
fn budgets(log_dir: &Path, logs: &[&'static str], total: u64) -> Vec<(&'static str, u64)> {
    let mut sized: Vec<(&'static str, u64)> = logs
        .iter()
        .map(|l| {
            let size = log_files(log_dir, l)
                .iter()
                .filter_map(|p| std::fs::metadata(p).ok())
                .map(|m| m.len())
                .fold(0u64, u64::saturating_add);
            (*l, size)
        })
        .collect();
    sized.sort_by_key(|(_, s)| *s);
    let mut left = total;
    let n = sized.len() as u64;
    let mut out = Vec::new();
    for (i, (l, size)) in sized.into_iter().enumerate() {
        let share = left / (n - i as u64).max(1);
        let take = size.min(share);
        left -= take;
        out.push((l, take));
    }
    out
}

fn lower(s: &str) -> String {
    s.to_ascii_lowercase()
}

/// Runs a log viewer query over the logs in `log_dir`.
pub fn search(log_dir: &Path, query: &LogQuery) -> Result<Vec<LogEvent>, OpsError> {
    let logs = selected_logs(&query.logs)?;
    let limit = match query.limit {
        0 => MAX_RESULTS,
        n => n.min(MAX_RESULTS),
    };
    let address = query
        .address
        .as_deref()
        .map(lower)
        .filter(|s| !s.is_empty());
    let text = query.text.as_deref().map(lower).filter(|s| !s.is_empty());
    let queue_id = query
        .queue_id
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let mut found: Vec<Found> = Vec::new();
    let mut seq = 0usize;
    for (log, budget) in budgets(log_dir, &logs, MAX_SCAN_BYTES) {
        let mut lines = RevLines::open(&log_files(log_dir, log), budget);
        let mut taken = 0usize;
        while let Some(line) = lines.next_line() {
            seq += 1;
            if let Some(q) = queue_id
                && !line.contains(q)
            {
                continue;
            }
            let lowered = (address.is_some() || text.is_some()).then(|| lower(&line));
            if let (Some(t), Some(l)) = (&text, &lowered)
                && !l.contains(t.as_str())
            {
                continue;
            }
            if let (Some(a), Some(l)) = (&address, &lowered)
                && !l.contains(a.as_str())
            {
                continue;
            }
            // Cheap head parse first: the time window ends the scan.
            let Some(head) = parse_head(&line) else {
                continue;
            };
            let micros = time_micros(head.time);
            if let Some(since) = query.since
                && micros != 0
                && micros < since.saturating_mul(1_000_000)
            {
                break;
            }
            if let Some(until) = query.until
                && micros > until.saturating_add(1).saturating_mul(1_000_000)
            {
                continue;
            }
            let Some(event) = parse_line(log, &line) else {
                continue;
            };
            if let Some(q) = queue_id
                && !event.fields.iter().any(|(_, v)| v == q)
            {
                continue;
            }
            if let Some(a) = &address
                && !event
                    .fields
                    .iter()
                    .any(|(_, v)| lower(v).contains(a.as_str()))
            {
                continue;
            }
            found.push(Found { micros, seq, event });
            taken += 1;
            if taken >= limit {
                break;
            }
        }
    }
    // Newest last, and only the newest `limit` of the merged logs.
    found.sort_by_key(|f| (f.micros, std::cmp::Reverse(f.seq)));
    let skip = found.len().saturating_sub(limit);
    Ok(found.into_iter().skip(skip).map(|f| f.event).collect())
}

/// An address as compared: lowercase, without angle brackets or quotes.
fn norm_address(s: &str) -> String {
    s.trim()
        .trim_matches(|c| c == '<' || c == '>' || c == '"')
        .to_ascii_lowercase()
}

/// Whether a field value (one address, or a list like `["a@b", "c@d"]` or
/// `a@b,c@d`) names `addr` (normalised).
fn value_has_address(value: &str, addr: &str) -> bool {
    value
        .split(|c: char| c == ',' || c == '[' || c == ']' || c.is_whitespace())
        .any(|part| !part.is_empty() && norm_address(part) == addr)
}

/// A Message-ID as compared: without angle brackets and spaces.
fn norm_message_id(s: &str) -> String {
    s.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
        .to_string()
}

/// The field names that carry a sender or a recipient.
const SENDER_FIELDS: [&str; 2] = ["from", "sender"];
const RECIPIENT_FIELDS: [&str; 4] = ["to", "rcpt", "dest", "original"];

/// Whether `event` is about a message `key` looks for.
fn matches_key(event: &LogEvent, key: &TraceKey, needle: &str) -> bool {
    let any = |names: &[&str], f: &dyn Fn(&str) -> bool| {
        event
            .fields
            .iter()
            .any(|(k, v)| names.contains(&k.as_str()) && f(v))
    };
    match key {
        TraceKey::QueueId(_) => event.fields.iter().any(|(_, v)| v == needle),
        TraceKey::Sender(_) => any(&SENDER_FIELDS, &|v| value_has_address(v, needle)),
        TraceKey::Recipient(_) => any(&RECIPIENT_FIELDS, &|v| value_has_address(v, needle)),
        TraceKey::MessageId(_) => any(&["message_id"], &|v| norm_message_id(v) == needle),
    }
}

/// The values of every `..._id=` field of a raw line (queue_id, bounce_id,
/// reply_id...), without parsing the whole line.
fn id_values(line: &str) -> impl Iterator<Item = &str> {
    line.match_indices("id=").filter_map(move |(i, _)| {
        let before_ok = i == 0 || {
            let b = line.as_bytes()[i - 1];
            b == b'_' || b == b' '
        };
        if !before_ok {
            return None;
        }
        let rest = &line[i + 3..];
        let end = rest.find(' ').unwrap_or(rest.len());
        Some(rest[..end].trim_matches('"'))
    })
}

/// The traces of the messages `key` finds (newest first, at most `limit`).
pub fn trace(log_dir: &Path, key: &TraceKey, limit: usize) -> Result<Vec<Trace>, OpsError> {
    let limit = limit.clamp(1, MAX_TRACES);
    let (needle, raw_needle) = match key {
        TraceKey::QueueId(q) => (q.trim().to_string(), q.trim().to_string()),
        TraceKey::Sender(a) | TraceKey::Recipient(a) => {
            let a = norm_address(a);
            (a.clone(), a)
        }
        TraceKey::MessageId(m) => {
            let m = norm_message_id(m);
            (m.clone(), m)
        }
    };
    if needle.is_empty() || needle.len() > 1000 {
        return Err(OpsError::Invalid(
            "key: give a queue id, an address or a Message-ID".into(),
        ));
    }
    // Every log's lines, newest first, within the budget.
    let mut all: Vec<(&'static str, Vec<String>)> = Vec::new();
    for (log, budget) in budgets(log_dir, &LOG_NAMES, MAX_SCAN_BYTES) {
        let mut lines = RevLines::open(&log_files(log_dir, log), budget);
        let mut v = Vec::new();
        while let Some(l) = lines.next_line() {
            v.push(l);
        }
        all.push((log, v));
    }

    // Pass 1: the queue ids, each with the time it was last seen.
    let mut ids: HashMap<String, i64> = HashMap::new();
    if let TraceKey::QueueId(_) = key {
        ids.insert(needle.clone(), 0);
    } else {
        let case_insensitive = !matches!(key, TraceKey::MessageId(_));
        // One searcher and one lowercase buffer for every line.
        let finder = memchr::memmem::Finder::new(raw_needle.as_bytes());
        let mut lowered: Vec<u8> = Vec::new();
        for (log, lines) in &all {
            for line in lines {
                let hit = if case_insensitive {
                    lowered.clear();
                    lowered.extend(line.bytes().map(|b| b.to_ascii_lowercase()));
                    finder.find(&lowered).is_some()
                } else {
                    finder.find(line.as_bytes()).is_some()
                };
                if !hit {
                    continue;
                }
                let Some(event) = parse_line(log, line) else {
                    continue;
                };
                if !matches_key(&event, key, &needle) {
                    continue;
                }
                let Some(q) = event.field("queue_id") else {
                    continue;
                };
                let micros = time_micros(&event.time);
                let seen = ids.entry(q.to_string()).or_insert(micros);
                *seen = (*seen).max(micros);
            }
        }
    }
    let mut ordered: Vec<(String, i64)> = ids.into_iter().collect();
    ordered.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    ordered.truncate(limit);
    let wanted: HashSet<&str> = ordered.iter().map(|(q, _)| q.as_str()).collect();

    // Pass 2: every event naming one of those ids.
    let mut events: HashMap<String, Vec<Found>> = HashMap::new();
    let mut seq = 0usize;
    for (log, lines) in &all {
        // Oldest first within a log, so equal stamps keep file order.
        for line in lines.iter().rev() {
            seq += 1;
            let Some(id) = id_values(line).find(|v| wanted.contains(v)) else {
                continue;
            };
            let slot = events.entry(id.to_string()).or_default();
            if slot.len() >= MAX_TRACE_EVENTS {
                continue;
            }
            let Some(event) = parse_line(log, line) else {
                continue;
            };
            // The id must be a whole field value, not part of one.
            if !event.fields.iter().any(|(_, v)| v == id) {
                continue;
            }
            let micros = time_micros(&event.time);
            slot.push(Found { micros, seq, event });
        }
    }
    let mut traces = Vec::new();
    for (q, _) in ordered {
        let Some(mut found) = events.remove(&q) else {
            continue;
        };
        found.sort_by_key(|f| (f.micros, f.seq));
        traces.push(Trace {
            queue_id: q,
            events: found.into_iter().map(|f| f.event).collect(),
        });
    }
    Ok(traces)
}

#[cfg(test)]
mod tests;
