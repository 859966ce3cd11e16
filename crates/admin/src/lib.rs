//! The web admin on the `admin` listener: the JSON API under `/api/v1/`,
//! the server-rendered UI (admin pages and user self-service), Thunderbird
//! autoconfig, Prometheus `/metrics` and the admin guide at `/docs/`.
//! Every page and API route is a thin face over `postamt_ops`, the same
//! operations the CLI calls.
//!
//! Modules: `server` (the connection loop: TLS, limits, timeouts,
//! shutdown), `state` (shared state), `session` (server-side sessions and
//! cookies), `authn` (Basic and session logins, admin checks, the CSRF
//! guard), `error` (how errors are answered), `views` (serializable views),
//! `actions` (the operations behind both faces), `api` (JSON routes), `ui`
//! (pages), `templates` (embedded minijinja templates), `autoconfig`
//! (Thunderbird XML), `metrics_route` (routes without login).

pub mod actions;
pub mod api;
pub mod authn;
pub mod autoconfig;
pub mod error;
pub mod metrics_route;
pub mod server;
pub mod session;
pub mod state;
pub mod templates;
pub mod ui;
pub mod views;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use postamt_config::Config;
use postamt_directory::auth::Authenticator;
use postamt_net::tls::TlsProvider;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub use state::AppState;

/// Applies the config file anew without a restart; returns a one-line
/// summary or why it failed. Given by the binary, which owns the
/// running services.
pub type Reloader = Arc<dyn Fn() -> Result<String, String> + Send + Sync>;

/// What the admin server needs.
pub struct AdminContext {
    pub config: Arc<Config>,
    /// The config file (settings are written back into it).
    pub config_path: PathBuf,
    /// The login checker shared with SMTP AUTH, POP3 and IMAP (same
    /// throttling).
    pub auth: Arc<Authenticator>,
    /// Certificates: HTTPS when `[tls]` is configured.
    pub tls: Option<Arc<TlsProvider>>,
    /// The certificates the mail services serve (the TLS page): the
    /// configured ones or the self-signed fallback, kept current by the
    /// server's certificate watcher.
    pub served_tls: Option<Arc<TlsProvider>>,
    pub reload: Reloader,
}

/// Longest time one request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Serves the admin listener until shutdown. Refuses (logging why) to
/// serve plain HTTP on a non-loopback address.
pub async fn serve(
    listener: tokio::net::TcpListener,
    ctx: Arc<AdminContext>,
    shutdown: CancellationToken,
) {
    if let Err(e) = server::run(listener, ctx, shutdown).await {
        tracing::error!(error = %e, "the admin listener is not serving");
    }
}

/// Every route of the admin server, with its layers: security headers,
/// the CSRF guard, the body limit and the request timeout.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(ui::routes())
        .nest("/api/v1", api::routes())
        .merge(metrics_route::routes())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            authn::csrf_guard,
        ))
        .layer(middleware::from_fn(security_headers))
        .layer(DefaultBodyLimit::max(authn::BODY_LIMIT))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
        .with_state(state)
}

async fn not_found(State(st): axum::extract::State<AppState>) -> Response {
    ui::error_page(&st, error::ApiError::not_found("There is no such page."))
}
use axum::extract::State;

/// Headers every answer carries: no framing, no sniffing, no referrer
/// to other sites,
/// scripts and styles only from this server, pages not cached.
async fn security_headers(req: axum::extract::Request, next: middleware::Next) -> Response {
    let mut resp = next.run(req).await.into_response();
    let h = resp.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, k: header::HeaderName, v: &'static str| {
        h.entry(k).or_insert(HeaderValue::from_static(v));
    };
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    // Same-origin: browsers then send a real `Origin` with forms (with
    // `no-referrer` Chrome sends `Origin: null`), and nothing to others.
    set(h, header::REFERRER_POLICY, "same-origin");
    set(h, header::CACHE_CONTROL, "no-store");
    resp
}
