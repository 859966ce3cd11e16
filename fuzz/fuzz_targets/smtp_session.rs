//! The SMTP receiver's session state machine driven like the connection
//! drives it: the input is the byte stream a client sends (command lines,
//! DATA dot-streams, BDAT chunks, AUTH exchanges), the backend a fake.
//! The first byte picks the port mode and whether STARTTLS is offered.
//!
//! Invariants: no panic; every reply is well-formed on the wire (3-digit
//! code 2xx-5xx, every line CRLF-terminated, no bare CR/LF in the text);
//! the body decoder never consumes more than it is given; an enqueued
//! message has 1..=max_recipients recipients and stays within the size
//! limit plus our own headers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postamt_config::Config;
use postamt_directory::UserInfo;
use postamt_directory::auth::LoginFailed;
use postamt_fuzz::{assert_crlf_only, block_on};
use postamt_receiver::backend::{Backend, EnqueueError, RcptVerdict, SenderVerdict};
use postamt_receiver::reply::Reply;
use postamt_receiver::session::{Next, Step};
use postamt_receiver::{Session, SessionOptions};
use postamt_spool::{NewMessage, QueueId};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

const MAX_MESSAGE_SIZE: u64 = 2000;
const MAX_RECIPIENTS: usize = 4;
/// Room for our `Received:` (and other added) headers on top of the limit.
const HEADER_ROOM: usize = 16 * 1024;

fn config() -> Arc<Config> {
    static CONFIG: OnceLock<Arc<Config>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut c = Config {
                hostname: "mx.example.org".into(),
                domains: vec!["example.org".into()],
                ..Config::default()
            };
            c.limits.max_message_size = MAX_MESSAGE_SIZE;
            c.limits.max_recipients = MAX_RECIPIENTS;
            // High enough that the fuzzer gets deep into sessions.
            c.limits.max_errors = 50;
            Arc::new(c)
        })
        .clone()
}

/// Verdicts chosen by the first letter of the local part, so the fuzzer
/// can reach every branch: `a…` accept, `l…` list, `s…` small list,
/// `n…` not a member, `b…` bad SRS, `o…` loop, `t…` tempfail, else unknown.
struct FakeBackend {
    next_id: AtomicU64,
}

impl Backend for FakeBackend {
    async fn check_recipient(&self, address: &str, _mail_from: &str) -> RcptVerdict {
        match address.bytes().next().map(|b| b.to_ascii_lowercase()) {
            Some(b'a') | Some(b'p') => RcptVerdict::Accept,
            Some(b'l') => RcptVerdict::AcceptList {
                list: "l".into(),
                max_message_size: 0,
            },
            Some(b's') => RcptVerdict::AcceptList {
                list: "s".into(),
                max_message_size: 50,
            },
            Some(b'n') => RcptVerdict::NotMember { list: "n".into() },
            Some(b'b') => RcptVerdict::BadSrs("bad hash".into()),
            Some(b'o') => RcptVerdict::Loop,
            Some(b't') => RcptVerdict::TempFail("db locked".into()),
            _ => RcptVerdict::Unknown,
        }
    }

    async fn login(
        &self,
        user: &str,
        password: &str,
        _ip: IpAddr,
    ) -> Result<UserInfo, LoginFailed> {
        if user == "u" && password == "p" {
            Ok(UserInfo {
                name: "u".into(),
                admin: false,
                created_at: 0,
            })
        } else {
            Err(LoginFailed)
        }
    }

    async fn sender_owned_by(&self, address: &str, _user: &str) -> SenderVerdict {
        match address.bytes().next() {
            Some(b'u') => SenderVerdict::Owned,
            Some(b't') => SenderVerdict::TempFail("db locked".into()),
            _ => SenderVerdict::NotOwned,
        }
    }

    fn new_queue_id(&self) -> QueueId {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        QueueId(format!("{:032x}", 0xf00d_0000 + n))
    }

    async fn enqueue(&self, msg: NewMessage, data: Vec<u8>) -> Result<QueueId, EnqueueError> {
        assert!(
            !msg.recipients.is_empty() && msg.recipients.len() <= MAX_RECIPIENTS,
            "enqueued with {} recipients",
            msg.recipients.len()
        );
        assert!(
            data.len() <= MAX_MESSAGE_SIZE as usize + HEADER_ROOM,
            "enqueued {} bytes over a {MAX_MESSAGE_SIZE}-byte limit",
            data.len()
        );
        if data.len() % 7 == 3 {
            return Err(EnqueueError("disk full".into()));
        }
        Ok(msg.id.unwrap_or_else(|| self.new_queue_id()))
    }
}

fn check_reply(r: &Reply) {
    assert!((200..=599).contains(&r.code), "reply code {}", r.code);
    assert!(!r.lines.is_empty(), "reply without lines");
    let wire = r.to_wire();
    assert_crlf_only(&wire, "SMTP reply");
    assert_eq!(
        wire.windows(2).filter(|w| w == b"\r\n").count(),
        r.lines.len(),
        "one CRLF per reply line: {:?}",
        String::from_utf8_lossy(&wire)
    );
    let code = r.code.to_string();
    for line in wire.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        assert!(line.starts_with(code.as_bytes()), "line without the code");
        assert!(matches!(line.get(3), Some(b' ' | b'-')), "bad separator");
    }
}

fn check_step(step: &Step) {
    // BDAT answers only once its chunk is read; every other step replies.
    assert!(
        !step.replies.is_empty() || step.next == Next::Body,
        "a step without replies: {step:?}"
    );
    for r in &step.replies {
        check_reply(r);
    }
}

async fn run(options: SessionOptions, tls_available: bool, mut input: &[u8]) {
    let peer = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)), 40000);
    let backend = FakeBackend {
        next_id: AtomicU64::new(0),
    };
    let mut session = Session::with_options(config(), peer, options, tls_available);
    check_reply(&session.greeting());
    // Bounded: every round consumes input or ends.
    loop {
        let limit = session.line_limit(input);
        let mut step = match input.iter().position(|&b| b == b'\n') {
            Some(lf) if lf < limit => {
                let (line, rest) = input.split_at(lf + 1);
                input = rest;
                session.command(line, &backend).await
            }
            Some(lf) => {
                input = &input[lf + 1..];
                session.line_too_long()
            }
            None if input.len() >= limit => {
                input = &[];
                session.line_too_long()
            }
            None => return,
        };
        loop {
            check_step(&step);
            match step.next {
                Next::Command => break,
                Next::Close => return,
                Next::StartTls => {
                    session.tls_started();
                    assert!(session.tls_active());
                    assert!(session.helo_name().is_none(), "HELO survives STARTTLS");
                    assert!(session.auth_user().is_none(), "AUTH survives STARTTLS");
                    break;
                }
                Next::Body => {
                    assert!(session.in_body());
                    let progress = session.feed_body(input);
                    assert!(progress.consumed <= input.len(), "consumed past the input");
                    input = &input[progress.consumed..];
                    if !progress.complete {
                        assert!(input.is_empty(), "incomplete body with input left");
                        return;
                    }
                    step = session.finish_body(&backend).await;
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, input)) = data.split_first() else {
        return;
    };
    let options = match ctl % 3 {
        0 => SessionOptions::mx(),
        1 => SessionOptions::submission(),
        _ => SessionOptions::submissions(),
    };
    block_on(run(options, ctl & 4 != 0, input));
});
