//! Pending list actions waiting for a reply: subscription and
//! unsubscription confirmations, and posts held for moderation.
//!
//! Each entry has a random token ([`TOKEN_LEN`] characters of lowercase
//! letters and digits without look-alikes, about 100 bits), safe in a URL, a
//! `Subject:` line and an address local part, and compared
//! case-insensitively (mail clients and people may change case). A token is
//! single-use: [`Directory::take_pending`] removes the entry whether it is
//! still valid or has expired. [`Directory::expire_pending`] removes every
//! expired entry and returns them, so that the caller can discard the held
//! posts they name.
//!
//! For a held post, `payload` is the spool queue id of the held message.

use crate::content::validate_payload;
use crate::db::{db_err, is_constraint_violation, write_tx};
use crate::names::{fold, normalize_address, printable};
use crate::namespace::list_name;
use crate::{Directory, DirectoryError};
use rusqlite::{Connection, Row, params};
use std::fmt;
use std::str::FromStr;

/// Length of a token, in characters.
pub const TOKEN_LEN: usize = 20;
/// Most pending entries one list may have at a time (bounds what a flood of
/// subscription requests or posts can store).
pub const MAX_PENDING_PER_LIST: u64 = 10_000;

/// The token alphabet: 32 symbols (so a random byte maps without bias),
/// lowercase, without `0/o`, `1/l` look-alikes.
const TOKEN_ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";

/// What a pending entry waits to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PendingAction {
    Subscribe,
    Unsubscribe,
    /// A post held for the owner's approval.
    Post,
}

impl PendingAction {
    pub fn as_str(self) -> &'static str {
        match self {
            PendingAction::Subscribe => "subscribe",
            PendingAction::Unsubscribe => "unsubscribe",
            PendingAction::Post => "post",
        }
    }
}

impl fmt::Display for PendingAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PendingAction {
    type Err = String;
    fn from_str(s: &str) -> Result<PendingAction, String> {
        match s {
            "subscribe" => Ok(PendingAction::Subscribe),
            "unsubscribe" => Ok(PendingAction::Unsubscribe),
            "post" => Ok(PendingAction::Post),
            _ => Err(format!("unknown pending action `{}`", printable(s))),
        }
    }
}

/// One pending entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    pub token: String,
    /// The list's stored name.
    pub list: String,
    /// Who asked to (un)subscribe, or who posted.
    pub address: String,
    pub action: PendingAction,
    /// For [`PendingAction::Post`]: the held message's queue id.
    pub payload: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; the entry is void from this moment on.
    pub expires_at: i64,
}

impl Pending {
    pub fn is_expired(&self, now: i64) -> bool {
        now >= self.expires_at
    }
}

/// Whether `s` has the shape of a token (any case); a cheap filter before
/// a database lookup, e.g. for a word found in a reply's subject.
pub fn looks_like_token(s: &str) -> bool {
    s.len() == TOKEN_LEN
        && s.bytes()
            .all(|b| TOKEN_ALPHABET.contains(&b.to_ascii_lowercase()))
}

/// A fresh random token.
fn new_token() -> String {
    let bytes: [u8; TOKEN_LEN] = rand::random();
    bytes
        .iter()
        .map(|b| char::from(TOKEN_ALPHABET[usize::from(b & 31)]))
        .collect()
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<Pending> {
    let action: String = r.get("action")?;
    Ok(Pending {
        token: r.get("token")?,
        list: r.get("list")?,
        address: r.get("address")?,
        action: action.parse().map_err(|e: String| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
        })?,
        payload: r.get("payload")?,
        created_at: r.get("created_at")?,
        expires_at: r.get("expires_at")?,
    })
}

/// The pending entries matching `condition` (on `p`, the pending table,
/// with one parameter `?1`), oldest first.
pub(crate) fn pending_where(
    conn: &Connection,
    condition: &str,
    param: &dyn rusqlite::ToSql,
) -> rusqlite::Result<Vec<Pending>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT p.token, l.name AS list, p.address, p.action, p.payload, p.created_at, p.expires_at
         FROM list_pending p JOIN lists l ON l.name_lc = p.list_lc
         WHERE {condition} ORDER BY p.created_at, p.token"
    ))?;
    let rows = stmt.query_map([param], from_row)?;
    rows.collect()
}

impl Directory {
    /// Records a pending action for `list` that expires `ttl_secs` after
    /// `now`, and returns it with its new token. `address` must be a full
    /// address; `payload` short printable text.
    pub fn create_pending(
        &self,
        list: &str,
        address: &str,
        action: PendingAction,
        payload: &str,
        now: i64,
        ttl_secs: i64,
    ) -> Result<Pending, DirectoryError> {
        let address = normalize_address(address)?;
        validate_payload(payload)?;
        if ttl_secs <= 0 {
            return Err(DirectoryError::InvalidDates(
                "a pending entry needs a positive lifetime".into(),
            ));
        }
        let key = fold(list);
        let mut conn = self.lock();
        let tx = write_tx(&mut conn)?;
        let list_shown = list_name(&tx, &key)
            .map_err(db_err)?
            .ok_or_else(|| DirectoryError::NoSuchList(printable(list)))?;
        let count: i64 = tx
            .prepare_cached(
                "SELECT count(*) FROM list_pending WHERE list_lc = ?1 AND expires_at > ?2",
            )
            .map_err(db_err)?
            .query_row(params![key, now], |r| r.get(0))
            .map_err(db_err)?;
        if u64::try_from(count).unwrap_or(0) >= MAX_PENDING_PER_LIST {
            return Err(DirectoryError::TooMany(format!(
                "list `{list_shown}` already has {MAX_PENDING_PER_LIST} pending requests"
            )));
        }
        let mut entry = Pending {
            token: String::new(),
            list: list_shown,
            address,
            action,
            payload: payload.to_owned(),
            created_at: now,
            expires_at: now.saturating_add(ttl_secs),
        };
        // A clash of ~100 random bits does not happen; retrying costs nothing.
        for _ in 0..3 {
            entry.token = new_token();
            let inserted = tx.execute(
                "INSERT INTO list_pending
                    (token, list_lc, address, action, payload, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    entry.token,
                    key,
                    entry.address,
                    action.as_str(),
                    entry.payload,
                    entry.created_at,
                    entry.expires_at
                ],
            );
            match inserted {
                Ok(_) => {
                    tx.commit().map_err(db_err)?;
                    tracing::info!(
                        list = %entry.list, address = %entry.address, action = %action,
                        expires_at = entry.expires_at, "pending list action recorded"
                    );
                    return Ok(entry);
                }
                Err(e) if is_constraint_violation(&e) => continue,
                Err(e) => return Err(db_err(e)),
            }
        }
        Err(DirectoryError::Db("could not make a unique token".into()))
    }

    /// Takes (removes and returns) the entry with this token. Single use: a
    /// second call finds nothing. An expired entry is removed too and gives
    /// [`DirectoryError::TokenExpired`]; an unknown one
    /// [`DirectoryError::NoSuchToken`].
    pub fn take_pending(&self, token: &str, now: i64) -> Result<Pending, DirectoryError> {
        if !looks_like_token(token) {
            return Err(DirectoryError::NoSuchToken);
        }
        let token = fold(token);
        let mut conn = self.lock();
        let tx = write_tx(&mut conn)?;
        let entry = pending_where(&tx, "p.token = ?1", &token)
            .map_err(db_err)?
            .into_iter()
            .next()
            .ok_or(DirectoryError::NoSuchToken)?;
        tx.execute("DELETE FROM list_pending WHERE token = ?1", [&token])
            .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        if entry.is_expired(now) {
            return Err(DirectoryError::TokenExpired);
        }
        tracing::info!(list = %entry.list, address = %entry.address, action = %entry.action, "pending list action taken");
        Ok(entry)
    }

    /// The entry with this token, without taking it (for showing a held
    /// post to a moderator).
    pub fn get_pending(&self, token: &str) -> Result<Option<Pending>, DirectoryError> {
        if !looks_like_token(token) {
            return Ok(None);
        }
        let conn = self.lock();
        Ok(pending_where(&conn, "p.token = ?1", &fold(token))
            .map_err(db_err)?
            .into_iter()
            .next())
    }

    /// Every pending entry of a list, oldest first (expired ones included
    /// until [`Directory::expire_pending`] runs).
    pub fn list_pending(&self, list: &str) -> Result<Vec<Pending>, DirectoryError> {
        let conn = self.lock();
        let key = fold(list);
        if list_name(&conn, &key).map_err(db_err)?.is_none() {
            return Err(DirectoryError::NoSuchList(printable(list)));
        }
        pending_where(&conn, "p.list_lc = ?1", &key).map_err(db_err)
    }

    /// Removes every entry expired at `now` and returns them.
    pub fn expire_pending(&self, now: i64) -> Result<Vec<Pending>, DirectoryError> {
        let mut conn = self.lock();
        let tx = write_tx(&mut conn)?;
        let expired = pending_where(&tx, "p.expires_at <= ?1", &now).map_err(db_err)?;
        if expired.is_empty() {
            return Ok(expired);
        }
        tx.execute("DELETE FROM list_pending WHERE expires_at <= ?1", [now])
            .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        tracing::info!(
            count = expired.len(),
            "expired pending list actions removed"
        );
        Ok(expired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ListOptions;

    fn dir() -> Directory {
        let d = Directory::open_in_memory().expect("open");
        d.create_list(
            "team",
            &ListOptions {
                owner: Some("boss@example.org".into()),
                ..ListOptions::default()
            },
        )
        .expect("list");
        d
    }

    #[test]
    fn tokens_are_random_and_safe() {
        let a = new_token();
        let b = new_token();
        assert_ne!(a, b);
        for t in [&a, &b] {
            assert_eq!(t.len(), TOKEN_LEN);
            assert!(
                t.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
                "{t}"
            );
            assert!(looks_like_token(t));
            assert!(looks_like_token(&t.to_ascii_uppercase()));
        }
        assert!(!looks_like_token("short"));
        assert!(
            !looks_like_token(&"0".repeat(TOKEN_LEN)),
            "0 is not in the alphabet"
        );
        assert!(!looks_like_token(&"a".repeat(TOKEN_LEN + 1)));
        assert!(!looks_like_token(&"é".repeat(TOKEN_LEN / 2)));
    }

    #[test]
    fn create_and_take_once() {
        let d = dir();
        let p = d
            .create_pending(
                "TEAM",
                "Bob@Example.org",
                PendingAction::Subscribe,
                "",
                1_000,
                3_600,
            )
            .expect("create");
        assert_eq!(p.list, "team");
        assert_eq!(p.address, "Bob@example.org");
        assert_eq!(p.expires_at, 4_600);
        assert_eq!(d.get_pending(&p.token).expect("get"), Some(p.clone()));
        assert_eq!(d.list_pending("team").expect("list"), vec![p.clone()]);
        // Taken with the token in any case, once.
        let taken = d
            .take_pending(&p.token.to_ascii_uppercase(), 1_001)
            .expect("take");
        assert_eq!(taken, p);
        assert!(matches!(
            d.take_pending(&p.token, 1_002),
            Err(DirectoryError::NoSuchToken)
        ));
        assert_eq!(d.get_pending(&p.token).expect("get"), None);
        assert!(matches!(
            d.take_pending("not a token", 1_002),
            Err(DirectoryError::NoSuchToken)
        ));
    }

    #[test]
    fn expired_tokens_are_refused_and_removed() {
        let d = dir();
        let p = d
            .create_pending(
                "team",
                "bob@x.org",
                PendingAction::Unsubscribe,
                "",
                1_000,
                60,
            )
            .expect("create");
        assert!(matches!(
            d.take_pending(&p.token, 1_060),
            Err(DirectoryError::TokenExpired)
        ));
        // Gone after the first try.
        assert!(matches!(
            d.take_pending(&p.token, 1_000),
            Err(DirectoryError::NoSuchToken)
        ));
    }

    #[test]
    fn expiry_cleanup_returns_what_it_removed() {
        let d = dir();
        let old = d
            .create_pending("team", "eve@x.org", PendingAction::Post, "Q1", 1_000, 60)
            .expect("create");
        let young = d
            .create_pending(
                "team",
                "bob@x.org",
                PendingAction::Subscribe,
                "",
                1_000,
                600,
            )
            .expect("create");
        assert_eq!(d.expire_pending(1_059).expect("expire"), vec![]);
        assert_eq!(d.expire_pending(1_060).expect("expire"), vec![old]);
        assert_eq!(d.list_pending("team").expect("list"), vec![young.clone()]);
        assert_eq!(d.take_pending(&young.token, 1_100).expect("take"), young);
    }

    #[test]
    fn bad_input_is_refused() {
        let d = dir();
        let create = |list: &str, addr: &str, payload: &str, ttl| {
            d.create_pending(list, addr, PendingAction::Post, payload, 0, ttl)
        };
        assert!(matches!(
            create("ghost", "a@b.org", "", 60),
            Err(DirectoryError::NoSuchList(_))
        ));
        assert!(matches!(
            create("team", "a", "", 60),
            Err(DirectoryError::InvalidAddress(..))
        ));
        assert!(matches!(
            create("team", "a@b.org", "x\ny", 60),
            Err(DirectoryError::InvalidText("payload", _))
        ));
        assert!(matches!(
            create("team", "a@b.org", "", 0),
            Err(DirectoryError::InvalidDates(_))
        ));
        assert!(d.list_pending("team").expect("list").is_empty());
        assert!(matches!(
            d.list_pending("ghost"),
            Err(DirectoryError::NoSuchList(_))
        ));
    }
}
