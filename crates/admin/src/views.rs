//! Serializable views of the directory and queue types, shared by the JSON
//! API and the templates (the directory's own types carry no serde).

use postamt_directory::{Alias, Autoreply, Forward, ListInfo, ListMember, ListSummary, UserInfo};
use postamt_ops::{AutoreplyState, QueueEntry};
use postamt_spool::{Envelope, RecipientStatus};
use serde::Serialize;

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct UserView {
    pub name: String,
    pub admin: bool,
    pub created_at: i64,
}

impl From<UserInfo> for UserView {
    fn from(u: UserInfo) -> Self {
        UserView {
            name: u.name,
            admin: u.admin,
            created_at: u.created_at,
        }
    }
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct AliasView {
    pub pattern: String,
    pub targets: Vec<String>,
}

impl From<Alias> for AliasView {
    fn from(a: Alias) -> Self {
        AliasView {
            pattern: a.pattern,
            targets: a.targets,
        }
    }
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ListView {
    pub name: String,
    pub owner: String,
    pub posting: String,
    pub reply_to: String,
    pub subject_prefix: String,
    pub max_message_size: u64,
    pub created_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub members: Option<u64>,
}

impl From<ListInfo> for ListView {
    fn from(l: ListInfo) -> Self {
        ListView {
            name: l.name,
            owner: l.owner,
            posting: l.posting.to_string(),
            reply_to: l.reply_to.to_string(),
            subject_prefix: l.subject_prefix,
            max_message_size: l.max_message_size,
            created_at: l.created_at,
            members: None,
        }
    }
}

impl From<ListSummary> for ListView {
    fn from(s: ListSummary) -> Self {
        ListView {
            members: Some(s.members),
            ..ListView::from(s.list)
        }
    }
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct MemberView {
    pub address: String,
    pub added_at: i64,
}

impl From<ListMember> for MemberView {
    fn from(m: ListMember) -> Self {
        MemberView {
            address: m.address,
            added_at: m.added_at,
        }
    }
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct AutoreplyView {
    pub subject: String,
    pub body: String,
    /// Unix seconds, inclusive.
    pub starts_at: Option<i64>,
    /// Unix seconds, exclusive.
    pub ends_at: Option<i64>,
    /// `active`, `scheduled` or `ended`.
    pub state: String,
    pub created_at: i64,
}

impl From<Autoreply> for AutoreplyView {
    fn from(a: Autoreply) -> Self {
        let state = AutoreplyState::of(&a, chrono::Utc::now().timestamp())
            .as_str()
            .to_owned();
        AutoreplyView {
            subject: a.subject,
            body: a.body,
            starts_at: a.starts_at,
            ends_at: a.ends_at,
            state,
            created_at: a.created_at,
        }
    }
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ForwardView {
    pub addresses: Vec<String>,
    pub keep_copy: bool,
    pub created_at: i64,
}

impl From<Forward> for ForwardView {
    fn from(f: Forward) -> Self {
        ForwardView {
            addresses: f.addresses,
            keep_copy: f.keep_copy,
            created_at: f.created_at,
        }
    }
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct QueueView {
    pub id: String,
    pub mail_from: String,
    pub pending: Vec<String>,
    pub size: u64,
    pub created_at: i64,
    pub next_attempt: i64,
    pub attempts: u32,
    pub held: bool,
    pub reason: String,
}

impl From<QueueEntry> for QueueView {
    fn from(e: QueueEntry) -> Self {
        let env = e.envelope;
        QueueView {
            pending: pending(&env),
            id: env.id.0,
            mail_from: env.mail_from,
            size: env.size,
            created_at: env.created_at,
            next_attempt: env.next_attempt,
            attempts: env.attempts,
            held: env.held,
            reason: e.reason,
        }
    }
}

/// The recipients still waiting.
pub fn pending(env: &Envelope) -> Vec<String> {
    env.recipients
        .iter()
        .filter(|r| r.status == RecipientStatus::Pending)
        .map(|r| r.address.clone())
        .collect()
}

/// A comma/space separated field as a list of non-empty items.
pub fn split_list(s: &str) -> Vec<String> {
    s.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|x| !x.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_list_takes_commas_and_spaces() {
        assert_eq!(split_list(" a, b  c,,d "), vec!["a", "b", "c", "d"]);
        assert!(split_list(" , ").is_empty());
    }
}
