//! Admin pages over the running system: Logging (the log viewer beside
//! the log switches), Queue (list, one message, flush, hold, release,
//! delete, bounce), Message trace, DNS (records and live check, DKIM key
//! generation) and TLS.

use super::{done, error_page_for, render, seg};
use crate::actions;
use crate::api::LogParams;
use crate::authn::UiAdmin;
use crate::error::ApiError;
use crate::state::AppState;
use crate::views::QueueView;
use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/logging", get(logging))
        .route("/queue", get(queue))
        .route("/queue/flush", post(flush))
        .route("/queue/{id}", get(queue_show))
        .route("/queue/{id}/{action}", post(queue_action))
        .route("/trace", get(trace))
        .route("/dns", get(dns))
        .route("/dns/dkim", post(dkim))
        .route("/tls", get(tls))
}

/// Events the viewer shows when no filter is given.
const RECENT_EVENTS: usize = 200;

async fn logging(
    State(st): State<AppState>,
    UiAdmin(c): UiAdmin,
    Query(mut p): Query<LogParams>,
) -> Response {
    let settings = actions::read_settings(&st).await.ok();
    if p.limit.is_none() {
        p.limit = Some(RECENT_EVENTS);
    }
    let (events, error) = match p.to_query() {
        Ok(q) => match actions::search_logs(&st, q).await {
            Ok(ev) => (Some(ev), None),
            Err(e) => (None, Some(e.message)),
        },
        Err(e) => (None, Some(e.message)),
    };
    render(
        &st,
        Some(&c),
        "logging.html",
        "Logging",
        "logging",
        json!({
            "s": settings, "q": p, "events": events, "error": error,
            "log_dir": st.config().log_dir().display().to_string(),
        }),
    )
}

async fn queue(State(st): State<AppState>, UiAdmin(c): UiAdmin) -> Response {
    match st
        .blocking(|a| {
            Ok(a.queue()
                .list()?
                .into_iter()
                .map(QueueView::from)
                .collect::<Vec<_>>())
        })
        .await
    {
        Ok(entries) => render(
            &st,
            Some(&c),
            "queue.html",
            "Queue",
            "queue",
            json!({ "entries": entries }),
        ),
        Err(e) => error_page_for(&st, &c, e),
    }
}

async fn flush(State(st): State<AppState>, UiAdmin(c): UiAdmin) -> Response {
    let r = st.blocking(|a| Ok(a.queue().flush()?)).await.map(|r| {
        format!(
            "{} message{} due now; {}.",
            r.count,
            if r.count == 1 { " is" } else { "s are" },
            if r.server_notified {
                "the delivery agent was told"
            } else {
                "no running server answered the control socket"
            }
        )
    });
    done(&st, &c, "/queue", r)
}

async fn queue_show(
    State(st): State<AppState>,
    UiAdmin(c): UiAdmin,
    Path(id): Path<String>,
) -> Response {
    match st.blocking(move |a| Ok(a.queue().show(&id)?)).await {
        Ok((env, headers)) => {
            let title = "Queued message".to_string();
            render(
                &st,
                Some(&c),
                "queue_show.html",
                &title,
                "queue",
                json!({ "e": env, "headers": headers }),
            )
        }
        Err(e) => error_page_for(&st, &c, e),
    }
}

async fn queue_action(
    State(st): State<AppState>,
    UiAdmin(c): UiAdmin,
    Path((id, action)): Path<(String, String)>,
) -> Response {
    let back = format!("/queue/{}", seg(&id));
    let i = id.clone();
    let act = action.clone();
    let r = st
        .blocking(move |a| {
            let q = a.queue();
            Ok(match act.as_str() {
                "hold" => q.hold(&i).map(|_| "Message held.".to_owned())?,
                "release" => q
                    .release(&i)
                    .map(|_| "Message released; it is due now.".to_owned())?,
                "delete" => q.delete(&i).map(|_| "Message deleted.".to_owned())?,
                "bounce" => a.queue_bounce(&i).map(|n| {
                    format!(
                        "Message returned to its sender ({n} recipient{}).",
                        if n == 1 { "" } else { "s" }
                    )
                })?,
                _ => return Err(ApiError::not_found("unknown queue action")),
            })
        })
        .await;
    let to = if r.is_ok() && matches!(action.as_str(), "delete" | "bounce") {
        "/queue".to_owned()
    } else {
        back
    };
    done(&st, &c, &to, r)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TraceQuery {
    by: String,
    key: String,
}

async fn trace(
    State(st): State<AppState>,
    UiAdmin(c): UiAdmin,
    Query(q): Query<TraceQuery>,
) -> Response {
    let by = if q.by.is_empty() {
        "queue_id".to_owned()
    } else {
        q.by.clone()
    };
    let (traces, error) = if q.key.trim().is_empty() {
        (None, None)
    } else {
        match actions::trace_key(&by, &q.key) {
            Ok(k) => match actions::trace(&st, k).await {
                Ok(t) => (Some(t), None),
                Err(e) => (None, Some(e.message)),
            },
            Err(e) => (None, Some(e.message)),
        }
    };
    render(
        &st,
        Some(&c),
        "trace.html",
        "Message trace",
        "trace",
        json!({ "by": by, "key": q.key, "traces": traces, "error": error }),
    )
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct DnsQuery {
    domain: String,
    check: String,
}

async fn dns(
    State(st): State<AppState>,
    UiAdmin(c): UiAdmin,
    Query(q): Query<DnsQuery>,
) -> Response {
    let config = st.config();
    let domain = match actions::our_domain(&config, &q.domain) {
        Ok(d) => d,
        Err(e) => return error_page_for(&st, &c, e),
    };
    let checked = !q.check.is_empty();
    let mut domains = config.domains.clone();
    if domains.is_empty() {
        domains.push(config.primary_domain());
    }
    let result = if checked {
        actions::dns_check(&st, domain.clone()).await
    } else {
        actions::dns_records(&st, domain.clone()).await
    };
    let (records, error) = match result {
        Ok(r) => (r, None),
        Err(e) => (Vec::new(), Some(e.message)),
    };
    render(
        &st,
        Some(&c),
        "dns.html",
        "DNS",
        "dns",
        json!({
            "domain": domain, "domains": domains, "records": records, "error": error,
            "checked": checked, "checks": if checked { Some(true) } else { None },
        }),
    )
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct DkimForm {
    domain: String,
}

async fn dkim(
    State(st): State<AppState>,
    UiAdmin(c): UiAdmin,
    Form(f): Form<DkimForm>,
) -> Response {
    let domain = match actions::our_domain(&st.config(), &f.domain) {
        Ok(d) => d,
        Err(e) => return done(&st, &c, "/dns", Err(e)),
    };
    let back = format!("/dns?domain={}", seg(&domain));
    let r = st
        .blocking(move |a| Ok(a.dkim_generate(&domain, false)?))
        .await
        .map(|k| {
            format!(
                "DKIM key written to {}; publish the TXT record {}.",
                k.path.display(),
                k.txt_name
            )
        });
    done(&st, &c, &back, r)
}

async fn tls(State(st): State<AppState>, UiAdmin(c): UiAdmin) -> Response {
    let certs = actions::certificates(&st);
    render(
        &st,
        Some(&c),
        "tls.html",
        "TLS certificates",
        "tls",
        json!({ "certs": certs, "https": st.inner.secure }),
    )
}
