//! Forwarding (SRS), auto-replies and mailing lists through whole
//! attempts, on the real directory (in memory), the fake spool and store,
//! and the scripted SMTP client.

use crate::attempt::{Next, attempt};
use crate::bounce::tests::{parse_report, status_groups};
use crate::context::Context;
use crate::message;
use crate::srs::fake::FakeSrs;
use crate::testing::{
    FakeQueue, FakeResolver, FakeSmtp, FakeStore, SmtpEvent, config, envelope, fake_remote, sa,
};
use postamt_directory::{AutoreplyRule, Directory, ListOptions, PendingAction, Posting, ReplyTo};
use postamt_spool::{Envelope, NewMessage, QueueId, RecipientStatus};
use std::sync::Arc;

const T0: i64 = 1_700_000_000;

fn qid(s: &str) -> QueueId {
    QueueId(s.into())
}

struct World {
    dir: Arc<Directory>,
    queue: Arc<FakeQueue>,
    store: Arc<FakeStore>,
    smtp: Arc<FakeSmtp>,
    ctx: Arc<Context>,
}

/// (mail_from, recipients, message) of each SMTP transaction.
type Sent = (String, Vec<String>, Vec<u8>);

impl World {
    fn new() -> World {
        let config = config();
        let dns = Arc::new(FakeResolver::default());
        dns.set_mx("remote.net", &[(10, "mx.remote.net")]);
        dns.set_host("mx.remote.net", &["192.0.2.1"]);
        dns.set_mx("x.org", &[(10, "mx.x.org")]);
        dns.set_host("mx.x.org", &["192.0.2.9"]);
        let smtp = Arc::new(FakeSmtp::default());
        smtp.accept(sa("192.0.2.1"));
        smtp.accept(sa("192.0.2.9"));
        let remote = fake_remote(&config, &dns, &smtp);
        let dir = Arc::new(Directory::open_in_memory().expect("directory"));
        let queue = FakeQueue::new();
        let store = FakeStore::new();
        let ctx = Arc::new(
            Context::new(Arc::new(config), queue.clone(), store.clone(), dir.clone())
                .with_remote(Arc::new(remote))
                .with_srs(Arc::new(FakeSrs)),
        );
        World {
            dir,
            queue,
            store,
            smtp,
            ctx,
        }
    }

    fn users(&self, names: &[&str]) {
        for n in names {
            self.dir
                .add_user(n, "secret-password", false)
                .expect("user");
        }
    }

    /// Queues message `id` with `data`.
    fn put(&self, id: &str, from: &str, rcpts: &[&str], data: &[u8]) {
        let env = envelope(id, from, rcpts, T0);
        let mut s = self.queue.state();
        s.messages.insert(env.id.clone(), data.to_vec());
        s.envelopes.insert(env.id.clone(), env);
    }

    fn run(&self, id: &str) -> Next {
        attempt(&self.ctx, &qid(id), T0 + 5)
    }

    /// Moves the `n`th message the agent queued into the queue, to be
    /// attempted; returns its id.
    fn take_enqueued(&self, n: usize) -> (QueueId, NewMessage, Vec<u8>) {
        let (id, msg, data) = self.queue.enqueued().remove(n);
        let env = Envelope::initial(id.clone(), msg.clone(), data.len() as u64, T0);
        let mut s = self.queue.state();
        s.messages.insert(id.clone(), data.clone());
        s.envelopes.insert(id.clone(), env);
        (id, msg, data)
    }

    fn sent(&self) -> Vec<Sent> {
        self.smtp
            .events()
            .into_iter()
            .filter_map(|e| match e {
                SmtpEvent::Send {
                    mail_from,
                    recipients,
                    message,
                    ..
                } => Some((mail_from, recipients, message)),
                _ => None,
            })
            .collect()
    }
}

fn mail(headers: &str, body: &str) -> Vec<u8> {
    format!("{headers}\r\n{body}").into_bytes()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn header(data: &[u8], name: &str) -> Option<String> {
    message::split(data).value(name)
}

// ---- Forwarding -------------------------------------------------------------

const PLAIN: &str =
    "From: s@x.org\r\nTo: alice@example.org\r\nSubject: Hi\r\nMessage-ID: <m1@x.org>\r\n";

#[test]
fn a_forward_without_copy_goes_intact_with_an_srs_sender() {
    let w = World::new();
    w.users(&["alice"]);
    w.dir
        .set_forward("alice", &["far@remote.net".into()], false)
        .unwrap();
    let data = mail(PLAIN, "Hello\r\n");
    w.put("m1", "s@x.org", &["alice@example.org"], &data);
    assert_eq!(w.run("m1"), Next::Unscheduled);
    assert_eq!(w.store.count("alice"), 0, "no copy kept");
    let sent = w.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, "SRS0=TEST=x.org=s@example.org");
    assert_eq!(sent[0].1, ["far@remote.net"]);
    assert_eq!(sent[0].2, data, "forwarded intact");
    assert!(w.queue.env("m1").is_none());
}

#[test]
fn a_forward_with_copy_keeps_one_in_the_mailbox() {
    let w = World::new();
    w.users(&["alice"]);
    w.dir
        .set_forward("alice", &["far@remote.net".into()], true)
        .unwrap();
    w.put(
        "m1",
        "s@x.org",
        &["alice@example.org"],
        &mail(PLAIN, "Hello\r\n"),
    );
    w.run("m1");
    assert_eq!(w.store.count("alice"), 1);
    assert_eq!(w.sent().len(), 1);
}

#[test]
fn alias_and_forward_copies_get_srs_but_direct_remote_recipients_do_not() {
    let w = World::new();
    w.users(&["alice"]);
    w.dir
        .set_forward("alice", &["far@remote.net".into()], false)
        .unwrap();
    w.dir
        .add_alias("ext", &["other@remote.net".into()])
        .unwrap();
    w.put(
        "m1",
        "s@x.org",
        &["alice@example.org", "ext@example.org", "direct@remote.net"],
        &mail(PLAIN, "Hello\r\n"),
    );
    assert_eq!(w.run("m1"), Next::Unscheduled);
    let mut sent: Vec<(String, Vec<String>)> = w
        .sent()
        .into_iter()
        .map(|(f, mut r, _)| {
            r.sort();
            (f, r)
        })
        .collect();
    sent.sort();
    assert_eq!(
        sent,
        [
            (
                "SRS0=TEST=x.org=s@example.org".to_string(),
                vec!["far@remote.net".to_string(), "other@remote.net".to_string()]
            ),
            ("s@x.org".to_string(), vec!["direct@remote.net".to_string()]),
        ]
    );
}

#[test]
fn our_own_senders_are_not_rewritten_when_forwarded() {
    let w = World::new();
    w.users(&["alice", "bob"]);
    w.dir
        .add_alias("ext", &["other@remote.net".into()])
        .unwrap();
    w.put(
        "m1",
        "bob@example.org",
        &["ext@example.org"],
        &mail(PLAIN, "Hello\r\n"),
    );
    assert_eq!(w.run("m1"), Next::Unscheduled);
    let sent: Vec<String> = w.sent().into_iter().map(|(f, _, _)| f).collect();
    assert_eq!(sent, ["bob@example.org".to_string()]);
}

#[test]
fn a_forwarded_bounce_keeps_the_null_sender_and_local_forwards_need_no_srs() {
    let w = World::new();
    w.users(&["alice", "bob"]);
    w.dir
        .set_forward(
            "alice",
            &["far@remote.net".into(), "bob@example.org".into()],
            false,
        )
        .unwrap();
    w.put("m1", "", &["alice@example.org"], &mail(PLAIN, "Hello\r\n"));
    w.run("m1");
    let sent = w.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, "", "<> stays <>");
    assert_eq!(w.store.count("bob"), 1);
    assert_eq!(w.store.count("alice"), 0);
}

#[test]
fn a_bounce_to_an_srs_address_goes_back_to_the_original_sender() {
    let w = World::new();
    w.put(
        "m1",
        "",
        &["SRS0=TEST=x.org=s@example.org"],
        &mail(
            "From: MAILER-DAEMON@remote.net\r\nSubject: Undelivered\r\n",
            "x\r\n",
        ),
    );
    assert_eq!(w.run("m1"), Next::Unscheduled);
    let sent = w.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, "", "relayed from <>");
    assert_eq!(sent[0].1, ["s@x.org"]);
}

#[test]
fn a_forged_srs_address_is_refused() {
    let w = World::new();
    w.put(
        "m1",
        "a@y.org",
        &["SRS0=forged=x.org=s@example.org"],
        &mail("Subject: x\r\n", "x\r\n"),
    );
    w.run("m1");
    assert!(w.sent().iter().all(|s| s.1 != ["s@x.org"]));
    let bounce = w.queue.enqueued();
    assert_eq!(bounce.len(), 1, "one bounce to the sender");
    assert_eq!(bounce[0].1.recipients[0], "a@y.org");
    let groups = status_groups(&parse_report(&bounce[0].2).parts[1].body);
    assert_eq!(groups[1].header("status"), Some("5.1.1"));
}

#[test]
fn a_forward_loop_ends_in_one_bounce() {
    let w = World::new();
    w.users(&["a", "b"]);
    w.dir
        .set_forward("a", &["b@example.org".into()], false)
        .unwrap();
    w.dir
        .set_forward("b", &["a@example.org".into()], false)
        .unwrap();
    w.put("m1", "s@x.org", &["a@example.org"], &mail(PLAIN, "x\r\n"));
    assert_eq!(w.run("m1"), Next::Unscheduled);
    let sent = w.queue.enqueued();
    assert_eq!(sent.len(), 1, "exactly one bounce");
    assert_eq!(sent[0].1.recipients[0], "s@x.org");
    let groups = status_groups(&parse_report(&sent[0].2).parts[1].body);
    assert_eq!(groups[1].header("status"), Some("5.4.6"));
    assert_eq!(w.store.count("a") + w.store.count("b"), 0);
}

// ---- Auto-reply -------------------------------------------------------------

fn vacation(w: &World, user: &str) {
    w.dir
        .set_autoreply(
            user,
            &AutoreplyRule {
                subject: "Out of office".into(),
                body: "Back on Monday.".into(),
                starts_at: None,
                ends_at: None,
            },
        )
        .unwrap();
}

#[test]
fn an_auto_reply_is_sent_once_per_sender_per_period() {
    let w = World::new();
    w.users(&["bob"]);
    vacation(&w, "bob");
    let data = mail(
        "From: s@x.org\r\nTo: Bob <bob@example.org>\r\nSubject: Question\r\nMessage-ID: <q1@x.org>\r\n",
        "Hi\r\n",
    );
    w.put("m1", "s@x.org", &["bob@example.org"], &data);
    w.run("m1");
    assert_eq!(w.store.count("bob"), 1, "the user still gets the message");
    let replies = w.queue.enqueued();
    assert_eq!(replies.len(), 1);
    let (_, msg, reply) = &replies[0];
    assert_eq!(msg.mail_from, "", "from the null sender");
    assert_eq!(msg.recipients, ["s@x.org"]);
    assert_eq!(header(reply, "from").as_deref(), Some("<bob@example.org>"));
    assert_eq!(header(reply, "to").as_deref(), Some("<s@x.org>"));
    assert_eq!(header(reply, "subject").as_deref(), Some("Out of office"));
    assert_eq!(
        header(reply, "auto-submitted").as_deref(),
        Some("auto-replied")
    );
    assert_eq!(header(reply, "in-reply-to").as_deref(), Some("<q1@x.org>"));
    assert_eq!(header(reply, "references").as_deref(), Some("<q1@x.org>"));
    assert!(header(reply, "message-id").is_some());
    assert!(header(reply, "date").is_some());
    assert!(text(reply).contains("Back on Monday."));

    w.put("m2", "s@x.org", &["bob@example.org"], &data);
    w.run("m2");
    assert_eq!(w.store.count("bob"), 2);
    assert_eq!(w.queue.enqueued().len(), 1, "one reply per period");

    w.put("m3", "t@x.org", &["bob@example.org"], &data);
    w.run("m3");
    assert_eq!(w.queue.enqueued().len(), 2, "another sender gets one");
}

#[test]
fn no_auto_reply_to_list_bulk_automatic_null_or_indirect_mail() {
    let cases: &[(&str, &str)] = &[
        ("s@x.org", "To: bob@example.org\r\nList-Id: <l.x.org>\r\n"),
        ("s@x.org", "To: bob@example.org\r\nPrecedence: bulk\r\n"),
        ("s@x.org", "To: bob@example.org\r\nPrecedence: junk\r\n"),
        (
            "s@x.org",
            "To: bob@example.org\r\nAuto-Submitted: auto-generated\r\n",
        ),
        ("", "To: bob@example.org\r\n"),
        ("MAILER-DAEMON@x.org", "To: bob@example.org\r\n"),
        ("news-request@x.org", "To: bob@example.org\r\n"),
        ("owner-news@x.org", "To: bob@example.org\r\n"),
        ("s@x.org", "To: someone@x.org\r\nBcc: bob@example.org\r\n"),
    ];
    for (i, (from, headers)) in cases.iter().enumerate() {
        let w = World::new();
        w.users(&["bob"]);
        vacation(&w, "bob");
        let id = format!("m{i}");
        w.put(
            &id,
            from,
            &["bob@example.org"],
            &mail(&format!("{headers}Subject: x\r\n"), "x\r\n"),
        );
        w.run(&id);
        assert_eq!(w.store.count("bob"), 1);
        assert!(
            w.queue.enqueued().is_empty(),
            "no reply for {from:?} / {headers:?}"
        );
    }
}

#[test]
fn an_alias_to_the_user_alone_counts_as_direct() {
    let w = World::new();
    w.users(&["bob"]);
    vacation(&w, "bob");
    w.dir.add_alias("info", &["bob".into()]).unwrap();
    w.put(
        "m1",
        "s@x.org",
        &["info@example.org"],
        &mail("To: info@example.org\r\nSubject: x\r\n", "x\r\n"),
    );
    w.run("m1");
    let r = w.queue.enqueued();
    assert_eq!(r.len(), 1);
    assert_eq!(
        header(&r[0].2, "from").as_deref(),
        Some("<info@example.org>")
    );
}

// ---- Lists ------------------------------------------------------------------

fn team(w: &World, posting: Posting) {
    w.dir
        .create_list(
            "team",
            &ListOptions {
                owner: Some("boss@example.org".into()),
                posting: Some(posting),
                reply_to: Some(ReplyTo::List),
                ..ListOptions::default()
            },
        )
        .unwrap();
}

#[test]
fn a_post_reaches_two_local_members_and_one_remote_with_the_list_headers() {
    let w = World::new();
    w.users(&["alice", "bob", "boss"]);
    team(&w, Posting::Anyone);
    for m in ["alice@example.org", "bob@example.org", "carol@remote.net"] {
        w.dir.add_list_member("team", m).unwrap();
    }
    // A member that leads back to the list is skipped.
    w.dir
        .add_alias("loopy", &["team@example.org".into()])
        .unwrap();
    w.dir.add_list_member("team", "loopy@example.org").unwrap();
    let post = mail(
        "From: s@x.org\r\nTo: team@example.org\r\nSubject: Plans\r\n",
        "Let us meet.\r\n",
    );
    w.put("m1", "s@x.org", &["team@example.org"], &post);
    assert_eq!(w.run("m1"), Next::Unscheduled);
    assert!(w.queue.env("m1").is_none(), "the post is done");
    let (id, msg, copy) = w.take_enqueued(0);
    assert_eq!(msg.mail_from, "team-bounces@example.org");
    assert_eq!(
        msg.recipients,
        ["alice@example.org", "bob@example.org", "carol@remote.net"]
    );
    for (h, v) in [
        ("list-id", "<team.example.org>"),
        (
            "list-unsubscribe",
            "<mailto:team-request@example.org?subject=unsubscribe>",
        ),
        ("list-post", "<mailto:team@example.org>"),
        (
            "list-help",
            "<mailto:team-request@example.org?subject=help>",
        ),
        ("precedence", "list"),
        ("reply-to", "<team@example.org>"),
        ("subject", "[team] Plans"),
    ] {
        assert_eq!(header(&copy, h).as_deref(), Some(v), "{h}");
    }

    assert_eq!(w.run(&id.0), Next::Unscheduled);
    assert_eq!((w.store.count("alice"), w.store.count("bob")), (1, 1));
    assert!(text(&w.store.messages("alice")[0]).contains("List-Id: <team.example.org>"));
    let sent = w.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, "team-bounces@example.org");
    assert_eq!(sent[0].1, ["carol@remote.net"]);
    assert_eq!(
        header(&sent[0].2, "list-id").as_deref(),
        Some("<team.example.org>")
    );
}

#[test]
fn mail_carrying_our_list_id_is_not_sent_again() {
    let w = World::new();
    w.users(&["alice"]);
    team(&w, Posting::Anyone);
    w.dir.add_list_member("team", "alice@example.org").unwrap();
    let post = mail(
        "From: s@x.org\r\nList-Id: <team.example.org>\r\nSubject: [team] x\r\n",
        "x\r\n",
    );
    w.put("m1", "s@x.org", &["team@example.org"], &post);
    assert_eq!(w.run("m1"), Next::Unscheduled);
    assert!(w.queue.enqueued().is_empty(), "no copy, no bounce");
    assert_eq!(w.store.count("alice"), 0);
}

#[test]
fn owner_and_bounces_addresses_reach_the_owner() {
    let w = World::new();
    w.users(&["boss"]);
    team(&w, Posting::Anyone);
    w.put(
        "m1",
        "",
        &["team-bounces@example.org", "team-owner@example.org"],
        &mail("Subject: x\r\n", "x\r\n"),
    );
    assert_eq!(w.run("m1"), Next::Unscheduled);
    assert_eq!(w.store.count("boss"), 1, "one copy for both");
}

/// The confirmation token in the subject of a queued mail.
fn token_of(data: &[u8]) -> String {
    let subject = header(data, "subject").unwrap();
    crate::lists::find_tokens(&subject, "")
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no token in {subject}"))
}

#[test]
fn subscribe_by_mail_is_confirmed_by_a_reply() {
    let w = World::new();
    team(&w, Posting::Members);
    w.put(
        "m1",
        "new@x.org",
        &["team-request@example.org"],
        &mail("From: new@x.org\r\nSubject: subscribe\r\n", "\r\n"),
    );
    assert_eq!(w.run("m1"), Next::Unscheduled);
    assert!(!w.dir.is_list_member("team", "new@x.org").unwrap());
    let q = w.queue.enqueued();
    assert_eq!(q.len(), 1);
    let (_, msg, confirm) = &q[0];
    assert_eq!(msg.mail_from, "");
    assert_eq!(msg.recipients, ["new@x.org"]);
    assert_eq!(
        header(confirm, "from").as_deref(),
        Some("<team-request@example.org>")
    );
    assert_eq!(
        header(confirm, "reply-to").as_deref(),
        Some("<team-request@example.org>")
    );
    assert_eq!(
        header(confirm, "auto-submitted").as_deref(),
        Some("auto-replied")
    );
    let token = token_of(confirm);
    assert!(header(confirm, "subject").unwrap().starts_with("confirm "));

    // Someone else cannot confirm with a made-up token.
    w.put(
        "m2",
        "new@x.org",
        &["team-request@example.org"],
        &mail("Subject: Re: confirm abcdefghijkmnpqrstuv\r\n", "\r\n"),
    );
    w.run("m2");
    assert!(!w.dir.is_list_member("team", "new@x.org").unwrap());

    w.put(
        "m3",
        "new@x.org",
        &["team-request@example.org"],
        &mail(
            &format!(
                "From: new@x.org\r\nSubject: Re: confirm {token}: subscribe team@example.org\r\n"
            ),
            "> quoted\r\n",
        ),
    );
    w.run("m3");
    assert!(w.dir.is_list_member("team", "new@x.org").unwrap());
    let last = w.queue.enqueued().pop().unwrap();
    assert_eq!(last.1.recipients, ["new@x.org"]);
    assert!(header(&last.2, "subject").unwrap().contains("subscribed"));
}

#[test]
fn unsubscribe_by_mail_is_confirmed_too() {
    let w = World::new();
    team(&w, Posting::Members);
    w.dir.add_list_member("team", "old@x.org").unwrap();
    w.put(
        "m1",
        "old@x.org",
        &["team-request@example.org"],
        &mail("Subject: whatever\r\n", "\r\nleave\r\n"),
    );
    w.run("m1");
    assert!(w.dir.is_list_member("team", "old@x.org").unwrap());
    let token = token_of(&w.queue.enqueued()[0].2);
    w.put(
        "m2",
        "old@x.org",
        &["team-request@example.org"],
        &mail(&format!("Subject: Re: confirm {token}\r\n"), "ok\r\n"),
    );
    w.run("m2");
    assert!(!w.dir.is_list_member("team", "old@x.org").unwrap());
}

#[test]
fn help_answers_with_the_commands_and_robots_get_nothing() {
    let w = World::new();
    team(&w, Posting::Members);
    w.put(
        "m1",
        "s@x.org",
        &["team-request@example.org"],
        &mail("Subject: help\r\n", "\r\n"),
    );
    w.run("m1");
    let q = w.queue.enqueued();
    assert_eq!(q.len(), 1);
    let body = text(&q[0].2);
    for word in [
        "subscribe",
        "unsubscribe",
        "help",
        "team-request@example.org",
    ] {
        assert!(body.contains(word), "{word} missing in {body}");
    }
    w.put(
        "m2",
        "s@x.org",
        &["team-request@example.org"],
        &mail("Subject: help\r\nAuto-Submitted: auto-replied\r\n", "\r\n"),
    );
    w.run("m2");
    w.put(
        "m3",
        "",
        &["team-request@example.org"],
        &mail("Subject: help\r\n", "\r\n"),
    );
    w.run("m3");
    assert_eq!(w.queue.enqueued().len(), 1, "no answer to automatic mail");
}

// ---- Moderation -------------------------------------------------------------

/// Holds a post from `from` to the list and returns the moderation token.
fn held_post(w: &World, from: &str) -> String {
    w.put(
        "m1",
        from,
        &["team@example.org"],
        &mail(&format!("From: {from}\r\nSubject: Offer\r\n"), "Buy\r\n"),
    );
    assert_eq!(w.run("m1"), Next::Unscheduled, "held: not scheduled");
    let env = w.queue.env("m1").expect("kept in the spool");
    assert!(env.held);
    assert_eq!(env.recipients[0].status, RecipientStatus::Pending);
    let q = w.queue.enqueued();
    assert_eq!(q.len(), 1, "only the moderation request");
    assert_eq!(q[0].1.recipients, ["boss@example.org"]);
    let subject = header(&q[0].2, "subject").unwrap();
    assert!(
        subject.contains("team@example.org") && subject.contains(from),
        "{subject}"
    );
    assert!(text(&q[0].2).contains("Subject: Offer"));
    let token = token_of(&q[0].2);
    let p = w.dir.get_pending(&token).unwrap().unwrap();
    assert_eq!((p.action, p.payload.as_str()), (PendingAction::Post, "m1"));
    token
}

fn owner_answers(w: &World, id: &str, token: &str, first_line: &str) {
    w.put(
        id,
        "boss@example.org",
        &["team-request@example.org"],
        &mail(
            &format!("From: boss@example.org\r\nSubject: Re: moderate {token}: post\r\n"),
            &format!("{first_line}\r\n> quoted\r\n"),
        ),
    );
    assert_eq!(w.run(id), Next::Unscheduled);
}

#[test]
fn a_moderated_post_is_held_then_approved() {
    let w = World::new();
    w.users(&["alice", "boss"]);
    team(&w, Posting::Moderated);
    w.dir.add_list_member("team", "alice@example.org").unwrap();
    let token = held_post(&w, "alice@example.org");
    owner_answers(&w, "m2", &token, "approve");
    let env = w.queue.env("m1").unwrap();
    assert!(!env.held, "released");
    assert_eq!(w.run("m1"), Next::Unscheduled);
    let (_, msg, copy) = w.queue.enqueued().pop().unwrap();
    assert_eq!(msg.mail_from, "team-bounces@example.org");
    assert_eq!(msg.recipients, ["alice@example.org"]);
    assert_eq!(
        header(&copy, "list-id").as_deref(),
        Some("<team.example.org>")
    );
    assert!(w.queue.env("m1").is_none());
    assert!(w.dir.get_pending(&token).unwrap().is_none());
}

#[test]
fn a_non_member_post_is_held_and_a_rejection_tells_the_poster() {
    let w = World::new();
    w.users(&["boss"]);
    team(&w, Posting::Members);
    let token = held_post(&w, "stranger@x.org");
    // Not the owner: ignored.
    w.put(
        "m2",
        "stranger@x.org",
        &["team-request@example.org"],
        &mail(&format!("Subject: Re: moderate {token}\r\n"), "approve\r\n"),
    );
    w.run("m2");
    assert!(w.queue.env("m1").unwrap().held);

    owner_answers(&w, "m3", &token, "reject");
    let before = w.queue.enqueued().len();
    assert_eq!(w.run("m1"), Next::Unscheduled);
    let q = w.queue.enqueued();
    assert_eq!(q.len(), before + 1, "one bounce");
    assert_eq!(q[before].1.recipients[0], "stranger@x.org");
    let groups = status_groups(&parse_report(&q[before].2).parts[1].body);
    assert_eq!(groups[1].header("status"), Some("5.7.1"));
    assert!(w.queue.env("m1").is_none());
}

#[test]
fn an_expired_held_post_is_bounced() {
    let w = World::new();
    w.users(&["boss"]);
    team(&w, Posting::Moderated);
    held_post(&w, "s@x.org");
    crate::lists::housekeeping(&w.ctx, T0 + crate::lists::PENDING_TTL + 10);
    assert!(!w.queue.env("m1").unwrap().held);
    let before = w.queue.enqueued().len();
    w.run("m1");
    assert_eq!(w.queue.enqueued().len(), before + 1);
    assert!(w.queue.env("m1").is_none());
}

// ---- Logs -------------------------------------------------------------------

#[test]
fn decisions_are_logged_with_the_queue_id() {
    let w = World::new();
    w.users(&["bob", "alice"]);
    vacation(&w, "bob");
    w.dir
        .set_forward("alice", &["far@remote.net".into()], false)
        .unwrap();
    w.put(
        "m7",
        "s@x.org",
        &["bob@example.org", "alice@example.org"],
        &mail(
            "To: bob@example.org\r\nPrecedence: bulk\r\nSubject: x\r\n",
            "x\r\n",
        ),
    );
    let lines = crate::testing::capture(|| {
        w.run("m7");
    });
    let find = |needle: &str| {
        lines
            .iter()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no log line with {needle}: {lines:#?}"))
            .clone()
    };
    let skip = find("no auto-reply");
    for f in ["queue_id=m7", "user=bob", "reason=\"bulk precedence\""] {
        assert!(skip.contains(f), "{f} missing in {skip}");
    }
    let fwd = find("forwarded copy with a rewritten sender");
    for f in [
        "queue_id=m7",
        "dest=far@remote.net",
        "mail_from=SRS0=TEST=x.org=s@example.org",
    ] {
        assert!(fwd.contains(f), "{f} missing in {fwd}");
    }
}

#[test]
fn a_held_post_gets_no_delay_warning_and_lists_without_a_directory_defer() {
    // The fake resolver knows no lists: nothing list-related happens.
    let h = crate::testing::Harness::new();
    h.dir.users("bob@example.org", &["bob"]);
    h.queue
        .put(envelope("m1", "s@x.org", &["bob@example.org"], T0));
    assert_eq!(attempt(&h.ctx, &qid("m1"), T0), Next::Unscheduled);
    assert_eq!(h.store.count("bob"), 1);
    assert!(h.queue.enqueued().is_empty(), "no auto-reply machinery");

    let w = World::new();
    w.users(&["boss"]);
    team(&w, Posting::Moderated);
    held_post(&w, "s@x.org");
    let mut env = w.queue.env("m1").unwrap();
    env.held = false;
    env.created_at = T0 - 10 * 3600;
    w.queue.state().envelopes.insert(qid("m1"), env);
    // Attempted again (e.g. released by the admin without a decision): held
    // again, one more moderation request, no delay warning.
    let before = w.queue.enqueued().len();
    w.run("m1");
    let q = w.queue.enqueued();
    assert!(w.queue.env("m1").unwrap().held);
    assert!(
        q[before..]
            .iter()
            .all(|(_, m, _)| m.recipients == ["boss@example.org"]),
        "no delay warning to the poster"
    );
    // Either token decides the post, once.
    let token = token_of(&q.last().unwrap().2);
    owner_answers(&w, "m9", &token, "approve");
    let env = w.queue.env("m1").unwrap();
    assert!(!env.held, "released");
    assert_eq!(env.recipients[0].delivered_to, ["approved:team"]);
}

#[test]
fn the_real_srs_codec_round_trips_a_forward_and_its_bounce() {
    let mut w = World::new();
    let srs = Arc::new(postamt_srs::Srs::with_key([7; 32], "example.org"));
    let ctx = Context::new(
        w.ctx.config().clone(),
        w.queue.clone(),
        w.store.clone(),
        w.dir.clone(),
    )
    .with_remote(w.ctx.remote.clone().expect("remote"))
    .with_srs(srs);
    w.ctx = Arc::new(ctx);
    w.users(&["alice"]);
    w.dir
        .set_forward("alice", &["far@remote.net".into()], false)
        .unwrap();
    w.put(
        "m1",
        "s@x.org",
        &["alice@example.org"],
        &mail(PLAIN, "x\r\n"),
    );
    w.run("m1");
    let rewritten = w.sent()[0].0.clone();
    assert!(
        rewritten.to_ascii_uppercase().starts_with("SRS0="),
        "{rewritten}"
    );
    assert!(rewritten.ends_with("@example.org"), "{rewritten}");

    w.put(
        "b1",
        "",
        &[&rewritten],
        &mail("Subject: failure\r\n", "x\r\n"),
    );
    assert_eq!(w.run("b1"), Next::Unscheduled);
    let last = w.sent().pop().unwrap();
    assert_eq!((last.0.as_str(), last.1), ("", vec!["s@x.org".to_string()]));
}
