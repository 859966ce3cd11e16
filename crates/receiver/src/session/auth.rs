//! The AUTH command (RFC 4954) in the session: when it is allowed (the
//! submission ports only, after EHLO, outside a transaction, over TLS or
//! from loopback when configured), the SASL exchange step by step, and the
//! login check through the backend. Failed logins count as errors.

use super::{Next, Session, Step};
use crate::backend::Backend;
use crate::mode::Mode;
use crate::reply;
use crate::sasl::{self, Credentials, Exchange, Mechanism, SaslError, SaslStep};
use tracing::{info, warn};

/// At most this many characters of a client-supplied user name in logs.
const MAX_LOGGED_NAME: usize = 64;

impl Session {
    /// `AUTH <mechanism> [<initial-response>]`.
    pub(super) async fn auth<B: Backend>(&mut self, line: &[u8], backend: &B) -> Step {
        if self.mode == Mode::Mx {
            // Never offered on the MX port: no relaying through port 25.
            return self.respond(reply::not_implemented("AUTH"));
        }
        if !self.helo.as_ref().is_some_and(|h| h.esmtp) {
            return self.respond(reply::bad_sequence("send EHLO first"));
        }
        if self.txn.is_some() {
            return self.respond(reply::bad_sequence("AUTH during a mail transaction"));
        }
        if self.auth_user.is_some() {
            return self.respond(reply::bad_sequence("already authenticated"));
        }
        if !self.may_auth() {
            return self.respond(reply::encryption_required());
        }
        let Some(cmd) = sasl::parse_auth(line) else {
            return self.respond(reply::syntax("AUTH mechanism [initial-response]"));
        };
        let Some(mechanism) = Mechanism::from_name(cmd.mechanism) else {
            return self.respond(reply::auth_unknown_mechanism());
        };
        let step = sasl::start(mechanism, cmd.initial_response);
        self.auth_step(mechanism, step, backend).await
    }

    /// The client's response line in an exchange.
    pub(super) async fn auth_response<B: Backend>(
        &mut self,
        exchange: Exchange,
        line: &[u8],
        backend: &B,
    ) -> Step {
        let mechanism = exchange.mechanism();
        let step = sasl::respond(exchange, line);
        self.auth_step(mechanism, step, backend).await
    }

    async fn auth_step<B: Backend>(
        &mut self,
        mechanism: Mechanism,
        step: SaslStep,
        backend: &B,
    ) -> Step {
        match step {
            SaslStep::Challenge { next, challenge } => {
                self.auth_exchange = Some(next);
                Step {
                    replies: vec![reply::auth_challenge(challenge)],
                    next: Next::Command,
                }
            }
            SaslStep::Failed(e) => {
                info!(peer = %self.peer, mechanism = mechanism.name(), reason = ?e, "SMTP AUTH aborted");
                self.respond(match e {
                    SaslError::Cancelled => reply::auth_cancelled(),
                    SaslError::BadBase64 => reply::auth_bad_base64(),
                    SaslError::Malformed => reply::auth_malformed(),
                })
            }
            SaslStep::Done(credentials) => self.login(mechanism, credentials, backend).await,
        }
    }

    async fn login<B: Backend>(
        &mut self,
        mechanism: Mechanism,
        c: Credentials,
        backend: &B,
    ) -> Step {
        let shown = loggable(&c.user);
        if !c.authzid.is_empty() && !c.authzid.eq_ignore_ascii_case(&c.user) {
            // Acting as another user is not supported (RFC 4616 2).
            postamt_metrics::global().login_failed(self.mode.metrics_protocol());
            warn!(peer = %self.peer, user = ?shown, authzid = ?loggable(&c.authzid), mechanism = mechanism.name(), "SMTP AUTH refused: authorization identity differs");
            return self.respond(reply::auth_failed());
        }
        let ip = self.peer.ip().to_canonical();
        match backend.login(&c.user, &c.password, ip).await {
            Ok(info) => {
                info!(peer = %self.peer, user = %info.name, mechanism = mechanism.name(), tls = self.tls_active, "SMTP AUTH succeeded");
                self.auth_user = Some(info.name);
                Step {
                    replies: vec![reply::auth_ok()],
                    next: Next::Command,
                }
            }
            Err(_) => {
                postamt_metrics::global().login_failed(self.mode.metrics_protocol());
                warn!(peer = %self.peer, user = ?shown, mechanism = mechanism.name(), "SMTP AUTH failed");
                self.respond(reply::auth_failed())
            }
        }
    }
}

/// A client-supplied name cut short for the log (printed with `?`, so
/// control characters are escaped).
fn loggable(s: &str) -> &str {
    match s.char_indices().nth(MAX_LOGGED_NAME) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
