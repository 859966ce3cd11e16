//! Opening a session: TCP connect, implicit TLS, greeting, EHLO with HELO
//! fallback, STARTTLS per policy (re-EHLO after it) and AUTH. Returns the
//! parts a [`crate::Connection`] is made of.

use crate::auth::{self, Mechanism};
use crate::ehlo::Capabilities;
use crate::session::{Session, TlsFailure, handshake, stage};
use crate::stream::SmtpStream;
use crate::tls::{self, TlsInfo};
use crate::transaction::is_success;
use crate::{ClientConfig, ClientError, Credentials, Reply, Timeouts, TlsPolicy};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Longest `helo_name` (and kept server name) accepted.
const MAX_NAME: usize = 255;

/// How TLS is handled when opening (the public policy plus "never").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Opportunistic,
    RequireStartTls,
    Implicit,
    Plaintext,
}

impl From<TlsPolicy> for Mode {
    fn from(p: TlsPolicy) -> Mode {
        match p {
            TlsPolicy::Opportunistic => Mode::Opportunistic,
            TlsPolicy::RequireStartTls => Mode::RequireStartTls,
            TlsPolicy::Implicit => Mode::Implicit,
        }
    }
}

/// An established session, ready for transactions.
pub(crate) struct Opened {
    pub(crate) session: Session,
    pub(crate) caps: Capabilities,
    pub(crate) remote_name: String,
    pub(crate) tls: Option<TlsInfo>,
}

/// Checks our own EHLO name: it goes into a command line.
fn check_helo_name(name: &str) -> Result<(), ClientError> {
    let ok =
        !name.is_empty() && name.len() <= MAX_NAME && name.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(ClientError::Protocol(format!(
            "invalid helo_name {name:?} (printable ASCII without spaces, at most {MAX_NAME} characters)"
        )))
    }
}

pub(crate) async fn open(
    addr: SocketAddr,
    server_name: &str,
    mode: Mode,
    credentials: Option<&Credentials>,
    config: &ClientConfig,
) -> Result<Opened, ClientError> {
    check_helo_name(&config.helo_name)?;
    let t = config.timeouts;
    tracing::debug!(peer = %addr, server = server_name, ?mode, "connecting");
    let tcp = match timeout(t.connect, TcpStream::connect(addr)).await {
        Err(_) => {
            return Err(ClientError::Connect(
                addr,
                std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"),
            ));
        }
        Ok(Err(e)) => return Err(ClientError::Connect(addr, e)),
        Ok(Ok(s)) => s,
    };
    // Commands are small and latency-bound.
    let _ = tcp.set_nodelay(true);
    tracing::debug!(peer = %addr, "connected");

    let mut tls_info = None;
    let stream = if mode == Mode::Implicit {
        let name = tls::server_name(server_name).ok_or_else(|| {
            ClientError::TlsRequired(format!("{server_name:?} is not a valid TLS server name"))
        })?;
        let stream = handshake(tcp, Arc::clone(&config.verified_tls), name, t.command)
            .await
            .map_err(|f| tls_error(mode, f))?;
        let info = TlsInfo::of(&stream, true);
        log_tls(addr, &info);
        tls_info = Some(info);
        SmtpStream::Tls(Box::new(stream))
    } else {
        SmtpStream::Plain(tcp)
    };
    let mut session = Session::new(stream, addr);

    let greeting = session.read_reply(t.greeting, stage::GREETING).await?;
    if greeting.code != 220 {
        return Err(ClientError::Reply {
            stage: stage::GREETING,
            reply: greeting,
        });
    }
    let greeting_name = greeting
        .text
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .chars()
        .take(MAX_NAME)
        .collect::<String>();
    let (mut remote_name, mut caps) = hello(&mut session, &config.helo_name, t).await?;

    match mode {
        Mode::Opportunistic | Mode::RequireStartTls => {
            let required = mode == Mode::RequireStartTls;
            if !caps.starttls {
                if required {
                    return Err(ClientError::TlsRequired(
                        "the server does not offer STARTTLS".into(),
                    ));
                }
                tracing::debug!(peer = %addr, "no STARTTLS offered; continuing without TLS");
            } else {
                let reply = session
                    .command("STARTTLS", t.command, stage::STARTTLS)
                    .await?;
                if reply.code != 220 {
                    if required {
                        return Err(ClientError::TlsRequired(format!(
                            "STARTTLS refused: {reply}"
                        )));
                    }
                    tracing::warn!(peer = %addr, reply = %reply, "STARTTLS refused; continuing without TLS");
                } else {
                    let (tls_config, name, verified) = if required {
                        let name = tls::server_name(server_name).ok_or_else(|| {
                            ClientError::TlsRequired(format!(
                                "{server_name:?} is not a valid TLS server name"
                            ))
                        })?;
                        (Arc::clone(&config.verified_tls), name, true)
                    } else {
                        let tls_config = tls::opportunistic_config().map_err(ClientError::Tls)?;
                        (
                            tls_config,
                            tls::opportunistic_server_name(server_name, addr.ip()),
                            false,
                        )
                    };
                    session = session
                        .start_tls(tls_config, name, t.command)
                        .await
                        .map_err(|f| tls_error(mode, f))?;
                    if let Some(stream) = session.tls_stream() {
                        let info = TlsInfo::of(stream, verified);
                        log_tls(addr, &info);
                        tls_info = Some(info);
                    }
                    (remote_name, caps) = hello(&mut session, &config.helo_name, t).await?;
                }
            }
        }
        Mode::Implicit | Mode::Plaintext => {}
    }
    if remote_name.is_empty() {
        remote_name = greeting_name;
    }

    if let Some(credentials) = credentials {
        if !session.is_tls() {
            return Err(ClientError::TlsRequired(
                "AUTH credentials are configured but the session is not encrypted".into(),
            ));
        }
        authenticate(&mut session, &caps, credentials, t).await?;
    }
    tracing::debug!(peer = %addr, remote = %remote_name, tls = session.is_tls(), "SMTP session ready");
    Ok(Opened {
        session,
        caps,
        remote_name,
        tls: tls_info,
    })
}

/// EHLO, or HELO when EHLO is refused with 5xx. Returns the server's name
/// from the reply and its capabilities (none after HELO).
async fn hello(
    session: &mut Session,
    helo_name: &str,
    t: Timeouts,
) -> Result<(String, Capabilities), ClientError> {
    let reply = session
        .command(&format!("EHLO {helo_name}"), t.command, stage::EHLO)
        .await?;
    if is_success(&reply) {
        return Ok(Capabilities::from_ehlo(&reply));
    }
    if !reply.is_permanent() {
        return Err(ClientError::Reply {
            stage: stage::EHLO,
            reply,
        });
    }
    tracing::debug!(peer = %session.peer(), reply = %reply, "EHLO refused; trying HELO");
    let reply = session
        .command(&format!("HELO {helo_name}"), t.command, stage::HELO)
        .await?;
    if !is_success(&reply) {
        return Err(ClientError::Reply {
            stage: stage::HELO,
            reply,
        });
    }
    let name = reply
        .text
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .chars()
        .take(MAX_NAME)
        .collect();
    Ok((name, Capabilities::default()))
}

/// AUTH PLAIN (preferred) or LOGIN.
async fn authenticate(
    session: &mut Session,
    caps: &Capabilities,
    credentials: &Credentials,
    t: Timeouts,
) -> Result<(), ClientError> {
    let mechanism = Mechanism::choose(caps).ok_or_else(|| {
        ClientError::Protocol(
            "AUTH credentials are configured but the server offers neither PLAIN nor LOGIN".into(),
        )
    })?;
    tracing::debug!(peer = %session.peer(), mechanism = mechanism.name(), user = %credentials.user, "authenticating");
    let limit = t.command;
    let last = match mechanism {
        Mechanism::Plain => {
            let line = auth::plain_command(credentials)
                .map_err(|e| ClientError::Protocol(e.to_string()))?;
            session.secret_command(&line, limit, stage::AUTH).await?
        }
        Mechanism::Login => {
            let reply = session.command("AUTH LOGIN", limit, stage::AUTH).await?;
            expect_challenge(reply)?;
            let reply = session
                .secret_command(&auth::login_response(&credentials.user), limit, stage::AUTH)
                .await?;
            expect_challenge(reply)?;
            session
                .secret_command(
                    &auth::login_response(&credentials.password),
                    limit,
                    stage::AUTH,
                )
                .await?
        }
    };
    match last.code {
        235 => {
            tracing::debug!(peer = %session.peer(), user = %credentials.user, "authenticated");
            Ok(())
        }
        334 => {
            // More challenges than the mechanism has: cancel (RFC 4954 §4).
            let _ = session.command("*", limit, stage::AUTH).await;
            Err(ClientError::Protocol(format!(
                "unexpected AUTH challenge: {last}"
            )))
        }
        _ => Err(ClientError::Reply {
            stage: stage::AUTH,
            reply: last,
        }),
    }
}

fn expect_challenge(reply: Reply) -> Result<(), ClientError> {
    if reply.code == 334 {
        Ok(())
    } else {
        Err(ClientError::Reply {
            stage: stage::AUTH,
            reply,
        })
    }
}

/// The error for a failed TLS upgrade under `mode`.
fn tls_error(mode: Mode, failure: TlsFailure) -> ClientError {
    match failure {
        TlsFailure::Pipelined => ClientError::Protocol(failure.to_string()),
        TlsFailure::Timeout => ClientError::Timeout(stage::TLS_HANDSHAKE),
        TlsFailure::Handshake(msg) if mode == Mode::Opportunistic => ClientError::Tls(msg),
        TlsFailure::Handshake(msg) => {
            ClientError::TlsRequired(format!("TLS handshake failed: {msg}"))
        }
    }
}

fn log_tls(peer: SocketAddr, info: &TlsInfo) {
    tracing::debug!(
        peer = %peer,
        version = %info.version,
        cipher = %info.cipher,
        verified = info.verified,
        "TLS established"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helo_names() {
        assert!(check_helo_name("mail.example.org").is_ok());
        assert!(check_helo_name("[192.0.2.1]").is_ok());
        assert!(check_helo_name("").is_err());
        assert!(check_helo_name("a b").is_err());
        assert!(check_helo_name("a\r\nMAIL FROM:<x>").is_err());
        assert!(check_helo_name(&"a".repeat(MAX_NAME + 1)).is_err());
    }

    #[test]
    fn tls_failures_per_policy() {
        let fail = || TlsFailure::Handshake("bad".into());
        assert!(matches!(
            tls_error(Mode::Opportunistic, fail()),
            ClientError::Tls(_)
        ));
        assert!(matches!(
            tls_error(Mode::RequireStartTls, fail()),
            ClientError::TlsRequired(_)
        ));
        assert!(matches!(
            tls_error(Mode::Implicit, fail()),
            ClientError::TlsRequired(_)
        ));
        assert!(matches!(
            tls_error(Mode::Opportunistic, TlsFailure::Timeout),
            ClientError::Timeout(s) if s == stage::TLS_HANDSHAKE
        ));
        assert!(matches!(
            tls_error(Mode::Opportunistic, TlsFailure::Pipelined),
            ClientError::Protocol(_)
        ));
    }
}
