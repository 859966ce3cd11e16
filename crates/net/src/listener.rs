//! Accept loops: bind the configured addresses, admit connections under the
//! limits, hand each to its service's session handler, stop on shutdown.

use crate::limits::ConnectionLimits;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A service's name and what it tells a client it cannot admit.
#[derive(Clone, Copy, Debug)]
pub struct Service {
    /// The `[listen]` key, e.g. "smtp".
    pub name: &'static str,
    /// Written before closing a refused connection, e.g. `421 4.7.0 ...\r\n`.
    pub busy_reply: &'static [u8],
}

/// Binds every address in `addrs` (with SO_REUSEADDR, as tokio does).
pub async fn bind(addrs: &[String]) -> std::io::Result<Vec<TcpListener>> {
    let mut out = Vec::with_capacity(addrs.len());
    for a in addrs {
        let addr: SocketAddr = a.parse().map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("bad address {a}"))
        })?;
        let l = TcpListener::bind(addr)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
        out.push(l);
    }
    Ok(out)
}

/// Accepts on `listener` until `shutdown`; each admitted connection runs
/// `handler(stream, peer, shutdown)` on `tracker`, so the caller can wait
/// for every session to end.
pub async fn serve<H, F>(
    listener: TcpListener,
    service: Service,
    limits: Arc<ConnectionLimits>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    handler: H,
) where
    H: Fn(TcpStream, SocketAddr, CancellationToken) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let handler = Arc::new(handler);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        let (mut stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(service = service.name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        match limits.admit(peer.ip()) {
            Ok(permit) => {
                let h = Arc::clone(&handler);
                let sd = shutdown.clone();
                tracker.spawn(async move {
                    let _permit = permit;
                    h(stream, peer, sd).await;
                });
            }
            Err(why) => {
                tracing::warn!(service = service.name, %peer, reason = %why, "connection refused");
                tracker.spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(5), async {
                        let _ = stream.write_all(service.busy_reply).await;
                        let _ = stream.shutdown().await;
                    })
                    .await;
                });
            }
        }
    }
}
