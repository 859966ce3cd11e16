//! The dashboard's figures: queue size and oldest entry, deliveries,
//! deferrals and bounces in the last hour and day (from the delivery log),
//! disk space left where mailboxes and spool live, and recent errors.

use crate::logs::{self, LogEvent, RevLines, parse_head, parse_line, time_micros};
use crate::{Admin, OpsError};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Counts over a time window.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WindowCounts {
    pub received: u64,
    pub delivered: u64,
    pub deferred: u64,
    pub bounced: u64,
}

/// Free space of one file system.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DiskSpace {
    /// What lives there (`mailboxes`, `spool`).
    pub what: String,
    pub path: String,
    pub free_bytes: u64,
    pub total_bytes: u64,
}

/// Everything the dashboard shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Dashboard {
    pub queue_length: usize,
    /// Age in seconds of the oldest queued message.
    pub queue_oldest_secs: Option<u64>,
    pub last_hour: WindowCounts,
    pub last_day: WindowCounts,
    pub disks: Vec<DiskSpace>,
    /// The latest warnings and errors from all logs (newest last, ≤ 20).
    pub recent_errors: Vec<crate::logs::LogEvent>,
}

/// Warnings and errors shown.
pub const RECENT_ERRORS: usize = 20;
const HOUR: i64 = 3600;
const DAY: i64 = 86_400;

impl Admin {
    /// Gathers the dashboard figures (bounded reads; no full log scans
    /// beyond the last day).
    pub fn dashboard(&self) -> Result<Dashboard, OpsError> {
        let now = chrono::Utc::now().timestamp();
        let queue = self.queue().list()?;
        let queue_oldest_secs = queue
            .iter()
            .map(|e| e.envelope.created_at)
            .min()
            .map(|t| u64::try_from(now.saturating_sub(t)).unwrap_or(0));
        let tally = scan_logs(&self.config.log_dir(), now);
        let mut disks = Vec::new();
        let places = [
            ("mailboxes", mailbox_root(&self.config.mailbox_template())),
            ("spool", self.config.spool_dir()),
        ];
        for (what, path) in places {
            match disk_space(&path) {
                Ok((free_bytes, total_bytes)) => disks.push(DiskSpace {
                    what: what.into(),
                    path: path.display().to_string(),
                    free_bytes,
                    total_bytes,
                }),
                Err(e) => {
                    tracing::debug!(path = %path.display(), error = %e, "no disk space figures")
                }
            }
        }
        Ok(Dashboard {
            queue_length: queue.len(),
            queue_oldest_secs,
            last_hour: tally.hour,
            last_day: tally.day,
            disks,
            recent_errors: tally.errors,
        })
    }
}

/// What one scan of the logs found.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub hour: WindowCounts,
    pub day: WindowCounts,
    /// Newest last.
    pub errors: Vec<LogEvent>,
}

/// What a line counts as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Received,
    Delivered,
    Deferred,
    Bounced,
}

/// Classifies a line's body (after time and level) of log `log`.
fn kind(log: &str, rest: &str) -> Option<Kind> {
    use memchr::memmem::Finder;
    use std::sync::LazyLock;
    // Built once: the dashboard runs these over a day of log lines.
    static QUEUED: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(": message queued "));
    static DONE: LazyLock<Finder<'static>> =
        LazyLock::new(|| Finder::new("already delivered to every destination"));
    static STATUS: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(" status="));
    match log {
        "receiver" => QUEUED
            .find(rest.as_bytes())
            .is_some()
            .then_some(Kind::Received),
        "delivery" => {
            // A recipient whose every destination was done earlier is not
            // a new delivery.
            if DONE.find(rest.as_bytes()).is_some() {
                return None;
            }
            let at = STATUS.find(rest.as_bytes())?;
            let value = rest[at + 8..].split(' ').next().unwrap_or("");
            match value.trim_matches('"') {
                "sent" => Some(Kind::Delivered),
                "deferred" => Some(Kind::Deferred),
                "bounced" => Some(Kind::Bounced),
                _ => None,
            }
        }
        _ => None,
    }
}

fn bump(c: &mut WindowCounts, k: Kind) {
    match k {
        Kind::Received => c.received += 1,
        Kind::Delivered => c.delivered += 1,
        Kind::Deferred => c.deferred += 1,
        Kind::Bounced => c.bounced += 1,
    }
}

/// Counts the last hour and day and keeps the latest warnings and errors,
/// reading each log newest first within the scan budget; a log's scan ends
/// at the first line older than a day once it has its errors.
pub(crate) fn scan_logs(log_dir: &Path, now: i64) -> Tally {
    let mut tally = Tally::default();
    let mut errors: Vec<(i64, LogEvent)> = Vec::new();
    let budget = logs::MAX_SCAN_BYTES / logs::LOG_NAMES.len() as u64;
    let day_ago = (now - DAY).saturating_mul(1_000_000);
    let hour_ago = (now - HOUR).saturating_mul(1_000_000);
    for log in logs::LOG_NAMES {
        let mut lines = RevLines::open(&logs::log_files(log_dir, log), budget);
        let mut log_errors = 0usize;
        while let Some(line) = lines.next_line() {
            let Some(head) = parse_head(&line) else {
                continue;
            };
            let micros = time_micros(head.time);
            let in_day = micros >= day_ago;
            if !in_day && log_errors >= RECENT_ERRORS {
                break;
            }
            if in_day && let Some(k) = kind(log, head.rest) {
                bump(&mut tally.day, k);
                if micros >= hour_ago {
                    bump(&mut tally.hour, k);
                }
            }
            if log_errors < RECENT_ERRORS
                && matches!(head.level, "WARN" | "ERROR")
                && let Some(e) = parse_line(log, &line)
            {
                errors.push((micros, e));
                log_errors += 1;
            }
        }
    }
    errors.sort_by_key(|(m, _)| *m);
    let skip = errors.len().saturating_sub(RECENT_ERRORS);
    tally.errors = errors.into_iter().skip(skip).map(|(_, e)| e).collect();
    tally
}

/// The directory that holds every mailbox: the template up to its first
/// component with a `%` placeholder (`/srv/mail/%d/%u` -> `/srv/mail`).
pub fn mailbox_root(template: &str) -> PathBuf {
    let mut root = PathBuf::new();
    for c in Path::new(template).components() {
        if c.as_os_str().to_string_lossy().contains('%') {
            break;
        }
        root.push(c);
    }
    if root.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        root
    }
}

/// Free (for unprivileged users) and total bytes of the file system that
/// holds `path`, or its nearest existing ancestor.
// The statvfs field types differ between platforms (u32 or u64).
#[allow(clippy::useless_conversion)]
pub fn disk_space(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let mut p = path;
    while !p.exists() {
        match p.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => p = parent,
            _ => {
                p = Path::new(".");
                break;
            }
        }
    }
    let c = std::ffi::CString::new(p.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in path"))?;
    // SAFETY: statvfs only writes into the zeroed struct we own, and reads
    // the NUL-terminated path that lives until the call returns.
    let (rc, st) = unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        let rc = libc::statvfs(c.as_ptr(), &mut st);
        (rc, st)
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let frsize = u64::from(st.f_frsize);
    let free = u64::from(st.f_bavail).saturating_mul(frsize);
    let total = u64::from(st.f_blocks).saturating_mul(frsize);
    Ok((free, total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write;

    fn stamp(t: i64) -> String {
        chrono::DateTime::from_timestamp(t, 123_000)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    }

    #[test]
    fn counts_windows_and_keeps_recent_errors() {
        let d = tempfile::tempdir().unwrap();
        let now = 1_800_000_000;
        let mut receiver = String::new();
        let mut delivery = String::new();
        // Two days ago, a day and a half, 2 hours ago, 10 minutes ago.
        for (age, n) in [(2 * DAY, 5), (DAY + DAY / 2, 4), (2 * HOUR, 3), (600, 2)] {
            for i in 0..n {
                let t = stamp(now - age + i);
                writeln!(receiver, "{t}  INFO postamt_receiver::session: message queued queue_id=q{age}{i} from=a@b size=1 nrcpt=1").unwrap();
                writeln!(delivery, "{t}  INFO postamt_delivery::attempt: delivered queue_id=q{age}{i} to=b@c dest=b status=sent delay=1").unwrap();
                writeln!(delivery, "{t}  INFO postamt_delivery::attempt: delivery deferred queue_id=q{age}{i} to=d@e dest=d@e reason=451 4.3.0 later status=deferred delay=1").unwrap();
                writeln!(delivery, "{t}  INFO postamt_delivery::attempt: already delivered to every destination queue_id=q{age}{i} to=b@c dest=b status=sent delay=1").unwrap();
            }
        }
        let t = stamp(now - 60);
        writeln!(delivery, "{t}  WARN postamt_delivery::attempt: delivery failed queue_id=qx to=x@y dest=x@y reason=550 5.1.1 unknown status=bounced delay=1").unwrap();
        for i in 0..30 {
            writeln!(receiver, "{}  WARN postamt_receiver::session: too many errors, closing peer=192.0.2.{i}:1 errors=20", stamp(now - 3000 + i)).unwrap();
        }
        writeln!(
            receiver,
            "{t}  INFO postamt_receiver::session: message rejected peer=1.2.3.4:5 reply=550 x"
        )
        .unwrap();
        std::fs::write(d.path().join("receiver.log"), receiver).unwrap();
        std::fs::write(d.path().join("delivery.log"), delivery).unwrap();
        std::fs::write(
            d.path().join("retrieval.log"),
            format!(
                "{}  ERROR postamt_pop3::session: cannot open mailbox user=bob\n",
                stamp(now - 5)
            ),
        )
        .unwrap();

        let t = scan_logs(d.path(), now);
        assert_eq!(
            t.hour,
            WindowCounts {
                received: 2,
                delivered: 2,
                deferred: 2,
                bounced: 1
            }
        );
        assert_eq!(
            t.day,
            WindowCounts {
                received: 5,
                delivered: 5,
                deferred: 5,
                bounced: 1
            }
        );
        assert_eq!(t.errors.len(), RECENT_ERRORS);
        assert!(t.errors.windows(2).all(|w| w[0].unix <= w[1].unix));
        let last = t.errors.last().unwrap();
        assert_eq!(
            (last.log.as_str(), last.level.as_str()),
            ("retrieval", "ERROR")
        );
        assert!(t.errors.iter().any(|e| e.message == "delivery failed"));
        assert!(t.errors.iter().all(|e| e.level != "INFO"));
    }

    #[test]
    fn no_logs_no_counts() {
        let d = tempfile::tempdir().unwrap();
        let t = scan_logs(&d.path().join("missing"), 1_800_000_000);
        assert_eq!(t.day, WindowCounts::default());
        assert!(t.errors.is_empty());
    }

    #[test]
    fn mailbox_root_stops_at_the_first_placeholder() {
        assert_eq!(
            mailbox_root("/var/lib/postamt/mailboxes/%u"),
            Path::new("/var/lib/postamt/mailboxes")
        );
        assert_eq!(
            mailbox_root("/srv/mail/%d/%u/Maildir"),
            Path::new("/srv/mail")
        );
        assert_eq!(mailbox_root("/home/%u/Maildir"), Path::new("/home"));
        assert_eq!(mailbox_root("%u"), Path::new("."));
    }

    #[test]
    fn disk_space_of_a_real_and_a_missing_path() {
        let d = tempfile::tempdir().unwrap();
        let (free, total) = disk_space(d.path()).unwrap();
        assert!(total > 0 && free <= total);
        // A path not made yet reports its nearest existing ancestor.
        let (_, total2) = disk_space(&d.path().join("a/b/c")).unwrap();
        assert_eq!(total, total2);
    }

    #[test]
    fn dashboard_of_a_fresh_install() {
        let d = tempfile::tempdir().unwrap();
        let text = format!("data_dir = \"{}\"\n", d.path().display());
        let config = postamt_config::parse(&text, Path::new("x.toml")).unwrap();
        let admin = Admin::open(std::sync::Arc::new(config)).unwrap();
        let dash = admin.dashboard().unwrap();
        assert_eq!(dash.queue_length, 0);
        assert_eq!(dash.queue_oldest_secs, None);
        let what: Vec<&str> = dash.disks.iter().map(|d| d.what.as_str()).collect();
        assert_eq!(what, vec!["mailboxes", "spool"]);
        assert!(dash.disks.iter().all(|d| d.total_bytes > 0));
    }
}
