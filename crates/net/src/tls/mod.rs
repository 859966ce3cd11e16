//! TLS for every listener: certificates from the configured PEM files (with
//! per-host-name SNI entries) or a persisted self-signed one, served through
//! rustls with the ring provider, TLS 1.2 and 1.3 only. Certificates can be
//! reloaded (SIGHUP, file watcher) without touching established sessions.
//!
//! Every acceptor handed out shares one certificate resolver, so an acceptor
//! kept for a listener's lifetime always serves the current certificates.

mod error;
mod info;
mod load;
mod pem;
mod resolver;
mod selfsigned;
pub mod starttls;
pub mod testing;
mod watcher;

#[cfg(test)]
mod tests;

pub use error::TlsError;
pub use info::{CertInfo, fingerprint_sha256};
pub use selfsigned::{CERT_FILE as SELF_SIGNED_CERT_FILE, KEY_FILE as SELF_SIGNED_KEY_FILE};

use load::{Loaded, load_files, load_pem};
use resolver::{CertStore, SniResolver};
use rustls::crypto::CryptoProvider;
use rustls::{ServerConfig, SupportedProtocolVersion};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use watcher::Snapshot;

/// The protocol versions Postamt speaks, best first: TLS 1.3 and 1.2.
pub static PROTOCOL_VERSIONS: &[&SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Shortest polling interval [`TlsProvider::spawn_watcher`] accepts.
const MIN_WATCH_INTERVAL: Duration = Duration::from_millis(10);

/// The crypto provider for every TLS config in Postamt (ring; never aws-lc).
/// Clients (e.g. remote delivery) should build their configs with it too,
/// via `ClientConfig::builder_with_provider`.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What [`TlsProvider::reload`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The files hold the certificates already served.
    Unchanged,
    /// New certificates are served from now on.
    Reloaded { certificates: Vec<CertInfo> },
}

/// Where the default certificate comes from.
#[derive(Debug)]
enum DefaultSource {
    Files {
        cert: PathBuf,
        key: PathBuf,
    },
    SelfSigned {
        dir: PathBuf,
        hostname: String,
    },
    /// Built from PEM in memory: nothing to re-read.
    Memory,
}

/// One `[[tls.sni]]` entry, paths resolved.
#[derive(Debug)]
struct SniSource {
    hostname: String,
    cert: PathBuf,
    key: PathBuf,
}

/// The server side of TLS for all services: current certificates, acceptors,
/// reloading.
#[derive(Debug)]
pub struct TlsProvider {
    default_source: DefaultSource,
    sni_sources: Vec<SniSource>,
    crypto: Arc<CryptoProvider>,
    resolver: Arc<SniResolver>,
    server_config: Arc<ServerConfig>,
    /// Serialises reloads (SIGHUP and the watcher may race).
    reload_lock: Mutex<()>,
}

impl TlsProvider {
    /// Loads `[tls] cert`/`key` and every `[[tls.sni]]` entry; without
    /// `cert`/`key`, uses (or first creates) the self-signed certificate
    /// under `<data_dir>/tls/`. Relative paths are taken from the config
    /// file's directory. Logs each certificate's fingerprint, subject and
    /// expiry.
    pub fn from_config(config: &postamt_config::Config) -> Result<Arc<Self>, TlsError> {
        let base = config.base_dir();
        let default_source = match (&config.tls.cert, &config.tls.key) {
            (Some(cert), Some(key)) => DefaultSource::Files {
                cert: resolve(base, cert),
                key: resolve(base, key),
            },
            (None, None) => DefaultSource::SelfSigned {
                dir: config.data_dir.join("tls"),
                hostname: config.hostname.clone(),
            },
            _ => {
                return Err(TlsError::Config(
                    "tls.cert and tls.key must be set together".into(),
                ));
            }
        };
        let sni_sources = config
            .tls
            .sni
            .iter()
            .map(|e| SniSource {
                hostname: e.hostname.clone(),
                cert: resolve(base, &e.cert),
                key: resolve(base, &e.key),
            })
            .collect();
        Self::build(default_source, sni_sources, None)
    }

    /// A provider serving one certificate chain and key given as PEM text
    /// (no files, so [`TlsProvider::reload`] has nothing to re-read).
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<Self>, TlsError> {
        let crypto = crypto_provider();
        let loaded = load_pem(
            cert_pem,
            key_pem,
            Path::new("<certificate PEM>"),
            Path::new("<key PEM>"),
            None,
            &crypto,
            false,
        )?;
        Self::build(DefaultSource::Memory, Vec::new(), Some(loaded))
    }

    fn build(
        default_source: DefaultSource,
        sni_sources: Vec<SniSource>,
        memory: Option<Loaded>,
    ) -> Result<Arc<Self>, TlsError> {
        let crypto = crypto_provider();
        let store = load_store(&default_source, &sni_sources, &crypto, memory)?;
        let infos = store.infos();
        let resolver = Arc::new(SniResolver::new(store));
        let server_config = ServerConfig::builder_with_provider(Arc::clone(&crypto))
            .with_protocol_versions(PROTOCOL_VERSIONS)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&resolver) as _);
        log_certificates(&infos, false);
        Ok(Arc::new(TlsProvider {
            default_source,
            sni_sources,
            crypto,
            resolver,
            server_config: Arc::new(server_config),
            reload_lock: Mutex::new(()),
        }))
    }

    /// An acceptor serving the current certificates, without ALPN. Cheap
    /// (one `Arc` clone); it keeps following reloads.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(Arc::clone(&self.server_config))
    }

    /// An acceptor that negotiates one of `protocols` by ALPN (e.g.
    /// `[b"h2", b"http/1.1"]`), in server preference order. It builds a new
    /// `ServerConfig`: make it once per listener and keep it (it follows
    /// reloads like [`TlsProvider::acceptor`]).
    pub fn acceptor_with_alpn(&self, protocols: &[&[u8]]) -> TlsAcceptor {
        let mut config = (*self.server_config).clone();
        config.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
        TlsAcceptor::from(Arc::new(config))
    }

    /// The shared rustls server configuration (no ALPN).
    pub fn server_config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.server_config)
    }

    /// Re-reads the certificate files (for the self-signed certificate:
    /// re-checks it, making a new one if it went missing or is expiring).
    /// On error the current certificates stay in service and the error is
    /// returned for the caller to log. Sessions already established are
    /// never affected.
    pub fn reload(&self) -> Result<ReloadOutcome, TlsError> {
        let _guard = self.reload_lock.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.resolver.current();
        let memory = match self.default_source {
            DefaultSource::Memory if self.sni_sources.is_empty() => {
                return Ok(ReloadOutcome::Unchanged);
            }
            DefaultSource::Memory => Some(current.default().clone()),
            _ => None,
        };
        let store = load_store(
            &self.default_source,
            &self.sni_sources,
            &self.crypto,
            memory,
        )?;
        if current.same_certificates(&store) {
            return Ok(ReloadOutcome::Unchanged);
        }
        let certificates = store.infos();
        self.resolver.replace(store);
        log_certificates(&certificates, true);
        Ok(ReloadOutcome::Reloaded { certificates })
    }

    /// The certificates served now: the default first, then SNI ones by name.
    pub fn certificate_info(&self) -> Vec<CertInfo> {
        self.resolver.current().infos()
    }

    /// The files [`TlsProvider::reload`] reads (what the watcher polls).
    pub fn watched_files(&self) -> Vec<PathBuf> {
        let mut files = match &self.default_source {
            DefaultSource::Files { cert, key } => vec![cert.clone(), key.clone()],
            DefaultSource::SelfSigned { dir, .. } => {
                let (cert, key) = selfsigned::paths(dir);
                vec![cert, key]
            }
            DefaultSource::Memory => Vec::new(),
        };
        for s in &self.sni_sources {
            files.push(s.cert.clone());
            files.push(s.key.clone());
        }
        let mut seen = std::collections::HashSet::new();
        files.retain(|f| seen.insert(f.clone()));
        files
    }

    /// Polls [`TlsProvider::watched_files`] every `every` (at least 10 ms)
    /// and reloads when any changed (content, size, mtime or the file a
    /// symlink points to). Failures are logged and the old certificates kept;
    /// a failed reload is retried only after the files change again. Ends on
    /// `shutdown` or when the provider is dropped. Must be called inside a
    /// tokio runtime.
    pub fn spawn_watcher(
        self: &Arc<Self>,
        shutdown: CancellationToken,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let provider = Arc::downgrade(self);
        let paths = self.watched_files();
        let every = every.max(MIN_WATCH_INTERVAL);
        // Taken now, so a change made right after this call is noticed.
        let mut last = Snapshot::take(&paths);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(every) => {}
                }
                let Some(provider) = provider.upgrade() else {
                    break;
                };
                let paths = paths.clone();
                let previous = last.clone();
                let step = tokio::task::spawn_blocking(move || {
                    let now = Snapshot::take(&paths);
                    if now == previous {
                        return (now, None);
                    }
                    // `now` is taken before reading, so a write racing the
                    // reload shows up as another change at the next poll.
                    (now, Some(provider.reload()))
                })
                .await;
                match step {
                    Ok((snapshot, outcome)) => {
                        last = snapshot;
                        match outcome {
                            Some(Err(e)) => tracing::warn!(
                                error = %e,
                                "TLS certificate files changed but cannot be loaded; keeping the current certificates"
                            ),
                            Some(Ok(ReloadOutcome::Unchanged)) => {
                                tracing::debug!(
                                    "TLS certificate files touched; certificates unchanged"
                                )
                            }
                            Some(Ok(ReloadOutcome::Reloaded { .. })) | None => {}
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "TLS certificate watcher step failed"),
                }
            }
        })
    }
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Loads every configured certificate into a new store.
fn load_store(
    default_source: &DefaultSource,
    sni_sources: &[SniSource],
    crypto: &CryptoProvider,
    memory: Option<Loaded>,
) -> Result<CertStore, TlsError> {
    let default = match (default_source, memory) {
        (DefaultSource::Files { cert, key }, _) => load_files(cert, key, None, crypto)?,
        (DefaultSource::SelfSigned { dir, hostname }, _) => {
            let (loaded, created) = selfsigned::load_or_create(dir, hostname, crypto)?;
            if created {
                tracing::info!(
                    file = %dir.join(selfsigned::CERT_FILE).display(),
                    fingerprint_sha256 = %loaded.info.fingerprint_sha256,
                    "generated a self-signed TLS certificate; clients must be told to trust it"
                );
            }
            loaded
        }
        (DefaultSource::Memory, Some(loaded)) => loaded,
        (DefaultSource::Memory, None) => {
            return Err(TlsError::Config("no certificate given".into()));
        }
    };
    let mut store = CertStore::new(default);
    for s in sni_sources {
        let loaded = load_files(
            &s.cert,
            &s.key,
            Some(s.hostname.to_ascii_lowercase()),
            crypto,
        )?;
        if !store.insert_sni(&s.hostname, loaded) {
            return Err(TlsError::Config(format!(
                "tls.sni lists host name {} twice",
                s.hostname
            )));
        }
    }
    Ok(store)
}

fn log_certificates(infos: &[CertInfo], reloaded: bool) {
    let now = info::now_unix();
    for i in infos {
        let hostname = i.hostname_or_default();
        let file = i
            .cert_file
            .as_ref()
            .map(|f| f.display().to_string())
            .unwrap_or_default();
        tracing::info!(
            hostname,
            fingerprint_sha256 = %i.fingerprint_sha256,
            subject = %i.subject,
            issuer = %i.issuer,
            not_after = %i.not_after_utc(),
            self_signed = i.self_signed,
            file,
            "{}",
            if reloaded { "TLS certificate reloaded" } else { "TLS certificate loaded" }
        );
        if i.not_after < now {
            tracing::warn!(hostname, subject = %i.subject, not_after = %i.not_after_utc(), "TLS certificate has expired");
        } else if i.not_before > now {
            tracing::warn!(hostname, subject = %i.subject, not_before = %info::format_unix(i.not_before), "TLS certificate is not valid yet");
        }
    }
}
