//! User accounts: create, delete, change password, list, look up, verify.
//!
//! Names are unique case-insensitively: stored as given, keyed by their
//! lowercase form. Password hashing happens before the database lock is
//! taken, so a slow hash never blocks other directory calls.

use crate::db::{db_err, is_constraint_violation, now_unix, write_tx};
use crate::names::{fold, printable, validate_user_name};
use crate::namespace::check_not_a_list;
use crate::{Directory, DirectoryError, UserInfo, password};
use rusqlite::{Connection, OptionalExtension, Row, params};

/// A user's record including the stored hash (crate-internal only).
#[derive(Clone, Debug)]
pub(crate) struct UserRecord {
    pub info: UserInfo,
    pub password_hash: String,
}

fn info_from_row(r: &Row<'_>) -> rusqlite::Result<UserInfo> {
    Ok(UserInfo {
        name: r.get("name")?,
        admin: r.get("admin")?,
        created_at: r.get("created_at")?,
    })
}

/// Looks up a user by name, case-insensitively, on an open connection.
pub(crate) fn lookup(conn: &Connection, name: &str) -> rusqlite::Result<Option<UserRecord>> {
    conn.prepare_cached(
        "SELECT name, admin, created_at, password_hash FROM users WHERE name_lc = ?1",
    )?
    .query_row([fold(name)], |r| {
        Ok(UserRecord {
            info: info_from_row(r)?,
            password_hash: r.get("password_hash")?,
        })
    })
    .optional()
}

/// The canonical (stored) name of a user, if one exists.
pub(crate) fn canonical_name(conn: &Connection, name: &str) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT name FROM users WHERE name_lc = ?1")?
        .query_row([fold(name)], |r| r.get(0))
        .optional()
}

/// The stored names of every admin account, sorted.
pub(crate) fn admin_names(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt =
        conn.prepare_cached("SELECT name FROM users WHERE admin != 0 ORDER BY name_lc")?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    rows.collect()
}

impl Directory {
    /// Creates a user. Errors: [`DirectoryError::InvalidUserName`],
    /// [`DirectoryError::UserExists`] (any case), [`DirectoryError::NameTaken`]
    /// when a mailing list owns the name (`team`, `team-request`, ...),
    /// [`DirectoryError::Hash`] for an empty or over-long password.
    pub fn add_user(&self, name: &str, password: &str, admin: bool) -> Result<(), DirectoryError> {
        validate_user_name(name)?;
        // Cheap existence check first, so a duplicate does not cost a hash;
        // the primary key still decides a race.
        if self.get_user(name)?.is_some() {
            return Err(DirectoryError::UserExists(name.to_owned()));
        }
        check_not_a_list(&self.lock(), name, name)?;
        let hash = password::hash_password(password)?;
        let mut conn = self.lock();
        let tx = write_tx(&mut conn)?;
        // Again under the write lock: a list may have appeared meanwhile.
        check_not_a_list(&tx, name, name)?;
        let inserted = tx.execute(
            "INSERT INTO users (name_lc, name, password_hash, admin, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![fold(name), name, hash, admin, now_unix()],
        );
        match inserted {
            Ok(_) => {}
            Err(e) if is_constraint_violation(&e) => {
                return Err(DirectoryError::UserExists(name.to_owned()));
            }
            Err(e) => return Err(db_err(e)),
        }
        tx.commit().map_err(db_err)?;
        tracing::info!(user = name, admin, "user added");
        Ok(())
    }

    /// Deletes a user's account, with its forward, auto-reply and auto-reply
    /// memory. Mail stays on disk; aliases and list memberships naming the
    /// user stay too (they then resolve as plain addresses).
    pub fn delete_user(&self, name: &str) -> Result<(), DirectoryError> {
        let mut conn = self.lock();
        let tx = write_tx(&mut conn)?;
        let n = tx
            .execute("DELETE FROM users WHERE name_lc = ?1", [fold(name)])
            .map_err(db_err)?;
        if n == 0 {
            return Err(DirectoryError::NoSuchUser(printable(name)));
        }
        tx.commit().map_err(db_err)?;
        tracing::info!(user = name, "user deleted");
        Ok(())
    }

    /// Replaces a user's password.
    pub fn set_password(&self, name: &str, password: &str) -> Result<(), DirectoryError> {
        if self.get_user(name)?.is_none() {
            return Err(DirectoryError::NoSuchUser(printable(name)));
        }
        let hash = password::hash_password(password)?;
        let mut conn = self.lock();
        let tx = write_tx(&mut conn)?;
        let n = tx
            .execute(
                "UPDATE users SET password_hash = ?2 WHERE name_lc = ?1",
                params![fold(name), hash],
            )
            .map_err(db_err)?;
        if n == 0 {
            // Deleted between the check and the update.
            return Err(DirectoryError::NoSuchUser(printable(name)));
        }
        tx.commit().map_err(db_err)?;
        tracing::info!(user = name, "password changed");
        Ok(())
    }

    /// Sets or clears a user's admin flag.
    pub fn set_admin(&self, name: &str, admin: bool) -> Result<(), DirectoryError> {
        let mut conn = self.lock();
        let tx = write_tx(&mut conn)?;
        let n = tx
            .execute(
                "UPDATE users SET admin = ?2 WHERE name_lc = ?1",
                params![fold(name), admin],
            )
            .map_err(db_err)?;
        if n == 0 {
            return Err(DirectoryError::NoSuchUser(printable(name)));
        }
        tx.commit().map_err(db_err)?;
        tracing::info!(user = name, admin, "admin flag changed");
        Ok(())
    }

    /// All users, ordered by name (case-insensitively).
    pub fn list_users(&self) -> Result<Vec<UserInfo>, DirectoryError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached("SELECT name, admin, created_at FROM users ORDER BY name_lc")
            .map_err(db_err)?;
        let rows = stmt.query_map([], info_from_row).map_err(db_err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
    }

    /// Case-insensitive lookup.
    pub fn get_user(&self, name: &str) -> Result<Option<UserInfo>, DirectoryError> {
        let conn = self.lock();
        Ok(lookup(&conn, name).map_err(db_err)?.map(|r| r.info))
    }

    /// The user and their current stored hash (read without hashing anything).
    pub(crate) fn user_record(&self, name: &str) -> Result<Option<UserRecord>, DirectoryError> {
        let conn = self.lock();
        lookup(&conn, name).map_err(db_err)
    }

    /// Verifies a password (argon2id). `Ok(None)` for unknown user or wrong
    /// password alike; costs the same hash work in both cases. Blocking: from
    /// async code, call it on `spawn_blocking` (or use [`crate::auth::Authenticator`]).
    pub fn verify_password(
        &self,
        name: &str,
        password: &str,
    ) -> Result<Option<UserInfo>, DirectoryError> {
        // The lock is released before hashing.
        let record = self.user_record(name)?;
        Ok(match record {
            Some(r) if password::verify(password, &r.password_hash) => Some(r.info),
            Some(_) => None,
            None => {
                password::verify_dummy(password);
                None
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::{Directory, DirectoryError};

    fn dir() -> Directory {
        Directory::open_in_memory().expect("open")
    }

    #[test]
    fn crud() {
        let d = dir();
        assert!(d.list_users().expect("list").is_empty());
        d.add_user("Bob", "pw1", false).expect("add bob");
        d.add_user("alice", "pw2", true).expect("add alice");
        let users = d.list_users().expect("list");
        let names: Vec<_> = users.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["alice", "Bob"]);
        assert!(users[0].admin);
        assert!(!users[1].admin);
        assert!(users[0].created_at > 1_600_000_000);

        let bob = d.get_user("bob").expect("get").expect("bob exists");
        assert_eq!(bob.name, "Bob", "stored as given");
        assert_eq!(d.get_user("BOB").expect("get"), Some(bob));
        assert_eq!(d.get_user("carol").expect("get"), None);

        d.set_admin("BOB", true).expect("set admin");
        assert!(d.get_user("bob").expect("get").expect("bob").admin);

        d.delete_user("BOB").expect("delete");
        assert_eq!(d.get_user("bob").expect("get"), None);
        assert!(matches!(
            d.delete_user("bob"),
            Err(DirectoryError::NoSuchUser(_))
        ));
        assert_eq!(d.list_users().expect("list").len(), 1);
    }

    #[test]
    fn duplicate_user_any_case() {
        let d = dir();
        d.add_user("bob", "pw", false).expect("add");
        assert!(matches!(
            d.add_user("bob", "x", false),
            Err(DirectoryError::UserExists(_))
        ));
        assert!(matches!(
            d.add_user("BoB", "x", false),
            Err(DirectoryError::UserExists(_))
        ));
        // The original password is untouched.
        assert!(d.verify_password("bob", "pw").expect("verify").is_some());
    }

    #[test]
    fn invalid_names_are_refused() {
        let d = dir();
        let long = "a".repeat(65);
        for n in ["../x", "a/b", ".x", "", long.as_str(), "a\0b", "-x", "a..b"] {
            assert!(
                matches!(
                    d.add_user(n, "pw", false),
                    Err(DirectoryError::InvalidUserName(_))
                ),
                "{n:?}"
            );
        }
        assert!(d.list_users().expect("list").is_empty());
    }

    #[test]
    fn passwords() {
        let d = dir();
        d.add_user("bob", "right", false).expect("add");
        let ok = d.verify_password("BOB", "right").expect("verify");
        assert_eq!(ok.map(|u| u.name), Some("bob".to_owned()));
        assert_eq!(d.verify_password("bob", "wrong").expect("verify"), None);
        assert_eq!(d.verify_password("bob", "Right").expect("verify"), None);
        assert_eq!(d.verify_password("nobody", "right").expect("verify"), None);
        assert_eq!(d.verify_password("", "").expect("verify"), None);

        d.set_password("Bob", "new").expect("set");
        assert_eq!(d.verify_password("bob", "right").expect("verify"), None);
        assert!(d.verify_password("bob", "new").expect("verify").is_some());
        assert!(matches!(
            d.set_password("nobody", "x"),
            Err(DirectoryError::NoSuchUser(_))
        ));
        assert!(matches!(
            d.set_password("bob", ""),
            Err(DirectoryError::Hash(_))
        ));
        assert!(matches!(
            d.add_user("carol", "", false),
            Err(DirectoryError::Hash(_))
        ));
    }

    #[test]
    fn hashes_are_argon2id_phc() {
        let d = dir();
        d.add_user("bob", "pw", false).expect("add");
        let r = d.user_record("bob").expect("record").expect("bob");
        assert!(r.password_hash.starts_with("$argon2id$v=19$"));
        assert!(!r.password_hash.contains("pw$"));
    }
}
