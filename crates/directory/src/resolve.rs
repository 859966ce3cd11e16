//! Address resolution: expands one recipient address through the aliases
//! into final [`Destination`]s (local mailboxes and remote addresses).
//!
//! # The rules
//!
//! **Input.** `local@domain` or a bare `local` (meaning the primary domain,
//! `LocalDomains::domains[0]`). Domains compare case-insensitively, a
//! trailing dot ignored. A domain that is not ours gives `Remote{address}`,
//! the address as given. Local parts compare ASCII-case-insensitively.
//!
//! **A local address** `l@d` is looked up in this order; the first rule that
//! matches decides, later ones are not consulted:
//! 1. an exact alias on the full address `l@d`;
//! 2. an exact alias on the local part `l` (it applies in every local domain);
//! 3. a user named `l` → `Local{user}` with the user's stored spelling;
//! 4. the most specific matching wildcard alias: the one with the most
//!    non-`*` characters in its local part, then full-address patterns before
//!    local-part patterns, then the most non-`*` characters in the domain,
//!    then the alphabetically first. (So `sales-*` beats the catch-all
//!    `*@example.org` for `sales-eu@example.org`, and `*@example.org` beats
//!    `*`.) Full-address patterns match `l@d`, local-part patterns match `l`;
//! 5. if `l` is `postmaster` (any case): the configured postmaster address,
//!    expanded like an alias target, unless it is itself `postmaster` at a
//!    local domain (or bare), which would only lead back here; then the
//!    admin accounts' mailboxes; and with no admin either, a mailbox named
//!    `postmaster` that the admin reads on disk. RFC 5321 §4.5.1 requires
//!    that postmaster mail is always accepted, so this rule never fails;
//! 6. otherwise the address is unknown ([`ResolveError::Unknown`]).
//!
//! **Targets** of a matching alias (rules 1, 2, 4, 5) are expanded one by one:
//! - a bare target that is the name of an existing user (`bob`) is that
//!   user's mailbox, **directly**: it is not looked up in the aliases again.
//!   This is how an alias keeps a local copy: `bob -> bob, bob@remote.org`.
//!   (Like sendmail's `\bob`.) To go through the aliases, write a full address;
//! - a target equal to the very address being expanded (a self-reference,
//!   e.g. `bob@example.org -> bob@example.org, bob@remote.org`) whose local
//!   part names an existing user is that user's mailbox, directly, too;
//! - any other target is an address and is resolved by the rules above, a
//!   bare one at the primary domain (`team -> sales` resolves `sales@primary`);
//!   a target at a remote domain is `Remote{target}`.
//!
//! **Errors and limits.** An address met again while it is still being
//! expanded is a loop ([`ResolveError::Loop`] naming it). More than
//! [`MAX_ALIAS_DEPTH`] alias expansions in a chain give
//! [`ResolveError::TooDeep`]. Both abort the whole resolution: they are
//! configuration errors to fix, not to guess around. A target that is
//! unknown is skipped (with a warning in the log) so that one stale member
//! does not make an alias undeliverable for the others; an alias none of
//! whose targets resolves is itself unknown. An address reached twice
//! through different aliases is expanded once, so the work is bounded by
//! the size of the alias table, whatever its shape.
//!
//! **Output**: deduplicated and sorted (local mailboxes first). A `Local`
//! user name always comes from the users table, hence always passed
//! [`crate::validate_user_name`]: it is safe as a path component.
//!
//! The whole resolution reads one consistent snapshot of the database.

use crate::aliases::{exact_targets, wildcard_aliases};
use crate::names::{fold, is_full_address, specificity, wildcard_match};
use crate::users::canonical_name;
use crate::{Destination, LocalDomains, MAX_ALIAS_DEPTH, ResolveError};
use rusqlite::Connection;
use std::collections::{BTreeSet, HashSet};

/// A parsed input address or target.
#[derive(Debug, PartialEq, Eq)]
enum Addr {
    /// At one of our domains: the local part as given, the folded domain.
    Local { local: String, domain: String },
    /// Elsewhere.
    Remote,
    /// Not an address we can do anything with.
    Invalid,
}

fn parse(address: &str, domains: &LocalDomains) -> Addr {
    if address.is_empty()
        || address.len() > 1024
        || address.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Addr::Invalid;
    }
    match address.rsplit_once('@') {
        Some((local, domain)) => {
            let domain = domain.trim_end_matches('.');
            if local.is_empty() || domain.is_empty() {
                Addr::Invalid
            } else if domains.contains(domain) {
                Addr::Local {
                    local: local.to_owned(),
                    domain: fold(domain),
                }
            } else {
                Addr::Remote
            }
        }
        None => match domains.domains.first() {
            Some(primary) => Addr::Local {
                local: address.to_owned(),
                domain: fold(primary.trim_end_matches('.')),
            },
            None => Addr::Invalid,
        },
    }
}

fn is_postmaster(local: &str) -> bool {
    local.eq_ignore_ascii_case("postmaster")
}

/// One resolution's state.
struct Resolver<'a> {
    conn: &'a Connection,
    domains: &'a LocalDomains,
    /// Wildcard aliases, most specific first; loaded on first need.
    wildcards: Option<Vec<(String, Vec<String>)>>,
    /// Folded addresses being expanded, outermost first.
    path: Vec<String>,
    /// Folded addresses fully expanded with a result.
    done: HashSet<String>,
    /// Folded addresses found unknown.
    unknown: HashSet<String>,
    out: BTreeSet<Destination>,
}

fn db(e: rusqlite::Error) -> ResolveError {
    ResolveError::Db(e.to_string())
}

impl Resolver<'_> {
    /// Resolves an input address (the top level).
    fn address(&mut self, address: &str) -> Result<(), ResolveError> {
        match parse(address, self.domains) {
            Addr::Remote => {
                self.out.insert(Destination::Remote {
                    address: address.to_owned(),
                });
                Ok(())
            }
            Addr::Local { local, domain } => self.local(&local, &domain, 0),
            Addr::Invalid => Err(ResolveError::Unknown),
        }
    }

    /// Expands one alias target, `depth` being its own depth.
    fn target(&mut self, target: &str, depth: usize) -> Result<(), ResolveError> {
        if !target.contains('@')
            && let Some(user) = canonical_name(self.conn, target).map_err(db)?
        {
            self.out.insert(Destination::Local { user });
            return Ok(());
        }
        match parse(target, self.domains) {
            Addr::Remote => {
                self.out.insert(Destination::Remote {
                    address: target.to_owned(),
                });
                Ok(())
            }
            Addr::Local { local, domain } => {
                let key = format!("{}@{domain}", fold(&local));
                if self.path.last() == Some(&key)
                    && let Some(user) = canonical_name(self.conn, &local).map_err(db)?
                {
                    self.out.insert(Destination::Local { user });
                    return Ok(());
                }
                self.local(&local, &domain, depth)
            }
            Addr::Invalid => Err(ResolveError::Unknown),
        }
    }

    /// Resolves a local address by the precedence rules.
    fn local(&mut self, local: &str, domain: &str, depth: usize) -> Result<(), ResolveError> {
        let local_lc = fold(local);
        let key = format!("{local_lc}@{domain}");
        if self.path.contains(&key) {
            return Err(ResolveError::Loop(key));
        }
        if self.done.contains(&key) {
            return Ok(());
        }
        if self.unknown.contains(&key) {
            return Err(ResolveError::Unknown);
        }
        let result = self.local_uncached(&local_lc, &key, depth);
        match &result {
            Ok(()) => {
                self.done.insert(key);
            }
            Err(ResolveError::Unknown) => {
                self.unknown.insert(key);
            }
            Err(_) => {}
        }
        result
    }

    fn local_uncached(
        &mut self,
        local_lc: &str,
        key: &str,
        depth: usize,
    ) -> Result<(), ResolveError> {
        // 1. and 2.: exact aliases.
        if let Some(targets) = exact_targets(self.conn, key).map_err(db)? {
            return self.expand(key, &targets, depth);
        }
        if let Some(targets) = exact_targets(self.conn, local_lc).map_err(db)? {
            return self.expand(key, &targets, depth);
        }
        // 3.: a user.
        if let Some(user) = canonical_name(self.conn, local_lc).map_err(db)? {
            self.out.insert(Destination::Local { user });
            return Ok(());
        }
        // 4.: the most specific wildcard.
        if let Some(targets) = self.best_wildcard(local_lc, key)? {
            return self.expand(key, &targets, depth);
        }
        // 5.: postmaster.
        if is_postmaster(local_lc) {
            let pm = self.domains.postmaster.clone();
            let loops_back = match parse(&pm, self.domains) {
                Addr::Local { local, .. } => is_postmaster(&local),
                Addr::Remote => false,
                Addr::Invalid => true,
            };
            if !loops_back {
                return self.expand(key, &[pm], depth);
            }
            let admins = crate::users::admin_names(self.conn).map_err(db)?;
            if admins.is_empty() {
                self.out.insert(Destination::Local {
                    user: "postmaster".to_owned(),
                });
            }
            for user in admins {
                self.out.insert(Destination::Local { user });
            }
            return Ok(());
        }
        // 6.
        Err(ResolveError::Unknown)
    }

    fn best_wildcard(
        &mut self,
        local_lc: &str,
        key: &str,
    ) -> Result<Option<Vec<String>>, ResolveError> {
        if self.wildcards.is_none() {
            let mut all = wildcard_aliases(self.conn).map_err(db)?;
            // Most specific first; ties broken by the pattern for determinism.
            all.sort_by(|(a, _), (b, _)| specificity(b).cmp(&specificity(a)).then(a.cmp(b)));
            self.wildcards = Some(all);
        }
        let wildcards = self.wildcards.as_deref().unwrap_or_default();
        Ok(wildcards
            .iter()
            .find(|(pattern, _)| {
                let subject = if is_full_address(pattern) {
                    key
                } else {
                    local_lc
                };
                wildcard_match(pattern, subject)
            })
            .map(|(_, targets)| targets.clone()))
    }

    /// Expands the targets of the rule that matched `key` at `depth`.
    fn expand(&mut self, key: &str, targets: &[String], depth: usize) -> Result<(), ResolveError> {
        if depth >= MAX_ALIAS_DEPTH {
            return Err(ResolveError::TooDeep(MAX_ALIAS_DEPTH));
        }
        self.path.push(key.to_owned());
        let mut resolved = 0usize;
        let mut result = Ok(());
        for t in targets {
            match self.target(t, depth + 1) {
                Ok(()) => resolved += 1,
                Err(ResolveError::Unknown) => {
                    tracing::warn!(alias = key, target = %t, "alias target does not resolve; skipped");
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        self.path.pop();
        result?;
        if resolved == 0 {
            return Err(ResolveError::Unknown);
        }
        Ok(())
    }
}

/// Resolves `address` on `conn` (see the module documentation for the rules).
pub(crate) fn resolve(
    conn: &mut Connection,
    address: &str,
    domains: &LocalDomains,
) -> Result<Vec<Destination>, ResolveError> {
    // A read transaction: one snapshot for every lookup below.
    let tx = conn.transaction().map_err(db)?;
    let mut r = Resolver {
        conn: &tx,
        domains,
        wildcards: None,
        path: Vec::new(),
        done: HashSet::new(),
        unknown: HashSet::new(),
        out: BTreeSet::new(),
    };
    r.address(address)?;
    let out = std::mem::take(&mut r.out);
    drop(r);
    // Nothing was written; ending the read transaction either way is fine.
    tx.rollback().map_err(db)?;
    Ok(out.into_iter().collect())
}

#[cfg(test)]
mod tests;
