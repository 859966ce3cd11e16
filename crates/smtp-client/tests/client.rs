//! The client against scripted fake servers on loopback: transactions with
//! and without PIPELINING, per-recipient results, HELO fallback, TLS
//! policies, AUTH, hostile replies, timeouts and refusals before MAIL.

mod support;

use postamt_net::tls::testing::{client_config_trusting, self_signed};
use postamt_smtp_client::{
    ClientError, Connection, Credentials, Envelope, RecipientResult, Reply, TlsPolicy, stage,
};
use std::time::Duration;
use support::{Peer, config, default_config, serve, serve_many, trust_nothing};

fn envelope(from: &str, to: &[&str]) -> Envelope {
    Envelope {
        mail_from: from.into(),
        recipients: to.iter().map(|s| s.to_string()).collect(),
        eight_bit: false,
        smtputf8: false,
    }
}

fn reply(code: u16, enhanced: Option<&str>, text: &str) -> Reply {
    Reply {
        code,
        enhanced: enhanced.map(str::to_string),
        text: text.into(),
    }
}

async fn greet(peer: &mut Peer, ehlo: &str) {
    peer.send("220 fake.example ESMTP\r\n").await;
    peer.expect("EHLO client.example").await;
    peer.send(ehlo).await;
}

/// Accepts one message after MAIL/RCPT (one by one) and DATA.
async fn accept_sequential(peer: &mut Peer, rcpts: usize) {
    peer.read_line().await.expect("MAIL");
    peer.send("250 2.1.0 ok\r\n").await;
    for _ in 0..rcpts {
        peer.read_line().await.expect("RCPT");
        peer.send("250 2.1.5 ok\r\n").await;
    }
    peer.expect("DATA").await;
    peer.send("354 go ahead\r\n").await;
    peer.read_data().await;
    peer.send("250 2.0.0 queued\r\n").await;
}

async fn quit(peer: &mut Peer) {
    peer.expect("QUIT").await;
    peer.send("221 2.0.0 bye\r\n").await;
}

#[tokio::test]
async fn pipelined_transaction_sends_exact_bytes() {
    let (addr, server) = serve(|mut peer| async move {
        greet(
            &mut peer,
            "250-fake.example hello\r\n250-PIPELINING\r\n250-SIZE 1000000\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n",
        )
        .await;
        // All of MAIL and the RCPTs arrive before any reply is sent: a
        // client that waited for the MAIL reply would stall here.
        peer.read_line().await.expect("MAIL");
        peer.read_line().await.expect("RCPT 1");
        peer.read_line().await.expect("RCPT 2");
        // DATA is not pipelined: it waits for the RCPT replies.
        assert!(peer.nothing_more_sent().await, "DATA was pipelined");
        peer.send("250 2.1.0 sender ok\r\n250 2.1.5 ok\r\n250 2.1.5 ok\r\n")
            .await;
        peer.expect("DATA").await;
        peer.send("354 go ahead\r\n").await;
        peer.read_data().await;
        peer.send("250 2.0.0 queued as ABC\r\n").await;
        quit(&mut peer).await;
        assert!(peer.closed_without_more().await);
        peer
    })
    .await;

    let config = default_config();
    let mut conn = Connection::open(
        addr,
        "fake.example",
        TlsPolicy::Opportunistic,
        None,
        &config,
    )
    .await
    .expect("open");
    assert!(!conn.is_tls());
    assert_eq!(conn.remote_name(), "fake.example");
    assert!(conn.capabilities().pipelining);
    let env = Envelope {
        eight_bit: true,
        ..envelope(
            "alice@client.example",
            &["bob@fake.example", "carol@fake.example"],
        )
    };
    // Bare LF, bare CR, a leading dot, a lone dot line, no final newline.
    let message = "Subject: t\n\n.leading dot\nbare\rcr\r\n.\nGr\u{fc}\u{df}e";
    let results = conn.send(&env, message.as_bytes()).await.expect("sent");
    let queued = reply(250, Some("2.0.0"), "queued as ABC");
    assert_eq!(
        results,
        vec![
            RecipientResult::Accepted(queued.clone()),
            RecipientResult::Accepted(queued)
        ]
    );
    assert!(conn.is_usable());
    conn.quit().await;

    let normalized = "Subject: t\r\n\r\n.leading dot\r\nbare\r\ncr\r\n.\r\nGr\u{fc}\u{df}e\r\n";
    let stuffed = "Subject: t\r\n\r\n..leading dot\r\nbare\r\ncr\r\n..\r\nGr\u{fc}\u{df}e\r\n.\r\n";
    let expected = format!(
        "EHLO client.example\r\n\
         MAIL FROM:<alice@client.example> SIZE={} BODY=8BITMIME\r\n\
         RCPT TO:<bob@fake.example>\r\n\
         RCPT TO:<carol@fake.example>\r\n\
         DATA\r\n\
         {stuffed}\
         QUIT\r\n",
        normalized.len()
    );
    let received = server.await.expect("server");
    assert_eq!(String::from_utf8_lossy(&received), expected);
}

#[tokio::test]
async fn one_rejected_recipient_among_three_without_pipelining() {
    let (addr, server) = serve(|mut peer| async move {
        greet(&mut peer, "250-fake.example\r\n250 8BITMIME\r\n").await;
        peer.expect("MAIL FROM:<a@client.example>").await;
        // Without PIPELINING the client waits for each reply.
        assert!(peer.nothing_more_sent().await);
        peer.send("250 2.1.0 ok\r\n").await;
        peer.expect("RCPT TO:<one@fake.example>").await;
        peer.send("250 2.1.5 ok\r\n").await;
        peer.expect("RCPT TO:<two@fake.example>").await;
        peer.send("550-5.1.1 no such user\r\n550 5.1.1 really not\r\n")
            .await;
        peer.expect("RCPT TO:<three@fake.example>").await;
        peer.send("250 2.1.5 ok\r\n").await;
        peer.expect("DATA").await;
        peer.send("354 go\r\n").await;
        assert_eq!(peer.read_data().await, b"hello\r\n.\r\n");
        peer.send("250 2.0.0 done\r\n").await;
        quit(&mut peer).await;
        peer
    })
    .await;
    let config = default_config();
    let mut conn = Connection::open(
        addr,
        "fake.example",
        TlsPolicy::Opportunistic,
        None,
        &config,
    )
    .await
    .expect("open");
    let env = envelope(
        "a@client.example",
        &["one@fake.example", "two@fake.example", "three@fake.example"],
    );
    let results = conn.send(&env, b"hello\r\n").await.expect("sent");
    let done = reply(250, Some("2.0.0"), "done");
    assert_eq!(
        results,
        vec![
            RecipientResult::Accepted(done.clone()),
            RecipientResult::Rejected(reply(550, Some("5.1.1"), "no such user\nreally not")),
            RecipientResult::Accepted(done),
        ]
    );
    conn.quit().await;
    server.await.expect("server");
}

#[tokio::test]
async fn data_refused_then_reused_with_rset() {
    let (addr, server) = serve(|mut peer| async move {
        greet(&mut peer, "250-fake.example\r\n250 PIPELINING\r\n").await;
        peer.read_line().await.expect("MAIL");
        peer.read_line().await.expect("RCPT");
        peer.read_line().await.expect("RCPT");
        peer.read_line().await.expect("RCPT");
        peer.send("250 ok\r\n250 ok\r\n450 4.2.1 mailbox busy\r\n250 ok\r\n")
            .await;
        peer.expect("DATA").await;
        peer.send("554 5.7.1 no thanks\r\n").await;
        // The next transaction starts with RSET (the last one was open).
        peer.expect("RSET").await;
        peer.send("250 2.0.0 reset\r\n").await;
        peer.expect("MAIL FROM:<>").await;
        peer.expect("RCPT TO:<x@fake.example>").await;
        peer.send("250 ok\r\n250 ok\r\n").await;
        peer.expect("DATA").await;
        peer.send("354 go\r\n").await;
        assert_eq!(peer.read_data().await, b".\r\n");
        // Refused at the end of data.
        peer.send("552 5.3.4 too big after all\r\n").await;
        // Finished transaction: no RSET needed.
        peer.expect("MAIL FROM:<>").await;
        peer.expect("RCPT TO:<x@fake.example>").await;
        peer.send("250 ok\r\n250 ok\r\n").await;
        peer.expect("DATA").await;
        peer.send("354 go\r\n").await;
        assert_eq!(peer.read_data().await, b"x\r\n.\r\n");
        peer.send("250 2.0.0 fine\r\n").await;
        quit(&mut peer).await;
        peer
    })
    .await;
    let config = default_config();
    let mut conn = Connection::open(
        addr,
        "fake.example",
        TlsPolicy::Opportunistic,
        None,
        &config,
    )
    .await
    .expect("open");
    let env = envelope(
        "a@client.example",
        &["p@fake.example", "q@fake.example", "r@fake.example"],
    );
    let refused = reply(554, Some("5.7.1"), "no thanks");
    assert_eq!(
        conn.send(&env, b"x").await.expect("transaction ran"),
        vec![
            RecipientResult::Rejected(refused.clone()),
            RecipientResult::Rejected(reply(450, Some("4.2.1"), "mailbox busy")),
            RecipientResult::Rejected(refused),
        ]
    );
    assert!(conn.is_usable());
    let env = envelope("", &["x@fake.example"]);
    assert_eq!(
        conn.send(&env, b"").await.expect("transaction ran"),
        vec![RecipientResult::Rejected(reply(
            552,
            Some("5.3.4"),
            "too big after all"
        ))]
    );
    assert_eq!(
        conn.send(&env, b"x").await.expect("sent"),
        vec![RecipientResult::Accepted(reply(250, Some("2.0.0"), "fine"))]
    );
    conn.quit().await;
    server.await.expect("server");
}

#[tokio::test]
async fn no_recipient_accepted_sends_no_data() {
    let (addr, server) = serve(|mut peer| async move {
        greet(&mut peer, "250-fake.example\r\n250 PIPELINING\r\n").await;
        peer.read_line().await.expect("MAIL");
        peer.read_line().await.expect("RCPT");
        peer.read_line().await.expect("RCPT");
        peer.send("250 ok\r\n550 5.1.1 no\r\n551 5.1.6 moved\r\n")
            .await;
        // No DATA: QUIT comes next.
        quit(&mut peer).await;
        peer
    })
    .await;
    let config = default_config();
    let mut conn = Connection::open(
        addr,
        "fake.example",
        TlsPolicy::Opportunistic,
        None,
        &config,
    )
    .await
    .expect("open");
    let env = envelope("a@client.example", &["p@fake.example", "q@fake.example"]);
    assert_eq!(
        conn.send(&env, b"x").await.expect("ran"),
        vec![
            RecipientResult::Rejected(reply(550, Some("5.1.1"), "no")),
            RecipientResult::Rejected(reply(551, Some("5.1.6"), "moved")),
        ]
    );
    conn.quit().await;
    let received = server.await.expect("server");
    assert!(!String::from_utf8_lossy(&received).contains("DATA"));
}

#[tokio::test]
async fn mail_refused_is_a_transaction_error() {
    let (addr, server) = serve(|mut peer| async move {
        greet(&mut peer, "250-fake.example\r\n250 PIPELINING\r\n").await;
        peer.read_line().await.expect("MAIL");
        peer.read_line().await.expect("RCPT");
        peer.send("553 5.1.8 bad sender\r\n503 5.5.1 need MAIL\r\n")
            .await;
        // The replies were all read: the session is in step for RSET.
        peer.expect("RSET").await;
        peer.send("250 ok\r\n").await;
        quit(&mut peer).await;
        peer
    })
    .await;
    let config = default_config();
    let mut conn = Connection::open(
        addr,
        "fake.example",
        TlsPolicy::Opportunistic,
        None,
        &config,
    )
    .await
    .expect("open");
    let err = conn
        .send(&envelope("bad@client.example", &["p@fake.example"]), b"x")
        .await
        .expect_err("MAIL refused");
    match &err {
        ClientError::Reply { stage: s, reply: r } => {
            assert_eq!(*s, stage::MAIL);
            assert_eq!(r.code, 553);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.is_permanent());
    conn.reset().await.expect("RSET");
    conn.quit().await;
    server.await.expect("server");
}

#[tokio::test]
async fn helo_fallback_without_extensions() {
    let (addr, server) = serve(|mut peer| async move {
        peer.send("220 old.example SMTP\r\n").await;
        peer.expect("EHLO client.example").await;
        peer.send("502 5.5.1 what is EHLO\r\n").await;
        peer.expect("HELO client.example").await;
        peer.send("250 old.example\r\n").await;
        // No BODY=8BITMIME and no SIZE= although the message is 8-bit.
        peer.expect("MAIL FROM:<a@client.example>").await;
        peer.send("250 ok\r\n").await;
        peer.expect("RCPT TO:<b@old.example>").await;
        peer.send("250 ok\r\n").await;
        peer.expect("DATA").await;
        peer.send("354 go\r\n").await;
        // Converted to 7 bit (RFC 6152 §3): the server lacks 8BITMIME.
        assert_eq!(
            String::from_utf8(peer.read_data().await).expect("7-bit"),
            "Subject: t\r\nMIME-Version: 1.0\r\n\
             Content-Type: text/plain; charset=unknown-8bit\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\r\n=C3=A9\r\n.\r\n"
        );
        peer.send("250 ok\r\n").await;
        quit(&mut peer).await;
        peer
    })
    .await;
    let config = default_config();
    let mut conn = Connection::open(addr, "old.example", TlsPolicy::Opportunistic, None, &config)
        .await
        .expect("open");
    assert!(!conn.capabilities().esmtp);
    assert_eq!(conn.remote_name(), "old.example");
    let env = Envelope {
        eight_bit: true,
        ..envelope("a@client.example", &["b@old.example"])
    };
    let results = conn
        .send(&env, "Subject: t\r\n\r\n\u{e9}".as_bytes())
        .await
        .expect("sent");
    assert!(matches!(&results[..], [RecipientResult::Accepted(_)]));
    conn.quit().await;
    server.await.expect("server");
}

#[tokio::test]
async fn opportunistic_starttls_with_self_signed_certificate() {
    let tls = self_signed("fake.example");
    let acceptor = tls.provider.acceptor();
    let (addr, server) = serve(|mut peer| async move {
        greet(
            &mut peer,
            "250-fake.example\r\n250-PIPELINING\r\n250 STARTTLS\r\n",
        )
        .await;
        peer.expect("STARTTLS").await;
        peer.send("220 2.0.0 ready\r\n").await;
        peer.start_tls(&acceptor).await;
        peer.expect("EHLO client.example").await;
        peer.send("250-tls.fake.example\r\n250 PIPELINING\r\n")
            .await;
        peer.read_line().await.expect("MAIL");
        peer.read_line().await.expect("RCPT");
        peer.send("250 ok\r\n250 ok\r\n").await;
        peer.expect("DATA").await;
        peer.send("354 go\r\n").await;
        assert_eq!(peer.read_data().await, b"secret\r\n.\r\n");
        peer.send("250 2.0.0 ok\r\n").await;
        quit(&mut peer).await;
        peer
    })
    .await;
    // The client trusts no certificate: opportunistic TLS must not care.
    let config = default_config();
    let mut conn = Connection::open(
        addr,
        "fake.example",
        TlsPolicy::Opportunistic,
        None,
        &config,
    )
    .await
    .expect("open");
    assert!(conn.is_tls());
    let info = conn.tls_info().expect("TLS details");
    assert!(!info.verified);
    assert!(info.version.starts_with("TLSv1_"), "{info:?}");
    assert!(
        !conn.capabilities().starttls,
        "capabilities are from the second EHLO"
    );
    assert_eq!(conn.remote_name(), "tls.fake.example");
    let results = conn
        .send(
            &envelope("a@client.example", &["b@fake.example"]),
            b"secret",
        )
        .await
        .expect("sent");
    assert!(matches!(&results[..], [RecipientResult::Accepted(_)]));
    conn.quit().await;
    let received = server.await.expect("server");
    // Two EHLOs: before and after STARTTLS.
    assert_eq!(
        String::from_utf8_lossy(&received)
            .matches("EHLO client.example")
            .count(),
        2
    );
}

#[tokio::test]
async fn opportunistic_handshake_failure_then_plaintext_retry() {
    let (addr, server) = serve_many(2, |i, mut peer| async move {
        if i == 0 {
            greet(&mut peer, "250-fake.example\r\n250 STARTTLS\r\n").await;
            peer.expect("STARTTLS").await;
            peer.send("220 go\r\n").await;
            // Not TLS at all: the handshake fails.
            let mut junk = [0u8; 512];
            let _ = tokio::io::AsyncReadExt::read(peer.tcp(), &mut junk).await;
            let _ = peer.try_send(b"garbage garbage garbage garbage\r\n").await;
            peer.drain().await;
        } else {
            greet(&mut peer, "250-fake.example\r\n250 STARTTLS\r\n").await;
            // The plaintext retry ignores STARTTLS.
            quit(&mut peer).await;
        }
        peer
    })
    .await;
    let config = default_config();
    // `open` falls back by itself: a second, plaintext connection.
    let conn = Connection::open(
        addr,
        "fake.example",
        TlsPolicy::Opportunistic,
        None,
        &config,
    )
    .await
    .expect("plaintext fallback after the failed handshake");
    assert!(!conn.is_tls());
    conn.quit().await;
    server.await.expect("server");
}

#[tokio::test]
async fn starttls_reply_with_injected_data_is_refused() {
    let (addr, server) = serve(|mut peer| async move {
        greet(&mut peer, "250-fake.example\r\n250 STARTTLS\r\n").await;
        peer.expect("STARTTLS").await;
        peer.send("220 go\r\n250 injected\r\n").await;
        let _ = peer.closed_without_more().await;
        peer
    })
    .await;
    let config = default_config();
    let err = Connection::open(
        addr,
        "fake.example",
        TlsPolicy::Opportunistic,
        None,
        &config,
    )
    .await
    .expect_err("refused");
    assert!(matches!(err, ClientError::Protocol(_)), "{err:?}");
    server.await.expect("server");
}

#[tokio::test]
async fn require_starttls_without_offer_is_temporary_failure() {
    let (addr, server) = serve(|mut peer| async move {
        greet(&mut peer, "250-fake.example\r\n250 PIPELINING\r\n").await;
        // The client hangs up without sending anything else.
        assert!(peer.closed_without_more().await);
        peer
    })
    .await;
    let config = default_config();
    let err = Connection::open(
        addr,
        "fake.example",
        TlsPolicy::RequireStartTls,
        None,
        &config,
    )
    .await
    .expect_err("TLS required");
    assert!(matches!(err, ClientError::TlsRequired(_)), "{err:?}");
    assert!(!err.is_permanent());
    server.await.expect("server");
}

#[tokio::test]
async fn require_starttls_verifies_the_certificate() {
    let tls = self_signed("fake.example");
    let trusted = client_config_trusting(&tls.ca_pem);
    let acceptor = tls.provider.acceptor();
    let (addr, server) = serve_many(2, move |i, mut peer| {
        let acceptor = acceptor.clone();
        async move {
            greet(&mut peer, "250-fake.example\r\n250 STARTTLS\r\n").await;
            peer.expect("STARTTLS").await;
            peer.send("220 ready\r\n").await;
            if i == 0 {
                // The untrusting client aborts the handshake.
                assert!(!peer.try_start_tls(&acceptor).await);
            } else {
                peer.start_tls(&acceptor).await;
                peer.expect("EHLO client.example").await;
                peer.send("250 fake.example\r\n").await;
                quit(&mut peer).await;
            }
            peer
        }
    })
    .await;
    let untrusting = default_config();
    let err = Connection::open(
        addr,
        "fake.example",
        TlsPolicy::RequireStartTls,
        None,
        &untrusting,
    )
    .await
    .expect_err("certificate not trusted");
    assert!(matches!(err, ClientError::TlsRequired(_)), "{err:?}");
    let config = config(Duration::from_secs(5), trusted);
    let conn = Connection::open(
        addr,
        "fake.example",
        TlsPolicy::RequireStartTls,
        None,
        &config,
    )
    .await
    .expect("verified TLS");
    assert!(conn.is_tls());
    assert!(conn.tls_info().expect("TLS").verified);
    conn.quit().await;
    server.await.expect("server");
}

#[tokio::test]
async fn auth_plain_over_implicit_tls() {
    let tls = self_signed("smarthost.example");
    let trusted = client_config_trusting(&tls.ca_pem);
    let acceptor = tls.provider.acceptor();
    let (addr, server) = serve(|mut peer| async move {
        peer.start_tls(&acceptor).await;
        greet(
            &mut peer,
            "250-smarthost.example\r\n250-AUTH LOGIN PLAIN\r\n250 PIPELINING\r\n",
        )
        .await;
        // "\0user\0secret"
        peer.expect("AUTH PLAIN AHVzZXIAc2VjcmV0").await;
        peer.send("235 2.7.0 welcome\r\n").await;
        quit(&mut peer).await;
        peer
    })
    .await;
    let config = config(Duration::from_secs(5), trusted);
    let creds = Credentials {
        user: "user".into(),
        password: "secret".into(),
    };
    let conn = Connection::open(
        addr,
        "localhost",
        TlsPolicy::Implicit,
        Some(&creds),
        &config,
    )
    .await
    .expect("authenticated");
    assert!(conn.is_tls());
    assert!(conn.tls_info().expect("TLS").verified);
    conn.quit().await;
    server.await.expect("server");
}

#[tokio::test]
async fn auth_login_after_starttls_and_refusal() {
    let tls = self_signed("smarthost.example");
    let trusted = client_config_trusting(&tls.ca_pem);
    let acceptor = tls.provider.acceptor();
    let (addr, server) = serve_many(2, move |i, mut peer| {
        let acceptor = acceptor.clone();
        async move {
            greet(&mut peer, "250-smarthost.example\r\n250 STARTTLS\r\n").await;
            peer.expect("STARTTLS").await;
            peer.send("220 ready\r\n").await;
            peer.start_tls(&acceptor).await;
            peer.expect("EHLO client.example").await;
            peer.send("250-smarthost.example\r\n250 AUTH LOGIN\r\n")
                .await;
            peer.expect("AUTH LOGIN").await;
            peer.send("334 VXNlcm5hbWU6\r\n").await;
            peer.expect("dXNlcg==").await;
            peer.send("334 UGFzc3dvcmQ6\r\n").await;
            peer.expect("c2VjcmV0").await;
            if i == 0 {
                peer.send("235 2.7.0 ok\r\n").await;
                quit(&mut peer).await;
            } else {
                peer.send("535 5.7.8 bad credentials\r\n").await;
                let _ = peer.closed_without_more().await;
            }
            peer
        }
    })
    .await;
    let config = config(Duration::from_secs(5), trusted);
    let creds = Credentials {
        user: "user".into(),
        password: "secret".into(),
    };
    let conn = Connection::open(
        addr,
        "localhost",
        TlsPolicy::RequireStartTls,
        Some(&creds),
        &config,
    )
    .await
    .expect("authenticated");
    conn.quit().await;
    let err = Connection::open(
        addr,
        "localhost",
        TlsPolicy::RequireStartTls,
        Some(&creds),
        &config,
    )
    .await
    .expect_err("refused");
    match &err {
        ClientError::Reply { stage: s, reply: r } => {
            assert_eq!(*s, stage::AUTH);
            assert_eq!(r.code, 535);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.is_permanent());
    server.await.expect("server");
}

#[tokio::test]
async fn auth_never_sent_in_plaintext() {
    let (addr, server) = serve(|mut peer| async move {
        greet(&mut peer, "250-fake.example\r\n250 AUTH PLAIN\r\n").await;
        assert!(
            peer.closed_without_more().await,
            "something sent after EHLO"
        );
        peer
    })
    .await;
    let config = default_config();
    let creds = Credentials {
        user: "user".into(),
        password: "secret".into(),
    };
    let err = Connection::open(
        addr,
        "fake.example",
        TlsPolicy::Opportunistic,
        Some(&creds),
        &config,
    )
    .await
    .expect_err("no TLS");
    assert!(matches!(err, ClientError::TlsRequired(_)), "{err:?}");
    let received = server.await.expect("server");
    assert!(!String::from_utf8_lossy(&received).contains("AUTH"));
}

#[tokio::test]
async fn endless_multi_line_reply_is_a_protocol_error() {
    let (addr, server) = serve(|mut peer| async move {
        peer.send("220 fake.example\r\n").await;
        peer.expect("EHLO client.example").await;
        let mut flood = String::new();
        for i in 0..10_000 {
            flood.push_str(&format!("250-line {i}\r\n"));
        }
        flood.push_str("250 end\r\n");
        // The client may hang up in the middle.
        let _ = peer.try_send(flood.as_bytes()).await;
        peer
    })
    .await;
    let config = default_config();
    let err = Connection::open(
        addr,
        "fake.example",
        TlsPolicy::Opportunistic,
        None,
        &config,
    )
    .await
    .expect_err("flood refused");
    match &err {
        ClientError::Protocol(msg) => assert!(msg.contains("more than 100 lines"), "{msg}"),
        other => panic!("unexpected {other:?}"),
    }
    server.await.expect("server");
}

#[tokio::test]
async fn huge_line_is_a_protocol_error() {
    let (addr, server) = serve(|mut peer| async move {
        let mut line = "220 ".to_string();
        line.push_str(&"x".repeat(1024 * 1024));
        let _ = peer.try_send(line.as_bytes()).await;
        peer
    })
    .await;
    let config = default_config();
    let err = Connection::open(
        addr,
        "fake.example",
        TlsPolicy::Opportunistic,
        None,
        &config,
    )
    .await
    .expect_err("refused");
    assert!(matches!(err, ClientError::Protocol(_)), "{err:?}");
    server.await.expect("server");
}

#[tokio::test]
async fn malformed_greeting_is_a_protocol_error() {
    let (addr, server) = serve(|mut peer| async move {
        peer.send("2x0 hello\r\n").await;
        peer
    })
    .await;
    let config = default_config();
    let err = Connection::open(
        addr,
        "fake.example",
        TlsPolicy::Opportunistic,
        None,
        &config,
    )
    .await
    .expect_err("refused");
    assert!(matches!(err, ClientError::Protocol(_)), "{err:?}");
    server.await.expect("server");
}

#[tokio::test]
async fn greeting_554_is_a_permanent_reply_for_this_host() {
    let (addr, server) = serve(|mut peer| async move {
        peer.send("554 5.7.1 go away\r\n").await;
        peer
    })
    .await;
    let config = default_config();
    let err = Connection::open(
        addr,
        "fake.example",
        TlsPolicy::Opportunistic,
        None,
        &config,
    )
    .await
    .expect_err("refused");
    match &err {
        ClientError::Reply { stage: s, reply: r } => {
            assert_eq!(*s, stage::GREETING);
            assert_eq!(r, &reply(554, Some("5.7.1"), "go away"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.is_permanent());
    server.await.expect("server");
}

#[tokio::test]
async fn silent_server_times_out_at_greeting() {
    let (addr, server) = serve(|mut peer| async move {
        // Never says anything; waits for the client to give up.
        let _ = peer.closed_without_more().await;
        peer
    })
    .await;
    let config = config(Duration::from_millis(200), trust_nothing());
    let err = Connection::open(
        addr,
        "fake.example",
        TlsPolicy::Opportunistic,
        None,
        &config,
    )
    .await
    .expect_err("timeout");
    assert!(
        matches!(err, ClientError::Timeout(s) if s == stage::GREETING),
        "{err:?}"
    );
    assert!(!err.is_permanent());
    server.await.expect("server");
}

#[tokio::test]
async fn silence_after_end_of_data_times_out() {
    let (addr, server) = serve(|mut peer| async move {
        greet(&mut peer, "250 fake.example\r\n").await;
        peer.read_line().await.expect("MAIL");
        peer.send("250 ok\r\n").await;
        peer.read_line().await.expect("RCPT");
        peer.send("250 ok\r\n").await;
        peer.expect("DATA").await;
        peer.send("354 go\r\n").await;
        peer.read_data().await;
        // Never answers.
        let _ = peer.closed_without_more().await;
        peer
    })
    .await;
    let config = config(Duration::from_millis(200), trust_nothing());
    let mut conn = Connection::open(
        addr,
        "fake.example",
        TlsPolicy::Opportunistic,
        None,
        &config,
    )
    .await
    .expect("open");
    let err = conn
        .send(&envelope("a@client.example", &["b@fake.example"]), b"x")
        .await
        .expect_err("timeout");
    assert!(
        matches!(err, ClientError::Timeout(s) if s == stage::DATA_END),
        "{err:?}"
    );
    assert!(!conn.is_usable());
    assert!(conn.reset().await.is_err());
    drop(conn);
    server.await.expect("server");
}

#[tokio::test]
async fn too_large_for_announced_size_is_refused_before_mail() {
    let (addr, server) = serve(|mut peer| async move {
        greet(&mut peer, "250-fake.example\r\n250 SIZE 100\r\n").await;
        // Nothing but QUIT.
        quit(&mut peer).await;
        peer
    })
    .await;
    let config = default_config();
    let mut conn = Connection::open(
        addr,
        "fake.example",
        TlsPolicy::Opportunistic,
        None,
        &config,
    )
    .await
    .expect("open");
    assert_eq!(conn.capabilities().max_size, Some(100));
    let err = conn
        .send(
            &envelope("a@client.example", &["b@fake.example"]),
            &[b'x'; 200],
        )
        .await
        .expect_err("too large");
    assert!(
        matches!(
            err,
            ClientError::TooLarge {
                size: 202,
                limit: 100
            }
        ),
        "{err:?}"
    );
    assert!(err.is_permanent());
    assert!(conn.is_usable());
    conn.quit().await;
    server.await.expect("server");
}

#[tokio::test]
async fn smtputf8_needed_but_missing_is_refused_before_mail() {
    let (addr, server) = serve(|mut peer| async move {
        greet(&mut peer, "250-fake.example\r\n250 8BITMIME\r\n").await;
        quit(&mut peer).await;
        peer
    })
    .await;
    let config = default_config();
    let mut conn = Connection::open(
        addr,
        "fake.example",
        TlsPolicy::Opportunistic,
        None,
        &config,
    )
    .await
    .expect("open");
    let env = Envelope {
        smtputf8: true,
        ..envelope("a@client.example", &["b@fake.example"])
    };
    let err = conn.send(&env, b"x").await.expect_err("unsupported");
    assert!(
        matches!(err, ClientError::Unsupported("SMTPUTF8")),
        "{err:?}"
    );
    assert!(err.is_permanent());
    // A non-ASCII address needs it too, even without the flag.
    let env = envelope("a@client.example", &["j\u{f6}rg@fake.example"]);
    let err = conn.send(&env, b"x").await.expect_err("unsupported");
    assert!(
        matches!(err, ClientError::Unsupported("SMTPUTF8")),
        "{err:?}"
    );
    conn.quit().await;
    server.await.expect("server");
}

/// An 8-bit MIME message: a text part to convert, a base64 attachment to
/// leave alone.
const EIGHT_BIT_MIME: &str = "From: <a@client.example>\r\n\
    Subject: Gr\u{fc}\u{df}e\r\n\
    MIME-Version: 1.0\r\n\
    Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
    --b1\r\n\
    Content-Type: text/plain; charset=utf-8\r\n\
    Content-Transfer-Encoding: 8bit\r\n\r\n\
    Gr\u{fc}\u{df}e aus K\u{f6}ln = sch\u{f6}n  \r\n\
    .dot\r\n\
    --b1\r\n\
    Content-Type: application/octet-stream\r\n\
    Content-Transfer-Encoding: base64\r\n\r\n\
    AAECAwQFBgcICQ==\r\n\
    --b1--\r\n";

#[tokio::test]
async fn eight_bit_message_is_converted_for_a_server_without_8bitmime() {
    // The Subject is 8-bit: only a transaction under SMTPUTF8 may keep it,
    // so this server offers SMTPUTF8 (and, wrongly, no 8BITMIME).
    let (addr, server) = serve(|mut peer| async move {
        greet(
            &mut peer,
            "250-fake.example\r\n250-PIPELINING\r\n250-SIZE 100000\r\n250 SMTPUTF8\r\n",
        )
        .await;
        peer.read_line().await.expect("MAIL");
        peer.read_line().await.expect("RCPT");
        peer.send("250 ok\r\n250 ok\r\n").await;
        peer.expect("DATA").await;
        peer.send("354 go\r\n").await;
        peer.read_data().await;
        peer.send("250 2.0.0 ok\r\n").await;
        // The second message: 8-bit headers not allowed without SMTPUTF8.
        peer.read_line().await.expect("MAIL");
        peer.read_line().await.expect("RCPT");
        peer.send("250 ok\r\n250 ok\r\n").await;
        peer.expect("DATA").await;
        peer.send("354 go\r\n").await;
        peer.read_data().await;
        peer.send("250 2.0.0 ok\r\n").await;
        quit(&mut peer).await;
        peer
    })
    .await;
    let config = default_config();
    let mut conn = Connection::open(
        addr,
        "fake.example",
        TlsPolicy::Opportunistic,
        None,
        &config,
    )
    .await
    .expect("open");
    assert!(!conn.capabilities().eight_bit_mime);
    let env = Envelope {
        eight_bit: true,
        smtputf8: true,
        ..envelope("a@client.example", &["b@fake.example"])
    };
    let results = conn
        .send(&env, EIGHT_BIT_MIME.as_bytes())
        .await
        .expect("sent");
    assert!(matches!(&results[..], [RecipientResult::Accepted(_)]));
    // The same body with an ASCII Subject, without SMTPUTF8.
    let ascii_subject = EIGHT_BIT_MIME.replace("Subject: Gr\u{fc}\u{df}e", "Subject: hello");
    let env = Envelope {
        eight_bit: true,
        ..envelope("a@client.example", &["b@fake.example"])
    };
    let results = conn
        .send(&env, ascii_subject.as_bytes())
        .await
        .expect("sent");
    assert!(matches!(&results[..], [RecipientResult::Accepted(_)]));
    conn.quit().await;

    let body = "MIME-Version: 1.0\r\n\
        Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
        --b1\r\n\
        Content-Type: text/plain; charset=utf-8\r\n\
        Content-Transfer-Encoding: quoted-printable\r\n\r\n\
        Gr=C3=BC=C3=9Fe aus K=C3=B6ln =3D sch=C3=B6n =20\r\n\
        .dot\r\n\
        --b1\r\n\
        Content-Type: application/octet-stream\r\n\
        Content-Transfer-Encoding: base64\r\n\r\n\
        AAECAwQFBgcICQ==\r\n\
        --b1--\r\n";
    let first = format!("From: <a@client.example>\r\nSubject: Gr\u{fc}\u{df}e\r\n{body}");
    let second = format!("From: <a@client.example>\r\nSubject: hello\r\n{body}");
    let stuffed = |m: &str| m.replace("\r\n.dot", "\r\n..dot");
    let expected = format!(
        "EHLO client.example\r\n\
         MAIL FROM:<a@client.example> SIZE={} SMTPUTF8\r\n\
         RCPT TO:<b@fake.example>\r\n\
         DATA\r\n\
         {}.\r\n\
         MAIL FROM:<a@client.example> SIZE={}\r\n\
         RCPT TO:<b@fake.example>\r\n\
         DATA\r\n\
         {}.\r\n\
         QUIT\r\n",
        first.len(),
        stuffed(&first),
        second.len(),
        stuffed(&second),
    );
    let received = server.await.expect("server");
    assert_eq!(String::from_utf8_lossy(&received), expected);
    // From the second MAIL on (no SMTPUTF8): not one 8-bit byte.
    let second_mail = received
        .windows(4)
        .rposition(|w| w == b"MAIL")
        .expect("second MAIL");
    assert!(received[second_mail..].iter().all(|&b| b < 0x80));
    assert!(
        String::from_utf8_lossy(&received[second_mail..])
            .contains("Content-Transfer-Encoding: quoted-printable\r\n")
    );
    assert!(!String::from_utf8_lossy(&received).contains("BODY=8BITMIME"));
}

#[tokio::test]
async fn unconvertible_eight_bit_message_is_refused_before_mail() {
    let (addr, server) = serve(|mut peer| async move {
        greet(&mut peer, "250-fake.example\r\n250 PIPELINING\r\n").await;
        // Nothing of the refused messages; the 7-bit one goes through.
        peer.expect("MAIL FROM:<a@client.example>").await;
        peer.expect("RCPT TO:<b@fake.example>").await;
        peer.send("250 ok\r\n250 ok\r\n").await;
        peer.expect("DATA").await;
        peer.send("354 go\r\n").await;
        assert_eq!(peer.read_data().await, b"Subject: ok\r\n\r\nascii\r\n.\r\n");
        peer.send("250 2.0.0 ok\r\n").await;
        quit(&mut peer).await;
        peer
    })
    .await;
    let config = default_config();
    let mut conn = Connection::open(
        addr,
        "fake.example",
        TlsPolicy::Opportunistic,
        None,
        &config,
    )
    .await
    .expect("open");
    let env = Envelope {
        eight_bit: true,
        ..envelope("a@client.example", &["b@fake.example"])
    };
    let binary = "MIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\n\
        Content-Transfer-Encoding: binary\r\n\r\n\u{ff}\u{fe}\0\r\n";
    let err = conn
        .send(&env, binary.as_bytes())
        .await
        .expect_err("binary cannot be converted");
    assert!(
        matches!(
            err,
            ClientError::Unconvertible(postamt_smtp_client::downgrade::Unconvertible::Binary)
        ),
        "{err:?}"
    );
    assert!(err.is_permanent());
    assert!(
        err.to_string().contains("does not support 8BITMIME"),
        "{err}"
    );
    assert!(conn.is_usable(), "nothing was sent: the session goes on");
    // 8-bit in a header without SMTPUTF8.
    let err = conn
        .send(&env, "Subject: \u{e9}\r\n\r\nx\r\n".as_bytes())
        .await
        .expect_err("8-bit header");
    assert!(
        matches!(
            err,
            ClientError::Unconvertible(
                postamt_smtp_client::downgrade::Unconvertible::EightBitHeader
            )
        ),
        "{err:?}"
    );
    assert!(conn.is_usable());
    let results = conn
        .send(&env, b"Subject: ok\r\n\r\nascii\r\n")
        .await
        .expect("sent");
    assert!(matches!(&results[..], [RecipientResult::Accepted(_)]));
    conn.quit().await;
    server.await.expect("server");
}

#[tokio::test]
async fn smtputf8_parameter_when_supported() {
    let (addr, server) = serve(|mut peer| async move {
        greet(&mut peer, "250-fake.example\r\n250 SMTPUTF8\r\n").await;
        peer.expect("MAIL FROM:<a@client.example> SMTPUTF8").await;
        peer.send("250 ok\r\n").await;
        peer.expect("RCPT TO:<j\u{f6}rg@fake.example>").await;
        peer.send("250 ok\r\n").await;
        peer.expect("DATA").await;
        peer.send("354 go\r\n").await;
        peer.read_data().await;
        peer.send("250 ok\r\n").await;
        quit(&mut peer).await;
        peer
    })
    .await;
    let config = default_config();
    let mut conn = Connection::open(
        addr,
        "fake.example",
        TlsPolicy::Opportunistic,
        None,
        &config,
    )
    .await
    .expect("open");
    let env = envelope("a@client.example", &["j\u{f6}rg@fake.example"]);
    let results = conn.send(&env, b"x").await.expect("sent");
    assert!(matches!(&results[..], [RecipientResult::Accepted(_)]));
    conn.quit().await;
    server.await.expect("server");
}

#[tokio::test]
async fn injection_attempt_in_recipient_is_refused_locally() {
    let (addr, server) = serve(|mut peer| async move {
        greet(&mut peer, "250 fake.example\r\n").await;
        accept_sequential(&mut peer, 1).await;
        quit(&mut peer).await;
        peer
    })
    .await;
    let config = default_config();
    let mut conn = Connection::open(
        addr,
        "fake.example",
        TlsPolicy::Opportunistic,
        None,
        &config,
    )
    .await
    .expect("open");
    let env = envelope(
        "a@client.example",
        &[
            "ok@fake.example",
            "x@fake.example>\r\nRCPT TO:<evil@fake.example",
        ],
    );
    let results = conn.send(&env, b"x").await.expect("sent");
    assert!(matches!(&results[0], RecipientResult::Accepted(_)));
    assert!(matches!(&results[1], RecipientResult::Rejected(r) if r.code == 553));
    conn.quit().await;
    let received = String::from_utf8(server.await.expect("server")).expect("UTF-8");
    assert!(!received.contains("evil"));
}

#[tokio::test]
async fn service_closing_421_makes_the_connection_unusable() {
    let (addr, server) = serve(|mut peer| async move {
        greet(&mut peer, "250 fake.example\r\n").await;
        peer.read_line().await.expect("MAIL");
        peer.send("421 4.3.2 shutting down\r\n").await;
        let _ = peer.closed_without_more().await;
        peer
    })
    .await;
    let config = default_config();
    let mut conn = Connection::open(
        addr,
        "fake.example",
        TlsPolicy::Opportunistic,
        None,
        &config,
    )
    .await
    .expect("open");
    let err = conn
        .send(&envelope("a@client.example", &["b@fake.example"]), b"x")
        .await
        .expect_err("refused");
    assert!(!err.is_permanent());
    assert!(!conn.is_usable());
    conn.quit().await;
    server.await.expect("server");
}

#[tokio::test]
async fn connect_refused() {
    // Bind and drop to get a port nobody listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    drop(listener);
    let config = default_config();
    let err = Connection::open(
        addr,
        "fake.example",
        TlsPolicy::Opportunistic,
        None,
        &config,
    )
    .await
    .expect_err("refused");
    assert!(
        matches!(err, ClientError::Connect(a, _) if a == addr),
        "{err:?}"
    );
    assert!(!err.is_permanent());
}

/// The delivery agent spawns transactions on the runtime: the futures must
/// be `Send`.
#[allow(dead_code)]
fn futures_are_send(conn: &mut Connection, config: &postamt_smtp_client::ClientConfig) {
    fn assert_send<T: Send>(_: &T) {}
    assert_send::<Connection>(conn);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 25));
    let open = Connection::open(addr, "x", TlsPolicy::Opportunistic, None, config);
    assert_send(&open);
    let plain = Connection::open_plaintext(addr, "x", config);
    assert_send(&plain);
    let env = envelope("", &[]);
    let send = conn.send(&env, b"");
    assert_send(&send);
}
