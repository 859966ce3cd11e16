//! The `messages` and `expunged` tables: one row per message of a folder
//! (UID, base name, current file, flags, modseq, size, internal date,
//! queue id, MessageMeta) and the expunge history for QRESYNC.

use super::check;
use super::folder_ops::FolderRow;
use crate::StoreError;
use crate::flags::Flags;
use crate::folder::MessageRecord;
use crate::meta::MessageMeta;
use rusqlite::{Connection, OptionalExtension, params};
use std::sync::Arc;

/// First byte of a stored meta blob: the encoding's version.
const META_FORMAT: u8 = 1;
/// Expunge history kept per folder before the oldest is pruned.
pub const MAX_HISTORY: i64 = 100_000;

/// The stored form of a meta.
pub fn encode_meta(meta: &MessageMeta) -> Vec<u8> {
    let out = vec![META_FORMAT];
    match postcard::to_extend(meta, out) {
        Ok(v) => v,
        // Serialising owned data into a Vec cannot fail; keep a marker.
        Err(_) => vec![0],
    }
}

/// A stored meta, or `None` when it does not decode (reparse the file).
pub fn decode_meta(blob: &[u8]) -> Option<MessageMeta> {
    let (&format, rest) = blob.split_first()?;
    if format != META_FORMAT {
        return None;
    }
    postcard::from_bytes(rest).ok()
}

/// A message to add to a folder.
pub struct NewMessage<'a> {
    pub base: &'a [u8],
    pub file: &'a [u8],
    pub flags: &'a Flags,
    pub size: u64,
    pub internal_date: i64,
    pub queue_id: Option<&'a str>,
    pub meta: &'a [u8],
}

/// Adds a message with the next UID and modseq of `folder` (whose row
/// the caller saves); returns (UID, modseq). `None` when a message with
/// that base name is already indexed.
pub fn insert(
    conn: &Connection,
    folder: &mut FolderRow,
    m: &NewMessage<'_>,
) -> Result<Option<(u32, u64)>, StoreError> {
    let exists: Option<i64> = conn
        .prepare_cached("SELECT uid FROM messages WHERE folder = ?1 AND base = ?2")
        .and_then(|mut st| {
            st.query_row(params![folder.id, m.base], |r| r.get(0))
                .optional()
        })
        .map_err(check)?;
    if exists.is_some() {
        return Ok(None);
    }
    let uid = folder
        .next_uid()
        .ok_or_else(|| StoreError::Index("UID space of the folder is used up".into()))?;
    let modseq = folder.next_modseq();
    conn.prepare_cached(
        "INSERT INTO messages (folder, uid, base, file, flags, keywords, modseq, size, internal_date, queue_id, meta)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )
    .and_then(|mut st| {
        st.execute(params![
            folder.id,
            uid,
            m.base,
            m.file,
            m.flags.bits(),
            m.flags.keyword_text(),
            modseq as i64,
            m.size as i64,
            m.internal_date,
            m.queue_id,
            m.meta
        ])
    })
    .map_err(check)?;
    Ok(Some((uid, modseq)))
}

/// What the file sync needs of an indexed message.
#[derive(Clone, Debug)]
pub struct FileRow {
    pub uid: u32,
    pub base: Vec<u8>,
    pub file: Vec<u8>,
    pub flags: Flags,
    pub modseq: u64,
}

/// Every message of a folder, without meta.
pub fn file_rows(conn: &Connection, folder: i64) -> Result<Vec<FileRow>, StoreError> {
    conn.prepare_cached(
        "SELECT uid, base, file, flags, keywords, modseq FROM messages WHERE folder = ?1 ORDER BY uid",
    )
    .and_then(|mut st| {
        st.query_map([folder], |r| {
            Ok(FileRow {
                uid: r.get(0)?,
                base: r.get(1)?,
                file: r.get(2)?,
                flags: Flags::from_bits(r.get(3)?, &r.get::<_, String>(4)?),
                modseq: u64::try_from(r.get::<_, i64>(5)?).unwrap_or(0),
            })
        })?
        .collect()
    })
    .map_err(check)
}

/// One message's row without meta.
pub fn file_row(conn: &Connection, folder: i64, uid: u32) -> Result<Option<FileRow>, StoreError> {
    conn.prepare_cached(
        "SELECT uid, base, file, flags, keywords, modseq FROM messages WHERE folder = ?1 AND uid = ?2",
    )
    .and_then(|mut st| {
        st.query_row(params![folder, uid], |r| {
            Ok(FileRow {
                uid: r.get(0)?,
                base: r.get(1)?,
                file: r.get(2)?,
                flags: Flags::from_bits(r.get(3)?, &r.get::<_, String>(4)?),
                modseq: u64::try_from(r.get::<_, i64>(5)?).unwrap_or(0),
            })
        })
        .optional()
    })
    .map_err(check)
}

/// A message's row without its meta: what a snapshot keeps of it.
#[derive(Clone, Debug)]
pub struct Row {
    pub uid: u32,
    pub modseq: u64,
    pub flags: Flags,
    pub size: u64,
    pub internal_date: i64,
    pub queue_id: Option<Arc<str>>,
    /// The relative file (`cur/...` or `new/...`).
    pub file: Arc<[u8]>,
}

/// The columns [`row_of`] reads, in its order.
const ROW_COLUMNS: &str = "uid, file, flags, keywords, modseq, size, internal_date, queue_id";

/// One [`Row`] from the [`ROW_COLUMNS`] of a result row (no string is
/// allocated for an empty keyword list or a missing queue id).
fn row_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    let file = r.get_ref(1)?.as_blob().unwrap_or(&[]);
    let keywords = r.get_ref(3)?.as_str().unwrap_or("");
    let queue_id = r.get_ref(7)?.as_str_or_null()?.map(Arc::<str>::from);
    Ok(Row {
        uid: r.get(0)?,
        file: Arc::from(file),
        flags: Flags::from_bits(r.get(2)?, keywords),
        modseq: u64::try_from(r.get::<_, i64>(4)?).unwrap_or(0),
        size: u64::try_from(r.get::<_, i64>(5)?).unwrap_or(0),
        internal_date: r.get(6)?,
        queue_id,
    })
}

impl Row {
    /// The record of this row with `meta`.
    pub fn into_record(self, meta: Arc<MessageMeta>) -> (MessageRecord, Arc<[u8]>) {
        (
            MessageRecord {
                uid: self.uid,
                modseq: self.modseq,
                flags: self.flags,
                size: self.size,
                internal_date: self.internal_date,
                queue_id: self.queue_id,
                meta,
            },
            self.file,
        )
    }
}

/// Every message of `folder` ascending by UID (one statement, walked
/// along the `(folder, uid)` index: no sort), each with its meta decoded
/// (`None`: the blob does not decode, reparse the file).
pub fn load_all(
    conn: &Connection,
    folder: i64,
    mut each: impl FnMut(Row, Option<MessageMeta>),
) -> Result<(), StoreError> {
    let sql = format!("SELECT {ROW_COLUMNS}, meta FROM messages WHERE folder = ?1 ORDER BY uid");
    let mut st = conn.prepare_cached(&sql).map_err(check)?;
    let mut rows = st.query([folder]).map_err(check)?;
    while let Some(r) = rows.next().map_err(check)? {
        let row = row_of(r).map_err(check)?;
        let meta = decode_meta(r.get_ref(8).map_err(check)?.as_blob().unwrap_or(&[]));
        each(row, meta);
    }
    Ok(())
}

/// Messages of `folder` changed (or added) after mod-sequence `since`,
/// without their meta, ascending by UID.
pub fn changed_since(conn: &Connection, folder: i64, since: u64) -> Result<Vec<Row>, StoreError> {
    let sql = format!("SELECT {ROW_COLUMNS} FROM messages WHERE folder = ?1 AND modseq > ?2");
    conn.prepare_cached(&sql)
        .and_then(|mut st| {
            st.query_map(params![folder, since as i64], row_of)?
                .collect::<rusqlite::Result<Vec<Row>>>()
        })
        .map(|mut v| {
            v.sort_unstable_by_key(|r| r.uid);
            v
        })
        .map_err(check)
}

/// The decoded metas of the messages of `folder` with a UID of at least
/// `from` (`None` where the blob does not decode), ascending by UID.
pub fn metas_from(
    conn: &Connection,
    folder: i64,
    from: u32,
) -> Result<Vec<(u32, Option<MessageMeta>)>, StoreError> {
    conn.prepare_cached(
        "SELECT uid, meta FROM messages WHERE folder = ?1 AND uid >= ?2 ORDER BY uid",
    )
    .and_then(|mut st| {
        st.query_map(params![folder, from], |r| {
            Ok((
                r.get(0)?,
                decode_meta(r.get_ref(1)?.as_blob().unwrap_or(&[])),
            ))
        })?
        .collect()
    })
    .map_err(check)
}

/// What a copy of a message takes along: (meta blob, size, internal date,
/// queue id).
pub type Content = (Vec<u8>, u64, i64, Option<String>);

/// The stored meta blob, size, internal date and queue id of a message.
pub fn content(conn: &Connection, folder: i64, uid: u32) -> Result<Option<Content>, StoreError> {
    conn.prepare_cached(
        "SELECT meta, size, internal_date, queue_id FROM messages WHERE folder = ?1 AND uid = ?2",
    )
    .and_then(|mut st| {
        st.query_row(params![folder, uid], |r| {
            Ok((
                r.get(0)?,
                u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                r.get(2)?,
                r.get(3)?,
            ))
        })
        .optional()
    })
    .map_err(check)
}

/// Sets a message's flags and modseq (and file).
pub fn set_flags(
    conn: &Connection,
    folder: i64,
    uid: u32,
    flags: &Flags,
    modseq: u64,
    file: &[u8],
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE messages SET flags = ?3, keywords = ?4, modseq = ?5, file = ?6 WHERE folder = ?1 AND uid = ?2",
    )
    .and_then(|mut st| {
        st.execute(params![
            folder,
            uid,
            flags.bits(),
            flags.keyword_text(),
            modseq as i64,
            file
        ])
    })
    .map_err(check)?;
    Ok(())
}

/// Records where a message's file is now (no modseq change).
pub fn set_file(conn: &Connection, folder: i64, uid: u32, file: &[u8]) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE messages SET file = ?3 WHERE folder = ?1 AND uid = ?2")
        .and_then(|mut st| st.execute(params![folder, uid, file]))
        .map_err(check)?;
    Ok(())
}

/// Replaces a message's meta blob (after a reparse).
pub fn set_meta(conn: &Connection, folder: i64, uid: u32, meta: &[u8]) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE messages SET meta = ?3 WHERE folder = ?1 AND uid = ?2")
        .and_then(|mut st| st.execute(params![folder, uid, meta]))
        .map_err(check)?;
    Ok(())
}

/// Removes a message and records its expunge with the next modseq.
pub fn expunge(conn: &Connection, folder: &mut FolderRow, uid: u32) -> Result<(), StoreError> {
    let modseq = folder.next_modseq();
    conn.prepare_cached("DELETE FROM messages WHERE folder = ?1 AND uid = ?2")
        .and_then(|mut st| st.execute(params![folder.id, uid]))
        .map_err(check)?;
    conn.prepare_cached(
        "INSERT OR REPLACE INTO expunged (folder, uid, modseq) VALUES (?1, ?2, ?3)",
    )
    .and_then(|mut st| st.execute(params![folder.id, uid, modseq as i64]))
    .map_err(check)?;
    Ok(())
}

/// Keeps the expunge history of a folder bounded: past
/// [`MAX_HISTORY`] entries the oldest tenth goes, and the folder's
/// `vanished_floor` rises to the newest modseq dropped.
pub fn prune_history(conn: &Connection, folder: &mut FolderRow) -> Result<(), StoreError> {
    let count: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM expunged WHERE folder = ?1",
            [folder.id],
            |r| r.get(0),
        )
        .map_err(check)?;
    if count <= MAX_HISTORY {
        return Ok(());
    }
    let cut: i64 = conn
        .query_row(
            "SELECT modseq FROM expunged WHERE folder = ?1 ORDER BY modseq LIMIT 1 OFFSET ?2",
            params![folder.id, count / 10],
            |r| r.get(0),
        )
        .map_err(check)?;
    conn.execute(
        "DELETE FROM expunged WHERE folder = ?1 AND modseq <= ?2",
        params![folder.id, cut],
    )
    .map_err(check)?;
    folder.vanished_floor = folder.vanished_floor.max(u64::try_from(cut).unwrap_or(0));
    Ok(())
}

/// UIDs expunged with a modseq above `since`, ascending.
pub fn expunged_since(conn: &Connection, folder: i64, since: u64) -> Result<Vec<u32>, StoreError> {
    conn.prepare_cached("SELECT uid FROM expunged WHERE folder = ?1 AND modseq > ?2 ORDER BY uid")
        .and_then(|mut st| {
            st.query_map(params![folder, since as i64], |r| r.get(0))?
                .collect()
        })
        .map_err(check)
}

/// UIDs present in a folder, ascending.
pub fn uids(conn: &Connection, folder: i64) -> Result<Vec<u32>, StoreError> {
    conn.prepare_cached("SELECT uid FROM messages WHERE folder = ?1 ORDER BY uid")
        .and_then(|mut st| st.query_map([folder], |r| r.get(0))?.collect())
        .map_err(check)
}

/// STATUS figures: (messages, unseen, recent, total size).
pub fn status(conn: &Connection, folder: &FolderRow) -> Result<(u32, u32, u32, u64), StoreError> {
    conn.query_row(
        "SELECT COUNT(*), COALESCE(SUM((flags & 1) = 0), 0), COALESCE(SUM(uid >= ?2), 0), COALESCE(SUM(size), 0)
         FROM messages WHERE folder = ?1",
        params![folder.id, folder.recent_uid],
        |r| {
            Ok((
                u32::try_from(r.get::<_, i64>(0)?).unwrap_or(u32::MAX),
                u32::try_from(r.get::<_, i64>(1)?).unwrap_or(u32::MAX),
                u32::try_from(r.get::<_, i64>(2)?).unwrap_or(u32::MAX),
                u64::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
            ))
        },
    )
    .map_err(check)
}
