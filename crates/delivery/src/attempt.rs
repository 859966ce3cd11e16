//! One delivery attempt of one queued message: load the envelope, classify
//! each pending recipient through the directory (an SRS address of ours is
//! returned to the original sender first), deliver to every destination
//! that does not have the message yet (remote forwarded copies with an SRS
//! envelope sender, so one message may need several transactions per
//! domain), post to the lists reached, answer list requests, send the
//! users' auto-replies, record each recipient's fate, queue the bounce or
//! delay warning, then save the envelope (held when a post waits for a list
//! owner) or remove the finished message. Blocking (file and database I/O):
//! run it on `spawn_blocking`.
//!
//! `delivered_to` also records non-mailbox steps: `list:NAME` (posted),
//! `request:NAME` (request handled), `held:NAME` / `approved:NAME`
//! (moderation); none can be a user name or an address.
//!
//! Crash safety: a destination is added to `delivered_to` right after its
//! delivery, and the envelope is saved after the attempt, so a crash can
//! only repeat a delivery, never lose one. A bounce is queued before the
//! envelope that records it in `bounced` is saved: a crash in between may
//! duplicate a bounce, never lose one.

use crate::bounce::{self, Report, ReportKind, ReportRecipient};
use crate::context::Context;
use crate::failure::Failure;
use crate::remote::{MessageJob, RemoteOutcome};
use crate::srs::{self, SrsReturn};
use crate::{autoreply, lists, local, policy, remote};
use postamt_directory::{Destination, LocalDomains, Target};
use postamt_spool::{Envelope, NewMessage, QueueId, Recipient, RecipientStatus, SpoolError};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tracing::{debug, error, info, warn};

/// Wait after a spool error before looking at the message again.
pub const SPOOL_RETRY_SECS: i64 = 60;

/// Wait before looking again at a message whose file is missing or damaged.
pub const BROKEN_RETRY_SECS: i64 = 3600;

/// Wait before trying again a message held back only because its remote
/// destination was saturated here (4.4.5), when no scheduler parks it
/// (`Next::WaitFor`).
pub const CONGESTION_RETRY_SECS: i64 = 1;

/// What the scheduler should do with the message after an attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Attempt again at this Unix time.
    At(i64),
    /// Some recipients wait only for a free delivery slot to this remote
    /// domain here (it has as many deliveries as it may): park the message
    /// and attempt it again the moment one of them ends. Not a deferral:
    /// nothing was logged or counted for it.
    WaitFor(String),
    /// Nothing to schedule: delivered and removed, held, gone or unreadable.
    Unscheduled,
}

/// What one attempt remembers across recipients: destinations that have the
/// message (from this or earlier attempts) and ones that failed just now, so
/// each destination is tried at most once per attempt and never gets the
/// message twice.
struct Round {
    delivered: HashSet<String>,
    failed: HashMap<String, Failure>,
}

impl Round {
    fn new(env: &Envelope) -> Round {
        Round {
            delivered: env
                .recipients
                .iter()
                .flat_map(|r| r.delivered_to.iter().cloned())
                .collect(),
            failed: HashMap::new(),
        }
    }
}

/// One destination's outcome, logged once the recipient's fate is known.
struct DestOutcome {
    dest: String,
    result: Result<(), Failure>,
    /// Already delivered to this destination for another recipient.
    duplicate: bool,
    /// Where a remote destination's answer came from.
    remote: Option<Box<RemoteOutcome>>,
}

/// Runs one attempt of message `id` at time `now` (Unix seconds).
pub fn attempt(ctx: &Context, id: &QueueId, now: i64) -> Next {
    // One read of the queue file as a rule; any trouble is sorted out by
    // the separate reads below, which say what exactly is wrong.
    let (mut env, data, has_state) = match ctx.queue.load(id) {
        Ok(l) => (l.envelope, Some(l.message), l.has_state),
        Err(_) => match ctx.queue.get(id) {
            Ok(e) => (e, None, true),
            Err(SpoolError::NotFound(_)) => {
                debug!(queue_id = %id, "message is no longer in the queue");
                return Next::Unscheduled;
            }
            Err(e) => return spool_trouble(id, &e, "read the envelope", now),
        },
    };
    if env.held {
        debug!(queue_id = %id, "message is held; not delivering");
        return Next::Unscheduled;
    }
    let pending = has_pending(&env);
    if !pending && unbounced(&env).is_empty() {
        return finish(ctx, env, now);
    }
    let data = match data {
        Some(d) => d,
        None => match ctx.queue.read_message(id) {
            Ok(d) => d,
            Err(e @ SpoolError::Io(_)) => return spool_trouble(id, &e, "read the message", now),
            Err(e) => {
                // The envelope is there but its message is not: leave it to
                // the admin, and look again only hourly (rescans honour
                // next_attempt).
                error!(queue_id = %id, error = %e, "cannot read the message; left in the queue for the admin");
                env.next_attempt = now.saturating_add(BROKEN_RETRY_SECS);
                if let Err(e) = ctx.queue.update(&env) {
                    warn!(queue_id = %id, error = %e, "cannot save the envelope");
                }
                return Next::At(env.next_attempt);
            }
        },
    };

    // Planned before delivering, so the deferral logs can name it.
    let attempts = if pending {
        env.attempts.saturating_add(1)
    } else {
        env.attempts.max(1)
    };
    env.next_attempt = policy::next_attempt_at(attempts, now, &ctx.config().delivery);
    let mut local_failure: HashMap<String, bool> = HashMap::new();
    let mut side = Side::default();
    let mut congested: Option<String> = None;
    let parking = ctx
        .remote
        .as_ref()
        .is_some_and(|r| r.limits().parking_available());
    if pending {
        let give_up = policy::should_give_up(&env, now, &ctx.config().delivery);
        // Nothing but a busy destination may stop this attempt early: not
        // when a bounce or a delay warning is due anyway.
        let may_wait_quietly = parking
            && !give_up
            && unbounced(&env).is_empty()
            && !policy::should_warn_delay(&env, now, &ctx.config().delivery);
        let domains = ctx.local_domains();
        let mut round = Round::new(&env);
        let mut recipients = std::mem::take(&mut env.recipients);
        // Expand every recipient and deliver locally; collect the remote
        // destinations, then send them all at once (one transaction per
        // domain), then settle each recipient.
        let mut plans: Vec<(usize, Vec<Planned>)> = Vec::new();
        let mut remote_wanted: Vec<RemoteWanted> = Vec::new();
        for (i, rcpt) in recipients.iter_mut().enumerate() {
            if rcpt.status != RecipientStatus::Pending {
                continue;
            }
            let planned = expand_recipient(
                ctx,
                &env,
                rcpt,
                &data,
                &domains,
                &mut round,
                &mut remote_wanted,
                &mut side,
                now,
            );
            plans.push((i, planned));
        }
        let remote = deliver_remote(ctx, &env, &data, &remote_wanted);
        congested = congested_domain(&plans, &remote);
        if let Some(domain) = &congested
            && may_wait_quietly
            && only_congestion(&plans, &remote)
        {
            // Nothing happened: no recipient's state changed, so nothing is
            // saved or logged; the scheduler starts the message again as
            // soon as a delivery to the domain ends.
            debug!(queue_id = %env.id, domain = %domain, "destination busy here; waiting for a delivery slot");
            return Next::WaitFor(domain.clone());
        }
        let counted = settle_congestion(&mut env, &plans, &remote, attempts, now, parking);
        for (i, planned) in plans {
            let Some(rcpt) = recipients.get_mut(i) else {
                continue;
            };
            let was_local =
                settle_recipient(&env, rcpt, planned, &remote, &mut round, give_up, now);
            if let Some(l) = was_local {
                local_failure.insert(rcpt.address.clone(), l);
            }
        }
        env.recipients = recipients;
        env.attempts = counted;
    }

    send_bounce(ctx, &mut env, &data, &local_failure, now);
    if !side.hold && policy::should_warn_delay(&env, now, &ctx.config().delivery) {
        send_delay_warning(ctx, &mut env, &data, now);
    }
    if side.hold {
        info!(queue_id = %env.id, "message held for a list owner's decision");
    }
    match (
        finish_holding(ctx, env, now, side.hold, has_state),
        congested,
    ) {
        (Next::At(_), Some(domain)) if parking => Next::WaitFor(domain),
        (next, _) => next,
    }
}

/// The first remote domain that turned a recipient away only because it
/// was saturated here.
fn congested_domain(
    plans: &[(usize, Vec<Planned>)],
    remote: &HashMap<String, RemoteOutcome>,
) -> Option<String> {
    plans.iter().flat_map(|(_, v)| v).find_map(|p| match p {
        Planned::Remote(a) if remote.get(a).is_some_and(|o| o.congestion) => remote::domain_of(a),
        _ => None,
    })
}

/// Whether congestion is all that happened to the recipients this attempt.
fn only_congestion(
    plans: &[(usize, Vec<Planned>)],
    remote: &HashMap<String, RemoteOutcome>,
) -> bool {
    plans.iter().flat_map(|(_, v)| v).all(|p| match p {
        Planned::Remote(a) => remote.get(a).is_some_and(|o| o.congestion),
        Planned::Done(_) => false,
    })
}

fn has_pending(env: &Envelope) -> bool {
    env.recipients
        .iter()
        .any(|r| r.status == RecipientStatus::Pending)
}

/// Failed recipients not yet reported in a bounce.
fn unbounced(env: &Envelope) -> Vec<&Recipient> {
    env.recipients
        .iter()
        .filter(|r| r.status == RecipientStatus::Failed && !env.bounced.contains(&r.address))
        .collect()
}

/// Logs a spool error and says what to do with the message.
fn spool_trouble(id: &QueueId, e: &SpoolError, what: &str, now: i64) -> Next {
    match e {
        SpoolError::NotFound(_) | SpoolError::Corrupt(..) => {
            error!(queue_id = %id, error = %e, "cannot {what}; message left in the queue for the admin");
            Next::Unscheduled
        }
        SpoolError::Io(_) => {
            warn!(queue_id = %id, error = %e, "cannot {what}; trying again later");
            Next::At(now.saturating_add(SPOOL_RETRY_SECS))
        }
    }
}

/// The key under which a destination is remembered in `delivered_to`.
fn dest_key(dest: &Destination) -> &str {
    match dest {
        Destination::Local { user } => user,
        Destination::Remote { address } => address,
    }
}

/// A destination of a recipient in this attempt: settled already, or
/// waiting for the remote delivery of `address`.
enum Planned {
    Done(DestOutcome),
    Remote(String),
}

/// What an attempt does besides delivering: holding the message for a
/// list owner, and the users whose auto-reply was already considered.
#[derive(Default)]
struct Side {
    hold: bool,
    autoreplied: Vec<String>,
}

/// A remote destination wanted in this attempt and the envelope sender of
/// its copy.
struct RemoteWanted {
    address: String,
    mail_from: String,
}

/// Expands one pending recipient, delivers its local destinations, posts
/// to the lists it reaches, answers list requests and sends auto-replies,
/// and plans its remote destinations (added to `remote_wanted` once each,
/// with the envelope sender of their copy).
#[allow(clippy::too_many_arguments)]
fn expand_recipient(
    ctx: &Context,
    env: &Envelope,
    rcpt: &mut Recipient,
    data: &[u8],
    domains: &LocalDomains,
    round: &mut Round,
    remote_wanted: &mut Vec<RemoteWanted>,
    side: &mut Side,
    now: i64,
) -> Vec<Planned> {
    rcpt.attempts = rcpt.attempts.saturating_add(1);
    let mut planned: Vec<Planned> = Vec::new();
    match srs::srs_return(ctx.srs.as_deref(), &rcpt.address, domains, now) {
        SrsReturn::Relay(original) => {
            info!(
                queue_id = %env.id,
                to = %rcpt.address,
                original = %original,
                sender = %env.mail_from,
                "mail to an SRS address relayed to the original sender"
            );
            let dest = Destination::Remote { address: original };
            plan_destinations(
                ctx,
                env,
                rcpt,
                data,
                round,
                remote_wanted,
                vec![(dest, Some(String::new()))],
                &mut planned,
            );
            return planned;
        }
        SrsReturn::Invalid(why) => {
            info!(queue_id = %env.id, to = %rcpt.address, reason = %why, "invalid SRS address");
            planned.push(failed_dest(
                &rcpt.address,
                Failure::permanent("5.1.1", &format!("invalid SRS address: {why}"), true),
            ));
            return planned;
        }
        SrsReturn::NotSrs => {}
    }
    match ctx.directory.classify(&rcpt.address, domains) {
        Err(e) => planned.push(failed_dest(&rcpt.address, local::classify_resolve(&e))),
        Ok(Target::Deliver(exp)) if exp.is_empty() => planned.push(failed_dest(
            &rcpt.address,
            Failure::permanent("5.1.1", "address expands to no mailbox", true),
        )),
        Ok(Target::Deliver(exp)) => {
            let dests = exp
                .destinations
                .iter()
                .map(|d| {
                    // A remote address reached through a forward or an
                    // alias (anything but the recipient itself) is a
                    // forwarded copy: SRS keeps SPF passing at the
                    // destination. A remote recipient named as such is not.
                    let sender = match d {
                        Destination::Remote { address }
                            if !address.eq_ignore_ascii_case(&rcpt.address) =>
                        {
                            forwarded_sender(ctx, env, domains, now)
                        }
                        _ => None,
                    };
                    (d.clone(), sender)
                })
                .collect();
            plan_destinations(
                ctx,
                env,
                rcpt,
                data,
                round,
                remote_wanted,
                dests,
                &mut planned,
            );
            let primary = ctx.primary_domain();
            for list in &exp.lists {
                plan_list_post(
                    ctx,
                    env,
                    rcpt,
                    data,
                    list,
                    &primary,
                    domains,
                    round,
                    side,
                    &mut planned,
                    now,
                );
            }
            autoreply::send_autoreplies(
                ctx,
                env,
                &rcpt.address,
                &exp.users,
                data,
                domains,
                now,
                &mut side.autoreplied,
            );
        }
        Ok(Target::List { name }) => {
            let domain = lists::list_domain(ctx, &rcpt.address, domains);
            plan_list_post(
                ctx,
                env,
                rcpt,
                data,
                &name,
                &domain,
                domains,
                round,
                side,
                &mut planned,
                now,
            );
        }
        Ok(Target::ListRequest { name }) => {
            let key = format!("request:{}", name.to_ascii_lowercase());
            let domain = lists::list_domain(ctx, &rcpt.address, domains);
            let result = lists::request(ctx, env, data, &name, &domain, now);
            if result.is_ok() {
                rcpt.delivered_to.push(key.clone());
            }
            planned.push(Planned::Done(DestOutcome {
                dest: key,
                result,
                duplicate: false,
                remote: None,
            }));
        }
        Ok(Target::ListBounces { name }) | Ok(Target::ListOwner { name }) => {
            let owner = match ctx.directory.mail_directory().map(|d| d.get_list(&name)) {
                Some(Ok(Some(info))) => info.owner,
                Some(Ok(None)) => {
                    planned.push(failed_dest(
                        &rcpt.address,
                        Failure::permanent("5.1.1", "no such list", true),
                    ));
                    return planned;
                }
                Some(Err(e)) => {
                    planned.push(failed_dest(
                        &rcpt.address,
                        Failure::temporary("4.3.0", &format!("directory error: {e}"), true),
                    ));
                    return planned;
                }
                None => {
                    planned.push(failed_dest(
                        &rcpt.address,
                        Failure::temporary("4.3.0", "lists are not available", true),
                    ));
                    return planned;
                }
            };
            info!(queue_id = %env.id, to = %rcpt.address, list = %name, owner = %owner, "list service mail goes to the owner");
            match ctx.directory.resolve(&owner, domains) {
                Ok(d) if d.is_empty() => planned.push(failed_dest(
                    &rcpt.address,
                    Failure::permanent("5.1.1", "the list owner has no mailbox", true),
                )),
                Err(e) => planned.push(failed_dest(&rcpt.address, local::classify_resolve(&e))),
                Ok(d) => {
                    let dests = d
                        .into_iter()
                        .map(|d| {
                            let s = match d {
                                Destination::Remote { .. } => {
                                    forwarded_sender(ctx, env, domains, now)
                                }
                                Destination::Local { .. } => None,
                            };
                            (d, s)
                        })
                        .collect();
                    plan_destinations(
                        ctx,
                        env,
                        rcpt,
                        data,
                        round,
                        remote_wanted,
                        dests,
                        &mut planned,
                    );
                }
            }
        }
    }
    planned
}

fn failed_dest(dest: &str, f: Failure) -> Planned {
    Planned::Done(DestOutcome {
        dest: dest.to_string(),
        result: Err(f),
        duplicate: false,
        remote: None,
    })
}

/// The envelope sender of a forwarded copy to a remote destination: the
/// SRS form of the original sender (`<>` stays `<>`); `None` (the original
/// sender) without SRS.
/// Our own users' addresses need no rewriting: SPF already passes for them.
fn forwarded_sender(
    ctx: &Context,
    env: &Envelope,
    domains: &LocalDomains,
    now: i64,
) -> Option<String> {
    if env.mail_from.is_empty() {
        return Some(String::new());
    }
    if env
        .mail_from
        .rsplit_once('@')
        .is_some_and(|(_, d)| domains.contains(d))
    {
        return None;
    }
    ctx.srs.as_ref().map(|s| s.forward(&env.mail_from, now))
}

/// Delivers the local destinations and plans the remote ones (each with
/// its envelope sender; `None`: the message's own).
#[allow(clippy::too_many_arguments)]
fn plan_destinations(
    ctx: &Context,
    env: &Envelope,
    rcpt: &mut Recipient,
    data: &[u8],
    round: &mut Round,
    remote_wanted: &mut Vec<RemoteWanted>,
    dests: Vec<(Destination, Option<String>)>,
    planned: &mut Vec<Planned>,
) {
    for (dest, sender) in &dests {
        let key = dest_key(dest);
        if rcpt.delivered_to.iter().any(|d| d == key) {
            continue;
        }
        if round.delivered.contains(key) {
            rcpt.delivered_to.push(key.to_string());
            planned.push(Planned::Done(DestOutcome {
                dest: key.to_string(),
                result: Ok(()),
                duplicate: true,
                remote: None,
            }));
            continue;
        }
        if let Some(f) = round.failed.get(key) {
            planned.push(failed_dest(key, f.clone()));
            continue;
        }
        match dest {
            Destination::Local { user } => {
                let result =
                    local::deliver_local(ctx.store.as_ref(), user, data, &env.id).map(|_| ());
                match &result {
                    Ok(()) => {
                        round.delivered.insert(key.to_string());
                        rcpt.delivered_to.push(key.to_string());
                    }
                    Err(f) => {
                        round.failed.insert(key.to_string(), f.clone());
                    }
                }
                planned.push(Planned::Done(DestOutcome {
                    dest: key.to_string(),
                    result,
                    duplicate: false,
                    remote: None,
                }));
            }
            Destination::Remote { address } => {
                if !remote_wanted.iter().any(|w| &w.address == address) {
                    let mail_from = sender.clone().unwrap_or_else(|| env.mail_from.clone());
                    if mail_from != env.mail_from {
                        info!(
                            queue_id = %env.id,
                            to = %rcpt.address,
                            dest = %address,
                            mail_from = %mail_from,
                            "forwarded copy with a rewritten sender"
                        );
                    }
                    remote_wanted.push(RemoteWanted {
                        address: address.clone(),
                        mail_from,
                    });
                }
                planned.push(Planned::Remote(address.clone()));
            }
        }
    }
}

/// Posts the message to list `name` for this recipient (once per attempt
/// and per message), recording the outcome.
#[allow(clippy::too_many_arguments)]
fn plan_list_post(
    ctx: &Context,
    env: &Envelope,
    rcpt: &mut Recipient,
    data: &[u8],
    name: &str,
    domain: &str,
    domains: &LocalDomains,
    round: &mut Round,
    side: &mut Side,
    planned: &mut Vec<Planned>,
    now: i64,
) {
    let key = lists::list_key(name);
    if rcpt.delivered_to.contains(&key) {
        return;
    }
    if round.delivered.contains(&key) {
        rcpt.delivered_to.push(key.clone());
        planned.push(Planned::Done(DestOutcome {
            dest: key,
            result: Ok(()),
            duplicate: true,
            remote: None,
        }));
        return;
    }
    if let Some(f) = round.failed.get(&key) {
        planned.push(failed_dest(&key, f.clone()));
        return;
    }
    let approved = rcpt.delivered_to.contains(&lists::approved_mark(name));
    match lists::post(ctx, env, data, name, domain, domains, approved, now) {
        lists::PostOutcome::Done(result) => {
            match &result {
                Ok(()) => {
                    round.delivered.insert(key.clone());
                    rcpt.delivered_to.push(key.clone());
                }
                Err(f) => {
                    round.failed.insert(key.clone(), f.clone());
                }
            }
            planned.push(Planned::Done(DestOutcome {
                dest: key,
                result,
                duplicate: false,
                remote: None,
            }));
        }
        lists::PostOutcome::Held => {
            side.hold = true;
            let mark = lists::held_mark(name);
            if !rcpt.delivered_to.contains(&mark) {
                rcpt.delivered_to.push(mark);
            }
            planned.push(failed_dest(
                &key,
                Failure::temporary("4.7.0", "held for the list owner's approval", false),
            ));
        }
    }
}

/// Sends the message to the remote destinations of this attempt (after the
/// signer): one transaction per domain and envelope sender (forwarded
/// copies carry an SRS sender, plain ones the original), domains
/// concurrently.
fn deliver_remote(
    ctx: &Context,
    env: &Envelope,
    data: &[u8],
    wanted: &[RemoteWanted],
) -> HashMap<String, RemoteOutcome> {
    if wanted.is_empty() {
        return HashMap::new();
    }
    let Some(r) = &ctx.remote else {
        let f = remote::not_available();
        return wanted
            .iter()
            .map(|w| {
                let o = RemoteOutcome {
                    result: Err(f.clone()),
                    mx: None,
                    addr: None,
                    tls: false,
                    reply: None,
                    congestion: false,
                };
                (w.address.clone(), o)
            })
            .collect();
    };
    // Grouped by envelope sender, in first-seen order.
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for w in wanted {
        match groups.iter_mut().find(|(m, _)| *m == w.mail_from) {
            Some((_, v)) => v.push(w.address.clone()),
            None => groups.push((w.mail_from.clone(), vec![w.address.clone()])),
        }
    }
    let mut out = HashMap::new();
    for (mail_from, addresses) in groups {
        let smtputf8 = env.smtputf8 || !mail_from.is_ascii();
        let (message, eight_bit) =
            signed_for_sending(r.signer(), &env.id.0, &mail_from, data, smtputf8);
        let job = MessageJob {
            queue_id: env.id.0.clone(),
            smtputf8,
            mail_from,
            eight_bit: env.eight_bit && eight_bit,
            message,
        };
        out.extend(r.deliver_blocking(job, &addresses));
    }
    out
}

/// The signer's output for one envelope sender, and whether it may still
/// hold 8-bit content.
///
/// A DKIM signature covers the body as signed, but only at EHLO does the
/// SMTP client learn that a server lacks 8BITMIME and convert the message
/// to quoted-printable (RFC 6152 §3), which would break a signature made
/// over the 8-bit bytes. So, as RFC 6376 §5.3 advises, an 8-bit message
/// that the signer signs is converted to 7 bit first and the converted
/// bytes are signed: they then pass every server unchanged (the client
/// converts nothing that is 7-bit). Messages the signer leaves alone keep
/// their 8-bit bytes (`BODY=8BITMIME` where offered, converted per server
/// by the client otherwise). A message that cannot be converted is signed
/// as it is: a server with 8BITMIME gets it intact, one without refuses it
/// (5.6.3) whatever the signature.
fn signed_for_sending(
    signer: &dyn crate::MessageSigner,
    queue_id: &str,
    mail_from: &str,
    data: &[u8],
    smtputf8: bool,
) -> (Arc<[u8]>, bool) {
    use postamt_smtp_client::downgrade;
    use std::borrow::Cow;
    if downgrade::needs_8bitmime(data) {
        match downgrade::to_seven_bit(data, smtputf8) {
            Ok(seven) => {
                // A signer that signs returns new bytes; one that leaves
                // the message alone lends it back.
                if let Cow::Owned(signed) = signer.sign(mail_from, &seven) {
                    return (Arc::from(signed), false);
                }
                // Not signed: no reason to convert here.
            }
            Err(why) => {
                debug!(queue_id, mail_from, reason = %why, "8-bit message signed as it is: it cannot be converted to 7 bit");
            }
        }
    }
    (Arc::from(signer.sign(mail_from, data).as_ref()), true)
}

/// When only congestion (a saturated destination here) kept remote mail
/// from leaving, the message is tried again soon (`parked`: as soon as the
/// scheduler starts it again; it is due now should the server restart
/// meanwhile) and the attempt is not counted; with other temporary
/// failures too, it is counted and retried no later than that. Returns the
/// attempt count to save.
fn settle_congestion(
    env: &mut Envelope,
    plans: &[(usize, Vec<Planned>)],
    remote: &HashMap<String, RemoteOutcome>,
    attempts: u32,
    now: i64,
    parked: bool,
) -> u32 {
    let mut congested = false;
    let mut other_temporary = false;
    for p in plans.iter().flat_map(|(_, v)| v) {
        match p {
            Planned::Done(o) => {
                other_temporary |= o.result.as_ref().is_err_and(|f| !f.is_permanent());
            }
            Planned::Remote(a) => match remote.get(a) {
                Some(o) if o.congestion => congested = true,
                Some(o) => {
                    other_temporary |= o.result.as_ref().is_err_and(|f| !f.is_permanent());
                }
                None => other_temporary = true,
            },
        }
    }
    if !congested {
        return attempts;
    }
    let soon = if parked {
        now
    } else {
        now.saturating_add(CONGESTION_RETRY_SECS)
    };
    env.next_attempt = env.next_attempt.min(soon);
    if other_temporary {
        attempts
    } else {
        // Only congestion: not a real attempt (the retry schedule would
        // otherwise stretch for a merely busy destination).
        env.attempts
    }
}

/// Records a recipient's fate from its planned destinations and the remote
/// outcomes. Returns `Some(local)` when it failed somewhere (`local`: a
/// local failure).
fn settle_recipient(
    env: &Envelope,
    rcpt: &mut Recipient,
    planned: Vec<Planned>,
    remote: &HashMap<String, RemoteOutcome>,
    round: &mut Round,
    give_up: bool,
    now: i64,
) -> Option<bool> {
    let mut outcomes: Vec<DestOutcome> = Vec::with_capacity(planned.len());
    for p in planned {
        match p {
            Planned::Done(o) => outcomes.push(o),
            Planned::Remote(address) => {
                let duplicate = round.delivered.contains(&address);
                let o = remote
                    .get(&address)
                    .cloned()
                    .unwrap_or_else(|| RemoteOutcome {
                        result: Err(Failure::temporary(
                            "4.3.0",
                            "no remote delivery result",
                            false,
                        )),
                        mx: None,
                        addr: None,
                        tls: false,
                        reply: None,
                        congestion: false,
                    });
                match &o.result {
                    Ok(()) => {
                        round.delivered.insert(address.clone());
                        if !rcpt.delivered_to.contains(&address) {
                            rcpt.delivered_to.push(address.clone());
                        }
                    }
                    Err(f) => {
                        round.failed.insert(address.clone(), f.clone());
                    }
                }
                outcomes.push(DestOutcome {
                    dest: address,
                    result: o.result.clone(),
                    duplicate,
                    remote: Some(Box::new(o)),
                });
            }
        }
    }

    let failures = || outcomes.iter().filter_map(|o| o.result.as_ref().err());
    let permanent = failures().find(|f| f.is_permanent());
    // A busy destination here is no news about the recipient: its last
    // error stays what it was unless something else went wrong too.
    let congestion = |o: &DestOutcome| o.remote.as_ref().is_some_and(|r| r.congestion);
    let temporary = outcomes
        .iter()
        .filter(|o| !congestion(o))
        .filter_map(|o| o.result.as_ref().err())
        .find(|f| !f.is_permanent())
        .or_else(|| failures().find(|f| !f.is_permanent()));
    let only_congested = outcomes.iter().all(|o| o.result.is_ok() || congestion(o));
    let (status, last_error) = match (permanent, temporary) {
        (None, None) => (RecipientStatus::Delivered, None),
        (Some(p), None) => (RecipientStatus::Failed, Some(p.line())),
        (Some(p), Some(_)) if give_up => (RecipientStatus::Failed, Some(p.line())),
        (None, Some(t)) if give_up => (
            RecipientStatus::Failed,
            Some(policy::give_up_line(&t.line(), env, now)),
        ),
        (None, Some(_)) if only_congested => (RecipientStatus::Pending, rcpt.last_error.clone()),
        (_, Some(t)) => (RecipientStatus::Pending, Some(t.line())),
    };
    let local = failures().next().map(|_| failures().any(|f| f.local));
    count_fate(&status, last_error.as_deref(), &outcomes, only_congested);
    rcpt.status = status;
    rcpt.last_error = last_error;
    log_outcomes(env, rcpt, &outcomes, now);
    local
}

/// The metrics of one recipient's fate: each copy delivered (a mailbox or
/// a remote address, not a list post or a repeat), and the recipient
/// bounced (by its status code) or deferred (not for mere congestion).
fn count_fate(
    status: &RecipientStatus,
    last_error: Option<&str>,
    outcomes: &[DestOutcome],
    only_congested: bool,
) {
    let m = postamt_metrics::global();
    for o in outcomes {
        if o.result.is_ok() && !o.duplicate && (o.remote.is_some() || !o.dest.contains(':')) {
            m.delivered(o.remote.is_some());
        }
    }
    match status {
        RecipientStatus::Failed => m.bounced(postamt_metrics::BounceClass::of_status(
            last_error.unwrap_or_default(),
        )),
        RecipientStatus::Pending if !only_congested => m.deferred(),
        _ => {}
    }
}

/// One event per destination outcome: `status` is sent, deferred or bounced.
fn log_outcomes(env: &Envelope, rcpt: &Recipient, outcomes: &[DestOutcome], now: i64) {
    let delay = policy::age(env, now);
    let failed = rcpt.status == RecipientStatus::Failed;
    if outcomes.is_empty() {
        info!(
            queue_id = %env.id,
            to = %rcpt.address,
            dest = %rcpt.delivered_to.join(","),
            status = %"sent",
            delay,
            "already delivered to every destination"
        );
    }
    for o in outcomes {
        // Remote destinations: which host answered, over what, and how.
        let r = o.remote.as_ref();
        let mx = r.and_then(|r| r.mx.as_deref());
        let addr = r.and_then(|r| r.addr).map(tracing::field::display);
        let tls = r.map(|r| r.tls);
        let reply = r.and_then(|r| r.reply.as_deref());
        match &o.result {
            Ok(()) => info!(
                queue_id = %env.id,
                to = %rcpt.address,
                dest = %o.dest,
                mx,
                addr,
                tls,
                reply,
                status = %"sent",
                delay,
                duplicate = o.duplicate,
                "delivered"
            ),
            Err(f) if failed => {
                let reason = if f.is_permanent() {
                    f.line()
                } else {
                    rcpt.last_error.clone().unwrap_or_else(|| f.line())
                };
                warn!(
                    queue_id = %env.id,
                    to = %rcpt.address,
                    dest = %o.dest,
                    mx,
                    addr,
                    tls,
                    reply,
                    status = %"bounced",
                    delay,
                    reason = %reason,
                    "delivery failed"
                )
            }
            Err(f) if r.is_some_and(|r| r.congestion) => debug!(
                queue_id = %env.id,
                to = %rcpt.address,
                dest = %o.dest,
                reason = %f.line(),
                "waiting for a delivery slot to the destination"
            ),
            Err(f) => info!(
                queue_id = %env.id,
                to = %rcpt.address,
                dest = %o.dest,
                mx,
                addr,
                tls,
                reply,
                status = %"deferred",
                delay,
                reason = %f.line(),
                next_attempt = env.next_attempt,
                "delivery deferred"
            ),
        }
    }
}

/// Queues one bounce for the recipients that failed and were not bounced
/// yet, and records them in `env.bounced`. On a spool error nothing is
/// recorded, so the next attempt tries again.
fn send_bounce(
    ctx: &Context,
    env: &mut Envelope,
    data: &[u8],
    local_failure: &HashMap<String, bool>,
    now: i64,
) {
    let newly = unbounced(env);
    if newly.is_empty() {
        return;
    }
    let failed: Vec<String> = newly.iter().map(|r| r.address.clone()).collect();
    // Failures found in an earlier attempt (a bounce that could not be
    // queued then) count as local: in doubt, the postmaster hears of it.
    let any_local = newly
        .iter()
        .any(|r| local_failure.get(&r.address).copied().unwrap_or(true));
    let postmaster = ctx.config().postmaster_address();
    let copy = ctx.config().delivery.copy_local_failures_to_postmaster && any_local;
    let targets = bounce::bounce_targets(&env.mail_from, &postmaster, copy, &failed);
    if targets.is_empty() {
        warn!(
            queue_id = %env.id,
            failed = ?failed,
            "undeliverable postmaster notification discarded"
        );
        env.bounced.extend(failed);
        return;
    }
    let rcpts: Vec<ReportRecipient> = newly
        .iter()
        .map(|r| ReportRecipient::failed(&r.address, r.last_error.as_deref()))
        .collect();
    let to = if env.mail_from.is_empty() {
        postmaster
    } else {
        env.mail_from.clone()
    };
    let message_id = ctx.message_id(&env.id, "bounce", now);
    let report = bounce::build_report(&Report {
        kind: ReportKind::Failure,
        hostname: &ctx.config().hostname,
        to: &to,
        queue_id: &env.id.0,
        arrival: env.created_at,
        now,
        message_id: &message_id,
        recipients: &rcpts,
        original: data,
    });
    match enqueue_report(ctx, env, targets.clone(), report) {
        Ok(bounce_id) => {
            info!(
                queue_id = %env.id,
                bounce_id = %bounce_id,
                to = ?targets,
                failed = ?failed,
                "bounce generated"
            );
            env.bounced.extend(failed);
        }
        Err(e) => error!(
            queue_id = %env.id,
            error = %e,
            "cannot queue the bounce; trying again at the next attempt"
        ),
    }
}

/// Queues a delay warning about the pending recipients to the sender.
fn send_delay_warning(ctx: &Context, env: &mut Envelope, data: &[u8], now: i64) {
    let rcpts: Vec<ReportRecipient> = env
        .recipients
        .iter()
        .filter(|r| r.status == RecipientStatus::Pending)
        .map(|r| ReportRecipient::delayed(&r.address, r.last_error.as_deref()))
        .collect();
    let message_id = ctx.message_id(&env.id, "delay", now);
    let report = bounce::build_report(&Report {
        kind: ReportKind::Delay {
            retry_until: policy::retry_until(env, &ctx.config().delivery),
        },
        hostname: &ctx.config().hostname,
        to: &env.mail_from,
        queue_id: &env.id.0,
        arrival: env.created_at,
        now,
        message_id: &message_id,
        recipients: &rcpts,
        original: data,
    });
    match enqueue_report(ctx, env, vec![env.mail_from.clone()], report) {
        Ok(warning_id) => {
            info!(
                queue_id = %env.id,
                warning_id = %warning_id,
                to = %env.mail_from,
                "delay warning generated"
            );
            env.delay_warned = true;
        }
        Err(e) => error!(
            queue_id = %env.id,
            error = %e,
            "cannot queue the delay warning; trying again at the next attempt"
        ),
    }
}

/// Queues a report from the null sender.
fn enqueue_report(
    ctx: &Context,
    env: &Envelope,
    recipients: Vec<String>,
    report: Vec<u8>,
) -> Result<QueueId, SpoolError> {
    let msg = NewMessage {
        id: None,
        mail_from: String::new(),
        smtputf8: env.smtputf8 || recipients.iter().any(|r| !r.is_ascii()),
        eight_bit: !report.is_ascii(),
        recipients,
        client: None,
        helo: None,
        auth_user: None,
    };
    ctx.queue.enqueue(msg, report)
}

fn log_completed(env: &Envelope, now: i64) {
    let count = |s: RecipientStatus| env.recipients.iter().filter(|r| r.status == s).count();
    info!(
        queue_id = %env.id,
        delivered = count(RecipientStatus::Delivered),
        failed = count(RecipientStatus::Failed),
        delay = policy::age(env, now),
        "message completed, removed from the queue"
    );
}

/// Saves the envelope, or removes the message when every recipient is done
/// and every failure is bounced. Keeps a `held` flag the admin set while the
/// attempt ran, and respects a deletion made meanwhile.
fn finish(ctx: &Context, env: Envelope, now: i64) -> Next {
    finish_holding(ctx, env, now, false, true)
}

/// `finish`, holding the message when `hold` (a post waits for a list
/// owner). A message done with is removed at once (a hold set meanwhile
/// does not matter any more; `has_state`: whether its `load` found a state
/// file); otherwise the envelope is read again first, to keep a hold the
/// admin set during the attempt.
fn finish_holding(ctx: &Context, mut env: Envelope, now: i64, hold: bool, has_state: bool) -> Next {
    if !hold && env.is_done() && unbounced(&env).is_empty() {
        match ctx.queue.remove_finished(&env.id, has_state, env.size) {
            Ok(()) => {
                log_completed(&env, now);
                return Next::Unscheduled;
            }
            Err(SpoolError::NotFound(_)) => {
                info!(queue_id = %env.id, "message was deleted from the queue during the attempt");
                return Next::Unscheduled;
            }
            Err(e) => {
                error!(queue_id = %env.id, error = %e, "cannot remove the finished message");
            }
        }
    }
    match ctx.queue.get(&env.id) {
        Ok(current) => env.held = current.held || hold,
        Err(SpoolError::NotFound(_)) => {
            info!(queue_id = %env.id, "message was deleted from the queue during the attempt");
            return Next::Unscheduled;
        }
        Err(e) => warn!(queue_id = %env.id, error = %e, "cannot re-read the envelope"),
    }
    if env.is_done() && unbounced(&env).is_empty() {
        match ctx.queue.remove(&env.id) {
            Ok(()) => {
                log_completed(&env, now);
                return Next::Unscheduled;
            }
            Err(e) => error!(queue_id = %env.id, error = %e, "cannot remove the finished message"),
        }
    }
    if let Err(e) = ctx.queue.update(&env) {
        error!(
            queue_id = %env.id,
            error = %e,
            "cannot save the envelope; a retry may deliver again"
        );
    }
    if env.held {
        Next::Unscheduled
    } else {
        Next::At(env.next_attempt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bounce::tests::{parse_report, status_groups};
    use crate::testing::{Harness, MESSAGE, StoreFault, config, envelope};
    use postamt_directory::ResolveError;
    use std::sync::Arc;

    const T0: i64 = 1_700_000_000;
    const DAY: i64 = 86400;

    fn qid(s: &str) -> QueueId {
        QueueId(s.into())
    }

    fn rcpt<'a>(env: &'a Envelope, address: &str) -> &'a Recipient {
        env.recipients
            .iter()
            .find(|r| r.address == address)
            .expect("recipient in envelope")
    }

    /// Signs by putting a digest of the exact bytes it saw on top (a
    /// stand-in for DKIM: any later change to those bytes shows).
    struct StampSigner;

    fn stamp(message: &[u8]) -> String {
        let sum = message
            .iter()
            .fold(0u64, |h, &b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
        format!("X-Stamp: {sum:016x}\r\n")
    }

    impl crate::MessageSigner for StampSigner {
        fn sign<'a>(&self, _mail_from: &str, message: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
            let mut out = stamp(message).into_bytes();
            out.extend_from_slice(message);
            std::borrow::Cow::Owned(out)
        }
    }

    #[test]
    fn an_8bit_message_is_converted_before_it_is_signed() {
        use postamt_smtp_client::downgrade::{needs_8bitmime, to_seven_bit};
        let m = "From: a@example.org\r\nSubject: s\r\nMIME-Version: 1.0\r\n\
                 Content-Type: text/plain; charset=utf-8\r\n\
                 Content-Transfer-Encoding: 8bit\r\n\r\nGr\u{fc}\u{df}e\r\n"
            .as_bytes();
        let (out, eight_bit) = signed_for_sending(&StampSigner, "q1", "a@example.org", m, false);
        // Signed over the converted bytes, which no server will change.
        let seven = to_seven_bit(m, false).expect("convertible");
        let header = stamp(&seven);
        assert!(
            out.starts_with(header.as_bytes()),
            "{}",
            String::from_utf8_lossy(&out)
        );
        assert_eq!(&out[header.len()..], seven.as_ref());
        assert!(!needs_8bitmime(&out), "the client would convert it again");
        assert!(!eight_bit);
        // Without a signature the bytes stay 8-bit (BODY=8BITMIME where offered).
        let (out, eight_bit) =
            signed_for_sending(&crate::NoSigning, "q1", "a@example.org", m, false);
        assert_eq!(out.as_ref(), m);
        assert!(eight_bit);
        // 7-bit messages are signed as they are.
        let ascii = b"Subject: s\r\n\r\nhello\r\n";
        let (out, _) = signed_for_sending(&StampSigner, "q1", "a@example.org", ascii, false);
        assert_eq!(&out[stamp(ascii).len()..], ascii);
        // Not convertible: signed as it is (a server without 8BITMIME refuses it).
        let binary =
            "MIME-Version: 1.0\r\nContent-Transfer-Encoding: binary\r\n\r\n\u{e9}".as_bytes();
        let (out, eight_bit) =
            signed_for_sending(&StampSigner, "q1", "a@example.org", binary, false);
        assert_eq!(&out[stamp(binary).len()..], binary);
        assert!(eight_bit);
    }

    #[test]
    fn each_fate_is_counted_in_the_metrics() {
        let before = postamt_metrics::global().snapshot();
        let h = Harness::new();
        h.dir.users("alice@example.org", &["alice"]);
        h.dir.users("bob@example.org", &["bob"]);
        h.store.fail("bob", Some(StoreFault::Io));
        h.queue.put(envelope(
            "m1",
            "s@x.org",
            &["alice@example.org", "bob@example.org", "ghost@example.org"],
            T0,
        ));
        attempt(&h.ctx, &qid("m1"), T0);
        // Other tests count too, at the same time: at least ours are there.
        let after = postamt_metrics::global().snapshot();
        assert!(after.delivered_local > before.delivered_local);
        assert!(after.deferred > before.deferred);
        let address = postamt_metrics::BounceClass::of_status("5.1.1");
        let i = postamt_metrics::BounceClass::ALL
            .iter()
            .position(|c| *c == address)
            .unwrap();
        assert!(
            after.bounced[i] > before.bounced[i],
            "5.1.1 is an address bounce"
        );
    }

    #[test]
    fn a_message_delivered_at_once_is_removed_without_saving_or_rereading() {
        let h = Harness::new();
        h.dir.users("alice@example.org", &["alice"]);
        h.queue
            .put(envelope("m1", "s@x.org", &["alice@example.org"], T0));
        assert_eq!(attempt(&h.ctx, &qid("m1"), T0), Next::Unscheduled);
        assert_eq!(h.store.count("alice"), 1);
        let s = h.queue.state();
        assert!(s.updates.is_empty(), "no state file written");
        assert_eq!(s.gets, 0, "one load, no re-read");
        assert_eq!(
            s.finished,
            [(qid("m1"), false)],
            "removed knowing there is no state file"
        );
        assert!(s.envelopes.is_empty());
    }

    #[test]
    fn a_retried_message_is_removed_with_its_state_file() {
        let h = Harness::new();
        h.dir.users("bob@example.org", &["bob"]);
        h.store.fail("bob", Some(StoreFault::Io));
        h.queue
            .put(envelope("m1", "s@x.org", &["bob@example.org"], T0));
        assert_eq!(attempt(&h.ctx, &qid("m1"), T0), Next::At(T0 + 60));
        h.store.fail("bob", None);
        assert_eq!(attempt(&h.ctx, &qid("m1"), T0 + 60), Next::Unscheduled);
        assert_eq!(h.queue.state().finished, [(qid("m1"), true)]);
    }

    #[test]
    fn delivers_to_several_local_recipients_and_removes_the_message() {
        let h = Harness::new();
        h.dir.users("alice@example.org", &["alice"]);
        h.dir.users("bob@example.org", &["bob"]);
        h.queue.put(envelope(
            "m1",
            "s@x.org",
            &["alice@example.org", "bob@example.org"],
            T0,
        ));
        assert_eq!(attempt(&h.ctx, &qid("m1"), T0), Next::Unscheduled);
        assert_eq!(h.store.messages("alice"), [MESSAGE.to_vec()]);
        assert_eq!(h.store.messages("bob"), [MESSAGE.to_vec()]);
        assert!(h.queue.env("m1").is_none(), "finished message removed");
        assert_eq!(h.queue.state().removed, [qid("m1")]);
        assert!(h.queue.enqueued().is_empty(), "no bounce");
    }

    #[test]
    fn alias_to_two_users_retries_only_the_one_that_failed() {
        let h = Harness::new();
        h.dir.users("team@example.org", &["alice", "bob"]);
        h.store.fail("bob", Some(StoreFault::Io));
        h.queue
            .put(envelope("m1", "s@x.org", &["team@example.org"], T0));

        assert_eq!(attempt(&h.ctx, &qid("m1"), T0), Next::At(T0 + 60));
        let env = h.queue.env("m1").expect("still queued");
        let r = rcpt(&env, "team@example.org");
        assert_eq!(r.status, RecipientStatus::Pending);
        assert_eq!(r.delivered_to, ["alice"]);
        assert_eq!(r.attempts, 1);
        let err = r.last_error.as_deref().unwrap();
        assert!(err.starts_with("4.2.0 "), "{err}");
        assert!(err.contains("Permission denied"), "{err}");
        assert_eq!(env.attempts, 1);
        assert_eq!(env.next_attempt, T0 + 60);
        assert_eq!((h.store.count("alice"), h.store.count("bob")), (1, 0));

        h.store.fail("bob", None);
        assert_eq!(attempt(&h.ctx, &qid("m1"), T0 + 60), Next::Unscheduled);
        assert_eq!(h.store.count("alice"), 1, "alice never gets it twice");
        assert_eq!(h.store.count("bob"), 1);
        assert!(h.queue.env("m1").is_none());
        assert!(h.queue.enqueued().is_empty());
    }

    #[test]
    fn a_user_reached_twice_gets_one_copy() {
        let h = Harness::new();
        h.dir.users("alice@example.org", &["alice"]);
        h.dir.users("boss@example.org", &["alice"]);
        h.dir.users("all@example.org", &["alice", "bob"]);
        h.queue.put(envelope(
            "m1",
            "s@x.org",
            &["alice@example.org", "boss@example.org", "all@example.org"],
            T0,
        ));
        assert_eq!(attempt(&h.ctx, &qid("m1"), T0), Next::Unscheduled);
        assert_eq!(h.store.count("alice"), 1);
        assert_eq!(h.store.count("bob"), 1);
    }

    #[test]
    fn a_user_delivered_in_an_earlier_attempt_is_not_delivered_again() {
        let h = Harness::new();
        h.dir.users("alice@example.org", &["alice"]);
        h.dir.users("all@example.org", &["alice", "bob"]);
        let mut env = envelope(
            "m1",
            "s@x.org",
            &["alice@example.org", "all@example.org"],
            T0,
        );
        env.recipients[0].status = RecipientStatus::Delivered;
        env.recipients[0].delivered_to = vec!["alice".into()];
        env.recipients[1].last_error = Some("4.3.0 directory error: locked".into());
        h.queue.put(env);
        assert_eq!(attempt(&h.ctx, &qid("m1"), T0 + 60), Next::Unscheduled);
        assert_eq!(h.store.count("alice"), 0);
        assert_eq!(h.store.count("bob"), 1);
    }

    #[test]
    fn temporary_failures_follow_the_retry_schedule() {
        let h = Harness::new();
        h.dir.users("bob@example.org", &["bob"]);
        h.store.fail("bob", Some(StoreFault::Io));
        h.queue
            .put(envelope("m1", "s@x.org", &["bob@example.org"], T0));
        let mut now = T0;
        let mut waits = Vec::new();
        for _ in 0..7 {
            let Next::At(at) = attempt(&h.ctx, &qid("m1"), now) else {
                panic!("must stay scheduled");
            };
            assert_eq!(h.queue.env("m1").unwrap().next_attempt, at);
            waits.push(at - now);
            now = at;
        }
        assert_eq!(waits, [60, 300, 900, 3600, 14400, 14400, 14400]);
        let env = h.queue.env("m1").unwrap();
        assert_eq!(env.attempts, 7);
        assert_eq!(env.recipients[0].attempts, 7);
        assert_eq!(env.recipients[0].status, RecipientStatus::Pending);
    }

    #[test]
    fn directory_errors_are_classified() {
        let h = Harness::new();
        h.dir.set("gone@example.org", Err(ResolveError::Unknown));
        h.dir
            .set("loop@example.org", Err(ResolveError::Loop("a".into())));
        h.dir
            .set("deep@example.org", Err(ResolveError::TooDeep(10)));
        h.dir
            .set("db@example.org", Err(ResolveError::Db("busy".into())));
        h.queue.put(envelope(
            "m1",
            "s@x.org",
            &[
                "gone@example.org",
                "loop@example.org",
                "deep@example.org",
                "db@example.org",
            ],
            T0,
        ));
        assert_eq!(attempt(&h.ctx, &qid("m1"), T0), Next::At(T0 + 60));
        let env = h.queue.env("m1").unwrap();
        let state = |a: &str| {
            let r = rcpt(&env, a);
            (r.status.clone(), r.last_error.clone().unwrap_or_default())
        };
        assert_eq!(
            state("gone@example.org"),
            (RecipientStatus::Failed, "5.1.1 no such user".into())
        );
        assert_eq!(state("loop@example.org").0, RecipientStatus::Failed);
        assert!(state("loop@example.org").1.starts_with("5.4.6 "));
        assert!(state("deep@example.org").1.starts_with("5.4.6 "));
        assert_eq!(state("db@example.org").0, RecipientStatus::Pending);
        assert!(state("db@example.org").1.starts_with("4.3.0 "));
        // One bounce for the three failures, none yet for the pending one.
        let sent = h.queue.enqueued();
        assert_eq!(sent.len(), 1);
        let groups = status_groups(&parse_report(&sent[0].2).parts[1].body);
        assert_eq!(groups.len(), 4);
        assert_eq!(
            env.bounced,
            ["gone@example.org", "loop@example.org", "deep@example.org"]
        );
    }

    #[test]
    fn store_errors_are_classified() {
        let h = Harness::new();
        h.dir.users("a@example.org", &["a"]);
        h.dir.users("b@example.org", &["b"]);
        h.store.fail("a", Some(StoreFault::NoMailbox));
        h.store.fail("b", Some(StoreFault::InvalidUser));
        h.queue.put(envelope(
            "m1",
            "s@x.org",
            &["a@example.org", "b@example.org"],
            T0,
        ));
        assert_eq!(attempt(&h.ctx, &qid("m1"), T0), Next::Unscheduled);
        let (_, _, bytes) = &h.queue.enqueued()[0];
        let groups = status_groups(&parse_report(bytes).parts[1].body);
        assert_eq!(groups[1].header("status"), Some("5.2.1"));
        assert_eq!(
            groups[1].header("diagnostic-code"),
            Some("smtp; 5.2.1 mailbox unavailable")
        );
        assert_eq!(groups[2].header("status"), Some("5.1.3"));
    }

    #[test]
    fn giving_up_turns_a_temporary_failure_into_a_bounce() {
        let h = Harness::new();
        h.dir.users("bob@example.org", &["bob"]);
        h.store.fail("bob", Some(StoreFault::Io));
        let mut env = envelope("m1", "s@x.org", &["bob@example.org"], T0);
        env.attempts = 30;
        env.delay_warned = true;
        h.queue.put(env);

        assert_eq!(
            attempt(&h.ctx, &qid("m1"), T0 + 5 * DAY - 1),
            Next::At(T0 + 5 * DAY - 1 + 14400)
        );
        assert!(h.queue.enqueued().is_empty(), "not yet");

        assert_eq!(attempt(&h.ctx, &qid("m1"), T0 + 5 * DAY), Next::Unscheduled);
        assert!(
            h.queue.env("m1").is_none(),
            "bounced message leaves the queue"
        );
        let sent = h.queue.enqueued();
        assert_eq!(sent.len(), 1);
        let (_, msg, bytes) = &sent[0];
        assert_eq!(msg.mail_from, "");
        assert_eq!(msg.recipients, ["s@x.org", "postmaster@example.org"]);
        let p = parse_report(bytes);
        let groups = status_groups(&p.parts[1].body);
        assert_eq!(
            groups[1].header("final-recipient"),
            Some("rfc822; bob@example.org")
        );
        assert_eq!(groups[1].header("action"), Some("failed"));
        assert_eq!(groups[1].header("status"), Some("5.4.7"));
        let diag = groups[1].header("diagnostic-code").unwrap();
        assert!(diag.starts_with("smtp; 5.4.7 "), "{diag}");
        assert!(diag.contains("last error: 4.2.0 "), "{diag}");
        assert!(diag.contains("Permission denied"), "{diag}");
    }

    #[test]
    fn bounce_is_an_rfc3464_report_to_the_sender() {
        let h = Harness::new();
        h.queue
            .put(envelope("m1", "sender@x.org", &["nobody@example.org"], T0));
        assert_eq!(attempt(&h.ctx, &qid("m1"), T0 + 10), Next::Unscheduled);
        let (bounce_id, msg, bytes) = h.queue.enqueued().remove(0);
        assert_eq!(bounce_id, qid("r1"));
        assert!(msg.mail_from.is_empty(), "bounces come from <>");
        let p = parse_report(&bytes);
        assert_eq!(p.top.header("to"), Some("<sender@x.org>"));
        assert_eq!(
            p.top.header("from"),
            Some("Mail Delivery System <MAILER-DAEMON@mx.example.org>")
        );
        assert_eq!(
            p.top.header("subject"),
            Some("Undelivered Mail Returned to Sender")
        );
        assert_eq!(p.top.header("auto-submitted"), Some("auto-replied"));
        let mid = p.top.header("message-id").unwrap();
        assert!(
            mid.starts_with('<') && mid.ends_with("@mx.example.org>"),
            "{mid}"
        );
        assert!(p.top.header("date").is_some());
        assert!(
            p.top
                .header("content-type")
                .unwrap()
                .contains("report-type=delivery-status")
        );
        assert_eq!(p.parts.len(), 3);
        assert!(p.parts[0].body.contains("<nobody@example.org>"));
        assert_eq!(
            p.parts[1].header("content-type"),
            Some("message/delivery-status")
        );
        let groups = status_groups(&p.parts[1].body);
        assert_eq!(
            groups[0].header("reporting-mta"),
            Some("dns; mx.example.org")
        );
        assert!(groups[0].header("arrival-date").is_some());
        assert_eq!(
            groups[1].header("final-recipient"),
            Some("rfc822; nobody@example.org")
        );
        assert_eq!(groups[1].header("action"), Some("failed"));
        assert_eq!(groups[1].header("status"), Some("5.1.1"));
        assert_eq!(
            groups[1].header("diagnostic-code"),
            Some("smtp; 5.1.1 no such user")
        );
        assert_eq!(
            p.parts[2].header("content-type"),
            Some("text/rfc822-headers")
        );
        assert!(p.parts[2].body.contains("Subject: Test"));
        assert!(
            !p.parts[2].body.contains("Hello"),
            "the body is not returned"
        );
    }

    #[test]
    fn null_sender_failures_go_to_the_postmaster() {
        let mut cfg = config();
        cfg.delivery.copy_local_failures_to_postmaster = false;
        let h = Harness::with_config(cfg);
        h.queue.put(envelope("m1", "", &["nobody@example.org"], T0));
        assert_eq!(attempt(&h.ctx, &qid("m1"), T0), Next::Unscheduled);
        let sent = h.queue.enqueued();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].1.recipients, ["postmaster@example.org"]);
        assert_eq!(sent[0].1.mail_from, "");
        let p = parse_report(&sent[0].2);
        assert_eq!(p.top.header("to"), Some("<postmaster@example.org>"));
    }

    #[test]
    fn a_failed_double_bounce_is_dropped() {
        let h = Harness::new();
        h.dir.users("postmaster@example.org", &["pm"]);
        h.store.fail("pm", Some(StoreFault::NoMailbox));
        h.queue
            .put(envelope("m1", "", &["postmaster@example.org"], T0));
        assert_eq!(attempt(&h.ctx, &qid("m1"), T0), Next::Unscheduled);
        assert!(h.queue.enqueued().is_empty(), "no bounce loop");
        assert!(h.queue.env("m1").is_none());
    }

    #[test]
    fn postmaster_copy_follows_the_setting() {
        for copy in [true, false] {
            let mut cfg = config();
            cfg.delivery.copy_local_failures_to_postmaster = copy;
            let h = Harness::with_config(cfg);
            h.dir.users("bob@example.org", &["bob"]);
            h.store.fail("bob", Some(StoreFault::NoMailbox));
            h.queue
                .put(envelope("m1", "s@x.org", &["bob@example.org"], T0));
            attempt(&h.ctx, &qid("m1"), T0);
            let sent = h.queue.enqueued();
            assert_eq!(sent.len(), 1, "one bounce (copy = {copy})");
            let want: &[&str] = if copy {
                &["s@x.org", "postmaster@example.org"]
            } else {
                &["s@x.org"]
            };
            assert_eq!(sent[0].1.recipients, want);
        }
    }

    #[test]
    fn remote_failures_are_not_copied_to_the_postmaster() {
        let h = Harness::new();
        h.dir.set(
            "fwd@example.org",
            Ok(vec![Destination::Remote {
                address: "far@remote.net".into(),
            }]),
        );
        h.queue
            .put(envelope("m1", "s@x.org", &["fwd@example.org"], T0));
        assert_eq!(attempt(&h.ctx, &qid("m1"), T0), Next::At(T0 + 60));
        let env = h.queue.env("m1").unwrap();
        assert_eq!(
            env.recipients[0].last_error.as_deref(),
            Some("4.4.0 remote delivery is not configured"),
            "a context without remote delivery defers remote destinations"
        );
        let mut env = env;
        env.delay_warned = true;
        h.queue.state().envelopes.insert(qid("m1"), env);
        attempt(&h.ctx, &qid("m1"), T0 + 5 * DAY);
        let sent = h.queue.enqueued();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].1.recipients, ["s@x.org"]);
    }

    #[test]
    fn delay_warning_is_sent_once() {
        let h = Harness::new();
        h.dir.users("bob@example.org", &["bob"]);
        h.store.fail("bob", Some(StoreFault::Io));
        h.queue
            .put(envelope("m1", "s@x.org", &["bob@example.org"], T0));
        attempt(&h.ctx, &qid("m1"), T0 + 3600);
        assert!(h.queue.enqueued().is_empty(), "too early for a warning");

        attempt(&h.ctx, &qid("m1"), T0 + 4 * 3600);
        let sent = h.queue.enqueued();
        assert_eq!(sent.len(), 1);
        let (_, msg, bytes) = &sent[0];
        assert_eq!(msg.mail_from, "");
        assert_eq!(msg.recipients, ["s@x.org"]);
        let p = parse_report(bytes);
        assert_eq!(
            p.top.header("subject"),
            Some("Delayed Mail (still being retried)")
        );
        let groups = status_groups(&p.parts[1].body);
        assert_eq!(groups[1].header("action"), Some("delayed"));
        assert_eq!(groups[1].header("status"), Some("4.2.0"));
        assert_eq!(
            groups[1].header("will-retry-until"),
            Some(bounce::format_date(T0 + 5 * DAY).as_str())
        );
        assert!(h.queue.env("m1").unwrap().delay_warned);

        attempt(&h.ctx, &qid("m1"), T0 + 8 * 3600);
        assert_eq!(h.queue.enqueued().len(), 1, "only one warning");
    }

    #[test]
    fn no_delay_warning_to_the_null_sender() {
        let h = Harness::new();
        h.dir.users("bob@example.org", &["bob"]);
        h.store.fail("bob", Some(StoreFault::Io));
        h.queue.put(envelope("m1", "", &["bob@example.org"], T0));
        attempt(&h.ctx, &qid("m1"), T0 + DAY);
        assert!(h.queue.enqueued().is_empty());
    }

    #[test]
    fn a_held_message_is_not_delivered() {
        let h = Harness::new();
        h.dir.users("bob@example.org", &["bob"]);
        let mut env = envelope("m1", "s@x.org", &["bob@example.org"], T0);
        env.held = true;
        h.queue.put(env.clone());
        assert_eq!(attempt(&h.ctx, &qid("m1"), T0), Next::Unscheduled);
        assert_eq!(h.store.count("bob"), 0);
        assert_eq!(h.queue.env("m1"), Some(env), "envelope untouched");
    }

    #[test]
    fn an_envelope_without_its_message_waits_for_the_admin() {
        let h = Harness::new();
        h.dir.users("bob@example.org", &["bob"]);
        h.queue
            .put(envelope("m1", "s@x.org", &["bob@example.org"], T0));
        h.queue.state().messages.clear();
        assert_eq!(attempt(&h.ctx, &qid("m1"), T0), Next::At(T0 + 3600));
        let env = h.queue.env("m1").expect("left in the queue");
        assert_eq!(env.next_attempt, T0 + 3600);
        assert_eq!(env.recipients[0].status, RecipientStatus::Pending);
        assert!(h.queue.enqueued().is_empty());
    }

    #[test]
    fn a_missing_message_is_skipped() {
        let h = Harness::new();
        assert_eq!(attempt(&h.ctx, &qid("nope"), T0), Next::Unscheduled);
    }

    #[test]
    fn a_bounce_that_cannot_be_queued_is_retried_without_redelivering() {
        let h = Harness::new();
        h.dir.users("alice@example.org", &["alice"]);
        h.queue.put(envelope(
            "m1",
            "s@x.org",
            &["alice@example.org", "nobody@example.org"],
            T0,
        ));
        h.queue.state().fail_enqueue = true;
        assert_eq!(attempt(&h.ctx, &qid("m1"), T0), Next::At(T0 + 60));
        let env = h.queue.env("m1").expect("kept until the bounce is queued");
        assert!(env.bounced.is_empty());
        assert_eq!(
            rcpt(&env, "nobody@example.org").status,
            RecipientStatus::Failed
        );

        h.queue.state().fail_enqueue = false;
        assert_eq!(attempt(&h.ctx, &qid("m1"), T0 + 60), Next::Unscheduled);
        assert_eq!(h.queue.enqueued().len(), 1);
        assert_eq!(h.store.count("alice"), 1, "no second delivery");
        assert!(h.queue.env("m1").is_none());
    }

    #[test]
    fn recipients_already_bounced_are_not_bounced_again() {
        let h = Harness::new();
        h.dir.users("bob@example.org", &["bob"]);
        h.store.fail("bob", Some(StoreFault::Io));
        let mut env = envelope(
            "m1",
            "s@x.org",
            &["nobody@example.org", "bob@example.org"],
            T0,
        );
        env.recipients[0].status = RecipientStatus::Failed;
        env.recipients[0].last_error = Some("5.1.1 no such user".into());
        env.bounced = vec!["nobody@example.org".into()];
        h.queue.put(env);
        attempt(&h.ctx, &qid("m1"), T0 + 60);
        assert!(h.queue.enqueued().is_empty());
    }

    #[test]
    fn a_hold_set_during_the_attempt_is_kept() {
        // The admin holds the message while it is being delivered: the
        // attempt's save must not clear the flag.
        struct HoldingStore(Arc<crate::testing::FakeQueue>);
        impl crate::backend::StoreBackend for HoldingStore {
            fn deliver(
                &self,
                _: &str,
                _: &[u8],
                id: &str,
            ) -> Result<String, postamt_store::StoreError> {
                let mut s = self.0.state();
                if let Some(e) = s.envelopes.get_mut(&QueueId(id.into())) {
                    e.held = true;
                }
                Err(postamt_store::StoreError::Io(std::io::Error::other("busy")))
            }
        }
        let h = Harness::new();
        h.dir.users("bob@example.org", &["bob"]);
        let ctx = Context::new(
            h.ctx.config(),
            h.queue.clone(),
            Arc::new(HoldingStore(h.queue.clone())),
            h.dir.clone(),
        );
        h.queue
            .put(envelope("m1", "s@x.org", &["bob@example.org"], T0));
        assert_eq!(attempt(&ctx, &qid("m1"), T0), Next::Unscheduled);
        let env = h.queue.env("m1").unwrap();
        assert!(env.held);
        assert_eq!(env.attempts, 1);
    }

    #[test]
    fn partial_alias_failure_keeps_retrying_then_bounces_the_permanent_part() {
        let h = Harness::new();
        h.dir.users("team@example.org", &["alice", "bob", "carol"]);
        h.store.fail("bob", Some(StoreFault::NoMailbox));
        h.store.fail("carol", Some(StoreFault::Io));
        h.queue
            .put(envelope("m1", "s@x.org", &["team@example.org"], T0));
        attempt(&h.ctx, &qid("m1"), T0);
        let env = h.queue.env("m1").unwrap();
        assert_eq!(
            env.recipients[0].status,
            RecipientStatus::Pending,
            "carol may still work"
        );
        assert!(h.queue.enqueued().is_empty());

        h.store.fail("carol", None);
        assert_eq!(attempt(&h.ctx, &qid("m1"), T0 + 60), Next::Unscheduled);
        assert_eq!((h.store.count("alice"), h.store.count("carol")), (1, 1));
        let sent = h.queue.enqueued();
        assert_eq!(sent.len(), 1);
        let groups = status_groups(&parse_report(&sent[0].2).parts[1].body);
        assert_eq!(groups[1].header("status"), Some("5.2.1"));
    }
}

#[cfg(test)]
mod log_tests {
    use super::*;
    use crate::testing::{Harness, StoreFault, capture, envelope};

    #[test]
    fn each_recipient_outcome_is_one_event_with_the_queue_id() {
        let h = Harness::new();
        h.dir.users("alice@example.org", &["alice"]);
        h.dir.users("bob@example.org", &["bob"]);
        h.store.fail("bob", Some(StoreFault::Io));
        h.queue.put(envelope(
            "m1",
            "s@x.org",
            &["alice@example.org", "bob@example.org", "ghost@example.org"],
            1000,
        ));
        let lines = capture(|| {
            attempt(&h.ctx, &QueueId("m1".into()), 1042);
        });
        let find = |needle: &str| {
            lines
                .iter()
                .find(|l| l.contains(needle))
                .unwrap_or_else(|| panic!("no log line with {needle}: {lines:#?}"))
                .clone()
        };
        let sent = find("dest=alice");
        for f in [
            "postamt_delivery::attempt",
            "queue_id=m1",
            "to=alice@example.org",
            "status=sent",
            "delay=42",
        ] {
            assert!(sent.contains(f), "{f} missing in {sent}");
        }
        let deferred = find("dest=bob");
        assert!(deferred.contains("status=deferred"), "{deferred}");
        assert!(deferred.contains("reason=4.2.0 "), "{deferred}");
        assert!(deferred.contains("next_attempt=1102"), "{deferred}");
        let bounced = find("to=ghost@example.org");
        assert!(bounced.contains("status=bounced"), "{bounced}");
        assert!(bounced.contains("reason=5.1.1 no such user"), "{bounced}");
        let bounce = find("bounce generated");
        assert!(
            bounce.contains("queue_id=m1") && bounce.contains("bounce_id=r1"),
            "{bounce}"
        );
    }

    #[test]
    fn completion_is_logged() {
        let h = Harness::new();
        h.dir.users("alice@example.org", &["alice"]);
        h.queue
            .put(envelope("m2", "s@x.org", &["alice@example.org"], 1000));
        let lines = capture(|| {
            attempt(&h.ctx, &QueueId("m2".into()), 1001);
        });
        assert!(
            lines
                .iter()
                .any(|l| l.contains("removed from the queue") && l.contains("queue_id=m2")),
            "{lines:#?}"
        );
    }
}
