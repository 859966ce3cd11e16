//! Maildir store tests on real directories.

use postamt_store::{MailStore, StoreError};
use std::path::Path;

const QID: &str = "0193f1c2a4b57c3d8e9f0a1b2c3d4e5f";

fn store(root: &Path, create: bool) -> MailStore {
    MailStore::new(&format!("{}/%d/%u", root.display()), "Example.ORG", create)
}

fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn template_expansion_lowercases_user() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), true);
    assert_eq!(
        s.mailbox_dir("Bob.Smith").unwrap(),
        dir.path().join("example.org").join("bob.smith")
    );
}

#[test]
fn deliver_creates_mailbox_and_is_byte_exact_in_new_only() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), true);
    let data: Vec<u8> = (0..=255u8)
        .chain(b"\r\n.\r\n\n\r".iter().copied())
        .collect();
    let name = s.deliver("bob", &data, QID).unwrap();
    let root = s.mailbox_dir("bob").unwrap();
    // Python's mailbox.Maildir (and Dovecot, mutt) need these three.
    for sub in ["cur", "new", "tmp"] {
        assert!(root.join(sub).is_dir(), "{sub}/ missing");
    }
    assert_eq!(std::fs::read(root.join("new").join(&name)).unwrap(), data);
    assert_eq!(count(&root.join("new")), 1);
    assert_eq!(count(&root.join("cur")), 0);
    assert_eq!(count(&root.join("tmp")), 0);
    assert!(!name.contains('/') && !name.contains(':'));
    assert!(name.contains(&format!("Q{QID}_")));

    let md = s.open("bob").unwrap();
    let msgs = md.messages().unwrap();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].size, data.len() as u64);
    assert_eq!(msgs[0].queue_id.as_deref(), Some(QID));
    assert_eq!(md.read(&msgs[0]).unwrap(), data);
}

#[test]
fn no_mailbox_without_auto_create() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), false);
    let err = s.deliver("bob", b"x", QID).unwrap_err();
    assert!(matches!(err, StoreError::NoMailbox(ref u) if u == "bob"));
    assert!(!s.mailbox_dir("bob").unwrap().exists());
    // Opening shows an empty mailbox and creates nothing.
    let md = s.open("bob").unwrap();
    assert!(md.messages().unwrap().is_empty());
    assert!(!md.exists());
    assert!(!md.path().exists());
    let _lock = md.lock().unwrap();
    assert!(matches!(md.lock(), Err(StoreError::InUse)));
    // Once the admin made it, delivery works.
    std::fs::create_dir_all(s.mailbox_dir("bob").unwrap()).unwrap();
    s.deliver("bob", b"x", QID).unwrap();
    assert_eq!(md.messages().unwrap().len(), 1);
}

#[test]
fn open_with_auto_create_makes_the_maildir() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), true);
    let md = s.open("carol").unwrap();
    assert!(md.path().join("new").is_dir() && md.path().join("cur").is_dir());
    assert!(md.messages().unwrap().is_empty());
}

#[test]
fn invalid_users_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), true);
    for bad in [
        "../etc",
        "a/b",
        "..",
        "",
        ".x",
        "-x",
        "a..b",
        "a\0b",
        "bob@example.org",
    ] {
        assert!(
            matches!(s.mailbox_dir(bad), Err(StoreError::InvalidUser(_))),
            "{bad:?}"
        );
        assert!(matches!(
            s.deliver(bad, b"x", QID),
            Err(StoreError::InvalidUser(_))
        ));
        assert!(matches!(s.open(bad), Err(StoreError::InvalidUser(_))));
    }
    assert_eq!(count(dir.path()), 0, "nothing created");
}

#[test]
fn unusable_domain_is_refused_for_percent_d() {
    let dir = tempfile::tempdir().unwrap();
    let s = MailStore::new(&format!("{}/%d/%u", dir.path().display()), "../x", true);
    assert!(s.mailbox_dir("bob").is_err());
    let plain = MailStore::new(&format!("{}/%u", dir.path().display()), "../x", true);
    assert!(plain.mailbox_dir("bob").is_ok());
}

#[test]
fn template_without_user_gets_one() {
    let dir = tempfile::tempdir().unwrap();
    let s = MailStore::new(&format!("{}/", dir.path().display()), "example.org", true);
    assert_eq!(s.mailbox_dir("bob").unwrap(), dir.path().join("bob"));
}

#[test]
fn messages_are_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), true);
    let mut names = Vec::new();
    for i in 0..20 {
        names.push(
            s.deliver("bob", format!("message {i}").as_bytes(), QID)
                .unwrap(),
        );
    }
    let md = s.open("bob").unwrap();
    // Foreign and ignorable files.
    let root = md.path().to_path_buf();
    std::fs::write(root.join("new").join(".hidden"), b"no").unwrap();
    std::fs::create_dir(root.join("cur").join("folder")).unwrap();
    std::fs::write(root.join("tmp").join("1.M1P1.x"), b"in tmp").unwrap();
    std::fs::create_dir(root.join(".Sent")).unwrap();
    std::fs::write(root.join("cur").join("1000000000.M5P9.old:2,S"), b"oldest").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", root.join("cur").join("1000000001.M1P1.evil"))
        .unwrap();

    let msgs = md.messages().unwrap();
    assert_eq!(msgs.len(), 21);
    assert_eq!(md.read(&msgs[0]).unwrap(), b"oldest");
    assert_eq!(msgs[0].queue_id, None);
    assert_eq!(msgs[0].uid, "1000000000.M5P9.old");
    for (i, m) in msgs[1..].iter().enumerate() {
        assert_eq!(md.read(m).unwrap(), format!("message {i}").as_bytes());
        assert_eq!(m.path.file_name().unwrap().to_str().unwrap(), names[i]);
    }
    for m in &msgs {
        assert!(m.uid.len() <= 70 && m.uid.bytes().all(|b| (0x21..=0x7e).contains(&b)));
    }
}

#[test]
fn uids_survive_a_move_to_cur_and_read_delete_follow() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), true);
    for i in 0..3 {
        s.deliver("bob", format!("m{i}").as_bytes(), QID).unwrap();
    }
    let md = s.open("bob").unwrap();
    let before = md.messages().unwrap();
    // Another reader (a MUA) moves every message to cur/ and flags it seen.
    for m in &before {
        let name = m.path.file_name().unwrap().to_str().unwrap();
        std::fs::rename(&m.path, md.path().join("cur").join(format!("{name}:2,S"))).unwrap();
    }
    let after = md.messages().unwrap();
    let uids =
        |v: &[postamt_store::MessageInfo]| v.iter().map(|m| m.uid.clone()).collect::<Vec<_>>();
    assert_eq!(uids(&after), uids(&before));
    assert!(
        after
            .iter()
            .all(|m| m.path.parent().unwrap().ends_with("cur"))
    );

    // The stale infos (paths in new/) still read and delete.
    assert_eq!(md.read(&before[1]).unwrap(), b"m1");
    md.delete(&before[..2]).unwrap();
    let left = md.messages().unwrap();
    assert_eq!(uids(&left), vec![before[2].uid.clone()]);
    assert!(matches!(md.read(&before[0]), Err(StoreError::Gone(_))));
    // Deleting again, or something already gone, is fine.
    md.delete(&before).unwrap();
    assert!(md.messages().unwrap().is_empty());
}

#[test]
fn caller_made_paths_outside_the_maildir_are_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), true);
    s.deliver("bob", b"mine", QID).unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"keep").unwrap();
    let md = s.open("bob").unwrap();
    let mut forged = md.messages().unwrap().remove(0);
    forged.path = victim.clone();
    assert_eq!(md.read(&forged).unwrap(), b"mine", "found by uid instead");
    forged.uid = "nope".into();
    assert!(matches!(md.read(&forged), Err(StoreError::Gone(_))));
    md.delete(&[forged]).unwrap();
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
}

#[test]
fn lock_excludes_second_session_until_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), true);
    s.deliver("bob", b"x", QID).unwrap();
    let first = s.open("bob").unwrap().lock().unwrap();
    // A second session opens its own Maildir value.
    let second = s.open("Bob").unwrap();
    assert!(matches!(second.lock(), Err(StoreError::InUse)));
    // Other users are independent.
    let _other = s.open("alice").unwrap().lock().unwrap();
    drop(first);
    let again = second.lock().unwrap();
    assert!(second.path().join(postamt_store::LOCK_FILE).is_file());
    // The lock file is not a message.
    assert_eq!(second.messages().unwrap().len(), 1);
    drop(again);
}

#[test]
fn concurrent_deliveries_all_land_with_distinct_names() {
    let dir = tempfile::tempdir().unwrap();
    let s = std::sync::Arc::new(store(dir.path(), true));
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let s = std::sync::Arc::clone(&s);
            std::thread::spawn(move || {
                (0..25)
                    .map(|i| {
                        s.deliver("bob", format!("{t}-{i}").as_bytes(), QID)
                            .unwrap()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut names = std::collections::HashSet::new();
    for h in handles {
        names.extend(h.join().unwrap());
    }
    assert_eq!(names.len(), 200);
    let md = s.open("bob").unwrap();
    let msgs = md.messages().unwrap();
    assert_eq!(msgs.len(), 200);
    let uids: std::collections::HashSet<_> = msgs.iter().map(|m| m.uid.clone()).collect();
    assert_eq!(uids.len(), 200);
}

#[test]
fn read_limited_reads_small_messages_only() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), true);
    s.deliver("bob", b"short", QID).unwrap();
    s.deliver("bob", &[b'x'; 100], QID).unwrap();
    let md = s.open("bob").unwrap();
    let msgs = md.messages().unwrap();
    assert_eq!(
        md.read_limited(&msgs[0], 5).unwrap().as_deref(),
        Some(&b"short"[..])
    );
    assert_eq!(md.read_limited(&msgs[1], 99).unwrap(), None);
    assert_eq!(
        md.read_limited(&msgs[1], 100).unwrap().map(|d| d.len()),
        Some(100)
    );
    // Moved by another reader: not searched for (`read` does that).
    let name = msgs[0].path.file_name().unwrap().to_str().unwrap();
    std::fs::rename(
        &msgs[0].path,
        md.path().join("cur").join(format!("{name}:2,S")),
    )
    .unwrap();
    assert_eq!(md.read_limited(&msgs[0], 5).unwrap(), None);
    assert_eq!(md.read(&msgs[0]).unwrap(), b"short");
    md.delete(&msgs[..1]).unwrap();
    assert_eq!(md.read_limited(&msgs[0], 5).unwrap(), None);
    // A caller-made path outside the Maildir is never opened.
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"keep").unwrap();
    let mut forged = msgs[1].clone();
    forged.path = victim;
    assert_eq!(md.read_limited(&forged, 100).unwrap(), None);
}

#[test]
fn paths_in_another_maildirs_new_are_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), true);
    s.deliver("bob", b"bob's", QID).unwrap();
    s.deliver("eve", b"eve's", QID).unwrap();
    let bob = s.open("bob").unwrap();
    let eve = s.open("eve").unwrap();
    let mut forged = bob.messages().unwrap().remove(0);
    forged.path = eve.messages().unwrap().remove(0).path;
    assert_eq!(bob.read(&forged).unwrap(), b"bob's", "found by uid instead");
    forged.uid = "nope".into();
    assert!(matches!(bob.read(&forged), Err(StoreError::Gone(_))));
}

#[test]
fn quarantined_mail_goes_to_junk_and_imap_sees_it_there() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), true);
    let data = b"From: a@b.example\r\nSubject: suspicious\r\n\r\nbody\r\n";
    // A new mailbox: created with its special folders, the message in Junk.
    let (name, in_junk) = s.deliver_to_junk("bob", data, QID).unwrap();
    assert!(in_junk);
    let root = s.mailbox_dir("bob").unwrap();
    assert_eq!(
        std::fs::read(root.join(".Junk").join("new").join(&name)).unwrap(),
        data
    );
    assert_eq!(count(&root.join("new")), 0, "nothing in the inbox");
    assert!(name.contains(QID), "the queue id is in the name: {name}");
    let account = s.account("bob").unwrap();
    let junk = account.status("Junk").unwrap();
    assert_eq!(junk.messages, 1);
    assert_eq!(account.status("INBOX").unwrap().messages, 0);

    // The user deleted Junk: the next one goes to the inbox, not lost.
    account.delete("Junk").unwrap();
    let (name, in_junk) = s.deliver_to_junk("bob", data, QID).unwrap();
    assert!(!in_junk);
    assert_eq!(std::fs::read(root.join("new").join(&name)).unwrap(), data);
    assert!(!root.join(".Junk").exists(), "Junk not made again");

    // No mailbox and no automatic creation: the usual error.
    let none = store(dir.path(), false);
    assert!(matches!(
        none.deliver_to_junk("carol", data, QID),
        Err(StoreError::NoMailbox(_))
    ));
}
