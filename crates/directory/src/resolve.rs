//! Address resolution: expands one recipient address through the aliases
//! into final [`Destination`]s (local mailboxes and remote addresses); and
//! classification, which also knows lists and forwards.
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
//!
//! `resolve` knows nothing of mailing lists and forwards: a list address is
//! unknown to it, and a user with a forward resolves to the user's mailbox
//! (which is what the sender-ownership check of submission wants).
//!
//! # Classification ([`Directory::classify`])
//!
//! The receiver (is this recipient ours?) and the delivery agent (what do
//! I do with it?) ask `classify`. For a remote address it gives
//! `Deliver` with `Remote{address}`; an invalid one is `Unknown`. For a
//! local address `l@d`, in this order:
//!
//! 1. `l` names a list (any case) → [`Target::List`];
//! 2. `l` is `NAME-request`, `NAME-bounces` or `NAME-owner` of a list →
//!    [`Target::ListRequest`], [`Target::ListBounces`], [`Target::ListOwner`];
//! 3. otherwise the resolution rules above, with two additions, giving
//!    [`Target::Deliver`] with an [`Expansion`]:
//!    - an alias target or forward address that names a list adds that list
//!      to [`Expansion::lists`] (a list's service address reached that way
//!      is skipped like an unknown target);
//!    - wherever a user is reached (rule 3, a bare target, a
//!      self-reference, the postmaster's admins), the user goes into
//!      [`Expansion::users`], and **the user's forward applies**: without a
//!      forward, `Local{user}`; with one, `Local{user}` only if it keeps a
//!      copy, plus each forward address expanded like an alias target (a
//!      remote one is `Remote{address}`, a local one is resolved again by
//!      these rules, its own forward included). A forward address that is
//!      the user's own address (`user@` any local domain) means the
//!      mailbox. Forward addresses that do not resolve are skipped with a
//!      warning; if none resolves and no copy is kept, the mailbox gets the
//!      message (mail is never dropped for a stale forward).
//!
//! A user reached again while their own forward is being expanded (`a`
//! forwards to `b`, `b` forwards to `a`) is a loop:
//! `ResolveError::Loop("a (forward)")`. A forward counts as one level
//! against [`MAX_ALIAS_DEPTH`]. A user reached twice on different paths is
//! expanded once. `Deliver` never carries an empty expansion (that is
//! `Unknown`).

#[cfg(doc)]
use crate::Directory;
use crate::aliases::{exact_targets, wildcard_aliases};
use crate::names::{
    ListRole, fold, is_full_address, specificity, split_list_suffix, wildcard_match,
};
use crate::namespace::list_name;
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
    /// Classification (`classify`) rather than plain resolution: lists
    /// are found and users' forwards applied.
    classify: bool,
    /// Lists reached through aliases or forwards (stored names).
    lists: BTreeSet<String>,
    /// Users reached (stored names), forwarded or not.
    users: BTreeSet<String>,
    /// Folded names of the users whose forward is being expanded.
    forwarding: Vec<String>,
    /// Folded names of the users already handled.
    users_done: HashSet<String>,
}

fn db(e: rusqlite::Error) -> ResolveError {
    ResolveError::Db(e.to_string())
}

impl<'a> Resolver<'a> {
    fn new(conn: &'a Connection, domains: &'a LocalDomains, classify: bool) -> Resolver<'a> {
        Resolver {
            conn,
            domains,
            wildcards: None,
            path: Vec::new(),
            done: HashSet::new(),
            unknown: HashSet::new(),
            out: BTreeSet::new(),
            classify,
            lists: BTreeSet::new(),
            users: BTreeSet::new(),
            forwarding: Vec::new(),
            users_done: HashSet::new(),
        }
    }

    /// A local user is reached (at `depth`): their mailbox, or in
    /// classification mode their forward, applies.
    fn user(&mut self, user: String, depth: usize) -> Result<(), ResolveError> {
        if !self.classify {
            self.out.insert(Destination::Local { user });
            return Ok(());
        }
        let key = fold(&user);
        if self.forwarding.contains(&key) {
            return Err(ResolveError::Loop(format!("{user} (forward)")));
        }
        self.users.insert(user.clone());
        if !self.users_done.insert(key.clone()) {
            return Ok(());
        }
        let Some(forward) = crate::forwards::lookup(self.conn, &key).map_err(db)? else {
            self.out.insert(Destination::Local { user });
            return Ok(());
        };
        if depth >= MAX_ALIAS_DEPTH {
            return Err(ResolveError::TooDeep(MAX_ALIAS_DEPTH));
        }
        if forward.keep_copy {
            self.out.insert(Destination::Local { user: user.clone() });
        }
        self.forwarding.push(key.clone());
        let mut delivered = forward.keep_copy;
        let mut result = Ok(());
        for address in &forward.addresses {
            // The user's own address means the mailbox, directly.
            if matches!(parse(address, self.domains), Addr::Local { ref local, .. } if fold(local) == key)
            {
                self.out.insert(Destination::Local { user: user.clone() });
                delivered = true;
                continue;
            }
            match self.target(address, depth + 1) {
                Ok(()) => delivered = true,
                Err(ResolveError::Unknown) => {
                    tracing::warn!(user = %user, target = %address, "forward target does not resolve; skipped");
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        self.forwarding.pop();
        result?;
        if !delivered {
            tracing::warn!(user = %user, "no forward target resolves; delivering to the mailbox");
            self.out.insert(Destination::Local { user });
        }
        Ok(())
    }

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
            return self.user(user, depth);
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
                    return self.user(user, depth);
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
        // 0. (classification only): a list.
        if self.classify {
            if let Some(name) = list_name(self.conn, local_lc).map_err(db)? {
                self.lists.insert(name);
                return Ok(());
            }
            if let Some((base, _)) = split_list_suffix(local_lc)
                && list_name(self.conn, base).map_err(db)?.is_some()
            {
                // A list's service address reached through an alias or a
                // forward: not a place a copy can go.
                return Err(ResolveError::Unknown);
            }
        }
        // 1. and 2.: exact aliases.
        if let Some(targets) = exact_targets(self.conn, key).map_err(db)? {
            return self.expand(key, &targets, depth);
        }
        if let Some(targets) = exact_targets(self.conn, local_lc).map_err(db)? {
            return self.expand(key, &targets, depth);
        }
        // 3.: a user.
        if let Some(user) = canonical_name(self.conn, local_lc).map_err(db)? {
            return self.user(user, depth);
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
                self.user(user, depth)?;
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
    let mut r = Resolver::new(&tx, domains, false);
    r.address(address)?;
    let out = std::mem::take(&mut r.out);
    drop(r);
    // Nothing was written; ending the read transaction either way is fine.
    tx.rollback().map_err(db)?;
    Ok(out.into_iter().collect())
}

/// What a recipient address is; see [`Directory::classify`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `NAME@local-domain`: the list itself (stored name).
    List { name: String },
    /// `NAME-request@`: requests by mail (subscribe, unsubscribe, help).
    ListRequest { name: String },
    /// `NAME-bounces@`: the envelope sender of list mail; bounces arrive here.
    ListBounces { name: String },
    /// `NAME-owner@`: goes to the list's owner address.
    ListOwner { name: String },
    /// Anything else that is deliverable: see [`Expansion`].
    Deliver(Expansion),
}

/// Where a non-list address leads, forwards applied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expansion {
    /// Mailboxes and remote addresses that get a copy, deduplicated and
    /// sorted (local first), as [`Directory::resolve`] orders them.
    ///
    /// [`Directory::resolve`]: crate::Directory::resolve
    pub destinations: Vec<Destination>,
    /// Lists reached through an alias or a forward (stored names, sorted):
    /// the message goes to each as if addressed to it.
    pub lists: Vec<String>,
    /// Every local user the address reached (stored names, sorted),
    /// whether their mailbox keeps the message or their forward sends it
    /// on: the users whose auto-reply may answer.
    pub users: Vec<String>,
}

impl Expansion {
    /// Whether nothing receives the message.
    pub fn is_empty(&self) -> bool {
        self.destinations.is_empty() && self.lists.is_empty()
    }
}

/// Classifies `address` on `conn` (see the module documentation).
pub(crate) fn classify(
    conn: &mut Connection,
    address: &str,
    domains: &LocalDomains,
) -> Result<Target, ResolveError> {
    let tx = conn.transaction().map_err(db)?;
    let target = classify_in(&tx, address, domains)?;
    tx.rollback().map_err(db)?;
    Ok(target)
}

fn classify_in(
    conn: &Connection,
    address: &str,
    domains: &LocalDomains,
) -> Result<Target, ResolveError> {
    let (local, domain) = match parse(address, domains) {
        Addr::Invalid => return Err(ResolveError::Unknown),
        Addr::Remote => {
            return Ok(Target::Deliver(Expansion {
                destinations: vec![Destination::Remote {
                    address: address.to_owned(),
                }],
                ..Expansion::default()
            }));
        }
        Addr::Local { local, domain } => (local, domain),
    };
    let local_lc = fold(&local);
    if let Some(name) = list_name(conn, &local_lc).map_err(db)? {
        return Ok(Target::List { name });
    }
    if let Some((base, role)) = split_list_suffix(&local_lc)
        && let Some(name) = list_name(conn, base).map_err(db)?
    {
        return Ok(match role {
            ListRole::Request => Target::ListRequest { name },
            ListRole::Bounces => Target::ListBounces { name },
            ListRole::Owner => Target::ListOwner { name },
        });
    }
    let mut r = Resolver::new(conn, domains, true);
    r.local(&local, &domain, 0)?;
    let expansion = Expansion {
        destinations: std::mem::take(&mut r.out).into_iter().collect(),
        lists: std::mem::take(&mut r.lists).into_iter().collect(),
        users: std::mem::take(&mut r.users).into_iter().collect(),
    };
    if expansion.is_empty() {
        return Err(ResolveError::Unknown);
    }
    Ok(Target::Deliver(expansion))
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod classify_tests;
