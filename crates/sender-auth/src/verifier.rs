//! Inbound sender authentication on the MX port: SPF for the envelope
//! sender (or the HELO name for the null sender), DKIM on the message, DMARC
//! for the From domain; the `Authentication-Results` header (RFC 8601) and
//! what to do under `[sender_auth] dmarc`. Every DNS phase is time-bounded:
//! a DNS outage yields `temperror`, never a hung session.

use crate::SenderAuthError;
use crate::resolver::{DEFAULT_QUERY_TIMEOUT, build_authenticator};
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, AuthenticationResults, DkimOutput, DkimResult, DmarcOutput, DmarcResult,
    MessageAuthenticator, SpfOutput, SpfResult,
};
use postamt_config::{Config, DmarcAction};
use std::net::IpAddr;
use std::time::Duration;

/// The outcome of one method (RFC 8601 result values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthResult {
    None,
    Pass,
    Fail,
    SoftFail,
    Neutral,
    TempError,
    PermError,
}

/// The policy a domain publishes for mail that fails DMARC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmarcPolicy {
    None,
    Quarantine,
    Reject,
}

/// The DMARC evaluation of the From domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmarcOutcome {
    /// No DMARC record, no single From domain, or nothing to evaluate.
    None,
    /// SPF or DKIM passed aligned with the From domain.
    Pass,
    /// Neither passed aligned; the policy that applies to this From domain
    /// (after `sp`/`np` and `t=y`).
    Fail { policy: DmarcPolicy },
    /// DNS trouble: the result could not be determined now.
    TempError,
    /// A broken record.
    PermError,
}

/// Everything the receiver needs from the checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The `Authentication-Results: <hostname>; spf=...; dkim=...; dmarc=...`
    /// header field, folded, CRLF-terminated, ready to prepend.
    pub authentication_results: String,
    pub spf: AuthResult,
    /// The best DKIM result among the signatures (pass > temperror > fail >
    /// permerror > neutral); `None` when unsigned.
    pub dkim: AuthResult,
    pub dmarc: DmarcOutcome,
    /// The single RFC 5322 From domain, lowercased, when there is one.
    pub from_domain: Option<String>,
}

/// What the receiver does with the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Accept,
    /// Refuse at end of DATA with this reply (`550 5.7.1 ...`, no CRLF).
    Reject(String),
    /// Deliver, marked as junk.
    Quarantine,
}

/// Time bounds of the checks. SPF and DKIM run at the same time, DMARC
/// after them, so a check takes at most `max(spf, dkim) + dmarc`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifyLimits {
    /// One DNS query to one nameserver (one retry follows a timeout).
    pub query_timeout: Duration,
    /// All of SPF (up to 10 DNS-querying mechanisms).
    pub spf_timeout: Duration,
    /// All DKIM signatures.
    pub dkim_timeout: Duration,
    /// The DMARC record discovery and alignment.
    pub dmarc_timeout: Duration,
}

impl Default for VerifyLimits {
    fn default() -> Self {
        VerifyLimits {
            query_timeout: DEFAULT_QUERY_TIMEOUT,
            spf_timeout: Duration::from_secs(5),
            dkim_timeout: Duration::from_secs(5),
            dmarc_timeout: Duration::from_secs(3),
        }
    }
}

/// Longest identity (HELO name or envelope domain) that is looked up.
const MAX_DOMAIN_LEN: usize = 253;

/// Checks SPF, DKIM and DMARC of incoming mail. Cheap to share (`Arc`) and
/// safe to use from many sessions at once.
#[derive(Clone)]
pub struct SenderVerifier {
    auth: MessageAuthenticator,
    hostname: String,
    dmarc_action: DmarcAction,
    limits: VerifyLimits,
}

impl std::fmt::Debug for SenderVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SenderVerifier")
            .field("hostname", &self.hostname)
            .field("dmarc_action", &self.dmarc_action)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl SenderVerifier {
    /// A verifier with the default time bounds, resolving through
    /// `[dns] nameservers` or the system configuration.
    pub fn new(config: &Config) -> Result<SenderVerifier, SenderAuthError> {
        Self::with_limits(config, VerifyLimits::default())
    }

    /// A verifier with explicit time bounds.
    pub fn with_limits(
        config: &Config,
        limits: VerifyLimits,
    ) -> Result<SenderVerifier, SenderAuthError> {
        Ok(SenderVerifier {
            auth: build_authenticator(config, limits.query_timeout)?,
            hostname: config.hostname.trim_end_matches('.').to_ascii_lowercase(),
            dmarc_action: config.sender_auth.dmarc,
            limits,
        })
    }

    /// The underlying mail-auth authenticator (its `resolver()` is the
    /// configured hickory resolver, shareable for MX lookups).
    pub fn authenticator(&self) -> &MessageAuthenticator {
        &self.auth
    }

    /// Checks one message received from `client_ip` after `HELO/EHLO helo`
    /// and `MAIL FROM:<mail_from>` (empty for the null sender). Whether to
    /// check at all (`[sender_auth] verify`) is the caller's decision.
    pub async fn check(
        &self,
        message: &[u8],
        client_ip: IpAddr,
        helo: &str,
        mail_from: &str,
    ) -> Verdict {
        let null_sender = mail_from.is_empty();
        // RFC 7208 §2.4: the null sender is checked as postmaster@<helo>.
        let spf_domain = if null_sender {
            helo
        } else {
            mail_from.rsplit_once('@').map_or(helo, |(_, d)| d)
        };
        let parsed = AuthenticatedMessage::parse(message);

        let spf_check = async {
            if !looks_like_domain(spf_domain) {
                return SpfOutput::new(spf_domain.to_ascii_lowercase())
                    .with_result(SpfResult::None);
            }
            let params = if null_sender {
                SpfParameters::verify_ehlo(client_ip, helo, &self.hostname)
            } else {
                SpfParameters::verify_mail_from(client_ip, helo, &self.hostname, mail_from)
            };
            match tokio::time::timeout(self.limits.spf_timeout, self.auth.verify_spf(params)).await
            {
                Ok(output) => output,
                Err(_) => {
                    tracing::info!(%client_ip, domain = %spf_domain, "SPF check timed out");
                    SpfOutput::new(spf_domain.to_ascii_lowercase())
                        .with_result(SpfResult::TempError)
                }
            }
        };
        let dkim_check = async {
            let Some(message) = parsed.as_ref() else {
                return Vec::new();
            };
            match tokio::time::timeout(self.limits.dkim_timeout, self.auth.verify_dkim(message))
                .await
            {
                Ok(outputs) => outputs,
                Err(_) => {
                    tracing::info!(%client_ip, "DKIM check timed out");
                    vec![DkimOutput::temp_err(timed_out())]
                }
            }
        };
        let (spf, dkim) = tokio::join!(spf_check, dkim_check);

        let from_domain = parsed.as_ref().and_then(|m| single_from_domain(&m.from));
        let dmarc = match (parsed.as_ref(), from_domain.as_deref()) {
            (Some(message), Some(from)) => {
                let params = DmarcParameters::new(message, &dkim, spf_domain, &spf);
                Some(
                    match tokio::time::timeout(
                        self.limits.dmarc_timeout,
                        self.auth.verify_dmarc(params),
                    )
                    .await
                    {
                        Ok(output) => output,
                        Err(_) => {
                            tracing::info!(%client_ip, domain = %from, "DMARC check timed out");
                            DmarcOutput::default()
                                .with_domain(from)
                                .with_spf_result(DmarcResult::TempError(timed_out()))
                                .with_dkim_result(DmarcResult::TempError(timed_out()))
                        }
                    },
                )
            }
            _ => None,
        };

        // Each builder with an empty authserv-id renders just its
        // ";\r\n\tmethod=result ..." clauses, so they go in a fixed order.
        let mut header = format!("Authentication-Results: {}", self.hostname);
        // SPF's comment names the host, so that one is built with it and the
        // leading host name taken off again.
        let spf_clause = if null_sender {
            AuthenticationResults::new(&self.hostname).with_spf_ehlo_result(&spf, client_ip, helo)
        } else {
            AuthenticationResults::new(&self.hostname)
                .with_spf_mailfrom_result(&spf, client_ip, mail_from, helo)
        }
        .to_string();
        header.push_str(
            spf_clause
                .strip_prefix(self.hostname.as_str())
                .unwrap_or(&spf_clause),
        );
        if dkim.is_empty() {
            header.push_str(";\r\n\tdkim=none");
        } else {
            let from = from_domain.as_deref().unwrap_or_default();
            header.push_str(
                &AuthenticationResults::new("")
                    .with_dkim_results(&dkim, from)
                    .to_string(),
            );
        }
        match &dmarc {
            Some(dmarc) => header.push_str(
                &AuthenticationResults::new("")
                    .with_dmarc_result(dmarc)
                    .to_string(),
            ),
            None => header.push_str(";\r\n\tdmarc=none"),
        }
        header.push_str("\r\n");

        let verdict = Verdict {
            authentication_results: header,
            spf: spf_result(spf.result()),
            dkim: dkim_summary(&dkim),
            dmarc: dmarc.as_ref().map_or(DmarcOutcome::None, dmarc_outcome),
            from_domain,
        };
        tracing::info!(
            %client_ip,
            helo = %helo,
            mail_from = %mail_from,
            spf = ?verdict.spf,
            dkim = ?verdict.dkim,
            dmarc = ?verdict.dmarc,
            from_domain = verdict.from_domain.as_deref().unwrap_or(""),
            "sender authentication"
        );
        verdict
    }

    /// What to do with a message given its verdict, per `[sender_auth] dmarc`.
    pub fn action(&self, verdict: &Verdict) -> Action {
        decide(self.dmarc_action, verdict)
    }
}

/// The action for `verdict` under `mode`: `honor` rejects a DMARC failure
/// with `p=reject` and quarantines one with `p=quarantine`; `report` and
/// every other outcome accept.
pub fn decide(mode: DmarcAction, verdict: &Verdict) -> Action {
    if mode != DmarcAction::Honor {
        return Action::Accept;
    }
    match verdict.dmarc {
        DmarcOutcome::Fail {
            policy: DmarcPolicy::Reject,
        } => {
            let domain: String = verdict
                .from_domain
                .as_deref()
                .unwrap_or("the sender domain")
                .chars()
                .filter(|c| c.is_ascii_graphic())
                .take(MAX_DOMAIN_LEN)
                .collect();
            Action::Reject(format!(
                "550 5.7.1 Message rejected: it fails the DMARC policy of {domain}"
            ))
        }
        DmarcOutcome::Fail {
            policy: DmarcPolicy::Quarantine,
        } => Action::Quarantine,
        _ => Action::Accept,
    }
}

fn timed_out() -> mail_auth::Error {
    mail_auth::Error::Dns(mail_auth::DnsError::Resolver("timed out".into()))
}

/// Whether `d` is worth a DNS lookup: not empty, not an address literal,
/// bounded, made of label characters (non-ASCII allowed for SMTPUTF8).
fn looks_like_domain(d: &str) -> bool {
    let d = d.trim_end_matches('.');
    !d.is_empty()
        && d.len() <= MAX_DOMAIN_LEN
        && !d.starts_with('.')
        && !d.contains("..")
        && d.chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '.' || c == '_')
}

/// The one domain of the From addresses (lowercased), if they share one.
fn single_from_domain(froms: &[String]) -> Option<String> {
    let mut domain: Option<String> = None;
    for from in froms {
        let d = from
            .rsplit_once('@')?
            .1
            .trim_end_matches('.')
            .to_lowercase();
        match &domain {
            None => domain = Some(d),
            Some(seen) if *seen == d => {}
            Some(_) => return None,
        }
    }
    domain.filter(|d| !d.is_empty())
}

fn spf_result(r: SpfResult) -> AuthResult {
    match r {
        SpfResult::Pass => AuthResult::Pass,
        SpfResult::Fail => AuthResult::Fail,
        SpfResult::SoftFail => AuthResult::SoftFail,
        SpfResult::Neutral => AuthResult::Neutral,
        SpfResult::TempError => AuthResult::TempError,
        SpfResult::PermError => AuthResult::PermError,
        SpfResult::None => AuthResult::None,
    }
}

fn dkim_summary(outputs: &[DkimOutput<'_>]) -> AuthResult {
    let rank = |r: &DkimResult| match r {
        DkimResult::Pass => (0, AuthResult::Pass),
        DkimResult::TempError(_) => (1, AuthResult::TempError),
        DkimResult::Fail(_) => (2, AuthResult::Fail),
        DkimResult::PermError(_) => (3, AuthResult::PermError),
        DkimResult::Neutral(_) => (4, AuthResult::Neutral),
        DkimResult::None => (5, AuthResult::None),
    };
    outputs
        .iter()
        .map(|o| rank(o.result()))
        .min_by_key(|(r, _)| *r)
        .map_or(AuthResult::None, |(_, a)| a)
}

fn dmarc_outcome(output: &DmarcOutput) -> DmarcOutcome {
    match output.result() {
        DmarcResult::Pass => DmarcOutcome::Pass,
        DmarcResult::Fail(_) => DmarcOutcome::Fail {
            policy: match output.policy() {
                mail_auth::dmarc::Policy::Reject => DmarcPolicy::Reject,
                mail_auth::dmarc::Policy::Quarantine => DmarcPolicy::Quarantine,
                mail_auth::dmarc::Policy::None | mail_auth::dmarc::Policy::Unspecified => {
                    DmarcPolicy::None
                }
            },
        },
        DmarcResult::TempError(_) => DmarcOutcome::TempError,
        DmarcResult::PermError(_) => DmarcOutcome::PermError,
        DmarcResult::None => DmarcOutcome::None,
    }
}
