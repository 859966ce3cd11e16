//! Remote delivery over the real SMTP client to a scripted sink on
//! loopback (as the smarthost): one transaction for two recipients of a
//! domain, one accepted and one refused at RCPT, the refusal carrying the
//! sink's reply.

use postamt_config::Config;
use postamt_delivery::RemoteDelivery;
use postamt_delivery::remote::MessageJob;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// Serves one SMTP session; records the commands and the message.
async fn sink(listener: TcpListener, seen: Arc<Mutex<Vec<String>>>) {
    let Ok((stream, _)) = listener.accept().await else {
        return;
    };
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let _ = w.write_all(b"220 sink.test ESMTP\r\n").await;
    let mut in_data = false;
    loop {
        let mut line = String::new();
        match r.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        seen.lock().unwrap().push(line.clone());
        if in_data {
            if line == ".\r\n" {
                in_data = false;
                let _ = w.write_all(b"250 2.0.0 queued as S1\r\n").await;
            }
            continue;
        }
        let upper = line.to_ascii_uppercase();
        let answer: &[u8] = if upper.starts_with("EHLO") {
            b"250-sink.test\r\n250 8BITMIME\r\n"
        } else if upper.starts_with("MAIL") {
            b"250 2.1.0 ok\r\n"
        } else if upper.starts_with("RCPT") && upper.contains("GHOST") {
            b"550 5.1.1 <ghost@one.test>: no such user\r\n"
        } else if upper.starts_with("RCPT") {
            b"250 2.1.5 ok\r\n"
        } else if upper.starts_with("DATA") {
            in_data = true;
            b"354 go ahead\r\n"
        } else if upper.starts_with("RSET") {
            b"250 2.0.0 reset\r\n"
        } else if upper.starts_with("QUIT") {
            let _ = w.write_all(b"221 2.0.0 bye\r\n").await;
            return;
        } else {
            b"500 5.5.1 what?\r\n"
        };
        if w.write_all(answer).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_through_the_real_client_to_a_smarthost() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let server = tokio::spawn(sink(listener, Arc::clone(&seen)));

    let mut cfg = Config {
        hostname: "mx.example.org".into(),
        ..Config::default()
    };
    cfg.delivery.smarthost = Some(addr.to_string());
    // Never asked: the smarthost is an IP address.
    cfg.dns.nameservers = vec!["127.0.0.1:9".into()];
    cfg.delivery.connect_timeout = "5s".parse().unwrap();
    cfg.delivery.command_timeout = "10s".parse().unwrap();
    cfg.delivery.data_timeout = "10s".parse().unwrap();
    let remote = Arc::new(RemoteDelivery::from_config(&cfg, 16).expect("remote delivery"));

    let job = MessageJob {
        queue_id: "q1".into(),
        mail_from: "s@example.org".into(),
        eight_bit: false,
        smtputf8: false,
        message: Arc::from(&b"Subject: hi\r\n\r\nhello\r\n"[..]),
    };
    let rcpts = vec!["a@one.test".to_string(), "ghost@one.test".to_string()];
    let out = tokio::time::timeout(Duration::from_secs(30), remote.deliver(job, &rcpts))
        .await
        .expect("delivery finishes");

    let a = &out["a@one.test"];
    assert!(a.result.is_ok(), "{a:?}");
    assert_eq!(a.addr, Some(addr));
    assert!(a.reply.as_deref().unwrap_or("").starts_with("250"), "{a:?}");
    let g = &out["ghost@one.test"];
    let f = g.result.as_ref().unwrap_err();
    assert!(f.is_permanent());
    assert_eq!(f.status, "5.1.1");
    assert!(
        f.text
            .contains("said: 550 5.1.1 <ghost@one.test>: no such user"),
        "{}",
        f.text
    );

    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
    let seen = seen.lock().unwrap().join("");
    assert_eq!(
        seen.matches("MAIL FROM:").count(),
        1,
        "one transaction: {seen}"
    );
    assert!(seen.contains("RCPT TO:<a@one.test>"), "{seen}");
    assert!(seen.contains("hello\r\n.\r\n"), "{seen}");
}

/// A second message to the same host right after the first travels on the
/// same connection (the sink accepts only one), after an RSET.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_message_reuses_the_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let server = tokio::spawn(sink(listener, Arc::clone(&seen)));

    let mut cfg = Config {
        hostname: "mx.example.org".into(),
        ..Config::default()
    };
    cfg.delivery.smarthost = Some(addr.to_string());
    cfg.dns.nameservers = vec!["127.0.0.1:9".into()];
    cfg.delivery.connect_timeout = "3s".parse().unwrap();
    cfg.delivery.command_timeout = "10s".parse().unwrap();
    cfg.delivery.data_timeout = "10s".parse().unwrap();
    let remote = Arc::new(RemoteDelivery::from_config(&cfg, 16).expect("remote delivery"));
    for n in 1..=2 {
        let job = MessageJob {
            queue_id: format!("q{n}"),
            mail_from: "s@example.org".into(),
            eight_bit: false,
            smtputf8: false,
            message: Arc::from(format!("Subject: {n}\r\n\r\nmessage {n}\r\n").as_bytes()),
        };
        let rcpts = vec![format!("r{n}@one.test")];
        let out = tokio::time::timeout(Duration::from_secs(30), remote.deliver(job, &rcpts))
            .await
            .expect("delivery finishes");
        let r = &out[&rcpts[0]];
        assert!(r.result.is_ok(), "message {n}: {r:?}");
    }
    // The idle connection is closed (QUIT) a few seconds later.
    tokio::time::timeout(Duration::from_secs(20), server)
        .await
        .expect("the idle connection is closed")
        .unwrap();
    let seen = seen.lock().unwrap().join("");
    assert_eq!(seen.matches("EHLO").count(), 1, "one connection: {seen}");
    assert_eq!(seen.matches("MAIL FROM:").count(), 2, "{seen}");
    assert!(seen.contains("RSET"), "checked before reuse: {seen}");
    assert!(seen.contains("message 2\r\n.\r\n"), "{seen}");
    assert!(seen.ends_with("QUIT\r\n"), "{seen}");
}

#[test]
fn a_bad_ca_file_is_reported_and_degrades_to_deferring() {
    let mut cfg = Config::default();
    cfg.delivery.tls_ca_file = Some("/nonexistent/ca.pem".into());
    assert!(RemoteDelivery::from_config(&cfg, 16).is_err());
    let remote = Arc::new(RemoteDelivery::from_config_or_degraded(&cfg, 16));
    let job = MessageJob {
        queue_id: "q2".into(),
        mail_from: "s@example.org".into(),
        eight_bit: false,
        smtputf8: false,
        message: Arc::from(&b"Subject: hi\r\n\r\nhello\r\n"[..]),
    };
    let out = remote.deliver_blocking(job, &["a@one.test".to_string()]);
    let f = out["a@one.test"].result.as_ref().unwrap_err();
    assert!(!f.is_permanent());
    assert!(f.text.contains("tls_ca_file"), "{}", f.text);
}
