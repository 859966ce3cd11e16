//! In-memory fakes of the spool, the store and the directory for unit tests.

use crate::backend::{QueueBackend, ResolverBackend, StoreBackend};
use crate::context::Context;
use postamt_config::Config;
use postamt_directory::{Destination, LocalDomains, ResolveError};
use postamt_spool::{Envelope, NewMessage, QueueId, Recipient, RecipientStatus, SpoolError};
use postamt_store::StoreError;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

/// The test configuration: retry schedule 1m, 5m, 15m, 1h, 4h; give up
/// after 5 days; delay warning after 4 hours; postmaster copies on.
pub fn config() -> Config {
    Config {
        hostname: "mx.example.org".into(),
        domains: vec!["example.org".into()],
        ..Config::default()
    }
}

/// A pending envelope from `from` to `rcpts`, created at `created_at`.
pub fn envelope(id: &str, from: &str, rcpts: &[&str], created_at: i64) -> Envelope {
    Envelope {
        id: QueueId(id.into()),
        mail_from: from.into(),
        recipients: rcpts
            .iter()
            .map(|a| Recipient {
                address: (*a).into(),
                status: RecipientStatus::Pending,
                attempts: 0,
                last_error: None,
                delivered_to: Vec::new(),
            })
            .collect(),
        client: Some("192.0.2.1".into()),
        helo: Some("client.example.net".into()),
        auth_user: None,
        eight_bit: false,
        smtputf8: false,
        size: 0,
        created_at,
        next_attempt: created_at,
        attempts: 0,
        held: false,
        delay_warned: false,
        bounced: Vec::new(),
    }
}

/// The message the tests queue.
pub const MESSAGE: &[u8] =
    b"Received: from client\r\nFrom: s@x.org\r\nSubject: Test\r\n\r\nHello\r\n";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Default)]
pub struct QueueState {
    pub envelopes: BTreeMap<QueueId, Envelope>,
    pub messages: HashMap<QueueId, Vec<u8>>,
    /// Reports the agent queued: (id, envelope info, bytes).
    pub enqueued: Vec<(QueueId, NewMessage, Vec<u8>)>,
    pub fail_enqueue: bool,
    pub removed: Vec<QueueId>,
    /// Envelopes saved by `update`, in order.
    pub updates: Vec<Envelope>,
    /// Calls of `get` (the attempt's re-reads).
    pub gets: usize,
    /// `remove_finished` calls: (id, has_state).
    pub finished: Vec<(QueueId, bool)>,
}

/// The spool in memory.
pub struct FakeQueue {
    pub state: Mutex<QueueState>,
    tx: UnboundedSender<QueueId>,
    rx: Mutex<Option<UnboundedReceiver<QueueId>>>,
}

impl FakeQueue {
    pub fn new() -> Arc<FakeQueue> {
        let (tx, rx) = unbounded_channel();
        Arc::new(FakeQueue {
            state: Mutex::new(QueueState::default()),
            tx,
            rx: Mutex::new(Some(rx)),
        })
    }
    pub fn state(&self) -> MutexGuard<'_, QueueState> {
        lock(&self.state)
    }
    /// Queues `env` with `MESSAGE` (no arrival notification).
    pub fn put(&self, env: Envelope) {
        let mut s = self.state();
        s.messages.insert(env.id.clone(), MESSAGE.to_vec());
        s.envelopes.insert(env.id.clone(), env);
    }
    /// Queues `env` and announces it as an arrival.
    pub fn arrive(&self, env: Envelope) {
        let id = env.id.clone();
        self.put(env);
        let _ = self.tx.send(id);
    }
    pub fn env(&self, id: &str) -> Option<Envelope> {
        self.state().envelopes.get(&QueueId(id.into())).cloned()
    }
    pub fn enqueued(&self) -> Vec<(QueueId, NewMessage, Vec<u8>)> {
        self.state().enqueued.clone()
    }
}

impl QueueBackend for FakeQueue {
    fn take_arrivals(&self) -> Option<UnboundedReceiver<QueueId>> {
        lock(&self.rx).take()
    }
    fn list(&self) -> Result<Vec<Envelope>, SpoolError> {
        Ok(self.state().envelopes.values().cloned().collect())
    }
    fn get(&self, id: &QueueId) -> Result<Envelope, SpoolError> {
        let mut s = self.state();
        s.gets += 1;
        s.envelopes
            .get(id)
            .cloned()
            .ok_or_else(|| SpoolError::NotFound(id.0.clone()))
    }
    fn read_message(&self, id: &QueueId) -> Result<Vec<u8>, SpoolError> {
        self.state()
            .messages
            .get(id)
            .cloned()
            .ok_or_else(|| SpoolError::NotFound(id.0.clone()))
    }
    /// Like the spool: a state file exists once the envelope was saved.
    fn load(&self, id: &QueueId) -> Result<postamt_spool::Loaded, SpoolError> {
        let s = self.state();
        let envelope = s
            .envelopes
            .get(id)
            .cloned()
            .ok_or_else(|| SpoolError::NotFound(id.0.clone()))?;
        let message = s
            .messages
            .get(id)
            .cloned()
            .ok_or_else(|| SpoolError::NotFound(id.0.clone()))?;
        Ok(postamt_spool::Loaded {
            envelope,
            message,
            has_state: s.updates.iter().any(|e| e.id == *id),
        })
    }
    fn remove_finished(&self, id: &QueueId, has_state: bool, _: u64) -> Result<(), SpoolError> {
        self.state().finished.push((id.clone(), has_state));
        if self.state().envelopes.contains_key(id) {
            self.remove(id)
        } else {
            Err(SpoolError::NotFound(id.0.clone()))
        }
    }
    fn update(&self, env: &Envelope) -> Result<(), SpoolError> {
        let mut s = self.state();
        s.updates.push(env.clone());
        match s.envelopes.get_mut(&env.id) {
            Some(e) => {
                *e = env.clone();
                Ok(())
            }
            None => Err(SpoolError::NotFound(env.id.0.clone())),
        }
    }
    fn remove(&self, id: &QueueId) -> Result<(), SpoolError> {
        let mut s = self.state();
        s.envelopes.remove(id);
        s.messages.remove(id);
        s.removed.push(id.clone());
        Ok(())
    }
    fn enqueue(&self, msg: NewMessage, data: Vec<u8>) -> Result<QueueId, SpoolError> {
        let mut s = self.state();
        if s.fail_enqueue {
            return Err(SpoolError::Io(std::io::Error::other("disk full")));
        }
        let id = QueueId(format!("r{}", s.enqueued.len() + 1));
        s.enqueued.push((id.clone(), msg, data));
        Ok(id)
    }
}

/// How a fake mailbox fails.
#[derive(Clone, Copy, Debug)]
pub enum StoreFault {
    Io,
    NoMailbox,
    InvalidUser,
}

/// Mailboxes in memory.
#[derive(Default)]
pub struct FakeStore {
    pub delivered: Mutex<HashMap<String, Vec<Vec<u8>>>>,
    pub faults: Mutex<HashMap<String, StoreFault>>,
}

impl FakeStore {
    pub fn new() -> Arc<FakeStore> {
        Arc::new(FakeStore::default())
    }
    pub fn fail(&self, user: &str, fault: Option<StoreFault>) {
        let mut f = lock(&self.faults);
        match fault {
            Some(x) => f.insert(user.into(), x),
            None => f.remove(user),
        };
    }
    /// Copies in `user`'s mailbox.
    pub fn count(&self, user: &str) -> usize {
        lock(&self.delivered).get(user).map_or(0, Vec::len)
    }
    pub fn messages(&self, user: &str) -> Vec<Vec<u8>> {
        lock(&self.delivered).get(user).cloned().unwrap_or_default()
    }
}

impl StoreBackend for FakeStore {
    fn deliver(&self, user: &str, data: &[u8], queue_id: &str) -> Result<String, StoreError> {
        match lock(&self.faults).get(user) {
            Some(StoreFault::Io) => {
                return Err(StoreError::Io(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    "Permission denied",
                )));
            }
            Some(StoreFault::NoMailbox) => return Err(StoreError::NoMailbox(user.into())),
            Some(StoreFault::InvalidUser) => return Err(StoreError::InvalidUser(user.into())),
            None => {}
        }
        let mut d = lock(&self.delivered);
        let v = d.entry(user.into()).or_default();
        v.push(data.to_vec());
        Ok(format!("{queue_id}.{}", v.len()))
    }
}

/// A directory in memory: address (lowercase) -> expansion.
#[derive(Default)]
pub struct FakeDirectory {
    pub entries: Mutex<HashMap<String, Result<Vec<Destination>, ResolveError>>>,
}

impl FakeDirectory {
    pub fn new() -> Arc<FakeDirectory> {
        Arc::new(FakeDirectory::default())
    }
    /// `address` delivers to these local users.
    pub fn users(&self, address: &str, users: &[&str]) {
        let d = users
            .iter()
            .map(|u| Destination::Local { user: (*u).into() })
            .collect();
        lock(&self.entries).insert(address.to_ascii_lowercase(), Ok(d));
    }
    pub fn set(&self, address: &str, r: Result<Vec<Destination>, ResolveError>) {
        lock(&self.entries).insert(address.to_ascii_lowercase(), r);
    }
}

impl ResolverBackend for FakeDirectory {
    fn resolve(
        &self,
        address: &str,
        local: &LocalDomains,
    ) -> Result<Vec<Destination>, ResolveError> {
        assert!(local.contains("example.org"));
        match lock(&self.entries).get(&address.to_ascii_lowercase()) {
            Some(Ok(d)) => Ok(d.clone()),
            Some(Err(e)) => Err(match e {
                ResolveError::Unknown => ResolveError::Unknown,
                ResolveError::Loop(a) => ResolveError::Loop(a.clone()),
                ResolveError::TooDeep(n) => ResolveError::TooDeep(*n),
                ResolveError::Db(m) => ResolveError::Db(m.clone()),
            }),
            None => Err(ResolveError::Unknown),
        }
    }
}

/// Everything a test needs.
pub struct Harness {
    pub queue: Arc<FakeQueue>,
    pub store: Arc<FakeStore>,
    pub dir: Arc<FakeDirectory>,
    pub ctx: Arc<Context>,
}

impl Harness {
    pub fn new() -> Harness {
        Harness::with_config(config())
    }
    pub fn with_config(config: Config) -> Harness {
        let queue = FakeQueue::new();
        let store = FakeStore::new();
        let dir = FakeDirectory::new();
        let ctx = Arc::new(Context::new(
            Arc::new(config),
            queue.clone(),
            store.clone(),
            dir.clone(),
        ));
        Harness {
            queue,
            store,
            dir,
            ctx,
        }
    }
}

// ---- Remote delivery fakes -------------------------------------------------

use crate::dns::{BoxFuture, DnsError, MxAnswer, MxHost, Resolver};
use crate::limits::LimitSettings;
use crate::remote::RemoteDelivery;
use crate::route::RouteSettings;
use crate::transport::{ConnectTarget, SmtpConnector, SmtpSession};
use postamt_smtp_client::{
    ClientError, Envelope as ClientEnvelope, RecipientResult, Reply, TlsPolicy,
};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::sync::Notify;

/// DNS from a table: unknown domains are NXDOMAIN, unknown hosts have no
/// address. Counts MX queries.
#[derive(Default)]
pub struct FakeResolver {
    pub mx: Mutex<HashMap<String, Result<MxAnswer, DnsError>>>,
    pub hosts: Mutex<HashMap<String, Result<Vec<IpAddr>, DnsError>>>,
    pub mx_queries: Mutex<Vec<String>>,
}

impl FakeResolver {
    /// `domain` has these (preference, host) MX records.
    pub fn set_mx(&self, domain: &str, records: &[(u16, &str)]) {
        let hosts = records
            .iter()
            .map(|(p, h)| MxHost {
                preference: *p,
                host: (*h).into(),
            })
            .collect();
        lock(&self.mx).insert(domain.into(), Ok(MxAnswer::Hosts(hosts)));
    }
    pub fn set_mx_answer(&self, domain: &str, a: Result<MxAnswer, DnsError>) {
        lock(&self.mx).insert(domain.into(), a);
    }
    pub fn set_host(&self, host: &str, ips: &[&str]) {
        let v = ips.iter().map(|i| i.parse().expect("test IP")).collect();
        lock(&self.hosts).insert(host.into(), Ok(v));
    }
}

impl Resolver for FakeResolver {
    fn mx<'a>(&'a self, domain: &'a str) -> BoxFuture<'a, Result<MxAnswer, DnsError>> {
        lock(&self.mx_queries).push(domain.to_string());
        let r = lock(&self.mx)
            .get(domain)
            .cloned()
            .unwrap_or_else(|| Err(DnsError::NxDomain(domain.into())));
        Box::pin(async move { r })
    }
    fn addresses<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<Vec<IpAddr>, DnsError>> {
        let r = lock(&self.hosts)
            .get(host)
            .cloned()
            .unwrap_or(Ok(Vec::new()));
        Box::pin(async move { r })
    }
}

/// What a fake server at one address does.
#[derive(Clone)]
pub enum Script {
    /// Connection refused.
    Refuse,
    /// The connection never completes (until the test releases it, then
    /// it is refused).
    Hang(Arc<Notify>),
    /// Greets (or answers EHLO) with this reply.
    Greeting(Reply),
    /// Takes the transaction; these recipients are refused with a reply.
    Answer(Vec<(String, Reply)>),
    /// Refuses MAIL FROM.
    MailRejected(Reply),
    /// The connection drops during the transaction.
    Lost,
}

/// One thing the fake client saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SmtpEvent {
    Connect {
        addr: SocketAddr,
        server_name: String,
        tls: TlsPolicy,
        user: Option<String>,
    },
    Send {
        addr: SocketAddr,
        mail_from: String,
        recipients: Vec<String>,
        message: Vec<u8>,
    },
}

/// A scripted SMTP client: unknown addresses refuse connections.
#[derive(Default)]
pub struct FakeSmtp {
    pub scripts: Mutex<HashMap<SocketAddr, Script>>,
    pub events: Mutex<Vec<SmtpEvent>>,
    /// How long each transaction takes.
    pub send_delay: Mutex<Duration>,
    /// Transactions in progress now, and the most seen at once.
    pub in_progress: Mutex<(usize, usize)>,
}

pub fn reply(code: u16, enhanced: Option<&str>, text: &str) -> Reply {
    Reply {
        code,
        enhanced: enhanced.map(str::to_string),
        text: text.into(),
    }
}

/// `ip` on port 25.
pub fn sa(ip: &str) -> SocketAddr {
    SocketAddr::new(ip.parse().expect("test IP"), 25)
}

impl FakeSmtp {
    pub fn script(&self, addr: SocketAddr, s: Script) {
        lock(&self.scripts).insert(addr, s);
    }
    pub fn accept(&self, addr: SocketAddr) {
        self.script(addr, Script::Answer(Vec::new()));
    }
    pub fn events(&self) -> Vec<SmtpEvent> {
        lock(&self.events).clone()
    }
    /// The addresses connected to, in order.
    pub fn connects(&self) -> Vec<SocketAddr> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                SmtpEvent::Connect { addr, .. } => Some(addr),
                _ => None,
            })
            .collect()
    }
    /// (address, recipients) of each transaction, in order.
    pub fn sends(&self) -> Vec<(SocketAddr, Vec<String>)> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                SmtpEvent::Send {
                    addr, recipients, ..
                } => Some((addr, recipients)),
                _ => None,
            })
            .collect()
    }
}

struct FakeSession {
    addr: SocketAddr,
    script: Script,
    smtp: Arc<FakeSmtp>,
}

/// The connector over a shared `FakeSmtp`.
pub struct FakeConnector(pub Arc<FakeSmtp>);

impl SmtpConnector for FakeConnector {
    fn connect<'a>(
        &'a self,
        target: &'a ConnectTarget,
    ) -> BoxFuture<'a, Result<Box<dyn SmtpSession>, ClientError>> {
        Box::pin(async move {
            lock(&self.0.events).push(SmtpEvent::Connect {
                addr: target.addr,
                server_name: target.server_name.clone(),
                tls: target.tls,
                user: target.credentials.as_ref().map(|c| c.user.clone()),
            });
            let script = lock(&self.0.scripts).get(&target.addr).cloned();
            let refused = || {
                ClientError::Connect(
                    target.addr,
                    std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused"),
                )
            };
            match script {
                None | Some(Script::Refuse) => Err(refused()),
                Some(Script::Hang(release)) => {
                    release.notified().await;
                    Err(refused())
                }
                Some(Script::Greeting(r)) => Err(ClientError::Reply {
                    stage: "greeting",
                    reply: r,
                }),
                Some(script) => Ok(Box::new(FakeSession {
                    addr: target.addr,
                    script,
                    smtp: Arc::clone(&self.0),
                }) as Box<dyn SmtpSession>),
            }
        })
    }
}

impl SmtpSession for FakeSession {
    fn is_tls(&self) -> bool {
        true
    }
    fn send<'a>(
        &'a mut self,
        envelope: &'a ClientEnvelope,
        message: &'a [u8],
    ) -> BoxFuture<'a, Result<Vec<RecipientResult>, ClientError>> {
        Box::pin(async move {
            let delay = *lock(&self.smtp.send_delay);
            if !delay.is_zero() {
                {
                    let mut p = lock(&self.smtp.in_progress);
                    p.0 += 1;
                    p.1 = p.1.max(p.0);
                }
                tokio::time::sleep(delay).await;
                lock(&self.smtp.in_progress).0 -= 1;
            }
            match &self.script {
                Script::MailRejected(r) => {
                    return Err(ClientError::Reply {
                        stage: "MAIL FROM",
                        reply: r.clone(),
                    });
                }
                Script::Lost => {
                    return Err(ClientError::Io(
                        "sending the message",
                        std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset"),
                    ));
                }
                _ => {}
            }
            let Script::Answer(rejections) = &self.script else {
                return Err(ClientError::Protocol("unexpected script".into()));
            };
            let results: Vec<RecipientResult> = envelope
                .recipients
                .iter()
                .map(|r| match rejections.iter().find(|(a, _)| a == r) {
                    Some((_, reply)) => RecipientResult::Rejected(reply.clone()),
                    None => RecipientResult::Accepted(reply(250, Some("2.0.0"), "queued as X1")),
                })
                .collect();
            if results
                .iter()
                .any(|r| matches!(r, RecipientResult::Accepted(_)))
            {
                lock(&self.smtp.events).push(SmtpEvent::Send {
                    addr: self.addr,
                    mail_from: envelope.mail_from.clone(),
                    recipients: envelope.recipients.clone(),
                    message: message.to_vec(),
                });
            }
            Ok(results)
        })
    }
    fn quit(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

/// The remote delivery of the tests: fakes behind it, short waits.
pub fn fake_remote(
    config: &Config,
    dns: &Arc<FakeResolver>,
    smtp: &Arc<FakeSmtp>,
) -> RemoteDelivery {
    let mut limits = LimitSettings::from_config(config, crate::context::DEFAULT_MAX_IN_FLIGHT);
    limits.slot_wait = Duration::from_millis(200);
    remote_with_limits(config, dns, smtp, limits)
}

pub fn remote_with_limits(
    config: &Config,
    dns: &Arc<FakeResolver>,
    smtp: &Arc<FakeSmtp>,
    limits: LimitSettings,
) -> RemoteDelivery {
    RemoteDelivery::new(
        RouteSettings::from_config(config).expect("test route settings"),
        limits,
        dns.clone(),
        Arc::new(FakeConnector(Arc::clone(smtp))),
    )
}

/// A harness whose context has remote delivery over fakes.
pub struct RemoteHarness {
    pub h: Harness,
    pub dns: Arc<FakeResolver>,
    pub smtp: Arc<FakeSmtp>,
}

impl RemoteHarness {
    pub fn new() -> RemoteHarness {
        RemoteHarness::with_config(config())
    }
    pub fn with_config(config: Config) -> RemoteHarness {
        let dns = Arc::new(FakeResolver::default());
        let smtp = Arc::new(FakeSmtp::default());
        let remote = fake_remote(&config, &dns, &smtp);
        RemoteHarness::build(config, dns, smtp, remote)
    }
    pub fn build(
        config: Config,
        dns: Arc<FakeResolver>,
        smtp: Arc<FakeSmtp>,
        remote: RemoteDelivery,
    ) -> RemoteHarness {
        let queue = FakeQueue::new();
        let store = FakeStore::new();
        let dir = FakeDirectory::new();
        let ctx = Arc::new(
            Context::new(Arc::new(config), queue.clone(), store.clone(), dir.clone())
                .with_remote(Arc::new(remote)),
        );
        RemoteHarness {
            h: Harness {
                queue,
                store,
                dir,
                ctx,
            },
            dns,
            smtp,
        }
    }
    /// These addresses are remote (the directory passes them through).
    pub fn remote_addresses(&self, addrs: &[&str]) {
        for a in addrs {
            self.h.dir.set(
                a,
                Ok(vec![Destination::Remote {
                    address: (*a).into(),
                }]),
            );
        }
    }
}

// ---- Log capture -------------------------------------------------------------

/// A subscriber that records nothing but keeps every callsite "sometimes"
/// interesting, so a callsite first reached on a thread without a
/// subscriber is never cached as disabled for the capturing threads.
struct Anchor;

impl tracing::Subscriber for Anchor {
    fn register_callsite(&self, _: &tracing::Metadata<'_>) -> tracing::subscriber::Interest {
        tracing::subscriber::Interest::sometimes()
    }
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        false
    }
    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::TRACE)
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Two registered anchors: with more than one dispatcher registered,
/// tracing asks all of them (not the calling thread's) for a callsite's
/// interest.
fn anchors() {
    static ANCHORS: std::sync::OnceLock<[tracing::Dispatch; 2]> = std::sync::OnceLock::new();
    ANCHORS.get_or_init(|| {
        [
            tracing::Dispatch::new(Anchor),
            tracing::Dispatch::new(Anchor),
        ]
    });
}

#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        lock(&self.0).extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `f` with a subscriber writing plain text lines (INFO and up) on
/// this thread; returns them.
pub fn capture(f: impl FnOnce()) -> Vec<String> {
    anchors();
    let buf = LogBuffer::default();
    let writer = buf.clone();
    let sub = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(sub, f);
    let text = String::from_utf8_lossy(&lock(&buf.0)).into_owned();
    text.lines().map(str::to_string).collect()
}
