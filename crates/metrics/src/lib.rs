//! Process-wide counters and gauges that every service bumps (messages
//! received, delivered, deferred, bounced; sessions per protocol; login
//! failures; TLS handshakes; bytes), rendered in the Prometheus text
//! exposition format for `/metrics`. Bumping is a relaxed atomic add: no
//! lock on any mail path.

mod render;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// The protocol a session or login belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Smtp,
    Submission,
    Pop3,
    Imap,
    Admin,
}

impl Protocol {
    /// Every protocol, in the order the metrics list them.
    pub const ALL: [Protocol; 5] = [
        Protocol::Smtp,
        Protocol::Submission,
        Protocol::Pop3,
        Protocol::Imap,
        Protocol::Admin,
    ];

    /// The `protocol` label value.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Smtp => "smtp",
            Protocol::Submission => "submission",
            Protocol::Pop3 => "pop3",
            Protocol::Imap => "imap",
            Protocol::Admin => "admin",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Why a message bounced, by the enhanced status code's subject digit
/// (RFC 3463: 5.1.x address, 5.2.x mailbox, 5.3.x system, 5.4.x network
/// and routing, 5.5.x protocol, 5.6.x content, 5.7.x policy); `Other`
/// when there is no code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BounceClass {
    Address,
    Mailbox,
    System,
    Network,
    Protocol,
    Content,
    Policy,
    Expired,
    Other,
}

impl BounceClass {
    /// Every class, in the order the metrics list them.
    pub const ALL: [BounceClass; 9] = [
        BounceClass::Address,
        BounceClass::Mailbox,
        BounceClass::System,
        BounceClass::Network,
        BounceClass::Protocol,
        BounceClass::Content,
        BounceClass::Policy,
        BounceClass::Expired,
        BounceClass::Other,
    ];

    /// The class of an enhanced status code such as `5.1.1`. The code may
    /// start a longer text (`"5.1.1 user unknown"`). `X.4.7` ("delivery
    /// time expired") is [`BounceClass::Expired`]; anything that is not a
    /// code `class.subject.detail` is [`BounceClass::Other`].
    pub fn of_status(status: &str) -> BounceClass {
        let code = status.split_whitespace().next().unwrap_or("");
        let mut parts = code.split('.');
        let (Some(class), Some(subject), Some(detail), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return BounceClass::Other;
        };
        let numeric = |s: &str, max: usize| {
            !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())
        };
        if !matches!(class, "2" | "4" | "5") || !numeric(subject, 3) || !numeric(detail, 3) {
            return BounceClass::Other;
        }
        match (subject, detail) {
            ("4", "7") => BounceClass::Expired,
            ("1", _) => BounceClass::Address,
            ("2", _) => BounceClass::Mailbox,
            ("3", _) => BounceClass::System,
            ("4", _) => BounceClass::Network,
            ("5", _) => BounceClass::Protocol,
            ("6", _) => BounceClass::Content,
            ("7", _) => BounceClass::Policy,
            _ => BounceClass::Other,
        }
    }

    /// The `class` label value.
    pub fn name(self) -> &'static str {
        match self {
            BounceClass::Address => "address",
            BounceClass::Mailbox => "mailbox",
            BounceClass::System => "system",
            BounceClass::Network => "network",
            BounceClass::Protocol => "protocol",
            BounceClass::Content => "content",
            BounceClass::Policy => "policy",
            BounceClass::Expired => "expired",
            BounceClass::Other => "other",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

const PROTOCOLS: usize = Protocol::ALL.len();
const CLASSES: usize = BounceClass::ALL.len();

/// The counters. Use [`global`].
#[derive(Debug, Default)]
pub struct Metrics {
    received: [AtomicU64; PROTOCOLS],
    bytes_received: AtomicU64,
    delivered_local: AtomicU64,
    delivered_remote: AtomicU64,
    deferred: AtomicU64,
    bounced: [AtomicU64; CLASSES],
    sessions_active: [AtomicI64; PROTOCOLS],
    sessions_total: [AtomicU64; PROTOCOLS],
    login_failures: [AtomicU64; PROTOCOLS],
    tls_ok: [AtomicU64; PROTOCOLS],
    tls_failed: [AtomicU64; PROTOCOLS],
    bytes_sent: [AtomicU64; PROTOCOLS],
}

static GLOBAL: Metrics = Metrics::new();

/// The process's metrics.
pub fn global() -> &'static Metrics {
    &GLOBAL
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl Metrics {
    /// All zero (for tests and [`global`]).
    pub const fn new() -> Metrics {
        Metrics {
            received: [const { AtomicU64::new(0) }; PROTOCOLS],
            bytes_received: AtomicU64::new(0),
            delivered_local: AtomicU64::new(0),
            delivered_remote: AtomicU64::new(0),
            deferred: AtomicU64::new(0),
            bounced: [const { AtomicU64::new(0) }; CLASSES],
            sessions_active: [const { AtomicI64::new(0) }; PROTOCOLS],
            sessions_total: [const { AtomicU64::new(0) }; PROTOCOLS],
            login_failures: [const { AtomicU64::new(0) }; PROTOCOLS],
            tls_ok: [const { AtomicU64::new(0) }; PROTOCOLS],
            tls_failed: [const { AtomicU64::new(0) }; PROTOCOLS],
            bytes_sent: [const { AtomicU64::new(0) }; PROTOCOLS],
        }
    }

    /// A message was accepted (250 after DATA/BDAT) of `bytes` bytes.
    pub fn message_received(&self, proto: Protocol, bytes: u64) {
        add(&self.received[proto.index()], 1);
        add(&self.bytes_received, bytes);
    }
    /// One recipient's copy was delivered, locally or remotely.
    pub fn delivered(&self, remote: bool) {
        if remote {
            add(&self.delivered_remote, 1);
        } else {
            add(&self.delivered_local, 1);
        }
    }
    /// One recipient's delivery was deferred (4xx, timeout, busy).
    pub fn deferred(&self) {
        add(&self.deferred, 1);
    }
    /// One recipient failed for good (a bounce or a postmaster copy).
    pub fn bounced(&self, class: BounceClass) {
        add(&self.bounced[class.index()], 1);
    }
    /// A session started; call [`Metrics::session_ended`] when it ends
    /// (or hold a [`SessionGuard`] from [`Metrics::session`]).
    pub fn session_started(&self, proto: Protocol) {
        self.sessions_active[proto.index()].fetch_add(1, Ordering::Relaxed);
        add(&self.sessions_total[proto.index()], 1);
    }
    pub fn session_ended(&self, proto: Protocol) {
        // Never below zero, even if an end is counted twice by mistake.
        let _ = self.sessions_active[proto.index()].fetch_update(
            Ordering::Relaxed,
            Ordering::Relaxed,
            |v| Some((v - 1).max(0)),
        );
    }
    /// Counts a session as started now and as ended when the returned
    /// guard drops, whatever path the session leaves by.
    pub fn session(&'static self, proto: Protocol) -> SessionGuard {
        self.session_started(proto);
        SessionGuard {
            metrics: self,
            proto,
        }
    }
    /// A login (SMTP AUTH, POP3, IMAP, admin) was refused.
    pub fn login_failed(&self, proto: Protocol) {
        add(&self.login_failures[proto.index()], 1);
    }
    /// A TLS handshake finished (`ok`) or failed.
    pub fn tls_handshake(&self, proto: Protocol, ok: bool) {
        if ok {
            add(&self.tls_ok[proto.index()], 1);
        } else {
            add(&self.tls_failed[proto.index()], 1);
        }
    }
    /// Bytes sent to clients (message data served by POP3/IMAP, relayed out).
    pub fn bytes_sent(&self, proto: Protocol, bytes: u64) {
        add(&self.bytes_sent[proto.index()], bytes);
    }

    /// A consistent-enough copy of every value (each read is atomic on
    /// its own; a scrape needs no more).
    pub fn snapshot(&self) -> Snapshot {
        let per = |a: &[AtomicU64; PROTOCOLS]| -> [u64; PROTOCOLS] {
            std::array::from_fn(|i| get(&a[i]))
        };
        Snapshot {
            received: per(&self.received),
            bytes_received: get(&self.bytes_received),
            delivered_local: get(&self.delivered_local),
            delivered_remote: get(&self.delivered_remote),
            deferred: get(&self.deferred),
            bounced: std::array::from_fn(|i| get(&self.bounced[i])),
            sessions_active: std::array::from_fn(|i| {
                u64::try_from(self.sessions_active[i].load(Ordering::Relaxed)).unwrap_or(0)
            }),
            sessions_total: per(&self.sessions_total),
            login_failures: per(&self.login_failures),
            tls_ok: per(&self.tls_ok),
            tls_failed: per(&self.tls_failed),
            bytes_sent: per(&self.bytes_sent),
        }
    }

    /// The Prometheus text format (version 0.0.4) of every metric, with
    /// the queue gauges given by the caller (computed at scrape time).
    pub fn render(&self, queue_length: u64, queue_oldest_secs: u64) -> String {
        render::render(&self.snapshot(), queue_length, queue_oldest_secs)
    }
}

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Ends a session's count when dropped (see [`Metrics::session`]).
#[derive(Debug)]
#[must_use = "the session counts as ended when the guard drops"]
pub struct SessionGuard {
    metrics: &'static Metrics,
    proto: Protocol,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.metrics.session_ended(self.proto);
    }
}

/// The values at one moment, indexed like [`Protocol::ALL`] and
/// [`BounceClass::ALL`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub received: [u64; PROTOCOLS],
    pub bytes_received: u64,
    pub delivered_local: u64,
    pub delivered_remote: u64,
    pub deferred: u64,
    pub bounced: [u64; CLASSES],
    pub sessions_active: [u64; PROTOCOLS],
    pub sessions_total: [u64; PROTOCOLS],
    pub login_failures: [u64; PROTOCOLS],
    pub tls_ok: [u64; PROTOCOLS],
    pub tls_failed: [u64; PROTOCOLS],
    pub bytes_sent: [u64; PROTOCOLS],
}

impl Snapshot {
    /// Bounced recipients over every class.
    pub fn bounced_total(&self) -> u64 {
        self.bounced.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_are_classified() {
        assert_eq!(BounceClass::of_status("5.1.1"), BounceClass::Address);
        assert_eq!(BounceClass::of_status("5.2.2"), BounceClass::Mailbox);
        assert_eq!(BounceClass::of_status("5.3.4"), BounceClass::System);
        assert_eq!(BounceClass::of_status("5.4.4"), BounceClass::Network);
        assert_eq!(BounceClass::of_status("5.5.1"), BounceClass::Protocol);
        assert_eq!(BounceClass::of_status("5.6.0"), BounceClass::Content);
        assert_eq!(BounceClass::of_status("5.7.26"), BounceClass::Policy);
        assert_eq!(BounceClass::of_status("4.4.7"), BounceClass::Expired);
        assert_eq!(BounceClass::of_status("5.4.7"), BounceClass::Expired);
        assert_eq!(
            BounceClass::of_status(" 5.1.1 user unknown"),
            BounceClass::Address
        );
        for bad in [
            "", "550", "5.1", "5.1.1.1", "9.1.1", "5.x.1", "5.8.0", "5.1.1234",
        ] {
            assert_eq!(BounceClass::of_status(bad), BounceClass::Other, "{bad}");
        }
    }

    #[test]
    fn counters_add_up() {
        let m = Metrics::new();
        m.message_received(Protocol::Smtp, 100);
        m.message_received(Protocol::Submission, 50);
        m.message_received(Protocol::Smtp, 1);
        m.delivered(true);
        m.delivered(false);
        m.delivered(false);
        m.deferred();
        m.bounced(BounceClass::Address);
        m.bounced(BounceClass::Address);
        m.bounced(BounceClass::Expired);
        m.login_failed(Protocol::Pop3);
        m.tls_handshake(Protocol::Imap, true);
        m.tls_handshake(Protocol::Imap, false);
        m.bytes_sent(Protocol::Pop3, 4096);
        let s = m.snapshot();
        assert_eq!(s.received[Protocol::Smtp.index()], 2);
        assert_eq!(s.received[Protocol::Submission.index()], 1);
        assert_eq!(s.bytes_received, 151);
        assert_eq!((s.delivered_local, s.delivered_remote), (2, 1));
        assert_eq!(s.deferred, 1);
        assert_eq!(s.bounced[BounceClass::Address.index()], 2);
        assert_eq!(s.bounced_total(), 3);
        assert_eq!(s.login_failures[Protocol::Pop3.index()], 1);
        assert_eq!(s.tls_ok[Protocol::Imap.index()], 1);
        assert_eq!(s.tls_failed[Protocol::Imap.index()], 1);
        assert_eq!(s.bytes_sent[Protocol::Pop3.index()], 4096);
    }

    #[test]
    fn session_guard_counts_the_end() {
        static M: Metrics = Metrics::new();
        {
            let _a = M.session(Protocol::Pop3);
            let _b = M.session(Protocol::Pop3);
            assert_eq!(M.snapshot().sessions_active[Protocol::Pop3.index()], 2);
        }
        let s = M.snapshot();
        assert_eq!(s.sessions_active[Protocol::Pop3.index()], 0);
        assert_eq!(s.sessions_total[Protocol::Pop3.index()], 2);
        // An extra end never shows a negative gauge.
        M.session_ended(Protocol::Pop3);
        assert_eq!(M.snapshot().sessions_active[Protocol::Pop3.index()], 0);
    }

    #[test]
    fn global_is_one_instance() {
        let before = global().snapshot().login_failures[Protocol::Admin.index()];
        global().login_failed(Protocol::Admin);
        let after = global().snapshot().login_failures[Protocol::Admin.index()];
        assert!(after > before);
    }
}
