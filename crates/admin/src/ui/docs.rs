//! The admin guide at `/docs/`: the pages of `docs/*.md` as rendered by
//! `postamt-docs` (embedded in the binary), with their stylesheet. Open to
//! anyone who reaches the admin listener: it holds nothing secret.

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/docs", get(|| async { Redirect::permanent("/docs/") }))
        .route("/docs/", get(|| async { file("") }))
        .route(
            "/docs/{*page}",
            get(|Path(page): Path<String>| async move { file(&page) }),
        )
}

fn file(name: &str) -> Response {
    match postamt_docs::file(name) {
        Some((content_type, body)) => {
            ([(header::CONTENT_TYPE, content_type)], body).into_response()
        }
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "no such page in the admin guide\n",
        )
            .into_response(),
    }
}
