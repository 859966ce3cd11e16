//! The admin listener's connection loop: HTTP/1.1 (hyper) over plain TCP
//! on loopback (elsewhere only with `[admin] allow_plaintext_http`) or over
//! TLS with the shared certificates; a cap on open
//! connections, a TLS handshake timeout and a header read timeout; each
//! request carries the client's address; on shutdown, open connections
//! finish their current request and close.

use crate::state::AppState;
use crate::{AdminContext, router};
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// Most connections open at once; more wait in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 256;
/// Longest TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a request's header (also ends idle keep-alives).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long open connections get after a shutdown request.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How often expired sessions are dropped.
const PRUNE_EVERY: Duration = Duration::from_secs(300);

/// Why the admin listener does not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "the admin listener {0} is not on loopback and no [tls] certificate is configured: \
         refusing to serve passwords over plain HTTP; set [tls] cert/key, listen on 127.0.0.1, \
         or (behind a TLS proxy on a trusted network) set [admin] allow_plaintext_http = true"
    )]
    PlainHttpOutsideLoopback(SocketAddr),
    #[error("cannot open the directory or spool: {0}")]
    Open(#[from] postamt_ops::OpsError),
    #[error("cannot read the listener's address: {0}")]
    Io(#[from] std::io::Error),
}

/// Whether plain HTTP may be served on `addr`: on loopback always (an
/// IPv4-mapped loopback address counts), elsewhere only when the admin
/// opted in with `[admin] allow_plaintext_http`.
pub fn plain_http_allowed(addr: &SocketAddr, allow_plaintext_http: bool) -> bool {
    allow_plaintext_http || addr.ip().to_canonical().is_loopback()
}

pub async fn run(
    listener: TcpListener,
    ctx: Arc<AdminContext>,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    let local = listener.local_addr()?;
    let acceptor = ctx
        .tls
        .as_ref()
        .map(|t| t.acceptor_with_alpn(&[b"http/1.1"]));
    if acceptor.is_none() {
        if !plain_http_allowed(&local, ctx.config.admin.allow_plaintext_http) {
            return Err(StartError::PlainHttpOutsideLoopback(local));
        }
        if !local.ip().to_canonical().is_loopback() {
            tracing::warn!(
                addr = %local,
                "the admin listener serves plain HTTP outside loopback ([admin] allow_plaintext_http): \
                 passwords and session cookies cross the network in clear unless a TLS proxy is in front"
            );
        }
    }
    let state = AppState::new(Arc::clone(&ctx), acceptor.is_some())?;
    let app = router(state.clone());
    tracing::info!(addr = %local, tls = acceptor.is_some(), "admin listener serving");

    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let tracker = TaskTracker::new();
    let pruner = {
        let state = state.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(PRUNE_EVERY) => {
                        state.inner.sessions.prune(Instant::now());
                    }
                }
            }
        })
    };
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = Arc::clone(&limit).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "admin listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let app = app.clone();
        let acceptor = acceptor.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let _permit = permit;
            match acceptor {
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            postamt_metrics::global()
                                .tls_handshake(postamt_metrics::Protocol::Admin, true);
                            serve_connection(tls, peer, app, shutdown).await;
                        }
                        Ok(Err(e)) => {
                            postamt_metrics::global()
                                .tls_handshake(postamt_metrics::Protocol::Admin, false);
                            tracing::debug!(peer = %peer, error = %e, "admin TLS handshake failed");
                        }
                        Err(_) => tracing::debug!(peer = %peer, "admin TLS handshake timed out"),
                    }
                }
                None => serve_connection(tcp, peer, app, shutdown).await,
            }
        });
    }
    drop(listener);
    pruner.abort();
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("admin connections still open after the grace period; closing them");
    }
    tracing::info!(addr = %local, "admin listener stopped");
    Ok(())
}

/// Serves HTTP/1.1 on one connection until it closes or shutdown.
async fn serve_connection<IO>(
    io: IO,
    peer: SocketAddr,
    app: axum::Router,
    shutdown: CancellationToken,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        app.clone().oneshot(req.map(axum::body::Body::new))
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(64 * 1024)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(peer = %peer, error = %e, "admin connection ended with an error");
            }
        }
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            if tokio::time::timeout(SHUTDOWN_GRACE, conn).await.is_err() {
                tracing::debug!(peer = %peer, "admin connection closed at shutdown");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_on_loopback() {
        for a in [
            "127.0.0.1:8080",
            "127.0.0.2:8080",
            "[::1]:8080",
            "[::ffff:127.0.0.1]:8080",
        ] {
            assert!(plain_http_allowed(&a.parse().unwrap(), false), "{a}");
        }
        for a in [
            "0.0.0.0:8080",
            "192.0.2.1:8080",
            "[::]:8080",
            "[2001:db8::1]:8080",
        ] {
            assert!(!plain_http_allowed(&a.parse().unwrap(), false), "{a}");
        }
    }

    #[test]
    fn plain_http_elsewhere_only_when_allowed() {
        for a in [
            "0.0.0.0:8080",
            "192.0.2.1:8080",
            "[::]:8080",
            "127.0.0.1:8080",
        ] {
            assert!(plain_http_allowed(&a.parse().unwrap(), true), "{a}");
        }
    }
}
