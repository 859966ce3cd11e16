//! Outbound concurrency: connections in total and per destination domain
//! (semaphores, FIFO), a bound on how many deliveries may be admitted to
//! one domain at once (in progress or waiting for one of its connection
//! slots, so a slow or dead domain never takes every delivery slot of the
//! agent), the messages parked by the scheduler until such a delivery ends
//! (`park`, and the release notices of `watch_releases`), and the short
//! suspension of a domain whose hosts could not be reached, so the
//! messages queued behind it are deferred at once instead of each waiting
//! for the same timeouts. All in memory; `flush` lifts suspensions.

use postamt_config::Config;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a delivery waits for a free connection slot at most.
pub const DEFAULT_SLOT_WAIT: Duration = Duration::from_secs(30);
/// The longest suspension of an unreachable domain.
pub const MAX_SUSPENSION: Duration = Duration::from_secs(60);
/// Domains remembered before expired entries are swept.
const SWEEP_AT: usize = 4096;

/// The numbers.
#[derive(Clone, Debug)]
pub struct LimitSettings {
    /// Connections open at once, in total.
    pub max_connections: usize,
    /// Connections open at once to one domain.
    pub max_connections_per_domain: usize,
    /// Deliveries admitted to one domain at once (in progress or waiting
    /// for one of its connection slots). More wait, parked by the scheduler
    /// without holding a delivery slot of the agent (`park`), and start as
    /// admitted ones end. Keep it below the agent's in-flight limit.
    pub max_busy_per_domain: usize,
    /// How long to wait for a connection slot.
    pub slot_wait: Duration,
    /// How long an unreachable domain is suspended.
    pub suspend_for: Duration,
}

impl LimitSettings {
    /// From `[delivery]`, for an agent that attempts `max_in_flight`
    /// messages at once: one domain is admitted twice its connections (so
    /// a freed connection finds the next message ready to go), and never
    /// more than three quarters of the agent.
    pub fn from_config(cfg: &Config, max_in_flight: usize) -> LimitSettings {
        let d = &cfg.delivery;
        let per_domain = d.max_connections_per_domain.max(1);
        LimitSettings {
            max_connections: d.max_connections.max(1),
            max_connections_per_domain: per_domain,
            max_busy_per_domain: per_domain
                .saturating_mul(2)
                .min(max_in_flight * 3 / 4)
                .max(1),
            slot_wait: DEFAULT_SLOT_WAIT,
            suspend_for: d.retry_delay(1).min(MAX_SUSPENSION),
        }
    }
}

struct DomainState {
    slots: Arc<Semaphore>,
    busy: usize,
    /// Messages the scheduler parked until a delivery here ends.
    parked: usize,
    suspended: Option<(Instant, String)>,
}

impl DomainState {
    fn idle(&self) -> bool {
        self.busy == 0 && self.parked == 0 && self.suspended.is_none()
    }
}

/// The shared limits.
pub struct Limits {
    settings: LimitSettings,
    total: Arc<Semaphore>,
    domains: Mutex<HashMap<String, DomainState>>,
    /// Where the end of a delivery to a domain with parked messages is
    /// announced (the scheduler's `watch_releases`).
    releases: Mutex<Option<UnboundedSender<String>>>,
}

/// Whether a delivery to a domain may go ahead.
pub enum Admission {
    Admitted(DomainTicket),
    /// As many deliveries to this domain as it may have are admitted: the
    /// message waits (parked by the scheduler) until one ends.
    Busy,
    /// Recently unreachable; the reason.
    Suspended(String),
}

/// A delivery to one domain in progress; counts towards its busy limit
/// until dropped.
pub struct DomainTicket {
    limits: Arc<Limits>,
    domain: String,
    slots: Arc<Semaphore>,
}

impl Limits {
    pub fn new(settings: LimitSettings) -> Arc<Limits> {
        Arc::new(Limits {
            total: Arc::new(Semaphore::new(settings.max_connections.max(1))),
            settings,
            domains: Mutex::new(HashMap::new()),
            releases: Mutex::new(None),
        })
    }

    /// The channel on which the domain of every ended delivery is announced
    /// while messages are parked for it (see `park`). A second call
    /// replaces the first receiver.
    pub fn watch_releases(&self) -> UnboundedReceiver<String> {
        let (tx, rx) = unbounded_channel();
        *self.releases.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
        rx
    }

    /// Whether release notices are being watched (a scheduler parks
    /// messages); without one, a busy domain defers instead.
    pub fn parking_available(&self) -> bool {
        self.releases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|tx| !tx.is_closed())
    }

    /// Records a message parked until a delivery to `domain` ends; returns
    /// whether the domain has room already (one ended meanwhile: start the
    /// message now, and `unpark` it).
    pub fn park(&self, domain: &str) -> bool {
        let mut map = self.lock();
        let state = map
            .entry(domain.to_string())
            .or_insert_with(|| self.new_state());
        state.parked += 1;
        state.busy < self.settings.max_busy_per_domain.max(1)
    }

    /// A parked message leaves the wait (it is started, or dropped).
    pub fn unpark(&self, domain: &str) {
        let mut map = self.lock();
        if let Some(s) = map.get_mut(domain) {
            s.parked = s.parked.saturating_sub(1);
            if s.idle() {
                map.remove(domain);
            }
        }
    }

    /// Whether a delivery to `domain` would be admitted now (not busy; a
    /// suspended domain "has room": its messages are deferred at once).
    pub fn has_room(&self, domain: &str) -> bool {
        self.lock()
            .get(domain)
            .is_none_or(|s| s.busy < self.settings.max_busy_per_domain.max(1))
    }

    fn new_state(&self) -> DomainState {
        let per_domain = self
            .settings
            .max_connections_per_domain
            .min(self.settings.max_busy_per_domain)
            .max(1);
        DomainState {
            slots: Arc::new(Semaphore::new(per_domain)),
            busy: 0,
            parked: 0,
            suspended: None,
        }
    }

    pub fn settings(&self) -> &LimitSettings {
        &self.settings
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, DomainState>> {
        self.domains.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks to start a delivery to `domain`.
    pub fn enter(self: &Arc<Self>, domain: &str) -> Admission {
        let mut map = self.lock();
        if map.len() >= SWEEP_AT {
            let now = Instant::now();
            map.retain(|_, s| {
                s.busy > 0 || s.parked > 0 || s.suspended.as_ref().is_some_and(|(t, _)| *t > now)
            });
        }
        let state = map
            .entry(domain.to_string())
            .or_insert_with(|| self.new_state());
        if let Some((until, why)) = &state.suspended {
            if *until > Instant::now() {
                return Admission::Suspended(why.clone());
            }
            state.suspended = None;
        }
        if state.busy >= self.settings.max_busy_per_domain.max(1) {
            return Admission::Busy;
        }
        state.busy += 1;
        Admission::Admitted(DomainTicket {
            limits: Arc::clone(self),
            domain: domain.to_string(),
            slots: Arc::clone(&state.slots),
        })
    }

    /// The reason `domain` is suspended, if it is.
    pub fn suspended(&self, domain: &str) -> Option<String> {
        let map = self.lock();
        let (until, why) = map.get(domain)?.suspended.as_ref()?;
        (*until > Instant::now()).then(|| why.clone())
    }

    /// Suspends deliveries to `domain` for the configured time.
    pub fn suspend(&self, domain: &str, why: &str) {
        if self.settings.suspend_for.is_zero() {
            return;
        }
        let until = Instant::now() + self.settings.suspend_for;
        if let Some(s) = self.lock().get_mut(domain) {
            s.suspended = Some((until, why.to_string()));
        }
    }

    /// Lifts every suspension (`queue flush`).
    pub fn clear_suspensions(&self) {
        let mut map = self.lock();
        for s in map.values_mut() {
            s.suspended = None;
        }
        map.retain(|_, s| !s.idle());
    }

    /// A connection slot (of `max_connections`), waiting at most `slot_wait`.
    pub async fn connection(&self) -> Option<OwnedSemaphorePermit> {
        acquire(&self.total, self.settings.slot_wait).await
    }

    /// Messages parked for `domain` (for tests and diagnostics).
    pub fn parked(&self, domain: &str) -> usize {
        self.lock().get(domain).map_or(0, |s| s.parked)
    }

    /// Domains currently known (for tests and diagnostics).
    pub fn tracked_domains(&self) -> usize {
        self.lock().len()
    }
}

async fn acquire(sem: &Arc<Semaphore>, wait: Duration) -> Option<OwnedSemaphorePermit> {
    match tokio::time::timeout(wait, Arc::clone(sem).acquire_owned()).await {
        Ok(Ok(p)) => Some(p),
        _ => None,
    }
}

impl DomainTicket {
    /// A connection slot for this domain, waiting at most `slot_wait`.
    pub async fn slot(&self) -> Option<OwnedSemaphorePermit> {
        acquire(&self.slots, self.limits.settings.slot_wait).await
    }
}

impl Drop for DomainTicket {
    fn drop(&mut self) {
        let mut map = self.limits.lock();
        let (remove, announce) = match map.get_mut(&self.domain) {
            Some(s) => {
                s.busy = s.busy.saturating_sub(1);
                (s.idle(), s.parked > 0)
            }
            None => (false, false),
        };
        if remove {
            map.remove(&self.domain);
        }
        drop(map);
        if announce {
            let releases = self
                .limits
                .releases
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if let Some(tx) = releases.as_ref() {
                // A scheduler that stopped listening has nothing parked.
                let _ = tx.send(self.domain.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> LimitSettings {
        LimitSettings {
            max_connections: 3,
            max_connections_per_domain: 2,
            max_busy_per_domain: 3,
            slot_wait: Duration::from_millis(50),
            suspend_for: Duration::from_secs(60),
        }
    }

    #[test]
    fn from_config_admits_twice_the_connections_but_leaves_a_quarter_of_the_agent() {
        let s = LimitSettings::from_config(&Config::default(), 64);
        assert_eq!(s.max_busy_per_domain, 10, "5 connections, 5 ready behind");
        assert_eq!((s.max_connections, s.max_connections_per_domain), (50, 5));
        assert_eq!(s.suspend_for, Duration::from_secs(60));
        let small = LimitSettings::from_config(&Config::default(), 8);
        assert_eq!(small.max_busy_per_domain, 6, "three quarters of 8");
    }

    #[tokio::test]
    async fn parked_messages_hear_when_a_delivery_ends() {
        let l = Limits::new(settings());
        let mut rx = l.watch_releases();
        assert!(l.parking_available());
        let tickets: Vec<DomainTicket> = (0..3)
            .map(|_| match l.enter("a.net") {
                Admission::Admitted(t) => t,
                _ => panic!("admitted"),
            })
            .collect();
        assert!(matches!(l.enter("a.net"), Admission::Busy));
        assert!(!l.has_room("a.net"));
        assert!(!l.park("a.net"), "no room yet");
        assert!(!l.park("a.net"));
        let mut tickets = tickets.into_iter();
        drop(tickets.next());
        assert_eq!(rx.try_recv().ok().as_deref(), Some("a.net"));
        assert!(l.has_room("a.net"));
        l.unpark("a.net");
        l.unpark("a.net");
        drop(tickets.next());
        assert!(rx.try_recv().is_err(), "nobody parked: no notice");
        drop(tickets);
        assert_eq!(l.tracked_domains(), 0, "idle domains are forgotten");
        // A domain with room when parking says so (the release came first).
        assert!(l.park("b.net"));
        assert_eq!(l.tracked_domains(), 1, "kept while something is parked");
        l.unpark("b.net");
        assert_eq!(l.tracked_domains(), 0);
    }

    #[tokio::test]
    async fn a_domain_admits_a_bounded_number_of_deliveries() {
        let l = Limits::new(settings());
        let mut tickets = Vec::new();
        for _ in 0..3 {
            match l.enter("a.net") {
                Admission::Admitted(t) => tickets.push(t),
                _ => panic!("should be admitted"),
            }
        }
        assert!(matches!(l.enter("a.net"), Admission::Busy));
        assert!(
            matches!(l.enter("b.net"), Admission::Admitted(_)),
            "other domains are not affected"
        );
        // Two slots per domain: the third waits, then gives up.
        let p1 = tickets[0].slot().await.expect("slot 1");
        let _p2 = tickets[1].slot().await.expect("slot 2");
        assert!(tickets[2].slot().await.is_none(), "bounded wait");
        drop(p1);
        assert!(tickets[2].slot().await.is_some());
        tickets.clear();
        assert_eq!(l.tracked_domains(), 0, "idle domains are forgotten");
    }

    #[tokio::test]
    async fn suspension_defers_until_flushed() {
        let l = Limits::new(settings());
        let t = match l.enter("dead.net") {
            Admission::Admitted(t) => t,
            _ => panic!(),
        };
        l.suspend("dead.net", "4.4.1 connection refused");
        drop(t);
        match l.enter("dead.net") {
            Admission::Suspended(why) => assert!(why.contains("refused")),
            _ => panic!("suspended"),
        }
        assert!(l.suspended("dead.net").is_some());
        l.clear_suspensions();
        assert!(matches!(l.enter("dead.net"), Admission::Admitted(_)));
    }

    #[tokio::test]
    async fn total_connections_are_bounded() {
        let l = Limits::new(settings());
        let a = l.connection().await;
        let b = l.connection().await;
        let c = l.connection().await;
        assert!(a.is_some() && b.is_some() && c.is_some());
        assert!(l.connection().await.is_none());
    }
}
