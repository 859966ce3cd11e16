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
    // 2: mailing lists, members, pending confirmations and moderation;
    // per-user forwards and auto-replies, and the auto-reply memory.
    "CREATE TABLE lists (
        name_lc          TEXT PRIMARY KEY NOT NULL,  -- lowercase, the unique key
        name             TEXT NOT NULL,              -- as given at creation
        owner            TEXT NOT NULL,              -- the owner's address
        posting          TEXT NOT NULL DEFAULT 'members'
                         CHECK (posting IN ('anyone', 'members', 'moderated')),
        reply_to         TEXT NOT NULL DEFAULT 'list'
                         CHECK (reply_to IN ('list', 'sender')),
        subject_prefix   TEXT NOT NULL,              -- may be empty
        max_message_size INTEGER NOT NULL DEFAULT 0  -- bytes; 0 = the server's limit
                         CHECK (max_message_size >= 0),
        created_at       INTEGER NOT NULL            -- unix seconds
    ) WITHOUT ROWID;
    CREATE TABLE list_members (
        list_lc     TEXT NOT NULL REFERENCES lists (name_lc) ON DELETE CASCADE,
        address_lc  TEXT NOT NULL,                   -- lowercase, the unique key
        address     TEXT NOT NULL,                   -- local part as given, domain lowercase
        added_at    INTEGER NOT NULL,
        PRIMARY KEY (list_lc, address_lc)
    ) WITHOUT ROWID;
    CREATE TABLE list_pending (
        token       TEXT PRIMARY KEY NOT NULL,       -- random, lowercase
        list_lc     TEXT NOT NULL REFERENCES lists (name_lc) ON DELETE CASCADE,
        address     TEXT NOT NULL,                   -- who asked or posted
        action      TEXT NOT NULL CHECK (action IN ('subscribe', 'unsubscribe', 'post')),
        payload     TEXT NOT NULL DEFAULT '',        -- e.g. the queue id of a held post
        created_at  INTEGER NOT NULL,
        expires_at  INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX list_pending_list ON list_pending (list_lc);
    CREATE INDEX list_pending_expiry ON list_pending (expires_at);
    CREATE TABLE forwards (
        user_lc     TEXT PRIMARY KEY NOT NULL REFERENCES users (name_lc) ON DELETE CASCADE,
        keep_copy   INTEGER NOT NULL DEFAULT 0,
        created_at  INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE forward_targets (
        user_lc     TEXT NOT NULL REFERENCES forwards (user_lc) ON DELETE CASCADE,
        position    INTEGER NOT NULL,
        address     TEXT NOT NULL,
        PRIMARY KEY (user_lc, position)
    ) WITHOUT ROWID;
    CREATE TABLE autoreplies (
        user_lc     TEXT PRIMARY KEY NOT NULL REFERENCES users (name_lc) ON DELETE CASCADE,
        subject     TEXT NOT NULL,
        body        TEXT NOT NULL,                   -- LF line ends
        starts_at   INTEGER,                         -- unix seconds, inclusive; NULL = now
        ends_at     INTEGER,                         -- unix seconds, exclusive; NULL = open
        created_at  INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE autoreply_sent (
        user_lc     TEXT NOT NULL REFERENCES users (name_lc) ON DELETE CASCADE,
        sender_lc   TEXT NOT NULL,                   -- the lowercased sender address
        last_sent   INTEGER NOT NULL,
        PRIMARY KEY (user_lc, sender_lc)
    ) WITHOUT ROWID;
    CREATE INDEX autoreply_sent_age ON autoreply_sent (last_sent);",
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

    /// A database as version 1 left it, with users and aliases in it, is
    /// brought to the current version without losing them.
    #[test]
    fn migrates_a_version_1_database_with_data() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("dir.db");
        {
            let conn = Connection::open(&path).expect("create");
            conn.execute_batch(MIGRATIONS[0]).expect("v1 schema");
            conn.execute_batch("PRAGMA user_version = 1").expect("v1");
            let hash = crate::password::hash_password("secret").expect("hash");
            conn.execute(
                "INSERT INTO users (name_lc, name, password_hash, admin, created_at)
                 VALUES ('alice', 'Alice', ?1, 1, 1700000000)",
                [&hash],
            )
            .expect("user");
            conn.execute_batch(
                "INSERT INTO aliases VALUES ('info', 'Info', 0, 1700000000);
                 INSERT INTO alias_targets VALUES ('info', 0, 'alice');
                 INSERT INTO alias_targets VALUES ('info', 1, 'x@remote.org');
                 INSERT INTO aliases VALUES ('sales-*', 'sales-*', 1, 1700000000);
                 INSERT INTO alias_targets VALUES ('sales-*', 0, 'alice');",
            )
            .expect("aliases");
        }
        let d = crate::Directory::open(&path).expect("open migrates");
        assert_eq!(user_version(&d.lock()).expect("version"), SCHEMA_VERSION);
        const { assert!(SCHEMA_VERSION >= 2) };
        let users = d.list_users().expect("users");
        assert_eq!(users.len(), 1);
        assert_eq!(users[0].name, "Alice");
        assert!(users[0].admin);
        assert!(
            d.verify_password("alice", "secret")
                .expect("verify")
                .is_some()
        );
        let info = d.get_alias("info").expect("alias").expect("kept");
        assert_eq!(info.targets, ["alice", "x@remote.org"]);
        let local = crate::LocalDomains::new("example.org", ["example.org"], "postmaster");
        assert_eq!(
            d.resolve("sales-eu@example.org", &local),
            Ok(vec![crate::Destination::Local {
                user: "Alice".into()
            }])
        );
        // The new tables work on the migrated file, tied to the old rows.
        d.set_forward("alice", &["a@remote.org".to_owned()], true)
            .expect("forward");
        d.create_list(
            "team",
            &crate::ListOptions {
                owner: Some("alice@example.org".into()),
                ..Default::default()
            },
        )
        .expect("list");
        d.add_list_member("team", "alice@example.org")
            .expect("member");
        drop(d);
        // Reopening finds nothing to migrate and everything in place.
        let d = crate::Directory::open(&path).expect("reopen");
        assert!(d.get_forward("alice").expect("get").is_some());
        assert_eq!(d.list_members("team").expect("members").len(), 1);
    }

    #[test]
    fn in_memory_works() {
        let conn = open_in_memory().expect("open");
        assert_eq!(user_version(&conn).expect("version"), SCHEMA_VERSION);
    }
}
