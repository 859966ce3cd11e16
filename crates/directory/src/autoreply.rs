//! Per-user auto-replies (vacation messages) and the memory of whom each
//! user's auto-reply has answered, so that a sender gets at most one reply
//! per period (RFC 3834 §2).
//!
//! An auto-reply is active from `starts_at` (inclusive; `None`: at once)
//! until `ends_at` (exclusive; `None`: until switched off). Setting a new
//! auto-reply, or switching it off, forgets whom the old one answered, so
//! the new text reaches everyone once. The memory is keyed by the sender
//! address, lowercased; [`Directory::autoreply_claim`] checks and records
//! in one write, so two deliveries at the same moment send one reply.

use crate::content::{normalize_body, validate_subject};
use crate::db::{db_err, now_unix, write_tx};
use crate::names::{fold, printable};
use crate::users::canonical_name;
use crate::{Directory, DirectoryError};
use rusqlite::{Connection, OptionalExtension, params};

/// How long a sender who got an auto-reply gets no other, by default (RFC
/// 3834 suggests days; 7 is the classic vacation's period).
pub const DEFAULT_AUTOREPLY_PERIOD: i64 = 7 * 24 * 60 * 60;

/// Longest sender address remembered, in bytes (longer ones get no reply).
const MAX_SENDER_LEN: usize = 512;

/// What an admin sets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AutoreplyRule {
    /// One line, at most 200 characters.
    pub subject: String,
    /// Plain text, at most 64 KiB; stored with LF line ends.
    pub body: String,
    /// Unix seconds, inclusive; `None` = active at once.
    pub starts_at: Option<i64>,
    /// Unix seconds, exclusive; `None` = until switched off.
    pub ends_at: Option<i64>,
}

/// A user's auto-reply as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Autoreply {
    /// The user's stored name.
    pub user: String,
    pub subject: String,
    /// LF line ends.
    pub body: String,
    pub starts_at: Option<i64>,
    pub ends_at: Option<i64>,
    /// Unix seconds (when it was last set).
    pub created_at: i64,
}

impl Autoreply {
    /// Whether the auto-reply answers mail arriving at `now`.
    pub fn is_active(&self, now: i64) -> bool {
        self.starts_at.is_none_or(|s| s <= now) && self.ends_at.is_none_or(|e| now < e)
    }

    /// Whether its end has passed (it will never answer again).
    pub fn has_ended(&self, now: i64) -> bool {
        self.ends_at.is_some_and(|e| e <= now)
    }
}

fn lookup(conn: &Connection, user_lc: &str) -> rusqlite::Result<Option<Autoreply>> {
    // Primary-key lookups, not a join (see `forwards::lookup`).
    let found = conn
        .prepare_cached(
            "SELECT subject, body, starts_at, ends_at, created_at
             FROM autoreplies WHERE user_lc = ?1",
        )?
        .query_row([user_lc], |r| {
            Ok(Autoreply {
                user: String::new(),
                subject: r.get(0)?,
                body: r.get(1)?,
                starts_at: r.get(2)?,
                ends_at: r.get(3)?,
                created_at: r.get(4)?,
            })
        })
        .optional()?;
    let Some(mut reply) = found else {
        return Ok(None);
    };
    let Some(user) = crate::forwards::stored_name(conn, user_lc)? else {
        return Ok(None);
    };
    reply.user = user;
    Ok(Some(reply))
}

impl Directory {
    /// Sets (or replaces) a user's auto-reply and forgets whom the previous
    /// one answered. Errors: [`DirectoryError::NoSuchUser`],
    /// [`DirectoryError::InvalidText`] (subject with a line break or control
    /// character, too long, empty; body empty, too long, with control
    /// characters), [`DirectoryError::InvalidDates`] (start not before end).
    pub fn set_autoreply(
        &self,
        user: &str,
        rule: &AutoreplyRule,
    ) -> Result<Autoreply, DirectoryError> {
        validate_subject(&rule.subject)?;
        let body = normalize_body(&rule.body)?;
        if let (Some(s), Some(e)) = (rule.starts_at, rule.ends_at)
            && s >= e
        {
            return Err(DirectoryError::InvalidDates(
                "the auto-reply must start before it ends".into(),
            ));
        }
        let key = fold(user);
        let mut conn = self.lock();
        let tx = write_tx(&mut conn)?;
        let stored = canonical_name(&tx, &key)
            .map_err(db_err)?
            .ok_or_else(|| DirectoryError::NoSuchUser(printable(user)))?;
        let now = now_unix();
        tx.execute(
            "INSERT INTO autoreplies (user_lc, subject, body, starts_at, ends_at, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (user_lc) DO UPDATE SET
                subject = excluded.subject, body = excluded.body,
                starts_at = excluded.starts_at, ends_at = excluded.ends_at,
                created_at = excluded.created_at",
            params![key, rule.subject, body, rule.starts_at, rule.ends_at, now],
        )
        .map_err(db_err)?;
        tx.execute("DELETE FROM autoreply_sent WHERE user_lc = ?1", [&key])
            .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        tracing::info!(
            user = %stored, starts_at = ?rule.starts_at, ends_at = ?rule.ends_at,
            "auto-reply set"
        );
        Ok(Autoreply {
            user: stored,
            subject: rule.subject.clone(),
            body,
            starts_at: rule.starts_at,
            ends_at: rule.ends_at,
            created_at: now,
        })
    }

    /// A user's auto-reply, active or not. [`DirectoryError::NoSuchUser`]
    /// for an unknown user.
    pub fn get_autoreply(&self, user: &str) -> Result<Option<Autoreply>, DirectoryError> {
        let key = fold(user);
        let conn = self.lock();
        if canonical_name(&conn, &key).map_err(db_err)?.is_none() {
            return Err(DirectoryError::NoSuchUser(printable(user)));
        }
        lookup(&conn, &key).map_err(db_err)
    }

    /// The user's auto-reply if it answers mail arriving at `now`; `None`
    /// also for an unknown user (the delivery agent's question).
    pub fn active_autoreply(
        &self,
        user: &str,
        now: i64,
    ) -> Result<Option<Autoreply>, DirectoryError> {
        let conn = self.lock();
        Ok(lookup(&conn, &fold(user))
            .map_err(db_err)?
            .filter(|a| a.is_active(now)))
    }

    /// Switches a user's auto-reply off and forgets whom it answered.
    pub fn clear_autoreply(&self, user: &str) -> Result<(), DirectoryError> {
        let key = fold(user);
        let mut conn = self.lock();
        let tx = write_tx(&mut conn)?;
        let stored = canonical_name(&tx, &key)
            .map_err(db_err)?
            .ok_or_else(|| DirectoryError::NoSuchUser(printable(user)))?;
        let n = tx
            .execute("DELETE FROM autoreplies WHERE user_lc = ?1", [&key])
            .map_err(db_err)?;
        if n == 0 {
            return Err(DirectoryError::NoAutoreply(stored));
        }
        tx.execute("DELETE FROM autoreply_sent WHERE user_lc = ?1", [&key])
            .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        tracing::info!(user = %stored, "auto-reply switched off");
        Ok(())
    }

    /// The "one reply per sender per period" decision, atomically: returns
    /// `true` (and records `now`) when `user` has not answered `sender`
    /// within the last `period_secs` seconds, `false` otherwise. Never
    /// `true` for the null sender (an empty address). Does not look at the
    /// auto-reply itself: the caller asks [`Directory::active_autoreply`]
    /// first. Errors: [`DirectoryError::NoSuchUser`],
    /// [`DirectoryError::InvalidAddress`] (a sender with control characters
    /// or longer than 512 bytes), [`DirectoryError::InvalidDates`] (a
    /// negative period).
    pub fn autoreply_claim(
        &self,
        user: &str,
        sender: &str,
        period_secs: i64,
        now: i64,
    ) -> Result<bool, DirectoryError> {
        if sender.is_empty() {
            return Ok(false);
        }
        if sender.len() > MAX_SENDER_LEN || sender.chars().any(|c| c.is_control()) {
            return Err(DirectoryError::InvalidAddress(
                printable(sender),
                "not a sender address an auto-reply can go to".into(),
            ));
        }
        if period_secs < 0 {
            return Err(DirectoryError::InvalidDates(
                "the auto-reply period is negative".into(),
            ));
        }
        let key = fold(user);
        let mut conn = self.lock();
        let tx = write_tx(&mut conn)?;
        if canonical_name(&tx, &key).map_err(db_err)?.is_none() {
            return Err(DirectoryError::NoSuchUser(printable(user)));
        }
        let changed = tx
            .execute(
                "INSERT INTO autoreply_sent (user_lc, sender_lc, last_sent) VALUES (?1, ?2, ?3)
                 ON CONFLICT (user_lc, sender_lc) DO UPDATE SET last_sent = excluded.last_sent
                 WHERE autoreply_sent.last_sent <= ?3 - ?4",
                params![key, fold(sender), now, period_secs],
            )
            .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        Ok(changed == 1)
    }

    /// Forgets auto-reply memory older than `before` (unix seconds); returns
    /// how many entries went. The delivery agent calls it now and then with
    /// `now - period`, so the table stays small.
    pub fn prune_autoreply_sent(&self, before: i64) -> Result<usize, DirectoryError> {
        let mut conn = self.lock();
        let tx = write_tx(&mut conn)?;
        let n = tx
            .execute("DELETE FROM autoreply_sent WHERE last_sent < ?1", [before])
            .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    fn dir() -> Directory {
        let d = Directory::open_in_memory().expect("open");
        d.add_user("Alice", "pw", false).expect("add");
        d
    }

    fn rule(subject: &str, body: &str) -> AutoreplyRule {
        AutoreplyRule {
            subject: subject.into(),
            body: body.into(),
            starts_at: None,
            ends_at: None,
        }
    }

    #[test]
    fn set_get_replace_clear() {
        let d = dir();
        assert_eq!(d.get_autoreply("alice").expect("get"), None);
        let set = d
            .set_autoreply("ALICE", &rule("Away", "Back on Monday.\r\nAlice"))
            .expect("set");
        assert_eq!(set.user, "Alice");
        assert_eq!(set.body, "Back on Monday.\nAlice");
        let got = d.get_autoreply("alice").expect("get").expect("some");
        assert_eq!(got, set);

        let mut r = rule("Still away", "x");
        r.starts_at = Some(100);
        r.ends_at = Some(200);
        d.set_autoreply("alice", &r).expect("replace");
        let got = d.get_autoreply("alice").expect("get").expect("some");
        assert_eq!(got.subject, "Still away");
        assert_eq!((got.starts_at, got.ends_at), (Some(100), Some(200)));

        d.clear_autoreply("Alice").expect("clear");
        assert_eq!(d.get_autoreply("alice").expect("get"), None);
        assert!(matches!(
            d.clear_autoreply("alice"),
            Err(DirectoryError::NoAutoreply(_))
        ));
    }

    #[test]
    fn unknown_user() {
        let d = dir();
        assert!(matches!(
            d.set_autoreply("ghost", &rule("a", "b")),
            Err(DirectoryError::NoSuchUser(_))
        ));
        assert!(matches!(
            d.get_autoreply("ghost"),
            Err(DirectoryError::NoSuchUser(_))
        ));
        assert!(matches!(
            d.clear_autoreply("ghost"),
            Err(DirectoryError::NoSuchUser(_))
        ));
        assert!(matches!(
            d.autoreply_claim("ghost", "x@y.org", DAY, 0),
            Err(DirectoryError::NoSuchUser(_))
        ));
        assert_eq!(d.active_autoreply("ghost", 0).expect("active"), None);
    }

    #[test]
    fn header_injection_and_bad_dates_are_refused() {
        let d = dir();
        for subject in ["Away\r\nBcc: everyone@example.org", "Away\nX: y", "A\u{0}"] {
            assert!(
                matches!(
                    d.set_autoreply("alice", &rule(subject, "body")),
                    Err(DirectoryError::InvalidText("subject", _))
                ),
                "{subject:?}"
            );
        }
        assert!(matches!(
            d.set_autoreply("alice", &rule("ok", "")),
            Err(DirectoryError::InvalidText("body", _))
        ));
        let mut r = rule("ok", "body");
        r.starts_at = Some(200);
        r.ends_at = Some(200);
        assert!(matches!(
            d.set_autoreply("alice", &r),
            Err(DirectoryError::InvalidDates(_))
        ));
        assert_eq!(d.get_autoreply("alice").expect("get"), None);
    }

    #[test]
    fn active_window() {
        let d = dir();
        let mut r = rule("Away", "body");
        r.starts_at = Some(10 * DAY);
        r.ends_at = Some(20 * DAY);
        d.set_autoreply("alice", &r).expect("set");
        assert_eq!(d.active_autoreply("alice", 10 * DAY - 1).expect("a"), None);
        assert!(d.active_autoreply("alice", 10 * DAY).expect("a").is_some());
        assert!(
            d.active_autoreply("alice", 20 * DAY - 1)
                .expect("a")
                .is_some()
        );
        assert_eq!(d.active_autoreply("alice", 20 * DAY).expect("a"), None);
        let a = d.get_autoreply("alice").expect("get").expect("some");
        assert!(a.has_ended(20 * DAY));
        assert!(!a.has_ended(20 * DAY - 1));

        d.set_autoreply("alice", &rule("Away", "open-ended"))
            .expect("set");
        assert!(d.active_autoreply("ALICE", 0).expect("a").is_some());
        assert!(d.active_autoreply("alice", i64::MAX).expect("a").is_some());
    }

    #[test]
    fn claim_once_per_sender_per_period() {
        let d = dir();
        let t0 = 1_000 * DAY;
        assert!(
            d.autoreply_claim("alice", "bob@x.org", 7 * DAY, t0)
                .expect("c")
        );
        // Same sender, any case, within the period: no.
        assert!(
            !d.autoreply_claim("alice", "bob@x.org", 7 * DAY, t0 + 1)
                .expect("c")
        );
        assert!(
            !d.autoreply_claim("Alice", "BOB@X.ORG", 7 * DAY, t0 + 7 * DAY - 1)
                .expect("c")
        );
        // Another sender: yes.
        assert!(
            d.autoreply_claim("alice", "carol@x.org", 7 * DAY, t0 + 1)
                .expect("c")
        );
        // After the period: yes again, and the period restarts from then.
        assert!(
            d.autoreply_claim("alice", "bob@x.org", 7 * DAY, t0 + 7 * DAY)
                .expect("c")
        );
        assert!(
            !d.autoreply_claim("alice", "bob@x.org", 7 * DAY, t0 + 8 * DAY)
                .expect("c")
        );
        // Never to the null sender.
        assert!(!d.autoreply_claim("alice", "", 7 * DAY, t0).expect("c"));
        assert!(matches!(
            d.autoreply_claim("alice", "a\r\nb@x.org", 7 * DAY, t0),
            Err(DirectoryError::InvalidAddress(..))
        ));
        assert!(matches!(
            d.autoreply_claim("alice", "b@x.org", -1, t0),
            Err(DirectoryError::InvalidDates(_))
        ));
    }

    #[test]
    fn a_new_autoreply_forgets_whom_the_old_one_answered() {
        let d = dir();
        d.set_autoreply("alice", &rule("Away", "one")).expect("set");
        assert!(
            d.autoreply_claim("alice", "bob@x.org", DAY, 100)
                .expect("c")
        );
        assert!(
            !d.autoreply_claim("alice", "bob@x.org", DAY, 101)
                .expect("c")
        );
        d.set_autoreply("alice", &rule("Away", "two")).expect("set");
        assert!(
            d.autoreply_claim("alice", "bob@x.org", DAY, 102)
                .expect("c")
        );
        d.clear_autoreply("alice").expect("clear");
        assert!(
            d.autoreply_claim("alice", "bob@x.org", DAY, 103)
                .expect("c")
        );
    }

    #[test]
    fn prune_forgets_old_entries_only() {
        let d = dir();
        assert!(
            d.autoreply_claim("alice", "old@x.org", DAY, 100)
                .expect("c")
        );
        assert!(
            d.autoreply_claim("alice", "new@x.org", DAY, 500)
                .expect("c")
        );
        assert_eq!(d.prune_autoreply_sent(200).expect("prune"), 1);
        assert!(
            d.autoreply_claim("alice", "old@x.org", DAY, 600)
                .expect("c")
        );
        assert!(
            !d.autoreply_claim("alice", "new@x.org", DAY, 600)
                .expect("c")
        );
    }

    #[test]
    fn deleting_the_user_deletes_the_autoreply_and_its_memory() {
        let d = dir();
        d.set_autoreply("alice", &rule("Away", "x")).expect("set");
        assert!(
            d.autoreply_claim("alice", "bob@x.org", DAY, 100)
                .expect("c")
        );
        d.delete_user("alice").expect("delete");
        d.add_user("alice", "pw", false).expect("re-add");
        assert_eq!(d.get_autoreply("alice").expect("get"), None);
        assert!(
            d.autoreply_claim("alice", "bob@x.org", DAY, 101)
                .expect("c")
        );
    }
}
