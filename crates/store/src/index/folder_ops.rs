//! The `folders` and `settings` tables: a folder's counters (UIDVALIDITY,
//! UIDNEXT, HIGHESTMODSEQ, recent claim, pruned-history floor), made on
//! first use with a fresh UIDVALIDITY, renamed and dropped with the
//! folder's directory.

use super::check;
use crate::StoreError;
use rusqlite::{Connection, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The file beside the index (in the Maildir root) that remembers the
/// last UIDVALIDITY given out, so that an index made anew (deleted, or
/// damaged and moved aside) never gives a folder a value a client may
/// have seen before: RFC 3501 2.3.1.1 wants a greater one when UIDs were
/// not kept, also when the rebuild comes within the same second or after
/// the clock went back. Its name does not start with the index's.
pub const UIDVALIDITY_FILE: &str = "postamt-uidvalidity";

/// One folder's counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderRow {
    pub id: i64,
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub modseq: u64,
    /// The first UID not yet claimed as `\Recent` by a session.
    pub recent_uid: u32,
    /// Expunge history below this modseq was pruned.
    pub vanished_floor: u64,
}

impl FolderRow {
    /// Takes the next modseq.
    pub fn next_modseq(&mut self) -> u64 {
        self.modseq += 1;
        self.modseq
    }

    /// Takes the next UID; `None` when the UID space is used up.
    pub fn next_uid(&mut self) -> Option<u32> {
        let uid = self.uidnext;
        self.uidnext = self.uidnext.checked_add(1)?;
        Some(uid)
    }
}

fn to_u32(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// The counters of folder `name`, if it has a row.
pub fn get(conn: &Connection, name: &str) -> Result<Option<FolderRow>, StoreError> {
    conn.prepare_cached(
        "SELECT id, uidvalidity, uidnext, modseq, recent_uid, vanished_floor FROM folders WHERE name = ?1",
    )
    .and_then(|mut st| {
        st.query_row([name], |r| {
            Ok(FolderRow {
                id: r.get(0)?,
                uidvalidity: to_u32(r.get(1)?),
                uidnext: to_u32(r.get(2)?),
                modseq: to_u64(r.get(3)?),
                recent_uid: to_u32(r.get(4)?),
                vanished_floor: to_u64(r.get(5)?),
            })
        })
        .optional()
    })
    .map_err(check)
}

/// The counters of `name`, made (with a fresh UIDVALIDITY) when missing.
/// Call inside a write transaction.
pub fn get_or_create(conn: &Connection, name: &str) -> Result<FolderRow, StoreError> {
    if let Some(row) = get(conn, name)? {
        return Ok(row);
    }
    let uidvalidity = fresh_uidvalidity(conn)?;
    conn.execute(
        "INSERT INTO folders (name, uidvalidity, uidnext, modseq, recent_uid) VALUES (?1, ?2, 1, 1, 1)",
        params![name, uidvalidity],
    )
    .map_err(check)?;
    tracing::debug!(folder = name, uidvalidity, "folder index made");
    get(conn, name)?.ok_or_else(|| StoreError::Index("folder row vanished".into()))
}

/// Writes back the counters of `row`.
pub fn save(conn: &Connection, row: &FolderRow) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE folders SET uidnext = ?2, modseq = ?3, recent_uid = ?4, vanished_floor = ?5 WHERE id = ?1",
    )
    .and_then(|mut st| {
        st.execute(params![
            row.id,
            row.uidnext,
            row.modseq as i64,
            row.recent_uid,
            row.vanished_floor as i64
        ])
    })
    .map_err(check)?;
    Ok(())
}

/// A UIDVALIDITY never used before for this mailbox: the current time,
/// or one more than the last one given out (kept in `settings` and in
/// [`UIDVALIDITY_FILE`], which outlives the index).
fn fresh_uidvalidity(conn: &Connection) -> Result<u32, StoreError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let now = u32::try_from(now).unwrap_or(u32::MAX).max(1);
    let floor_file = uidvalidity_file(conn);
    let last = setting(conn, "last_uidvalidity")?
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(0)
        .max(floor_file.as_deref().map_or(0, read_uidvalidity_file));
    let v = if now > last {
        now
    } else {
        last.wrapping_add(1).max(1)
    };
    set_setting(conn, "last_uidvalidity", &v.to_string())?;
    if let Some(path) = floor_file
        && let Err(e) = write_uidvalidity_file(&path, v)
    {
        // Only a rebuild in the same second (or after the clock went
        // back) could then repeat a value.
        tracing::warn!(path = %path.display(), error = %e, "cannot record the last UIDVALIDITY");
    }
    Ok(v)
}

/// Where [`UIDVALIDITY_FILE`] lives: beside the connection's database
/// (none for an in-memory one).
fn uidvalidity_file(conn: &Connection) -> Option<PathBuf> {
    let db = conn.path().filter(|p| !p.is_empty())?;
    Some(Path::new(db).with_file_name(UIDVALIDITY_FILE))
}

/// The value in [`UIDVALIDITY_FILE`]; 0 when missing or unreadable.
pub fn read_uidvalidity_file(path: &Path) -> u32 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Replaces [`UIDVALIDITY_FILE`] with `v` (a new file renamed over it;
/// no fsync: like the index, it is a hint that only has to be mostly
/// right). Callers hold the index's write transaction, so one writer per
/// mailbox at a time.
fn write_uidvalidity_file(path: &Path, v: u32) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_file_name(format!("{UIDVALIDITY_FILE}.tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    // A new private file: never follows a symlink left at the temporary name.
    let mut f = postamt_fsutil::create_new(&tmp)?;
    f.write_all(format!("{v}\n").as_bytes())?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// Drops folder `name`'s row, messages and history.
pub fn drop_folder(conn: &Connection, name: &str) -> Result<(), StoreError> {
    let Some(row) = get(conn, name)? else {
        return Ok(());
    };
    for sql in [
        "DELETE FROM messages WHERE folder = ?1",
        "DELETE FROM expunged WHERE folder = ?1",
        "DELETE FROM folders WHERE id = ?1",
    ] {
        conn.execute(sql, [row.id]).map_err(check)?;
    }
    Ok(())
}

/// Renames the rows of `from` and of its children (`from/...`) to `to`.
pub fn rename(conn: &Connection, from: &str, to: &str) -> Result<(), StoreError> {
    // Rows left behind under the new names (a folder deleted by another
    // tool) would collide: they are stale, drop them.
    drop_folder(conn, to)?;
    conn.execute(
        "UPDATE folders SET name = ?2 WHERE name = ?1",
        params![from, to],
    )
    .map_err(check)?;
    let prefix = format!("{from}/");
    let children: Vec<(i64, String)> = conn
        .prepare("SELECT id, name FROM folders WHERE substr(name, 1, ?2) = ?1")
        .and_then(|mut st| {
            st.query_map(params![prefix, prefix.len() as i64], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect()
        })
        .map_err(check)?;
    for (id, name) in children {
        let new = format!("{to}/{}", &name[prefix.len()..]);
        drop_folder(conn, &new)?;
        conn.execute(
            "UPDATE folders SET name = ?2 WHERE id = ?1",
            params![id, new],
        )
        .map_err(check)?;
    }
    Ok(())
}

/// A value from `settings`.
pub fn setting(conn: &Connection, key: &str) -> Result<Option<String>, StoreError> {
    conn.prepare_cached("SELECT value FROM settings WHERE key = ?1")
        .and_then(|mut st| st.query_row([key], |r| r.get(0)).optional())
        .map_err(check)
}

/// Sets a value in `settings`.
pub fn set_setting(conn: &Connection, key: &str, value: &str) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )
    .map_err(check)?;
    Ok(())
}
