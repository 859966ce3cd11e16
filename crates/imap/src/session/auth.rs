//! The not-authenticated state: STARTTLS, LOGIN and AUTHENTICATE PLAIN
//! (with SASL-IR or a continuation), under the login rules (plaintext
//! only on loopback or over TLS), the directory's throttling and a limit
//! of failed logins per connection.

use super::{Pending, Reply, Session, Sink, User};
use crate::backend::Backend;
use crate::capability::capability_line;
use crate::sasl::{PlainError, decode_plain};
use postamt_store::StoreError;
use std::io;
use std::sync::Arc;
use tracing::{error, info, warn};

const PRIVACY_REQUIRED: &str = "PRIVACYREQUIRED";
const MSG_PLAINTEXT: &str = "Plaintext authentication disallowed on non-secure connections";
const MSG_AUTH_FAILED: &str = "Authentication failed";

impl<B: Backend> Session<B> {
    /// STARTTLS (RFC 3501 6.2.1).
    pub(super) fn starttls(&mut self) -> Reply {
        if self.props.secure {
            return Reply::bad("TLS is already active");
        }
        if !self.props.tls_available {
            return Reply::bad("STARTTLS is not available");
        }
        self.pending = Pending::StartTls;
        Reply::ok("Begin TLS negotiation now")
    }

    /// AUTHENTICATE: PLAIN only, with an initial response or after a `+`.
    pub(super) async fn authenticate<W: Sink>(
        &mut self,
        tag: &str,
        mechanism: &str,
        initial: Option<Vec<u8>>,
        w: &mut W,
    ) -> io::Result<Option<Reply>> {
        if !mechanism.eq_ignore_ascii_case("PLAIN") {
            return Ok(Some(Reply::no(
                None,
                "Unsupported authentication mechanism",
            )));
        }
        if !self.props.plaintext_allowed() {
            return Ok(Some(Reply::no(Some(PRIVACY_REQUIRED), MSG_PLAINTEXT)));
        }
        match initial {
            Some(data) => Ok(Some(self.plain_response(&data, w).await?)),
            None => {
                w.send(b"+ \r\n").await?;
                self.pending = Pending::Sasl(tag.to_string());
                Ok(None)
            }
        }
    }

    /// A decoded PLAIN message (initial response or continuation).
    pub(super) async fn plain_response<W: Sink>(
        &mut self,
        data: &[u8],
        w: &mut W,
    ) -> io::Result<Reply> {
        match decode_plain(data) {
            Ok(creds) => {
                self.login(&creds.user, creds.password.as_bytes(), "AUTHENTICATE", w)
                    .await
            }
            Err(PlainError::AuthzidNotPermitted) => {
                warn!(peer = %self.peer, "AUTHENTICATE PLAIN with a foreign authorization identity");
                Ok(self.failed_login(w).await?)
            }
            Err(e) => Ok(Reply::bad(format!("Invalid PLAIN response: {e}"))),
        }
    }

    /// LOGIN (RFC 3501 6.2.3), refused without TLS from remote peers.
    pub(super) async fn login_plaintext<W: Sink>(
        &mut self,
        user: &str,
        password: &[u8],
        method: &'static str,
        w: &mut W,
    ) -> io::Result<Reply> {
        if !self.props.plaintext_allowed() {
            return Ok(Reply::no(Some(PRIVACY_REQUIRED), MSG_PLAINTEXT));
        }
        self.login(user, password, method, w).await
    }

    async fn login<W: Sink>(
        &mut self,
        user: &str,
        password: &[u8],
        method: &'static str,
        w: &mut W,
    ) -> io::Result<Reply> {
        let Ok(password) = std::str::from_utf8(password) else {
            warn!(peer = %self.peer, method, "login failed: password not UTF-8");
            return self.failed_login(w).await;
        };
        let name = match self.backend.authenticate(user, password).await {
            Ok(name) => name,
            Err(_) => {
                warn!(user = ?user, peer = %self.peer, method, "login failed");
                return self.failed_login(w).await;
            }
        };
        match self.backend.account(&name).await {
            Ok(account) => {
                info!(user = %name, peer = %self.peer, method, secure = self.props.secure, "login");
                self.user = Some(User {
                    name,
                    account: Arc::new(account),
                });
                Ok(Reply::ok_code(
                    capability_line(&self.props, true),
                    "Logged in",
                ))
            }
            Err(StoreError::NoMailbox(_)) => {
                warn!(user = %name, peer = %self.peer, "login: the user has no mailbox");
                Ok(Reply::no(Some("UNAVAILABLE"), "No mailbox for this user"))
            }
            Err(e) => {
                error!(user = %name, peer = %self.peer, error = %e, "login: cannot open the mailbox");
                Ok(Reply::no(
                    Some("UNAVAILABLE"),
                    "Mailbox unavailable, try again later",
                ))
            }
        }
    }

    /// Counts a failed login; after too many, `* BYE` and close.
    async fn failed_login<W: Sink>(&mut self, w: &mut W) -> io::Result<Reply> {
        postamt_metrics::global().login_failed(postamt_metrics::Protocol::Imap);
        self.login_failures += 1;
        if self.login_failures >= self.limits.max_login_failures {
            warn!(peer = %self.peer, failures = self.login_failures, "too many login failures, closing");
            // The tagged NO goes out first, then the BYE.
            self.bye_after = Some("Too many login failures");
        }
        let _ = w;
        Ok(Reply::no(Some("AUTHENTICATIONFAILED"), MSG_AUTH_FAILED))
    }
}
