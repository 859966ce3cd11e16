//! What every part of the agent shares: the configuration, the spool, store
//! and directory behind their traits, and the wake-up signal that `flush`
//! and `rescan` use to reach the scheduler loop.

use crate::backend::{QueueBackend, ResolverBackend, StoreBackend};
use crate::remote::RemoteDelivery;
use crate::srs::SenderRewriter;
use postamt_config::Config;
use postamt_directory::LocalDomains;
use postamt_spool::QueueId;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use tokio::sync::Notify;

/// Messages attempted at the same time (each holds its message in memory).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;

/// The agent's shared state.
pub struct Context {
    /// The configuration; replaced by [`Context::set_config`] on reload,
    /// read afresh by every attempt.
    config: RwLock<Arc<Config>>,
    pub queue: Arc<dyn QueueBackend>,
    pub store: Arc<dyn StoreBackend>,
    pub directory: Arc<dyn ResolverBackend>,
    /// Bound on concurrent delivery attempts.
    pub max_in_flight: usize,
    /// Remote delivery; `None` defers every remote destination (4.4.0).
    pub remote: Option<Arc<RemoteDelivery>>,
    /// Sender rewriting for forwarded copies and the return of their
    /// bounces; `None`: forwarded copies keep the original sender.
    pub srs: Option<Arc<dyn SenderRewriter>>,
    wake: Notify,
    flush_requested: AtomicBool,
    serial: AtomicU64,
}

impl Context {
    pub fn new(
        config: Arc<Config>,
        queue: Arc<dyn QueueBackend>,
        store: Arc<dyn StoreBackend>,
        directory: Arc<dyn ResolverBackend>,
    ) -> Context {
        Context {
            config: RwLock::new(config),
            queue,
            store,
            directory,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            remote: None,
            srs: None,
            wake: Notify::new(),
            flush_requested: AtomicBool::new(false),
            serial: AtomicU64::new(0),
        }
    }

    /// The current configuration.
    pub fn config(&self) -> Arc<Config> {
        Arc::clone(&self.config.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Installs a reloaded configuration: attempts that start from now on
    /// use it (local domains, postmaster, hostname, retry schedule, copies
    /// of local failures). Remote routing (smarthost, TLS, ports) keeps the
    /// settings it was built with until a restart.
    pub fn set_config(&self, config: Arc<Config>) {
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = config;
    }

    /// Sets remote delivery.
    pub fn with_remote(mut self, remote: Arc<RemoteDelivery>) -> Context {
        self.remote = Some(remote);
        self
    }

    /// Sets sender rewriting (`postamt_srs::Srs`, or a test double).
    pub fn with_srs(mut self, srs: Arc<dyn SenderRewriter>) -> Context {
        self.srs = Some(srs);
        self
    }

    /// Our primary domain (list and service addresses reached through an
    /// alias are named at it).
    pub(crate) fn primary_domain(&self) -> String {
        self.config().primary_domain()
    }

    /// Asks the scheduler to make every queued message that is not held due
    /// now (saving `next_attempt = now` in the spool) and to pick up
    /// messages it was not told about; lifts the suspension of unreachable
    /// domains. Returns at once; the scheduler does the spool I/O on a
    /// blocking thread.
    pub fn flush(&self) {
        if let Some(r) = &self.remote {
            r.clear_suspensions();
        }
        self.flush_requested.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// Asks the scheduler to re-read the queue (after a hold, release or
    /// delete made by the CLI).
    pub fn rescan(&self) {
        self.wake.notify_one();
    }

    /// Whether a flush was asked for since the last call.
    pub(crate) fn take_flush_request(&self) -> bool {
        self.flush_requested.swap(false, Ordering::SeqCst)
    }

    /// Resolves when `flush` or `rescan` was called.
    pub(crate) async fn woken(&self) {
        self.wake.notified().await
    }

    /// Our domains and postmaster, for recipient resolution.
    pub(crate) fn local_domains(&self) -> LocalDomains {
        LocalDomains::from_config(&self.config())
    }

    /// A Message-ID (without brackets) for a report about `queue_id`.
    pub(crate) fn message_id(&self, queue_id: &QueueId, tag: &str, now: i64) -> String {
        let n = self.serial.fetch_add(1, Ordering::Relaxed);
        format!("{now}.{queue_id}.{tag}.{n}@{}", self.config().hostname)
    }
}

/// The current Unix time in seconds.
pub fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}
