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
use postamt_net::tls::CertInfo;
use postamt_ops::Admin;
use std::sync::{Arc, RwLock};

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

    /// The certificates the mail services serve now (the configured ones,
    /// or the self-signed fallback they made; empty in a context without
    /// them).
    pub fn served_certificates(&self) -> Vec<CertInfo> {
        self.ctx()
            .served_tls
            .as_ref()
            .map_or_else(Vec::new, |t| t.certificate_info())
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
