//! Tests of the log search and the message trace: lines written by the
//! real formatter parse; searches and traces over files in a temp dir.

use super::*;
use std::fs;
use std::sync::Mutex;

/// Lines written by tracing-subscriber's default formatter set up as
/// `crates/postamt/src/logging.rs` does (no ANSI), with the field styles the
/// services use (`%display`, `?debug`, plain, `Option<&str>`).
#[test]
fn lines_of_the_real_formatter_parse() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("receiver.log");
    let file = fs::File::create(&path).unwrap();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .with_writer(Mutex::new(file))
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let id = "0192f8a4c3b17e5a9d2c4e6f8a0b1c2d";
        let peer: std::net::SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let reason = "550 5.1.1 <bob@example.net>: user unknown";
        let targets = vec!["alice@example.org".to_string()];
        let opt: Option<&str> = Some(id);
        tracing::info!(queue_id = %id, from = %"alice@example.org", size = 1234u64, nrcpt = 2usize, %peer, message_id = %"<m1@example.org>", tls = true, "message queued");
        tracing::warn!(queue_id = %id, to = %"bob@example.net", reason = %reason, status = %"bounced", delay = 3i64, "delivery failed");
        tracing::info!(queue_id = %id, bounce_id = %"b2", to = ?targets, "bounce generated");
        tracing::info!(user = %"bob", queue_id = opt, size = 10usize, "retr");
        tracing::error!(error = %"disk full\u{7f}", "enqueue failed");
    });
    let text = fs::read_to_string(&path).unwrap();
    let events: Vec<LogEvent> = text
        .lines()
        .map(|l| parse_line("receiver", l).unwrap_or_else(|| panic!("unparsed: {l}")))
        .collect();
    assert_eq!(events.len(), 5, "{text}");
    let e = &events[0];
    assert_eq!(e.level, "INFO");
    assert_eq!(e.message, "message queued");
    assert!(e.unix > 1_600_000_000, "{}", e.time);
    assert_eq!(
        e.field("queue_id"),
        Some("0192f8a4c3b17e5a9d2c4e6f8a0b1c2d")
    );
    assert_eq!(e.field("from"), Some("alice@example.org"));
    assert_eq!(e.field("peer"), Some("192.0.2.7:40000"));
    assert_eq!(e.field("message_id"), Some("<m1@example.org>"));
    assert_eq!(e.field("tls"), Some("true"));
    let e = &events[1];
    assert_eq!(e.level, "WARN");
    assert_eq!(
        e.field("reason"),
        Some("550 5.1.1 <bob@example.net>: user unknown")
    );
    assert_eq!(e.field("status"), Some("bounced"));
    assert_eq!(e.field("delay"), Some("3"));
    assert_eq!(events[2].field("to"), Some("[\"alice@example.org\"]"));
    // An `Option<&str>` is written quoted; the parse unquotes it.
    assert_eq!(
        events[3].field("queue_id"),
        Some("0192f8a4c3b17e5a9d2c4e6f8a0b1c2d")
    );
    assert_eq!(events[4].level, "ERROR");
    assert_eq!(events[4].message, "enqueue failed");
}

/// A log directory with one delivered message (q1, Message-ID m1), one
/// bounced recipient whose bounce is q2, and an unrelated q3.
fn sample_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    fs::write(
        p.join("receiver.log.1"),
        "2026-03-01T09:00:00.000001Z  INFO postamt_receiver::session: message queued queue_id=q0 from=old@example.org size=1 nrcpt=1 message_id=<m0@x>\n",
    )
    .unwrap();
    fs::write(
        p.join("receiver.log"),
        "2026-03-01T10:00:00.000001Z  INFO postamt_receiver::connection: connect peer=192.0.2.7:40000 mode=mx tls=false\n\
         2026-03-01T10:00:01.000001Z  INFO postamt_receiver::session: message queued queue_id=q1 from=Alice@Example.org size=1234 nrcpt=2 peer=192.0.2.7:40000 message_id=<m1@example.org>\n\
         2026-03-01T10:05:00.000001Z  INFO postamt_receiver::session: message queued queue_id=q3 from=carol@example.com size=99 nrcpt=1 peer=192.0.2.8:1 message_id=<m3@example.com>\n\
         2026-03-01T10:06:00.000001Z  WARN postamt_receiver::session: too many errors, closing peer=192.0.2.9:1 errors=20\n",
    )
    .unwrap();
    fs::write(
        p.join("delivery.log"),
        "2026-03-01T10:00:02.000001Z  INFO postamt_delivery::attempt: delivered queue_id=q1 to=bob@example.org dest=bob status=sent delay=1\n\
         2026-03-01T10:00:02.000002Z  WARN postamt_delivery::attempt: delivery failed queue_id=q1 to=nobody@example.net dest=nobody@example.net reason=550 5.1.1 <nobody@example.net>: user unknown status=bounced delay=1\n\
         2026-03-01T10:00:02.000003Z  INFO postamt_delivery::attempt: bounce generated queue_id=q1 bounce_id=q2 to=[\"alice@example.org\"] failed=[\"nobody@example.net\"]\n\
         2026-03-01T10:00:02.000004Z  INFO postamt_delivery::attempt: message completed, removed from the queue queue_id=q1 delivered=1 failed=1 delay=1\n\
         2026-03-01T10:00:03.000001Z  INFO postamt_delivery::attempt: delivered queue_id=q2 to=alice@example.org dest=alice status=sent delay=1\n\
         2026-03-01T10:05:01.000001Z  INFO postamt_delivery::attempt: delivery deferred queue_id=q3 to=dave@example.net dest=dave@example.net reason=451 4.3.0 try later status=deferred delay=1\n\
         2026-03-01T10:07:00.000001Z ERROR postamt_delivery::scheduler: delivery attempt failed error=disk full\n",
    )
    .unwrap();
    fs::write(
        p.join("retrieval.log"),
        "2026-03-01T10:00:04.000001Z  INFO postamt_pop3::session: retr user=bob peer=127.0.0.1:5 msg=1 uid=abc queue_id=\"q1\" size=1300\n",
    )
    .unwrap();
    // Compressed rotations are never read.
    fs::write(p.join("delivery.log.2.gz"), b"\x1f\x8b garbage").unwrap();
    d
}

fn messages(events: &[LogEvent]) -> Vec<&str> {
    events.iter().map(|e| e.message.as_str()).collect()
}

#[test]
fn files_are_listed_newest_first_without_compressed_ones() {
    let d = sample_dir();
    let files = log_files(d.path(), "receiver");
    let names: Vec<_> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap())
        .collect();
    assert_eq!(names, vec!["receiver.log", "receiver.log.1"]);
    let files = log_files(d.path(), "delivery");
    assert_eq!(files.len(), 1);
    assert!(log_files(&d.path().join("none"), "delivery").is_empty());
}

#[test]
fn search_filters_and_orders_newest_last() {
    let d = sample_dir();
    let all = search(d.path(), &LogQuery::default()).unwrap();
    assert_eq!(all.len(), 13);
    assert!(all.windows(2).all(|w| w[0].unix <= w[1].unix));
    assert_eq!(
        all[0].field("queue_id"),
        Some("q0"),
        "rotated file read too"
    );
    assert_eq!(all.last().unwrap().log, "delivery");

    let q = LogQuery {
        queue_id: Some("q1".into()),
        ..Default::default()
    };
    let got = search(d.path(), &q).unwrap();
    assert_eq!(
        messages(&got),
        vec![
            "message queued",
            "delivered",
            "delivery failed",
            "bounce generated",
            "message completed, removed from the queue",
            "retr"
        ]
    );

    let q = LogQuery {
        address: Some("ALICE@example.org".into()),
        ..Default::default()
    };
    let got = search(d.path(), &q).unwrap();
    assert_eq!(
        messages(&got),
        vec!["message queued", "bounce generated", "delivered"]
    );

    let q = LogQuery {
        logs: vec!["delivery".into()],
        text: Some("TRY LATER".into()),
        ..Default::default()
    };
    assert_eq!(
        messages(&search(d.path(), &q).unwrap()),
        vec!["delivery deferred"]
    );

    let since = chrono::DateTime::parse_from_rfc3339("2026-03-01T10:05:00Z")
        .unwrap()
        .timestamp();
    let q = LogQuery {
        since: Some(since),
        until: Some(since + 60),
        ..Default::default()
    };
    let got = search(d.path(), &q).unwrap();
    assert_eq!(
        messages(&got),
        vec![
            "message queued",
            "delivery deferred",
            "too many errors, closing"
        ]
    );

    let q = LogQuery {
        limit: 2,
        ..Default::default()
    };
    let got = search(d.path(), &q).unwrap();
    assert_eq!(
        messages(&got),
        vec!["too many errors, closing", "delivery attempt failed"]
    );

    let q = LogQuery {
        logs: vec!["kernel".into()],
        ..Default::default()
    };
    assert!(matches!(search(d.path(), &q), Err(OpsError::Invalid(m)) if m.starts_with("logs:")));
}

#[test]
fn trace_by_queue_id_tells_the_whole_story() {
    let d = sample_dir();
    let t = trace(d.path(), &TraceKey::QueueId("q1".into()), 10).unwrap();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].queue_id, "q1");
    let logs: Vec<&str> = t[0].events.iter().map(|e| e.log.as_str()).collect();
    assert_eq!(
        logs,
        vec![
            "receiver",
            "delivery",
            "delivery",
            "delivery",
            "delivery",
            "retrieval"
        ]
    );
    assert_eq!(t[0].events[2].field("status"), Some("bounced"));
    // The bounce's own trace starts at the event that made it.
    let t = trace(d.path(), &TraceKey::QueueId("q2".into()), 10).unwrap();
    assert_eq!(
        messages(&t[0].events),
        vec!["bounce generated", "delivered"]
    );
    assert!(
        trace(d.path(), &TraceKey::QueueId("q9".into()), 10)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn trace_by_sender_recipient_and_message_id() {
    let d = sample_dir();
    let ids = |key: TraceKey| -> Vec<String> {
        trace(d.path(), &key, 10)
            .unwrap()
            .into_iter()
            .map(|t| t.queue_id)
            .collect()
    };
    assert_eq!(
        ids(TraceKey::Sender("<alice@EXAMPLE.org>".into())),
        vec!["q1"]
    );
    // Newest first: q2 (the bounce to alice) was delivered after q1 was queued.
    assert_eq!(
        ids(TraceKey::Recipient("alice@example.org".into())),
        vec!["q2", "q1"]
    );
    assert_eq!(
        ids(TraceKey::Recipient("dave@example.net".into())),
        vec!["q3"]
    );
    assert_eq!(
        ids(TraceKey::MessageId("m1@example.org".into())),
        vec!["q1"]
    );
    assert_eq!(ids(TraceKey::MessageId("<m0@x>".into())), vec!["q0"]);
    assert!(ids(TraceKey::Sender("bob@example.org".into())).is_empty());
    // The limit keeps the newest.
    let t = trace(
        d.path(),
        &TraceKey::Recipient("alice@example.org".into()),
        1,
    )
    .unwrap();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].queue_id, "q2");
    assert!(matches!(
        trace(d.path(), &TraceKey::Sender("  ".into()), 10),
        Err(OpsError::Invalid(_))
    ));
}

#[test]
fn an_empty_or_missing_log_dir_gives_nothing() {
    let d = tempfile::tempdir().unwrap();
    assert!(search(d.path(), &LogQuery::default()).unwrap().is_empty());
    let none = d.path().join("none");
    assert!(search(&none, &LogQuery::default()).unwrap().is_empty());
    assert!(
        trace(&none, &TraceKey::QueueId("x".into()), 5)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn address_lists_match_whole_addresses_only() {
    assert!(value_has_address("[\"a@b.org\", \"c@d.org\"]", "c@d.org"));
    assert!(value_has_address("<A@B.org>", "a@b.org"));
    assert!(value_has_address("x@y.org,a@b.org", "a@b.org"));
    assert!(!value_has_address("aa@b.org", "a@b.org"));
    assert!(!value_has_address("a@b.org.evil", "a@b.org"));
}

#[test]
fn id_values_are_found_without_parsing() {
    let line = "t  INFO x: m queue_id=q1 bounce_id=q2 paid=no uid=\"u\"";
    let v: Vec<&str> = id_values(line).collect();
    assert_eq!(v, vec!["q1", "q2"]);
}
