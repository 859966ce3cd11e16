//! The shared state of the admin server: the context the binary gave, the
//! operations handle (`postamt_ops::Admin`, rebuilt when the settings
//! change), the session store and the templates; and `blocking`, which
//! runs an operation on tokio's blocking pool (SQLite, argon2, file reads)
//! and turns a failed task into a 500 instead of a dead connection.

use crate::AdminContext;
use crate::error::ApiError;
use crate::session::SessionStore;
use crate::templates::Templates;
use postamt_config::Config;
use postamt_net::tls::{CertInfo, SELF_SIGNED_CERT_FILE, SELF_SIGNED_KEY_FILE, TlsProvider};
use postamt_ops::Admin;
use std::sync::{Arc, Mutex, RwLock};

/// Cheap to clone: everything is behind one `Arc`.
#[derive(Clone)]
pub struct AppState {
    pub inner: Arc<Inner>,
}

pub struct Inner {
    pub ctx: Arc<AdminContext>,
    admin: RwLock<Arc<Admin>>,
    pub sessions: SessionStore,
    pub templates: Templates,
    /// Served over TLS: cookies get `Secure`.
    pub secure: bool,
    /// The self-signed certificate the mail listeners serve when `[tls]`
    /// is not set, described once per change of its file.
    self_signed: Mutex<Option<(Vec<u8>, Vec<CertInfo>)>>,
}

impl AppState {
    /// Opens the directory and spool the configuration names.
    pub fn new(ctx: Arc<AdminContext>, secure: bool) -> Result<AppState, postamt_ops::OpsError> {
        let admin = Admin::open(Arc::clone(&ctx.config))?;
        Ok(AppState::with_admin(ctx, admin, secure))
    }

    /// With an operations handle made by the caller (tests).
    pub fn with_admin(ctx: Arc<AdminContext>, admin: Admin, secure: bool) -> AppState {
        AppState {
            inner: Arc::new(Inner {
                ctx,
                admin: RwLock::new(Arc::new(admin)),
                sessions: SessionStore::new(),
                templates: Templates::new(),
                secure,
                self_signed: Mutex::new(None),
            }),
        }
    }

    pub fn ctx(&self) -> &AdminContext {
        &self.inner.ctx
    }

    /// The operations handle with the current configuration.
    pub fn admin(&self) -> Arc<Admin> {
        Arc::clone(&self.inner.admin.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// The configuration in effect (re-read after a settings change).
    pub fn config(&self) -> Arc<Config> {
        Arc::clone(&self.admin().config)
    }

    /// Takes a configuration re-read from the file after a settings change.
    pub fn set_config(&self, config: Arc<Config>) {
        let mut guard = self.inner.admin.write().unwrap_or_else(|p| p.into_inner());
        let old = Arc::clone(&guard);
        *guard = Arc::new(Admin {
            config,
            directory: Arc::clone(&old.directory),
            spool: Arc::clone(&old.spool),
        });
    }

    /// The certificates the server's TLS listeners serve: those of the
    /// admin listener's own provider when `[tls]` is set; otherwise the
    /// self-signed certificate the mail listeners made under
    /// `<data_dir>/tls/` (empty when there is none yet or it cannot be
    /// read).
    pub fn served_certificates(&self) -> Vec<CertInfo> {
        if let Some(tls) = &self.ctx().tls {
            return tls.certificate_info();
        }
        let dir = self.config().data_dir.join("tls");
        let cert_path = dir.join(SELF_SIGNED_CERT_FILE);
        let Ok(cert) = std::fs::read(&cert_path) else {
            return Vec::new();
        };
        let mut cached = self
            .inner
            .self_signed
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some((pem, infos)) = cached.as_ref()
            && *pem == cert
        {
            return infos.clone();
        }
        let Ok(key) = std::fs::read(dir.join(SELF_SIGNED_KEY_FILE)) else {
            return Vec::new();
        };
        match TlsProvider::from_pem(&cert, &key) {
            Ok(p) => {
                let infos: Vec<CertInfo> = p
                    .certificate_info()
                    .into_iter()
                    .map(|i| CertInfo {
                        cert_file: Some(cert_path.clone()),
                        ..i
                    })
                    .collect();
                *cached = Some((cert, infos.clone()));
                infos
            }
            Err(e) => {
                tracing::debug!(file = %cert_path.display(), error = %e, "cannot read the self-signed certificate");
                Vec::new()
            }
        }
    }

    /// Runs `f` with the operations handle on the blocking pool.
    pub async fn blocking<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Admin) -> Result<T, ApiError> + Send + 'static,
    {
        let admin = self.admin();
        match tokio::task::spawn_blocking(move || f(&admin)).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "admin operation failed");
                Err(ApiError::internal(
                    "the operation failed; see the server log",
                ))
            }
        }
    }
}
