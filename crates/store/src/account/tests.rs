//! Account and folder behaviour on real Maildirs in temporary directories.

use crate::{FlagOp, Flags, MailStore, StoreError};
use std::path::Path;

const QID: &str = "0193f1c2a4b57c3d8e9f0a1b2c3d4e5f";

fn store(dir: &Path) -> MailStore {
    MailStore::new(&format!("{}/%u", dir.display()), "example.org", true)
}

fn msg(subject: &str) -> Vec<u8> {
    format!("From: Ann <ann@example.org>\r\nSubject: {subject}\r\n\r\nbody of {subject}\r\n")
        .into_bytes()
}

fn seen() -> Flags {
    Flags {
        seen: true,
        ..Flags::default()
    }
}

fn deleted() -> Flags {
    Flags {
        deleted: true,
        ..Flags::default()
    }
}

fn uids(f: &crate::Folder) -> Vec<u32> {
    f.messages().iter().map(|m| m.uid).collect()
}

#[test]
fn new_account_has_special_folders_subscribed() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let acc = s.account("Bob").unwrap();
    assert_eq!(acc.user(), "bob");
    let list = acc.list().unwrap();
    let names: Vec<&str> = list.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        vec!["INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash"]
    );
    for f in &list[1..] {
        assert!(f.subscribed && f.exists && f.special_use.is_some(), "{f:?}");
        assert!(acc.root().join(format!(".{}", f.name)).join("cur").is_dir());
        assert!(
            acc.root()
                .join(format!(".{}", f.name))
                .join("maildirfolder")
                .is_file()
        );
    }
    // Deleting one is respected: the folders are made only once.
    acc.delete("Junk").unwrap();
    let again = s.account("bob").unwrap();
    assert!(!again.list().unwrap().iter().any(|f| f.name == "Junk"));
}

#[test]
fn existing_mailbox_gets_special_folders_and_keeps_mail() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    s.deliver("carol", &msg("old"), QID).unwrap();
    let acc = s.account("carol").unwrap();
    assert!(acc.list().unwrap().iter().any(|f| f.name == "Sent"));
    let inbox = acc.open("INBOX").unwrap();
    assert_eq!(inbox.messages().len(), 1);
}

#[test]
fn no_mailbox_without_auto_create() {
    let dir = tempfile::tempdir().unwrap();
    let s = MailStore::new(
        &format!("{}/%u", dir.path().display()),
        "example.org",
        false,
    );
    assert!(matches!(s.account("bob"), Err(StoreError::NoMailbox(_))));
    assert!(matches!(s.account("../x"), Err(StoreError::InvalidUser(_))));
}

#[test]
fn bad_folder_names_are_refused_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let acc = store(dir.path()).account("bob").unwrap();
    for bad in ["../x", "/abs", "~x", "a//b", "a/..", ""] {
        assert!(
            matches!(acc.create(bad), Err(StoreError::BadFolderName(_))),
            "{bad}"
        );
        assert!(
            matches!(acc.open(bad), Err(StoreError::BadFolderName(_))),
            "{bad}"
        );
        assert!(matches!(
            acc.append(bad, b"x", &Flags::default(), None),
            Err(StoreError::BadFolderName(_))
        ));
        assert!(matches!(
            acc.subscribe(bad, true),
            Err(StoreError::BadFolderName(_))
        ));
    }
    // Nothing escaped the mailbox.
    assert!(!dir.path().join("x").exists());
}

#[test]
fn create_list_delete_rename_with_hierarchy() {
    let dir = tempfile::tempdir().unwrap();
    let acc = store(dir.path()).account("bob").unwrap();
    acc.create("Projects/2026/Q1").unwrap();
    assert!(matches!(
        acc.create("Projects"),
        Err(StoreError::FolderExists(_))
    ));
    assert!(matches!(
        acc.create("inbox"),
        Err(StoreError::FolderExists(_))
    ));
    acc.create("v1.2/").unwrap();
    assert!(acc.root().join(".v1\\2e2").is_dir());
    let list = acc.list().unwrap();
    let p = list.iter().find(|f| f.name == "Projects").unwrap();
    assert!(p.exists && p.has_children);
    let q = list.iter().find(|f| f.name == "Projects/2026/Q1").unwrap();
    assert!(q.exists && !q.has_children);

    acc.append("Projects/2026", &msg("a"), &Flags::default(), None)
        .unwrap();
    acc.delete("Projects/2026").unwrap();
    let list = acc.list().unwrap();
    let mid = list.iter().find(|f| f.name == "Projects/2026").unwrap();
    assert!(
        !mid.exists && mid.has_children,
        "kept as a \\Noselect parent"
    );
    assert!(matches!(
        acc.open("Projects/2026"),
        Err(StoreError::NoSuchFolder(_))
    ));
    assert!(matches!(
        acc.delete("INBOX"),
        Err(StoreError::NotAllowed(_))
    ));
    assert!(matches!(
        acc.delete("Nope"),
        Err(StoreError::NoSuchFolder(_))
    ));

    acc.subscribe("Projects", true).unwrap();
    let (_, uid) = acc.append("Projects", &msg("p"), &seen(), None).unwrap();
    acc.rename("Projects", "Work/Old").unwrap();
    let list = acc.list().unwrap();
    let names: Vec<&str> = list.iter().map(|f| f.name.as_str()).collect();
    assert!(
        names.contains(&"Work/Old") && names.contains(&"Work/Old/2026/Q1"),
        "{names:?}"
    );
    assert!(
        !names.iter().any(|n| n.starts_with("Projects")),
        "{names:?}"
    );
    assert!(
        list.iter()
            .find(|f| f.name == "Work/Old")
            .unwrap()
            .subscribed
    );
    // The UIDs came along.
    let f = acc.open("Work/Old").unwrap();
    assert_eq!(uids(&f), vec![uid]);
    assert!(matches!(
        acc.rename("Work", "Sent"),
        Err(StoreError::FolderExists(_))
    ));
    assert!(matches!(
        acc.rename("Nope", "Other"),
        Err(StoreError::NoSuchFolder(_))
    ));
}

#[test]
fn uids_and_uidvalidity_survive_reopen_and_pop3_reads() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    for i in 0..5 {
        s.deliver("bob", &msg(&format!("m{i}")), QID).unwrap();
    }
    let acc = s.account("bob").unwrap();
    let f = acc.open("INBOX").unwrap();
    assert_eq!(uids(&f), vec![1, 2, 3, 4, 5]);
    let validity = f.uid_validity();
    // Opening renames nothing: the messages stay in new/ until their
    // flags change (POP3 and IMAP read both directories).
    assert_eq!(
        std::fs::read_dir(acc.root().join("new")).unwrap().count(),
        5
    );
    assert_eq!(
        std::fs::read_dir(acc.root().join("cur")).unwrap().count(),
        0
    );
    let md = s.open("bob").unwrap();
    let pop = md.messages().unwrap();
    assert_eq!(pop.len(), 5);
    assert_eq!(md.read(&pop[0]).unwrap(), msg("m0"));
    drop(f);
    // A "restart": a new store value, same files.
    let s2 = store(dir.path());
    let f = s2.account("bob").unwrap().open("INBOX").unwrap();
    assert_eq!(uids(&f), vec![1, 2, 3, 4, 5]);
    assert_eq!(f.uid_validity(), validity);
    assert_eq!(f.read(1).unwrap(), msg("m0"));
    assert_eq!(f.uid_next(), 6);
}

#[test]
fn delivery_indexes_meta_so_sessions_need_not_read_files() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let name = s.deliver("bob", &msg("delivered"), QID).unwrap();
    assert!(crate::flush_index_writes(), "the index writer answers");
    // Change the file behind the index's back: the meta stays the one
    // parsed at delivery (the file is not read again).
    let path = s.mailbox_dir("bob").unwrap().join("new").join(&name);
    std::fs::write(&path, msg("changed")).unwrap();
    let f = s.account("bob").unwrap().open("INBOX").unwrap();
    let m = &f.messages()[0];
    assert_eq!(m.meta.envelope.subject.as_deref(), Some(&b"delivered"[..]));
    assert_eq!(m.queue_id.as_deref(), Some(QID));
    assert_eq!(m.size, msg("delivered").len() as u64);
    assert!(m.internal_date > 1_600_000_000);
}

#[test]
fn rebuild_after_the_index_is_deleted_or_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    for i in 0..3 {
        s.deliver("bob", &msg(&format!("m{i}")), QID).unwrap();
    }
    // The index writer done with them, so it cannot make the index again
    // right after this test removed it.
    assert!(crate::flush_index_writes());
    let acc = s.account("bob").unwrap();
    let mut f = acc.open("INBOX").unwrap();
    f.store_flags(&[2], FlagOp::Add, &seen(), None).unwrap();
    let validity = f.uid_validity();
    drop(f);
    let index = acc.root().join(crate::INDEX_FILE);
    std::fs::remove_file(&index).unwrap();
    let _ = std::fs::remove_file(acc.root().join(format!("{}-wal", crate::INDEX_FILE)));
    let _ = std::fs::remove_file(acc.root().join(format!("{}-shm", crate::INDEX_FILE)));
    // No pause: a new UIDVALIDITY even within the same second.
    let f = acc.open("INBOX").unwrap();
    assert_eq!(f.messages().len(), 3);
    assert_ne!(f.uid_validity(), validity, "UIDs could not be kept");
    let subjects: Vec<_> = f
        .messages()
        .iter()
        .map(|m| m.meta.envelope.subject.clone().unwrap())
        .collect();
    assert_eq!(
        subjects,
        vec![b"m0".to_vec(), b"m1".to_vec(), b"m2".to_vec()]
    );
    // The \Seen flag lived on in the file name.
    assert!(f.messages()[1].flags.seen && !f.messages()[0].flags.seen);
    drop(f);

    // Garbage instead of a database (a new file, as a restore would make).
    let junk = acc.root().join("junk");
    std::fs::write(&junk, vec![0x55u8; 8192]).unwrap();
    std::fs::rename(&junk, &index).unwrap();
    let _ = std::fs::remove_file(acc.root().join(format!("{}-wal", crate::INDEX_FILE)));
    let _ = std::fs::remove_file(acc.root().join(format!("{}-shm", crate::INDEX_FILE)));
    let f = acc.open("INBOX").unwrap();
    assert_eq!(f.messages().len(), 3);
    let aside = std::fs::read_dir(acc.root())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("damaged")
        })
        .count();
    assert_eq!(aside, 1, "the damaged file is kept aside");
}

#[test]
fn pop3_deletion_is_an_expunge_for_imap() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    for i in 0..3 {
        s.deliver("bob", &msg(&format!("m{i}")), QID).unwrap();
    }
    let acc = s.account("bob").unwrap();
    let mut f = acc.open("INBOX").unwrap();
    let signal = acc.signal("INBOX").unwrap();
    let g0 = signal.generation();
    let before = f.highest_modseq();
    let md = s.open("bob").unwrap();
    let pop = md.messages().unwrap();
    md.delete(&pop[1..2]).unwrap();
    assert!(signal.generation() > g0, "POP3 deletion bumps the signal");
    let changes = f.refresh().unwrap();
    assert_eq!(changes.expunged, vec![2]);
    assert!(changes.added.is_empty());
    assert_eq!(uids(&f), vec![1, 3]);
    assert!(f.highest_modseq() > before);
    assert_eq!(f.vanished_since(before).unwrap(), vec![2]);
    assert!(f.vanished_since(f.highest_modseq()).unwrap().is_empty());
}

#[test]
fn two_sessions_see_each_others_flags_and_new_mail() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    s.deliver("bob", &msg("one"), QID).unwrap();
    let acc = s.account("bob").unwrap();
    let mut a = acc.open("INBOX").unwrap();
    let mut b = acc.open("INBOX").unwrap();
    let m0 = b.messages()[0].modseq;
    let out = a.store_flags(&[1], FlagOp::Add, &seen(), None).unwrap();
    assert_eq!(out.changed, vec![1]);
    assert!(a.messages()[0].flags.seen);
    let changes = b.refresh().unwrap();
    assert_eq!(changes.flags_changed, vec![1]);
    assert!(b.messages()[0].flags.seen);
    assert!(b.messages()[0].modseq > m0);
    assert_eq!(b.messages()[0].modseq, a.messages()[0].modseq);
    // The flag is mirrored into the file name.
    let cur: Vec<String> = std::fs::read_dir(acc.root().join("cur"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(cur[0].ends_with(":2,S"), "{cur:?}");
    // Nothing new: an empty refresh.
    assert_eq!(a.refresh().unwrap(), crate::Changes::default());

    // New mail shows in both.
    s.deliver("bob", &msg("two"), QID).unwrap();
    assert_eq!(a.refresh().unwrap().added, vec![2]);
    assert_eq!(b.refresh().unwrap().added, vec![2]);
    // Keywords, and a session reading a message renamed by the other.
    let mut kw = Flags::default();
    kw.add_keyword("$Work");
    b.store_flags(
        &[2],
        FlagOp::Add,
        &Flags {
            flagged: true,
            ..kw
        },
        None,
    )
    .unwrap();
    assert_eq!(a.read(2).unwrap(), msg("two"), "found by base name");
    a.refresh().unwrap();
    assert!(a.messages()[1].flags.has_keyword("$work"));
}

#[test]
fn unchanged_since_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    s.deliver("bob", &msg("one"), QID).unwrap();
    s.deliver("bob", &msg("two"), QID).unwrap();
    let acc = s.account("bob").unwrap();
    let mut a = acc.open("INBOX").unwrap();
    let mut b = acc.open("INBOX").unwrap();
    let known = b.messages()[0].modseq.max(b.messages()[1].modseq);
    a.store_flags(&[1], FlagOp::Add, &seen(), None).unwrap();
    let out = b
        .store_flags(
            &[1, 2],
            FlagOp::Add,
            &Flags {
                flagged: true,
                ..Flags::default()
            },
            Some(known),
        )
        .unwrap();
    assert_eq!(out.conflicts, vec![1]);
    assert_eq!(out.changed, vec![2]);
    let changes = b.refresh().unwrap();
    assert_eq!(changes.flags_changed, vec![1]);
    assert!(b.messages()[0].flags.seen && !b.messages()[0].flags.flagged);
    // A no-op store changes nothing.
    let out = b
        .store_flags(
            &[2],
            FlagOp::Add,
            &Flags {
                flagged: true,
                ..Flags::default()
            },
            None,
        )
        .unwrap();
    assert!(out.changed.is_empty());
}

#[test]
fn expunge_and_vanished_since() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    for i in 0..4 {
        s.deliver("bob", &msg(&format!("m{i}")), QID).unwrap();
    }
    let acc = s.account("bob").unwrap();
    let mut a = acc.open("INBOX").unwrap();
    let mut b = acc.open("INBOX").unwrap();
    let start = a.highest_modseq();
    a.store_flags(&[1, 2, 4], FlagOp::Add, &deleted(), None)
        .unwrap();
    assert_eq!(a.expunge(Some(&[2, 3, 4])).unwrap(), vec![2, 4]);
    assert_eq!(uids(&a), vec![1, 3]);
    let mid = a.highest_modseq();
    assert_eq!(a.expunge(None).unwrap(), vec![1]);
    assert_eq!(uids(&a), vec![3]);
    let changes = b.refresh().unwrap();
    assert_eq!(changes.expunged, vec![1, 2, 4]);
    assert_eq!(uids(&b), vec![3]);
    assert_eq!(a.vanished_since(start).unwrap(), vec![1, 2, 4]);
    assert_eq!(a.vanished_since(mid).unwrap(), vec![1]);
    // The files are gone; POP3 agrees.
    assert_eq!(s.open("bob").unwrap().messages().unwrap().len(), 1);
}

#[test]
fn copy_and_move_with_uidplus_data() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    for i in 0..3 {
        s.deliver("bob", &msg(&format!("m{i}")), QID).unwrap();
    }
    let acc = s.account("bob").unwrap();
    let mut inbox = acc.open("INBOX").unwrap();
    inbox.store_flags(&[2], FlagOp::Add, &seen(), None).unwrap();
    let archive = acc.status("Archive").unwrap();
    let copied = inbox.copy(&[3, 2, 99], "Archive").unwrap();
    assert_eq!(copied.source, vec![3, 2]);
    assert_eq!(copied.dest, vec![archive.uid_next, archive.uid_next + 1]);
    assert_eq!(copied.uid_validity, archive.uid_validity);
    let dest = acc.open("Archive").unwrap();
    assert_eq!(dest.messages().len(), 2);
    assert!(dest.messages()[1].flags.seen, "flags kept");
    assert_eq!(dest.read(copied.dest[0]).unwrap(), msg("m2"));
    assert_eq!(
        dest.messages()[0].meta.envelope.subject.as_deref(),
        Some(&b"m2"[..])
    );
    assert_eq!(inbox.messages().len(), 3, "copy leaves the source");

    assert!(matches!(
        inbox.copy(&[1], "Nope"),
        Err(StoreError::NoSuchFolder(_))
    ));
    let moved = inbox.move_to(&[1, 2], "Trash").unwrap();
    assert_eq!(moved.source, vec![1, 2]);
    assert_eq!(moved.dest.len(), 2);
    assert_eq!(uids(&inbox), vec![3]);
    let trash = acc.open("Trash").unwrap();
    assert_eq!(trash.read(moved.dest[0]).unwrap(), msg("m0"));
    let mut other = acc.open("INBOX").unwrap();
    assert!(other.refresh().unwrap().expunged.is_empty());
    assert_eq!(uids(&other), vec![3]);
    assert!(matches!(
        inbox.move_to(&[3], "INBOX"),
        Err(StoreError::NotAllowed(_))
    ));
    // Copy into the same folder: new UIDs, loaded at the next refresh.
    let again = inbox.copy(&[3], "inbox").unwrap();
    assert_eq!(again.dest, vec![4]);
    assert_eq!(inbox.refresh().unwrap().added, vec![4]);
}

#[test]
fn append_status_and_recent() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let acc = s.account("bob").unwrap();
    let (validity, uid) = acc
        .append(
            "Drafts",
            &msg("draft"),
            &Flags {
                draft: true,
                ..seen()
            },
            Some(1_000_000_000),
        )
        .unwrap();
    assert_eq!(uid, 1);
    let st = acc.status("Drafts").unwrap();
    assert_eq!(st.uid_validity, validity);
    assert_eq!(
        (st.messages, st.unseen, st.recent, st.uid_next),
        (1, 0, 1, 2)
    );
    assert_eq!(st.size, msg("draft").len() as u64);
    let f = acc.open("Drafts").unwrap();
    assert_eq!(f.first_recent_uid(), 1, "first session claims it");
    let m = &f.messages()[0];
    assert_eq!(m.internal_date, 1_000_000_000);
    assert!(m.flags.draft && m.flags.seen);
    let g = acc.open("Drafts").unwrap();
    assert_eq!(g.first_recent_uid(), 2, "already claimed");
    assert_eq!(acc.status("Drafts").unwrap().recent, 0);

    // A new message after both opened: recent for a session that refreshes.
    s.deliver("bob", &msg("x"), QID).unwrap();
    let st = acc.status("INBOX").unwrap();
    assert_eq!((st.messages, st.unseen, st.recent), (1, 1, 1));
    // EXAMINE claims nothing and moves nothing.
    let ex = acc.examine("INBOX").unwrap();
    assert!(ex.is_read_only());
    assert_eq!(
        std::fs::read_dir(acc.root().join("new")).unwrap().count(),
        1
    );
    assert_eq!(acc.status("INBOX").unwrap().recent, 1);
    assert!(matches!(
        acc.status("Nope"),
        Err(StoreError::NoSuchFolder(_))
    ));
}

#[test]
fn flags_changed_by_another_maildir_reader_are_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    s.deliver("bob", &msg("one"), QID).unwrap();
    let acc = s.account("bob").unwrap();
    let mut f = acc.open("INBOX").unwrap();
    let before = f.messages()[0].modseq;
    // mutt marks it flagged and seen (moving it from new/ to cur/).
    let cur = acc.root().join("cur");
    let entry = std::fs::read_dir(acc.root().join("new"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let name = entry.file_name().into_string().unwrap();
    let base = name.split(':').next().unwrap().to_string();
    std::fs::rename(entry.path(), cur.join(format!("{base}:2,FS"))).unwrap();
    // A stamp taken within the mtime slack forces the rescan.
    let changes = f.refresh().unwrap();
    assert_eq!(changes.flags_changed, vec![1]);
    let m = &f.messages()[0];
    assert!(m.flags.flagged && m.flags.seen);
    assert!(m.modseq > before);
}

#[test]
fn rename_inbox_moves_its_messages() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    s.deliver("bob", &msg("one"), QID).unwrap();
    s.deliver("bob", &msg("two"), QID).unwrap();
    let acc = s.account("bob").unwrap();
    acc.rename("INBOX", "Old Inbox").unwrap();
    assert!(acc.open("INBOX").unwrap().messages().is_empty());
    let old = acc.open("Old Inbox").unwrap();
    assert_eq!(old.messages().len(), 2);
    assert_eq!(old.read(old.messages()[1].uid).unwrap(), msg("two"));
}

#[test]
fn signals_wake_on_delivery_append_and_store() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let acc = s.account("bob").unwrap();
    let inbox = acc.signal("inbox").unwrap();
    let sent = acc.signal("Sent").unwrap();
    let (gi, gs) = (inbox.generation(), sent.generation());
    s.deliver("bob", &msg("one"), QID).unwrap();
    // The index writer bumps the signal once the delivery is indexed.
    assert!(crate::flush_index_writes());
    assert!(inbox.generation() > gi);
    assert_eq!(sent.generation(), gs);
    acc.append("Sent", &msg("s"), &seen(), None).unwrap();
    assert!(sent.generation() > gs);
    let mut f = acc.open("INBOX").unwrap();
    let g = inbox.generation();
    f.store_flags(&[1], FlagOp::Add, &seen(), None).unwrap();
    assert!(inbox.generation() > g);
}

#[test]
fn sessions_in_threads_lose_no_updates() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    s.deliver("bob", &msg("one"), QID).unwrap();
    let acc = s.account("bob").unwrap();
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let acc = acc.clone();
            std::thread::spawn(move || {
                let mut f = acc.open("INBOX").unwrap();
                for i in 0..10 {
                    let mut k = Flags::default();
                    k.add_keyword(&format!("t{t}k{i}"));
                    f.store_flags(&[1], FlagOp::Add, &k, None).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let f = acc.open("INBOX").unwrap();
    assert_eq!(
        f.messages()[0].flags.keywords.len(),
        40,
        "every keyword kept"
    );
}

#[test]
fn inbox_children_and_list_order() {
    let dir = tempfile::tempdir().unwrap();
    let acc = store(dir.path()).account("bob").unwrap();
    acc.create("INBOX/Lists").unwrap();
    acc.create("A-b").unwrap();
    acc.create("A/b").unwrap();
    let list = acc.list().unwrap();
    let names: Vec<&str> = list.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names[0], "INBOX");
    assert_eq!(names.iter().filter(|n| **n == "INBOX").count(), 1);
    assert!(list[0].exists && list[0].has_children);
    let a = names.iter().position(|n| *n == "A").unwrap();
    let ab = names.iter().position(|n| *n == "A/b").unwrap();
    assert!(a < ab);
}

#[test]
fn pop3_reads_messages_an_imap_session_moved_and_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    s.deliver("bob", &msg("one"), QID).unwrap();
    let md = s.open("bob").unwrap();
    let listed = md.messages().unwrap();
    assert!(listed[0].path.parent().unwrap().ends_with("new"));
    let acc = s.account("bob").unwrap();
    let mut f = acc.open("INBOX").unwrap();
    f.store_flags(&[1], FlagOp::Add, &seen(), None).unwrap();
    // The listed path is stale (new/ -> cur/...:2,S); POP3 still reads it.
    assert!(!listed[0].path.exists());
    assert_eq!(md.read(&listed[0]).unwrap(), msg("one"));
    assert_eq!(
        md.messages().unwrap()[0].uid,
        listed[0].uid,
        "same POP3 UID"
    );
}

#[test]
fn handles_can_move_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<crate::Account>();
    send::<crate::Folder>();
    send_sync::<crate::ChangeSignal>();
}
