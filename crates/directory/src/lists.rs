//! Mailing lists: their options (owner, who may post, reply-to, subject
//! prefix, size limit) and their members.
//!
//! A list `NAME` is addressed as `NAME@` every local domain, like a user,
//! and owns `NAME-request`, `NAME-bounces` and `NAME-owner` too (see
//! `namespace`). Names are unique case-insensitively, stored as given.
//! Member addresses are stored with the domain lowercased and the local
//! part as given, and are unique per list case-insensitively.

use crate::content::validate_prefix;
use crate::db::{db_err, is_constraint_violation, now_unix, write_tx};
use crate::names::{fold, normalize_address, printable, validate_list_name};
use crate::namespace::{check_free_for_list, list_name};
use crate::pending::{Pending, pending_where};
use crate::{Directory, DirectoryError};
use rusqlite::{Connection, OptionalExtension, Row, params};
use std::fmt;
use std::str::FromStr;

/// Most members one list may have.
pub const MAX_LIST_MEMBERS: u64 = 100_000;

/// Who may post to a list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Posting {
    /// Any sender.
    Anyone,
    /// Members only (the default); others are refused or held.
    #[default]
    Members,
    /// Every post is held until the owner approves it.
    Moderated,
}

/// Where replies to list mail go (`Reply-To:`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ReplyTo {
    /// To the list (the default).
    #[default]
    List,
    /// To the poster (no `Reply-To:` is added).
    Sender,
}

impl Posting {
    pub fn as_str(self) -> &'static str {
        match self {
            Posting::Anyone => "anyone",
            Posting::Members => "members",
            Posting::Moderated => "moderated",
        }
    }
}

impl ReplyTo {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplyTo::List => "list",
            ReplyTo::Sender => "sender",
        }
    }
}

impl fmt::Display for Posting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for ReplyTo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Posting {
    type Err = String;
    fn from_str(s: &str) -> Result<Posting, String> {
        match s.to_ascii_lowercase().as_str() {
            "anyone" => Ok(Posting::Anyone),
            "members" => Ok(Posting::Members),
            "moderated" => Ok(Posting::Moderated),
            _ => Err(format!(
                "unknown posting policy `{}` (anyone, members, moderated)",
                printable(s)
            )),
        }
    }
}

impl FromStr for ReplyTo {
    type Err = String;
    fn from_str(s: &str) -> Result<ReplyTo, String> {
        match s.to_ascii_lowercase().as_str() {
            "list" => Ok(ReplyTo::List),
            "sender" => Ok(ReplyTo::Sender),
            _ => Err(format!(
                "unknown reply-to setting `{}` (list, sender)",
                printable(s)
            )),
        }
    }
}

/// A list and its options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListInfo {
    /// As given at creation.
    pub name: String,
    /// The owner's address (moderation requests and `NAME-owner` mail go there).
    pub owner: String,
    pub posting: Posting,
    pub reply_to: ReplyTo,
    /// Put before the subject of list mail (unless already there); may be empty.
    pub subject_prefix: String,
    /// Bytes; 0 means the server's own limit.
    pub max_message_size: u64,
    /// Unix seconds.
    pub created_at: i64,
}

/// A list with its member count, for overviews.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListSummary {
    pub list: ListInfo,
    pub members: u64,
}

/// One member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListMember {
    /// Local part as given, domain lowercased.
    pub address: String,
    /// Unix seconds.
    pub added_at: i64,
}

/// Options to set at creation or to change; `None` keeps the current value
/// (at creation: the default).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Required at creation.
    pub owner: Option<String>,
    /// Default: [`Posting::Members`].
    pub posting: Option<Posting>,
    /// Default: [`ReplyTo::List`].
    pub reply_to: Option<ReplyTo>,
    /// Default: `[NAME] ` (with a space); `Some("")` for none.
    pub subject_prefix: Option<String>,
    /// Default: 0, the server's limit.
    pub max_message_size: Option<u64>,
}

impl ListOptions {
    /// Whether no option is set.
    pub fn is_empty(&self) -> bool {
        *self == ListOptions::default()
    }

    /// Validates every option that is set; returns the owner normalised.
    fn checked_owner(&self) -> Result<Option<String>, DirectoryError> {
        if let Some(p) = &self.subject_prefix {
            validate_prefix(p)?;
        }
        if let Some(size) = self.max_message_size
            && i64::try_from(size).is_err()
        {
            return Err(DirectoryError::InvalidText(
                "size limit",
                format!("{size} bytes is too large"),
            ));
        }
        self.owner.as_deref().map(normalize_address).transpose()
    }
}

/// May this sender post to the list?
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PostPermission {
    /// Send it to the members.
    Allowed,
    /// A members-only list and the sender is not a member: refuse or hold.
    NotMember,
    /// A moderated list: hold it for the owner.
    Moderated,
}

/// The default subject prefix of list `name`.
pub fn default_prefix(name: &str) -> String {
    format!("[{name}] ")
}

fn list_from_row(r: &Row<'_>) -> rusqlite::Result<ListInfo> {
    let text_enum = |idx: &str, e: String| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("column {idx}: {e}").into(),
        )
    };
    let posting: String = r.get("posting")?;
    let reply_to: String = r.get("reply_to")?;
    let size: i64 = r.get("max_message_size")?;
    Ok(ListInfo {
        name: r.get("name")?,
        owner: r.get("owner")?,
        posting: posting.parse().map_err(|e| text_enum("posting", e))?,
        reply_to: reply_to.parse().map_err(|e| text_enum("reply_to", e))?,
        subject_prefix: r.get("subject_prefix")?,
        max_message_size: u64::try_from(size).unwrap_or(0),
        created_at: r.get("created_at")?,
    })
}

const LIST_COLUMNS: &str =
    "name, owner, posting, reply_to, subject_prefix, max_message_size, created_at";

/// The list called `name` (any case), on an open connection.
pub(crate) fn lookup(conn: &Connection, name: &str) -> rusqlite::Result<Option<ListInfo>> {
    conn.prepare_cached(&format!(
        "SELECT {LIST_COLUMNS} FROM lists WHERE name_lc = ?1"
    ))?
    .query_row([fold(name)], list_from_row)
    .optional()
}

/// The list's folded key, or [`DirectoryError::NoSuchList`].
fn existing_key(conn: &Connection, name: &str) -> Result<String, DirectoryError> {
    let key = fold(name);
    match list_name(conn, &key).map_err(db_err)? {
        Some(_) => Ok(key),
        None => Err(DirectoryError::NoSuchList(printable(name))),
    }
}

fn member_count(conn: &Connection, key: &str) -> rusqlite::Result<u64> {
    let n: i64 = conn
        .prepare_cached("SELECT count(*) FROM list_members WHERE list_lc = ?1")?
        .query_row([key], |r| r.get(0))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

fn member_key(address: &str) -> String {
    fold(address.strip_suffix('.').unwrap_or(address))
}

impl Directory {
    /// Creates a list. `options.owner` is required; unset options take
    /// their defaults. Errors: [`DirectoryError::InvalidListName`],
    /// [`DirectoryError::ListExists`], [`DirectoryError::NameTaken`] (a user
    /// or exact alias holds the name or one of its service addresses),
    /// [`DirectoryError::InvalidAddress`] (owner),
    /// [`DirectoryError::InvalidText`] (prefix).
    pub fn create_list(
        &self,
        name: &str,
        options: &ListOptions,
    ) -> Result<ListInfo, DirectoryError> {
        validate_list_name(name)?;
        let owner = options.checked_owner()?.ok_or_else(|| {
            DirectoryError::InvalidAddress(String::new(), "a list needs an owner".into())
        })?;
        let info = ListInfo {
            name: name.to_owned(),
            owner,
            posting: options.posting.unwrap_or_default(),
            reply_to: options.reply_to.unwrap_or_default(),
            subject_prefix: options
                .subject_prefix
                .clone()
                .unwrap_or_else(|| default_prefix(name)),
            max_message_size: options.max_message_size.unwrap_or(0),
            created_at: now_unix(),
        };
        let mut conn = self.lock();
        let tx = write_tx(&mut conn)?;
        if let Some(existing) = list_name(&tx, &fold(name)).map_err(db_err)? {
            return Err(DirectoryError::ListExists(existing));
        }
        check_free_for_list(&tx, name)?;
        let inserted = tx.execute(
            "INSERT INTO lists (name_lc, name, owner, posting, reply_to, subject_prefix,
                                max_message_size, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                fold(name),
                info.name,
                info.owner,
                info.posting.as_str(),
                info.reply_to.as_str(),
                info.subject_prefix,
                i64::try_from(info.max_message_size).unwrap_or(i64::MAX),
                info.created_at
            ],
        );
        match inserted {
            Ok(_) => {}
            Err(e) if is_constraint_violation(&e) => {
                return Err(DirectoryError::ListExists(name.to_owned()));
            }
            Err(e) => return Err(db_err(e)),
        }
        tx.commit().map_err(db_err)?;
        tracing::info!(list = name, owner = %info.owner, posting = %info.posting, "list created");
        Ok(info)
    }

    /// Deletes a list with its members and pending entries. Returns the
    /// pending entries that were dropped, so that the caller can discard
    /// the held posts they name.
    pub fn delete_list(&self, name: &str) -> Result<Vec<Pending>, DirectoryError> {
        let mut conn = self.lock();
        let tx = write_tx(&mut conn)?;
        let key = existing_key(&tx, name)?;
        let dropped = pending_where(&tx, "p.list_lc = ?1", &key).map_err(db_err)?;
        // Members and pending entries go by ON DELETE CASCADE.
        tx.execute("DELETE FROM lists WHERE name_lc = ?1", [&key])
            .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        tracing::info!(list = name, pending_dropped = dropped.len(), "list deleted");
        Ok(dropped)
    }

    /// The list called `name` (any case).
    pub fn get_list(&self, name: &str) -> Result<Option<ListInfo>, DirectoryError> {
        lookup(&self.lock(), name).map_err(db_err)
    }

    /// Every list with its member count, ordered by name (case-insensitively).
    pub fn lists(&self) -> Result<Vec<ListSummary>, DirectoryError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {LIST_COLUMNS},
                        (SELECT count(*) FROM list_members m WHERE m.list_lc = l.name_lc) AS n
                 FROM lists l ORDER BY name_lc"
            ))
            .map_err(db_err)?;
        let rows = stmt
            .query_map([], |r| {
                let n: i64 = r.get("n")?;
                Ok(ListSummary {
                    list: list_from_row(r)?,
                    members: u64::try_from(n).unwrap_or(0),
                })
            })
            .map_err(db_err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
    }

    /// Changes the options that are set in `options`; returns the result.
    pub fn update_list(
        &self,
        name: &str,
        options: &ListOptions,
    ) -> Result<ListInfo, DirectoryError> {
        let owner = options.checked_owner()?;
        let mut conn = self.lock();
        let tx = write_tx(&mut conn)?;
        let key = existing_key(&tx, name)?;
        tx.execute(
            "UPDATE lists SET
                owner            = coalesce(?2, owner),
                posting          = coalesce(?3, posting),
                reply_to         = coalesce(?4, reply_to),
                subject_prefix   = coalesce(?5, subject_prefix),
                max_message_size = coalesce(?6, max_message_size)
             WHERE name_lc = ?1",
            params![
                key,
                owner,
                options.posting.map(Posting::as_str),
                options.reply_to.map(ReplyTo::as_str),
                options.subject_prefix,
                options
                    .max_message_size
                    .map(|s| i64::try_from(s).unwrap_or(i64::MAX)),
            ],
        )
        .map_err(db_err)?;
        let info = lookup(&tx, &key)
            .map_err(db_err)?
            .ok_or_else(|| DirectoryError::NoSuchList(printable(name)))?;
        tx.commit().map_err(db_err)?;
        tracing::info!(list = %info.name, changes = ?options, "list options changed");
        Ok(info)
    }

    /// Adds a member (a full address). Errors: [`DirectoryError::NoSuchList`],
    /// [`DirectoryError::InvalidAddress`], [`DirectoryError::AlreadyMember`]
    /// (any case), [`DirectoryError::TooMany`] past [`MAX_LIST_MEMBERS`].
    pub fn add_list_member(&self, list: &str, address: &str) -> Result<ListMember, DirectoryError> {
        let address = normalize_address(address)?;
        let mut conn = self.lock();
        let tx = write_tx(&mut conn)?;
        let key = existing_key(&tx, list)?;
        let list_shown = list_name(&tx, &key).map_err(db_err)?.unwrap_or_default();
        if member_count(&tx, &key).map_err(db_err)? >= MAX_LIST_MEMBERS {
            return Err(DirectoryError::TooMany(format!(
                "list `{list_shown}` already has {MAX_LIST_MEMBERS} members"
            )));
        }
        let member = ListMember {
            address,
            added_at: now_unix(),
        };
        let inserted = tx.execute(
            "INSERT INTO list_members (list_lc, address_lc, address, added_at)
             VALUES (?1, ?2, ?3, ?4)",
            params![key, fold(&member.address), member.address, member.added_at],
        );
        match inserted {
            Ok(_) => {}
            Err(e) if is_constraint_violation(&e) => {
                return Err(DirectoryError::AlreadyMember {
                    list: list_shown,
                    address: member.address,
                });
            }
            Err(e) => return Err(db_err(e)),
        }
        tx.commit().map_err(db_err)?;
        tracing::info!(list = %list_shown, member = %member.address, "list member added");
        Ok(member)
    }

    /// Removes a member (matched case-insensitively).
    pub fn remove_list_member(&self, list: &str, address: &str) -> Result<(), DirectoryError> {
        let mut conn = self.lock();
        let tx = write_tx(&mut conn)?;
        let key = existing_key(&tx, list)?;
        let n = tx
            .execute(
                "DELETE FROM list_members WHERE list_lc = ?1 AND address_lc = ?2",
                params![key, member_key(address)],
            )
            .map_err(db_err)?;
        if n == 0 {
            return Err(DirectoryError::NotMember {
                list: list_name(&tx, &key).map_err(db_err)?.unwrap_or_default(),
                address: printable(address),
            });
        }
        tx.commit().map_err(db_err)?;
        tracing::info!(list, member = address, "list member removed");
        Ok(())
    }

    /// The members, ordered by address (case-insensitively).
    pub fn list_members(&self, list: &str) -> Result<Vec<ListMember>, DirectoryError> {
        let conn = self.lock();
        let key = existing_key(&conn, list)?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT address, added_at FROM list_members WHERE list_lc = ?1
                 ORDER BY address_lc",
            )
            .map_err(db_err)?;
        let rows = stmt
            .query_map([&key], |r| {
                Ok(ListMember {
                    address: r.get(0)?,
                    added_at: r.get(1)?,
                })
            })
            .map_err(db_err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
    }

    /// Whether `address` (any case, trailing dot ignored) is a member.
    pub fn is_list_member(&self, list: &str, address: &str) -> Result<bool, DirectoryError> {
        let conn = self.lock();
        let key = existing_key(&conn, list)?;
        let found: Option<i64> = conn
            .prepare_cached("SELECT 1 FROM list_members WHERE list_lc = ?1 AND address_lc = ?2")
            .map_err(db_err)?
            .query_row(params![key, member_key(address)], |r| r.get(0))
            .optional()
            .map_err(db_err)?;
        Ok(found.is_some())
    }

    /// Whether `sender` may post to the list, by its posting policy. The
    /// null sender is never a member.
    pub fn list_may_post(
        &self,
        list: &str,
        sender: &str,
    ) -> Result<PostPermission, DirectoryError> {
        let info = self
            .get_list(list)?
            .ok_or_else(|| DirectoryError::NoSuchList(printable(list)))?;
        Ok(match info.posting {
            Posting::Anyone => PostPermission::Allowed,
            Posting::Moderated => PostPermission::Moderated,
            Posting::Members if !sender.is_empty() && self.is_list_member(list, sender)? => {
                PostPermission::Allowed
            }
            Posting::Members => PostPermission::NotMember,
        })
    }
}

#[cfg(test)]
mod tests;
