//! Remote delivery (to addresses outside our domains): one attempt of one
//! message's remote recipients. They are grouped by destination domain,
//! each domain gets one transaction with all its recipients, and the
//! domains are delivered concurrently (a dead one never holds up the
//! others). Per domain: admission and connection slots (`limits`), the
//! route (`route`: smarthost or MX), then each host and address in turn
//! until one gives a definitive answer; connection failures, timeouts, TLS
//! failures and refused greetings move on to the next address. Each
//! recipient's outcome says what happened and where (host, address, TLS,
//! reply) for the delivery log and the bounce.

use crate::dns::{BrokenResolver, DnsError, HickoryResolver, Resolver};
use crate::failure::{Failure, is_status_code};
use crate::limits::{Admission, LimitSettings, Limits};
use crate::route::{self, Route, RouteError, RouteSettings, loop_failure};
use crate::signer::{MessageSigner, NoSigning};
use crate::transport::{ConnectTarget, SmtpClient, SmtpConnector, TlsSetupError};
use postamt_config::Config;
use postamt_smtp_client::{ClientError, Envelope as ClientEnvelope, RecipientResult, Reply};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tracing::{info, warn};

/// The status code when remote delivery is not set up.
pub const NOT_AVAILABLE_STATUS: &str = "4.4.0";
/// The text when remote delivery is not set up.
pub const NOT_AVAILABLE_TEXT: &str = "remote delivery is not configured";
/// The status code of a deferral because the destination is saturated.
pub const CONGESTION_STATUS: &str = "4.4.5";
/// Addresses tried for one domain in one attempt, at most.
pub const MAX_TARGETS: usize = 10;
/// Longest wait for a QUIT reply after a transaction (in the background).
const QUIT_WAIT: Duration = Duration::from_secs(10);

/// What happened to one remote address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteOutcome {
    pub result: Result<(), Failure>,
    /// The host that answered (or was tried last).
    pub mx: Option<String>,
    pub addr: Option<SocketAddr>,
    /// Whether the session ran over TLS.
    pub tls: bool,
    /// The server's reply for this recipient, if it gave one.
    pub reply: Option<String>,
    /// Deferred only because the domain was saturated here: retried soon,
    /// not counted as an attempt.
    pub congestion: bool,
}

impl RemoteOutcome {
    fn failed(f: Failure) -> RemoteOutcome {
        RemoteOutcome {
            result: Err(f),
            mx: None,
            addr: None,
            tls: false,
            reply: None,
            congestion: false,
        }
    }
}

/// The message, as remote delivery needs it.
#[derive(Clone, Debug)]
pub struct MessageJob {
    pub queue_id: String,
    /// Empty for the null sender.
    pub mail_from: String,
    pub eight_bit: bool,
    pub smtputf8: bool,
    /// The bytes to send (after the signer).
    pub message: Arc<[u8]>,
}

/// Why remote delivery could not be set up from the configuration.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Route(#[from] RouteError),
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    #[error(transparent)]
    Dns(#[from] crate::dns::DnsSetupError),
}

/// Remote delivery: settings, resolver, SMTP client, signer and limits.
pub struct RemoteDelivery {
    pub settings: RouteSettings,
    resolver: Arc<dyn Resolver>,
    connector: Arc<dyn SmtpConnector>,
    signer: Arc<dyn MessageSigner>,
    limits: Arc<Limits>,
}

/// How one address attempt failed.
struct HostFailure {
    failure: Failure,
    /// No SMTP conversation at all (refused, unreachable, timeout, lost):
    /// the kind that suspends a domain.
    connection: bool,
}

/// What trying one address gave.
enum Try {
    /// A definitive answer per recipient.
    Done(Vec<RemoteOutcome>),
    /// Move on to the next address.
    Next(HostFailure),
}

impl RemoteDelivery {
    pub fn new(
        settings: RouteSettings,
        limits: LimitSettings,
        resolver: Arc<dyn Resolver>,
        connector: Arc<dyn SmtpConnector>,
    ) -> RemoteDelivery {
        RemoteDelivery {
            settings,
            resolver,
            connector,
            signer: Arc::new(NoSigning),
            limits: Limits::new(limits),
        }
    }

    /// The real thing from the configuration: hickory on `[dns]`, the SMTP
    /// client with the system's trust roots plus `tls_ca_file`.
    pub fn from_config(cfg: &Config, max_in_flight: usize) -> Result<RemoteDelivery, SetupError> {
        let settings = RouteSettings::from_config(cfg)?;
        let client = crate::transport::client_config(cfg)?;
        let resolver = HickoryResolver::new(&cfg.dns.nameservers)?;
        Ok(RemoteDelivery::new(
            settings,
            LimitSettings::from_config(cfg, max_in_flight),
            Arc::new(resolver),
            Arc::new(SmtpClient::new(client)),
        ))
    }

    /// Like `from_config`, but never fails: a part that cannot be set up is
    /// logged and replaced by one that defers with the reason. Without a
    /// resolver, only routes that need DNS wait (an IP smarthost still
    /// works); with a bad smarthost or `tls_ca_file`, all remote mail waits.
    /// Local delivery is never affected.
    pub fn from_config_or_degraded(cfg: &Config, max_in_flight: usize) -> RemoteDelivery {
        let limits = LimitSettings::from_config(cfg, max_in_flight);
        let parts = RouteSettings::from_config(cfg)
            .map_err(SetupError::from)
            .and_then(|s| Ok((s, crate::transport::client_config(cfg)?)));
        let (settings, client) = match parts {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "remote delivery is not available; remote mail stays queued");
                let why = format!("remote delivery is not available: {e}");
                let settings = RouteSettings {
                    hostname: cfg.hostname.to_ascii_lowercase(),
                    smarthost: None,
                    credentials: None,
                    tls_required_domains: Vec::new(),
                    remote_port: cfg.delivery.remote_port,
                    own_addresses: Vec::new(),
                };
                return RemoteDelivery::new(
                    settings,
                    limits,
                    Arc::new(BrokenResolver(why.clone())),
                    Arc::new(NoConnector(why)),
                );
            }
        };
        let resolver: Arc<dyn Resolver> = match HickoryResolver::new(&cfg.dns.nameservers) {
            Ok(r) => Arc::new(r),
            Err(e) => {
                tracing::error!(error = %e, "no DNS resolver; mail that needs an MX lookup stays queued");
                Arc::new(BrokenResolver(e.to_string()))
            }
        };
        RemoteDelivery::new(
            settings,
            limits,
            resolver,
            Arc::new(SmtpClient::new(client)),
        )
    }

    /// Replaces the signer (DKIM).
    pub fn with_signer(mut self, signer: Arc<dyn MessageSigner>) -> RemoteDelivery {
        self.signer = signer;
        self
    }

    pub fn signer(&self) -> &dyn MessageSigner {
        self.signer.as_ref()
    }

    pub fn limits(&self) -> &Arc<Limits> {
        &self.limits
    }

    /// Lifts the suspension of unreachable domains (`queue flush`).
    pub fn clear_suspensions(&self) {
        self.limits.clear_suspensions()
    }

    /// `deliver` for the blocking attempt: runs on the agent's runtime from
    /// a blocking thread (never call it from async code), or on a private
    /// one when there is none (unit tests).
    pub fn deliver_blocking(
        self: &Arc<Self>,
        job: MessageJob,
        recipients: &[String],
    ) -> HashMap<String, RemoteOutcome> {
        match tokio::runtime::Handle::try_current() {
            Ok(h) => h.block_on(self.deliver(job, recipients)),
            Err(_) => match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(self.deliver(job, recipients)),
                Err(e) => {
                    let f = Failure::temporary("4.3.0", &format!("no runtime: {e}"), false);
                    recipients
                        .iter()
                        .map(|r| (r.clone(), RemoteOutcome::failed(f.clone())))
                        .collect()
                }
            },
        }
    }

    /// Delivers `job` to `recipients` (remote addresses): one transaction
    /// per domain, domains concurrently. One outcome per distinct address.
    pub async fn deliver(
        self: &Arc<Self>,
        job: MessageJob,
        recipients: &[String],
    ) -> HashMap<String, RemoteOutcome> {
        let mut out = HashMap::new();
        let mut by_domain: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for r in recipients {
            if out.contains_key(r) {
                continue;
            }
            match domain_of(r) {
                Some(d) => {
                    let list = by_domain.entry(d).or_default();
                    if !list.contains(r) {
                        list.push(r.clone());
                    }
                }
                None => {
                    let f = Failure::permanent(
                        "5.1.3",
                        &format!("bad destination address syntax: {r}"),
                        false,
                    );
                    out.insert(r.clone(), RemoteOutcome::failed(f));
                }
            }
        }
        let job = Arc::new(job);
        let mut tasks = JoinSet::new();
        let mut pending: HashMap<tokio::task::Id, Vec<String>> = HashMap::new();
        for (domain, rcpts) in by_domain {
            let this = Arc::clone(self);
            let job = Arc::clone(&job);
            let list = rcpts.clone();
            let handle = tasks.spawn(async move {
                let outcomes = this.deliver_domain(&job, &domain, &list).await;
                list.into_iter().zip(outcomes).collect::<Vec<_>>()
            });
            pending.insert(handle.id(), rcpts);
        }
        while let Some(joined) = tasks.join_next_with_id().await {
            match joined {
                Ok((id, results)) => {
                    pending.remove(&id);
                    out.extend(results);
                }
                Err(e) => {
                    warn!(queue_id = %job.queue_id, error = %e, "remote delivery task failed");
                    let f = Failure::temporary("4.3.0", "internal error in remote delivery", false);
                    for r in pending.remove(&e.id()).unwrap_or_default() {
                        out.insert(r, RemoteOutcome::failed(f.clone()));
                    }
                }
            }
        }
        out
    }

    /// One domain: one outcome per recipient, in order.
    async fn deliver_domain(
        &self,
        job: &MessageJob,
        domain: &str,
        rcpts: &[String],
    ) -> Vec<RemoteOutcome> {
        let all = |o: RemoteOutcome| vec![o; rcpts.len()];
        let ticket = match self.limits.enter(domain) {
            Admission::Admitted(t) => t,
            Admission::Busy => return all(congestion(domain)),
            Admission::Suspended(why) => return all(suspended(domain, &why)),
        };
        let Some(_slot) = ticket.slot().await else {
            return all(congestion(domain));
        };
        // The domain may have been found dead while we waited.
        if let Some(why) = self.limits.suspended(domain) {
            return all(suspended(domain, &why));
        }
        let route = match route::route(domain, &self.settings, self.resolver.as_ref()).await {
            Ok(r) => r,
            Err(f) => {
                info!(queue_id = %job.queue_id, domain, reason = %f.line(), "no route");
                return all(RemoteOutcome::failed(f));
            }
        };
        self.try_hosts(job, domain, rcpts, &route).await
    }

    /// Tries the route's hosts and addresses in order.
    async fn try_hosts(
        &self,
        job: &MessageJob,
        domain: &str,
        rcpts: &[String],
        route: &Route,
    ) -> Vec<RemoteOutcome> {
        let envelope = ClientEnvelope {
            mail_from: job.mail_from.clone(),
            recipients: rcpts.to_vec(),
            eight_bit: job.eight_bit,
            smtputf8: job.smtputf8,
        };
        let mut tried = 0;
        let mut last: Option<(HostFailure, Option<String>, Option<SocketAddr>)> = None;
        let mut all_permanent = true;
        let mut all_connection = true;
        let mut note = |hf: HostFailure, mx: &str, addr: Option<SocketAddr>| {
            all_permanent &= hf.failure.is_permanent();
            all_connection &= hf.connection;
            info!(
                queue_id = %job.queue_id,
                domain,
                mx,
                addr = addr.map(tracing::field::display),
                reason = %hf.failure.line(),
                "host failed; trying the next"
            );
            last = Some((hf, Some(mx.to_string()), addr));
        };
        'hosts: for host in &route.hosts {
            let addresses = match &host.fixed {
                Some(a) => a.clone(),
                None => match self.resolver.addresses(&host.name).await {
                    Ok(a) if !a.is_empty() => a,
                    Ok(_) | Err(DnsError::NxDomain(_)) | Err(DnsError::BadName(_)) => {
                        let what = if route.implicit {
                            format!("{domain} has no MX and no address records")
                        } else {
                            format!("MX host {} has no address records", host.name)
                        };
                        note(
                            HostFailure {
                                failure: Failure::permanent("5.4.4", &what, false),
                                connection: false,
                            },
                            &host.name,
                            None,
                        );
                        continue;
                    }
                    Err(e @ DnsError::Temporary(..)) => {
                        note(
                            HostFailure {
                                failure: Failure::temporary("4.4.3", &e.to_string(), false),
                                connection: false,
                            },
                            &host.name,
                            None,
                        );
                        continue;
                    }
                },
            };
            for ip in addresses {
                let addr = SocketAddr::new(ip, route.port);
                if route::is_own_address(addr, &self.settings.own_addresses) {
                    note(
                        HostFailure {
                            failure: loop_failure(domain),
                            connection: false,
                        },
                        &host.name,
                        Some(addr),
                    );
                    continue;
                }
                if tried == MAX_TARGETS {
                    break 'hosts;
                }
                tried += 1;
                let Some(_conn) = self.limits.connection().await else {
                    return vec![congestion(domain); rcpts.len()];
                };
                let target = ConnectTarget {
                    addr,
                    server_name: host.name.clone(),
                    tls: route.tls,
                    credentials: route.credentials.clone(),
                };
                match self.try_address(&target, &envelope, &job.message).await {
                    Try::Done(outcomes) => return outcomes,
                    Try::Next(hf) => note(hf, &host.name, Some(addr)),
                }
            }
        }
        let Some((hf, mx, addr)) = last else {
            let f = Failure::temporary(
                "4.4.4",
                &format!("no host to deliver to for {domain}"),
                false,
            );
            return vec![RemoteOutcome::failed(f); rcpts.len()];
        };
        let mut failure = hf.failure;
        if !all_permanent && failure.is_permanent() {
            failure = as_temporary(&failure);
        }
        if all_connection && tried > 0 {
            self.limits.suspend(domain, &failure.line());
        }
        let outcome = RemoteOutcome {
            result: Err(failure),
            mx,
            addr,
            tls: false,
            reply: None,
            congestion: false,
        };
        vec![outcome; rcpts.len()]
    }

    /// One address: connect, send, map the answers.
    async fn try_address(
        &self,
        target: &ConnectTarget,
        envelope: &ClientEnvelope,
        message: &[u8],
    ) -> Try {
        let host = target.server_name.as_str();
        let mut session = match self.connector.connect(target).await {
            Ok(s) => s,
            Err(e) => return Try::Next(classify_open(host, target.addr, &e)),
        };
        let tls = session.is_tls();
        let here = |result: Result<(), Failure>, reply: Option<String>| RemoteOutcome {
            result,
            mx: Some(host.to_string()),
            addr: Some(target.addr),
            tls,
            reply,
            congestion: false,
        };
        match session.send(envelope, message).await {
            Ok(results) => {
                spawn_quit(session);
                if results
                    .iter()
                    .any(|r| matches!(r, RecipientResult::Accepted(_)))
                {
                    postamt_metrics::global()
                        .bytes_sent(postamt_metrics::Protocol::Smtp, message.len() as u64);
                }
                let n = envelope.recipients.len();
                let outcomes = (0..n)
                    .map(|i| match results.get(i) {
                        Some(RecipientResult::Accepted(r)) => here(Ok(()), Some(r.to_string())),
                        Some(RecipientResult::Rejected(r)) => {
                            here(Err(reply_failure(host, r, "RCPT TO")), Some(r.to_string()))
                        }
                        None => here(
                            Err(Failure::temporary(
                                "4.5.0",
                                &format!("{host} gave no answer for this recipient"),
                                false,
                            )),
                            None,
                        ),
                    })
                    .collect();
                Try::Done(outcomes)
            }
            Err(e) => match classify_send(host, target.addr, &e) {
                Ok(f) => {
                    let reply = match &e {
                        ClientError::Reply { reply, .. } => Some(reply.to_string()),
                        _ => None,
                    };
                    spawn_quit(session);
                    Try::Done(vec![here(Err(f), reply); envelope.recipients.len()])
                }
                Err(hf) => Try::Next(hf),
            },
        }
    }
}

/// QUIT in the background, bounded, so the attempt does not wait for it.
/// `quit` is called here, before the caller lets go of its connection slot:
/// a connection kept for reuse is in the pool by then.
fn spawn_quit(session: Box<dyn crate::transport::SmtpSession>) {
    let quit = session.quit();
    tokio::spawn(async move {
        let _ = tokio::time::timeout(QUIT_WAIT, quit).await;
    });
}

/// A connector that never connects (degraded setup only).
struct NoConnector(String);

impl SmtpConnector for NoConnector {
    fn connect<'a>(
        &'a self,
        _target: &'a ConnectTarget,
    ) -> crate::dns::BoxFuture<'a, Result<Box<dyn crate::transport::SmtpSession>, ClientError>>
    {
        Box::pin(async move { Err(ClientError::Protocol(self.0.clone())) })
    }
}

/// The domain of an address, lowercase, without a trailing dot.
pub fn domain_of(address: &str) -> Option<String> {
    let (local, domain) = address.rsplit_once('@')?;
    let domain = domain.trim_end_matches('.');
    if local.is_empty() || domain.is_empty() || domain.len() > 255 {
        return None;
    }
    Some(domain.to_ascii_lowercase())
}

fn congestion(domain: &str) -> RemoteOutcome {
    let mut o = RemoteOutcome::failed(Failure::temporary(
        CONGESTION_STATUS,
        &format!("too many deliveries to {domain} in progress; will retry shortly"),
        false,
    ));
    o.congestion = true;
    o
}

fn suspended(domain: &str, why: &str) -> RemoteOutcome {
    RemoteOutcome::failed(Failure::temporary(
        "4.4.1",
        &format!("delivery to {domain} temporarily suspended: {why}"),
        false,
    ))
}

/// The same failure as a temporary one (class 4).
fn as_temporary(f: &Failure) -> Failure {
    let status = format!("4{}", f.status.get(1..).unwrap_or(".0.0"));
    Failure::temporary(&status, &f.text, f.local)
}

/// A failure from a server reply: the reply's enhanced code when it has
/// one of the same class, else `class.0.0`. The text is
/// `<host> said: <reply> (in reply to <stage>)`, which the bounce reads
/// back for `Remote-MTA` and `Diagnostic-Code`.
pub fn reply_failure(host: &str, reply: &Reply, stage: &str) -> Failure {
    let class = match reply.code / 100 {
        5 => '5',
        _ => '4',
    };
    let status = match &reply.enhanced {
        Some(e) if is_status_code(e) && e.starts_with(class) => e.clone(),
        _ => format!("{class}.0.0"),
    };
    let text = format!("{host} said: {reply} (in reply to {stage})");
    if class == '5' {
        Failure::permanent(&status, &text, false)
    } else {
        Failure::temporary(&status, &text, false)
    }
}

/// A failure before the transaction (connect, greeting, EHLO, STARTTLS,
/// AUTH): always "try the next address".
fn classify_open(host: &str, addr: SocketAddr, e: &ClientError) -> HostFailure {
    let at = format!("{host} [{addr}]");
    let (failure, connection) = match e {
        ClientError::Connect(..) => (
            Failure::temporary("4.4.1", &format!("{at}: {e}"), false),
            true,
        ),
        ClientError::Timeout(_) | ClientError::Io(..) => (
            Failure::temporary("4.4.2", &format!("{at}: {e}"), false),
            true,
        ),
        ClientError::Reply { stage, reply } => (reply_failure(host, reply, stage), false),
        ClientError::TlsRequired(_) => (
            Failure::temporary("4.7.10", &format!("{at}: {e}"), false),
            false,
        ),
        ClientError::Tls(_) => (
            Failure::temporary("4.7.5", &format!("{at}: {e}"), false),
            false,
        ),
        ClientError::Protocol(_) => (
            Failure::temporary("4.5.0", &format!("{at}: {e}"), false),
            false,
        ),
        ClientError::Unsupported(what) => (unsupported(&at, what, e), false),
        ClientError::Unconvertible(_) => (unconvertible(&at, e), false),
        ClientError::TooLarge { .. } => (
            Failure::permanent("5.3.4", &format!("{at}: {e}"), false),
            false,
        ),
    };
    HostFailure {
        failure,
        connection,
    }
}

fn unsupported(at: &str, what: &str, e: &ClientError) -> Failure {
    let status = if what.contains("SMTPUTF8") {
        "5.6.7"
    } else {
        "5.6.3"
    };
    Failure::permanent(status, &format!("{at}: {e}"), false)
}

/// An 8-bit message for a server without 8BITMIME that cannot be converted
/// to 7 bit (RFC 6152 §3): "conversion required but not supported"
/// (RFC 3463 5.6.3), permanent; the text names the server and why.
fn unconvertible(at: &str, e: &ClientError) -> Failure {
    Failure::permanent("5.6.3", &format!("{at}: {e}"), false)
}

/// A failure during the transaction: a reply or a limit of the server is
/// definitive for every recipient (`Ok`); a lost connection or a timeout
/// moves on to the next address (`Err`).
fn classify_send(host: &str, addr: SocketAddr, e: &ClientError) -> Result<Failure, HostFailure> {
    let at = format!("{host} [{addr}]");
    match e {
        ClientError::Reply { stage, reply } => Ok(reply_failure(host, reply, stage)),
        ClientError::Unsupported(what) => Ok(unsupported(&at, what, e)),
        ClientError::Unconvertible(_) => Ok(unconvertible(&at, e)),
        ClientError::TooLarge { .. } => {
            Ok(Failure::permanent("5.3.4", &format!("{at}: {e}"), false))
        }
        _ => Err(classify_open(host, addr, e)),
    }
}

/// Logs why remote delivery is off for this context.
pub fn not_available() -> Failure {
    Failure::temporary(NOT_AVAILABLE_STATUS, NOT_AVAILABLE_TEXT, false)
}

#[cfg(test)]
mod eight_bit_tests {
    use super::*;
    use postamt_smtp_client::downgrade::Unconvertible;

    #[test]
    fn an_unconvertible_message_fails_permanently_with_5_6_3() {
        let addr = SocketAddr::from(([192, 0, 2, 1], 25));
        let e = ClientError::Unconvertible(Unconvertible::Binary);
        let Ok(f) = classify_send("mx.example", addr, &e) else {
            panic!("an unconvertible message is definitive for every host");
        };
        assert!(f.is_permanent());
        assert_eq!(f.status, "5.6.3");
        assert!(
            f.text.starts_with("mx.example [192.0.2.1:25]: "),
            "{}",
            f.text
        );
        assert!(f.text.contains("does not support 8BITMIME"), "{}", f.text);
        assert!(f.text.contains("binary"), "{}", f.text);
        let f = classify_open("mx.example", addr, &e).failure;
        assert_eq!((f.status.as_str(), f.is_permanent()), ("5.6.3", true));
    }
}
