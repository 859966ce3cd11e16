//! Admin operations the web admin needed first (the CLI may use them too):
//! the admin role, mailbox sizes, the address tester ("which rule does
//! this address hit?"), a list's moderation queue with approve/reject,
//! bouncing a queued message, and a user's own lists (see and leave).

use crate::control::{self, Command};
use crate::{Admin, OpsError};
use postamt_directory::names::{fold, is_full_address, specificity, wildcard_match};
use postamt_directory::{
    Destination, DirectoryError, ListInfo, Pending, PendingAction, ResolveError, Target,
};
use postamt_spool::{QueueId, RecipientStatus};
use serde::Serialize;
use std::path::Path;

/// The reason a recipient bounced by the admin gets (and its status code).
const RETURNED_BY_ADMIN: &str = "5.0.0 returned to the sender by the postmaster";

/// Most files counted when sizing one mailbox (a bounded walk).
pub const MAX_MAILBOX_FILES: u64 = 1_000_000;

/// The `delivered_to` marks of held and approved list posts, the same the
/// delivery agent writes and reads.
pub use postamt_spool::marks::{approved_mark, held_mark};

/// The size of a mailbox on disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MailboxSize {
    pub bytes: u64,
    /// Message files (in `new/` and `cur/` of every folder).
    pub messages: u64,
    /// The walk stopped at [`MAX_MAILBOX_FILES`]: the figures are a floor.
    pub truncated: bool,
}

/// Which rule an address hits, as the resolution rules order them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RuleHit {
    /// The address is at a domain that is not ours: sent out as it is.
    Remote,
    /// A mailing list (`role` is `list`, `request`, `bounces` or `owner`).
    List { name: String, role: String },
    /// An alias without wildcard on the full address or the local part.
    ExactAlias { pattern: String },
    /// A user account.
    User { name: String },
    /// The most specific matching wildcard alias.
    WildcardAlias { pattern: String },
    /// The postmaster fallback (the configured postmaster address).
    Postmaster,
    /// Nothing: the address is refused.
    Unknown,
}

/// The tester's answer: the rule, and where mail to the address goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AddressTest {
    /// The address as tested (a bare name completed with the primary domain).
    pub address: String,
    pub rule: RuleHit,
    /// Local mailboxes (`user`) and remote addresses, forwards applied.
    pub mailboxes: Vec<String>,
    pub remote: Vec<String>,
    /// Lists reached through aliases or forwards.
    pub lists: Vec<String>,
    /// When the address does not resolve: why (unknown, loop, too deep).
    pub error: Option<String>,
}

/// A post waiting for a moderator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HeldPost {
    pub token: String,
    pub list: String,
    pub sender: String,
    pub queue_id: String,
    /// The post's subject, when the message is still queued.
    pub subject: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
}

/// What a moderation decision did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Moderated {
    pub list: String,
    pub queue_id: String,
    pub approved: bool,
    /// Recipients of the held message that waited for this list.
    pub recipients: usize,
    pub server_notified: bool,
}

/// One list a user belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Membership {
    pub list: String,
    /// The member address that is the user's.
    pub address: String,
    pub posting: String,
}

impl Admin {
    /// Gives or takes the admin role.
    pub fn set_admin(&self, name: &str, admin: bool) -> Result<(), OpsError> {
        self.directory.set_admin(name, admin)?;
        tracing::info!(user = name, admin, "admin role changed");
        Ok(())
    }

    /// The size of `user`'s mailbox (`None` when it does not exist yet).
    pub fn mailbox_size(&self, user: &str) -> Result<Option<MailboxSize>, OpsError> {
        let store = postamt_store::MailStore::new(
            &self.config.mailbox_template(),
            &self.config.primary_domain(),
            false,
        );
        let dir = store
            .mailbox_dir(user)
            .map_err(|e| OpsError::Invalid(format!("no mailbox path for {user}: {e}")))?;
        if !dir.is_dir() {
            return Ok(None);
        }
        let mut size = MailboxSize::default();
        walk_maildir(&dir, &mut size, 0);
        Ok(Some(size))
    }

    /// Which rule `address` hits and where its mail goes. A bare name is
    /// taken at the primary domain.
    pub fn test_address(&self, address: &str) -> Result<AddressTest, OpsError> {
        let address = address.trim();
        if address.is_empty() {
            return Err(OpsError::Invalid("address: give an address to test".into()));
        }
        if address.len() > 320 || address.chars().any(char::is_control) {
            return Err(OpsError::Invalid(
                "address: too long or contains control characters".into(),
            ));
        }
        let address = self.qualify(address);
        let local = self.local_domains();
        let rule = self.rule_hit(&address, &local)?;
        let mut test = AddressTest {
            address: address.clone(),
            rule,
            mailboxes: Vec::new(),
            remote: Vec::new(),
            lists: Vec::new(),
            error: None,
        };
        match self.directory.classify(&address, &local) {
            Ok(Target::Deliver(exp)) => {
                for d in exp.destinations {
                    match d {
                        Destination::Local { user } => test.mailboxes.push(user),
                        Destination::Remote { address } => test.remote.push(address),
                    }
                }
                test.lists = exp.lists;
            }
            Ok(Target::List { name }) => test.lists.push(name),
            Ok(
                Target::ListRequest { name }
                | Target::ListBounces { name }
                | Target::ListOwner { name },
            ) => test.lists.push(name),
            Err(ResolveError::Db(e)) => return Err(DirectoryError::Db(e).into()),
            Err(e) => test.error = Some(e.to_string()),
        }
        Ok(test)
    }

    /// The first rule of the resolution order that matches `address`.
    fn rule_hit(
        &self,
        address: &str,
        local: &postamt_directory::LocalDomains,
    ) -> Result<RuleHit, OpsError> {
        let Some((l, d)) = address.rsplit_once('@') else {
            return Ok(RuleHit::Unknown);
        };
        if !local.contains(d) {
            return Ok(RuleHit::Remote);
        }
        if let Some(list) = self.directory.get_list(l)? {
            return Ok(RuleHit::List {
                name: list.name,
                role: "list".into(),
            });
        }
        if let Some((base, role)) = postamt_directory::names::split_list_suffix(l)
            && let Some(list) = self.directory.get_list(base)?
        {
            return Ok(RuleHit::List {
                name: list.name,
                role: role.suffix().trim_start_matches('-').to_string(),
            });
        }
        let aliases = self.directory.list_aliases()?;
        let (full, lp) = (fold(&format!("{l}@{}", d.trim_end_matches('.'))), fold(l));
        for wanted in [&full, &lp] {
            if let Some(a) = aliases
                .iter()
                .find(|a| !a.pattern.contains('*') && fold(&a.pattern) == *wanted)
            {
                return Ok(RuleHit::ExactAlias {
                    pattern: a.pattern.clone(),
                });
            }
        }
        if let Some(u) = self.directory.get_user(l)? {
            return Ok(RuleHit::User { name: u.name });
        }
        let best = aliases
            .iter()
            .filter(|a| a.pattern.contains('*'))
            .filter(|a| {
                let p = fold(&a.pattern);
                if is_full_address(&p) {
                    wildcard_match(&p, &full)
                } else {
                    wildcard_match(&p, &lp)
                }
            })
            .max_by(|a, b| {
                specificity(&a.pattern)
                    .cmp(&specificity(&b.pattern))
                    // Alphabetically first wins a tie: reverse the order.
                    .then_with(|| b.pattern.cmp(&a.pattern))
            });
        if let Some(a) = best {
            return Ok(RuleHit::WildcardAlias {
                pattern: a.pattern.clone(),
            });
        }
        if lp == "postmaster" {
            return Ok(RuleHit::Postmaster);
        }
        Ok(RuleHit::Unknown)
    }

    /// The posts of list `name` waiting for a moderator, oldest first.
    pub fn moderation_queue(&self, name: &str) -> Result<Vec<HeldPost>, OpsError> {
        let list = self.get_list(name)?;
        let mut out: Vec<HeldPost> = self
            .directory
            .list_pending(&list.name)?
            .into_iter()
            .filter(|p| p.action == PendingAction::Post)
            .map(|p| HeldPost {
                subject: self.held_subject(&p.payload),
                token: p.token,
                list: p.list,
                sender: p.address,
                queue_id: p.payload,
                created_at: p.created_at,
                expires_at: p.expires_at,
            })
            .collect();
        out.sort_by_key(|h| h.created_at);
        Ok(out)
    }

    fn held_subject(&self, queue_id: &str) -> Option<String> {
        let id: QueueId = queue_id.parse().ok()?;
        let data = self.spool.read_message(&id).ok()?;
        let head_len = data.len().min(64 * 1024);
        let head = String::from_utf8_lossy(&data[..head_len]);
        for line in head.split('\n') {
            let line = line.trim_end_matches('\r');
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("subject")
            {
                return Some(v.trim().chars().take(200).collect());
            }
        }
        None
    }

    /// Approves (the post goes to the members) or rejects (the poster gets
    /// a bounce) the held post with `token` on list `name`, as the owner's
    /// "approve"/"reject" reply would.
    pub fn moderate(&self, name: &str, token: &str, approve: bool) -> Result<Moderated, OpsError> {
        let list = self.get_list(name)?;
        let pending: Pending = self
            .directory
            .get_pending(token)?
            .ok_or(DirectoryError::NoSuchToken)?;
        if pending.action != PendingAction::Post || !pending.list.eq_ignore_ascii_case(&list.name) {
            return Err(DirectoryError::NoSuchToken.into());
        }
        let now = chrono::Utc::now().timestamp();
        let pending = self.directory.take_pending(token, now)?;
        let id: QueueId = pending.payload.parse()?;
        let mut env = self.spool.get(&id)?;
        let (held, approved) = (held_mark(&list.name), approved_mark(&list.name));
        let mut recipients = 0;
        for r in env.recipients.iter_mut() {
            if !r.delivered_to.contains(&held) {
                continue;
            }
            recipients += 1;
            r.delivered_to.retain(|d| d != &held);
            if approve {
                r.delivered_to.push(approved.clone());
                r.last_error = None;
            } else if r.status == RecipientStatus::Pending {
                r.status = RecipientStatus::Failed;
                r.last_error = Some(format!(
                    "5.7.1 post not accepted by the moderator of list {}",
                    list.name
                ));
            }
        }
        if env
            .recipients
            .iter()
            .all(|r| !r.delivered_to.iter().any(|d| d.starts_with("held:")))
        {
            env.held = false;
        }
        env.next_attempt = now;
        self.spool.update(&env)?;
        tracing::info!(queue_id = %id, list = %list.name, poster = %pending.address, approved = approve, recipients, "held post decided by admin");
        Ok(Moderated {
            list: list.name,
            queue_id: id.0,
            approved: approve,
            recipients,
            server_notified: self.tell_server(Command::Rescan),
        })
    }

    /// Returns a queued message to its sender: every pending recipient
    /// fails with `5.0.0`, and the delivery agent sends one bounce (unless
    /// the sender is `<>`) and removes the message.
    pub fn queue_bounce(&self, id: &str) -> Result<usize, OpsError> {
        let id: QueueId = id.parse()?;
        let mut env = self.spool.get(&id)?;
        let mut n = 0;
        for r in env.recipients.iter_mut() {
            if r.status == RecipientStatus::Pending {
                r.status = RecipientStatus::Failed;
                r.last_error = Some(RETURNED_BY_ADMIN.into());
                n += 1;
            }
        }
        if n == 0 {
            return Err(OpsError::Invalid(format!(
                "message {id} has no pending recipient to bounce"
            )));
        }
        env.held = false;
        env.next_attempt = chrono::Utc::now().timestamp();
        self.spool.update(&env)?;
        tracing::info!(queue_id = %id, recipients = n, "bounced by admin");
        // Counted like the delivery agent's bounces (in the server's
        // metrics when the web admin does it; a CLI process has its own).
        let class = postamt_metrics::BounceClass::of_status(RETURNED_BY_ADMIN);
        for _ in 0..n {
            postamt_metrics::global().bounced(class);
        }
        self.tell_server(Command::Rescan);
        Ok(n)
    }

    /// The lists `user` is a member of (under any of our domains).
    pub fn user_lists(&self, user: &str) -> Result<Vec<Membership>, OpsError> {
        let stored = self
            .directory
            .get_user(user)?
            .ok_or_else(|| DirectoryError::NoSuchUser(user.to_owned()))?
            .name;
        let local = self.local_domains();
        let mut out = Vec::new();
        for s in self.directory.lists()? {
            for d in &local.domains {
                let address = format!("{stored}@{d}");
                if self.directory.is_list_member(&s.list.name, &address)? {
                    out.push(Membership {
                        list: s.list.name.clone(),
                        address,
                        posting: s.list.posting.to_string(),
                    });
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Takes `user` off list `name` (the member address that is theirs).
    pub fn leave_list(&self, user: &str, name: &str) -> Result<String, OpsError> {
        let m = self
            .user_lists(user)?
            .into_iter()
            .find(|m| m.list.eq_ignore_ascii_case(name))
            .ok_or_else(|| OpsError::Invalid(format!("{user} is not a member of list {name}")))?;
        self.directory.remove_list_member(&m.list, &m.address)?;
        tracing::info!(list = %m.list, member = %m.address, "member left the list");
        Ok(m.address)
    }

    fn get_list(&self, name: &str) -> Result<ListInfo, OpsError> {
        Ok(self
            .directory
            .get_list(name)?
            .ok_or_else(|| DirectoryError::NoSuchList(name.to_owned()))?)
    }

    fn tell_server(&self, cmd: Command) -> bool {
        control::notify(&self.config.run_dir(), cmd).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "could not reach the running server");
            false
        })
    }
}

/// Adds up the message files under a Maildir++ root: `new/` and `cur/` of
/// the inbox and of every `.Folder`.
fn walk_maildir(root: &Path, size: &mut MailboxSize, depth: usize) {
    for sub in ["new", "cur"] {
        count_files(&root.join(sub), size);
    }
    if depth > 0 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        if size.truncated {
            return;
        }
        let name = e.file_name();
        let is_folder = name
            .to_str()
            .is_some_and(|n| n.starts_with('.') && n.len() > 1);
        if is_folder && e.file_type().is_ok_and(|t| t.is_dir()) {
            walk_maildir(&e.path(), size, depth + 1);
        }
    }
}

fn count_files(dir: &Path, size: &mut MailboxSize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if size.messages >= MAX_MAILBOX_FILES {
            size.truncated = true;
            return;
        }
        if let Ok(m) = e.metadata()
            && m.is_file()
        {
            size.messages += 1;
            size.bytes = size.bytes.saturating_add(m.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postamt_config::Config;
    use std::sync::Arc;

    fn admin(dir: &Path) -> Admin {
        let config = Config {
            hostname: "mx.example.org".into(),
            domains: vec!["example.org".into()],
            data_dir: dir.to_path_buf(),
            ..Config::default()
        };
        Admin::open(Arc::new(config)).expect("open admin in a temp dir")
    }

    #[test]
    fn tester_names_the_rule_in_resolution_order() {
        let tmp = tempfile::tempdir().unwrap();
        let a = admin(tmp.path());
        a.add_user("alice", "pw-alice", false).unwrap();
        a.add_user("bob", "pw-bob", false).unwrap();
        a.add_alias("sales-*", &["bob".into()]).unwrap();
        a.add_alias("*@example.org", &["alice".into()]).unwrap();
        a.add_alias("info", &["alice".into(), "x@remote.test".into()])
            .unwrap();

        let t = a.test_address("sales-eu@example.org").unwrap();
        assert_eq!(
            t.rule,
            RuleHit::WildcardAlias {
                pattern: "sales-*".into()
            }
        );
        assert_eq!(t.mailboxes, vec!["bob".to_string()]);

        let t = a.test_address("anything@example.org").unwrap();
        assert_eq!(
            t.rule,
            RuleHit::WildcardAlias {
                pattern: "*@example.org".into()
            }
        );

        let t = a.test_address("info").unwrap();
        assert_eq!(t.address, "info@example.org");
        assert_eq!(
            t.rule,
            RuleHit::ExactAlias {
                pattern: "info".into()
            }
        );
        assert_eq!(t.remote, vec!["x@remote.test".to_string()]);

        let t = a.test_address("Bob@Example.org").unwrap();
        assert_eq!(t.rule, RuleHit::User { name: "bob".into() });
        assert_eq!(
            a.test_address("x@other.test").unwrap().rule,
            RuleHit::Remote
        );
        assert!(a.test_address("").is_err());
    }

    #[test]
    fn unknown_address_is_reported_with_its_error() {
        let tmp = tempfile::tempdir().unwrap();
        let a = admin(tmp.path());
        let t = a.test_address("nobody@example.org").unwrap();
        assert_eq!(t.rule, RuleHit::Unknown);
        assert!(t.error.is_some());
        assert!(t.mailboxes.is_empty());
    }

    #[test]
    fn admin_role_and_user_lists() {
        let tmp = tempfile::tempdir().unwrap();
        let a = admin(tmp.path());
        a.add_user("carol", "pw-carol", false).unwrap();
        a.set_admin("carol", true).unwrap();
        assert!(a.directory.get_user("carol").unwrap().unwrap().admin);
        a.list_create("team", &Default::default()).unwrap();
        a.list_subscribe("team", "carol").unwrap();
        let lists = a.user_lists("carol").unwrap();
        assert_eq!(lists.len(), 1);
        assert_eq!(lists[0].address, "carol@example.org");
        assert_eq!(a.leave_list("carol", "TEAM").unwrap(), "carol@example.org");
        assert!(a.user_lists("carol").unwrap().is_empty());
        assert!(a.leave_list("carol", "team").is_err());
    }

    #[test]
    fn mailbox_size_counts_inbox_and_folders() {
        let tmp = tempfile::tempdir().unwrap();
        let a = admin(tmp.path());
        a.add_user("dave", "pw-dave", false).unwrap();
        assert_eq!(a.mailbox_size("dave").unwrap(), None);
        let root = tmp.path().join("mailboxes/dave");
        for d in ["new", "cur", "tmp", ".Sent/cur"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("new/1"), b"12345").unwrap();
        std::fs::write(root.join("cur/2"), b"123").unwrap();
        std::fs::write(root.join("tmp/3"), b"ignored").unwrap();
        std::fs::write(root.join(".Sent/cur/4"), b"12").unwrap();
        let s = a.mailbox_size("dave").unwrap().unwrap();
        assert_eq!((s.messages, s.bytes, s.truncated), (3, 10, false));
    }

    #[test]
    fn bounce_fails_pending_recipients() {
        let tmp = tempfile::tempdir().unwrap();
        let a = admin(tmp.path());
        let id = a
            .spool
            .enqueue_blocking(
                postamt_spool::NewMessage {
                    mail_from: "s@remote.test".into(),
                    recipients: vec!["r@remote.test".into()],
                    ..Default::default()
                },
                b"Subject: hi\r\n\r\nbody\r\n".to_vec(),
            )
            .unwrap();
        let before = postamt_metrics::global().snapshot().bounced_total();
        assert_eq!(a.queue_bounce(id.as_str()).unwrap(), 1);
        assert!(
            postamt_metrics::global().snapshot().bounced_total() > before,
            "counted in the bounce metric"
        );
        let env = a.spool.get(&id).unwrap();
        assert_eq!(env.recipients[0].status, RecipientStatus::Failed);
        assert!(
            a.queue_bounce(id.as_str()).is_err(),
            "nothing left to bounce"
        );
        assert!(a.queue_bounce("not-an-id").is_err());
    }

    #[test]
    fn moderation_approve_releases_the_held_recipients() {
        let tmp = tempfile::tempdir().unwrap();
        let a = admin(tmp.path());
        a.add_user("owner", "pw-owner", false).unwrap();
        a.list_create(
            "mod",
            &postamt_directory::ListOptions {
                owner: Some("owner".into()),
                ..Default::default()
            },
        )
        .unwrap();
        let id = a
            .spool
            .enqueue_blocking(
                postamt_spool::NewMessage {
                    mail_from: "poster@remote.test".into(),
                    recipients: vec!["mod@example.org".into()],
                    ..Default::default()
                },
                b"Subject: <b>held</b>\r\n\r\nbody\r\n".to_vec(),
            )
            .unwrap();
        let mut env = a.spool.get(&id).unwrap();
        env.held = true;
        env.recipients[0].delivered_to.push(held_mark("mod"));
        a.spool.update(&env).unwrap();
        let p = a
            .directory
            .create_pending(
                "mod",
                "poster@remote.test",
                PendingAction::Post,
                id.as_str(),
                chrono::Utc::now().timestamp(),
                3600,
            )
            .unwrap();
        let q = a.moderation_queue("mod").unwrap();
        assert_eq!(q.len(), 1);
        assert_eq!(q[0].subject.as_deref(), Some("<b>held</b>"));
        assert!(a.moderate("other", &p.token, true).is_err());
        let m = a.moderate("mod", &p.token, true).unwrap();
        assert_eq!(m.recipients, 1);
        let env = a.spool.get(&id).unwrap();
        assert!(!env.held);
        assert_eq!(env.recipients[0].delivered_to, vec![approved_mark("mod")]);
        assert!(a.moderation_queue("mod").unwrap().is_empty());
        assert!(a.moderate("mod", &p.token, true).is_err(), "token used");
    }
}
