//! API routes over the running system: the queue (list, show, flush,
//! hold, release, delete, bounce), settings (GET/PUT, written into the
//! TOML file and applied), the log viewer, message trace, dashboard, DNS
//! records with DKIM key generation and the live check, and TLS.

use super::{JsonBody, QueryParams};
use crate::actions::{self, Applied, CertView, DnsRow};
use crate::authn::ApiAdmin;
use crate::error::ApiError;
use crate::state::AppState;
use crate::views::QueueView;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use postamt_ops::logs::{LogEvent, LogQuery, Trace};
use postamt_ops::settings::Settings;
use postamt_ops::stats::Dashboard;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/queue", get(queue))
        .route("/queue/flush", post(flush))
        .route("/queue/{id}", get(queue_show).delete(queue_delete))
        .route("/queue/{id}/{action}", post(queue_action))
        .route("/settings", get(get_settings).put(put_settings))
        .route("/logs", get(logs))
        .route("/trace", get(trace))
        .route("/dashboard", get(dashboard))
        .route("/dns/{domain}", get(dns_records))
        .route("/dns/{domain}/check", get(dns_check))
        .route("/dkim/{domain}", post(dkim_generate))
        .route("/tls", get(tls))
}

type ApiResult<T> = Result<Json<T>, ApiError>;

/// A queue id from the path: 32 hexadecimal digits, else 400 naming `id`
/// (a well-formed id that is not queued is a 404 from the spool).
fn queue_id(id: &str) -> Result<(), ApiError> {
    if id.len() == postamt_spool::QUEUE_ID_LEN && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(());
    }
    let shown: String = id.chars().take(64).collect();
    Err(ApiError::field(
        "id",
        format!("`{shown}` is not a queue id (32 hexadecimal digits)"),
    ))
}

async fn queue(State(st): State<AppState>, _: ApiAdmin) -> ApiResult<Vec<QueueView>> {
    st.blocking(|a| Ok(a.queue().list()?.into_iter().map(QueueView::from).collect()))
        .await
        .map(Json)
}

async fn queue_show(
    State(st): State<AppState>,
    _: ApiAdmin,
    Path(id): Path<String>,
) -> ApiResult<Value> {
    queue_id(&id)?;
    st.blocking(move |a| {
        let (env, headers) = a.queue().show(&id)?;
        Ok(json!({ "envelope": env, "headers": headers }))
    })
    .await
    .map(Json)
}

async fn flush(State(st): State<AppState>, _: ApiAdmin) -> ApiResult<Value> {
    st.blocking(|a| {
        let r = a.queue().flush()?;
        Ok(json!({ "messages": r.count, "server_notified": r.server_notified }))
    })
    .await
    .map(Json)
}

async fn queue_delete(
    State(st): State<AppState>,
    _: ApiAdmin,
    Path(id): Path<String>,
) -> ApiResult<Value> {
    queue_id(&id)?;
    st.blocking(move |a| {
        let r = a.queue().delete(&id)?;
        Ok(json!({ "deleted": id, "server_notified": r.server_notified }))
    })
    .await
    .map(Json)
}

async fn queue_action(
    State(st): State<AppState>,
    _: ApiAdmin,
    Path((id, action)): Path<(String, String)>,
) -> ApiResult<Value> {
    queue_id(&id)?;
    st.blocking(move |a| {
        let q = a.queue();
        let notified = match action.as_str() {
            "hold" => q.hold(&id)?.server_notified,
            "release" => q.release(&id)?.server_notified,
            "bounce" => {
                let n = a.queue_bounce(&id)?;
                return Ok(json!({ "id": id, "action": "bounce", "recipients": n }));
            }
            _ => {
                return Err(ApiError::not_found(
                    "use .../hold, .../release or .../bounce (DELETE to delete)",
                ));
            }
        };
        Ok(json!({ "id": id, "action": action, "server_notified": notified }))
    })
    .await
    .map(Json)
}

async fn get_settings(State(st): State<AppState>, _: ApiAdmin) -> ApiResult<Settings> {
    actions::read_settings(&st).await.map(Json)
}

#[derive(Serialize)]
struct SettingsReply {
    settings: Settings,
    changed: Vec<String>,
    restart_needed: Vec<String>,
    applied: bool,
    reload: String,
}

async fn put_settings(
    State(st): State<AppState>,
    _: ApiAdmin,
    JsonBody(patch): JsonBody<Value>,
) -> ApiResult<SettingsReply> {
    let current = actions::read_settings(&st).await?;
    let new = actions::merge_settings(&current, &patch)?;
    let Applied {
        changed,
        restart_needed,
        reload,
    } = actions::apply_settings(&st, new).await?;
    let settings = actions::read_settings(&st).await?;
    let (applied, reload) = match reload {
        Ok(m) => (true, m),
        Err(e) => (false, e),
    };
    Ok(Json(SettingsReply {
        settings,
        changed,
        restart_needed,
        applied,
        reload,
    }))
}

/// The log viewer's query string.
#[derive(Deserialize, Default, Serialize, Clone)]
#[serde(default)]
pub struct LogParams {
    /// `receiver`, `delivery` or `retrieval`; empty for all.
    pub log: String,
    pub queue_id: String,
    pub address: String,
    pub text: String,
    pub since: String,
    pub until: String,
    pub limit: Option<usize>,
}

impl LogParams {
    pub fn to_query(&self) -> Result<LogQuery, ApiError> {
        let logs = match self.log.trim() {
            "" => Vec::new(),
            l @ ("receiver" | "delivery" | "retrieval") => vec![l.to_owned()],
            other => {
                return Err(ApiError::field(
                    "log",
                    format!("`{other}` is not receiver, delivery or retrieval"),
                ));
            }
        };
        let opt = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
        Ok(LogQuery {
            logs,
            queue_id: opt(&self.queue_id),
            address: opt(&self.address),
            text: opt(&self.text),
            since: actions::parse_time("since", &self.since)?,
            until: actions::parse_time("until", &self.until)?,
            limit: self.limit.unwrap_or(actions::LOG_LIMIT).clamp(1, 5000),
        })
    }
}

async fn logs(
    State(st): State<AppState>,
    _: ApiAdmin,
    QueryParams(p): QueryParams<LogParams>,
) -> ApiResult<Vec<LogEvent>> {
    let q = p.to_query()?;
    actions::search_logs(&st, q).await.map(Json)
}

#[derive(Deserialize)]
pub struct TraceParams {
    #[serde(default)]
    queue_id: Option<String>,
    #[serde(default)]
    sender: Option<String>,
    #[serde(default)]
    recipient: Option<String>,
    #[serde(default)]
    message_id: Option<String>,
}

async fn trace(
    State(st): State<AppState>,
    _: ApiAdmin,
    QueryParams(p): QueryParams<TraceParams>,
) -> ApiResult<Vec<Trace>> {
    let (by, key) = [
        ("queue_id", p.queue_id),
        ("sender", p.sender),
        ("recipient", p.recipient),
        ("message_id", p.message_id),
    ]
    .into_iter()
    .find_map(|(by, v)| v.map(|v| (by, v)))
    .ok_or_else(|| ApiError::field("queue_id", "give queue_id, sender, recipient or message_id"))?;
    let key = actions::trace_key(by, &key).map_err(|e| ApiError {
        field: Some(by.to_owned()),
        message: e.message.replacen("key:", &format!("{by}:"), 1),
        ..e
    })?;
    actions::trace(&st, key).await.map(Json)
}

#[derive(Serialize)]
struct DashboardReply {
    #[serde(flatten)]
    dashboard: Dashboard,
    services: Vec<actions::ServiceView>,
}

async fn dashboard(State(st): State<AppState>, _: ApiAdmin) -> ApiResult<DashboardReply> {
    let services = actions::services(&st.config());
    let dashboard = st.blocking(|a| Ok(a.dashboard()?)).await?;
    Ok(Json(DashboardReply {
        dashboard,
        services,
    }))
}

async fn dns_records(
    State(st): State<AppState>,
    _: ApiAdmin,
    Path(domain): Path<String>,
) -> ApiResult<Vec<DnsRow>> {
    let domain = actions::our_domain(&st.config(), &domain)?;
    actions::dns_records(&st, domain).await.map(Json)
}

async fn dns_check(
    State(st): State<AppState>,
    _: ApiAdmin,
    Path(domain): Path<String>,
) -> ApiResult<Vec<DnsRow>> {
    let domain = actions::our_domain(&st.config(), &domain)?;
    actions::dns_check(&st, domain).await.map(Json)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DkimParams {
    force: bool,
}

async fn dkim_generate(
    State(st): State<AppState>,
    _: ApiAdmin,
    Path(domain): Path<String>,
    QueryParams(p): QueryParams<DkimParams>,
) -> ApiResult<Value> {
    let domain = actions::our_domain(&st.config(), &domain)?;
    st.blocking(move |a| {
        let k = a.dkim_generate(&domain, p.force)?;
        Ok(json!({
            "domain": domain, "key_file": k.path.display().to_string(),
            "txt_name": k.txt_name, "txt_value": k.txt_value,
        }))
    })
    .await
    .map(Json)
}

async fn tls(State(st): State<AppState>, _: ApiAdmin) -> Json<Vec<CertView>> {
    Json(actions::certificates(&st))
}
