//! Index handle tests: meta encoding, two independent connections (as
//! two processes would have) writing without lost updates, and rebuilds.

use super::*;
use crate::meta::{BodyPart, Envelope, MessageMeta, PartKind};

/// A handle outside the cache: its own connection, like another process.
fn independent(root: &Path) -> Index {
    Index {
        root: root.to_path_buf(),
        conn: Mutex::new(None),
        commits: AtomicU32::new(0),
        checkpointed: AtomicU32::new(0),
    }
}

/// Adds `n` messages to INBOX through `idx`, one transaction each.
fn insert_many(idx: &Index, n: usize) {
    for i in 0..n {
        let base = format!("m{i}");
        idx.write_txn(|tx| {
            let mut row = folder_ops::get_or_create(tx, "INBOX")?;
            let m = messages::NewMessage {
                base: base.as_bytes(),
                file: b"new/x",
                flags: &crate::Flags::default(),
                size: 1,
                internal_date: 0,
                queue_id: None,
                meta: &[1; 300],
            };
            messages::insert(tx, &mut row, &m)?;
            folder_ops::save(tx, &row)
        })
        .unwrap();
    }
}

#[test]
fn a_truncating_checkpoint_empties_the_wal_and_keeps_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let idx = independent(dir.path());
    insert_many(&idx, 50);
    let path = dir.path().join(INDEX_FILE);
    let wal = wal_path(&path);
    assert!(wal.ends_with(format!("{INDEX_FILE}-wal")));
    let before = std::fs::metadata(&wal).unwrap().len();
    assert!(before > 0, "writes went to the WAL");
    // A passive one leaves a small WAL as it is.
    checkpoint(&path, false);
    assert_eq!(std::fs::metadata(&wal).unwrap().len(), before);
    // An idle one empties it; the handle's connection reads on.
    checkpoint(&path, true);
    assert_eq!(std::fs::metadata(&wal).unwrap().len(), 0);
    let uids = idx
        .read_txn(|tx| {
            let row = folder_ops::get(tx, "INBOX")?.unwrap();
            messages::uids(tx, row.id)
        })
        .unwrap();
    assert_eq!(uids.len(), 50);
    insert_many(&idx, 1);
}

#[test]
fn commits_since_the_last_checkpoint_are_tracked() {
    let dir = tempfile::tempdir().unwrap();
    let idx = independent(dir.path());
    assert!(!idx.take_dirty(), "nothing written yet");
    insert_many(&idx, 3);
    assert!(idx.take_dirty());
    assert!(!idx.take_dirty(), "taken");
    insert_many(&idx, 1);
    assert!(idx.take_dirty());
}

#[test]
fn each_connection_gets_its_own_generation() {
    let dir = tempfile::tempdir().unwrap();
    let idx = independent(dir.path());
    let g1 = idx.read_txn_at(|_, g| Ok(g)).unwrap();
    assert_eq!(
        idx.read_txn_at(|_, g| Ok(g)).unwrap(),
        g1,
        "same connection"
    );
    let other = independent(dir.path());
    let g2 = other.read_txn_at(|_, g| Ok(g)).unwrap();
    assert_ne!(g1, g2);
    // The file replaced behind the handle: a new connection, a new number.
    for f in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.path().join(format!("{INDEX_FILE}{f}")));
    }
    let g3 = idx.read_txn_at(|_, g| Ok(g)).unwrap();
    assert!(g3 != g1 && g3 != g2);
}

#[test]
fn meta_round_trips_and_junk_is_refused() {
    let meta = MessageMeta {
        envelope: Envelope {
            subject: Some(b"hi".to_vec()),
            ..Envelope::default()
        },
        body: BodyPart {
            media_type: b"multipart".to_vec(),
            kind: PartKind::Multipart {
                parts: vec![BodyPart {
                    body_len: 12,
                    ..BodyPart::default()
                }],
            },
            ..BodyPart::default()
        },
    };
    let blob = messages::encode_meta(&meta);
    assert_eq!(messages::decode_meta(&blob), Some(meta));
    assert_eq!(messages::decode_meta(&[]), None);
    assert_eq!(messages::decode_meta(&[9, 1, 2]), None, "unknown format");
    assert_eq!(messages::decode_meta(&[1, 0xff, 0xff]), None);
}

#[test]
fn independent_connections_lose_no_updates() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let threads: Vec<_> = (0..3)
        .map(|t| {
            let root = root.clone();
            std::thread::spawn(move || {
                let idx = independent(&root);
                for i in 0..20 {
                    let base = format!("t{t}m{i}");
                    idx.write_txn(|tx| {
                        let mut row = folder_ops::get_or_create(tx, "INBOX")?;
                        let m = messages::NewMessage {
                            base: base.as_bytes(),
                            file: b"new/x",
                            flags: &crate::Flags::default(),
                            size: 1,
                            internal_date: 0,
                            queue_id: None,
                            meta: &[1],
                        };
                        messages::insert(tx, &mut row, &m)?;
                        folder_ops::save(tx, &row)
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let idx = independent(&root);
    let (row, uids) = idx
        .read_txn(|tx| {
            let row = folder_ops::get(tx, "INBOX")?.unwrap();
            Ok((row.clone(), messages::uids(tx, row.id)?))
        })
        .unwrap();
    assert_eq!(uids, (1..=60).collect::<Vec<u32>>());
    assert_eq!(row.uidnext, 61);
    assert_eq!(row.modseq, 61);
}

#[test]
fn unknown_schema_version_is_rebuilt_with_new_uidvalidity() {
    let dir = tempfile::tempdir().unwrap();
    let idx = independent(dir.path());
    let first = idx
        .write_txn(|tx| folder_ops::get_or_create(tx, "INBOX"))
        .unwrap();
    drop(idx);
    let c = Connection::open(dir.path().join(INDEX_FILE)).unwrap();
    c.execute_batch("PRAGMA user_version=99").unwrap();
    drop(c);
    let idx = independent(dir.path());
    let row = idx.read_txn(|tx| folder_ops::get(tx, "INBOX")).unwrap();
    assert_eq!(row, None, "the old database was moved aside");
    let again = idx
        .write_txn(|tx| folder_ops::get_or_create(tx, "INBOX"))
        .unwrap();
    assert!(
        again.uidvalidity > first.uidvalidity,
        "a rebuilt index never repeats a UIDVALIDITY, even within the same second"
    );
}

#[test]
fn a_deleted_index_gives_greater_uidvalidities_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let idx = independent(dir.path());
    let mut before = Vec::new();
    for name in ["INBOX", "Sent", "Trash"] {
        let row = idx
            .write_txn(|tx| folder_ops::get_or_create(tx, name))
            .unwrap();
        before.push(row.uidvalidity);
    }
    let floor = dir.path().join(folder_ops::UIDVALIDITY_FILE);
    assert_eq!(
        folder_ops::read_uidvalidity_file(&floor),
        *before.iter().max().unwrap(),
        "the last value given out is kept beside the index"
    );
    // Deleted (as an admin would), no pause: the handle makes a new one.
    for f in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.path().join(format!("{INDEX_FILE}{f}")));
    }
    for name in ["Trash", "INBOX", "Sent"] {
        let row = idx
            .write_txn(|tx| folder_ops::get_or_create(tx, name))
            .unwrap();
        assert!(
            before.iter().all(|&old| row.uidvalidity > old),
            "{name}: {} after {before:?}",
            row.uidvalidity
        );
    }
}

#[test]
fn a_replaced_file_is_noticed_by_an_open_handle() {
    let dir = tempfile::tempdir().unwrap();
    let idx = independent(dir.path());
    idx.write_txn(|tx| folder_ops::set_setting(tx, "k", "v"))
        .unwrap();
    for f in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.path().join(format!("{INDEX_FILE}{f}")));
    }
    assert_eq!(
        idx.read_txn(|tx| folder_ops::setting(tx, "k")).unwrap(),
        None
    );
    assert!(dir.path().join(INDEX_FILE).exists());
}

#[test]
fn uidvalidity_is_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let idx = independent(dir.path());
    let mut seen = std::collections::HashSet::new();
    for i in 0..5 {
        let name = format!("F{i}");
        let row = idx
            .write_txn(|tx| folder_ops::get_or_create(tx, &name))
            .unwrap();
        assert!(seen.insert(row.uidvalidity));
        idx.write_txn(|tx| folder_ops::drop_folder(tx, &name))
            .unwrap();
        let row = idx
            .write_txn(|tx| folder_ops::get_or_create(tx, &name))
            .unwrap();
        assert!(
            seen.insert(row.uidvalidity),
            "recreated folder gets a new one"
        );
    }
}

/// CPU time of this thread, in microseconds.
fn thread_cpu_us() -> u64 {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `ru` is valid for writes of one rusage.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, ru.as_mut_ptr()) };
    if rc != 0 {
        return 0;
    }
    // SAFETY: getrusage succeeded and filled it.
    let ru = unsafe { ru.assume_init() };
    (ru.ru_utime.tv_sec as u64 * 1_000_000 + ru.ru_utime.tv_usec as u64)
        + (ru.ru_stime.tv_sec as u64 * 1_000_000 + ru.ru_stime.tv_usec as u64)
}

/// Prints what indexing costs per delivered 4 KiB message and what
/// opening a 10,000-message INBOX costs. No timing assertions: run with
/// `cargo test -p postamt-store --release -- --ignored --nocapture index_cost`.
#[test]
#[ignore]
fn index_cost_report() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::MailStore::new(&format!("{}/%u", dir.path().display()), "example.org", true);
    let mut body = String::new();
    while body.len() < 3800 {
        body.push_str("The quick brown fox jumps over the lazy dog, again and again.\r\n");
    }
    let msg = format!(
        "Received: from mx.example.net by mx.example.org; Mon, 1 Jan 2024 10:00:00 +0000\r\n\
         From: \"Ann Example\" <ann@example.net>\r\nTo: bob@example.org\r\n\
         Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= number\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\
         Message-ID: <abc@example.net>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}"
    );
    let data = msg.as_bytes();
    let n = 10_000u64;
    let root = store.mailbox_dir("bob").unwrap();
    crate::fsio::create_maildir(&root).unwrap();
    // Parsing alone.
    let t = thread_cpu_us();
    for _ in 0..n {
        std::hint::black_box(crate::parse::parse_meta(std::hint::black_box(data)));
    }
    let parse = (thread_cpu_us() - t) as f64 / n as f64;
    // Indexing as delivery does it (files made first, not timed).
    let mut names = Vec::new();
    for _ in 0..n {
        // Files made directly: delivery's own fsyncs are not what is measured.
        let qid = Some("0193f1c2a4b57c3d8e9f0a1b2c3d4e5f");
        let name = crate::place::fresh_name(qid, data.len() as u64);
        std::fs::write(root.join("new").join(&name), data).unwrap();
        names.push(name);
    }
    let t = thread_cpu_us();
    let wall = std::time::Instant::now();
    for name in &names {
        crate::index_delivery(&root, name, data).unwrap();
    }
    let index = (thread_cpu_us() - t) as f64 / n as f64;
    let index_wall = wall.elapsed().as_micros() as f64 / n as f64;
    let acc = store.account("bob").unwrap();
    let wall = std::time::Instant::now();
    let f = acc.open("INBOX").unwrap();
    let first = wall.elapsed();
    assert_eq!(f.messages().len(), n as usize);
    drop(f);
    let wall = std::time::Instant::now();
    let f = acc.examine("INBOX").unwrap();
    let second = wall.elapsed();
    let wall = std::time::Instant::now();
    let mut f2 = f;
    f2.refresh().unwrap();
    let refresh = wall.elapsed();
    println!(
        "per 4 KiB message: parse {parse:.1} us CPU, parse+index {index:.1} us CPU ({index_wall:.1} us wall)\n\
         INBOX of {n}: first open {first:?}, second open {second:?}, idle refresh {refresh:?}"
    );
}
