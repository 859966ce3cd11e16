//! The SMTP client as remote delivery sees it: `SmtpConnector` opens a
//! session to one address, `SmtpSession` runs a transaction. The real
//! implementation wraps `postamt_smtp_client` and keeps a connection that
//! ended cleanly open for a few seconds, so the next message to the same
//! host reuses it (checked with RSET first); the unit tests script a fake.
//! Also builds the client's shared configuration from `[delivery]`: our
//! EHLO name, the timeouts, and the trust roots for verified TLS (the
//! system's store plus `tls_ca_file`).

use crate::dns::BoxFuture;
use postamt_config::Config;
use postamt_smtp_client::{
    ClientConfig, ClientError, Connection, Credentials, Envelope, RecipientResult, Timeouts,
    TlsPolicy,
};
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::warn;

/// Where and how to connect.
#[derive(Clone)]
pub struct ConnectTarget {
    pub addr: SocketAddr,
    /// The host name (MX or smarthost): verified against the certificate
    /// when TLS is required, sent as SNI.
    pub server_name: String,
    pub tls: TlsPolicy,
    /// AUTH at a smarthost.
    pub credentials: Option<Credentials>,
}

impl std::fmt::Debug for ConnectTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectTarget")
            .field("addr", &self.addr)
            .field("server_name", &self.server_name)
            .field("tls", &self.tls)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|c| c.user.as_str()),
            )
            .finish()
    }
}

/// Opens SMTP sessions.
pub trait SmtpConnector: Send + Sync {
    /// Connects, reads the greeting, says EHLO, and does STARTTLS and AUTH
    /// as the target asks.
    fn connect<'a>(
        &'a self,
        target: &'a ConnectTarget,
    ) -> BoxFuture<'a, Result<Box<dyn SmtpSession>, ClientError>>;
}

/// An open SMTP session.
pub trait SmtpSession: Send {
    /// Whether the session runs over TLS.
    fn is_tls(&self) -> bool;
    /// One transaction; one result per envelope recipient, in order.
    fn send<'a>(
        &'a mut self,
        envelope: &'a Envelope,
        message: &'a [u8],
    ) -> BoxFuture<'a, Result<Vec<RecipientResult>, ClientError>>;
    /// QUIT and close (or keep the connection for the next message: an
    /// implementation that does must hand it over before returning the
    /// future, not when it is polled).
    fn quit(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// How long a finished connection waits for the next message to its host.
pub const IDLE_KEEP: Duration = Duration::from_secs(5);
/// Idle connections kept per host (address, name, TLS policy, login).
pub const IDLE_PER_HOST: usize = 4;

/// The real client.
pub struct SmtpClient {
    config: ClientConfig,
    pool: Arc<Pool>,
}

impl SmtpClient {
    pub fn new(config: ClientConfig) -> SmtpClient {
        SmtpClient {
            config,
            pool: Arc::new(Pool::default()),
        }
    }
}

/// What makes two connections interchangeable.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct PoolKey {
    addr: SocketAddr,
    server_name: String,
    tls: String,
    user: Option<String>,
}

impl PoolKey {
    fn of(target: &ConnectTarget) -> PoolKey {
        PoolKey {
            addr: target.addr,
            server_name: target.server_name.to_ascii_lowercase(),
            tls: format!("{:?}", target.tls),
            user: target.credentials.as_ref().map(|c| c.user.clone()),
        }
    }
}

/// Idle connections, newest last.
#[derive(Default)]
struct Pool {
    idle: Mutex<HashMap<PoolKey, Vec<(Instant, Connection)>>>,
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PoolKey, Vec<(Instant, Connection)>>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The newest idle connection for `key` that is not too old; finding
    /// only stale ones closes them all.
    fn take(&self, key: &PoolKey) -> Option<Connection> {
        let (found, stale) = {
            let mut idle = self.lock();
            let list = idle.get_mut(key)?;
            let found = match list.pop() {
                Some((since, conn)) if since.elapsed() < IDLE_KEEP => Some(conn),
                Some(old) => {
                    list.push(old);
                    None
                }
                None => None,
            };
            let stale: Vec<Connection> = match found {
                Some(_) => Vec::new(),
                None => list.drain(..).map(|(_, c)| c).collect(),
            };
            if list.is_empty() {
                idle.remove(key);
            }
            (found, stale)
        };
        close_all(stale);
        found
    }

    /// Keeps `conn` for the next message, or closes it when enough wait.
    fn put(self: &Arc<Self>, key: PoolKey, conn: Connection) {
        let refused = {
            let mut idle = self.lock();
            let list = idle.entry(key).or_default();
            if list.len() >= IDLE_PER_HOST {
                Some(conn)
            } else {
                list.push((Instant::now(), conn));
                None
            }
        };
        match refused {
            Some(conn) => close_all(vec![conn]),
            None => {
                let pool = Arc::clone(self);
                tokio::spawn(async move {
                    tokio::time::sleep(IDLE_KEEP + Duration::from_millis(100)).await;
                    pool.sweep();
                });
            }
        }
    }

    /// Closes (QUIT) every connection idle for longer than [`IDLE_KEEP`].
    fn sweep(&self) {
        let stale: Vec<Connection> = {
            let mut idle = self.lock();
            let mut out = Vec::new();
            idle.retain(|_, list| {
                let (old, fresh): (Vec<_>, Vec<_>) = list
                    .drain(..)
                    .partition(|(since, _)| since.elapsed() >= IDLE_KEEP);
                out.extend(old.into_iter().map(|(_, c)| c));
                *list = fresh;
                !list.is_empty()
            });
            out
        };
        close_all(stale);
    }
}

fn close_all(conns: Vec<Connection>) {
    for c in conns {
        tokio::spawn(c.quit());
    }
}

struct ClientSession {
    conn: Connection,
    key: PoolKey,
    pool: Arc<Pool>,
}

impl SmtpConnector for SmtpClient {
    fn connect<'a>(
        &'a self,
        target: &'a ConnectTarget,
    ) -> BoxFuture<'a, Result<Box<dyn SmtpSession>, ClientError>> {
        Box::pin(async move {
            let key = PoolKey::of(target);
            while let Some(mut conn) = self.pool.take(&key) {
                // The peer may have closed it meanwhile: RSET proves it lives.
                if conn.is_usable() && conn.reset().await.is_ok() {
                    tracing::debug!(addr = %target.addr, "reusing an open SMTP connection");
                    return Ok(Box::new(ClientSession {
                        conn,
                        key,
                        pool: Arc::clone(&self.pool),
                    }) as Box<dyn SmtpSession>);
                }
                close_all(vec![conn]);
            }
            let conn = Connection::open(
                target.addr,
                &target.server_name,
                target.tls,
                target.credentials.as_ref(),
                &self.config,
            )
            .await?;
            Ok(Box::new(ClientSession {
                conn,
                key,
                pool: Arc::clone(&self.pool),
            }) as Box<dyn SmtpSession>)
        })
    }
}

impl SmtpSession for ClientSession {
    fn is_tls(&self) -> bool {
        self.conn.is_tls()
    }
    fn send<'a>(
        &'a mut self,
        envelope: &'a Envelope,
        message: &'a [u8],
    ) -> BoxFuture<'a, Result<Vec<RecipientResult>, ClientError>> {
        Box::pin(self.conn.send(envelope, message))
    }
    /// A connection in good order goes back to the pool instead of QUIT,
    /// at once (before the future is polled), so that the delivery waiting
    /// for this destination's next connection slot finds it there.
    fn quit(self: Box<Self>) -> BoxFuture<'static, ()> {
        let ClientSession { conn, key, pool } = *self;
        if conn.is_usable() {
            pool.put(key, conn);
            Box::pin(async {})
        } else {
            Box::pin(conn.quit())
        }
    }
}

/// Why the client configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read tls_ca_file {0}: {1}")]
    CaFile(String, String),
    #[error("tls_ca_file {0} holds no usable certificate")]
    NoCertificate(String),
    #[error("cannot set up TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The client's timeouts from `[delivery]`: `connect_timeout`, then
/// `command_timeout` for the greeting, each command and the data blocks,
/// and `data_timeout` for the reply to the end of data.
pub fn timeouts(cfg: &Config) -> Timeouts {
    let d = &cfg.delivery;
    Timeouts {
        connect: d.connect_timeout.get(),
        greeting: d.command_timeout.get(),
        command: d.command_timeout.get(),
        data_init: d.command_timeout.get(),
        data_block: d.command_timeout.get(),
        data_end: d.data_timeout.get(),
    }
}

/// Adds the PEM certificates of `path` to `roots`; returns how many.
pub fn add_ca_file(roots: &mut RootCertStore, path: &Path) -> Result<usize, TlsSetupError> {
    let name = path.display().to_string();
    let iter = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsSetupError::CaFile(name.clone(), e.to_string()))?;
    let mut added = 0;
    for cert in iter {
        let cert = cert.map_err(|e| TlsSetupError::CaFile(name.clone(), e.to_string()))?;
        roots
            .add(cert)
            .map_err(|e| TlsSetupError::CaFile(name.clone(), e.to_string()))?;
        added += 1;
    }
    if added == 0 {
        return Err(TlsSetupError::NoCertificate(name));
    }
    Ok(added)
}

/// The trust roots for verified TLS: the system's store (read from
/// `/etc/ssl/certs` and friends, no network) plus `tls_ca_file`.
pub fn trust_roots(cfg: &Config) -> Result<RootCertStore, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in native.errors.iter().take(3) {
        warn!(error = %e, "problem reading the system's trusted certificates");
    }
    let (ok, bad) = roots.add_parsable_certificates(native.certs);
    if bad > 0 {
        warn!(
            ignored = bad,
            "some system certificates could not be used as trust roots"
        );
    }
    let mut total = ok;
    if let Some(path) = &cfg.delivery.tls_ca_file {
        total += add_ca_file(&mut roots, path)?;
    }
    if total == 0 {
        warn!(
            "no trusted CA certificates (system store empty, no tls_ca_file): deliveries that require verified TLS will be deferred"
        );
    }
    Ok(roots)
}

/// The rustls configuration for verified TLS over `roots` (ring, TLS 1.2
/// and 1.3).
pub fn verified_tls(roots: RootCertStore) -> Result<Arc<rustls::ClientConfig>, TlsSetupError> {
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The SMTP client's configuration from `cfg`.
pub fn client_config(cfg: &Config) -> Result<ClientConfig, TlsSetupError> {
    Ok(ClientConfig {
        helo_name: cfg.hostname.clone(),
        timeouts: timeouts(cfg),
        verified_tls: verified_tls(trust_roots(cfg)?)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use postamt_config::HumanDuration;

    #[test]
    fn timeouts_follow_the_config() {
        let mut cfg = Config::default();
        cfg.delivery.connect_timeout = HumanDuration::secs(7);
        cfg.delivery.command_timeout = HumanDuration::secs(11);
        cfg.delivery.data_timeout = HumanDuration::secs(13);
        let t = timeouts(&cfg);
        assert_eq!(t.connect.as_secs(), 7);
        assert_eq!((t.greeting.as_secs(), t.command.as_secs()), (11, 11));
        assert_eq!(t.data_end.as_secs(), 13);
    }

    #[test]
    fn a_missing_or_empty_ca_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut roots = RootCertStore::empty();
        let missing = dir.path().join("nope.pem");
        assert!(matches!(
            add_ca_file(&mut roots, &missing),
            Err(TlsSetupError::CaFile(..))
        ));
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no certificates here\n").unwrap();
        assert!(matches!(
            add_ca_file(&mut roots, &empty),
            Err(TlsSetupError::NoCertificate(_))
        ));
    }

    #[test]
    fn a_ca_file_is_read_as_pem() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        let ca = rcgen::generate_simple_self_signed(vec!["ca.test".to_string()]).unwrap();
        let other = rcgen::generate_simple_self_signed(vec!["ca2.test".to_string()]).unwrap();
        std::fs::write(&path, format!("{}{}", ca.cert.pem(), other.cert.pem())).unwrap();
        let mut roots = RootCertStore::empty();
        assert_eq!(add_ca_file(&mut roots, &path).unwrap(), 2);
        assert_eq!(roots.len(), 2);
    }

    #[test]
    fn the_client_config_carries_our_name_and_the_ca_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        let ca = rcgen::generate_simple_self_signed(vec!["ca.test".to_string()]).unwrap();
        std::fs::write(&path, ca.cert.pem()).unwrap();
        let mut cfg = Config {
            hostname: "mx.example.org".into(),
            ..Config::default()
        };
        cfg.delivery.tls_ca_file = Some(path);
        let c = client_config(&cfg).unwrap();
        assert_eq!(c.helo_name, "mx.example.org");
        cfg.delivery.tls_ca_file = Some(dir.path().join("missing.pem"));
        assert!(
            client_config(&cfg).is_err(),
            "a bad tls_ca_file stops the setup"
        );
    }
}
