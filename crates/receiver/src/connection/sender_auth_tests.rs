//! Sender checks over a whole connection (`tokio::io::duplex`, fake
//! backend with a scripted verifier): the reply on the wire after DATA and
//! BDAT LAST, the session going on after a refusal, and a check that never
//! answers not holding the client beyond the outer bound (paused time).

use super::tests::Client;
use super::*;
use crate::backend::SenderCheck;
use crate::testing::{FakeBackend, config};
use postamt_config::DmarcAction;
use postamt_sender_auth::{AuthResult, DmarcOutcome, DmarcPolicy, Verdict, decide};
use std::sync::atomic::Ordering;
use tokio::task::JoinHandle;

const AR: &str = "Authentication-Results: mx.example.org;\r\n\tspf=fail smtp.mailfrom=a@remote.net;\r\n\
                  \tdkim=none;\r\n\tdmarc=fail header.from=remote.net\r\n";

fn failing(policy: DmarcPolicy) -> SenderCheck {
    let verdict = Verdict {
        authentication_results: AR.into(),
        spf: AuthResult::Fail,
        dkim: AuthResult::None,
        dmarc: DmarcOutcome::Fail { policy },
        from_domain: Some("remote.net".into()),
    };
    let action = decide(DmarcAction::Honor, &verdict);
    SenderCheck { verdict, action }
}

fn start(backend: Arc<FakeBackend>) -> (Client, JoinHandle<SessionStats>) {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let peer: SocketAddr = "192.0.2.20:5555".parse().expect("addr");
    let task = tokio::spawn(async move {
        serve(
            server,
            peer,
            Arc::new(config()),
            &*backend,
            CancellationToken::new(),
        )
        .await
    });
    (Client::new(client), task)
}

#[tokio::test]
async fn quarantine_then_reject_on_one_connection() {
    let backend = Arc::new(FakeBackend::new());
    backend.set_sender_check(failing(DmarcPolicy::Quarantine));
    let (mut c, task) = start(Arc::clone(&backend));
    c.send(
        b"EHLO client.example.net\r\nMAIL FROM:<a@remote.net>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n\
          Authentication-Results: mx.example.org; dmarc=pass\r\n\
          Authentication-Results: relay.remote.net; dmarc=pass\r\n\
          From: a@remote.net\r\n\r\nhi\r\n.\r\n",
    )
    .await;
    for prefix in ["220", "250-", "250 2.1.0", "250 2.1.5", "354"] {
        c.expect(prefix).await;
    }
    c.expect("250 2.0.0 Ok: queued as ").await;

    backend.set_sender_check(failing(DmarcPolicy::Reject));
    c.send(
        b"MAIL FROM:<a@remote.net>\r\nRCPT TO:<bob@example.org>\r\nBDAT 4 LAST\r\nhi\r\nNOOP\r\n",
    )
    .await;
    c.expect("250 2.1.0").await;
    c.expect("250 2.1.5").await;
    let refusal = c.expect("550 5.7.1 ").await;
    assert_eq!(
        refusal,
        "550 5.7.1 Message rejected: it fails the DMARC policy of remote.net\r\n"
    );
    c.expect("250 2.0.0 Ok").await;
    c.send(b"QUIT\r\n").await;
    c.expect("221").await;
    c.expect_eof().await;
    let stats = task.await.expect("task");
    assert_eq!(stats.messages, 1);

    let q = backend.queued();
    assert_eq!(q.len(), 1, "the refused message is not queued");
    let text = String::from_utf8(q[0].1.clone()).expect("utf8");
    let rest = text.strip_prefix(AR).expect("our results on top");
    assert!(
        rest.starts_with("Received: from client.example.net"),
        "{rest}"
    );
    assert!(
        rest.ends_with(
            "\r\nX-Postamt-Quarantine: dmarc (remote.net policy quarantine)\r\n\
             Authentication-Results: relay.remote.net; dmarc=pass\r\n\
             From: a@remote.net\r\n\r\nhi\r\n"
        ),
        "{rest}"
    );
    assert_eq!(backend.checks().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_check_that_never_answers_does_not_hold_the_client() {
    let backend = Arc::new(FakeBackend::new());
    backend.sender_check_hangs.store(true, Ordering::Relaxed);
    let (mut c, task) = start(Arc::clone(&backend));
    c.send(
        b"EHLO c\r\nMAIL FROM:<a@remote.net>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n\
          Subject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n",
    )
    .await;
    for prefix in ["220", "250-", "250 2.1.0", "250 2.1.5", "354"] {
        c.expect(prefix).await;
    }
    c.expect("250 2.0.0 Ok: queued as ").await;
    c.expect("221").await;
    task.await.expect("task");
    let q = backend.queued();
    let text = String::from_utf8(q[0].1.clone()).expect("utf8");
    assert!(
        text.starts_with(&crate::authres::timed_out("mx.example.org")),
        "{text}"
    );
}
