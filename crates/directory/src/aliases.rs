//! Alias rules: a pattern (`local`, `local@domain`, with optional `*`
//! wildcards) and the ordered targets it expands to. Patterns are unique
//! case-insensitively; adding an existing pattern replaces its targets.

use crate::db::{db_err, now_unix, write_tx};
use crate::names::{
    MAX_ALIAS_TARGETS, fold, is_wildcard, printable, validate_pattern, validate_target,
};
use crate::namespace::check_not_a_list;
use crate::{Alias, Directory, DirectoryError};
use rusqlite::{Connection, OptionalExtension, params};

/// The targets of the alias with exactly this (folded) pattern, if any.
pub(crate) fn exact_targets(
    conn: &Connection,
    pattern_lc: &str,
) -> rusqlite::Result<Option<Vec<String>>> {
    let exists: Option<i64> = conn
        .prepare_cached("SELECT 1 FROM aliases WHERE pattern_lc = ?1 AND wildcard = 0")?
        .query_row([pattern_lc], |r| r.get(0))
        .optional()?;
    if exists.is_none() {
        return Ok(None);
    }
    targets_of(conn, pattern_lc).map(Some)
}

fn targets_of(conn: &Connection, pattern_lc: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT target FROM alias_targets WHERE pattern_lc = ?1 ORDER BY position",
    )?;
    let rows = stmt.query_map([pattern_lc], |r| r.get(0))?;
    rows.collect()
}

/// Every wildcard alias (folded pattern, targets).
pub(crate) fn wildcard_aliases(conn: &Connection) -> rusqlite::Result<Vec<(String, Vec<String>)>> {
    let mut stmt = conn
        .prepare_cached("SELECT pattern_lc FROM aliases WHERE wildcard = 1 ORDER BY pattern_lc")?;
    let patterns = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    patterns
        .into_iter()
        .map(|p| {
            let t = targets_of(conn, &p)?;
            Ok((p, t))
        })
        .collect()
}

impl Directory {
    /// Adds an alias, or replaces the targets of an existing pattern
    /// (matched case-insensitively; the new spelling is kept). Targets are
    /// kept in the given order, duplicates (any case) dropped. An exact
    /// pattern whose local part a mailing list owns is refused
    /// ([`DirectoryError::NameTaken`]).
    pub fn add_alias(&self, pattern: &str, targets: &[String]) -> Result<(), DirectoryError> {
        validate_pattern(pattern)?;
        if targets.is_empty() {
            return Err(DirectoryError::InvalidPattern(
                printable(pattern),
                "an alias needs at least one target".into(),
            ));
        }
        if targets.len() > MAX_ALIAS_TARGETS {
            return Err(DirectoryError::InvalidPattern(
                printable(pattern),
                format!("more than {MAX_ALIAS_TARGETS} targets"),
            ));
        }
        let mut unique: Vec<&str> = Vec::with_capacity(targets.len());
        for t in targets {
            validate_target(t)?;
            if !unique.iter().any(|u| u.eq_ignore_ascii_case(t)) {
                unique.push(t);
            }
        }
        let key = fold(pattern);
        let mut conn = self.lock();
        let tx = write_tx(&mut conn)?;
        if !is_wildcard(pattern) {
            let local = pattern.split('@').next().unwrap_or(pattern);
            check_not_a_list(&tx, pattern, local)?;
        }
        tx.execute("DELETE FROM alias_targets WHERE pattern_lc = ?1", [&key])
            .map_err(db_err)?;
        tx.execute(
            "INSERT INTO aliases (pattern_lc, pattern, wildcard, created_at)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (pattern_lc) DO UPDATE SET pattern = excluded.pattern",
            params![key, pattern, is_wildcard(pattern), now_unix()],
        )
        .map_err(db_err)?;
        {
            let mut ins = tx
                .prepare_cached(
                    "INSERT INTO alias_targets (pattern_lc, position, target) VALUES (?1, ?2, ?3)",
                )
                .map_err(db_err)?;
            for (i, t) in unique.iter().enumerate() {
                ins.execute(params![key, i64::try_from(i).unwrap_or(i64::MAX), t])
                    .map_err(db_err)?;
            }
        }
        tx.commit().map_err(db_err)?;
        tracing::info!(pattern, targets = unique.len(), "alias set");
        Ok(())
    }

    /// Deletes the alias with this pattern (case-insensitively).
    pub fn delete_alias(&self, pattern: &str) -> Result<(), DirectoryError> {
        let key = fold(pattern);
        let mut conn = self.lock();
        let tx = write_tx(&mut conn)?;
        tx.execute("DELETE FROM alias_targets WHERE pattern_lc = ?1", [&key])
            .map_err(db_err)?;
        let n = tx
            .execute("DELETE FROM aliases WHERE pattern_lc = ?1", [&key])
            .map_err(db_err)?;
        if n == 0 {
            return Err(DirectoryError::NoSuchAlias(printable(pattern)));
        }
        tx.commit().map_err(db_err)?;
        tracing::info!(pattern, "alias deleted");
        Ok(())
    }

    /// All aliases ordered by pattern (case-insensitively), targets in their order.
    pub fn list_aliases(&self) -> Result<Vec<Alias>, DirectoryError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached("SELECT pattern_lc, pattern FROM aliases ORDER BY pattern_lc")
            .map_err(db_err)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(db_err)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(db_err)?;
        rows.into_iter()
            .map(|(key, pattern)| {
                Ok(Alias {
                    pattern,
                    targets: targets_of(&conn, &key).map_err(db_err)?,
                })
            })
            .collect()
    }

    /// The alias with exactly this pattern (case-insensitively), if any.
    pub fn get_alias(&self, pattern: &str) -> Result<Option<Alias>, DirectoryError> {
        let key = fold(pattern);
        let conn = self.lock();
        let stored: Option<String> = conn
            .prepare_cached("SELECT pattern FROM aliases WHERE pattern_lc = ?1")
            .map_err(db_err)?
            .query_row([&key], |r| r.get(0))
            .optional()
            .map_err(db_err)?;
        match stored {
            None => Ok(None),
            Some(pattern) => Ok(Some(Alias {
                pattern,
                targets: targets_of(&conn, &key).map_err(db_err)?,
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{Alias, Directory, DirectoryError};

    fn v(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn add_list_replace_delete() {
        let d = Directory::open_in_memory().expect("open");
        d.add_alias("sales-*", &v(&["bob"])).expect("add");
        d.add_alias("Carsten.Doil", &v(&["rusdoil"])).expect("add");
        d.add_alias("team", &v(&["a", "b@other.org", "A"]))
            .expect("add");
        let all = d.list_aliases().expect("list");
        assert_eq!(
            all,
            vec![
                Alias {
                    pattern: "Carsten.Doil".into(),
                    targets: v(&["rusdoil"])
                },
                Alias {
                    pattern: "sales-*".into(),
                    targets: v(&["bob"])
                },
                Alias {
                    pattern: "team".into(),
                    targets: v(&["a", "b@other.org"])
                },
            ]
        );
        // Replacing, matched case-insensitively.
        d.add_alias("TEAM", &v(&["c"])).expect("replace");
        let team = d.get_alias("team").expect("get").expect("exists");
        assert_eq!(team.pattern, "TEAM");
        assert_eq!(team.targets, v(&["c"]));
        assert_eq!(d.list_aliases().expect("list").len(), 3);

        d.delete_alias("carsten.doil").expect("delete");
        assert_eq!(d.get_alias("Carsten.Doil").expect("get"), None);
        assert!(matches!(
            d.delete_alias("carsten.doil"),
            Err(DirectoryError::NoSuchAlias(_))
        ));
        assert_eq!(d.list_aliases().expect("list").len(), 2);
    }

    #[test]
    fn invalid_aliases_are_refused() {
        let d = Directory::open_in_memory().expect("open");
        assert!(matches!(
            d.add_alias("a b", &v(&["bob"])),
            Err(DirectoryError::InvalidPattern(..))
        ));
        assert!(matches!(
            d.add_alias("x", &[]),
            Err(DirectoryError::InvalidPattern(..))
        ));
        assert!(matches!(
            d.add_alias("x", &v(&["bob", "a@b@c"])),
            Err(DirectoryError::InvalidTarget(..))
        ));
        assert!(matches!(
            d.add_alias("x", &v(&["bo*b"])),
            Err(DirectoryError::InvalidTarget(..))
        ));
        let many: Vec<String> = (0..1001).map(|i| format!("u{i}")).collect();
        assert!(matches!(
            d.add_alias("x", &many),
            Err(DirectoryError::InvalidPattern(..))
        ));
        assert!(d.list_aliases().expect("list").is_empty());
    }
}
