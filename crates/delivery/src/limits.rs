//! Outbound concurrency: connections in total and per destination domain
//! (semaphores), a bound on how many deliveries may wait for one domain
//! (so a slow or dead domain never takes every delivery slot of the agent),
//! and the short suspension of a domain whose hosts could not be reached,
//! so the messages queued behind it are deferred at once instead of each
//! waiting for the same timeouts. All in memory; `flush` lifts suspensions.

use postamt_config::Config;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
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
    /// Deliveries to one domain in progress or waiting for a slot; more are
    /// deferred at once (4.4.5). Keep it below the agent's in-flight limit.
    pub max_busy_per_domain: usize,
    /// How long to wait for a connection slot.
    pub slot_wait: Duration,
    /// How long an unreachable domain is suspended.
    pub suspend_for: Duration,
}

impl LimitSettings {
    /// From `[delivery]`, for an agent that attempts `max_in_flight`
    /// messages at once: one domain may hold at most three quarters of them.
    pub fn from_config(cfg: &Config, max_in_flight: usize) -> LimitSettings {
        let d = &cfg.delivery;
        LimitSettings {
            max_connections: d.max_connections.max(1),
            max_connections_per_domain: d.max_connections_per_domain.max(1),
            max_busy_per_domain: (max_in_flight * 3 / 4).max(1),
            slot_wait: DEFAULT_SLOT_WAIT,
            suspend_for: d.retry_delay(1).min(MAX_SUSPENSION),
        }
    }
}

struct DomainState {
    slots: Arc<Semaphore>,
    busy: usize,
    suspended: Option<(Instant, String)>,
}

/// The shared limits.
pub struct Limits {
    settings: LimitSettings,
    total: Arc<Semaphore>,
    domains: Mutex<HashMap<String, DomainState>>,
}

/// Whether a delivery to a domain may go ahead.
pub enum Admission {
    Admitted(DomainTicket),
    /// Too many deliveries to this domain in progress or waiting.
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
        })
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
            map.retain(|_, s| s.busy > 0 || s.suspended.as_ref().is_some_and(|(t, _)| *t > now));
        }
        let per_domain = self
            .settings
            .max_connections_per_domain
            .min(self.settings.max_busy_per_domain)
            .max(1);
        let state = map
            .entry(domain.to_string())
            .or_insert_with(|| DomainState {
                slots: Arc::new(Semaphore::new(per_domain)),
                busy: 0,
                suspended: None,
            });
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
        map.retain(|_, s| s.busy > 0);
    }

    /// A connection slot (of `max_connections`), waiting at most `slot_wait`.
    pub async fn connection(&self) -> Option<OwnedSemaphorePermit> {
        acquire(&self.total, self.settings.slot_wait).await
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
        let remove = match map.get_mut(&self.domain) {
            Some(s) => {
                s.busy = s.busy.saturating_sub(1);
                s.busy == 0 && s.suspended.is_none()
            }
            None => false,
        };
        if remove {
            map.remove(&self.domain);
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
    fn from_config_leaves_a_quarter_of_the_agent_to_other_domains() {
        let s = LimitSettings::from_config(&Config::default(), 16);
        assert_eq!(s.max_busy_per_domain, 12);
        assert_eq!((s.max_connections, s.max_connections_per_domain), (50, 5));
        assert_eq!(s.suspend_for, Duration::from_secs(60));
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
