//! The routes that need no login: Prometheus `/metrics`, Thunderbird
//! autoconfig, the stylesheet and script, and a health check.

use crate::autoconfig;
use crate::state::AppState;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use postamt_metrics::Protocol;
use serde::Deserialize;
use std::collections::BTreeMap;

/// Counts a refused admin login.
pub fn login_failed() {
    postamt_metrics::global().login_failed(Protocol::Admin);
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/metrics", get(metrics))
        .route(
            "/.well-known/autoconfig/mail/config-v1.1.xml",
            get(autoconfig_xml),
        )
        .route("/mail/config-v1.1.xml", get(autoconfig_xml))
        .route("/static/style.css", get(style))
        .route("/static/app.js", get(script))
        .route("/healthz", get(|| async { "ok\n" }))
}

async fn metrics(State(st): State<AppState>) -> Response {
    let admin = st.admin();
    let gauges = tokio::task::spawn_blocking(move || {
        let now = chrono::Utc::now().timestamp();
        admin.spool.list().map(|l| {
            let oldest = l.iter().map(|e| e.created_at).min();
            let len = u64::try_from(l.len()).unwrap_or(u64::MAX);
            let age = oldest.map_or(0, |o| u64::try_from(now.saturating_sub(o)).unwrap_or(0));
            (len, age)
        })
    })
    .await;
    let (len, age) = match gauges {
        Ok(Ok(g)) => g,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "metrics: cannot read the queue");
            (0, 0)
        }
        Err(e) => {
            tracing::warn!(error = %e, "metrics: queue task failed");
            (0, 0)
        }
    };
    let body = postamt_metrics::global().render(len, age);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

#[derive(Deserialize)]
struct AutoconfigQuery {
    emailaddress: Option<String>,
}

async fn autoconfig_xml(State(st): State<AppState>, Query(q): Query<AutoconfigQuery>) -> Response {
    let config = st.config();
    let bound: BTreeMap<String, Vec<String>> =
        std::fs::read(config.run_dir().join("listeners.json"))
            .ok()
            .filter(|b| b.len() < 1024 * 1024)
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
    let email = q.emailaddress.filter(|e| e.len() <= 320);
    let xml = autoconfig::document(&config, &bound, email.as_deref());
    (
        [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
        xml,
    )
        .into_response()
}

async fn style() -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../static/style.css"),
    )
        .into_response()
}

async fn script() -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../static/app.js"),
    )
        .into_response()
}
