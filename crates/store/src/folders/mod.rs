//! The Maildir++ folder tree of one mailbox: IMAP folder names (UTF-8,
//! `/` as delimiter) checked and mapped to `.Name` directories, listing,
//! and the subscriptions file.
//!
//! On disk a folder `A/B` is the directory `.A.B` beside `cur/ new/ tmp/`
//! (Maildir++ as Dovecot, Courier and mutt read it). Each component is
//! written in modified UTF-7 (RFC 3501 5.1.3, as Dovecot stores Maildir++
//! names). A literal `.` inside a component would read as hierarchy, so
//! it is escaped as `\2e` (and `\` itself as `\5c`), the convention of
//! Dovecot's `listescape` plugin: `v1.2` is `.v1\2e2` on disk.
//!
//! Refused (`StoreError::BadFolderName`): empty names and components, a
//! leading `/`, `..`, `~` anywhere, the LIST wildcards `*` and `%`,
//! control characters, names over [`MAX_NAME_LEN`] bytes or
//! [`MAX_DEPTH`] levels. `INBOX` (any case) is the Maildir root; `INBOX/x`
//! is the ordinary folder `.INBOX.x`.

mod mutf7;
pub mod subscriptions;

use crate::StoreError;
use crate::account::SpecialUse;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Longest accepted IMAP folder name, in bytes.
pub const MAX_NAME_LEN: usize = 512;
/// Most hierarchy levels in a folder name.
pub const MAX_DEPTH: usize = 16;
/// Most folders listed in one mailbox.
pub const MAX_FOLDERS: usize = 10_000;
/// Longest on-disk directory name (file systems allow 255 bytes).
const MAX_DIR_NAME: usize = 255;

/// The folders made for every mailbox, with their SPECIAL-USE.
pub const SPECIAL_FOLDERS: [(&str, SpecialUse); 5] = [
    ("Sent", SpecialUse::Sent),
    ("Drafts", SpecialUse::Drafts),
    ("Trash", SpecialUse::Trash),
    ("Junk", SpecialUse::Junk),
    ("Archive", SpecialUse::Archive),
];

/// A checked folder name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderName {
    /// The canonical IMAP name (`INBOX` upper-cased when it leads).
    pub imap: String,
    /// The directory name under the Maildir root (`.A.B`); `None` for INBOX.
    pub dir: Option<String>,
}

impl FolderName {
    /// Whether this is INBOX itself.
    pub fn is_inbox(&self) -> bool {
        self.dir.is_none()
    }

    /// The folder's Maildir directory under `root`.
    pub fn path(&self, root: &Path) -> PathBuf {
        match &self.dir {
            None => root.to_path_buf(),
            Some(d) => root.join(d),
        }
    }
}

fn bad(name: &str) -> StoreError {
    let shown: String = name.chars().take(80).collect();
    StoreError::BadFolderName(shown)
}

/// Checks `name` and maps it to its directory (see module docs).
pub fn parse(name: &str) -> Result<FolderName, StoreError> {
    if name.is_empty()
        || name.len() > MAX_NAME_LEN
        || name.starts_with('/')
        || name.contains("..")
        || name
            .chars()
            .any(|c| c.is_control() || matches!(c, '~' | '*' | '%'))
    {
        return Err(bad(name));
    }
    let components: Vec<&str> = name.split('/').collect();
    if components.len() > MAX_DEPTH || components.iter().any(|c| c.is_empty()) {
        return Err(bad(name));
    }
    if components.len() == 1 && components[0].eq_ignore_ascii_case("INBOX") {
        return Ok(FolderName {
            imap: "INBOX".to_string(),
            dir: None,
        });
    }
    let mut imap = String::with_capacity(name.len());
    let mut dir = String::with_capacity(name.len() + 8);
    for (i, comp) in components.iter().enumerate() {
        let comp = if i == 0 && comp.eq_ignore_ascii_case("INBOX") {
            "INBOX"
        } else {
            comp
        };
        if i > 0 {
            imap.push('/');
        }
        imap.push_str(comp);
        dir.push('.');
        dir.push_str(&mutf7::encode(&escape(comp)));
    }
    if dir.len() > MAX_DIR_NAME {
        return Err(bad(name));
    }
    Ok(FolderName {
        imap,
        dir: Some(dir),
    })
}

/// The IMAP name of an on-disk folder directory (`.A.B`), if it is one of
/// ours to show; `None` for names that do not decode or would be refused.
pub fn from_dir(dir_name: &[u8]) -> Option<FolderName> {
    let rest = dir_name.strip_prefix(b".")?;
    if rest.is_empty() || rest.starts_with(b".") {
        return None;
    }
    let text = std::str::from_utf8(rest).ok()?;
    let mut imap = String::with_capacity(text.len());
    for (i, comp) in text.split('.').enumerate() {
        if i > 0 {
            imap.push('/');
        }
        imap.push_str(&unescape(&mutf7::decode(comp)?));
    }
    let parsed = parse(&imap).ok()?;
    // Only the canonical spelling: `.inbox.x` and `.INBOX.x` are not both shown.
    (parsed.dir.as_deref().map(str::as_bytes) == Some(dir_name)).then_some(parsed)
}

/// `.` and `\` escaped as `\2e` / `\5c` (see module docs).
fn escape(comp: &str) -> String {
    let mut out = String::with_capacity(comp.len());
    for c in comp.chars() {
        match c {
            '.' => out.push_str("\\2e"),
            '\\' => out.push_str("\\5c"),
            c => out.push(c),
        }
    }
    out
}

fn unescape(comp: &str) -> String {
    let mut out = String::with_capacity(comp.len());
    let mut rest = comp;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let decoded = after
            .get(..2)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .filter(u8::is_ascii);
        match decoded {
            Some(b) => {
                out.push(char::from(b));
                rest = &after[2..];
            }
            None => {
                out.push('\\');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The SPECIAL-USE of a folder name (the top-level names we create).
pub fn special_use(imap: &str) -> Option<SpecialUse> {
    SPECIAL_FOLDERS
        .iter()
        .find(|(n, _)| *n == imap)
        .map(|&(_, u)| u)
}

/// Every folder directory under `root` (INBOX not included), sorted by
/// IMAP name. Entries that are not directories or do not decode are
/// skipped; at most [`MAX_FOLDERS`].
pub fn scan(root: &Path) -> Result<Vec<FolderName>, StoreError> {
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(folder) = from_dir(name.as_bytes()) else {
            continue;
        };
        // d_type where the file system gives it; symlinks are not folders.
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        out.push(folder);
        if out.len() >= MAX_FOLDERS {
            tracing::warn!(root = %root.display(), "folder listing truncated");
            break;
        }
    }
    out.sort_by(|a, b| a.imap.cmp(&b.imap));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbox_is_the_root_in_any_case() {
        for n in ["INBOX", "inbox", "InBox"] {
            let f = parse(n).unwrap();
            assert!(f.is_inbox());
            assert_eq!(f.imap, "INBOX");
        }
        let child = parse("inbox/Lists").unwrap();
        assert_eq!(child.imap, "INBOX/Lists");
        assert_eq!(child.dir.as_deref(), Some(".INBOX.Lists"));
    }

    #[test]
    fn hierarchy_and_utf7_on_disk() {
        let f = parse("Projects/2026").unwrap();
        assert_eq!(f.dir.as_deref(), Some(".Projects.2026"));
        let f = parse("Entw\u{fc}rfe/R&D").unwrap();
        assert_eq!(f.dir.as_deref(), Some(".Entw&APw-rfe.R&-D"));
        assert_eq!(
            from_dir(b".Entw&APw-rfe.R&-D").unwrap().imap,
            "Entw\u{fc}rfe/R&D"
        );
        let f = parse("\u{65e5}\u{672c}\u{8a9e}").unwrap();
        assert_eq!(f.dir.as_deref(), Some(".&ZeVnLIqe-"));
    }

    #[test]
    fn literal_dots_are_escaped_not_hierarchy() {
        let f = parse("v1.2/a\\b").unwrap();
        assert_eq!(f.dir.as_deref(), Some(".v1\\2e2.a\\5cb"));
        let back = from_dir(f.dir.as_deref().unwrap().as_bytes()).unwrap();
        assert_eq!(back.imap, "v1.2/a\\b");
        // A foreign backslash that is no escape stays as it is.
        assert_eq!(unescape("a\\zz"), "a\\zz");
        assert_eq!(unescape("a\\"), "a\\");
    }

    #[test]
    fn hostile_names_are_refused() {
        let long = "a".repeat(MAX_NAME_LEN + 1);
        let deep = vec!["a"; MAX_DEPTH + 1].join("/");
        for n in [
            "", "/etc", "a//b", "a/", "..", "a/../b", "a..b", "~root", "a/~b", "x~", "a*", "b%",
            "a\tb", "a\0b", "a\u{7f}", &long, &deep,
        ] {
            assert!(
                matches!(parse(n), Err(StoreError::BadFolderName(_))),
                "{n:?} accepted"
            );
        }
    }

    #[test]
    fn foreign_directories() {
        assert!(from_dir(b"..").is_none());
        assert!(from_dir(b".").is_none());
        assert!(from_dir(b"cur").is_none());
        assert!(from_dir(b"..x").is_none());
        assert!(from_dir(b".a..b").is_none());
        assert!(from_dir(b".&bad").is_none(), "bad utf-7");
        assert!(from_dir(b".\xff").is_none());
        // Non-canonical spellings are not shown twice.
        assert!(from_dir(b".inbox.x").is_none());
        assert_eq!(from_dir(b".Sent").unwrap().imap, "Sent");
    }

    #[test]
    fn scan_lists_folder_dirs_sorted() {
        let dir = tempfile::tempdir().unwrap();
        for d in [".Sent", ".A.B", ".A", "cur", ".x~", ".bad&"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        std::fs::write(dir.path().join(".file"), b"").unwrap();
        let names: Vec<String> = scan(dir.path())
            .unwrap()
            .into_iter()
            .map(|f| f.imap)
            .collect();
        assert_eq!(names, vec!["A", "A/B", "Sent"]);
        assert!(scan(&dir.path().join("none")).unwrap().is_empty());
    }

    #[test]
    fn special_uses() {
        assert_eq!(special_use("Trash"), Some(SpecialUse::Trash));
        assert_eq!(special_use("trash"), None);
        assert_eq!(special_use("A/Sent"), None);
    }
}
