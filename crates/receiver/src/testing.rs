//! Test support: a fake [`Backend`] with a fixed set of users, passwords
//! and address owners and a scripted sender check, that records what is
//! enqueued and checked, and a configuration for `example.org`.

use crate::backend::{Backend, EnqueueError, RcptVerdict, SenderCheck, SenderVerdict};
use postamt_config::Config;
use postamt_directory::UserInfo;
use postamt_directory::auth::LoginFailed;
use postamt_spool::{NewMessage, QueueId};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// A directory of known users plus special verdicts, and a spool in memory.
#[derive(Default)]
pub struct FakeBackend {
    users: Vec<String>,
    verdicts: HashMap<String, RcptVerdict>,
    pub fail_enqueue: AtomicBool,
    next_id: AtomicU64,
    lookups: Mutex<Vec<String>>,
    queued: Mutex<Vec<(NewMessage, Vec<u8>)>>,
    /// (user, password, ip) of every login tried.
    logins: Mutex<Vec<(String, String, IpAddr)>>,
    /// What `check_sender` answers; `None` = checks off.
    pub sender_check: Mutex<Option<SenderCheck>>,
    /// `check_sender` never answers (a resolver stuck beyond every bound).
    pub sender_check_hangs: AtomicBool,
    /// Every sender check asked for.
    checks: Mutex<Vec<CheckCall>>,
    /// The MAIL FROM given with every recipient check.
    rcpt_senders: Mutex<Vec<String>>,
}

/// The fake lists and SRS addresses: `open@` (anyone may post, no size
/// limit), `members@` (only `alice@example.org`, 500 bytes), `small@`
/// (anyone, 100 bytes), `big@` (anyone, 5000 bytes: over the server's 1000),
/// `moderated@` (held later), `SRS0=good…@` (a valid SRS bounce) and
/// `SRS0=bad…@` (an SRS address whose hash does not match).
fn list_verdict(address: &str, mail_from: &str) -> Option<RcptVerdict> {
    let accept = |list: &str, max_message_size| RcptVerdict::AcceptList {
        list: list.to_string(),
        max_message_size,
    };
    let (local, domain) = address.rsplit_once('@')?;
    if domain != "example.org" {
        return None;
    }
    Some(match local {
        "open" => accept("open", 0),
        "small" => accept("small", 100),
        "big" => accept("big", 5000),
        "moderated" => accept("moderated", 0),
        "members" if mail_from.eq_ignore_ascii_case("alice@example.org") => accept("members", 500),
        "members" => RcptVerdict::NotMember {
            list: "members".to_string(),
        },
        l if l.starts_with("srs0=good") => RcptVerdict::Accept,
        l if l.starts_with("srs0=bad") => RcptVerdict::BadSrs("SRS hash does not match".into()),
        _ => return None,
    })
}

/// The arguments of one `check_sender` call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckCall {
    pub message: Vec<u8>,
    pub client_ip: IpAddr,
    pub helo: String,
    pub mail_from: String,
}

/// Passwords of the fake accounts: `Alice` (stored spelling) and `bob`.
const PASSWORDS: [(&str, &str); 2] = [("Alice", "alice-pw"), ("bob", "bob-pw")];

/// Which accounts' mailboxes each address resolves to.
fn owners(address: &str) -> Option<&'static [&'static str]> {
    match address.to_ascii_lowercase().as_str() {
        "alice@example.org" => Some(&["Alice"]),
        "sales@example.org" => Some(&["Alice"]),
        "team@example.org" => Some(&["Alice", "bob"]),
        "bob@example.org" => Some(&["bob"]),
        "fwd@example.org" => Some(&[]),
        _ => None,
    }
}

impl FakeBackend {
    /// Knows `alice@example.org`, `bob@example.org`, `postmaster`,
    /// `loop@example.org` (alias loop) and `tmp@example.org` (db failure).
    pub fn new() -> FakeBackend {
        let mut verdicts = HashMap::new();
        verdicts.insert("loop@example.org".to_string(), RcptVerdict::Loop);
        verdicts.insert(
            "tmp@example.org".to_string(),
            RcptVerdict::TempFail("db locked".into()),
        );
        FakeBackend {
            users: vec![
                "alice@example.org".into(),
                "bob@example.org".into(),
                "postmaster".into(),
                "postmaster@example.org".into(),
                "jörg@example.org".into(),
            ],
            verdicts,
            ..FakeBackend::default()
        }
    }

    /// The messages enqueued so far.
    pub fn queued(&self) -> Vec<(NewMessage, Vec<u8>)> {
        self.queued.lock().expect("test mutex").clone()
    }

    /// The logins tried so far: (user, password, ip).
    pub fn logins(&self) -> Vec<(String, String, IpAddr)> {
        self.logins.lock().expect("test mutex").clone()
    }

    /// Answers every sender check with `check`.
    pub fn set_sender_check(&self, check: SenderCheck) {
        *self.sender_check.lock().expect("test mutex") = Some(check);
    }

    /// The sender checks asked for so far.
    pub fn checks(&self) -> Vec<CheckCall> {
        self.checks.lock().expect("test mutex").clone()
    }

    /// The MAIL FROM of every recipient check so far.
    pub fn rcpt_senders(&self) -> Vec<String> {
        self.rcpt_senders.lock().expect("test mutex").clone()
    }

    /// The addresses looked up so far.
    pub fn lookups(&self) -> Vec<String> {
        self.lookups.lock().expect("test mutex").clone()
    }
}

impl Backend for FakeBackend {
    async fn check_recipient(&self, address: &str, mail_from: &str) -> RcptVerdict {
        let key = address.to_lowercase();
        self.lookups
            .lock()
            .expect("test mutex")
            .push(address.to_string());
        self.rcpt_senders
            .lock()
            .expect("test mutex")
            .push(mail_from.to_string());
        if let Some(v) = list_verdict(&key, mail_from) {
            return v;
        }
        if let Some(v) = self.verdicts.get(&key) {
            return v.clone();
        }
        if self.users.contains(&key) {
            RcptVerdict::Accept
        } else {
            RcptVerdict::Unknown
        }
    }

    async fn login(&self, user: &str, password: &str, ip: IpAddr) -> Result<UserInfo, LoginFailed> {
        self.logins
            .lock()
            .expect("test mutex")
            .push((user.to_string(), password.to_string(), ip));
        PASSWORDS
            .iter()
            .find(|(u, p)| u.eq_ignore_ascii_case(user) && *p == password)
            .map(|(u, _)| UserInfo {
                name: (*u).to_string(),
                admin: false,
                created_at: 0,
            })
            .ok_or(LoginFailed)
    }

    async fn sender_owned_by(&self, address: &str, user: &str) -> SenderVerdict {
        self.lookups
            .lock()
            .expect("test mutex")
            .push(format!("sender:{address}"));
        if address.eq_ignore_ascii_case("tmp@example.org") {
            return SenderVerdict::TempFail("db locked".into());
        }
        match owners(address) {
            Some(users) if users.iter().any(|u| u.eq_ignore_ascii_case(user)) => {
                SenderVerdict::Owned
            }
            _ => SenderVerdict::NotOwned,
        }
    }

    fn sender_checks_enabled(&self) -> bool {
        self.sender_check.lock().expect("test mutex").is_some()
            || self.sender_check_hangs.load(Ordering::Relaxed)
    }

    async fn check_sender(
        &self,
        message: &[u8],
        client_ip: IpAddr,
        helo: &str,
        mail_from: &str,
    ) -> Option<SenderCheck> {
        self.checks.lock().expect("test mutex").push(CheckCall {
            message: message.to_vec(),
            client_ip,
            helo: helo.to_string(),
            mail_from: mail_from.to_string(),
        });
        if self.sender_check_hangs.load(Ordering::Relaxed) {
            return std::future::pending().await;
        }
        self.sender_check.lock().expect("test mutex").clone()
    }

    fn new_queue_id(&self) -> QueueId {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        QueueId(format!("{:032x}", 0xabc000 + n))
    }

    async fn enqueue(&self, msg: NewMessage, data: Vec<u8>) -> Result<QueueId, EnqueueError> {
        if self.fail_enqueue.load(Ordering::Relaxed) {
            return Err(EnqueueError("disk full".into()));
        }
        let id = msg.id.clone().unwrap_or_else(|| self.new_queue_id());
        self.queued.lock().expect("test mutex").push((msg, data));
        Ok(id)
    }
}

/// `mx.example.org`, accepting mail for `example.org`, with small limits.
pub fn config() -> Config {
    let mut c = Config {
        hostname: "mx.example.org".into(),
        domains: vec!["example.org".into()],
        ..Config::default()
    };
    c.limits.max_message_size = 1000;
    c.limits.max_recipients = 3;
    c.limits.max_errors = 5;
    c
}
