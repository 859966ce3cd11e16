//! Cleaning up after a crash, run by `Spool::open` (and callable again):
//! temporary files nobody will finish, and state files whose message is gone.
//!
//! The CLI opens the spool while the server runs, so a temporary file is
//! only removed when its writer cannot be working on it any more: the
//! process named in its name is gone and the file is older than
//! `DEAD_WRITER_AGE`, or the file is older than `ANY_WRITER_AGE` whatever
//! the process (a writer holds a temporary file for milliseconds, since
//! the message is already in memory). A leftover that is not old enough
//! yet is harmless: nothing ever reads `tmp/`.

use crate::layout::{self, Layout};
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// A temporary file of a dead process is stale after this long.
pub const DEAD_WRITER_AGE: Duration = Duration::from_secs(30);
/// Any temporary file is stale after this long.
pub const ANY_WRITER_AGE: Duration = Duration::from_secs(3600);
/// Bound on directory entries examined per cleanup of one directory.
const MAX_ENTRIES: usize = 1_000_000;

/// What a cleanup removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CleanupReport {
    /// Temporary files from writes that were never acknowledged.
    pub stale_tmp: usize,
    /// State files whose queue file was missing.
    pub orphan_states: usize,
}

/// Removes stale temporary files and orphan state files.
pub fn cleanup(layout: &Layout, now: SystemTime) -> io::Result<CleanupReport> {
    let mut report = CleanupReport::default();
    for entry in std::fs::read_dir(&layout.tmp)?.take(MAX_ENTRIES) {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let meta = match entry.metadata() {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if meta.is_dir() {
            tracing::warn!(path = %entry.path().display(), "unexpected directory in spool tmp/, left alone");
            continue;
        }
        let age = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .unwrap_or_default();
        let writer_alive = layout::tmp_writer_pid(&name).is_some_and(process_alive);
        let stale = age > ANY_WRITER_AGE || (!writer_alive && age > DEAD_WRITER_AGE);
        if stale {
            remove_quietly(&entry.path())?;
            tracing::info!(file = %name, "removed unfinished spool file left by a crash");
            report.stale_tmp += 1;
        }
    }
    for entry in std::fs::read_dir(&layout.state)?.take(MAX_ENTRIES) {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let Some(id) = layout::state_file_id(&name) else {
            continue;
        };
        let queue_file = layout.queue_file(&id).map_err(io::Error::other)?;
        if !exists(&queue_file)? {
            remove_quietly(&entry.path())?;
            tracing::info!(queue_id = %id, "removed state file of a message no longer queued");
            report.orphan_states += 1;
        }
    }
    Ok(report)
}

/// The files in `free/` (finished queue files kept for reuse), at most
/// `max`; the rest are removed. Anything but a plain file is left alone.
pub fn adopt_free(free: &Path, max: usize) -> io::Result<Vec<std::path::PathBuf>> {
    let mut kept = Vec::new();
    for entry in std::fs::read_dir(free)?.take(MAX_ENTRIES) {
        let entry = entry?;
        let is_file = match entry.file_type() {
            Ok(t) => t.is_file(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if !is_file {
            tracing::warn!(path = %entry.path().display(), "unexpected entry in spool free/, left alone");
        } else if kept.len() < max {
            kept.push(entry.path());
        } else {
            remove_quietly(&entry.path())?;
        }
    }
    Ok(kept)
}

fn exists(path: &Path) -> io::Result<bool> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

fn remove_quietly(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Whether process `pid` exists (this one always does).
fn process_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    // pid 0 and values beyond pid_t would address process groups.
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 sends nothing; it only checks that the
    // process exists and may be signalled. No memory is involved.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::QueueId;
    use std::fs::File;

    fn layout() -> (tempfile::TempDir, Layout) {
        let dir = tempfile::tempdir().unwrap();
        let l = Layout::new(dir.path());
        for d in [&l.tmp, &l.queue, &l.state] {
            std::fs::create_dir(d).unwrap();
        }
        (dir, l)
    }

    fn age(path: &Path, by: Duration) {
        let f = File::options().write(true).open(path).unwrap();
        f.set_modified(SystemTime::now() - by).unwrap();
    }

    #[test]
    fn liveness() {
        assert!(process_alive(std::process::id()));
        assert!(process_alive(1), "init exists");
        assert!(!process_alive(0));
        assert!(!process_alive(u32::MAX));
        assert!(!process_alive(2_000_000_000), "beyond pid_max");
    }

    #[test]
    fn removes_only_what_no_writer_can_finish() {
        let (_d, l) = layout();
        let id = QueueId::generate();
        let dead_old = l.tmp.join(format!("{id}.2000000000.1.tmp"));
        let dead_new = l.tmp.join(format!("{id}.2000000000.2.tmp"));
        let ours_old = l.tmp.join(format!("{id}.{}.3.tmp", std::process::id()));
        let ours_ancient = l.tmp.join(format!("{id}.{}.4.tmp", std::process::id()));
        let junk_old = l.tmp.join("junk");
        for p in [&dead_old, &dead_new, &ours_old, &ours_ancient, &junk_old] {
            std::fs::write(p, b"half a mess").unwrap();
        }
        age(&dead_old, Duration::from_secs(120));
        age(&ours_old, Duration::from_secs(120));
        age(&ours_ancient, Duration::from_secs(7200));
        age(&junk_old, Duration::from_secs(120));
        let report = cleanup(&l, SystemTime::now()).unwrap();
        assert_eq!(report.stale_tmp, 3);
        assert!(!dead_old.exists());
        assert!(!ours_ancient.exists());
        assert!(!junk_old.exists());
        assert!(
            dead_new.exists(),
            "a fresh file may belong to a writer in another pid namespace"
        );
        assert!(ours_old.exists(), "a live writer's file stays");
    }

    #[test]
    fn removes_orphan_states_only() {
        let (_d, l) = layout();
        let kept = QueueId::generate();
        let orphan = QueueId::generate();
        std::fs::write(l.queue_file(&kept).unwrap(), b"q").unwrap();
        std::fs::write(l.state_file(&kept).unwrap(), b"{}").unwrap();
        std::fs::write(l.state_file(&orphan).unwrap(), b"{}").unwrap();
        std::fs::write(l.state.join("README"), b"not ours").unwrap();
        let report = cleanup(&l, SystemTime::now()).unwrap();
        assert_eq!(report.orphan_states, 1);
        assert!(l.state_file(&kept).unwrap().exists());
        assert!(!l.state_file(&orphan).unwrap().exists());
        assert!(l.state.join("README").exists());
    }
}
