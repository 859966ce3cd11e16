//! Self-service API for any logged-in user, on their own account only:
//! who am I, change password (old one required), auto-reply, forward,
//! their lists and leaving one.

use super::JsonBody;
use super::directory::{AutoreplyBody, ForwardBody};
use crate::actions;
use crate::authn::{ApiUser, Peer};
use crate::error::ApiError;
use crate::state::AppState;
use crate::views::{AutoreplyView, ForwardView};
use axum::extract::{Path, State};
use axum::routing::{delete, get, put};
use axum::{Json, Router};
use postamt_ops::web_ops::Membership;
use serde::Deserialize;
use serde_json::{Value, json};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/me", get(me))
        .route("/me/password", put(password))
        .route(
            "/me/autoreply",
            get(get_autoreply)
                .put(put_autoreply)
                .delete(delete_autoreply),
        )
        .route(
            "/me/forward",
            get(get_forward).put(put_forward).delete(delete_forward),
        )
        .route("/me/lists", get(lists))
        .route("/me/lists/{name}", delete(leave))
}

type ApiResult<T> = Result<Json<T>, ApiError>;

async fn me(State(st): State<AppState>, ApiUser(c): ApiUser) -> ApiResult<Value> {
    let domain = st.config().primary_domain();
    Ok(Json(json!({
        "user": c.user, "admin": c.admin,
        "address": format!("{}@{domain}", c.user),
        "csrf_token": c.csrf(),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordChange {
    old: String,
    new: String,
}

async fn password(
    State(st): State<AppState>,
    ApiUser(c): ApiUser,
    Peer(ip): Peer,
    JsonBody(p): JsonBody<PasswordChange>,
) -> ApiResult<Value> {
    actions::change_own_password(&st, &c.user, &p.old, &p.new, ip).await?;
    Ok(Json(json!({ "user": c.user, "password": "changed" })))
}

async fn get_autoreply(
    State(st): State<AppState>,
    ApiUser(c): ApiUser,
) -> ApiResult<Option<AutoreplyView>> {
    st.blocking(move |a| Ok(a.autoreply_show(&c.user)?.map(AutoreplyView::from)))
        .await
        .map(Json)
}

async fn put_autoreply(
    State(st): State<AppState>,
    ApiUser(c): ApiUser,
    JsonBody(b): JsonBody<AutoreplyBody>,
) -> ApiResult<AutoreplyView> {
    actions::set_autoreply(
        &st,
        c.user,
        b.subject,
        b.body,
        b.from.as_deref().unwrap_or(""),
        b.until.as_deref().unwrap_or(""),
    )
    .await
    .map(Json)
}

async fn delete_autoreply(State(st): State<AppState>, ApiUser(c): ApiUser) -> ApiResult<Value> {
    st.blocking(move |a| {
        a.autoreply_off(&c.user)?;
        Ok(json!({ "user": c.user, "autoreply": "off" }))
    })
    .await
    .map(Json)
}

async fn get_forward(
    State(st): State<AppState>,
    ApiUser(c): ApiUser,
) -> ApiResult<Option<ForwardView>> {
    st.blocking(move |a| Ok(a.forward_show(&c.user)?.map(ForwardView::from)))
        .await
        .map(Json)
}

async fn put_forward(
    State(st): State<AppState>,
    ApiUser(c): ApiUser,
    JsonBody(b): JsonBody<ForwardBody>,
) -> ApiResult<ForwardView> {
    actions::set_forward(&st, c.user, b.addresses, b.keep_copy)
        .await
        .map(Json)
}

async fn delete_forward(State(st): State<AppState>, ApiUser(c): ApiUser) -> ApiResult<Value> {
    st.blocking(move |a| {
        a.forward_off(&c.user)?;
        Ok(json!({ "user": c.user, "forward": "off" }))
    })
    .await
    .map(Json)
}

async fn lists(State(st): State<AppState>, ApiUser(c): ApiUser) -> ApiResult<Vec<Membership>> {
    st.blocking(move |a| Ok(a.user_lists(&c.user)?))
        .await
        .map(Json)
}

async fn leave(
    State(st): State<AppState>,
    ApiUser(c): ApiUser,
    Path(name): Path<String>,
) -> ApiResult<Value> {
    st.blocking(move |a| {
        let address = a.leave_list(&c.user, &name)?;
        Ok(json!({ "list": name, "removed": address }))
    })
    .await
    .map(Json)
}
