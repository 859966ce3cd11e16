//! API routes over the directory: users (with admin role, password reset
//! and mailbox size), their auto-reply and forward, aliases with the
//! address tester, lists with members and the moderation queue.

use super::{JsonBody, QueryParams};
use crate::actions;
use crate::authn::ApiAdmin;
use crate::error::ApiError;
use crate::state::AppState;
use crate::views::{AliasView, AutoreplyView, ForwardView, ListView, MemberView, UserView};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use postamt_directory::{ListOptions, Posting, ReplyTo};
use postamt_ops::web_ops::{AddressTest, HeldPost, MailboxSize, Moderated};
use serde::Deserialize;
use serde_json::{Value, json};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/users", get(users).post(add_user))
        .route("/users/{name}", get(user).delete(delete_user))
        .route("/users/{name}/password", put(set_password))
        .route("/users/{name}/admin", put(set_admin))
        .route("/users/{name}/mailbox", get(mailbox))
        .route(
            "/users/{name}/autoreply",
            get(get_autoreply)
                .put(put_autoreply)
                .delete(delete_autoreply),
        )
        .route(
            "/users/{name}/forward",
            get(get_forward).put(put_forward).delete(delete_forward),
        )
        .route("/aliases", get(aliases).post(add_alias))
        .route("/aliases/test", get(test_address))
        .route("/aliases/{pattern}", get(alias).delete(delete_alias))
        .route("/lists", get(lists).post(create_list))
        .route(
            "/lists/{name}",
            get(list).patch(change_list).delete(delete_list),
        )
        .route("/lists/{name}/members", get(members).post(subscribe))
        .route(
            "/lists/{name}/members/{address}",
            axum::routing::delete(unsubscribe),
        )
        .route("/lists/{name}/moderation", get(moderation))
        .route(
            "/lists/{name}/moderation/{token}/{decision}",
            post(moderate),
        )
}

type ApiResult<T> = Result<Json<T>, ApiError>;

async fn users(State(st): State<AppState>, _: ApiAdmin) -> ApiResult<Vec<UserView>> {
    st.blocking(|a| Ok(a.list_users()?.into_iter().map(UserView::from).collect()))
        .await
        .map(Json)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    name: String,
    password: String,
    #[serde(default)]
    admin: bool,
}

async fn add_user(
    State(st): State<AppState>,
    _: ApiAdmin,
    JsonBody(u): JsonBody<NewUser>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    let name = u.name.clone();
    st.blocking(move |a| {
        a.add_user(&u.name, &u.password, u.admin)
            .map_err(|e| ApiError::from(e).about("password"))?;
        a.directory
            .get_user(&name)?
            .map(UserView::from)
            .ok_or_else(|| ApiError::internal("the new user is not there"))
    })
    .await
    .map(|u| (StatusCode::CREATED, Json(u)))
}

async fn user(
    State(st): State<AppState>,
    _: ApiAdmin,
    Path(name): Path<String>,
) -> ApiResult<Value> {
    st.blocking(move |a| {
        let u = a
            .directory
            .get_user(&name)?
            .ok_or_else(|| ApiError::not_found(format!("no such user `{name}`")))?;
        let size = a.mailbox_size(&u.name).ok().flatten();
        let autoreply = a.autoreply_show(&u.name)?.map(AutoreplyView::from);
        let forward = a.forward_show(&u.name)?.map(ForwardView::from);
        Ok(json!({
            "name": u.name, "admin": u.admin, "created_at": u.created_at,
            "mailbox": size, "autoreply": autoreply, "forward": forward,
        }))
    })
    .await
    .map(Json)
}

async fn delete_user(
    State(st): State<AppState>,
    ApiAdmin(me): ApiAdmin,
    Path(name): Path<String>,
) -> ApiResult<Value> {
    if me.user.eq_ignore_ascii_case(&name) {
        return Err(ApiError::field(
            "name",
            "you cannot delete your own account",
        ));
    }
    let n = name.clone();
    st.blocking(move |a| Ok(a.delete_user(&n)?)).await?;
    st.inner.sessions.remove_user(&name);
    Ok(Json(json!({ "deleted": name })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPassword {
    password: String,
}

async fn set_password(
    State(st): State<AppState>,
    _: ApiAdmin,
    Path(name): Path<String>,
    JsonBody(p): JsonBody<NewPassword>,
) -> ApiResult<Value> {
    let n = name.clone();
    st.blocking(move |a| {
        a.set_password(&n, &p.password)
            .map_err(|e| ApiError::from(e).about("password"))
    })
    .await?;
    st.inner.sessions.remove_user(&name);
    Ok(Json(json!({ "user": name, "password": "changed" })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminRole {
    admin: bool,
}

async fn set_admin(
    State(st): State<AppState>,
    ApiAdmin(me): ApiAdmin,
    Path(name): Path<String>,
    JsonBody(r): JsonBody<AdminRole>,
) -> ApiResult<Value> {
    if !r.admin && me.user.eq_ignore_ascii_case(&name) {
        return Err(ApiError::field(
            "admin",
            "you cannot take your own admin role",
        ));
    }
    let n = name.clone();
    st.blocking(move |a| Ok(a.set_admin(&n, r.admin)?)).await?;
    Ok(Json(json!({ "user": name, "admin": r.admin })))
}

async fn mailbox(
    State(st): State<AppState>,
    _: ApiAdmin,
    Path(name): Path<String>,
) -> ApiResult<Option<MailboxSize>> {
    st.blocking(move |a| {
        if a.directory.get_user(&name)?.is_none() {
            return Err(ApiError::not_found(format!("no such user `{name}`")));
        }
        Ok(a.mailbox_size(&name)?)
    })
    .await
    .map(Json)
}

async fn get_autoreply(
    State(st): State<AppState>,
    _: ApiAdmin,
    Path(name): Path<String>,
) -> ApiResult<Option<AutoreplyView>> {
    st.blocking(move |a| {
        if a.directory.get_user(&name)?.is_none() {
            return Err(ApiError::not_found(format!("no such user `{name}`")));
        }
        Ok(a.autoreply_show(&name)?.map(AutoreplyView::from))
    })
    .await
    .map(Json)
}

/// An auto-reply as set through the API.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoreplyBody {
    pub subject: String,
    pub body: String,
    /// `YYYY-MM-DD` (UTC), first day.
    #[serde(default)]
    pub from: Option<String>,
    /// `YYYY-MM-DD` (UTC), last day (inclusive).
    #[serde(default)]
    pub until: Option<String>,
}

async fn put_autoreply(
    State(st): State<AppState>,
    _: ApiAdmin,
    Path(name): Path<String>,
    JsonBody(b): JsonBody<AutoreplyBody>,
) -> ApiResult<AutoreplyView> {
    actions::set_autoreply(
        &st,
        name,
        b.subject,
        b.body,
        b.from.as_deref().unwrap_or(""),
        b.until.as_deref().unwrap_or(""),
    )
    .await
    .map(Json)
}

async fn delete_autoreply(
    State(st): State<AppState>,
    _: ApiAdmin,
    Path(name): Path<String>,
) -> ApiResult<Value> {
    st.blocking(move |a| {
        a.autoreply_off(&name)?;
        Ok(json!({ "user": name, "autoreply": "off" }))
    })
    .await
    .map(Json)
}

async fn get_forward(
    State(st): State<AppState>,
    _: ApiAdmin,
    Path(name): Path<String>,
) -> ApiResult<Option<ForwardView>> {
    st.blocking(move |a| {
        if a.directory.get_user(&name)?.is_none() {
            return Err(ApiError::not_found(format!("no such user `{name}`")));
        }
        Ok(a.forward_show(&name)?.map(ForwardView::from))
    })
    .await
    .map(Json)
}

/// A forward as set through the API.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardBody {
    pub addresses: Vec<String>,
    #[serde(default)]
    pub keep_copy: bool,
}

async fn put_forward(
    State(st): State<AppState>,
    _: ApiAdmin,
    Path(name): Path<String>,
    JsonBody(b): JsonBody<ForwardBody>,
) -> ApiResult<ForwardView> {
    actions::set_forward(&st, name, b.addresses, b.keep_copy)
        .await
        .map(Json)
}

async fn delete_forward(
    State(st): State<AppState>,
    _: ApiAdmin,
    Path(name): Path<String>,
) -> ApiResult<Value> {
    st.blocking(move |a| {
        a.forward_off(&name)?;
        Ok(json!({ "user": name, "forward": "off" }))
    })
    .await
    .map(Json)
}

async fn aliases(State(st): State<AppState>, _: ApiAdmin) -> ApiResult<Vec<AliasView>> {
    st.blocking(|a| Ok(a.list_aliases()?.into_iter().map(AliasView::from).collect()))
        .await
        .map(Json)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAlias {
    pattern: String,
    targets: Vec<String>,
}

async fn add_alias(
    State(st): State<AppState>,
    _: ApiAdmin,
    JsonBody(n): JsonBody<NewAlias>,
) -> Result<(StatusCode, Json<AliasView>), ApiError> {
    st.blocking(move |a| {
        a.add_alias(&n.pattern, &n.targets)
            .map_err(|e| ApiError::from(e).about("targets"))?;
        Ok(AliasView {
            pattern: n.pattern,
            targets: n.targets,
        })
    })
    .await
    .map(|v| (StatusCode::CREATED, Json(v)))
}

async fn alias(
    State(st): State<AppState>,
    _: ApiAdmin,
    Path(pattern): Path<String>,
) -> ApiResult<AliasView> {
    st.blocking(move |a| {
        a.directory
            .get_alias(&pattern)?
            .map(AliasView::from)
            .ok_or_else(|| ApiError::not_found(format!("no such alias `{pattern}`")))
    })
    .await
    .map(Json)
}

async fn delete_alias(
    State(st): State<AppState>,
    _: ApiAdmin,
    Path(pattern): Path<String>,
) -> ApiResult<Value> {
    st.blocking(move |a| {
        a.delete_alias(&pattern)?;
        Ok(json!({ "deleted": pattern }))
    })
    .await
    .map(Json)
}

#[derive(Deserialize)]
pub struct TestQuery {
    #[serde(default)]
    address: String,
}

async fn test_address(
    State(st): State<AppState>,
    _: ApiAdmin,
    QueryParams(q): QueryParams<TestQuery>,
) -> ApiResult<AddressTest> {
    st.blocking(move |a| Ok(a.test_address(&q.address)?))
        .await
        .map(Json)
}

async fn lists(State(st): State<AppState>, _: ApiAdmin) -> ApiResult<Vec<ListView>> {
    st.blocking(|a| Ok(a.lists()?.into_iter().map(ListView::from).collect()))
        .await
        .map(Json)
}

/// List options as JSON; every field optional.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ListOptionsBody {
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub posting: Option<String>,
    #[serde(default)]
    pub reply_to: Option<String>,
    #[serde(default)]
    pub subject_prefix: Option<String>,
    #[serde(default)]
    pub max_message_size: Option<u64>,
}

impl ListOptionsBody {
    /// The directory's options, with each bad value named.
    pub fn to_options(&self) -> Result<ListOptions, ApiError> {
        let posting = match &self.posting {
            Some(p) => Some(
                p.parse::<Posting>()
                    .map_err(|e| ApiError::field("posting", e))?,
            ),
            None => None,
        };
        let reply_to = match &self.reply_to {
            Some(r) => Some(
                r.parse::<ReplyTo>()
                    .map_err(|e| ApiError::field("reply_to", e))?,
            ),
            None => None,
        };
        if let Some(p) = &self.subject_prefix
            && p.contains(['\r', '\n'])
        {
            return Err(ApiError::field(
                "subject_prefix",
                "line breaks are not allowed in a subject prefix",
            ));
        }
        Ok(ListOptions {
            owner: self.owner.clone().filter(|o| !o.trim().is_empty()),
            posting,
            reply_to,
            subject_prefix: self.subject_prefix.clone(),
            max_message_size: self.max_message_size,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewList {
    name: String,
    #[serde(default)]
    owner: Option<String>,
    #[serde(default)]
    posting: Option<String>,
    #[serde(default)]
    reply_to: Option<String>,
    #[serde(default)]
    subject_prefix: Option<String>,
    #[serde(default)]
    max_message_size: Option<u64>,
}

async fn create_list(
    State(st): State<AppState>,
    _: ApiAdmin,
    JsonBody(n): JsonBody<NewList>,
) -> Result<(StatusCode, Json<ListView>), ApiError> {
    let options = ListOptionsBody {
        owner: n.owner,
        posting: n.posting,
        reply_to: n.reply_to,
        subject_prefix: n.subject_prefix,
        max_message_size: n.max_message_size,
    }
    .to_options()?;
    let name = n.name;
    st.blocking(move |a| {
        a.list_create(&name, &options)
            .map(ListView::from)
            .map_err(owner_error)
    })
    .await
    .map(|v| (StatusCode::CREATED, Json(v)))
}

async fn list(
    State(st): State<AppState>,
    _: ApiAdmin,
    Path(name): Path<String>,
) -> ApiResult<ListView> {
    st.blocking(move |a| Ok(ListView::from(a.list_show(&name)?)))
        .await
        .map(Json)
}

async fn change_list(
    State(st): State<AppState>,
    _: ApiAdmin,
    Path(name): Path<String>,
    JsonBody(b): JsonBody<ListOptionsBody>,
) -> ApiResult<ListView> {
    let options = b.to_options()?;
    st.blocking(move |a| {
        a.list_set_options(&name, &options)
            .map(ListView::from)
            .map_err(owner_error)
    })
    .await
    .map(Json)
}

/// A refused owner (a local address that is nobody) names the field.
fn owner_error(e: postamt_ops::OpsError) -> ApiError {
    let e = ApiError::from(e);
    if e.field.is_none() && e.message.starts_with("the owner ") {
        e.about("owner")
    } else {
        e
    }
}

async fn delete_list(
    State(st): State<AppState>,
    _: ApiAdmin,
    Path(name): Path<String>,
) -> ApiResult<Value> {
    st.blocking(move |a| {
        let d = a.list_delete(&name)?;
        Ok(json!({
            "deleted": d.name, "members": d.members,
            "held_posts_discarded": d.held_posts_discarded,
            "confirmations_dropped": d.confirmations_dropped,
        }))
    })
    .await
    .map(Json)
}

async fn members(
    State(st): State<AppState>,
    _: ApiAdmin,
    Path(name): Path<String>,
) -> ApiResult<Vec<MemberView>> {
    st.blocking(move |a| {
        Ok(a.list_members(&name)?
            .into_iter()
            .map(MemberView::from)
            .collect())
    })
    .await
    .map(Json)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewMember {
    address: String,
}

async fn subscribe(
    State(st): State<AppState>,
    _: ApiAdmin,
    Path(name): Path<String>,
    JsonBody(m): JsonBody<NewMember>,
) -> Result<(StatusCode, Json<MemberView>), ApiError> {
    st.blocking(move |a| {
        a.list_subscribe(&name, &m.address)
            .map(MemberView::from)
            .map_err(|e| ApiError::from(e).about("address"))
    })
    .await
    .map(|v| (StatusCode::CREATED, Json(v)))
}

async fn unsubscribe(
    State(st): State<AppState>,
    _: ApiAdmin,
    Path((name, address)): Path<(String, String)>,
) -> ApiResult<Value> {
    st.blocking(move |a| {
        let removed = a.list_unsubscribe(&name, &address)?;
        Ok(json!({ "list": name, "removed": removed }))
    })
    .await
    .map(Json)
}

async fn moderation(
    State(st): State<AppState>,
    _: ApiAdmin,
    Path(name): Path<String>,
) -> ApiResult<Vec<HeldPost>> {
    st.blocking(move |a| Ok(a.moderation_queue(&name)?))
        .await
        .map(Json)
}

async fn moderate(
    State(st): State<AppState>,
    _: ApiAdmin,
    Path((name, token, decision)): Path<(String, String, String)>,
) -> ApiResult<Moderated> {
    let approve = match decision.as_str() {
        "approve" => true,
        "reject" => false,
        _ => return Err(ApiError::not_found("use .../approve or .../reject")),
    };
    st.blocking(move |a| Ok(a.moderate(&name, &token, approve)?))
        .await
        .map(Json)
}
