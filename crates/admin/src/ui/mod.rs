//! The server-rendered UI: login and logout, the admin pages and the
//! self-service page. Every page goes through [`render`] (the common
//! context: who is logged in, the CSRF token, the flash message); every
//! form answers with a redirect and a flash message ([`done`]).

mod admin_pages;
mod docs;
mod me;
mod settings_pages;
mod system_pages;

use crate::authn::{Caller, Peer, session_of};
use crate::error::ApiError;
use crate::session;
use crate::state::AppState;
use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::Instant;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .merge(admin_pages::routes())
        .merge(settings_pages::routes())
        .merge(system_pages::routes())
        .merge(me::routes())
        .merge(docs::routes())
}

/// Renders `template` for `caller` with the page's own values in `extra`
/// (a JSON object) merged over the common ones.
pub fn render(
    st: &AppState,
    caller: Option<&Caller>,
    template: &str,
    title: &str,
    page: &str,
    extra: Value,
) -> Response {
    render_status(st, caller, StatusCode::OK, template, title, page, extra)
}

pub fn render_status(
    st: &AppState,
    caller: Option<&Caller>,
    status: StatusCode,
    template: &str,
    title: &str,
    page: &str,
    extra: Value,
) -> Response {
    let flash = caller
        .and_then(Caller::session_id)
        .and_then(|id| st.inner.sessions.take_flash(id))
        .map(|f| json!({ "kind": f.kind, "text": f.text }));
    let mut ctx = json!({
        "title": title,
        "page": page,
        "hostname": st.config().hostname,
        "me": caller.map(|c| json!({ "user": c.user, "admin": c.admin })),
        "csrf": caller.map(Caller::csrf).unwrap_or(""),
        "flash": flash,
    });
    if let (Value::Object(base), Value::Object(more)) = (&mut ctx, extra) {
        base.extend(more);
    }
    match st.inner.templates.render(template, &ctx) {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot render the page: {e}\n"),
        )
            .into_response(),
    }
}

/// A page telling what went wrong (403 for a non-admin, 404, 500...).
pub fn error_page(st: &AppState, e: ApiError) -> Response {
    let title = match e.status {
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::NOT_FOUND => "Not found",
        s if s.is_server_error() => "Server error",
        _ => "Cannot do that",
    };
    render_status(
        st,
        None,
        e.status,
        "error.html",
        title,
        "",
        json!({ "message": e.message }),
    )
}

/// Like [`error_page`], keeping the navigation for a logged-in caller.
pub fn error_page_for(st: &AppState, caller: &Caller, e: ApiError) -> Response {
    render_status(
        st,
        Some(caller),
        e.status,
        "error.html",
        "Cannot show this page",
        "",
        json!({ "message": e.message }),
    )
}

/// Ends a form: the result as a flash message, then back to `to`.
pub fn done(
    st: &AppState,
    caller: &Caller,
    to: &str,
    result: Result<String, ApiError>,
) -> Response {
    if let Some(id) = caller.session_id() {
        match result {
            Ok(m) => st.inner.sessions.set_flash(id, "ok", m),
            Err(e) => st.inner.sessions.set_flash(id, "error", e.message),
        }
    }
    Redirect::to(to).into_response()
}

/// A path segment escaped for a URL.
pub fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'@' | b'*') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A checkbox field: present (any value) = on.
pub fn checked(v: &Option<String>) -> bool {
    v.as_deref().is_some_and(|s| !s.is_empty() && s != "off")
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LoginQuery {
    next: String,
}

/// Only local paths are followed after login.
fn safe_next(next: &str) -> Option<&str> {
    (next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.starts_with("/login"))
    .then_some(next)
}

async fn login_page(
    State(st): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Response {
    if session_of(&st, &headers).is_some() {
        return Redirect::to(safe_next(&q.next).unwrap_or("/")).into_response();
    }
    render(
        &st,
        None,
        "login.html",
        "Log in",
        "login",
        json!({ "next": q.next, "user": "" }),
    )
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LoginForm {
    user: String,
    password: String,
    next: String,
}

async fn login(State(st): State<AppState>, Peer(ip): Peer, Form(f): Form<LoginForm>) -> Response {
    let user = f.user.trim();
    match st.ctx().auth.login(user, &f.password, ip).await {
        Ok(info) => {
            let id = st.inner.sessions.create(&info.name, Instant::now());
            tracing::info!(user = %info.name, peer = %ip, "admin web login");
            let to = safe_next(&f.next)
                .map(str::to_owned)
                .unwrap_or_else(|| if info.admin { "/".into() } else { "/me".into() });
            let mut resp = Redirect::to(&to).into_response();
            if let Ok(v) = HeaderValue::from_str(&session::set_cookie(&id, st.inner.secure)) {
                resp.headers_mut().insert(header::SET_COOKIE, v);
            }
            resp
        }
        Err(_) => {
            crate::metrics_route::login_failed();
            render_status(
                &st,
                None,
                StatusCode::UNAUTHORIZED,
                "login.html",
                "Log in",
                "login",
                json!({
                    "next": f.next,
                    "user": user,
                    "flash": { "kind": "error", "text": "Wrong user name or password." },
                }),
            )
        }
    }
}

async fn logout(State(st): State<AppState>, headers: HeaderMap) -> Response {
    if let Some((id, s)) = session_of(&st, &headers) {
        st.inner.sessions.remove(&id);
        tracing::info!(user = %s.user, "admin web logout");
    }
    let mut resp = Redirect::to("/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&session::clear_cookie(st.inner.secure)) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_must_stay_local() {
        assert_eq!(safe_next("/users?q=a"), Some("/users?q=a"));
        assert_eq!(safe_next("//evil.example/"), None);
        assert_eq!(safe_next("https://evil.example/"), None);
        assert_eq!(safe_next("/\\evil"), None);
        assert_eq!(safe_next(""), None);
    }

    #[test]
    fn segments_are_escaped() {
        assert_eq!(seg("a b/c"), "a%20b%2Fc");
        assert_eq!(seg("*@example.org"), "*@example.org");
    }
}
