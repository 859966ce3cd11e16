//! Per-user forwards: a user's mail goes on to one or more addresses,
//! optionally keeping a copy in the user's own mailbox.
//!
//! A forward belongs to an existing user and disappears with the account.
//! Targets are full addresses (checked and normalised like list members),
//! kept in the given order, duplicates (any case) dropped. How a forward
//! takes effect when mail arrives is [`Directory::classify`]'s job (see the
//! `resolve` module).

use crate::db::{db_err, now_unix, write_tx};
use crate::names::{fold, normalize_address, printable};
use crate::users::canonical_name;
use crate::{Directory, DirectoryError};
use rusqlite::{Connection, OptionalExtension, params};

/// Most addresses one forward may have.
pub const MAX_FORWARD_TARGETS: usize = 100;

/// A user's forward.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forward {
    /// The user's stored name.
    pub user: String,
    /// Full addresses, in order.
    pub addresses: Vec<String>,
    /// Whether the user's mailbox keeps a copy.
    pub keep_copy: bool,
    /// Unix seconds (when it was last set).
    pub created_at: i64,
}

/// The forward of the user keyed `user_lc`, on an open connection.
pub(crate) fn lookup(conn: &Connection, user_lc: &str) -> rusqlite::Result<Option<Forward>> {
    // Two primary-key lookups, not a join: this runs for every delivery
    // (nearly always finding nothing), and SQLite re-plans a join on a
    // bound key each time the key changes (STAT4 builds).
    let head: Option<(bool, i64)> = conn
        .prepare_cached("SELECT keep_copy, created_at FROM forwards WHERE user_lc = ?1")?
        .query_row([user_lc], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((keep_copy, created_at)) = head else {
        return Ok(None);
    };
    let Some(user) = stored_name(conn, user_lc)? else {
        return Ok(None);
    };
    let mut stmt = conn.prepare_cached(
        "SELECT address FROM forward_targets WHERE user_lc = ?1 ORDER BY position",
    )?;
    let addresses = stmt
        .query_map([user_lc], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(Some(Forward {
        user,
        addresses,
        keep_copy,
        created_at,
    }))
}

/// The stored name of the user keyed `user_lc`, if the account exists.
pub(crate) fn stored_name(conn: &Connection, user_lc: &str) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT name FROM users WHERE name_lc = ?1")?
        .query_row([user_lc], |r| r.get(0))
        .optional()
}

impl Directory {
    /// Sets (or replaces) a user's forward. Errors:
    /// [`DirectoryError::NoSuchUser`], [`DirectoryError::InvalidAddress`]
    /// (no address, or a bad one), [`DirectoryError::TooMany`] past
    /// [`MAX_FORWARD_TARGETS`].
    pub fn set_forward(
        &self,
        user: &str,
        addresses: &[String],
        keep_copy: bool,
    ) -> Result<Forward, DirectoryError> {
        if addresses.is_empty() {
            return Err(DirectoryError::InvalidAddress(
                String::new(),
                "a forward needs at least one address".into(),
            ));
        }
        let mut unique: Vec<String> = Vec::with_capacity(addresses.len());
        for a in addresses {
            let a = normalize_address(a)?;
            if !unique.iter().any(|u| u.eq_ignore_ascii_case(&a)) {
                unique.push(a);
            }
        }
        if unique.len() > MAX_FORWARD_TARGETS {
            return Err(DirectoryError::TooMany(format!(
                "a forward may have at most {MAX_FORWARD_TARGETS} addresses"
            )));
        }
        let key = fold(user);
        let mut conn = self.lock();
        let tx = write_tx(&mut conn)?;
        let stored = canonical_name(&tx, &key)
            .map_err(db_err)?
            .ok_or_else(|| DirectoryError::NoSuchUser(printable(user)))?;
        let now = now_unix();
        tx.execute("DELETE FROM forwards WHERE user_lc = ?1", [&key])
            .map_err(db_err)?;
        tx.execute(
            "INSERT INTO forwards (user_lc, keep_copy, created_at) VALUES (?1, ?2, ?3)",
            params![key, keep_copy, now],
        )
        .map_err(db_err)?;
        {
            let mut ins = tx
                .prepare_cached(
                    "INSERT INTO forward_targets (user_lc, position, address) VALUES (?1, ?2, ?3)",
                )
                .map_err(db_err)?;
            for (i, a) in unique.iter().enumerate() {
                ins.execute(params![key, i64::try_from(i).unwrap_or(i64::MAX), a])
                    .map_err(db_err)?;
            }
        }
        tx.commit().map_err(db_err)?;
        tracing::info!(user = %stored, targets = ?unique, keep_copy, "forward set");
        Ok(Forward {
            user: stored,
            addresses: unique,
            keep_copy,
            created_at: now,
        })
    }

    /// A user's forward, if set. [`DirectoryError::NoSuchUser`] for an
    /// unknown user.
    pub fn get_forward(&self, user: &str) -> Result<Option<Forward>, DirectoryError> {
        let key = fold(user);
        let conn = self.lock();
        if canonical_name(&conn, &key).map_err(db_err)?.is_none() {
            return Err(DirectoryError::NoSuchUser(printable(user)));
        }
        lookup(&conn, &key).map_err(db_err)
    }

    /// Removes a user's forward: mail goes to the mailbox again.
    pub fn clear_forward(&self, user: &str) -> Result<(), DirectoryError> {
        let key = fold(user);
        let mut conn = self.lock();
        let tx = write_tx(&mut conn)?;
        let stored = canonical_name(&tx, &key)
            .map_err(db_err)?
            .ok_or_else(|| DirectoryError::NoSuchUser(printable(user)))?;
        let n = tx
            .execute("DELETE FROM forwards WHERE user_lc = ?1", [&key])
            .map_err(db_err)?;
        if n == 0 {
            return Err(DirectoryError::NoForward(stored));
        }
        tx.commit().map_err(db_err)?;
        tracing::info!(user = %stored, "forward removed");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|s| (*s).to_owned()).collect()
    }

    fn dir() -> Directory {
        let d = Directory::open_in_memory().expect("open");
        d.add_user("Alice", "pw", false).expect("add");
        d
    }

    #[test]
    fn set_get_replace_clear() {
        let d = dir();
        assert_eq!(d.get_forward("alice").expect("get"), None);
        let f = d
            .set_forward(
                "ALICE",
                &v(&["a@Remote.ORG", "b@other.net", "A@remote.org"]),
                false,
            )
            .expect("set");
        assert_eq!(f.user, "Alice");
        assert_eq!(f.addresses, ["a@remote.org", "b@other.net"]);
        assert!(!f.keep_copy);
        assert_eq!(d.get_forward("alice").expect("get"), Some(f));

        let f = d
            .set_forward("alice", &v(&["c@remote.org"]), true)
            .expect("replace");
        assert_eq!(f.addresses, ["c@remote.org"]);
        assert!(f.keep_copy);
        assert_eq!(d.get_forward("Alice").expect("get"), Some(f));

        d.clear_forward("alice").expect("clear");
        assert_eq!(d.get_forward("alice").expect("get"), None);
        assert!(matches!(
            d.clear_forward("alice"),
            Err(DirectoryError::NoForward(u)) if u == "Alice"
        ));
    }

    #[test]
    fn bad_input_is_refused() {
        let d = dir();
        assert!(matches!(
            d.set_forward("ghost", &v(&["a@b.org"]), false),
            Err(DirectoryError::NoSuchUser(_))
        ));
        assert!(matches!(
            d.get_forward("ghost"),
            Err(DirectoryError::NoSuchUser(_))
        ));
        assert!(matches!(
            d.clear_forward("ghost"),
            Err(DirectoryError::NoSuchUser(_))
        ));
        assert!(matches!(
            d.set_forward("alice", &[], false),
            Err(DirectoryError::InvalidAddress(..))
        ));
        assert!(matches!(
            d.set_forward("alice", &v(&["a@b.org", "bob"]), false),
            Err(DirectoryError::InvalidAddress(..))
        ));
        assert!(matches!(
            d.set_forward("alice", &v(&["a@b.org\r\nRCPT TO:<x@y.org>"]), false),
            Err(DirectoryError::InvalidAddress(..))
        ));
        let many: Vec<String> = (0..=MAX_FORWARD_TARGETS)
            .map(|i| format!("u{i}@x.org"))
            .collect();
        assert!(matches!(
            d.set_forward("alice", &many, false),
            Err(DirectoryError::TooMany(_))
        ));
        assert_eq!(d.get_forward("alice").expect("get"), None);
    }

    #[test]
    fn deleting_the_user_deletes_the_forward() {
        let d = dir();
        d.set_forward("alice", &v(&["a@b.org"]), true).expect("set");
        d.delete_user("alice").expect("delete");
        d.add_user("alice", "pw", false).expect("re-add");
        assert_eq!(d.get_forward("alice").expect("get"), None);
    }
}
