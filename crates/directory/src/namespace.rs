//! One local part, one owner. Users, exact aliases and lists share the
//! local-part namespace of every local domain, so none may shadow another:
//!
//! - a list `NAME` owns `NAME` and its service addresses `NAME-request`,
//!   `NAME-bounces` and `NAME-owner`;
//! - creating a list is refused while a user or an exact (non-wildcard)
//!   alias holds any of those four local parts (an alias `NAME@domain`
//!   counts, whatever its domain);
//! - adding a user, or an exact alias, is refused for a local part a list
//!   owns.
//!
//! Wildcard aliases are not checked: a list is found before any wildcard
//! when an address is classified, so a wildcard never hides a list.
//!
//! The checks run inside the caller's write transaction, so a concurrent
//! writer cannot slip a clashing name in between check and insert.

use crate::DirectoryError;
use crate::names::{ListRole, fold, printable, split_list_suffix};
use rusqlite::{Connection, OptionalExtension};

/// The stored name of the list called `name_lc`, if there is one.
pub(crate) fn list_name(conn: &Connection, name_lc: &str) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT name FROM lists WHERE name_lc = ?1")?
        .query_row([name_lc], |r| r.get(0))
        .optional()
}

/// If a list owns the local part `local`: a sentence saying so.
fn list_claim(conn: &Connection, local: &str) -> rusqlite::Result<Option<String>> {
    let local_lc = fold(local);
    if let Some(list) = list_name(conn, &local_lc)? {
        return Ok(Some(format!("it is the mailing list `{list}`")));
    }
    if let Some((base, role)) = split_list_suffix(&local_lc)
        && let Some(list) = list_name(conn, base)?
    {
        let what = match role {
            ListRole::Request => "request",
            ListRole::Bounces => "bounce",
            ListRole::Owner => "owner",
        };
        return Ok(Some(format!(
            "it is the {what} address of the mailing list `{list}`"
        )));
    }
    Ok(None)
}

/// Refuses a user name or an exact alias's local part that a list owns.
/// `name` is the whole user name or alias pattern (shown in the error);
/// `local` its local part.
pub(crate) fn check_not_a_list(
    conn: &Connection,
    name: &str,
    local: &str,
) -> Result<(), DirectoryError> {
    match list_claim(conn, local).map_err(crate::db::db_err)? {
        Some(by) => Err(DirectoryError::NameTaken {
            name: printable(name),
            by,
        }),
        None => Ok(()),
    }
}

/// Refuses a new list whose name or service addresses a user or an exact
/// alias holds.
pub(crate) fn check_free_for_list(conn: &Connection, name: &str) -> Result<(), DirectoryError> {
    let db = crate::db::db_err;
    let mut locals = vec![name.to_owned()];
    locals.extend(ListRole::ALL.iter().map(|r| r.local_part(name)));
    for local in locals {
        let local_lc = fold(&local);
        if let Some(user) = crate::users::canonical_name(conn, &local_lc).map_err(db)? {
            return Err(taken(name, &local, format!("`{user}` is a user")));
        }
        let alias: Option<String> = conn
            .prepare_cached(
                "SELECT pattern FROM aliases
                 WHERE wildcard = 0
                   AND (pattern_lc = ?1 OR substr(pattern_lc, 1, length(?1) + 1) = ?1 || '@')
                 ORDER BY pattern_lc LIMIT 1",
            )
            .map_err(db)?
            .query_row([&local_lc], |r| r.get(0))
            .optional()
            .map_err(db)?;
        if let Some(pattern) = alias {
            return Err(taken(name, &local, format!("`{pattern}` is an alias")));
        }
    }
    Ok(())
}

fn taken(list: &str, local: &str, why: String) -> DirectoryError {
    let by = if local.eq_ignore_ascii_case(list) {
        why
    } else {
        format!("the list would own `{local}`, but {why}")
    };
    DirectoryError::NameTaken {
        name: printable(list),
        by,
    }
}
