//! The SQLite connection: opening (file mode 0600, WAL, busy timeout), the
//! schema and its migrations, numbered by `PRAGMA user_version`.
//!
//! Two processes (the running server and the CLI) open the same file at the
//! same time. WAL lets readers proceed while one writer writes; every write
//! takes the write lock up front (`BEGIN IMMEDIATE`), so a writer waits for
//! another (up to [`BUSY_TIMEOUT`]) instead of failing on a lock upgrade.
//!
//! To change the schema, append a migration to [`MIGRATIONS`]; never edit one
//! that has shipped.

use crate::DirectoryError;
use rusqlite::{Connection, TransactionBehavior};
use std::path::Path;
use std::time::Duration;

/// How long a statement waits for another connection's lock.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Migration `i` brings the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: users and aliases.
    "CREATE TABLE users (
        name_lc       TEXT PRIMARY KEY NOT NULL,   -- lowercase, the unique key
        name          TEXT NOT NULL,               -- as given at creation
        password_hash TEXT NOT NULL,               -- argon2id PHC string
        admin         INTEGER NOT NULL DEFAULT 0,
        created_at    INTEGER NOT NULL             -- unix seconds
    ) WITHOUT ROWID;
    CREATE TABLE aliases (
        pattern_lc    TEXT PRIMARY KEY NOT NULL,   -- lowercase, the unique key
        pattern       TEXT NOT NULL,               -- as given
        wildcard      INTEGER NOT NULL,            -- 1 when the pattern has a '*'
        created_at    INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX aliases_wildcard ON aliases (wildcard);
    CREATE TABLE alias_targets (
        pattern_lc    TEXT NOT NULL REFERENCES aliases (pattern_lc) ON DELETE CASCADE,
        position      INTEGER NOT NULL,
        target        TEXT NOT NULL,
        PRIMARY KEY (pattern_lc, position)
    ) WITHOUT ROWID;",
];

/// The schema version this build writes and understands.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Maps a SQLite error to ours.
pub fn db_err(e: rusqlite::Error) -> DirectoryError {
    DirectoryError::Db(e.to_string())
}

/// Whether the error is a UNIQUE/PRIMARY KEY violation.
pub fn is_constraint_violation(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation)
}

/// Opens (creating if needed) the database file and brings its schema up to date.
pub fn open(path: &Path) -> Result<Connection, DirectoryError> {
    let ctx = |e: String| DirectoryError::Db(format!("{}: {e}", path.display()));
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| ctx(e.to_string()))?;
    }
    create_private(path).map_err(|e| ctx(e.to_string()))?;
    let conn = Connection::open(path).map_err(|e| ctx(e.to_string()))?;
    configure(&conn, true).map_err(|e| ctx(e.to_string()))?;
    migrate(&conn).map_err(|e| match e {
        DirectoryError::Db(m) => ctx(m),
        other => other,
    })?;
    Ok(conn)
}

/// Opens a private in-memory database (for tests of other crates).
pub fn open_in_memory() -> Result<Connection, DirectoryError> {
    let conn = Connection::open_in_memory().map_err(db_err)?;
    configure(&conn, false).map_err(|e| DirectoryError::Db(e.to_string()))?;
    migrate(&conn)?;
    Ok(conn)
}

/// Creates the file readable by its owner only (it holds password hashes);
/// SQLite gives its `-wal` and `-shm` files the same mode. An existing file
/// is left as it is.
fn create_private(path: &Path) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    match opts.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

fn configure(conn: &Connection, wal: bool) -> Result<(), rusqlite::Error> {
    // First, so that every following statement already waits for locks.
    conn.busy_timeout(BUSY_TIMEOUT)?;
    if wal {
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(
                journal_mode = %mode,
                "the directory database could not switch to WAL mode; \
                 the server and the CLI will wait for each other more"
            );
        }
    }
    // Durable commits: admin changes are rare and must survive a power cut.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    Ok(())
}

fn user_version(conn: &Connection) -> Result<u32, rusqlite::Error> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
}

/// Applies the missing migrations in one write transaction. Another process
/// migrating at the same moment waits for the lock, then finds nothing to do.
fn migrate(conn: &Connection) -> Result<(), DirectoryError> {
    if user_version(conn).map_err(db_err)? == SCHEMA_VERSION {
        return Ok(());
    }
    let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)
        .map_err(db_err)?;
    let current = user_version(&tx).map_err(db_err)?;
    if current > SCHEMA_VERSION {
        return Err(DirectoryError::Db(format!(
            "the database has schema version {current}, newer than this program's \
             {SCHEMA_VERSION}; upgrade postamt"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        tx.execute_batch(sql).map_err(db_err)?;
        let version = i + 1;
        tracing::info!(version, "directory schema migrated");
        // PRAGMA takes no bound parameters; the value is our own integer.
        tx.execute_batch(&format!("PRAGMA user_version = {version}"))
            .map_err(db_err)?;
    }
    tx.commit().map_err(db_err)
}

/// Starts a write transaction holding the write lock from the start.
pub fn write_tx(conn: &mut Connection) -> Result<rusqlite::Transaction<'_>, DirectoryError> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_err)
}

/// Unix seconds now.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_database_is_at_current_version_in_wal_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/dir.db");
        let conn = open(&path).expect("open");
        assert_eq!(user_version(&conn).expect("version"), SCHEMA_VERSION);
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .expect("mode");
        assert_eq!(mode, "wal");
        drop(conn);
        // Reopening finds nothing to migrate.
        let conn = open(&path).expect("reopen");
        assert_eq!(user_version(&conn).expect("version"), SCHEMA_VERSION);
    }

    #[cfg(unix)]
    #[test]
    fn file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("dir.db");
        open(&path).expect("open");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("dir.db");
        let conn = open(&path).expect("open");
        conn.execute_batch(&format!("PRAGMA user_version = {}", SCHEMA_VERSION + 1))
            .expect("bump");
        drop(conn);
        let err = open(&path).expect_err("newer schema must be refused");
        assert!(err.to_string().contains("newer"), "{err}");
    }

    #[test]
    fn in_memory_works() {
        let conn = open_in_memory().expect("open");
        assert_eq!(user_version(&conn).expect("version"), SCHEMA_VERSION);
    }
}
