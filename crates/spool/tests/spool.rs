//! End-to-end tests of the spool on real directories.

use postamt_spool::{Envelope, NewMessage, QueueId, RecipientStatus, Spool, SpoolError};
use proptest::prelude::*;
use std::collections::HashSet;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

fn msg(rcpts: &[&str]) -> NewMessage {
    NewMessage {
        id: None,
        mail_from: "sender@example.org".into(),
        recipients: rcpts.iter().map(|s| s.to_string()).collect(),
        client: Some("192.0.2.7".into()),
        helo: Some("client.example.net".into()),
        auth_user: None,
        eight_bit: false,
        smtputf8: false,
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn enqueue_list_get_read_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let data = b"Subject: hi\r\n\r\nbody\0with NUL\rbare CR\nbare LF\r\n.\r\n".to_vec();
    let before = now();
    let id = spool
        .enqueue_blocking(msg(&["a@example.org", "b@example.org"]), data.clone())
        .unwrap();
    let after = now();
    assert!(id.is_canonical());

    let env = spool.get(&id).unwrap();
    assert_eq!(env.id, id);
    assert_eq!(env.mail_from, "sender@example.org");
    assert_eq!(env.size, data.len() as u64);
    assert!(env.created_at >= before && env.created_at <= after);
    assert_eq!(env.next_attempt, env.created_at);
    assert_eq!(env.attempts, 0);
    assert_eq!(env.recipients.len(), 2);
    assert!(
        env.recipients
            .iter()
            .all(|r| r.status == RecipientStatus::Pending && r.attempts == 0)
    );
    assert_eq!(env.client.as_deref(), Some("192.0.2.7"));
    assert_eq!(spool.list().unwrap(), vec![env]);
    assert_eq!(spool.read_message(&id).unwrap(), data);

    // Durable means on disk in the documented place, and nothing in tmp/.
    assert!(dir.path().join("queue").join(&id.0).is_file());
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("state")).unwrap().count(),
        0
    );
}

#[test]
fn reopened_spool_finds_everything() {
    let dir = tempfile::tempdir().unwrap();
    let mut ids = Vec::new();
    {
        let spool = Spool::open(dir.path()).unwrap();
        for i in 0..5 {
            ids.push(
                spool
                    .enqueue_blocking(msg(&["x@example.org"]), format!("m{i}").into_bytes())
                    .unwrap(),
            );
        }
    }
    let spool = Spool::open(dir.path()).unwrap();
    let listed: Vec<QueueId> = spool.list().unwrap().into_iter().map(|e| e.id).collect();
    assert_eq!(listed, ids, "sorted by id = arrival order");
    assert_eq!(spool.read_message(&ids[3]).unwrap(), b"m3");
}

#[test]
fn given_id_is_used_and_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let id = QueueId::generate();
    let mut m = msg(&["a@example.org"]);
    m.id = Some(QueueId(id.0.to_uppercase()));
    assert_eq!(
        spool.enqueue_blocking(m.clone(), b"one".to_vec()).unwrap(),
        id
    );
    let err = spool.enqueue_blocking(m, b"two".to_vec()).unwrap_err();
    assert!(matches!(err, SpoolError::Io(ref e) if e.kind() == std::io::ErrorKind::AlreadyExists));
    assert_eq!(spool.read_message(&id).unwrap(), b"one");

    let mut bad = msg(&["a@example.org"]);
    bad.id = Some(QueueId("../../etc/passwd".into()));
    assert!(spool.enqueue_blocking(bad, b"x".to_vec()).is_err());
    assert_eq!(spool.list().unwrap().len(), 1);
}

fn set_age(path: &Path, age: Duration) {
    let f = File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - age).unwrap();
}

#[test]
fn recovery_after_simulated_crash() {
    let dir = tempfile::tempdir().unwrap();
    let kept = {
        let spool = Spool::open(dir.path()).unwrap();
        spool
            .enqueue_blocking(msg(&["a@example.org"]), b"kept".to_vec())
            .unwrap()
    };
    // A crash mid-enqueue: a half-written file of a process that is gone.
    let half = dir
        .path()
        .join("tmp")
        .join(format!("{}.2000000000.7.tmp", QueueId::generate()));
    std::fs::write(&half, b"POSTAMT-QUEUE-1 9999\n{\"id\":").unwrap();
    set_age(&half, Duration::from_secs(300));
    // A crash inside remove(): the queue file went, the state file stayed.
    let orphan = QueueId::generate();
    let orphan_state = dir.path().join("state").join(format!("{orphan}.json"));
    std::fs::write(&orphan_state, b"{}").unwrap();

    let spool = Spool::open(dir.path()).unwrap();
    assert!(!half.exists(), "stale tmp file removed");
    assert!(!orphan_state.exists(), "orphan state removed");
    let listed = spool.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, kept);
    assert!(spool.corrupt().unwrap().is_empty());
    assert!(matches!(spool.get(&orphan), Err(SpoolError::NotFound(_))));
}

#[test]
fn update_then_remove() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let id = spool
        .enqueue_blocking(msg(&["a@example.org", "b@example.org"]), b"x".to_vec())
        .unwrap();
    let mut env = spool.get(&id).unwrap();
    env.recipients[0].status = RecipientStatus::Delivered;
    env.recipients[0].delivered_to.push("alice".into());
    env.recipients[1].attempts = 1;
    env.recipients[1].last_error = Some("451 try later".into());
    env.attempts = 1;
    env.next_attempt += 300;
    env.held = true;
    spool.update(&env).unwrap();
    assert_eq!(spool.get(&id).unwrap(), env);
    assert_eq!(spool.list().unwrap(), vec![env.clone()]);
    // The message bytes do not change with the state.
    assert_eq!(spool.read_message(&id).unwrap(), b"x");

    // Another process (the CLI) sees the update and may update too.
    let cli = Spool::open(dir.path()).unwrap();
    assert_eq!(cli.get(&id).unwrap(), env);
    env.held = false;
    cli.update(&env).unwrap();
    assert!(!spool.get(&id).unwrap().held);

    spool.remove(&id).unwrap();
    assert!(matches!(spool.get(&id), Err(SpoolError::NotFound(_))));
    assert!(matches!(
        spool.read_message(&id),
        Err(SpoolError::NotFound(_))
    ));
    assert!(spool.list().unwrap().is_empty());
    assert_eq!(
        std::fs::read_dir(dir.path().join("state")).unwrap().count(),
        0
    );
    assert!(matches!(spool.remove(&id), Err(SpoolError::NotFound(_))));
    assert!(matches!(spool.update(&env), Err(SpoolError::NotFound(_))));
    assert_eq!(
        std::fs::read_dir(dir.path().join("state")).unwrap().count(),
        0
    );
}

#[test]
fn invalid_ids_never_touch_files_outside() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(&dir.path().join("spool")).unwrap();
    let outside = dir.path().join("victim");
    std::fs::write(&outside, b"keep me").unwrap();
    assert!("../x".parse::<QueueId>().is_err());
    assert!("../victim".parse::<QueueId>().is_err());
    // The field is public, so a hand-made id must be refused at every use.
    let evil = QueueId("../../victim".into());
    assert!(spool.get(&evil).is_err());
    assert!(spool.read_message(&evil).is_err());
    assert!(spool.remove(&evil).is_err());
    let env = Envelope::initial(evil, msg(&[]), 0, 0);
    assert!(spool.update(&env).is_err());
    assert_eq!(std::fs::read(&outside).unwrap(), b"keep me");
}

#[test]
fn corrupt_files_are_skipped_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let good = spool
        .enqueue_blocking(msg(&["a@example.org"]), b"good".to_vec())
        .unwrap();
    let damaged_state = spool
        .enqueue_blocking(msg(&["b@example.org"]), b"state".to_vec())
        .unwrap();
    let bad = QueueId::generate();
    std::fs::write(dir.path().join("queue").join(&bad.0), b"garbage\n").unwrap();
    std::fs::write(dir.path().join("queue").join("stray.txt"), b"?").unwrap();
    std::fs::write(
        dir.path()
            .join("state")
            .join(format!("{damaged_state}.json")),
        b"{not json",
    )
    .unwrap();

    let scan = spool.scan().unwrap();
    let ids: Vec<_> = scan.envelopes.iter().map(|e| e.id.clone()).collect();
    assert_eq!(ids, vec![good.clone(), damaged_state.clone()]);
    let fallback = &scan.envelopes[1];
    assert!(
        fallback.recipients[0].status == RecipientStatus::Pending,
        "initial envelope"
    );
    assert_eq!(scan.corrupt.len(), 3);
    assert!(
        scan.corrupt
            .iter()
            .any(|c| c.id.as_ref() == Some(&bad) && !c.fell_back)
    );
    assert!(
        scan.corrupt
            .iter()
            .any(|c| c.id.as_ref() == Some(&damaged_state) && c.fell_back)
    );
    assert!(scan.corrupt.iter().any(|c| c.path.ends_with("stray.txt")));
    assert!(matches!(spool.get(&bad), Err(SpoolError::Corrupt(..))));
    assert!(matches!(
        spool.read_message(&bad),
        Err(SpoolError::Corrupt(..))
    ));
    assert_eq!(spool.list().unwrap().len(), 2);
}

#[test]
fn truncated_message_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let id = spool
        .enqueue_blocking(msg(&["a@example.org"]), b"0123456789".to_vec())
        .unwrap();
    let path = dir.path().join("queue").join(&id.0);
    let len = std::fs::metadata(&path).unwrap().len();
    File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    assert!(matches!(
        spool.read_message(&id),
        Err(SpoolError::Corrupt(..))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_enqueues_are_all_present_and_distinct() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(Spool::open(dir.path()).unwrap());
    let mut arrivals = spool.take_arrivals().expect("first take");
    assert!(spool.take_arrivals().is_none(), "only one taker");
    let mut tasks = Vec::new();
    for t in 0..20 {
        let spool = Arc::clone(&spool);
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in 0..10 {
                let body = format!("task {t} message {i}\r\n").into_bytes();
                let id = spool
                    .enqueue(msg(&["a@example.org"]), body.clone())
                    .await
                    .unwrap();
                out.push((id, body));
            }
            out
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    assert_eq!(all.len(), 200);
    let ids: HashSet<_> = all.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(ids.len(), 200, "ids distinct");
    for (id, body) in &all {
        assert_eq!(&spool.read_message(id).unwrap(), body);
    }
    let listed: HashSet<_> = spool.list().unwrap().into_iter().map(|e| e.id).collect();
    assert_eq!(listed, ids);
    // Every id was announced, after it was durable.
    let mut announced = HashSet::new();
    while announced.len() < 200 {
        let id = arrivals.recv().await.expect("arrival");
        assert!(listed.contains(&id));
        announced.insert(id);
    }
    assert_eq!(announced, ids);
}

#[tokio::test]
async fn arrivals_channel_gets_ids_and_dropped_receiver_is_fine() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let mut arrivals = spool.take_arrivals().unwrap();
    let a = spool
        .enqueue(msg(&["a@example.org"]), b"1".to_vec())
        .await
        .unwrap();
    let b = spool
        .enqueue(msg(&["a@example.org"]), b"2".to_vec())
        .await
        .unwrap();
    assert_eq!(arrivals.recv().await, Some(a));
    assert_eq!(arrivals.recv().await, Some(b));
    drop(arrivals);
    let c = spool
        .enqueue(msg(&["a@example.org"]), b"3".to_vec())
        .await
        .unwrap();
    assert_eq!(spool.read_message(&c).unwrap(), b"3");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn arbitrary_bytes_round_trip(
        data in proptest::collection::vec(
            prop_oneof![Just(0u8), Just(b'\r'), Just(b'\n'), Just(b'.'), any::<u8>()],
            0..4096,
        ),
        rcpts in proptest::collection::vec("[a-z]{1,8}@[a-z]{1,8}\\.org", 1..4),
        from in "[ -~]{0,40}",
    ) {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let mut m = msg(&[]);
        m.recipients = rcpts.clone();
        m.mail_from = from.clone();
        let id = spool.enqueue_blocking(m, data.clone()).unwrap();
        prop_assert_eq!(spool.read_message(&id).unwrap(), data.clone());
        let env = spool.get(&id).unwrap();
        prop_assert_eq!(env.size, data.len() as u64);
        prop_assert_eq!(env.mail_from, from);
        let addrs: Vec<String> = env.recipients.into_iter().map(|r| r.address).collect();
        prop_assert_eq!(addrs, rcpts);
    }
}

#[test]
fn load_reads_envelope_and_message_in_one_go() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let data = b"Subject: x\r\n\r\nPOSTAMT-QUEUE-1 3\n{}\n\0".repeat(300);
    let id = spool
        .enqueue_blocking(msg(&["a@example.org"]), data.clone())
        .unwrap();
    let loaded = spool.load(&id).unwrap();
    assert_eq!(loaded.message, data);
    assert_eq!(loaded.envelope, spool.get(&id).unwrap());
    assert!(!loaded.has_state, "a fresh message has no state file");

    let mut env = loaded.envelope;
    env.attempts = 3;
    spool.update(&env).unwrap();
    let again = spool.load(&id).unwrap();
    assert!(again.has_state);
    assert_eq!(again.envelope.attempts, 3, "the state file wins");
    assert_eq!(again.message, data);

    // A truncated queue file is corruption, not a short message.
    let path = dir.path().join("queue").join(&id.0);
    let full = std::fs::read(&path).unwrap();
    std::fs::write(&path, &full[..full.len() - 1]).unwrap();
    assert!(matches!(spool.load(&id), Err(SpoolError::Corrupt(..))));
    assert!(matches!(
        spool.load(&QueueId::generate()),
        Err(SpoolError::NotFound(_))
    ));
}

/// The spool links a queue file before its fsync; a crash in between can
/// leave the entry with blocks that never reached the disk (zeros). The
/// header's CRC tells such a file from a good one: `load` and
/// `read_message` report it as damaged instead of handing out garbage.
#[test]
fn message_blocks_lost_in_a_crash_are_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let data = b"Subject: crc\r\n\r\n".repeat(1000);
    let id = spool
        .enqueue_blocking(msg(&["a@example.org"]), data.clone())
        .unwrap();
    assert_eq!(spool.read_message(&id).unwrap(), data);
    let path = dir.path().join("queue").join(&id.0);
    let mut file = std::fs::read(&path).unwrap();
    let header_len = file.len() - data.len();
    // The second 4 KiB block, as if its write was lost.
    for b in &mut file[header_len + 4096..header_len + 8192] {
        *b = 0;
    }
    std::fs::write(&path, &file).unwrap();
    for result in [spool.load(&id).map(|l| l.message), spool.read_message(&id)] {
        match result {
            Err(SpoolError::Corrupt(_, why)) => assert!(why.contains("CRC"), "{why}"),
            other => panic!("expected corruption, got {other:?}"),
        }
    }
    // The envelope (header) is intact: the message is still listed.
    assert_eq!(spool.get(&id).unwrap().id, id);
}

#[test]
fn remove_finished_unlinks_what_load_found() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let plain = spool
        .enqueue_blocking(msg(&["a@example.org"]), b"x".to_vec())
        .unwrap();
    let changed = spool
        .enqueue_blocking(msg(&["a@example.org"]), b"y".to_vec())
        .unwrap();
    let mut env = spool.get(&changed).unwrap();
    env.attempts = 1;
    spool.update(&env).unwrap();

    spool.remove_finished(&plain, false, 1).unwrap();
    spool.remove_finished(&changed, true, 1).unwrap();
    assert!(spool.list().unwrap().is_empty());
    assert_eq!(
        std::fs::read_dir(dir.path().join("state")).unwrap().count(),
        0,
        "the state file went too"
    );
    assert!(matches!(
        spool.remove_finished(&plain, false, 1),
        Err(SpoolError::NotFound(_))
    ));

    // A state file written behind the agent's back is an orphan for `open`.
    let late = spool
        .enqueue_blocking(msg(&["a@example.org"]), b"z".to_vec())
        .unwrap();
    let mut env = spool.get(&late).unwrap();
    env.held = true;
    spool.update(&env).unwrap();
    spool.remove_finished(&late, false, 1).unwrap();
    assert!(spool.list().unwrap().is_empty(), "never listed");
    drop(spool);
    let reopened = Spool::open(dir.path()).unwrap();
    assert_eq!(
        reopened.cleanup().unwrap().orphan_states,
        0,
        "open removed it"
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("state")).unwrap().count(),
        0
    );
}

#[test]
fn finished_queue_files_are_reused_by_later_messages() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let long = b"a long first message\r\n".repeat(100);
    let first = spool
        .enqueue_blocking(msg(&["a@example.org"]), long.clone())
        .unwrap();
    let inode = std::fs::metadata(dir.path().join("queue").join(&first.0))
        .unwrap()
        .ino();
    spool
        .remove_finished(&first, false, long.len() as u64)
        .unwrap();
    assert_eq!(spool.free_files(), 1, "kept for reuse");
    assert!(spool.list().unwrap().is_empty(), "gone from the queue");

    // A shorter message reuses the file: no trace of the old bytes.
    let second = spool
        .enqueue_blocking(msg(&["b@example.org"]), b"short".to_vec())
        .unwrap();
    assert_eq!(spool.free_files(), 0);
    let path = dir.path().join("queue").join(&second.0);
    assert_eq!(std::fs::metadata(&path).unwrap().ino(), inode, "same inode");
    assert_eq!(spool.read_message(&second).unwrap(), b"short");
    assert_eq!(
        spool.get(&second).unwrap().recipients[0].address,
        "b@example.org"
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0
    );

    // A big message is not kept; a reopened spool adopts what is kept.
    let big = vec![b'x'; 300 * 1024];
    let third = spool
        .enqueue_blocking(msg(&["c@example.org"]), big)
        .unwrap();
    spool.remove_finished(&third, false, 300 * 1024).unwrap();
    assert_eq!(spool.free_files(), 0);
    spool.remove_finished(&second, false, 5).unwrap();
    drop(spool);
    let reopened = Spool::open(dir.path()).unwrap();
    assert_eq!(reopened.free_files(), 1);
    let fourth = reopened
        .enqueue_blocking(msg(&["d@example.org"]), b"again".to_vec())
        .unwrap();
    assert_eq!(reopened.read_message(&fourth).unwrap(), b"again");
    assert_eq!(reopened.free_files(), 0);
}
