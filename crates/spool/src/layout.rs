//! Where things live under the spool directory, and the names of temporary
//! files. Every path for a message goes through here, and here the queue id
//! is checked once more, so no id can ever name a file outside the spool.
//!
//! ```text
//! <spool>/tmp/<id>.<pid>.<n>.tmp    being written (queue file or state file)
//! <spool>/queue/<id>                one queue file per message (see `format`)
//! <spool>/state/<id>.json           current envelope, when it changed since arrival
//! <spool>/free/<pid>.<n>            finished queue files kept for reuse (never read)
//! ```

use crate::{QueueId, SpoolError};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Per-process counter that keeps temporary names distinct.
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// This process's id (asked once: `getpid` is a system call every time).
fn pid() -> u32 {
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *PID.get_or_init(std::process::id)
}

/// The spool's directories.
#[derive(Clone, Debug)]
pub struct Layout {
    pub root: PathBuf,
    pub tmp: PathBuf,
    pub queue: PathBuf,
    pub state: PathBuf,
    pub free: PathBuf,
}

impl Layout {
    pub fn new(root: &Path) -> Layout {
        Layout {
            root: root.to_path_buf(),
            tmp: root.join("tmp"),
            queue: root.join("queue"),
            state: root.join("state"),
            free: root.join("free"),
        }
    }

    /// The queue file of `id`.
    pub fn queue_file(&self, id: &QueueId) -> Result<PathBuf, SpoolError> {
        Ok(self.queue.join(checked(id)?))
    }

    /// The state file of `id`.
    pub fn state_file(&self, id: &QueueId) -> Result<PathBuf, SpoolError> {
        Ok(self.state.join(format!("{}.json", checked(id)?)))
    }

    /// A fresh name under `free/`, owned by this process.
    pub fn free_file(&self) -> PathBuf {
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        self.free.join(format!("{}.{n}", pid()))
    }

    /// A fresh temporary file name for `id`, owned by this process.
    pub fn tmp_file(&self, id: &QueueId) -> Result<PathBuf, SpoolError> {
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{}.{}.{n}.tmp", checked(id)?, pid());
        Ok(self.tmp.join(name))
    }
}

fn checked(id: &QueueId) -> Result<&str, SpoolError> {
    if id.is_canonical() {
        Ok(id.as_str())
    } else {
        let shown: String = id.as_str().chars().take(64).collect();
        Err(SpoolError::NotFound(shown))
    }
}

/// The writer's process id in a temporary file name, if it is one of ours.
pub fn tmp_writer_pid(name: &str) -> Option<u32> {
    let mut parts = name.split('.');
    let id = parts.next()?;
    let pid = parts.next()?.parse().ok()?;
    let _n: u64 = parts.next()?.parse().ok()?;
    (crate::id::is_canonical(id) && parts.next() == Some("tmp") && parts.next().is_none())
        .then_some(pid)
}

/// The id in a state file name (`<id>.json`).
pub fn state_file_id(name: &str) -> Option<QueueId> {
    let id = name.strip_suffix(".json")?;
    crate::id::is_canonical(id).then(|| QueueId(id.to_string()))
}

/// The id in a queue file name.
pub fn queue_file_id(name: &str) -> Option<QueueId> {
    crate::id::is_canonical(name).then(|| QueueId(name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_spool() {
        let l = Layout::new(Path::new("/spool"));
        let id = QueueId::generate();
        assert_eq!(
            l.queue_file(&id).unwrap(),
            Path::new("/spool/queue").join(&id.0)
        );
        assert_eq!(
            l.state_file(&id).unwrap(),
            Path::new("/spool/state").join(format!("{id}.json"))
        );
        for bad in [
            "../x",
            "",
            "/etc/passwd",
            "0193F1C2A4B57C3D8E9F0A1B2C3D4E5F",
        ] {
            let bad = QueueId(bad.into());
            assert!(matches!(l.queue_file(&bad), Err(SpoolError::NotFound(_))));
            assert!(l.state_file(&bad).is_err());
            assert!(l.tmp_file(&bad).is_err());
        }
    }

    #[test]
    fn tmp_names_are_distinct_and_parse_back() {
        let l = Layout::new(Path::new("/spool"));
        let id = QueueId::generate();
        let a = l.tmp_file(&id).unwrap();
        let b = l.tmp_file(&id).unwrap();
        assert_ne!(a, b);
        let name = a.file_name().unwrap().to_str().unwrap();
        assert_eq!(tmp_writer_pid(name), Some(std::process::id()));
        assert_eq!(tmp_writer_pid("junk"), None);
        assert_eq!(tmp_writer_pid(&format!("{id}.12.3.tmp.x")), None);
        assert_eq!(tmp_writer_pid(&format!("{id}.12.3.tmp")), Some(12));
    }

    #[test]
    fn file_names_to_ids() {
        let id = QueueId::generate();
        assert_eq!(state_file_id(&format!("{id}.json")), Some(id.clone()));
        assert_eq!(queue_file_id(&id.0), Some(id.clone()));
        assert_eq!(state_file_id(&id.0), None);
        assert_eq!(queue_file_id(".hidden"), None);
        assert_eq!(queue_file_id(&format!("{id}.json")), None);
    }
}
