//! The agent wired to the real spool, Maildir store and SQLite directory in a
//! temporary directory: a message queued before the agent starts is
//! recovered, delivered through an alias without duplicates, and its unknown
//! recipient bounced into the spool from `<>`.

use postamt_config::Config;
use postamt_delivery::DeliveryAgent;
use postamt_directory::Directory;
use postamt_spool::{NewMessage, QueueId, RecipientStatus, Spool};
use postamt_store::MailStore;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never happened: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_through_real_spool_store_and_directory() {
    let tmp = tempfile::tempdir().unwrap();
    // Remote mail goes to a smarthost on a closed loopback port: the bounce
    // to the remote sender leaves through the real SMTP path and is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let relay = closed.local_addr().unwrap();
    drop(closed);
    let mut config = Config {
        hostname: "mx.example.org".into(),
        domains: vec!["example.org".into()],
        data_dir: tmp.path().to_path_buf(),
        ..Config::default()
    };
    config.delivery.smarthost = Some(relay.to_string());
    let config = Arc::new(config);
    let spool = Arc::new(Spool::open(&config.spool_dir()).unwrap());
    let store = Arc::new(MailStore::new(
        &config.mailbox_template(),
        &config.primary_domain(),
        true,
    ));
    let directory = Arc::new(Directory::open(&config.directory_db()).unwrap());
    directory.add_user("alice", "pw-alice-123", false).unwrap();
    directory.add_user("bob", "pw-bob-12345", false).unwrap();
    directory
        .add_alias("team", &["alice".to_string(), "bob".to_string()])
        .unwrap();

    let data = b"From: s@x.org\r\nTo: team@example.org\r\nSubject: hi\r\n\r\nbody\r\n".to_vec();
    let id: QueueId = spool
        .enqueue(
            NewMessage {
                mail_from: "s@x.org".into(),
                recipients: vec![
                    "alice@example.org".into(),
                    "team@example.org".into(),
                    "ghost@example.org".into(),
                ],
                ..NewMessage::default()
            },
            data.clone(),
        )
        .await
        .unwrap();

    let agent = DeliveryAgent::new(
        Arc::clone(&config),
        Arc::clone(&directory),
        Arc::clone(&spool),
        Arc::clone(&store),
    );
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(Arc::clone(&agent).run(shutdown.clone()));

    eventually("original message finished", || {
        spool.list().unwrap().iter().all(|e| e.id != id)
    })
    .await;

    for (user, want) in [("alice", 1), ("bob", 1)] {
        let msgs = store.open(user).unwrap().messages().unwrap();
        assert_eq!(msgs.len(), want, "{user} gets exactly one copy");
        let got = store.open(user).unwrap().read(&msgs[0]).unwrap();
        assert_eq!(got, data);
        assert_eq!(msgs[0].queue_id.as_deref(), Some(id.0.as_str()));
    }

    // The bounce for ghost@ waits in the queue: its sender is remote and
    // the smarthost refuses connections.
    let queued = spool.list().unwrap();
    let bounce = queued
        .iter()
        .find(|e| e.mail_from.is_empty() && e.recipients.iter().any(|r| r.address == "s@x.org"))
        .expect("a bounce from <> to the sender");
    let text = String::from_utf8(spool.read_message(&bounce.id).unwrap()).unwrap();
    assert!(text.contains("Final-Recipient: rfc822; ghost@example.org"));
    assert!(text.contains("Status: 5.1.1"));
    eventually("the bounce was attempted", || {
        spool.get(&bounce.id).is_ok_and(|e| {
            e.recipients.iter().any(|r| {
                r.address == "s@x.org"
                    && r.status == RecipientStatus::Pending
                    && r.attempts >= 1
                    && r.last_error
                        .as_deref()
                        .is_some_and(|l| l.starts_with("4.4.1 "))
            })
        })
    })
    .await;

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("agent stops")
        .expect("agent does not panic");
}
