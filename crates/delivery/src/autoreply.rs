//! Auto-replies (vacation messages) by RFC 3834: which messages may be
//! answered (not from the null sender or a robot, not list, bulk or
//! automatic mail, only when the user is a direct recipient), at most one
//! reply per sender per period (the directory's memory), and the reply
//! itself (`Auto-Submitted: auto-replied`, `In-Reply-To`/`References`,
//! sent from the null sender). Every decision is logged with the queue id.

use crate::bounce::format_date;
use crate::context::Context;
use crate::message::{self, Parsed};
use postamt_directory::{Autoreply, DEFAULT_AUTOREPLY_PERIOD, LocalDomains};
use postamt_spool::{Envelope, NewMessage};
use tracing::{error, info};

/// Why a message gets no auto-reply from anyone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Skip {
    NullSender,
    /// mailer-daemon, owner-*, *-request, *-bounces.
    RobotSender,
    /// `List-Id` (or another list header) present.
    ListMail,
    /// `Precedence: bulk|list|junk`.
    Bulk,
    /// `Auto-Submitted` other than `no`.
    AutoSubmitted,
}

impl Skip {
    pub fn as_str(&self) -> &'static str {
        match self {
            Skip::NullSender => "null sender",
            Skip::RobotSender => "automatic sender address",
            Skip::ListMail => "list mail",
            Skip::Bulk => "bulk precedence",
            Skip::AutoSubmitted => "auto-submitted",
        }
    }
}

/// Whether `sender`'s local part marks a robot (RFC 3834 §2 and common
/// practice): mailer-daemon, owner-*, *-request, *-bounces, *-owner.
pub fn is_robot_sender(sender: &str) -> bool {
    let local = sender
        .rsplit_once('@')
        .map_or(sender, |(l, _)| l)
        .to_ascii_lowercase();
    local == "mailer-daemon"
        || local.starts_with("owner-")
        || local.ends_with("-request")
        || local.ends_with("-bounces")
        || local.ends_with("-owner")
}

/// Whether the `Auto-Submitted` value says the message is automatic
/// (anything but `no`, comments and parameters ignored).
pub fn is_auto_submitted(value: &str) -> bool {
    let keyword = value
        .split([';', '('])
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    keyword != "no"
}

/// Why the message gets no auto-reply at all, or `None` when it may get one.
pub fn message_skip(parsed: &Parsed<'_>, sender: &str) -> Option<Skip> {
    if sender.is_empty() {
        return Some(Skip::NullSender);
    }
    if is_robot_sender(sender) {
        return Some(Skip::RobotSender);
    }
    if ["list-id", "list-post", "list-unsubscribe"]
        .iter()
        .any(|h| parsed.has(h))
    {
        return Some(Skip::ListMail);
    }
    if let Some(p) = parsed.value("precedence") {
        let p = p.to_ascii_lowercase();
        if ["bulk", "list", "junk"].contains(&p.trim()) {
            return Some(Skip::Bulk);
        }
    }
    if let Some(a) = parsed.value("auto-submitted")
        && is_auto_submitted(&a)
    {
        return Some(Skip::AutoSubmitted);
    }
    None
}

/// The user's address the message was directly sent to (To/Cc): `user@`
/// one of our domains, or one of `extra` (addresses that lead to the
/// user alone); `None` when the user is not a direct recipient.
pub fn direct_address(
    direct: &[String],
    user: &str,
    domains: &LocalDomains,
    extra: &[String],
) -> Option<String> {
    direct
        .iter()
        .find(|a| {
            let own = a
                .rsplit_once('@')
                .is_some_and(|(l, d)| l.eq_ignore_ascii_case(user) && domains.contains(d));
            own || extra.iter().any(|e| e.eq_ignore_ascii_case(a))
        })
        .cloned()
}

/// What the reply needs from the original message.
pub struct Original<'a> {
    pub subject: Option<&'a str>,
    pub message_id: Option<&'a str>,
    pub references: Option<&'a str>,
}

/// The reply: from `from` to `to`, the auto-reply's subject (or
/// `Auto: <original subject>` when it has none) and body.
pub fn build_reply(
    rule: &Autoreply,
    from: &str,
    to: &str,
    original: &Original<'_>,
    date: &str,
    message_id: &str,
) -> Vec<u8> {
    let subject = if rule.subject.trim().is_empty() {
        format!("Auto: {}", original.subject.unwrap_or(""))
    } else {
        rule.subject.clone()
    };
    let mut headers = vec![
        format!("From: <{from}>\r\n"),
        format!("To: <{to}>\r\n"),
        format!("Subject: {}\r\n", message::encode_text(&subject)),
        "Auto-Submitted: auto-replied\r\n".to_string(),
    ];
    if let Some(mid) = original.message_id {
        headers.push(format!("In-Reply-To: {mid}\r\n"));
        let refs = match original.references {
            Some(r) if !r.is_empty() && r.len() < 4000 => format!("{r} {mid}"),
            _ => mid.to_string(),
        };
        headers.push(format!("References: {refs}\r\n"));
    }
    message::text_message(&headers, date, message_id, &rule.body)
}

/// Sends the auto-replies of `users` (reached through recipient
/// `rcpt_address`) for message `env`/`data`, at most one per user per
/// sender per period. `done` holds the users already considered in this
/// attempt. Never fails the delivery: problems are logged.
#[allow(clippy::too_many_arguments)]
pub fn send_autoreplies(
    ctx: &Context,
    env: &Envelope,
    rcpt_address: &str,
    users: &[String],
    data: &[u8],
    domains: &LocalDomains,
    now: i64,
    done: &mut Vec<String>,
) {
    let Some(dir) = ctx.directory.mail_directory() else {
        return;
    };
    let users: Vec<&String> = users
        .iter()
        .filter(|u| !done.iter().any(|d| d.eq_ignore_ascii_case(u)))
        .collect();
    if users.is_empty() {
        return;
    }
    let extra: Vec<String> = if users.len() == 1 {
        vec![rcpt_address.to_string()]
    } else {
        Vec::new()
    };
    // The rules first: nearly every delivery reaches no auto-reply, and
    // then the message is not parsed at all.
    let mut rules = Vec::new();
    for user in users {
        done.push(user.clone());
        match dir.active_autoreply(user, now) {
            Ok(Some(r)) => rules.push((user, r)),
            Ok(None) => {}
            Err(e) => {
                error!(queue_id = %env.id, user = %user, error = %e, "cannot read the auto-reply");
            }
        }
    }
    if rules.is_empty() {
        return;
    }
    let parsed = message::split(data);
    let skip = message_skip(&parsed, &env.mail_from);
    let direct = message::direct_recipients(data);
    for (user, rule) in rules {
        if let Some(s) = &skip {
            info!(queue_id = %env.id, user = %user, sender = %env.mail_from, reason = s.as_str(), "no auto-reply");
            continue;
        }
        let Some(from) = direct_address(&direct, user, domains, &extra) else {
            info!(queue_id = %env.id, user = %user, sender = %env.mail_from, reason = "not a direct recipient", "no auto-reply");
            continue;
        };
        match dir.autoreply_claim(user, &env.mail_from, DEFAULT_AUTOREPLY_PERIOD, now) {
            Ok(true) => {}
            Ok(false) => {
                info!(queue_id = %env.id, user = %user, sender = %env.mail_from, reason = "already answered in this period", "no auto-reply");
                continue;
            }
            Err(e) => {
                error!(queue_id = %env.id, user = %user, error = %e, "cannot record the auto-reply; none sent");
                continue;
            }
        }
        let subject = message::subject(data);
        let mid = message::message_id(&parsed);
        let refs = parsed.value("references");
        let original = Original {
            subject: subject.as_deref(),
            message_id: mid.as_deref(),
            references: refs.as_deref(),
        };
        let id = ctx.message_id(&env.id, "autoreply", now);
        let reply = build_reply(
            &rule,
            &from,
            &env.mail_from,
            &original,
            &format_date(now),
            &id,
        );
        let msg = NewMessage {
            id: None,
            mail_from: String::new(),
            recipients: vec![env.mail_from.clone()],
            client: None,
            helo: None,
            auth_user: None,
            eight_bit: !reply.is_ascii(),
            smtputf8: !env.mail_from.is_ascii() || !from.is_ascii(),
        };
        match ctx.queue.enqueue(msg, reply) {
            Ok(reply_id) => info!(
                queue_id = %env.id,
                user = %user,
                to = %env.mail_from,
                reply_id = %reply_id,
                "auto-reply sent"
            ),
            Err(e) => {
                error!(queue_id = %env.id, user = %user, error = %e, "cannot queue the auto-reply")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn robots_and_automatic_mail_are_skipped() {
        let p = |h: &'static [u8]| message::split(h);
        let plain = p(b"Subject: hi\r\n\r\nx");
        assert_eq!(message_skip(&plain, "a@x.org"), None);
        assert_eq!(message_skip(&plain, ""), Some(Skip::NullSender));
        for s in [
            "MAILER-DAEMON@x.org",
            "owner-list@x.org",
            "list-request@x.org",
            "list-bounces@x.org",
        ] {
            assert_eq!(message_skip(&plain, s), Some(Skip::RobotSender), "{s}");
        }
        assert_eq!(
            message_skip(&p(b"List-Id: <l.x.org>\r\n\r\n"), "a@x.org"),
            Some(Skip::ListMail)
        );
        for prec in ["bulk", "List", "junk"] {
            let h = format!("Precedence: {prec}\r\n\r\n");
            let parsed = message::split(h.as_bytes());
            assert_eq!(message_skip(&parsed, "a@x.org"), Some(Skip::Bulk));
        }
        assert_eq!(
            message_skip(&p(b"Auto-Submitted: auto-generated\r\n\r\n"), "a@x.org"),
            Some(Skip::AutoSubmitted)
        );
        assert_eq!(
            message_skip(&p(b"Auto-Submitted: no (human)\r\n\r\n"), "a@x.org"),
            None
        );
    }

    #[test]
    fn direct_address_needs_the_users_address() {
        let d = LocalDomains::new("example.org", ["mx.example.org"], "postmaster@example.org");
        let to = vec!["bob@example.org".to_string(), "info@example.org".into()];
        assert_eq!(
            direct_address(&to, "bob", &d, &[]),
            Some("bob@example.org".into())
        );
        assert_eq!(direct_address(&to, "alice", &d, &[]), None);
        assert_eq!(
            direct_address(&to, "alice", &d, &["INFO@example.org".into()]),
            Some("info@example.org".into())
        );
        assert_eq!(
            direct_address(&["bob@other.net".into()], "bob", &d, &[]),
            None
        );
    }

    #[test]
    fn the_reply_has_the_rfc3834_headers() {
        let rule = Autoreply {
            user: "bob".into(),
            subject: "Away".into(),
            body: "Back on Monday.\nBob".into(),
            starts_at: None,
            ends_at: None,
            created_at: 0,
        };
        let original = Original {
            subject: Some("Question"),
            message_id: Some("<q1@x.org>"),
            references: Some("<q0@x.org>"),
        };
        let r = build_reply(&rule, "bob@example.org", "s@x.org", &original, "D", "id@h");
        let t = String::from_utf8(r).unwrap();
        for h in [
            "From: <bob@example.org>\r\n",
            "To: <s@x.org>\r\n",
            "Subject: Away\r\n",
            "Auto-Submitted: auto-replied\r\n",
            "In-Reply-To: <q1@x.org>\r\n",
            "References: <q0@x.org> <q1@x.org>\r\n",
            "Message-ID: <id@h>\r\n",
            "MIME-Version: 1.0\r\n",
        ] {
            assert!(t.contains(h), "{h} missing in {t}");
        }
        assert!(t.ends_with("\r\n\r\nBack on Monday.\r\nBob\r\n"));
    }
}
