//! The run loop: recovers the queue at start, attempts new arrivals at once
//! and retries when due (a min-heap of due times), keeps a bounded number of
//! attempts in flight on blocking threads, parks messages whose remote
//! domain is saturated here in a FIFO per domain (`Parked`) and starts the
//! first of them the moment a delivery to that domain ends, rescans the
//! spool on `flush`, `rescan` and every minute (the CLI's
//! hold/release/delete), and on shutdown stops starting attempts and waits
//! for those in hand.

use crate::attempt::{self, Next};
use crate::backend::QueueBackend;
use crate::context::{Context, now_unix};
use postamt_spool::{Envelope, QueueId, SpoolError};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

/// How often the spool is re-read without being asked.
pub const RESCAN_INTERVAL: Duration = Duration::from_secs(60);
/// How often expired list confirmations and held posts are cleared.
pub const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(3600);
/// Arrivals taken from the channel in one go.
const ARRIVAL_BATCH: usize = 1024;
/// Wait before retrying a message whose attempt panicked.
const PANIC_RETRY_SECS: i64 = 300;
/// The due time given to a parked message released for its domain: before
/// every real due time, so it starts at the next free delivery slot.
const RELEASED_AT: i64 = i64::MIN;

/// Messages waiting for a delivery slot to a remote domain, first come
/// first served per domain. A message is parked in one domain at a time.
#[derive(Debug, Default)]
pub struct Parked {
    queues: HashMap<String, VecDeque<QueueId>>,
    domain_of: HashMap<QueueId, String>,
    /// Released messages not started yet: parked again, they go first.
    released: HashSet<QueueId>,
}

impl Parked {
    /// Parks `id` behind `domain` (at the head if it was just released
    /// from there and lost the slot to another message).
    pub fn park(&mut self, id: QueueId, domain: String) {
        if self.domain_of.contains_key(&id) {
            return;
        }
        let queue = self.queues.entry(domain.clone()).or_default();
        if self.released.remove(&id) {
            queue.push_front(id.clone());
        } else {
            queue.push_back(id.clone());
        }
        self.domain_of.insert(id, domain);
    }

    /// Takes the first message parked behind `domain`.
    pub fn release(&mut self, domain: &str) -> Option<QueueId> {
        let queue = self.queues.get_mut(domain)?;
        let id = queue.pop_front();
        if queue.is_empty() {
            self.queues.remove(domain);
        }
        let id = id?;
        self.domain_of.remove(&id);
        self.released.insert(id.clone());
        Some(id)
    }

    /// Whether `id` is parked.
    pub fn contains(&self, id: &QueueId) -> bool {
        self.domain_of.contains_key(id)
    }

    /// Forgets that `id` was released (its attempt started).
    pub fn started(&mut self, id: &QueueId) {
        self.released.remove(id);
    }

    /// Number of parked messages.
    pub fn len(&self) -> usize {
        self.domain_of.len()
    }

    pub fn is_empty(&self) -> bool {
        self.domain_of.is_empty()
    }

    /// Drops the parked messages the spool no longer has (deleted by the
    /// CLI, or finished elsewhere); returns them with their domains.
    pub fn retain_listed(&mut self, listed: &HashSet<&QueueId>) -> Vec<(QueueId, String)> {
        let gone: Vec<(QueueId, String)> = self
            .domain_of
            .iter()
            .filter(|(id, _)| !listed.contains(id))
            .map(|(id, d)| (id.clone(), d.clone()))
            .collect();
        for (id, domain) in &gone {
            self.domain_of.remove(id);
            if let Some(q) = self.queues.get_mut(domain) {
                q.retain(|x| x != id);
                if q.is_empty() {
                    self.queues.remove(domain);
                }
            }
        }
        gone
    }
}

/// Due times of queued messages: one live entry per message; stale heap
/// entries (superseded times) are skipped when they surface.
#[derive(Debug, Default)]
pub struct Schedule {
    heap: BinaryHeap<Reverse<(i64, QueueId)>>,
    due: HashMap<QueueId, i64>,
}

impl Schedule {
    /// Number of scheduled messages.
    pub fn len(&self) -> usize {
        self.due.len()
    }

    pub fn is_empty(&self) -> bool {
        self.due.is_empty()
    }

    /// When `id` is due, if scheduled.
    pub fn due_at(&self, id: &QueueId) -> Option<i64> {
        self.due.get(id).copied()
    }

    /// Schedules `id` at `at`, or earlier if it already was.
    pub fn set_earlier(&mut self, id: QueueId, at: i64) {
        if let Some(&old) = self.due.get(&id)
            && old <= at
        {
            return;
        }
        self.due.insert(id.clone(), at);
        self.heap.push(Reverse((at, id)));
        self.compact();
    }

    /// Takes the next message due at or before `now`.
    pub fn pop_due(&mut self, now: i64) -> Option<QueueId> {
        while let Some(Reverse((at, _))) = self.heap.peek() {
            if *at > now {
                return None;
            }
            let Reverse((at, id)) = self.heap.pop()?;
            if self.due.get(&id) == Some(&at) {
                self.due.remove(&id);
                return Some(id);
            }
        }
        None
    }

    /// The earliest due time (dropping stale entries on top).
    pub fn next_due(&mut self) -> Option<i64> {
        while let Some(Reverse((at, id))) = self.heap.peek() {
            if self.due.get(id) == Some(at) {
                return Some(*at);
            }
            self.heap.pop();
        }
        None
    }

    /// Replaces the schedule by the spool's view: every envelope not held
    /// and not in `busy`, at its `next_attempt` or at the earlier time it
    /// already had (an arrival or a flush). Messages gone from the spool or
    /// held are dropped.
    pub fn apply_listing(&mut self, envelopes: &[Envelope], busy: &HashSet<QueueId>) {
        let mut due = HashMap::with_capacity(envelopes.len());
        for e in envelopes {
            if e.held || busy.contains(&e.id) {
                continue;
            }
            let at = match self.due.get(&e.id) {
                Some(&old) => old.min(e.next_attempt),
                None => e.next_attempt,
            };
            due.insert(e.id.clone(), at);
        }
        self.due = due;
        self.rebuild();
    }

    fn rebuild(&mut self) {
        self.heap = self
            .due
            .iter()
            .map(|(id, &at)| Reverse((at, id.clone())))
            .collect();
    }

    /// Keeps stale entries from piling up.
    fn compact(&mut self) {
        if self.heap.len() > 2 * self.due.len() + 64 {
            self.rebuild();
        }
    }
}

/// Flush on the spool: `next_attempt = now` for every message not held and
/// not being attempted (those are returned to be attempted again once
/// done). Returns the (updated) listing too.
pub fn apply_flush(
    queue: &dyn QueueBackend,
    now: i64,
    busy: &HashSet<QueueId>,
) -> Result<(Vec<Envelope>, Vec<QueueId>), SpoolError> {
    let mut list = queue.list()?;
    let mut again = Vec::new();
    for e in list.iter_mut().filter(|e| !e.held) {
        if busy.contains(&e.id) {
            again.push(e.id.clone());
        } else if e.next_attempt > now {
            e.next_attempt = now;
            if let Err(err) = queue.update(e) {
                warn!(queue_id = %e.id, error = %err, "cannot save the flushed envelope");
            }
        }
    }
    Ok((list, again))
}

/// The loop's own state.
struct Loop {
    ctx: Arc<Context>,
    schedule: Schedule,
    /// Messages being attempted now.
    busy: HashSet<QueueId>,
    /// Busy messages to attempt again as soon as their attempt ends.
    again: HashSet<QueueId>,
    tasks: JoinSet<(QueueId, Next)>,
    task_ids: HashMap<tokio::task::Id, QueueId>,
    /// Messages waiting for a delivery slot to their remote domain.
    parked: Parked,
}

/// How long a shutdown waits for the attempts in hand.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Runs the delivery agent until `shutdown`; see the module doc.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let mut arrivals = ctx.queue.take_arrivals();
    if arrivals.is_none() {
        warn!("arrival notifications are taken already; new mail is found by rescans only");
    }
    let mut releases = ctx.remote.as_ref().map(|r| r.limits().watch_releases());
    let mut lp = Loop {
        ctx: Arc::clone(&ctx),
        schedule: Schedule::default(),
        busy: HashSet::new(),
        again: HashSet::new(),
        tasks: JoinSet::new(),
        task_ids: HashMap::new(),
        parked: Parked::default(),
    };
    let flush = ctx.take_flush_request();
    lp.rescan(flush).await;
    info!(queued = lp.schedule.len(), "delivery agent started");

    let housekeeping = tokio::spawn(housekeeping(Arc::clone(&ctx), shutdown.clone()));
    let mut ticker = tokio::time::interval_at(Instant::now() + RESCAN_INTERVAL, RESCAN_INTERVAL);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        let now = now_unix();
        lp.start_due(now);
        let wait = lp.wait(now);
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            Some(joined) = lp.tasks.join_next_with_id() => lp.finished(joined),
            Some(domain) = next_release(&mut releases) => lp.released(&domain),
            Some(first) = next_arrival(&mut arrivals) => match first {
                Some(id) => lp.arrived(id, arrivals.as_mut()),
                None => {
                    warn!("the spool's arrival channel closed; new mail is found by rescans only");
                    arrivals = None;
                }
            },
            () = ctx.woken() => {
                let flush = ctx.take_flush_request();
                lp.rescan(flush).await;
            }
            _ = ticker.tick() => lp.rescan(false).await,
            () = tokio::time::sleep(wait) => {}
        }
    }

    info!(
        in_flight = lp.tasks.len(),
        "delivery agent stopping; finishing the attempts in hand"
    );
    let finish = async {
        while let Some(joined) = lp.tasks.join_next_with_id().await {
            if let Err(e) = joined {
                error!(error = %e, "delivery attempt failed during shutdown");
            }
        }
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, finish).await.is_err() {
        // A slow remote host or DNS must not hold the stop hostage. The
        // spool still has every unfinished recipient: at worst a message
        // is delivered again after the restart.
        warn!(
            still_running = lp.tasks.len(),
            "delivery attempts still running after the grace period; abandoning them"
        );
        lp.tasks.abort_all();
    }
    if let Err(e) = housekeeping.await {
        error!(error = %e, "list housekeeping failed");
    }
    info!("delivery agent stopped");
}

/// Every [`HOUSEKEEPING_INTERVAL`] (and at start): expired list
/// confirmations and held posts, old auto-reply memory.
async fn housekeeping(ctx: Arc<Context>, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(HOUSEKEEPING_INTERVAL);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticker.tick() => {
                let c = Arc::clone(&ctx);
                if let Err(e) =
                    tokio::task::spawn_blocking(move || crate::lists::housekeeping(&c, now_unix())).await
                {
                    error!(error = %e, "list housekeeping failed");
                }
            }
        }
    }
}

/// The domain of the next delivery that ended while messages were parked
/// for it; never resolves without a channel.
async fn next_release(rx: &mut Option<UnboundedReceiver<String>>) -> Option<String> {
    match rx {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

/// The next arrival; never resolves without a channel.
async fn next_arrival(rx: &mut Option<UnboundedReceiver<QueueId>>) -> Option<Option<QueueId>> {
    match rx {
        Some(r) => Some(r.recv().await),
        None => std::future::pending().await,
    }
}

impl Loop {
    /// Starts due attempts up to the concurrency limit.
    fn start_due(&mut self, now: i64) {
        while self.tasks.len() < self.ctx.max_in_flight.max(1) {
            let Some(id) = self.schedule.pop_due(now) else {
                break;
            };
            if self.busy.contains(&id) {
                self.again.insert(id);
                continue;
            }
            self.parked.started(&id);
            self.busy.insert(id.clone());
            let ctx = Arc::clone(&self.ctx);
            let qid = id.clone();
            let handle = self.tasks.spawn_blocking(move || {
                let next = attempt::attempt(&ctx, &qid, now_unix());
                (qid, next)
            });
            self.task_ids.insert(handle.id(), id);
        }
    }

    /// How long to sleep when nothing else happens.
    fn wait(&mut self, now: i64) -> Duration {
        if self.tasks.len() >= self.ctx.max_in_flight.max(1) {
            return RESCAN_INTERVAL;
        }
        match self.schedule.next_due() {
            Some(at) => {
                let secs = u64::try_from(at.saturating_sub(now)).unwrap_or(0);
                Duration::from_secs(secs.clamp(1, RESCAN_INTERVAL.as_secs()))
            }
            None => RESCAN_INTERVAL,
        }
    }

    /// Schedules an arrival now, with any others already waiting.
    fn arrived(&mut self, first: QueueId, rx: Option<&mut UnboundedReceiver<QueueId>>) {
        let now = now_unix();
        self.schedule.set_earlier(first, now);
        if let Some(rx) = rx {
            for _ in 0..ARRIVAL_BATCH {
                match rx.try_recv() {
                    Ok(id) => self.schedule.set_earlier(id, now),
                    Err(_) => break,
                }
            }
        }
    }

    /// Handles the end of an attempt.
    fn finished(
        &mut self,
        joined: Result<(tokio::task::Id, (QueueId, Next)), tokio::task::JoinError>,
    ) {
        let now = now_unix();
        let (id, next) = match joined {
            Ok((task, (id, next))) => {
                self.task_ids.remove(&task);
                (id, next)
            }
            Err(e) => {
                let Some(id) = self.task_ids.remove(&e.id()) else {
                    error!(error = %e, "delivery attempt failed");
                    return;
                };
                error!(queue_id = %id, error = %e, "delivery attempt failed; trying again later");
                let at = now.saturating_add(PANIC_RETRY_SECS);
                (id, Next::At(at))
            }
        };
        self.busy.remove(&id);
        let again = self.again.remove(&id);
        match next {
            // Asked for again meanwhile (a flush): the domain decides anyway.
            Next::WaitFor(domain) => self.park(id, domain),
            Next::At(at) => {
                if again {
                    self.schedule.set_earlier(id.clone(), now);
                }
                self.schedule.set_earlier(id, at);
            }
            Next::Unscheduled => {
                self.parked.started(&id);
                if again {
                    self.schedule.set_earlier(id, now);
                }
            }
        }
    }

    /// Parks `id` until a delivery to `domain` ends, or releases it at once
    /// if one ended meanwhile.
    fn park(&mut self, id: QueueId, domain: String) {
        let Some(remote) = self.ctx.remote.clone() else {
            self.schedule.set_earlier(id, now_unix());
            return;
        };
        if self.parked.contains(&id) {
            return;
        }
        debug!(queue_id = %id, domain = %domain, parked = self.parked.len() + 1, "waiting for a delivery slot");
        self.parked.park(id, domain.clone());
        if remote.limits().park(&domain) {
            self.released(&domain);
        }
    }

    /// A delivery to `domain` ended: its first parked message goes next.
    fn released(&mut self, domain: &str) {
        if let Some(id) = self.parked.release(domain) {
            if let Some(r) = &self.ctx.remote {
                r.limits().unpark(domain);
            }
            self.schedule.set_earlier(id, RELEASED_AT);
        }
    }

    /// Re-reads the spool (after flushing it when asked).
    async fn rescan(&mut self, flush: bool) {
        let ctx = Arc::clone(&self.ctx);
        let busy = self.busy.clone();
        let now = now_unix();
        let job = tokio::task::spawn_blocking(move || {
            if flush {
                apply_flush(ctx.queue.as_ref(), now, &busy)
            } else {
                ctx.queue.list().map(|l| (l, Vec::new()))
            }
        });
        match job.await {
            Ok(Ok((list, again))) => {
                // Parked messages are in hand, like those being attempted;
                // those gone from the spool are forgotten.
                let listed: HashSet<&QueueId> = list.iter().map(|e| &e.id).collect();
                for (_, domain) in self.parked.retain_listed(&listed) {
                    if let Some(r) = &self.ctx.remote {
                        r.limits().unpark(&domain);
                    }
                }
                let mut in_hand = self.busy.clone();
                in_hand.extend(self.parked.domain_of.keys().cloned());
                self.schedule.apply_listing(&list, &in_hand);
                self.again.extend(again);
                if flush {
                    info!(queued = self.schedule.len(), "queue flushed");
                }
            }
            Ok(Err(e)) => warn!(error = %e, "cannot list the queue; keeping the current schedule"),
            Err(e) => error!(error = %e, "queue rescan failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Harness, StoreFault, envelope};
    use std::sync::atomic::{AtomicBool, Ordering};

    fn qid(s: &str) -> QueueId {
        QueueId(s.into())
    }

    /// Waits (bounded) until `f` holds; the bound only stops a hang.
    async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
        for _ in 0..2000 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("never happened: {what}");
    }

    #[test]
    fn schedule_pops_in_due_order_and_skips_superseded_times() {
        let mut s = Schedule::default();
        s.set_earlier(qid("c"), 30);
        s.set_earlier(qid("a"), 10);
        s.set_earlier(qid("b"), 20);
        s.set_earlier(qid("c"), 5); // moved earlier: the 30 entry is stale
        s.set_earlier(qid("a"), 50); // later: ignored
        assert_eq!(s.len(), 3);
        assert_eq!(s.next_due(), Some(5));
        assert_eq!(s.pop_due(4), None);
        assert_eq!(s.pop_due(100), Some(qid("c")));
        assert_eq!(s.pop_due(100), Some(qid("a")));
        assert_eq!(s.pop_due(15), None, "b is due at 20");
        assert_eq!(s.pop_due(20), Some(qid("b")));
        assert_eq!(s.pop_due(1000), None, "stale c@30 is skipped");
        assert!(s.is_empty());
        assert_eq!(s.next_due(), None);
    }

    #[test]
    fn parked_messages_leave_first_come_first_served_per_domain() {
        let mut p = Parked::default();
        for (id, d) in [
            ("a1", "a.net"),
            ("b1", "b.net"),
            ("a2", "a.net"),
            ("a3", "a.net"),
        ] {
            p.park(qid(id), d.into());
        }
        p.park(qid("a1"), "b.net".into());
        assert_eq!(p.len(), 4, "parked once");
        assert!(p.contains(&qid("a2")));
        assert_eq!(p.release("a.net"), Some(qid("a1")));
        assert_eq!(p.release("a.net"), Some(qid("a2")));
        assert!(!p.contains(&qid("a2")));
        // a2 lost the slot to a newcomer: it goes first again, a1 started.
        p.started(&qid("a1"));
        p.park(qid("a2"), "a.net".into());
        assert_eq!(p.release("a.net"), Some(qid("a2")));
        assert_eq!(p.release("a.net"), Some(qid("a3")));
        assert_eq!(p.release("a.net"), None);
        assert_eq!(p.release("c.net"), None);
        // A parked message deleted from the spool is forgotten.
        p.park(qid("a4"), "a.net".into());
        let b1 = qid("b1");
        let listed: HashSet<&QueueId> = [&b1].into();
        assert_eq!(p.retain_listed(&listed), [(qid("a4"), "a.net".to_string())]);
        assert_eq!(p.len(), 1);
        assert_eq!(p.release("a.net"), None);
        assert_eq!(p.release("b.net"), Some(qid("b1")));
        assert!(p.is_empty());
    }

    #[test]
    fn schedule_stays_compact() {
        let mut s = Schedule::default();
        for at in (0..10_000).rev() {
            s.set_earlier(qid("x"), at);
        }
        assert!(s.heap.len() <= 2 * s.len() + 65, "{}", s.heap.len());
        assert_eq!(s.pop_due(0), Some(qid("x")));
    }

    #[test]
    fn listing_replaces_the_schedule() {
        let mut s = Schedule::default();
        s.set_earlier(qid("arrived"), 100);
        s.set_earlier(qid("deleted"), 100);
        let mut held = envelope("held", "s@x.org", &["a@example.org"], 0);
        held.held = true;
        let mut arrived = envelope("arrived", "s@x.org", &["a@example.org"], 0);
        arrived.next_attempt = 500;
        let mut later = envelope("later", "s@x.org", &["a@example.org"], 0);
        later.next_attempt = 900;
        let busy_env = envelope("busy", "s@x.org", &["a@example.org"], 0);
        let busy: HashSet<QueueId> = [qid("busy")].into();
        s.apply_listing(&[held, arrived, later, busy_env], &busy);
        assert_eq!(
            s.due_at(&qid("arrived")),
            Some(100),
            "an earlier time is kept"
        );
        assert_eq!(s.due_at(&qid("later")), Some(900));
        assert_eq!(s.due_at(&qid("held")), None);
        assert_eq!(s.due_at(&qid("deleted")), None);
        assert_eq!(s.due_at(&qid("busy")), None);
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn flush_makes_every_message_not_held_due() {
        let h = Harness::new();
        let mut a = envelope("a", "s@x.org", &["x@example.org"], 0);
        a.next_attempt = 5000;
        let mut held = envelope("held", "s@x.org", &["x@example.org"], 0);
        held.next_attempt = 5000;
        held.held = true;
        let mut busy = envelope("busy", "s@x.org", &["x@example.org"], 0);
        busy.next_attempt = 5000;
        h.queue.put(a);
        h.queue.put(held);
        h.queue.put(busy);
        let in_flight: HashSet<QueueId> = [qid("busy")].into();
        let (list, again) = apply_flush(h.queue.as_ref(), 1000, &in_flight).unwrap();
        assert_eq!(list.len(), 3);
        assert_eq!(again, [qid("busy")]);
        assert_eq!(h.queue.env("a").unwrap().next_attempt, 1000);
        assert_eq!(h.queue.env("held").unwrap().next_attempt, 5000);
        assert_eq!(
            h.queue.env("busy").unwrap().next_attempt,
            5000,
            "the attempt in flight owns the envelope"
        );
    }

    #[tokio::test]
    async fn recovers_delivers_arrivals_and_flushes() {
        let h = Harness::new();
        let now = now_unix();
        for u in ["due", "future", "held", "late", "fresh", "broken"] {
            h.dir.users(&format!("{u}@example.org"), &[u]);
        }
        h.store.fail("broken", Some(StoreFault::Io));
        h.queue
            .put(envelope("due", "s@x.org", &["due@example.org"], now - 30));
        let mut future = envelope("future", "s@x.org", &["future@example.org"], now);
        future.next_attempt = now + 3600;
        h.queue.put(future);
        let mut held = envelope("held", "s@x.org", &["held@example.org"], now - 30);
        held.held = true;
        h.queue.put(held);

        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(Arc::clone(&h.ctx), shutdown.clone()));

        eventually("recovered message delivered", || h.store.count("due") == 1).await;
        assert!(h.queue.env("due").is_none());

        // An arrival is attempted at once, whatever its next_attempt says.
        let mut fresh = envelope("fresh", "s@x.org", &["fresh@example.org"], now);
        fresh.next_attempt = now + 3600;
        h.queue.arrive(fresh);
        eventually("arrival delivered", || h.store.count("fresh") == 1).await;

        // Not yet due, and held: untouched so far.
        assert_eq!(h.store.count("future"), 0);
        assert_eq!(h.queue.env("future").unwrap().attempts, 0);
        assert_eq!(h.store.count("held"), 0);
        assert_eq!(h.queue.env("held").unwrap().attempts, 0);

        // Queued behind the agent's back (no arrival), not due.
        let mut late = envelope("late", "s@x.org", &["late@example.org"], now);
        late.next_attempt = now + 3600;
        h.queue.put(late);
        let mut broken = envelope("broken", "s@x.org", &["broken@example.org"], now);
        broken.next_attempt = now + 3600;
        h.queue.put(broken);

        h.ctx.flush();
        eventually("flushed messages delivered", || {
            h.store.count("future") == 1 && h.store.count("late") == 1
        })
        .await;
        eventually("failing message attempted", || {
            h.queue.env("broken").is_some_and(|e| e.attempts == 1)
        })
        .await;
        let broken = h.queue.env("broken").unwrap();
        assert!(
            broken.next_attempt >= now + 60,
            "rescheduled per retry_intervals"
        );
        assert_eq!(
            h.store.count("held"),
            0,
            "flush never releases a held message"
        );
        assert_eq!(h.queue.env("held").unwrap().attempts, 0);

        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("run returns after shutdown")
            .expect("run does not panic");
    }

    #[tokio::test]
    async fn a_released_message_is_picked_up_by_a_rescan() {
        let h = Harness::new();
        let now = now_unix();
        h.dir.users("bob@example.org", &["bob"]);
        let mut env = envelope("m1", "s@x.org", &["bob@example.org"], now);
        env.held = true;
        h.queue.put(env);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(Arc::clone(&h.ctx), shutdown.clone()));
        // The CLI releases it (held = false, due now) and asks for a rescan.
        tokio::task::yield_now().await;
        {
            let mut s = h.queue.state();
            let e = s.envelopes.get_mut(&qid("m1")).unwrap();
            e.held = false;
            e.next_attempt = now;
        }
        h.ctx.rescan();
        eventually("released message delivered", || h.store.count("bob") == 1).await;
        shutdown.cancel();
        task.await.unwrap();
    }

    /// A store that signals when a delivery starts and takes a while.
    struct SlowStore {
        inner: Arc<crate::testing::FakeStore>,
        started: AtomicBool,
    }

    impl crate::backend::StoreBackend for SlowStore {
        fn deliver(
            &self,
            user: &str,
            data: &[u8],
            id: &str,
        ) -> Result<String, postamt_store::StoreError> {
            self.started.store(true, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(200));
            self.inner.deliver(user, data, id)
        }
    }

    #[tokio::test]
    async fn shutdown_finishes_the_attempts_in_hand_and_starts_no_more() {
        let h = Harness::new();
        let now = now_unix();
        h.dir.users("bob@example.org", &["bob"]);
        let slow = Arc::new(SlowStore {
            inner: Arc::clone(&h.store),
            started: AtomicBool::new(false),
        });
        let mut ctx = Context::new(h.ctx.config(), h.queue.clone(), slow.clone(), h.dir.clone());
        ctx.max_in_flight = 1;
        h.queue
            .put(envelope("m1", "s@x.org", &["bob@example.org"], now));
        h.queue
            .put(envelope("m2", "s@x.org", &["bob@example.org"], now));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(Arc::new(ctx), shutdown.clone()));
        eventually("an attempt started", || slow.started.load(Ordering::SeqCst)).await;
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("run returns")
            .expect("no panic");
        assert_eq!(
            h.store.count("bob"),
            1,
            "the attempt in hand finished; no new one"
        );
        let left: Vec<_> = h.queue.state().envelopes.keys().cloned().collect();
        assert_eq!(left.len(), 1, "one message still queued for next start");
    }

    #[tokio::test]
    async fn a_panicking_attempt_does_not_stop_the_agent() {
        struct PanicStore;
        impl crate::backend::StoreBackend for PanicStore {
            fn deliver(
                &self,
                u: &str,
                _: &[u8],
                _: &str,
            ) -> Result<String, postamt_store::StoreError> {
                if u == "boom" {
                    panic!("store not implemented");
                }
                Ok("x".into())
            }
        }
        let h = Harness::new();
        let now = now_unix();
        h.dir.users("boom@example.org", &["boom"]);
        h.dir.users("ok@example.org", &["ok"]);
        let ctx = Arc::new(Context::new(
            h.ctx.config(),
            h.queue.clone(),
            Arc::new(PanicStore),
            h.dir.clone(),
        ));
        h.queue
            .put(envelope("a", "s@x.org", &["boom@example.org"], now));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(ctx, shutdown.clone()));
        h.queue
            .arrive(envelope("b", "s@x.org", &["ok@example.org"], now));
        eventually("the other message delivered", || h.queue.env("b").is_none()).await;
        assert!(h.queue.env("a").is_some());
        shutdown.cancel();
        task.await.unwrap();
    }
}
