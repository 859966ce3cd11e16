//! Shared snapshots: sessions share one copy of the records until one
//! changes something, updates are incremental (metas kept), the diff
//! between snapshots is what a session announces, a rebuilt index is
//! never mistaken for the old one, and idle snapshots are bounded.

use super::*;
use crate::{FlagOp, Flags, MailStore};
use std::time::Duration;

const QID: &str = "0193f1c2a4b57c3d8e9f0a1b2c3d4e5f";

fn store(dir: &Path) -> MailStore {
    MailStore::new(&format!("{}/%u", dir.display()), "example.org", true)
}

fn msg(subject: &str) -> Vec<u8> {
    format!("From: Ann <ann@example.org>\r\nSubject: {subject}\r\n\r\nbody\r\n").into_bytes()
}

fn seen() -> Flags {
    Flags {
        seen: true,
        ..Flags::default()
    }
}

fn record(uid: u32, modseq: u64) -> MessageRecord {
    MessageRecord {
        uid,
        modseq,
        flags: Flags::default(),
        size: 1,
        internal_date: 0,
        queue_id: None,
        meta: Arc::new(MessageMeta::default()),
    }
}

fn snap(records: &[(u32, u64)]) -> Snap {
    Snap {
        generation: 1,
        uid_validity: 7,
        modseq: 10,
        uid_next: 100,
        messages: records.iter().map(|&(u, m)| record(u, m)).collect(),
        files: records
            .iter()
            .map(|&(u, _)| Arc::from(format!("new/{u}.x").as_bytes()))
            .collect(),
    }
}

#[test]
fn diff_reports_expunged_added_and_changed() {
    let old = snap(&[(1, 1), (2, 2), (3, 3), (5, 5)]);
    let mut new = snap(&[(2, 2), (3, 9), (4, 8), (5, 5), (6, 10)]);
    assert_eq!(diff(&old, &old), Changes::default());
    let d = diff(&old, &new);
    assert_eq!(d.expunged, vec![1]);
    assert_eq!(d.added, vec![4, 6]);
    assert_eq!(d.flags_changed, vec![3]);
    // A flag difference with the same modseq counts too.
    new.messages[1].modseq = 3;
    new.messages[1].flags.flagged = true;
    assert_eq!(diff(&old, &new).flags_changed, vec![3]);
    // Everything gone.
    let empty = snap(&[]);
    assert_eq!(diff(&old, &empty).expunged, vec![1, 2, 3, 5]);
    assert_eq!(diff(&empty, &old).added, vec![1, 2, 3, 5]);
}

#[test]
fn retain_keeps_files_alongside() {
    let mut s = snap(&[(1, 1), (2, 2), (3, 3)]);
    s.retain(|u| u != 2);
    assert_eq!(
        s.messages.iter().map(|m| m.uid).collect::<Vec<_>>(),
        vec![1, 3]
    );
    assert_eq!(&s.files[1][..], b"new/3.x");
    assert_eq!(base_of(b"cur/123.abc:2,S"), b"123.abc");
    assert_eq!(base_of(b"new/123.abc"), b"123.abc");
}

#[test]
fn sessions_share_one_snapshot_until_one_writes() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    for i in 0..4 {
        s.deliver("bob", &msg(&format!("m{i}")), QID).unwrap();
    }
    let acc = s.account("bob").unwrap();
    let mut a = acc.open("INBOX").unwrap();
    let mut b = acc.open("INBOX").unwrap();
    assert!(Arc::ptr_eq(&a.snap, &b.snap), "one copy for both");
    // A session reopened later still gets it (nothing changed).
    drop(acc.open("INBOX").unwrap());
    // A write gives the writer its own copy; the other keeps the old one.
    a.store_flags(&[2], FlagOp::Add, &seen(), None).unwrap();
    assert!(!Arc::ptr_eq(&a.snap, &b.snap));
    assert!(a.messages()[1].flags.seen && !b.messages()[1].flags.seen);
    // The other session hears of it; the writer does not (its own change).
    assert_eq!(b.refresh().unwrap().flags_changed, vec![2]);
    assert_eq!(a.refresh().unwrap(), Changes::default());
    // ...and both share the reloaded snapshot again.
    assert!(Arc::ptr_eq(&a.snap, &b.snap));
    assert_eq!(a.highest_modseq(), b.highest_modseq());
}

#[test]
fn updates_are_incremental_and_keep_metas() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    for i in 0..3 {
        s.deliver("bob", &msg(&format!("m{i}")), QID).unwrap();
    }
    let acc = s.account("bob").unwrap();
    let mut a = acc.open("INBOX").unwrap();
    let mut b = acc.open("INBOX").unwrap();
    let metas: Vec<Arc<MessageMeta>> = a.messages().iter().map(|m| Arc::clone(&m.meta)).collect();
    s.deliver("bob", &msg("m3"), QID).unwrap();
    b.store_flags(&[1], FlagOp::Add, &seen(), None).unwrap();
    let changes = a.refresh().unwrap();
    assert_eq!(changes.added, vec![4]);
    assert_eq!(changes.flags_changed, vec![1]);
    // Not decoded again: the same metas, the changed message's too.
    for (m, old) in a.messages().iter().zip(&metas) {
        assert!(Arc::ptr_eq(&m.meta, old), "uid {}", m.uid);
    }
    assert_eq!(
        a.messages()[3].meta.envelope.subject.as_deref(),
        Some(&b"m3"[..])
    );
    assert!(a.messages()[0].flags.seen);
    // Expunged by the other session: gone from the update.
    b.store_flags(
        &[2],
        FlagOp::Add,
        &Flags {
            deleted: true,
            ..Flags::default()
        },
        None,
    )
    .unwrap();
    assert_eq!(b.expunge(None).unwrap(), vec![2]);
    let changes = a.refresh().unwrap();
    assert_eq!(changes.expunged, vec![2]);
    assert_eq!(
        a.messages().iter().map(|m| m.uid).collect::<Vec<_>>(),
        vec![1, 3, 4]
    );
    assert_eq!(a.read(4).unwrap(), msg("m3"));
}

#[test]
fn a_snapshot_of_another_connection_is_not_reused() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    s.deliver("bob", &msg("m0"), QID).unwrap();
    let acc = s.account("bob").unwrap();
    let a = acc.open("INBOX").unwrap();
    let first = Arc::clone(&a.snap);
    drop(a);
    // The index is replaced behind the process's back (a restore): the
    // counters may even match, the snapshot must not be taken for it.
    std::thread::sleep(Duration::from_millis(1100));
    for f in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(acc.root().join(format!("{}{f}", crate::INDEX_FILE)));
    }
    let b = acc.open("INBOX").unwrap();
    assert!(!Arc::ptr_eq(&first, &b.snap));
    assert_ne!(first.generation, b.snap.generation);
    assert_eq!(b.messages().len(), 1);
}

#[test]
fn a_deleted_folder_is_no_such_folder_for_open_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let acc = s.account("bob").unwrap();
    acc.create("Work").unwrap();
    let mut f = acc.open("Work").unwrap();
    acc.delete("Work").unwrap();
    assert!(matches!(f.refresh(), Err(StoreError::NoSuchFolder(_))));
}

#[test]
fn idle_snapshots_are_bounded_most_recent_kept() {
    let now = Instant::now();
    let at = |secs: u64| Some(now + Duration::from_secs(secs));
    let idle = |v: &[(Option<Instant>, usize, &str)]| {
        v.iter()
            .map(|(t, n, k)| (*t, *n, PathBuf::from(k)))
            .collect::<Vec<_>>()
    };
    // Within both bounds: nothing goes.
    assert!(evictions(idle(&[(at(1), 10, "a"), (at(2), 10, "b")]), 2, 20).is_empty());
    // Too many messages: the oldest goes.
    assert_eq!(
        evictions(idle(&[(at(1), 10, "a"), (at(2), 15, "b")]), 5, 20),
        vec![PathBuf::from("a")]
    );
    // Too many folders: the least recently used go, never-used first.
    let mut out = evictions(
        idle(&[
            (at(3), 1, "c"),
            (None, 1, "n"),
            (at(1), 1, "a"),
            (at(2), 1, "b"),
        ]),
        2,
        100,
    );
    out.sort();
    assert_eq!(out, vec![PathBuf::from("a"), PathBuf::from("n")]);
    // One snapshot alone above the budget is not kept.
    assert_eq!(
        evictions(idle(&[(at(1), 50, "big")]), 5, 20),
        vec![PathBuf::from("big")]
    );
}

/// Sets the mtimes of `dir`'s `new/` and `cur/` to `when`.
fn backdate(dir: &Path, when: std::time::SystemTime) {
    for sub in ["new", "cur"] {
        let d = std::fs::File::open(dir.join(sub)).unwrap();
        d.set_modified(when).unwrap();
    }
}

#[test]
fn unchanged_directories_are_not_scanned_again() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    for i in 0..2 {
        s.deliver("bob", &msg(&format!("m{i}")), QID).unwrap();
    }
    let acc = s.account("bob").unwrap();
    let root = acc.root().to_path_buf();
    let past = std::time::SystemTime::now() - Duration::from_secs(60);
    backdate(&root, past);
    let mut f = acc.open("INBOX").unwrap();
    assert!(files_checked(&root).is_some(), "the scan's stamp holds");
    assert_eq!(acc.status("INBOX").unwrap().messages, 2);
    // A file dropped in by another program, the directory's mtime put
    // back (as if within the same tick): trusted, not rescanned.
    let name = crate::place::fresh_name(None, 10);
    std::fs::write(root.join("new").join(&name), msg("x")).unwrap();
    backdate(&root, past);
    assert_eq!(f.refresh().unwrap(), Changes::default());
    assert_eq!(acc.status("INBOX").unwrap().messages, 2);
    // Any real change moves the mtime: seen by STATUS and the session.
    let other = crate::place::fresh_name(None, 10);
    std::fs::write(root.join("new").join(&other), msg("y")).unwrap();
    assert!(files_checked(&root).is_none());
    assert_eq!(acc.status("INBOX").unwrap().messages, 4);
    assert_eq!(f.refresh().unwrap().added, vec![3, 4]);
}
