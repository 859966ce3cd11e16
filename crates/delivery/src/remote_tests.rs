//! Remote delivery through whole attempts, with a fake resolver and a
//! scripted SMTP client: routing, fallback, grouping, outcomes, bounces,
//! retries, concurrency and loops.

use crate::attempt::{Next, attempt};
use crate::bounce::tests::{parse_report, status_groups};
use crate::dns::{DnsError, MxAnswer};
use crate::limits::LimitSettings;
use crate::remote::MessageJob;
use crate::testing::{
    FakeResolver, FakeSmtp, MESSAGE, RemoteHarness, Script, SmtpEvent, config, envelope,
    remote_with_limits, reply, sa,
};
use postamt_config::SmarthostTls;
use postamt_smtp_client::TlsPolicy;
use postamt_spool::{Envelope, QueueId, RecipientStatus};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

const T0: i64 = 1_700_000_000;
const DAY: i64 = 86400;

fn qid(s: &str) -> QueueId {
    QueueId(s.into())
}

fn status_of<'a>(env: &'a Envelope, address: &str) -> &'a postamt_spool::Recipient {
    env.recipients
        .iter()
        .find(|r| r.address == address)
        .expect("recipient")
}

/// remote.net: MX 10 mx1 (192.0.2.1, 192.0.2.2), MX 20 mx2 (192.0.2.3).
fn two_mx(r: &RemoteHarness) {
    r.dns.set_mx(
        "remote.net",
        &[(20, "mx2.remote.net"), (10, "mx1.remote.net")],
    );
    r.dns
        .set_host("mx1.remote.net", &["192.0.2.1", "192.0.2.2"]);
    r.dns.set_host("mx2.remote.net", &["192.0.2.3"]);
}

#[test]
fn falls_back_through_addresses_and_mx_hosts_in_preference_order() {
    let r = RemoteHarness::new();
    two_mx(&r);
    r.smtp.accept(sa("192.0.2.3"));
    r.remote_addresses(&["bob@remote.net"]);
    r.h.queue
        .put(envelope("m1", "s@example.org", &["bob@remote.net"], T0));
    assert_eq!(attempt(&r.h.ctx, &qid("m1"), T0), Next::Unscheduled);
    assert_eq!(
        r.smtp.connects(),
        [sa("192.0.2.1"), sa("192.0.2.2"), sa("192.0.2.3")]
    );
    assert_eq!(
        r.smtp.sends(),
        [(sa("192.0.2.3"), vec!["bob@remote.net".to_string()])]
    );
    assert!(r.h.queue.env("m1").is_none(), "delivered and removed");
    assert!(r.h.queue.enqueued().is_empty());
}

#[test]
fn a_refused_greeting_moves_on_to_the_next_mx() {
    let r = RemoteHarness::new();
    two_mx(&r);
    r.smtp.script(
        sa("192.0.2.1"),
        Script::Greeting(reply(421, Some("4.3.2"), "busy")),
    );
    r.smtp.script(
        sa("192.0.2.2"),
        Script::Greeting(reply(554, Some("5.7.1"), "no service")),
    );
    r.smtp.accept(sa("192.0.2.3"));
    r.remote_addresses(&["bob@remote.net"]);
    r.h.queue
        .put(envelope("m1", "s@example.org", &["bob@remote.net"], T0));
    assert_eq!(attempt(&r.h.ctx, &qid("m1"), T0), Next::Unscheduled);
    assert_eq!(r.smtp.sends().len(), 1);
    assert_eq!(r.smtp.sends()[0].0, sa("192.0.2.3"));
}

#[test]
fn equal_preference_hosts_are_all_tried() {
    let r = RemoteHarness::new();
    r.dns.set_mx(
        "remote.net",
        &[
            (10, "a.remote.net"),
            (10, "b.remote.net"),
            (20, "c.remote.net"),
        ],
    );
    r.dns.set_host("a.remote.net", &["192.0.2.10"]);
    r.dns.set_host("b.remote.net", &["192.0.2.11"]);
    r.dns.set_host("c.remote.net", &["192.0.2.12"]);
    r.smtp.accept(sa("192.0.2.12"));
    r.remote_addresses(&["bob@remote.net"]);
    r.h.queue
        .put(envelope("m1", "s@example.org", &["bob@remote.net"], T0));
    attempt(&r.h.ctx, &qid("m1"), T0);
    let c = r.smtp.connects();
    assert_eq!(c.len(), 3, "{c:?}");
    let mut first_two = c[..2].to_vec();
    first_two.sort();
    assert_eq!(first_two, [sa("192.0.2.10"), sa("192.0.2.11")]);
    assert_eq!(c[2], sa("192.0.2.12"), "the worse preference comes last");
}

#[test]
fn a_domain_without_mx_gets_its_own_address_records() {
    let r = RemoteHarness::new();
    r.dns.set_mx_answer("plain.net", Ok(MxAnswer::NoMx));
    r.dns.set_host("plain.net", &["2001:db8::25", "192.0.2.25"]);
    r.smtp.script(sa("2001:db8::25"), Script::Refuse);
    r.smtp.accept(sa("192.0.2.25"));
    r.remote_addresses(&["bob@plain.net"]);
    r.h.queue
        .put(envelope("m1", "s@example.org", &["bob@plain.net"], T0));
    assert_eq!(attempt(&r.h.ctx, &qid("m1"), T0), Next::Unscheduled);
    assert_eq!(
        r.smtp.connects(),
        [sa("2001:db8::25"), sa("192.0.2.25")],
        "IPv6 and IPv4 both"
    );
    match &r.smtp.events()[0] {
        SmtpEvent::Connect {
            server_name, tls, ..
        } => {
            assert_eq!(server_name, "plain.net");
            assert_eq!(*tls, TlsPolicy::Opportunistic);
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn a_domain_without_mx_or_address_bounces() {
    let r = RemoteHarness::new();
    r.dns.set_mx_answer("empty.net", Ok(MxAnswer::NoMx));
    r.remote_addresses(&["bob@empty.net"]);
    r.h.queue
        .put(envelope("m1", "s@example.org", &["bob@empty.net"], T0));
    assert_eq!(attempt(&r.h.ctx, &qid("m1"), T0), Next::Unscheduled);
    let sent = r.h.queue.enqueued();
    assert_eq!(sent.len(), 1);
    let groups = status_groups(&parse_report(&sent[0].2).parts[1].body);
    assert_eq!(groups[1].header("status"), Some("5.4.4"));
}

/// Runs one attempt for bob@<domain> and returns the bounce's status group.
fn bounce_status_for(r: &RemoteHarness, domain: &str) -> crate::bounce::tests::Entity {
    let rcpt = format!("bob@{domain}");
    r.remote_addresses(&[&rcpt]);
    r.h.queue.put(envelope("m1", "s@example.org", &[&rcpt], T0));
    assert_eq!(attempt(&r.h.ctx, &qid("m1"), T0), Next::Unscheduled);
    assert!(r.smtp.connects().is_empty(), "no connection");
    let sent = r.h.queue.enqueued();
    assert_eq!(sent.len(), 1, "one bounce");
    assert_eq!(sent[0].1.mail_from, "");
    assert_eq!(sent[0].1.recipients, ["s@example.org"]);
    status_groups(&parse_report(&sent[0].2).parts[1].body).remove(1)
}

#[test]
fn a_null_mx_bounces_at_once_with_5_1_10() {
    let r = RemoteHarness::new();
    r.dns.set_mx_answer("nomail.net", Ok(MxAnswer::Null));
    let g = bounce_status_for(&r, "nomail.net");
    assert_eq!(g.header("status"), Some("5.1.10"));
    assert!(g.header("diagnostic-code").unwrap().contains("null MX"));
}

#[test]
fn nxdomain_bounces_at_once_with_5_1_2() {
    let r = RemoteHarness::new();
    let g = bounce_status_for(&r, "nowhere.invalid");
    assert_eq!(g.header("status"), Some("5.1.2"));
    assert!(g.header("diagnostic-code").unwrap().contains("NXDOMAIN"));
}

#[test]
fn servfail_defers_on_the_retry_schedule() {
    let r = RemoteHarness::new();
    r.dns.set_mx_answer(
        "flaky.net",
        Err(DnsError::Temporary("flaky.net".into(), "SERVFAIL".into())),
    );
    r.remote_addresses(&["bob@flaky.net"]);
    r.h.queue
        .put(envelope("m1", "s@example.org", &["bob@flaky.net"], T0));
    assert_eq!(attempt(&r.h.ctx, &qid("m1"), T0), Next::At(T0 + 60));
    let env = r.h.queue.env("m1").unwrap();
    let rc = status_of(&env, "bob@flaky.net");
    assert_eq!(rc.status, RecipientStatus::Pending);
    let err = rc.last_error.as_deref().unwrap();
    assert!(
        err.starts_with("4.4.3 ") && err.contains("SERVFAIL"),
        "{err}"
    );
    assert_eq!(env.attempts, 1);
    assert!(r.h.queue.enqueued().is_empty(), "no bounce");
    // Still failing after give_up_after: bounced with the last error.
    let mut env = env;
    env.delay_warned = true;
    r.h.queue.state().envelopes.insert(qid("m1"), env);
    attempt(&r.h.ctx, &qid("m1"), T0 + 5 * DAY);
    let sent = r.h.queue.enqueued();
    assert_eq!(sent.len(), 1);
    let g = status_groups(&parse_report(&sent[0].2).parts[1].body).remove(1);
    assert_eq!(g.header("status"), Some("5.4.7"));
    assert!(g.header("diagnostic-code").unwrap().contains("SERVFAIL"));
}

#[test]
fn the_smarthost_takes_everything_with_auth_and_tls() {
    let mut cfg = config();
    cfg.delivery.smarthost = Some("relay.example.net:587".into());
    cfg.delivery.smarthost_tls = SmarthostTls::Starttls;
    cfg.delivery.smarthost_user = Some("relayuser".into());
    cfg.delivery.smarthost_password = Some("secret".into());
    let r = RemoteHarness::with_config(cfg);
    r.dns.set_host("relay.example.net", &["192.0.2.99"]);
    let relay = "192.0.2.99:587".parse().unwrap();
    r.smtp.accept(relay);
    r.remote_addresses(&["a@one.net", "b@two.net"]);
    r.h.queue.put(envelope(
        "m1",
        "s@example.org",
        &["a@one.net", "b@two.net"],
        T0,
    ));
    assert_eq!(attempt(&r.h.ctx, &qid("m1"), T0), Next::Unscheduled);
    assert!(
        r.dns.mx_queries.lock().unwrap().is_empty(),
        "no MX lookup with a smarthost"
    );
    let events = r.smtp.events();
    let connects: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            SmtpEvent::Connect {
                addr,
                server_name,
                tls,
                user,
            } => Some((*addr, server_name.clone(), *tls, user.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(connects.len(), 2, "one transaction per destination domain");
    for c in &connects {
        assert_eq!(
            c,
            &(
                relay,
                "relay.example.net".to_string(),
                TlsPolicy::RequireStartTls,
                Some("relayuser".to_string())
            )
        );
    }
    let mut rcpts: Vec<String> = r.smtp.sends().into_iter().flat_map(|(_, v)| v).collect();
    rcpts.sort();
    assert_eq!(rcpts, ["a@one.net", "b@two.net"]);
}

#[test]
fn implicit_tls_smarthost_defaults_to_port_465() {
    let mut cfg = config();
    cfg.delivery.smarthost = Some("192.0.2.98".into());
    cfg.delivery.smarthost_tls = SmarthostTls::Tls;
    let r = RemoteHarness::with_config(cfg);
    let relay = "192.0.2.98:465".parse().unwrap();
    r.smtp.accept(relay);
    r.remote_addresses(&["a@one.net"]);
    r.h.queue
        .put(envelope("m1", "s@example.org", &["a@one.net"], T0));
    assert_eq!(attempt(&r.h.ctx, &qid("m1"), T0), Next::Unscheduled);
    match &r.smtp.events()[0] {
        SmtpEvent::Connect {
            addr, tls, user, ..
        } => {
            assert_eq!(*addr, relay);
            assert_eq!(*tls, TlsPolicy::Implicit);
            assert_eq!(*user, None);
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn tls_required_domains_use_verified_starttls() {
    let mut cfg = config();
    cfg.delivery.tls_required_domains = vec!["Secure.NET".into()];
    let r = RemoteHarness::with_config(cfg);
    r.dns.set_mx("secure.net", &[(10, "mx.secure.net")]);
    r.dns.set_host("mx.secure.net", &["192.0.2.40"]);
    r.smtp.accept(sa("192.0.2.40"));
    r.remote_addresses(&["a@secure.net"]);
    r.h.queue
        .put(envelope("m1", "s@example.org", &["a@secure.net"], T0));
    attempt(&r.h.ctx, &qid("m1"), T0);
    match &r.smtp.events()[0] {
        SmtpEvent::Connect {
            tls, server_name, ..
        } => {
            assert_eq!(*tls, TlsPolicy::RequireStartTls);
            assert_eq!(server_name, "mx.secure.net");
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn three_recipients_of_one_domain_share_one_transaction() {
    let r = RemoteHarness::new();
    two_mx(&r);
    r.smtp.accept(sa("192.0.2.1"));
    let rcpts = ["a@remote.net", "b@remote.net", "c@Remote.NET"];
    r.remote_addresses(&rcpts);
    r.h.queue.put(envelope("m1", "s@example.org", &rcpts, T0));
    let before = postamt_metrics::global().snapshot();
    assert_eq!(attempt(&r.h.ctx, &qid("m1"), T0), Next::Unscheduled);
    let after = postamt_metrics::global().snapshot();
    let smtp = postamt_metrics::Protocol::Smtp as usize;
    assert!(
        after.bytes_sent[smtp] >= before.bytes_sent[smtp] + MESSAGE.len() as u64,
        "the bytes sent are counted"
    );
    assert!(after.delivered_remote >= before.delivered_remote + 3);
    assert_eq!(r.smtp.connects(), [sa("192.0.2.1")], "one connection");
    let sends = r.smtp.sends();
    assert_eq!(sends.len(), 1, "one transaction");
    assert_eq!(sends[0].1, rcpts);
    match &r.smtp.events()[1] {
        SmtpEvent::Send {
            mail_from, message, ..
        } => {
            assert_eq!(mail_from, "s@example.org");
            assert_eq!(message, MESSAGE, "the signer hook is a no-op by default");
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn a_partial_rcpt_rejection_bounces_only_that_recipient() {
    let r = RemoteHarness::new();
    two_mx(&r);
    r.smtp.script(
        sa("192.0.2.1"),
        Script::Answer(vec![(
            "ghost@remote.net".into(),
            reply(550, Some("5.1.1"), "<ghost@remote.net>: user unknown"),
        )]),
    );
    let rcpts = ["a@remote.net", "ghost@remote.net", "c@remote.net"];
    r.remote_addresses(&rcpts);
    r.h.queue.put(envelope("m1", "s@example.org", &rcpts, T0));
    assert_eq!(attempt(&r.h.ctx, &qid("m1"), T0), Next::Unscheduled);
    assert_eq!(
        r.smtp.connects(),
        [sa("192.0.2.1")],
        "a rejection is definitive: no other host"
    );
    let sent = r.h.queue.enqueued();
    assert_eq!(sent.len(), 1, "one bounce");
    assert_eq!(
        sent[0].1.recipients,
        ["s@example.org"],
        "no postmaster copy for remote failures"
    );
    let p = parse_report(&sent[0].2);
    let groups = status_groups(&p.parts[1].body);
    assert_eq!(groups.len(), 2, "only the rejected recipient is reported");
    assert_eq!(
        groups[1].header("final-recipient"),
        Some("rfc822; ghost@remote.net")
    );
    assert_eq!(groups[1].header("status"), Some("5.1.1"));
    assert_eq!(groups[1].header("remote-mta"), Some("dns; mx1.remote.net"));
    assert_eq!(
        groups[1].header("diagnostic-code"),
        Some("smtp; 550 5.1.1 <ghost@remote.net>: user unknown")
    );
}

#[test]
fn a_rejected_sender_bounces_every_recipient_with_the_reply() {
    let r = RemoteHarness::new();
    two_mx(&r);
    r.smtp.script(
        sa("192.0.2.1"),
        Script::MailRejected(reply(553, None, "sender policy")),
    );
    let rcpts = ["a@remote.net", "b@remote.net"];
    r.remote_addresses(&rcpts);
    r.h.queue.put(envelope("m1", "s@example.org", &rcpts, T0));
    assert_eq!(attempt(&r.h.ctx, &qid("m1"), T0), Next::Unscheduled);
    assert_eq!(r.smtp.connects().len(), 1);
    let sent = r.h.queue.enqueued();
    let groups = status_groups(&parse_report(&sent[0].2).parts[1].body);
    assert_eq!(groups.len(), 3);
    for g in &groups[1..] {
        assert_eq!(g.header("status"), Some("5.0.0"));
        assert_eq!(g.header("diagnostic-code"), Some("smtp; 553 sender policy"));
    }
}

#[test]
fn a_4xx_is_retried_without_resending_to_delivered_recipients() {
    let r = RemoteHarness::new();
    two_mx(&r);
    r.smtp.script(
        sa("192.0.2.1"),
        Script::Answer(vec![(
            "b@remote.net".into(),
            reply(451, Some("4.2.1"), "mailbox busy"),
        )]),
    );
    let rcpts = ["a@remote.net", "b@remote.net"];
    r.remote_addresses(&rcpts);
    r.h.queue.put(envelope("m1", "s@example.org", &rcpts, T0));
    assert_eq!(attempt(&r.h.ctx, &qid("m1"), T0), Next::At(T0 + 60));
    let env = r.h.queue.env("m1").unwrap();
    assert_eq!(
        status_of(&env, "a@remote.net").status,
        RecipientStatus::Delivered
    );
    assert_eq!(
        status_of(&env, "a@remote.net").delivered_to,
        ["a@remote.net"]
    );
    let b = status_of(&env, "b@remote.net");
    assert_eq!(b.status, RecipientStatus::Pending);
    assert_eq!(
        b.last_error.as_deref(),
        Some("4.2.1 mx1.remote.net said: 451 4.2.1 mailbox busy (in reply to RCPT TO)")
    );

    r.smtp.accept(sa("192.0.2.1"));
    assert_eq!(attempt(&r.h.ctx, &qid("m1"), T0 + 60), Next::Unscheduled);
    let sends = r.smtp.sends();
    assert_eq!(sends.len(), 2);
    assert_eq!(sends[1].1, ["b@remote.net"], "a is not sent again");
    assert!(r.h.queue.env("m1").is_none());
    assert!(r.h.queue.enqueued().is_empty());
}

#[test]
fn an_alias_to_the_same_remote_address_sends_once() {
    let r = RemoteHarness::new();
    two_mx(&r);
    r.smtp.accept(sa("192.0.2.1"));
    r.remote_addresses(&["far@remote.net"]);
    r.h.dir.set(
        "fwd@example.org",
        Ok(vec![postamt_directory::Destination::Remote {
            address: "far@remote.net".into(),
        }]),
    );
    r.h.queue.put(envelope(
        "m1",
        "s@example.org",
        &["fwd@example.org", "far@remote.net"],
        T0,
    ));
    assert_eq!(attempt(&r.h.ctx, &qid("m1"), T0), Next::Unscheduled);
    assert_eq!(
        r.smtp.sends(),
        [(sa("192.0.2.1"), vec!["far@remote.net".to_string()])]
    );
}

#[test]
fn mx_pointing_at_our_own_hostname_is_a_loop() {
    let r = RemoteHarness::new();
    r.dns.set_mx("loopy.net", &[(10, "mx.example.org")]);
    r.dns.set_host("mx.example.org", &["192.0.2.200"]);
    r.smtp.accept(sa("192.0.2.200"));
    let g = bounce_status_for(&r, "loopy.net");
    assert_eq!(g.header("status"), Some("5.4.6"));
    assert!(
        g.header("diagnostic-code")
            .unwrap()
            .contains("loops back to myself")
    );
}

#[test]
fn an_mx_at_our_own_listening_address_is_a_loop() {
    let mut cfg = config();
    cfg.listen.smtp = vec!["0.0.0.0:25".into()];
    let r = RemoteHarness::with_config(cfg);
    r.dns.set_mx("selfie.net", &[(10, "mx.selfie.net")]);
    r.dns.set_host("mx.selfie.net", &["127.0.0.1"]);
    r.smtp.accept(sa("127.0.0.1"));
    let g = bounce_status_for(&r, "selfie.net");
    assert_eq!(g.header("status"), Some("5.4.6"));
}

#[test]
fn a_lost_connection_tries_the_next_host() {
    let r = RemoteHarness::new();
    two_mx(&r);
    r.smtp.script(sa("192.0.2.1"), Script::Lost);
    r.smtp.accept(sa("192.0.2.2"));
    r.remote_addresses(&["a@remote.net"]);
    r.h.queue
        .put(envelope("m1", "s@example.org", &["a@remote.net"], T0));
    assert_eq!(attempt(&r.h.ctx, &qid("m1"), T0), Next::Unscheduled);
    assert_eq!(r.smtp.sends()[0].0, sa("192.0.2.2"));
}

#[test]
fn an_unreachable_domain_is_suspended_until_flushed() {
    let r = RemoteHarness::new();
    two_mx(&r);
    r.remote_addresses(&["a@remote.net"]);
    r.h.queue
        .put(envelope("m1", "s@example.org", &["a@remote.net"], T0));
    r.h.queue
        .put(envelope("m2", "s@example.org", &["a@remote.net"], T0));
    assert_eq!(attempt(&r.h.ctx, &qid("m1"), T0), Next::At(T0 + 60));
    assert_eq!(r.smtp.connects().len(), 3, "every address tried");
    let err = status_of(&r.h.queue.env("m1").unwrap(), "a@remote.net")
        .last_error
        .clone()
        .unwrap();
    assert!(
        err.starts_with("4.4.1 ") && err.contains("refused"),
        "{err}"
    );

    // The next message for the domain does not wait for the same failures.
    assert_eq!(attempt(&r.h.ctx, &qid("m2"), T0), Next::At(T0 + 60));
    assert_eq!(r.smtp.connects().len(), 3, "no new connection");
    let err = status_of(&r.h.queue.env("m2").unwrap(), "a@remote.net")
        .last_error
        .clone()
        .unwrap();
    assert!(err.contains("temporarily suspended"), "{err}");

    // `queue flush` lifts the suspension.
    r.smtp.accept(sa("192.0.2.1"));
    r.h.ctx.flush();
    assert_eq!(attempt(&r.h.ctx, &qid("m2"), T0 + 1), Next::Unscheduled);
    assert_eq!(r.smtp.sends().len(), 1);
}

#[test]
fn a_held_message_with_remote_recipients_is_not_sent() {
    let r = RemoteHarness::new();
    two_mx(&r);
    r.smtp.accept(sa("192.0.2.1"));
    r.remote_addresses(&["a@remote.net"]);
    let mut env = envelope("m1", "s@example.org", &["a@remote.net"], T0);
    env.held = true;
    r.h.queue.put(env);
    assert_eq!(attempt(&r.h.ctx, &qid("m1"), T0), Next::Unscheduled);
    assert!(r.smtp.events().is_empty());
    let mut env = r.h.queue.env("m1").unwrap();
    env.held = false;
    r.h.queue.state().envelopes.insert(qid("m1"), env);
    assert_eq!(attempt(&r.h.ctx, &qid("m1"), T0), Next::Unscheduled);
    assert_eq!(r.smtp.sends().len(), 1, "sent once released");
}

#[test]
fn a_bounce_to_a_remote_sender_leaves_from_the_null_sender() {
    let r = RemoteHarness::new();
    two_mx(&r);
    r.smtp.accept(sa("192.0.2.1"));
    r.remote_addresses(&["sender@remote.net"]);
    let mut env = envelope("b1", "", &["sender@remote.net"], T0);
    env.id = qid("b1");
    r.h.queue.put(env);
    assert_eq!(attempt(&r.h.ctx, &qid("b1"), T0), Next::Unscheduled);
    match &r.smtp.events()[1] {
        SmtpEvent::Send {
            mail_from,
            recipients,
            ..
        } => {
            assert_eq!(mail_from, "");
            assert_eq!(recipients, &["sender@remote.net"]);
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn local_and_remote_recipients_in_one_message() {
    let r = RemoteHarness::new();
    two_mx(&r);
    r.smtp.accept(sa("192.0.2.1"));
    r.remote_addresses(&["a@remote.net"]);
    r.h.dir.users("bob@example.org", &["bob"]);
    r.h.queue.put(envelope(
        "m1",
        "s@example.org",
        &["bob@example.org", "a@remote.net"],
        T0,
    ));
    assert_eq!(attempt(&r.h.ctx, &qid("m1"), T0), Next::Unscheduled);
    assert_eq!(r.h.store.count("bob"), 1);
    assert_eq!(r.smtp.sends().len(), 1);
}

#[test]
fn without_remote_delivery_remote_mail_waits_with_a_reason() {
    let h = crate::testing::Harness::new();
    h.dir.set(
        "a@remote.net",
        Ok(vec![postamt_directory::Destination::Remote {
            address: "a@remote.net".into(),
        }]),
    );
    h.queue
        .put(envelope("m1", "s@example.org", &["a@remote.net"], T0));
    assert_eq!(attempt(&h.ctx, &qid("m1"), T0), Next::At(T0 + 60));
    let env = h.queue.env("m1").unwrap();
    assert_eq!(
        env.recipients[0].last_error.as_deref(),
        Some("4.4.0 remote delivery is not configured")
    );
}

/// A dead domain (connections hang) must not hold up another domain,
/// neither inside one message nor across messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_domain_does_not_block_another_domain() {
    let dns = Arc::new(FakeResolver::default());
    let smtp = Arc::new(FakeSmtp::default());
    let release = Arc::new(Notify::new());
    dns.set_mx("dead.net", &[(10, "mx.dead.net")]);
    dns.set_host("mx.dead.net", &["192.0.2.66"]);
    smtp.script(sa("192.0.2.66"), Script::Hang(Arc::clone(&release)));
    dns.set_mx("live.net", &[(10, "mx.live.net")]);
    dns.set_host("mx.live.net", &["192.0.2.77"]);
    smtp.accept(sa("192.0.2.77"));
    let cfg = config();
    let remote = Arc::new(crate::testing::fake_remote(&cfg, &dns, &smtp));

    // One message to both domains: live.net is delivered while dead.net hangs.
    let job = MessageJob {
        queue_id: "m1".into(),
        mail_from: "s@example.org".into(),
        eight_bit: false,
        smtputf8: false,
        message: Arc::from(MESSAGE),
    };
    let rcpts = vec!["a@dead.net".to_string(), "b@live.net".to_string()];
    let task = {
        let remote = Arc::clone(&remote);
        tokio::spawn(async move { remote.deliver(job, &rcpts).await })
    };
    for _ in 0..400 {
        if !smtp.sends().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        smtp.sends(),
        [(sa("192.0.2.77"), vec!["b@live.net".to_string()])]
    );
    assert!(!task.is_finished(), "dead.net is still hanging");

    // Across messages, through the scheduler: more messages for dead.net
    // than the domain may hold, then one for live.net.
    let r = RemoteHarness::build(cfg, Arc::clone(&dns), Arc::clone(&smtp), {
        let mut limits = LimitSettings::from_config(&config(), 4);
        limits.slot_wait = Duration::from_millis(100);
        remote_with_limits(&config(), &dns, &smtp, limits)
    });
    let now = crate::context::now_unix();
    r.remote_addresses(&["a@dead.net", "b@live.net"]);
    for i in 0..6 {
        r.h.queue.put(envelope(
            &format!("d{i}"),
            "s@example.org",
            &["a@dead.net"],
            now,
        ));
    }
    let shutdown = tokio_util::sync::CancellationToken::new();
    let run = tokio::spawn(crate::scheduler::run(
        Arc::clone(&r.h.ctx),
        shutdown.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(50)).await;
    r.h.queue
        .arrive(envelope("live", "s@example.org", &["b@live.net"], now));
    let mut delivered = false;
    for _ in 0..400 {
        if r.h.queue.env("live").is_none() {
            delivered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(delivered, "live.net delivered while dead.net hangs");
    // The dead domain's other messages wait in the scheduler for one of its
    // delivery slots: nothing was deferred (no 4.4.5), counted or saved.
    let limits = Arc::clone(r.h.ctx.remote.as_ref().unwrap().limits());
    assert_eq!(
        limits.parked("dead.net"),
        3,
        "3 admitted and hanging, 3 parked"
    );
    assert!(!limits.has_room("dead.net"));
    for i in 0..6 {
        let e = r.h.queue.env(&format!("d{i}")).expect("still queued");
        assert_eq!(e.attempts, 0, "waiting is not an attempt");
        assert_eq!(e.recipients[0].last_error, None, "nothing deferred");
    }
    assert!(
        r.h.queue.state().updates.iter().all(|e| e.id.0 == "live"),
        "no envelope of dead.net saved"
    );

    release.notify_waiters();
    shutdown.cancel();
    // Hanging connects are released over and over until the agent stops.
    let stopper = {
        let release = Arc::clone(&release);
        tokio::spawn(async move {
            for _ in 0..400 {
                release.notify_waiters();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("agent stops")
        .expect("no panic");
    let outcomes = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the first delivery ends once released")
        .unwrap();
    stopper.abort();
    assert!(outcomes["b@live.net"].result.is_ok());
    assert!(outcomes["a@dead.net"].result.is_err());
}

/// Many messages to one domain that may take only one delivery at a time:
/// they wait in the scheduler and go one after the other, the moment the
/// previous one ends; none is deferred or saved. (The order among parked
/// messages is the scheduler's unit test.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_domain_drains_in_order_without_deferrals() {
    let dns = Arc::new(FakeResolver::default());
    let smtp = Arc::new(FakeSmtp::default());
    dns.set_mx("busy.net", &[(10, "mx.busy.net")]);
    dns.set_host("mx.busy.net", &["192.0.2.88"]);
    smtp.accept(sa("192.0.2.88"));
    *smtp.send_delay.lock().unwrap() = Duration::from_millis(20);
    let mut cfg = config();
    cfg.delivery.max_connections_per_domain = 1;
    let limits = LimitSettings::from_config(&cfg, 8);
    assert_eq!(limits.max_busy_per_domain, 2);
    let r = RemoteHarness::build(
        cfg.clone(),
        Arc::clone(&dns),
        Arc::clone(&smtp),
        remote_with_limits(&cfg, &dns, &smtp, limits),
    );
    let now = crate::context::now_unix();
    let names: Vec<String> = (0..12).map(|i| format!("b{i:02}")).collect();
    let rcpts: Vec<String> = names.iter().map(|n| format!("{n}@busy.net")).collect();
    let refs: Vec<&str> = rcpts.iter().map(String::as_str).collect();
    r.remote_addresses(&refs);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let run = tokio::spawn(crate::scheduler::run(
        Arc::clone(&r.h.ctx),
        shutdown.clone(),
    ));
    for (n, rcpt) in names.iter().zip(&rcpts) {
        r.h.queue
            .arrive(envelope(n, "s@example.org", &[rcpt.as_str()], now));
    }
    let mut done = false;
    for _ in 0..1000 {
        if r.h.queue.state().envelopes.is_empty() {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("agent stops")
        .expect("no panic");
    assert!(done, "every message delivered without a retry wait");
    let sent: Vec<String> = smtp
        .sends()
        .into_iter()
        .flat_map(|(_, rcpts)| rcpts)
        .collect();
    assert_eq!(sent.len(), 12, "each message sent once: {sent:?}");
    assert_eq!(
        smtp.in_progress.lock().unwrap().1,
        1,
        "one transaction at a time"
    );
    assert!(
        r.h.queue.state().updates.is_empty(),
        "no envelope saved: nothing was deferred"
    );
    let mut sorted = sent.clone();
    sorted.sort();
    assert_eq!(sorted, rcpts, "every message once");
    let limits = r.h.ctx.remote.as_ref().unwrap().limits();
    assert_eq!(limits.tracked_domains(), 0, "nothing left parked");
}

#[cfg(test)]
mod log_tests {
    use super::*;
    use crate::testing::capture;

    #[test]
    fn every_remote_outcome_is_logged_with_host_address_tls_and_reply() {
        let r = RemoteHarness::new();
        two_mx(&r);
        r.smtp.script(
            sa("192.0.2.1"),
            Script::Answer(vec![(
                "b@remote.net".into(),
                reply(451, Some("4.2.1"), "busy"),
            )]),
        );
        r.remote_addresses(&["a@remote.net", "b@remote.net"]);
        r.h.queue.put(envelope(
            "m9",
            "s@example.org",
            &["a@remote.net", "b@remote.net"],
            T0,
        ));
        let lines = capture(|| {
            attempt(&r.h.ctx, &qid("m9"), T0 + 7);
        });
        let find = |needle: &str| {
            lines
                .iter()
                .find(|l| l.contains(needle))
                .unwrap_or_else(|| panic!("no log line with {needle}: {lines:#?}"))
                .clone()
        };
        let sent = find("to=a@remote.net");
        for f in [
            "postamt_delivery::attempt",
            "queue_id=m9",
            "mx=\"mx1.remote.net\"",
            "addr=192.0.2.1:25",
            "tls=true",
            "reply=\"250 2.0.0 queued as X1\"",
            "delay=7",
            "status=sent",
        ] {
            assert!(sent.contains(f), "{f} missing in {sent}");
        }
        let deferred = find("to=b@remote.net");
        for f in [
            "status=deferred",
            "reply=\"451 4.2.1 busy\"",
            "mx=\"mx1.remote.net\"",
        ] {
            assert!(deferred.contains(f), "{f} missing in {deferred}");
        }
    }

    #[test]
    fn host_fallbacks_are_logged() {
        let r = RemoteHarness::new();
        two_mx(&r);
        r.smtp.accept(sa("192.0.2.3"));
        r.remote_addresses(&["a@remote.net"]);
        r.h.queue
            .put(envelope("m8", "s@example.org", &["a@remote.net"], T0));
        let lines = capture(|| {
            attempt(&r.h.ctx, &qid("m8"), T0);
        });
        let fallbacks: Vec<&String> = lines
            .iter()
            .filter(|l| l.contains("host failed; trying the next"))
            .collect();
        assert_eq!(fallbacks.len(), 2, "{lines:#?}");
        assert!(fallbacks[0].contains("postamt_delivery::remote"));
        assert!(fallbacks[0].contains("queue_id=m8"));
        assert!(fallbacks[0].contains("addr=192.0.2.1:25"));
        assert!(fallbacks[0].contains("reason=4.4.1 "));
    }
}
