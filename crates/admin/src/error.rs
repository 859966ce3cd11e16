//! Errors of the admin server and how they are answered: a JSON body
//! `{"error": ..., "field": ...}` with the right status for the API; the UI
//! turns the same errors into a flash message.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use postamt_directory::DirectoryError;
use postamt_ops::OpsError;
use postamt_spool::SpoolError;
use serde::Serialize;

/// An error answered to an API client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// The request field the error is about, when known.
    pub field: Option<String>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            field: None,
        }
    }

    /// 400 about one field; the message starts with the field's name.
    pub fn field(field: &str, message: impl std::fmt::Display) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: format!("{field}: {message}"),
            field: Some(field.to_owned()),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "authentication required")
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// Names `field` when the error has no field yet and is a 400.
    pub fn about(mut self, field: &str) -> ApiError {
        if self.field.is_none() && self.status == StatusCode::BAD_REQUEST {
            if !self.message.starts_with(&format!("{field}:")) {
                self.message = format!("{field}: {}", self.message);
            }
            self.field = Some(field.to_owned());
        }
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: &self.message,
            field: self.field.as_deref(),
        };
        let mut resp = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"postamt admin\", charset=\"UTF-8\""),
            );
        }
        resp
    }
}

impl From<DirectoryError> for ApiError {
    fn from(e: DirectoryError) -> ApiError {
        use DirectoryError as D;
        let msg = e.to_string();
        let (status, field) = match &e {
            D::Db(_) | D::Hash(_) => {
                tracing::error!(error = %e, "directory failure");
                return ApiError::internal("the directory is not available; see the server log");
            }
            D::InvalidUserName(_) => (StatusCode::BAD_REQUEST, Some("name")),
            D::InvalidPattern(..) => (StatusCode::BAD_REQUEST, Some("pattern")),
            D::InvalidTarget(..) => (StatusCode::BAD_REQUEST, Some("targets")),
            D::InvalidListName(..) => (StatusCode::BAD_REQUEST, Some("name")),
            D::InvalidAddress(..) => (StatusCode::BAD_REQUEST, Some("address")),
            D::InvalidText(what, _) => {
                let f = match *what {
                    w if w.contains("subject") && w.contains("prefix") => "subject_prefix",
                    w if w.contains("prefix") => "subject_prefix",
                    w if w.contains("subject") => "subject",
                    w if w.contains("body") => "body",
                    w if w.contains("size") => "max_message_size",
                    _ => "text",
                };
                (StatusCode::BAD_REQUEST, Some(f))
            }
            D::InvalidDates(_) => (StatusCode::BAD_REQUEST, Some("until")),
            D::TooMany(_) => (StatusCode::BAD_REQUEST, None),
            D::NameTaken { .. } | D::UserExists(_) | D::ListExists(_) | D::AlreadyMember { .. } => {
                (StatusCode::CONFLICT, None)
            }
            D::NoSuchUser(_)
            | D::NoSuchAlias(_)
            | D::NoSuchList(_)
            | D::NotMember { .. }
            | D::NoForward(_)
            | D::NoAutoreply(_)
            | D::NoSuchToken => (StatusCode::NOT_FOUND, None),
            D::TokenExpired => (StatusCode::GONE, None),
        };
        ApiError {
            status,
            message: match field {
                Some(f) => format!("{f}: {msg}"),
                None => msg,
            },
            field: field.map(str::to_owned),
        }
    }
}

impl From<SpoolError> for ApiError {
    fn from(e: SpoolError) -> ApiError {
        match e {
            SpoolError::NotFound(_) => ApiError::not_found(e.to_string()),
            SpoolError::Io(_) | SpoolError::Corrupt(..) => {
                tracing::error!(error = %e, "spool failure");
                ApiError::internal(e.to_string())
            }
        }
    }
}

impl From<OpsError> for ApiError {
    fn from(e: OpsError) -> ApiError {
        match e {
            OpsError::Directory(d) => d.into(),
            OpsError::Spool(s) => s.into(),
            OpsError::SenderAuth(s) => ApiError::bad_request(s.to_string()),
            e @ OpsError::Io { .. } => {
                tracing::error!(error = %e, "admin operation failed on a file");
                ApiError::internal(e.to_string())
            }
            OpsError::Invalid(m) => {
                // Messages of the form `field: why` name their field.
                let field = m
                    .split_once(':')
                    .map(|(f, _)| f)
                    .filter(|f| {
                        !f.is_empty() && f.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                    })
                    .map(str::to_owned);
                ApiError {
                    status: StatusCode::BAD_REQUEST,
                    message: m,
                    field,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_errors_map_to_status_and_field() {
        let e: ApiError = DirectoryError::InvalidUserName("a b".into()).into();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.field.as_deref(), Some("name"));
        assert!(e.message.starts_with("name: "));
        let e: ApiError = DirectoryError::NoSuchUser("x".into()).into();
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        let e: ApiError = DirectoryError::UserExists("x".into()).into();
        assert_eq!(e.status, StatusCode::CONFLICT);
        let e: ApiError = DirectoryError::InvalidText("auto-reply subject", "CR".into()).into();
        assert_eq!(e.field.as_deref(), Some("subject"));
        let e: ApiError = DirectoryError::InvalidText("subject prefix", "LF".into()).into();
        assert_eq!(e.field.as_deref(), Some("subject_prefix"));
    }

    #[test]
    fn ops_invalid_names_a_field_only_when_it_looks_like_one() {
        let e: ApiError = OpsError::Invalid("address: give one".into()).into();
        assert_eq!(e.field.as_deref(), Some("address"));
        let e: ApiError = OpsError::Invalid("the password is empty".into()).into();
        assert_eq!(e.field, None);
        assert_eq!(e.about("password").field.as_deref(), Some("password"));
    }

    #[test]
    fn unauthorized_asks_for_basic() {
        let r = ApiError::unauthorized().into_response();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(r.headers().contains_key(header::WWW_AUTHENTICATE));
    }
}
