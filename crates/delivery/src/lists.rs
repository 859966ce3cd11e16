//! Mailing lists in the delivery agent: a post to `NAME@domain` (fan-out
//! to the members as a new queued message from `NAME-bounces@domain`, with
//! the RFC 2919/2369 headers, subject prefix and Reply-To), loop
//! protection, holding posts for the owner (moderation), and requests by
//! mail to `NAME-request@domain` (subscribe/join, unsubscribe/leave, help,
//! confirmations by token, approve/reject of held posts). The header
//! rewriting and command parsing are pure functions; the rest talks to the
//! directory and queues messages through the context.
//!
//! The fan-out message is delivered by the agent like any other: local
//! members into their mailboxes, remote ones grouped per domain, each
//! member retried on its own, bounces to `NAME-bounces@` (the owner).

use crate::autoreply::message_skip;
use crate::bounce::format_date;
use crate::context::Context;
use crate::failure::Failure;
use crate::message::{self, Parsed};
use postamt_directory::{
    DirectoryError, ListInfo, LocalDomains, PendingAction, PostPermission, ReplyTo, Target,
    looks_like_token,
};
use postamt_spool::{Envelope, NewMessage, QueueId, RecipientStatus};
use tracing::{error, info, warn};

/// Recipients per queued fan-out message.
pub const FANOUT_BATCH: usize = 500;
/// How long a confirmation or a held post waits for its reply.
pub const PENDING_TTL: i64 = 7 * 24 * 60 * 60;
/// Tokens looked up in one request, at most.
const MAX_TOKENS: usize = 10;
/// Body bytes read from a request.
const MAX_REQUEST_BODY: usize = 64 * 1024;

/// Marks, in `delivered_to`, a recipient whose list post waits for the
/// owner or was approved (shared with the admin operations).
pub use postamt_spool::marks::{approved_mark, held_mark};
/// The `delivered_to` key of a finished list post.
pub fn list_key(list: &str) -> String {
    format!("list:{}", list.to_ascii_lowercase())
}

/// `<name.domain>`, lowercase (RFC 2919).
pub fn list_id(name: &str, domain: &str) -> String {
    format!("<{}.{}>", name, domain).to_ascii_lowercase()
}

/// Whether the message already carries the List-Id of list `name` at one
/// of our domains (it came back to the list: a loop).
pub fn carries_list_id(parsed: &Parsed<'_>, name: &str, domains: &LocalDomains) -> bool {
    parsed
        .fields
        .iter()
        .filter(|f| f.name.eq_ignore_ascii_case("list-id"))
        .any(|f| {
            let v = f.value().to_ascii_lowercase();
            domains
                .domains
                .iter()
                .any(|d| v.contains(&list_id(name, d)))
        })
}

/// The copy of a post that the members get: list headers replaced, the
/// subject prefixed (unless the prefix is already there), Reply-To by the
/// list's option, `Precedence: list`.
pub fn list_copy(data: &[u8], list: &ListInfo, domain: &str) -> Vec<u8> {
    let parsed = message::split(data);
    let name = &list.name;
    let mut added = vec![
        format!("List-Id: {}\r\n", list_id(name, domain)),
        format!("List-Unsubscribe: <mailto:{name}-request@{domain}?subject=unsubscribe>\r\n"),
        format!("List-Post: <mailto:{name}@{domain}>\r\n"),
        format!("List-Help: <mailto:{name}-request@{domain}?subject=help>\r\n"),
        "Precedence: list\r\n".to_string(),
    ];
    let mut drop = vec![
        "list-id",
        "list-unsubscribe",
        "list-post",
        "list-help",
        "list-subscribe",
        "list-owner",
        "list-archive",
        "precedence",
    ];
    if list.reply_to == ReplyTo::List {
        drop.push("reply-to");
        added.push(format!("Reply-To: <{name}@{domain}>\r\n"));
    }
    let prefix = list.subject_prefix.trim();
    if !prefix.is_empty() {
        let decoded = message::subject(data).unwrap_or_default();
        let raw = parsed.value("subject").unwrap_or_default();
        if !decoded.contains(prefix) && !raw.contains(prefix) {
            drop.push("subject");
            let subject = if raw.is_empty() {
                message::encode_text(prefix)
            } else {
                format!("{} {raw}", message::encode_text(prefix))
            };
            added.push(format!("Subject: {subject}\r\n"));
        }
    }
    message::rewrite(data, &drop, &added)
}

/// A request by mail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Subscribe,
    Unsubscribe,
    Help,
    Approve,
    Reject,
}

fn command_word(line: &str) -> Option<Command> {
    let mut rest = line.trim();
    // Reply and forward prefixes of the subject.
    loop {
        let lower = rest.to_ascii_lowercase();
        let cut = ["re:", "aw:", "fwd:", "fw:"]
            .iter()
            .find(|p| lower.starts_with(*p))
            .map(|p| p.len());
        match cut {
            Some(n) => rest = rest[n..].trim_start(),
            None => break,
        }
    }
    let word = rest
        .split(|c: char| c.is_whitespace() || c == ':')
        .next()?
        .to_ascii_lowercase();
    match word.as_str() {
        "subscribe" | "join" => Some(Command::Subscribe),
        "unsubscribe" | "leave" => Some(Command::Unsubscribe),
        "help" => Some(Command::Help),
        "approve" => Some(Command::Approve),
        "reject" => Some(Command::Reject),
        _ => None,
    }
}

/// The command in the subject, else in the first non-empty body line.
pub fn find_command(subject: &str, body: &str) -> Option<Command> {
    command_word(subject).or_else(|| {
        body.lines()
            .find(|l| !l.trim().is_empty())
            .and_then(command_word)
    })
}

/// The first non-empty body line's command (approve/reject of a held post
/// is read there: the subject carries the token).
pub fn body_command(body: &str) -> Option<Command> {
    body.lines()
        .find(|l| !l.trim().is_empty())
        .and_then(command_word)
}

/// Words shaped like tokens in the subject and the body, in order, at
/// most [`MAX_TOKENS`], without repeats.
pub fn find_tokens(subject: &str, body: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for word in subject
        .split(|c: char| !c.is_ascii_alphanumeric())
        .chain(body.split(|c: char| !c.is_ascii_alphanumeric()))
    {
        if out.len() >= MAX_TOKENS {
            break;
        }
        if looks_like_token(word) {
            let w = word.to_ascii_lowercase();
            if !out.contains(&w) {
                out.push(w);
            }
        }
    }
    out
}

/// The help text of list `name`.
pub fn help_text(name: &str, domain: &str) -> String {
    format!(
        "This is the request address of the mailing list {name}@{domain}.\n\
         \n\
         Send a message to {name}-request@{domain} with one of these words\n\
         in the subject or as the first line of the body:\n\
         \n\
         subscribe (or join)      subscribe the sender's address\n\
         unsubscribe (or leave)   unsubscribe the sender's address\n\
         help                     this text\n\
         \n\
         Subscribing and unsubscribing are confirmed by replying to the\n\
         confirmation message that is sent to the address.\n\
         Posts go to {name}@{domain}; the list owner is {name}-owner@{domain}.\n"
    )
}

/// What a post to a list became.
#[derive(Debug)]
pub enum PostOutcome {
    /// Sent to the members, dropped as a loop, or nothing to do.
    Done(Result<(), Failure>),
    /// Held for the owner: the recipient stays pending, the message held.
    Held,
}

fn db_failure(e: &DirectoryError) -> Failure {
    Failure::temporary("4.3.0", &format!("directory error: {e}"), true)
}

/// The domain of list mail for recipient `address`: its own when local,
/// else (a list reached through an alias) the primary domain.
pub fn list_domain(ctx: &Context, address: &str, domains: &LocalDomains) -> String {
    match address.rsplit_once('@') {
        Some((_, d)) if domains.contains(d) => d.trim_end_matches('.').to_ascii_lowercase(),
        _ => ctx.primary_domain(),
    }
}

/// A post from `env` to list `name` (at `domain`). `approved`: the owner
/// already approved it (a released held post).
#[allow(clippy::too_many_arguments)]
pub fn post(
    ctx: &Context,
    env: &Envelope,
    data: &[u8],
    name: &str,
    domain: &str,
    domains: &LocalDomains,
    approved: bool,
    now: i64,
) -> PostOutcome {
    let Some(dir) = ctx.directory.mail_directory() else {
        return PostOutcome::Done(Err(Failure::temporary(
            "4.3.0",
            "lists are not available",
            true,
        )));
    };
    let info = match dir.get_list(name) {
        Ok(Some(i)) => i,
        Ok(None) => {
            return PostOutcome::Done(Err(Failure::permanent("5.1.1", "no such list", true)));
        }
        Err(e) => return PostOutcome::Done(Err(db_failure(&e))),
    };
    let parsed = message::split(data);
    if carries_list_id(&parsed, &info.name, domains) {
        warn!(
            queue_id = %env.id,
            list = %info.name,
            sender = %env.mail_from,
            "message already carries this list's List-Id: loop, not re-sent"
        );
        return PostOutcome::Done(Ok(()));
    }
    if info.max_message_size > 0 && data.len() as u64 > info.max_message_size {
        info!(queue_id = %env.id, list = %info.name, size = data.len(), "post too big for the list");
        return PostOutcome::Done(Err(Failure::permanent(
            "5.3.4",
            "message too big for the list",
            true,
        )));
    }
    if !approved {
        let permission = match dir.list_may_post(&info.name, &env.mail_from) {
            Ok(p) => p,
            Err(e) => return PostOutcome::Done(Err(db_failure(&e))),
        };
        if permission != PostPermission::Allowed {
            return hold(ctx, env, data, &info, domain, permission, now);
        }
    }
    PostOutcome::Done(fan_out(ctx, env, data, &info, domain, domains))
}

/// Queues the list copy to every member (but the list itself).
fn fan_out(
    ctx: &Context,
    env: &Envelope,
    data: &[u8],
    info: &ListInfo,
    domain: &str,
    domains: &LocalDomains,
) -> Result<(), Failure> {
    let Some(dir) = ctx.directory.mail_directory() else {
        return Err(Failure::temporary("4.3.0", "lists are not available", true));
    };
    let members = dir.list_members(&info.name).map_err(|e| db_failure(&e))?;
    let mut rcpts: Vec<String> = Vec::with_capacity(members.len());
    for m in members {
        if is_the_list(ctx, &m.address, &info.name, domains) {
            info!(queue_id = %env.id, list = %info.name, member = %m.address, "member is the list itself; skipped");
            continue;
        }
        rcpts.push(m.address);
    }
    if rcpts.is_empty() {
        info!(queue_id = %env.id, list = %info.name, "list has no members; post dropped");
        return Ok(());
    }
    let copy = list_copy(data, info, domain);
    let bounces = format!("{}-bounces@{domain}", info.name);
    let mut ids: Vec<String> = Vec::new();
    for batch in rcpts.chunks(FANOUT_BATCH) {
        let msg = NewMessage {
            id: None,
            mail_from: bounces.clone(),
            recipients: batch.to_vec(),
            client: None,
            helo: None,
            auth_user: None,
            eight_bit: env.eight_bit || !copy.is_ascii(),
            smtputf8: env.smtputf8 || batch.iter().any(|r| !r.is_ascii()),
        };
        match ctx.queue.enqueue(msg, copy.clone()) {
            Ok(id) => ids.push(id.0),
            Err(e) => {
                error!(queue_id = %env.id, list = %info.name, error = %e, "cannot queue the list copy");
                return Err(Failure::temporary(
                    "4.3.0",
                    "cannot queue the list copy",
                    true,
                ));
            }
        }
    }
    info!(
        queue_id = %env.id,
        list = %info.name,
        sender = %env.mail_from,
        members = rcpts.len(),
        copies = %ids.join(","),
        "list post sent to the members"
    );
    Ok(())
}

/// Whether member `address` is list `name` itself (or one of its service
/// addresses, or an alias leading to it).
fn is_the_list(ctx: &Context, address: &str, name: &str, domains: &LocalDomains) -> bool {
    let Some((_, d)) = address.rsplit_once('@') else {
        return false;
    };
    if !domains.contains(d) {
        return false;
    }
    match ctx.directory.classify(address, domains) {
        Ok(Target::List { name: n })
        | Ok(Target::ListRequest { name: n })
        | Ok(Target::ListBounces { name: n })
        | Ok(Target::ListOwner { name: n }) => n.eq_ignore_ascii_case(name),
        Ok(Target::Deliver(exp)) => exp.lists.iter().any(|l| l.eq_ignore_ascii_case(name)),
        Err(_) => false,
    }
}

/// Holds a post for the owner: a pending token naming the message, and a
/// moderation request to the owner.
fn hold(
    ctx: &Context,
    env: &Envelope,
    data: &[u8],
    info: &ListInfo,
    domain: &str,
    why: PostPermission,
    now: i64,
) -> PostOutcome {
    let Some(dir) = ctx.directory.mail_directory() else {
        return PostOutcome::Done(Err(Failure::temporary(
            "4.3.0",
            "lists are not available",
            true,
        )));
    };
    let refuse = || {
        let text = match why {
            PostPermission::NotMember => "only members may post to this list",
            _ => "posts to this list need the owner's approval",
        };
        PostOutcome::Done(Err(Failure::permanent("5.7.1", text, true)))
    };
    if env.mail_from.is_empty() {
        info!(queue_id = %env.id, list = %info.name, "post from the null sender refused");
        return refuse();
    }
    let pending = match dir.create_pending(
        &info.name,
        &env.mail_from,
        PendingAction::Post,
        &env.id.0,
        now,
        PENDING_TTL,
    ) {
        Ok(p) => p,
        Err(e @ DirectoryError::Db(_)) => return PostOutcome::Done(Err(db_failure(&e))),
        Err(e) => {
            warn!(queue_id = %env.id, list = %info.name, error = %e, "cannot hold the post; refused");
            return refuse();
        }
    };
    let subject = message::subject(data).unwrap_or_default();
    let reason = match why {
        PostPermission::NotMember => "the sender is not a member",
        _ => "the list is moderated",
    };
    let body = format!(
        "A post to the list {name}@{domain} is waiting for your approval\n\
         ({reason}).\n\
         \n\
         From:    {sender}\n\
         Subject: {subject}\n\
         \n\
         To approve it, reply to this message with the single word\n\
         \n\
         approve\n\
         \n\
         as the first line. To reject it, reply with \"reject\" instead.\n\
         Without an answer it is discarded in 7 days.\n",
        name = info.name,
        sender = env.mail_from,
    );
    let mail_subject = format!(
        "moderate {}: post to {}@{domain} from {}",
        pending.token, info.name, env.mail_from
    );
    match service_mail(
        ctx,
        &env.id,
        info,
        domain,
        &info.owner,
        &mail_subject,
        &body,
        now,
    ) {
        Ok(id) => info!(
            queue_id = %env.id,
            list = %info.name,
            sender = %env.mail_from,
            owner = %info.owner,
            request_id = %id,
            "post held for the owner's approval"
        ),
        Err(e) => {
            // Without the request nobody can approve: drop the token and retry.
            let _ = dir.take_pending(&pending.token, now);
            error!(queue_id = %env.id, list = %info.name, error = %e, "cannot queue the moderation request");
            return PostOutcome::Done(Err(Failure::temporary(
                "4.3.0",
                "cannot queue the moderation request",
                true,
            )));
        }
    }
    PostOutcome::Held
}

/// Queues a message from `NAME-request@domain` (Reply-To the same, so a
/// plain reply comes back), from the null sender.
#[allow(clippy::too_many_arguments)]
fn service_mail(
    ctx: &Context,
    queue_id: &QueueId,
    info: &ListInfo,
    domain: &str,
    to: &str,
    subject: &str,
    body: &str,
    now: i64,
) -> Result<QueueId, postamt_spool::SpoolError> {
    let request = format!("{}-request@{domain}", info.name);
    let headers = vec![
        format!("From: <{request}>\r\n"),
        format!("To: <{to}>\r\n"),
        format!("Reply-To: <{request}>\r\n"),
        format!("Subject: {}\r\n", message::encode_text(subject)),
        "Auto-Submitted: auto-replied\r\n".to_string(),
        format!("List-Id: {}\r\n", list_id(&info.name, domain)),
    ];
    let id = ctx.message_id(queue_id, "list", now);
    let data = message::text_message(&headers, &format_date(now), &id, body);
    let msg = NewMessage {
        id: None,
        mail_from: String::new(),
        recipients: vec![to.to_string()],
        client: None,
        helo: None,
        auth_user: None,
        eight_bit: !data.is_ascii(),
        smtputf8: !to.is_ascii(),
    };
    ctx.queue.enqueue(msg, data)
}

/// A message to `NAME-request@domain`.
pub fn request(
    ctx: &Context,
    env: &Envelope,
    data: &[u8],
    name: &str,
    domain: &str,
    now: i64,
) -> Result<(), Failure> {
    let Some(dir) = ctx.directory.mail_directory() else {
        return Err(Failure::temporary("4.3.0", "lists are not available", true));
    };
    let info = match dir.get_list(name) {
        Ok(Some(i)) => i,
        Ok(None) => return Err(Failure::permanent("5.1.1", "no such list", true)),
        Err(e) => return Err(db_failure(&e)),
    };
    let parsed = message::split(data);
    if let Some(skip) = message_skip(&parsed, &env.mail_from) {
        info!(queue_id = %env.id, list = %info.name, sender = %env.mail_from, reason = skip.as_str(), "list request ignored");
        return Ok(());
    }
    let sender = env.mail_from.clone();
    let subject = message::subject(data).unwrap_or_default();
    let body = message::body_text(data, MAX_REQUEST_BODY);
    let reply = |subject: &str, text: &str| -> Result<(), Failure> {
        service_mail(ctx, &env.id, &info, domain, &sender, subject, text, now)
            .map(|id| {
                info!(queue_id = %env.id, list = %info.name, to = %sender, reply_id = %id, subject, "list request answered");
            })
            .map_err(|e| {
                error!(queue_id = %env.id, list = %info.name, error = %e, "cannot queue the answer");
                Failure::temporary("4.3.0", "cannot queue the answer", true)
            })
    };

    // A reply carrying a token: a confirmation or a moderation decision.
    for token in find_tokens(&subject, &body) {
        let pending = match dir.get_pending(&token) {
            Ok(Some(p)) if p.list.eq_ignore_ascii_case(&info.name) => p,
            Ok(_) => continue,
            Err(e) => return Err(db_failure(&e)),
        };
        if pending.action == PendingAction::Post {
            return moderate(ctx, env, &info, domain, &token, &sender, data, &body, now);
        }
        let taken = match dir.take_pending(&token, now) {
            Ok(p) => p,
            Err(DirectoryError::TokenExpired) => {
                info!(queue_id = %env.id, list = %info.name, "confirmation token expired");
                return reply(
                    &format!("{} request expired", info.name),
                    "The confirmation has expired. Please send your request again.\n",
                );
            }
            Err(DirectoryError::NoSuchToken) => continue,
            Err(e) => return Err(db_failure(&e)),
        };
        let (done, text) = match taken.action {
            PendingAction::Subscribe => match dir.add_list_member(&info.name, &taken.address) {
                Ok(_) | Err(DirectoryError::AlreadyMember { .. }) => (
                    "subscribed",
                    format!(
                        "{} is now subscribed to {}@{domain}.\n",
                        taken.address, info.name
                    ),
                ),
                Err(e @ DirectoryError::Db(_)) => return Err(db_failure(&e)),
                Err(e) => ("not subscribed", format!("The subscription failed: {e}\n")),
            },
            _ => match dir.remove_list_member(&info.name, &taken.address) {
                Ok(()) | Err(DirectoryError::NotMember { .. }) => (
                    "unsubscribed",
                    format!(
                        "{} is no longer subscribed to {}@{domain}.\n",
                        taken.address, info.name
                    ),
                ),
                Err(e @ DirectoryError::Db(_)) => return Err(db_failure(&e)),
                Err(e) => ("not unsubscribed", format!("The request failed: {e}\n")),
            },
        };
        info!(queue_id = %env.id, list = %info.name, address = %taken.address, result = done, "list request confirmed");
        let subject = format!("{}: {done}", info.name);
        return service_mail(
            ctx,
            &env.id,
            &info,
            domain,
            &taken.address,
            &subject,
            &text,
            now,
        )
        .map(|_| ())
        .map_err(|e| {
            error!(queue_id = %env.id, list = %info.name, error = %e, "cannot queue the result");
            Failure::temporary("4.3.0", "cannot queue the result", true)
        });
    }

    match find_command(&subject, &body) {
        Some(cmd @ (Command::Subscribe | Command::Unsubscribe)) => {
            let member = match dir.is_list_member(&info.name, &sender) {
                Ok(m) => m,
                Err(e) => return Err(db_failure(&e)),
            };
            let (action, verb) = if cmd == Command::Subscribe {
                (PendingAction::Subscribe, "subscribe")
            } else {
                (PendingAction::Unsubscribe, "unsubscribe")
            };
            if member == (cmd == Command::Subscribe) {
                let text = if member {
                    format!(
                        "{sender} is already subscribed to {}@{domain}.\n",
                        info.name
                    )
                } else {
                    format!("{sender} is not subscribed to {}@{domain}.\n", info.name)
                };
                info!(queue_id = %env.id, list = %info.name, sender = %sender, command = verb, "nothing to do");
                return reply(&format!("{}: nothing to do", info.name), &text);
            }
            let pending = match dir.create_pending(
                &info.name,
                &sender,
                action,
                "",
                now,
                PENDING_TTL,
            ) {
                Ok(p) => p,
                Err(e @ DirectoryError::Db(_)) => return Err(db_failure(&e)),
                Err(e) => {
                    warn!(queue_id = %env.id, list = %info.name, error = %e, "cannot record the request");
                    return Ok(());
                }
            };
            info!(queue_id = %env.id, list = %info.name, sender = %sender, command = verb, "confirmation requested");
            let text = format!(
                "Someone (hopefully you) asked to {verb} {sender}\n\
                 {to_from} the mailing list {name}@{domain}.\n\
                 \n\
                 To confirm, simply reply to this message (the subject must keep\n\
                 the code {token}). If you did not ask for this, ignore this\n\
                 message: nothing happens without your reply.\n",
                to_from = if cmd == Command::Subscribe {
                    "to"
                } else {
                    "from"
                },
                name = info.name,
                token = pending.token,
            );
            reply(
                &format!("confirm {}: {verb} {}@{domain}", pending.token, info.name),
                &text,
            )
        }
        _ => {
            info!(queue_id = %env.id, list = %info.name, sender = %sender, "help sent");
            reply(
                &format!("{}: help", info.name),
                &help_text(&info.name, domain),
            )
        }
    }
}

/// The owner's answer about a held post.
#[allow(clippy::too_many_arguments)]
fn moderate(
    ctx: &Context,
    env: &Envelope,
    info: &ListInfo,
    domain: &str,
    token: &str,
    sender: &str,
    data: &[u8],
    body: &str,
    now: i64,
) -> Result<(), Failure> {
    let Some(dir) = ctx.directory.mail_directory() else {
        return Err(Failure::temporary("4.3.0", "lists are not available", true));
    };
    let from_header = mail_parser::MessageParser::new()
        .parse_headers(data)
        .and_then(|m| {
            m.from()
                .and_then(|a| a.first())
                .and_then(|a| a.address())
                .map(str::to_string)
        })
        .unwrap_or_default();
    let owner = &info.owner;
    if !sender.eq_ignore_ascii_case(owner) && !from_header.eq_ignore_ascii_case(owner) {
        warn!(queue_id = %env.id, list = %info.name, sender = %sender, "moderation answer not from the owner; ignored");
        return Ok(());
    }
    let decision = match body_command(body) {
        Some(c @ (Command::Approve | Command::Reject)) => c,
        _ => {
            info!(queue_id = %env.id, list = %info.name, "moderation answer without approve/reject");
            let text = "Reply with \"approve\" or \"reject\" as the first line.\n";
            return service_mail(
                ctx,
                &env.id,
                info,
                domain,
                sender,
                &format!("moderate {token}: approve or reject?"),
                text,
                now,
            )
            .map(|_| ())
            .map_err(|_| Failure::temporary("4.3.0", "cannot queue the answer", true));
        }
    };
    let pending = match dir.take_pending(token, now) {
        Ok(p) => p,
        Err(DirectoryError::TokenExpired) | Err(DirectoryError::NoSuchToken) => {
            info!(queue_id = %env.id, list = %info.name, "moderation token expired or used");
            return Ok(());
        }
        Err(e) => return Err(db_failure(&e)),
    };
    let held_id = QueueId(pending.payload.clone());
    let approve = decision == Command::Approve;
    let verb = if approve { "approved" } else { "rejected" };
    match release(ctx, &held_id, &info.name, approve, now) {
        Ok(n) => info!(
            queue_id = %env.id,
            list = %info.name,
            held_id = %held_id,
            poster = %pending.address,
            recipients = n,
            decision = verb,
            "held post decided"
        ),
        Err(e) => {
            warn!(queue_id = %env.id, list = %info.name, held_id = %held_id, error = %e, "held post not found")
        }
    }
    Ok(())
}

/// Releases (approve) or fails (reject, expiry) the recipients of held
/// message `id` that wait for list `name`; the message then goes on (a
/// rejected post is bounced to the poster by the next attempt). Returns
/// how many recipients were concerned.
pub fn release(
    ctx: &Context,
    id: &QueueId,
    name: &str,
    approve: bool,
    now: i64,
) -> Result<usize, postamt_spool::SpoolError> {
    let mut env = ctx.queue.get(id)?;
    let held = held_mark(name);
    let mut n = 0;
    for r in env.recipients.iter_mut() {
        if !r.delivered_to.contains(&held) {
            continue;
        }
        n += 1;
        r.delivered_to.retain(|d| d != &held);
        if approve {
            r.delivered_to.push(approved_mark(name));
            r.last_error = None;
        } else if r.status == RecipientStatus::Pending {
            r.status = RecipientStatus::Failed;
            r.last_error = Some(format!(
                "5.7.1 post not accepted by the moderator of list {name}"
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
    ctx.queue.update(&env)?;
    ctx.rescan();
    Ok(n)
}

/// Housekeeping: drops expired confirmations, fails expired held posts
/// (the poster is told), and forgets old auto-reply memory.
pub fn housekeeping(ctx: &Context, now: i64) {
    let Some(dir) = ctx.directory.mail_directory() else {
        return;
    };
    match dir.expire_pending(now) {
        Ok(expired) => {
            for p in expired {
                if p.action == PendingAction::Post {
                    let id = QueueId(p.payload.clone());
                    match release(ctx, &id, &p.list, false, now) {
                        Ok(_) => {
                            info!(queue_id = %id, list = %p.list, "held post expired without approval")
                        }
                        Err(e) => {
                            warn!(queue_id = %id, list = %p.list, error = %e, "expired held post not found")
                        }
                    }
                }
            }
        }
        Err(e) => warn!(error = %e, "cannot expire pending list entries"),
    }
    let before = now.saturating_sub(postamt_directory::DEFAULT_AUTOREPLY_PERIOD);
    if let Err(e) = dir.prune_autoreply_sent(before) {
        warn!(error = %e, "cannot prune the auto-reply memory");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postamt_directory::Posting;

    fn info(reply_to: ReplyTo, prefix: &str) -> ListInfo {
        ListInfo {
            name: "team".into(),
            owner: "boss@example.org".into(),
            posting: Posting::Anyone,
            reply_to,
            subject_prefix: prefix.into(),
            max_message_size: 0,
            created_at: 0,
        }
    }

    const POST: &[u8] = b"From: a@x.org\r\nTo: team@example.org\r\nSubject: Hi\r\nReply-To: a@x.org\r\nPrecedence: bulk\r\nList-Id: <other.x.org>\r\n\r\nBody\r\n";

    #[test]
    fn the_list_copy_has_the_list_headers() {
        let out = list_copy(POST, &info(ReplyTo::List, "[team] "), "example.org");
        let t = String::from_utf8(out).unwrap();
        for h in [
            "List-Id: <team.example.org>\r\n",
            "List-Unsubscribe: <mailto:team-request@example.org?subject=unsubscribe>\r\n",
            "List-Post: <mailto:team@example.org>\r\n",
            "List-Help: <mailto:team-request@example.org?subject=help>\r\n",
            "Precedence: list\r\n",
            "Reply-To: <team@example.org>\r\n",
            "Subject: [team] Hi\r\n",
        ] {
            assert!(t.contains(h), "{h} missing in {t}");
        }
        assert!(!t.contains("other.x.org"));
        assert!(!t.contains("bulk"));
        assert!(!t.contains("Reply-To: a@x.org"));
        assert!(t.ends_with("\r\n\r\nBody\r\n"));
    }

    #[test]
    fn prefix_is_not_doubled_and_sender_reply_to_is_kept() {
        let post = b"Subject: Re: [team] Hi\r\nReply-To: a@x.org\r\n\r\nB";
        let t = String::from_utf8(list_copy(
            post,
            &info(ReplyTo::Sender, "[team] "),
            "example.org",
        ))
        .unwrap();
        assert!(t.contains("Subject: Re: [team] Hi\r\n"), "{t}");
        assert!(t.contains("Reply-To: a@x.org\r\n"), "{t}");
        assert_eq!(t.matches("Subject:").count(), 1);
    }

    #[test]
    fn list_id_loop_detection() {
        let d = LocalDomains::new("example.org", ["mx.example.org"], "postmaster@example.org");
        let p = message::split(b"List-Id: Team <TEAM.example.org>\r\n\r\n");
        assert!(carries_list_id(&p, "team", &d));
        assert!(!carries_list_id(&p, "other", &d));
    }

    #[test]
    fn commands_from_subject_or_first_line() {
        assert_eq!(find_command("subscribe", ""), Some(Command::Subscribe));
        assert_eq!(find_command("Re: JOIN me", ""), Some(Command::Subscribe));
        assert_eq!(
            find_command("", "\n\n leave\nmore"),
            Some(Command::Unsubscribe)
        );
        assert_eq!(find_command("whatever", "help"), Some(Command::Help));
        assert_eq!(find_command("hello", "there"), None);
        assert_eq!(body_command("approve\n> quoted"), Some(Command::Approve));
    }

    #[test]
    fn tokens_are_found_in_subject_and_body() {
        let t = "abcdefghijkmnpqrstuv";
        assert!(looks_like_token(t));
        assert_eq!(find_tokens(&format!("Re: confirm {t}: subscribe"), ""), [t]);
        assert_eq!(
            find_tokens("x", &format!("> code {}\n", t.to_uppercase())),
            [t]
        );
        assert!(find_tokens("subscribe", "hello world").is_empty());
    }
}
