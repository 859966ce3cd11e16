//! Who is calling: HTTP Basic (API clients) checked by the shared
//! `Authenticator` (argon2, credential cache, failure delays shared with
//! SMTP AUTH, POP3 and IMAP), or the UI's session cookie. The extractors
//! here refuse what a route does not allow: 401 without credentials, 403
//! for a non-admin on an admin route. `csrf_guard` checks every
//! state-changing request: a same-origin `Origin` when one is sent, and the
//! session's CSRF token (form field `csrf` or header `X-CSRF-Token`)
//! whenever the session cookie is what authenticates it.

use crate::error::ApiError;
use crate::session::{self, Session};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

/// The header an API client using the session cookie sends the token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The form field of the token.
pub const CSRF_FIELD: &str = "csrf";
/// Largest request body accepted (forms and JSON).
pub const BODY_LIMIT: usize = 1024 * 1024;

/// How the caller proved who they are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Via {
    /// The UI's session cookie; the id and the session's CSRF token.
    Session {
        id: String,
        csrf: String,
    },
    Basic,
}

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The account's stored name.
    pub user: String,
    pub admin: bool,
    pub via: Via,
}

impl Caller {
    /// The CSRF token to put into forms (empty for Basic callers).
    pub fn csrf(&self) -> &str {
        match &self.via {
            Via::Session { csrf, .. } => csrf,
            Via::Basic => "",
        }
    }

    pub fn session_id(&self) -> Option<&str> {
        match &self.via {
            Via::Session { id, .. } => Some(id),
            Via::Basic => None,
        }
    }
}

/// The client's address (unspecified when the router runs without a
/// connection, as in tests).
pub fn peer_ip(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// The client's address, for the login throttle.
pub struct Peer(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(peer_ip(parts)))
    }
}

/// The live session named by the request's cookie.
pub fn session_of(state: &AppState, headers: &HeaderMap) -> Option<(String, Session)> {
    let id = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(session::cookie_value)?;
    let s = state.inner.sessions.get(id, Instant::now())?;
    Some((id.to_owned(), s))
}

/// `user:password` of a Basic `Authorization` header.
pub fn basic_credentials(value: &str) -> Option<(String, String)> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

/// Works out the caller; `Ok(None)` when the request carries no
/// credentials (or an expired session), `Err(401)` for wrong ones.
pub async fn identify(
    state: &AppState,
    parts: &Parts,
    allow_basic: bool,
) -> Result<Option<Caller>, ApiError> {
    if let Some(auth) = parts.headers.get(header::AUTHORIZATION)
        && allow_basic
    {
        let Some((user, password)) = auth.to_str().ok().and_then(basic_credentials) else {
            return Err(ApiError::unauthorized());
        };
        let ip = peer_ip(parts);
        return match state.ctx().auth.login(&user, &password, ip).await {
            Ok(info) => Ok(Some(Caller {
                user: info.name,
                admin: info.admin,
                via: Via::Basic,
            })),
            Err(_) => {
                crate::metrics_route::login_failed();
                Err(ApiError::unauthorized())
            }
        };
    }
    let Some((id, s)) = session_of(state, &parts.headers) else {
        return Ok(None);
    };
    // The account is read anew on every request: a deleted user or a
    // revoked admin role takes effect at once.
    let name = s.user.clone();
    let info = state
        .blocking(move |a| Ok(a.directory.get_user(&name)?))
        .await?;
    match info {
        Some(info) => Ok(Some(Caller {
            user: info.name,
            admin: info.admin,
            via: Via::Session { id, csrf: s.csrf },
        })),
        None => {
            state.inner.sessions.remove(&id);
            Ok(None)
        }
    }
}

/// Any logged-in user of the API (Basic or session).
pub struct ApiUser(pub Caller);
/// An admin of the API.
pub struct ApiAdmin(pub Caller);
/// Any logged-in user of the UI (session only).
pub struct UiUser(pub Caller);
/// An admin of the UI.
pub struct UiAdmin(pub Caller);

impl FromRequestParts<AppState> for ApiUser {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match identify(state, parts, true).await? {
            Some(c) => Ok(ApiUser(c)),
            None => Err(ApiError::unauthorized()),
        }
    }
}

impl FromRequestParts<AppState> for ApiAdmin {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let ApiUser(c) = ApiUser::from_request_parts(parts, state).await?;
        if !c.admin {
            return Err(ApiError::forbidden("this route is for admins"));
        }
        Ok(ApiAdmin(c))
    }
}

/// Where an unauthenticated UI request is sent.
fn to_login(parts: &Parts) -> Response {
    let next = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .filter(|p| p.starts_with('/') && !p.starts_with("//"))
        .unwrap_or("/");
    let q = serde_urlencoded::to_string([("next", next)]).unwrap_or_default();
    Redirect::to(&format!("/login?{q}")).into_response()
}

impl FromRequestParts<AppState> for UiUser {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        match identify(state, parts, false).await {
            Ok(Some(c)) => Ok(UiUser(c)),
            Ok(None) => Err(to_login(parts)),
            Err(e) => Err(crate::ui::error_page(state, e)),
        }
    }
}

impl FromRequestParts<AppState> for UiAdmin {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let UiUser(c) = UiUser::from_request_parts(parts, state).await?;
        if !c.admin {
            return Err(crate::ui::error_page(
                state,
                ApiError::forbidden(
                    "This page is for admins. Your own settings are under “My account”.",
                ),
            ));
        }
        Ok(UiAdmin(c))
    }
}

fn is_safe(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Whether the `Origin` header, when present, names this very server.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let authority = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .unwrap_or("");
    authority.eq_ignore_ascii_case(host)
}

fn refuse(msg: &str) -> Response {
    (
        StatusCode::FORBIDDEN,
        axum::Json(serde_json::json!({ "error": msg })),
    )
        .into_response()
}

/// Checks the Origin and the CSRF token of every state-changing request.
pub async fn csrf_guard(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    if is_safe(req.method()) {
        return next.run(req).await;
    }
    if !same_origin(req.headers()) {
        tracing::info!(path = %req.uri().path(), "cross-origin request refused");
        return refuse("cross-origin request refused");
    }
    // Basic credentials are not a cookie: a page elsewhere cannot make the
    // browser send them along with a same-origin Origin.
    if req.headers().contains_key(header::AUTHORIZATION) && req.uri().path().starts_with("/api/") {
        return next.run(req).await;
    }
    let Some((_, session)) = session_of(&state, req.headers()) else {
        // Not logged in: the route itself answers 401 or sends to the login.
        return next.run(req).await;
    };
    if req.uri().path() == "/login" {
        return next.run(req).await;
    }
    if let Some(t) = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok()) {
        if session::same_secret(t, &session.csrf) {
            return next.run(req).await;
        }
        return refuse("CSRF token wrong: reload the page");
    }
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return refuse("CSRF token missing: send it in the X-CSRF-Token header");
    }
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, BODY_LIMIT).await {
        Ok(b) => b,
        Err(_) => {
            return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response();
        }
    };
    let token = form_urlencoded_field(&bytes, CSRF_FIELD);
    if !token.is_some_and(|t| session::same_secret(&t, &session.csrf)) {
        tracing::info!(path = %parts.uri.path(), user = %session.user, "form without a valid CSRF token refused");
        return refuse("CSRF token missing or wrong: reload the page and try again");
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// The first value of `name` in an urlencoded body.
fn form_urlencoded_field(body: &[u8], name: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).ok()?;
    pairs.into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_header_parsing() {
        let v = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("alice:pa:ss")
        );
        assert_eq!(
            basic_credentials(&v),
            Some(("alice".into(), "pa:ss".into()))
        );
        assert_eq!(basic_credentials("Bearer abc"), None);
        assert_eq!(basic_credentials("Basic !!!"), None);
    }

    #[test]
    fn origin_must_match_host() {
        let mut h = HeaderMap::new();
        assert!(same_origin(&h));
        h.insert(header::HOST, "127.0.0.1:8080".parse().unwrap());
        h.insert(header::ORIGIN, "http://127.0.0.1:8080".parse().unwrap());
        assert!(same_origin(&h));
        h.insert(header::ORIGIN, "https://evil.example".parse().unwrap());
        assert!(!same_origin(&h));
        h.insert(header::ORIGIN, "null".parse().unwrap());
        assert!(!same_origin(&h));
    }

    #[test]
    fn form_field_lookup() {
        assert_eq!(
            form_urlencoded_field(b"a=1&csrf=x%20y", "csrf"),
            Some("x y".into())
        );
        assert_eq!(form_urlencoded_field(b"a=1", "csrf"), None);
    }
}
