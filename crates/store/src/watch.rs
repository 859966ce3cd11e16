//! Change signals: a per-folder counter bumped by every change made in
//! this process, which IDLE sessions poll (cheaply) to push new mail
//! within a second of its delivery.

use std::sync::atomic::{AtomicU64, Ordering};

/// A folder's change counter.
#[derive(Debug, Default)]
pub struct ChangeSignal {
    generation: AtomicU64,
}

impl ChangeSignal {
    /// The current generation; compare with an earlier read.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Marks a change.
    pub fn bump(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

/// The process-wide registry of change signals, keyed by folder
/// directory. Entries are weak: a folder nobody watches costs nothing,
/// and dead entries are swept when the map grows.
static REGISTRY: Mutex<Option<HashMap<PathBuf, Weak<ChangeSignal>>>> = Mutex::new(None);
/// Sweep dead entries when the map reaches this size (then doubles).
const SWEEP_AT: usize = 1024;

fn registry() -> MutexGuard<'static, Option<HashMap<PathBuf, Weak<ChangeSignal>>>> {
    REGISTRY.lock().unwrap_or_else(|p| p.into_inner())
}

/// The signal of the folder stored in directory `dir` (made on demand).
pub(crate) fn signal_for(dir: &Path) -> Arc<ChangeSignal> {
    let mut guard = registry();
    let map = guard.get_or_insert_with(HashMap::new);
    if let Some(s) = map.get(dir).and_then(Weak::upgrade) {
        return s;
    }
    if map.len() >= SWEEP_AT && map.len().is_power_of_two() {
        map.retain(|_, w| w.strong_count() > 0);
    }
    let s = Arc::new(ChangeSignal::default());
    map.insert(dir.to_path_buf(), Arc::downgrade(&s));
    s
}

/// Bumps the signal of the folder in `dir` if anyone watches it.
pub(crate) fn notify(dir: &Path) {
    let signal = registry()
        .as_ref()
        .and_then(|m| m.get(dir))
        .and_then(Weak::upgrade);
    if let Some(s) = signal {
        s.bump();
    }
}

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_reaches_watchers_of_that_folder_only() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        let sa = signal_for(&a);
        let sa2 = signal_for(&a);
        let sb = signal_for(&b);
        assert!(Arc::ptr_eq(&sa, &sa2));
        let (ga, gb) = (sa.generation(), sb.generation());
        notify(&a);
        assert_eq!(sa.generation(), ga + 1);
        assert_eq!(sb.generation(), gb);
        // Nobody watching: nothing kept alive, nothing panics.
        drop((sa, sa2));
        notify(&a);
        let fresh = signal_for(&a);
        assert_eq!(fresh.generation(), 0);
    }
}
