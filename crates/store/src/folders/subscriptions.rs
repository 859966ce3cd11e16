//! The subscriptions file: `subscriptions` in the Maildir root, one IMAP
//! folder name (UTF-8) per line, as Courier's Maildir++ keeps it. Changes
//! are read-modify-write under an `flock` of the Maildir root directory
//! (no lost update between sessions or processes) and land atomically
//! (temporary file, fsync, rename).

use crate::StoreError;
use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

/// The file's name in the Maildir root.
pub const FILE: &str = "subscriptions";
/// Largest subscriptions file read.
const MAX_FILE: u64 = 1 << 20;
/// Most subscriptions kept.
const MAX_ENTRIES: usize = 10_000;

/// The subscribed names.
pub fn read(root: &Path) -> Result<BTreeSet<String>, StoreError> {
    let file = match crate::fsio::open_no_follow(&root.join(FILE)) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(e) => return Err(e.into()),
    };
    let mut data = Vec::new();
    file.take(MAX_FILE).read_to_end(&mut data)?;
    let text = String::from_utf8_lossy(&data);
    Ok(text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .take(MAX_ENTRIES)
        .map(str::to_string)
        .collect())
}

/// Adds (`on`) or removes `names`; returns whether the file changed.
pub fn set(root: &Path, names: &[&str], on: bool) -> Result<bool, StoreError> {
    let dir = File::open(root)?;
    dir.lock()?;
    let mut subs = read(root)?;
    let mut changed = false;
    for name in names {
        changed |= if on {
            subs.len() < MAX_ENTRIES && subs.insert((*name).to_string())
        } else {
            subs.remove(*name)
        };
    }
    if changed {
        write(root, &subs)?;
    }
    // Closing `dir` releases the lock.
    Ok(changed)
}

/// Renames the subscriptions of `from` and its children to `to`.
pub fn rename(root: &Path, from: &str, to: &str) -> Result<(), StoreError> {
    let dir = File::open(root)?;
    dir.lock()?;
    let subs = read(root)?;
    let prefix = format!("{from}/");
    let mut changed = false;
    let renamed: BTreeSet<String> = subs
        .into_iter()
        .map(|s| {
            if s == from {
                changed = true;
                to.to_string()
            } else if let Some(rest) = s.strip_prefix(&prefix) {
                changed = true;
                format!("{to}/{rest}")
            } else {
                s
            }
        })
        .collect();
    if changed {
        write(root, &renamed)?;
    }
    Ok(())
}

fn write(root: &Path, subs: &BTreeSet<String>) -> Result<(), StoreError> {
    let tmp = root.join(format!(".{FILE}.tmp"));
    let mut text = String::new();
    for s in subs {
        text.push_str(s);
        text.push('\n');
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_data()?;
    std::fs::rename(&tmp, root.join(FILE))?;
    Ok(())
}

use std::os::unix::fs::OpenOptionsExt;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_read_rename() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(dir.path()).unwrap().is_empty());
        assert!(set(dir.path(), &["Sent", "A", "A/B", "AB"], true).unwrap());
        assert!(!set(dir.path(), &["Sent"], true).unwrap());
        rename(dir.path(), "A", "Z").unwrap();
        let got: Vec<String> = read(dir.path()).unwrap().into_iter().collect();
        assert_eq!(got, vec!["AB", "Sent", "Z", "Z/B"]);
        assert!(set(dir.path(), &["Sent"], false).unwrap());
        assert!(!read(dir.path()).unwrap().contains("Sent"));
        let text = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
        assert_eq!(text, "AB\nZ\nZ/B\n");
    }
}
