//! Login checks shared by every protocol (SMTP AUTH, POP3, IMAP): a cache of
//! verified credentials and growing delays after failures, so that an unknown
//! user and a wrong password look the same from outside.
//!
//! One login: fetch the user's current stored hash (a cheap indexed read);
//! if the cache holds this user's password digest verified against exactly
//! that hash, accept at once; otherwise run argon2 (against a dummy hash for
//! an unknown user, so both cost the same), on tokio's blocking pool. A
//! failure is answered only after the delay earned by the client address and
//! the account (see [`failure_delay`]); the reply never says why.

mod cache;
mod throttle;

pub use throttle::{FAILURE_MEMORY, MAX_TRACKED, failure_delay, ip_key};

use crate::names::{MAX_PASSWORD_LEN, MAX_USER_NAME_LEN, fold, printable};
use crate::{Directory, UserInfo, password};
use cache::{CredentialCache, MAX_CACHED};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use throttle::Throttle;

/// The first failure's delay by default.
pub const DEFAULT_BASE_DELAY: Duration = Duration::from_secs(2);
/// The longest failure delay by default.
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(15);

/// A failed login; deliberately carries no reason.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("authentication failed")]
pub struct LoginFailed;

/// Counts of how logins were decided (for tests and metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuthStats {
    /// Correct logins accepted from the cache, without argon2.
    pub cache_hits: u64,
    /// Logins that ran an argon2 verification (real or dummy).
    pub hash_checks: u64,
}

/// How one check ended.
enum Outcome {
    Ok(UserInfo),
    Bad,
    /// The directory could not be read: not the client's fault, not counted.
    Unavailable,
}

struct Inner {
    dir: Arc<Directory>,
    cache: Mutex<CredentialCache>,
    throttle: Mutex<Throttle>,
    base: Duration,
    cache_hits: AtomicU64,
    hash_checks: AtomicU64,
    hash_gate: HashGate,
}

/// Bounds the argon2 verifications running at once to the number of cores:
/// each one takes ~19 MiB and a core for tens of milliseconds, so running
/// more in parallel only thrashes memory and makes every login slower.
/// Cache hits never wait here.
struct HashGate {
    free: Mutex<usize>,
    freed: std::sync::Condvar,
}

/// One running argon2 verification; frees its slot when dropped.
struct HashSlot<'a>(&'a HashGate);

impl HashGate {
    fn new(slots: usize) -> HashGate {
        HashGate {
            free: Mutex::new(slots.max(1)),
            freed: std::sync::Condvar::new(),
        }
    }

    fn acquire(&self) -> HashSlot<'_> {
        let mut free = lock(&self.free);
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= 1;
        HashSlot(self)
    }
}

impl Drop for HashSlot<'_> {
    fn drop(&mut self) {
        *lock(&self.0.free) += 1;
        self.0.freed.notify_one();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded maps stay consistent across a panic (each update is one
    // map operation), so a poisoned lock is taken over.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    /// The blocking part of a login: read, cache, argon2.
    fn check(&self, user: &str, password: &str) -> Outcome {
        let user_lc = fold(user);
        let record = match self.dir.user_record(user) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "login: directory unavailable");
                return Outcome::Unavailable;
            }
        };
        let Some(record) = record else {
            self.hash_checks.fetch_add(1, Ordering::Relaxed);
            let _slot = self.hash_gate.acquire();
            password::verify_dummy(password);
            lock(&self.cache).remove(&user_lc);
            return Outcome::Bad;
        };
        let now = Instant::now();
        let tag = {
            let mut cache = lock(&self.cache);
            let tag = cache.tag(&user_lc, password);
            if cache.hit(&user_lc, &record.password_hash, &tag, now) {
                self.cache_hits.fetch_add(1, Ordering::Relaxed);
                return Outcome::Ok(record.info);
            }
            tag
        };
        self.hash_checks.fetch_add(1, Ordering::Relaxed);
        let verified = {
            let _slot = self.hash_gate.acquire();
            password::verify(password, &record.password_hash)
        };
        if verified {
            lock(&self.cache).insert(&user_lc, record.password_hash, tag, Instant::now());
            Outcome::Ok(record.info)
        } else {
            Outcome::Bad
        }
    }
}

/// Verifies logins against the directory. Share one per server (behind an
/// `Arc`): the cache and the failure counters live in it.
pub struct Authenticator {
    inner: Arc<Inner>,
}

impl Authenticator {
    /// Delays of 2 s after a first failure, doubling up to 15 s.
    pub fn new(dir: Arc<Directory>) -> Self {
        Self::with_delays(dir, DEFAULT_BASE_DELAY, DEFAULT_MAX_DELAY)
    }

    /// Chooses the first failure's delay (`base`) and the cap (`max`).
    pub fn with_delays(dir: Arc<Directory>, base: Duration, max: Duration) -> Self {
        Authenticator {
            inner: Arc::new(Inner {
                dir,
                cache: Mutex::new(CredentialCache::new(MAX_CACHED)),
                throttle: Mutex::new(Throttle::new(base, max, MAX_TRACKED)),
                base,
                cache_hits: AtomicU64::new(0),
                hash_checks: AtomicU64::new(0),
                hash_gate: HashGate::new(
                    std::thread::available_parallelism().map_or(1, |n| n.get()),
                ),
            }),
        }
    }

    /// Checks `user`/`password` from `ip`. On failure, returns only after the
    /// delay this IP and account have earned (at least the base delay, 2 s by
    /// default), the same for unknown users and wrong passwords.
    pub async fn login(
        &self,
        user: &str,
        password: &str,
        ip: IpAddr,
    ) -> Result<UserInfo, LoginFailed> {
        let user_lc = fold(user);
        // No such user can exist, and nothing this long is worth hashing;
        // the answer and the delay stay the same.
        let plausible = !user.is_empty()
            && user.len() <= MAX_USER_NAME_LEN
            && password.len() <= MAX_PASSWORD_LEN;
        let outcome = if plausible {
            let inner = Arc::clone(&self.inner);
            let (u, p) = (user.to_owned(), password.to_owned());
            match tokio::task::spawn_blocking(move || inner.check(&u, &p)).await {
                Ok(o) => o,
                Err(e) => {
                    tracing::error!(error = %e, "login check task failed");
                    Outcome::Unavailable
                }
            }
        } else {
            Outcome::Bad
        };
        let shown = printable(user);
        let delay = match outcome {
            Outcome::Ok(info) => {
                lock(&self.inner.throttle).record_success(&user_lc);
                tracing::info!(user = %info.name, peer = %ip, "login succeeded");
                return Ok(info);
            }
            Outcome::Bad => {
                let account = plausible.then_some(user_lc.as_str());
                let delay = lock(&self.inner.throttle).record_failure(ip, account, Instant::now());
                tracing::info!(
                    user = %shown,
                    peer = %ip,
                    delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    "login failed"
                );
                delay
            }
            Outcome::Unavailable => self.inner.base,
        };
        tokio::time::sleep(delay).await;
        Err(LoginFailed)
    }

    /// How logins were decided so far.
    pub fn stats(&self) -> AuthStats {
        AuthStats {
            cache_hits: self.inner.cache_hits.load(Ordering::Relaxed),
            hash_checks: self.inner.hash_checks.load(Ordering::Relaxed),
        }
    }

    /// Recent failures counted for a client address and for an account.
    pub fn failures(&self, ip: IpAddr, user: &str) -> (u32, u32) {
        lock(&self.inner.throttle).failures(ip, &fold(user), Instant::now())
    }
}

#[cfg(test)]
mod gate_tests {
    use super::HashGate;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn never_more_holders_than_slots() {
        let gate = Arc::new(HashGate::new(2));
        let inside = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (gate, inside, peak) =
                    (Arc::clone(&gate), Arc::clone(&inside), Arc::clone(&peak));
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        let _slot = gate.acquire();
                        let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        std::thread::yield_now();
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(peak.load(Ordering::SeqCst) <= 2);
        assert_eq!(*super::lock(&gate.free), 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn fast(dir: Arc<Directory>) -> Authenticator {
        Authenticator::with_delays(dir, Duration::from_millis(1), Duration::from_millis(4))
    }

    #[tokio::test]
    async fn correct_wrong_and_unknown() {
        let dir = Arc::new(Directory::open_in_memory().expect("open"));
        dir.add_user("Bob", "pw", true).expect("add");
        let auth = fast(dir);
        let info = auth.login("bob", "pw", IP).await.expect("login");
        assert_eq!(info.name, "Bob");
        assert!(info.admin);
        assert_eq!(auth.login("bob", "nope", IP).await, Err(LoginFailed));
        assert_eq!(auth.login("nobody", "pw", IP).await, Err(LoginFailed));
        assert_eq!(auth.login("", "", IP).await, Err(LoginFailed));
        assert_eq!(
            auth.login(&"x".repeat(5000), "pw", IP).await,
            Err(LoginFailed)
        );
        // Unknown user and wrong password both did an argon2 check.
        assert_eq!(auth.stats().hash_checks, 3);
    }

    #[tokio::test]
    async fn cache_hit_then_invalidated_by_another_handle() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("directory.db");
        let server = Arc::new(Directory::open(&path).expect("open server"));
        let cli = Directory::open(&path).expect("open cli");
        cli.add_user("bob", "one", false).expect("add");
        let auth = fast(server);

        auth.login("bob", "one", IP).await.expect("first login");
        assert_eq!(
            auth.stats(),
            AuthStats {
                cache_hits: 0,
                hash_checks: 1
            }
        );
        auth.login("BOB", "one", IP).await.expect("cached login");
        assert_eq!(
            auth.stats(),
            AuthStats {
                cache_hits: 1,
                hash_checks: 1
            }
        );
        // A wrong password is never accepted from the cache.
        assert_eq!(auth.login("bob", "two", IP).await, Err(LoginFailed));
        assert_eq!(
            auth.stats(),
            AuthStats {
                cache_hits: 1,
                hash_checks: 2
            }
        );

        // The CLI, in "another process", changes the password.
        cli.set_password("bob", "two").expect("passwd");
        assert_eq!(auth.login("bob", "one", IP).await, Err(LoginFailed));
        assert_eq!(
            auth.stats().cache_hits,
            1,
            "old password must miss the cache"
        );
        auth.login("bob", "two", IP).await.expect("new password");
        auth.login("bob", "two", IP)
            .await
            .expect("new password cached");
        assert_eq!(
            auth.stats(),
            AuthStats {
                cache_hits: 2,
                hash_checks: 4
            }
        );

        // Deleting the user ends cached logins too.
        cli.delete_user("bob").expect("delete");
        assert_eq!(auth.login("bob", "two", IP).await, Err(LoginFailed));
    }

    #[tokio::test]
    async fn failures_are_counted_and_success_resets_the_account() {
        let dir = Arc::new(Directory::open_in_memory().expect("open"));
        dir.add_user("bob", "pw", false).expect("add");
        let auth = fast(dir);
        let other: IpAddr = Ipv4Addr::new(192, 0, 2, 9).into();
        for _ in 0..3 {
            assert!(auth.login("bob", "bad", IP).await.is_err());
        }
        assert!(auth.login("ghost", "bad", IP).await.is_err());
        assert_eq!(auth.failures(IP, "bob"), (4, 3));
        assert_eq!(auth.failures(IP, "ghost"), (4, 1));
        assert_eq!(auth.failures(other, "bob"), (0, 3));
        auth.login("bob", "pw", other).await.expect("login");
        assert_eq!(auth.failures(IP, "bob"), (4, 0));
    }
}
