//! The index's tables, made on first open; `user_version` names the
//! layout so a database from a different version is rebuilt, not misread.

use rusqlite::Connection;

/// The layout version stored in `PRAGMA user_version`.
pub const VERSION: i64 = 1;

const TABLES: &str = "
CREATE TABLE folders (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    uidvalidity INTEGER NOT NULL,
    uidnext INTEGER NOT NULL,
    modseq INTEGER NOT NULL,
    recent_uid INTEGER NOT NULL,
    vanished_floor INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    folder INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    base BLOB NOT NULL,
    file BLOB NOT NULL,
    flags INTEGER NOT NULL,
    keywords TEXT NOT NULL,
    modseq INTEGER NOT NULL,
    size INTEGER NOT NULL,
    internal_date INTEGER NOT NULL,
    queue_id TEXT,
    meta BLOB NOT NULL
);
CREATE UNIQUE INDEX messages_uid ON messages (folder, uid);
CREATE UNIQUE INDEX messages_base ON messages (folder, base);
CREATE INDEX messages_modseq ON messages (folder, modseq);
CREATE TABLE expunged (
    folder INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    modseq INTEGER NOT NULL,
    PRIMARY KEY (folder, uid)
) WITHOUT ROWID;
CREATE INDEX expunged_modseq ON expunged (folder, modseq);
CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
";

/// Why the schema could not be used.
pub enum SchemaError {
    Sql(rusqlite::Error),
    /// A `user_version` we do not know.
    Unknown(i64),
}

/// Makes the tables in a new database; checks the version of an old one.
pub fn ensure(conn: &Connection) -> Result<(), SchemaError> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(SchemaError::Sql)?;
    match version {
        VERSION => Ok(()),
        0 => {
            let sql = format!("BEGIN IMMEDIATE; {TABLES} PRAGMA user_version={VERSION}; COMMIT;");
            match conn.execute_batch(&sql) {
                Ok(()) => Ok(()),
                Err(e) => {
                    let _ = conn.execute_batch("ROLLBACK");
                    // Another process made it meanwhile.
                    let now: i64 = conn
                        .query_row("PRAGMA user_version", [], |r| r.get(0))
                        .map_err(SchemaError::Sql)?;
                    if now == VERSION {
                        Ok(())
                    } else {
                        Err(SchemaError::Sql(e))
                    }
                }
            }
        }
        other => Err(SchemaError::Unknown(other)),
    }
}
