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
        self.state()
            .envelopes
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
    fn update(&self, env: &Envelope) -> Result<(), SpoolError> {
        let mut s = self.state();
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
