//! The JSON API under `/api/v1/`: everything the CLI does (users, aliases,
//! lists and members, auto-replies, forwards, queue, DKIM and DNS records)
//! plus settings, logs, message trace, dashboard, DNS check and TLS; and
//! the self-service routes under `/api/v1/me`. Admin routes take
//! [`ApiAdmin`](crate::authn::ApiAdmin) (401 without credentials, 403 for
//! a non-admin); `me` routes take any logged-in user. Documented in
//! `docs/api.md`.

mod directory;
mod me;
mod system;

pub use directory::{AutoreplyBody, ForwardBody, ListOptionsBody};
pub use system::LogParams;

use crate::error::ApiError;
use crate::state::AppState;
use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(directory::routes())
        .merge(system::routes())
        .merge(me::routes())
        .fallback(|| async { ApiError::not_found("no such API route") })
}

/// A JSON body whose errors are answered as 400 naming the field.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(JsonBody(v)),
            Err(rej) => Err(json_error(&rej.body_text(), rej.status())),
        }
    }
}

/// A query string whose errors are answered as 400 naming the parameter
/// (axum's own `Query` answers plain text).
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(QueryParams(v)),
            Err(rej) => Err(json_error(&rej.body_text(), rej.status())),
        }
    }
}

/// Turns axum's JSON or query string rejection text into an error naming
/// the field.
fn json_error(text: &str, status: axum::http::StatusCode) -> ApiError {
    let detail = text
        .split_once("target type: ")
        .or_else(|| text.split_once("Failed to deserialize query string: "))
        .map(|(_, d)| d)
        .unwrap_or(text);
    let field = if let Some(rest) = detail.split_once("missing field `") {
        rest.1.split('`').next().map(str::to_owned)
    } else if let Some(rest) = detail.split_once("unknown field `") {
        rest.1.split('`').next().map(str::to_owned)
    } else {
        detail
            .split_once(": ")
            .map(|(f, _)| f)
            .filter(|f| {
                !f.is_empty()
                    && f.bytes().all(|b| {
                        b.is_ascii_alphanumeric()
                            || b == b'_'
                            || b == b'.'
                            || b == b'['
                            || b == b']'
                    })
            })
            .map(str::to_owned)
    };
    let mut e = ApiError::new(
        match status {
            axum::http::StatusCode::PAYLOAD_TOO_LARGE
            | axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE => status,
            _ => axum::http::StatusCode::BAD_REQUEST,
        },
        detail.to_owned(),
    );
    if let Some(f) = field {
        if !e.message.starts_with(&format!("{f}:")) {
            e.message = format!("{f}: {}", e.message);
        }
        e.field = Some(f);
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[test]
    fn json_errors_name_fields() {
        let e = json_error(
            "Failed to deserialize the JSON body into the target type: missing field `password` at line 1 column 15",
            StatusCode::UNPROCESSABLE_ENTITY,
        );
        assert_eq!(e.field.as_deref(), Some("password"));
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        let e = json_error(
            "Failed to deserialize the JSON body into the target type: admin: invalid type: string \"x\", expected a boolean at line 1 column 12",
            StatusCode::UNPROCESSABLE_ENTITY,
        );
        assert_eq!(e.field.as_deref(), Some("admin"));
        let e = json_error(
            "Failed to parse the request body as JSON: EOF",
            StatusCode::BAD_REQUEST,
        );
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        let e = json_error(
            "Failed to deserialize query string: force: provided string was not `true` or `false`",
            StatusCode::BAD_REQUEST,
        );
        assert_eq!(e.field.as_deref(), Some("force"));
        assert!(e.message.starts_with("force: "), "{}", e.message);
        let e = json_error(
            "Failed to deserialize query string: unknown field `forc`, expected `force`",
            StatusCode::BAD_REQUEST,
        );
        assert_eq!(e.field.as_deref(), Some("forc"));
    }
}
