//! Failure counters per client address and per account, and the growing
//! delay they earn. Pure state: the caller passes the current instant, so
//! tests need no clock.
//!
//! The delay for `n` recent failures is `base * 2^(n-1)`, capped at `max`
//! (2 s, 4 s, 8 s, 15 s, 15 s ... by default). A counter is forgotten after
//! [`FAILURE_MEMORY`] without a new failure. Each map holds at most a fixed
//! number of keys; when full, expired counters go first, then the oldest
//! tenth, so a flood of new names or addresses costs bounded memory and
//! amortised constant time.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

/// How long a counter is remembered after its last failure.
pub const FAILURE_MEMORY: Duration = Duration::from_secs(15 * 60);
/// Most counters kept per map (client addresses; accounts).
pub const MAX_TRACKED: usize = 100_000;

/// The delay earned by `failures` recent failures: none for 0, then `base`
/// doubling per failure, never more than `max`.
pub fn failure_delay(failures: u32, base: Duration, max: Duration) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let factor = 1u32.checked_shl(failures - 1).unwrap_or(u32::MAX);
    base.checked_mul(factor).unwrap_or(max).min(max)
}

/// The key a client address is counted under: IPv4 as is (also when
/// IPv4-mapped), IPv6 by its /64 network, since one host usually has a
/// whole /64 to pick addresses from.
pub fn ip_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[derive(Clone, Copy, Debug)]
struct Counter {
    failures: u32,
    last: Instant,
}

/// Bounded map of failure counters.
#[derive(Debug)]
pub struct Counters<K> {
    map: HashMap<K, Counter>,
    cap: usize,
}

impl<K: Eq + Hash + Clone> Counters<K> {
    pub fn new(cap: usize) -> Self {
        Counters {
            map: HashMap::new(),
            cap: cap.max(1),
        }
    }

    /// Recent failures of `key` at `now`.
    pub fn failures(&self, key: &K, now: Instant) -> u32 {
        match self.map.get(key) {
            Some(c) if now.saturating_duration_since(c.last) <= FAILURE_MEMORY => c.failures,
            _ => 0,
        }
    }

    /// Counts one more failure; returns the recent failures including it.
    pub fn record_failure(&mut self, key: &K, now: Instant) -> u32 {
        if !self.map.contains_key(key) && self.map.len() >= self.cap {
            self.make_room(now);
        }
        let c = self.map.entry(key.clone()).or_insert(Counter {
            failures: 0,
            last: now,
        });
        if now.saturating_duration_since(c.last) > FAILURE_MEMORY {
            c.failures = 0;
        }
        c.failures = c.failures.saturating_add(1);
        c.last = now;
        c.failures
    }

    /// Forgets `key`'s failures.
    pub fn reset(&mut self, key: &K) {
        self.map.remove(key);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    fn make_room(&mut self, now: Instant) {
        self.map
            .retain(|_, c| now.saturating_duration_since(c.last) <= FAILURE_MEMORY);
        if self.map.len() < self.cap {
            return;
        }
        // Drop the oldest tenth (at least one).
        let mut ages: Vec<Instant> = self.map.values().map(|c| c.last).collect();
        let nth = (ages.len() / 10).min(ages.len().saturating_sub(1));
        let (_, cutoff, _) = ages.select_nth_unstable(nth);
        let cutoff = *cutoff;
        self.map.retain(|_, c| c.last > cutoff);
    }
}

/// Both maps and the delay parameters.
#[derive(Debug)]
pub struct Throttle {
    ips: Counters<IpAddr>,
    accounts: Counters<String>,
    base: Duration,
    max: Duration,
}

impl Throttle {
    pub fn new(base: Duration, max: Duration, cap: usize) -> Self {
        Throttle {
            ips: Counters::new(cap),
            accounts: Counters::new(cap),
            base,
            max: max.max(base),
        }
    }

    /// Records a failed login from `ip` for `account` (the folded user name,
    /// if it is worth counting) and returns how long to wait before replying:
    /// the larger of the two counters' delays.
    pub fn record_failure(&mut self, ip: IpAddr, account: Option<&str>, now: Instant) -> Duration {
        let by_ip = self.ips.record_failure(&ip_key(ip), now);
        let by_account = account
            .map(|a| self.accounts.record_failure(&a.to_owned(), now))
            .unwrap_or(0);
        failure_delay(by_ip.max(by_account), self.base, self.max)
    }

    /// A successful login clears the account's counter (not the address's:
    /// one valid account must not buy an address more guesses at others).
    pub fn record_success(&mut self, account: &str) {
        self.accounts.reset(&account.to_owned());
    }

    /// Recent failures of an address and of an account (for tests and metrics).
    pub fn failures(&self, ip: IpAddr, account: &str, now: Instant) -> (u32, u32) {
        (
            self.ips.failures(&ip_key(ip), now),
            self.accounts.failures(&account.to_owned(), now),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn delay_doubles_and_caps() {
        let (base, max) = (2 * S, 15 * S);
        let got: Vec<u64> = (0..8)
            .map(|n| failure_delay(n, base, max).as_secs())
            .collect();
        assert_eq!(got, [0, 2, 4, 8, 15, 15, 15, 15]);
        assert_eq!(failure_delay(u32::MAX, base, max), max);
        assert_eq!(failure_delay(40, base, max), max);
        let ms = Duration::from_millis(1);
        assert_eq!(failure_delay(3, ms, 100 * ms), 4 * ms);
    }

    #[test]
    fn max_of_ip_and_account() {
        let now = Instant::now();
        let mut t = Throttle::new(2 * S, 15 * S, 100);
        let a: IpAddr = Ipv4Addr::new(192, 0, 2, 1).into();
        let b: IpAddr = Ipv4Addr::new(192, 0, 2, 2).into();
        assert_eq!(t.record_failure(a, Some("bob"), now), 2 * S);
        assert_eq!(t.record_failure(a, Some("bob"), now), 4 * S);
        // A new address guessing the same account still pays the account's delay.
        assert_eq!(t.record_failure(b, Some("bob"), now), 8 * S);
        // The first address guessing another account pays the address's delay.
        assert_eq!(t.record_failure(a, Some("carol"), now), 8 * S);
        assert_eq!(t.record_failure(a, Some("carol"), now), 15 * S);
        assert_eq!(t.failures(a, "bob", now), (4, 3));
        // Without an account, only the address counts.
        assert_eq!(t.record_failure(b, None, now), 4 * S);
    }

    #[test]
    fn success_resets_the_account_only() {
        let now = Instant::now();
        let mut t = Throttle::new(2 * S, 15 * S, 100);
        let ip: IpAddr = Ipv4Addr::LOCALHOST.into();
        t.record_failure(ip, Some("bob"), now);
        t.record_failure(ip, Some("bob"), now);
        t.record_success("bob");
        assert_eq!(t.failures(ip, "bob", now), (2, 0));
        assert_eq!(t.record_failure(ip, Some("bob"), now), 8 * S);
    }

    #[test]
    fn counters_decay() {
        let t0 = Instant::now();
        let mut c: Counters<String> = Counters::new(10);
        let k = "x".to_owned();
        assert_eq!(c.record_failure(&k, t0), 1);
        assert_eq!(c.record_failure(&k, t0 + 10 * S), 2);
        // Still remembered just within the window after the last failure.
        assert_eq!(c.failures(&k, t0 + 10 * S + FAILURE_MEMORY), 2);
        let later = t0 + 11 * S + FAILURE_MEMORY;
        assert_eq!(c.failures(&k, later), 0);
        assert_eq!(c.record_failure(&k, later), 1);
    }

    #[test]
    fn maps_are_bounded_and_drop_the_oldest() {
        let t0 = Instant::now();
        let mut c: Counters<u32> = Counters::new(100);
        for i in 0..1000u32 {
            c.record_failure(&i, t0 + Duration::from_millis(u64::from(i)));
            assert!(c.len() <= 100);
        }
        // The newest survive, the oldest are gone.
        let now = t0 + 2 * S;
        assert_eq!(c.failures(&999, now), 1);
        assert_eq!(c.failures(&0, now), 0);
        // When full, expired entries are dropped first (all of them).
        let mut c: Counters<u32> = Counters::new(10);
        for i in 0..10u32 {
            c.record_failure(&i, t0);
        }
        c.record_failure(&5, t0 + S);
        let much_later = t0 + FAILURE_MEMORY + 2 * S;
        c.record_failure(&5000, much_later);
        assert_eq!(c.len(), 1);
        assert_eq!(c.failures(&5000, much_later), 1);
    }

    #[test]
    fn ipv6_counted_per_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(ip_key(a), ip_key(b));
        assert_ne!(ip_key(a), ip_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("ip");
        assert_eq!(ip_key(mapped), IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)));
    }
}
