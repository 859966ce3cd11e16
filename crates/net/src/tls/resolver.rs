//! The set of certificates being served and the rustls resolver that picks
//! one per handshake by SNI host name (case-insensitive), falling back to the
//! default. Reloading swaps the whole set atomically; handshakes in progress
//! and established sessions keep the certificate they started with.

use super::info::CertInfo;
use super::load::Loaded;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// One consistent set of served certificates.
#[derive(Debug)]
pub(crate) struct CertStore {
    default: Loaded,
    by_name: HashMap<String, Loaded>,
}

impl CertStore {
    pub(crate) fn new(default: Loaded) -> Self {
        CertStore {
            default,
            by_name: HashMap::new(),
        }
    }

    /// The certificate served when no SNI entry matches.
    pub(crate) fn default(&self) -> &Loaded {
        &self.default
    }

    /// Adds the certificate for `hostname`; false if that name already has one.
    pub(crate) fn insert_sni(&mut self, hostname: &str, loaded: Loaded) -> bool {
        let name = normalize(hostname);
        if self.by_name.contains_key(&name) {
            return false;
        }
        self.by_name.insert(name, loaded);
        true
    }

    /// The certificate for the SNI name `server_name`, else the default.
    pub(crate) fn select(&self, server_name: Option<&str>) -> &Arc<CertifiedKey> {
        server_name
            .and_then(|n| self.by_name.get(&normalize(n)))
            .map_or(&self.default.key, |l| &l.key)
    }

    /// The default certificate first, then SNI ones sorted by name.
    pub(crate) fn infos(&self) -> Vec<CertInfo> {
        let mut names: Vec<&String> = self.by_name.keys().collect();
        names.sort();
        std::iter::once(&self.default)
            .chain(names.into_iter().filter_map(|n| self.by_name.get(n)))
            .map(|l| l.info.clone())
            .collect()
    }

    /// Whether both serve exactly the same chains for the same names.
    pub(crate) fn same_certificates(&self, other: &CertStore) -> bool {
        self.default.key.cert == other.default.key.cert
            && self.by_name.len() == other.by_name.len()
            && self.by_name.iter().all(|(name, l)| {
                other
                    .by_name
                    .get(name)
                    .is_some_and(|o| o.key.cert == l.key.cert)
            })
    }
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Serves the current [`CertStore`]; shared by every `ServerConfig` of a
/// provider so that all acceptors follow reloads.
#[derive(Debug)]
pub(crate) struct SniResolver {
    current: RwLock<Arc<CertStore>>,
}

impl SniResolver {
    pub(crate) fn new(store: CertStore) -> Self {
        SniResolver {
            current: RwLock::new(Arc::new(store)),
        }
    }

    pub(crate) fn current(&self) -> Arc<CertStore> {
        // A poisoned lock still holds a complete store (swaps are one assignment).
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    pub(crate) fn replace(&self, store: CertStore) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(store);
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let store = self.current();
        Some(Arc::clone(store.select(client_hello.server_name())))
    }
}
