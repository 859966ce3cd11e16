//! Self-service for every mail user: change the password (the old one is
//! required and checked like any login), set or clear the auto-reply and
//! the forward, see one's lists and leave one. Only the caller's own
//! account is ever touched.

use super::admin_pages::{AutoreplyForm, ForwardForm, autoreply_from_form, forward_from_form};
use super::{done, error_page_for, render};
use crate::actions;
use crate::authn::{Peer, UiUser};
use crate::error::ApiError;
use crate::state::AppState;
use crate::views::{AutoreplyView, ForwardView};
use axum::Router;
use axum::extract::{Form, Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/me", get(me))
        .route("/me/password", post(password))
        .route("/me/autoreply", post(autoreply))
        .route("/me/autoreply/off", post(autoreply_off))
        .route("/me/forward", post(forward))
        .route("/me/forward/off", post(forward_off))
        .route("/me/lists/{name}/leave", post(leave))
}

async fn me(State(st): State<AppState>, UiUser(c): UiUser) -> Response {
    let user = c.user.clone();
    let r = st
        .blocking(move |a| {
            let autoreply = a.autoreply_show(&user)?.map(AutoreplyView::from);
            let forward = a.forward_show(&user)?.map(ForwardView::from);
            let lists = a.user_lists(&user)?;
            Ok((autoreply, forward, lists))
        })
        .await;
    match r {
        Ok((autoreply, forward, lists)) => {
            let state = autoreply.as_ref().map(|a| a.state.clone());
            render(
                &st,
                Some(&c),
                "me.html",
                "My account",
                "me",
                json!({
                    "autoreply": autoreply, "autoreply_state": state, "forward": forward,
                    "lists": lists, "domain": st.config().primary_domain(),
                }),
            )
        }
        Err(e) => error_page_for(&st, &c, e),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PasswordForm {
    old: String,
    new: String,
    again: String,
}

async fn password(
    State(st): State<AppState>,
    UiUser(c): UiUser,
    Peer(ip): Peer,
    Form(f): Form<PasswordForm>,
) -> Response {
    let r = if f.new != f.again {
        Err(ApiError::field("again", "the two new passwords differ"))
    } else {
        actions::change_own_password(&st, &c.user, &f.old, &f.new, ip)
            .await
            .map(|_| "Password changed.".to_owned())
    };
    done(&st, &c, "/me", r)
}

async fn autoreply(
    State(st): State<AppState>,
    UiUser(c): UiUser,
    Form(f): Form<AutoreplyForm>,
) -> Response {
    let r = autoreply_from_form(&st, c.user.clone(), f).await;
    done(&st, &c, "/me", r)
}

async fn autoreply_off(State(st): State<AppState>, UiUser(c): UiUser) -> Response {
    let user = c.user.clone();
    let r = st
        .blocking(move |a| Ok(a.autoreply_off(&user)?))
        .await
        .map(|_| "Auto-reply switched off.".to_owned());
    done(&st, &c, "/me", r)
}

async fn forward(
    State(st): State<AppState>,
    UiUser(c): UiUser,
    Form(f): Form<ForwardForm>,
) -> Response {
    let r = forward_from_form(&st, c.user.clone(), f).await;
    done(&st, &c, "/me", r)
}

async fn forward_off(State(st): State<AppState>, UiUser(c): UiUser) -> Response {
    let user = c.user.clone();
    let r = st
        .blocking(move |a| Ok(a.forward_off(&user)?))
        .await
        .map(|_| "Forward removed; mail goes to your mailbox.".to_owned());
    done(&st, &c, "/me", r)
}

async fn leave(
    State(st): State<AppState>,
    UiUser(c): UiUser,
    Path(name): Path<String>,
) -> Response {
    let user = c.user.clone();
    let r = st
        .blocking(move |a| Ok(a.leave_list(&user, &name)?))
        .await
        .map(|addr| format!("{addr} left the list."));
    done(&st, &c, "/me", r)
}
