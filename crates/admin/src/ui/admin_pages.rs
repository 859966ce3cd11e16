//! Admin pages over the directory: Dashboard, Users (and one user's page),
//! Aliases with the address tester, Lists (and one list's page with its
//! members and moderation queue).

use super::{checked, done, error_page_for, render, seg};
use crate::actions;
use crate::authn::{UiAdmin, UiUser};
use crate::error::ApiError;
use crate::state::AppState;
use crate::views::{
    AliasView, AutoreplyView, ForwardView, ListView, MemberView, UserView, split_list,
};
use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/users", get(users).post(add_user))
        .route("/users/{name}", get(user))
        .route("/users/{name}/password", post(user_password))
        .route("/users/{name}/admin", post(user_admin))
        .route("/users/{name}/delete", post(user_delete))
        .route("/users/{name}/autoreply", post(user_autoreply))
        .route("/users/{name}/autoreply/off", post(user_autoreply_off))
        .route("/users/{name}/forward", post(user_forward))
        .route("/users/{name}/forward/off", post(user_forward_off))
        .route("/aliases", get(aliases).post(add_alias))
        .route("/aliases/delete", post(delete_alias))
        .route("/lists", get(lists).post(create_list))
        .route("/lists/{name}", get(list))
        .route("/lists/{name}/options", post(list_options))
        .route("/lists/{name}/delete", post(list_delete))
        .route("/lists/{name}/members", post(list_subscribe))
        .route("/lists/{name}/members/remove", post(list_unsubscribe))
        .route(
            "/lists/{name}/moderation/{token}/{decision}",
            post(list_moderate),
        )
}

/// Users shown per page of the Users list.
const USERS_PER_PAGE: usize = 100;

async fn home(State(st): State<AppState>, UiUser(c): UiUser) -> Response {
    if !c.admin {
        return Redirect::to("/me").into_response();
    }
    let services = actions::services(&st.config());
    let (d, error) = match st.blocking(|a| Ok(a.dashboard()?)).await {
        Ok(d) => (Some(d), None),
        Err(e) => (None, Some(e.message)),
    };
    render(
        &st,
        Some(&c),
        "dashboard.html",
        "Dashboard",
        "dashboard",
        json!({ "d": d, "error": error, "services": services }),
    )
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct UsersQuery {
    q: String,
    p: usize,
}

async fn users(
    State(st): State<AppState>,
    UiAdmin(c): UiAdmin,
    Query(q): Query<UsersQuery>,
) -> Response {
    let all = match st.blocking(|a| Ok(a.list_users()?)).await {
        Ok(u) => u,
        Err(e) => return error_page_for(&st, &c, e),
    };
    let needle = q.q.trim().to_ascii_lowercase();
    let matching: Vec<UserView> = all
        .into_iter()
        .filter(|u| needle.is_empty() || u.name.to_ascii_lowercase().contains(&needle))
        .map(UserView::from)
        .collect();
    let total = matching.len();
    let pages = total.div_ceil(USERS_PER_PAGE).max(1);
    let pageno = q.p.clamp(1, pages);
    let shown: Vec<&UserView> = matching
        .iter()
        .skip((pageno - 1) * USERS_PER_PAGE)
        .take(USERS_PER_PAGE)
        .collect();
    render(
        &st,
        Some(&c),
        "users.html",
        "Users",
        "users",
        json!({ "users": shown, "total": total, "q": q.q, "pages": pages, "pageno": pageno }),
    )
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NewUserForm {
    name: String,
    password: String,
    admin: Option<String>,
}

async fn add_user(
    State(st): State<AppState>,
    UiAdmin(c): UiAdmin,
    Form(f): Form<NewUserForm>,
) -> Response {
    let admin = checked(&f.admin);
    let name = f.name.trim().to_owned();
    let n = name.clone();
    let r = st
        .blocking(move |a| {
            a.add_user(&n, &f.password, admin)
                .map_err(|e| ApiError::from(e).about("password"))
        })
        .await
        .map(|_| format!("User {name} added."));
    done(&st, &c, "/users", r)
}

async fn user(
    State(st): State<AppState>,
    UiAdmin(c): UiAdmin,
    Path(name): Path<String>,
) -> Response {
    let r = st
        .blocking(move |a| {
            let u = a
                .directory
                .get_user(&name)?
                .ok_or_else(|| ApiError::not_found(format!("no such user `{name}`")))?;
            let size = a.mailbox_size(&u.name).ok().flatten();
            let autoreply = a.autoreply_show(&u.name)?.map(AutoreplyView::from);
            let forward = a.forward_show(&u.name)?.map(ForwardView::from);
            Ok((UserView::from(u), size, autoreply, forward))
        })
        .await;
    match r {
        Ok((u, size, autoreply, forward)) => {
            let state = autoreply.as_ref().map(|a| a.state.clone());
            let title = format!("User {}", u.name);
            render(
                &st,
                Some(&c),
                "user.html",
                &title,
                "users",
                json!({ "u": u, "size": size, "autoreply": autoreply, "autoreply_state": state, "forward": forward }),
            )
        }
        Err(e) => error_page_for(&st, &c, e),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PasswordForm {
    password: String,
}

async fn user_password(
    State(st): State<AppState>,
    UiAdmin(c): UiAdmin,
    Path(name): Path<String>,
    Form(f): Form<PasswordForm>,
) -> Response {
    let n = name.clone();
    let r = st
        .blocking(move |a| {
            a.set_password(&n, &f.password)
                .map_err(|e| ApiError::from(e).about("password"))
        })
        .await
        .map(|_| {
            st.inner.sessions.remove_user(&name);
            format!("Password of {name} changed.")
        });
    done(&st, &c, &format!("/users/{}", seg(&name)), r)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AdminQuery {
    admin: String,
}

async fn user_admin(
    State(st): State<AppState>,
    UiAdmin(c): UiAdmin,
    Path(name): Path<String>,
    Query(q): Query<AdminQuery>,
) -> Response {
    let on = q.admin == "on";
    let back = format!("/users/{}", seg(&name));
    if !on && c.user.eq_ignore_ascii_case(&name) {
        return done(
            &st,
            &c,
            &back,
            Err(ApiError::field(
                "admin",
                "you cannot take your own admin role",
            )),
        );
    }
    let n = name.clone();
    let r = st
        .blocking(move |a| Ok(a.set_admin(&n, on)?))
        .await
        .map(|_| {
            if on {
                format!("{name} is an admin now.")
            } else {
                format!("{name} is no longer an admin.")
            }
        });
    done(&st, &c, &back, r)
}

async fn user_delete(
    State(st): State<AppState>,
    UiAdmin(c): UiAdmin,
    Path(name): Path<String>,
) -> Response {
    if c.user.eq_ignore_ascii_case(&name) {
        return done(
            &st,
            &c,
            &format!("/users/{}", seg(&name)),
            Err(ApiError::field(
                "name",
                "you cannot delete your own account",
            )),
        );
    }
    let n = name.clone();
    match st.blocking(move |a| Ok(a.delete_user(&n)?)).await {
        Ok(()) => {
            st.inner.sessions.remove_user(&name);
            done(
                &st,
                &c,
                "/users",
                Ok(format!("User {name} deleted; the mailbox stays on disk.")),
            )
        }
        Err(e) => done(&st, &c, &format!("/users/{}", seg(&name)), Err(e)),
    }
}

/// The auto-reply form (admin's user page and self-service).
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct AutoreplyForm {
    pub subject: String,
    pub body: String,
    pub from: String,
    pub until: String,
}

/// The forward form.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ForwardForm {
    pub addresses: String,
    pub keep_copy: Option<String>,
}

/// Sets an auto-reply from the form and says how it went.
pub async fn autoreply_from_form(
    st: &AppState,
    user: String,
    f: AutoreplyForm,
) -> Result<String, ApiError> {
    let v = actions::set_autoreply(st, user.clone(), f.subject, f.body, &f.from, &f.until).await?;
    Ok(format!("Auto-reply of {user} set ({}).", v.state))
}

pub async fn forward_from_form(
    st: &AppState,
    user: String,
    f: ForwardForm,
) -> Result<String, ApiError> {
    let v = actions::set_forward(
        st,
        user.clone(),
        split_list(&f.addresses),
        checked(&f.keep_copy),
    )
    .await?;
    Ok(format!(
        "Mail to {user} now goes to {}.",
        v.addresses.join(", ")
    ))
}

async fn user_autoreply(
    State(st): State<AppState>,
    UiAdmin(c): UiAdmin,
    Path(name): Path<String>,
    Form(f): Form<AutoreplyForm>,
) -> Response {
    let r = autoreply_from_form(&st, name.clone(), f).await;
    done(&st, &c, &format!("/users/{}", seg(&name)), r)
}

async fn user_autoreply_off(
    State(st): State<AppState>,
    UiAdmin(c): UiAdmin,
    Path(name): Path<String>,
) -> Response {
    let n = name.clone();
    let r = st
        .blocking(move |a| Ok(a.autoreply_off(&n)?))
        .await
        .map(|_| format!("Auto-reply of {name} switched off."));
    done(&st, &c, &format!("/users/{}", seg(&name)), r)
}

async fn user_forward(
    State(st): State<AppState>,
    UiAdmin(c): UiAdmin,
    Path(name): Path<String>,
    Form(f): Form<ForwardForm>,
) -> Response {
    let r = forward_from_form(&st, name.clone(), f).await;
    done(&st, &c, &format!("/users/{}", seg(&name)), r)
}

async fn user_forward_off(
    State(st): State<AppState>,
    UiAdmin(c): UiAdmin,
    Path(name): Path<String>,
) -> Response {
    let n = name.clone();
    let r = st
        .blocking(move |a| Ok(a.forward_off(&n)?))
        .await
        .map(|_| format!("Forward of {name} removed; mail goes to the mailbox."));
    done(&st, &c, &format!("/users/{}", seg(&name)), r)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AliasesQuery {
    test: String,
}

async fn aliases(
    State(st): State<AppState>,
    UiAdmin(c): UiAdmin,
    Query(q): Query<AliasesQuery>,
) -> Response {
    let test_address = q.test.trim().to_owned();
    let t = test_address.clone();
    let r = st
        .blocking(move |a| {
            let aliases: Vec<AliasView> =
                a.list_aliases()?.into_iter().map(AliasView::from).collect();
            let test = if t.is_empty() {
                None
            } else {
                Some(a.test_address(&t))
            };
            Ok((aliases, test))
        })
        .await;
    let (aliases, test) = match r {
        Ok(x) => x,
        Err(e) => return error_page_for(&st, &c, e),
    };
    let (test, test_error) = match test {
        Some(Ok(t)) => (Some(t), None),
        Some(Err(e)) => (None, Some(ApiError::from(e).message)),
        None => (None, None),
    };
    let mut extra = json!({
        "aliases": aliases, "test": test, "test_address": test_address,
        "domain": st.config().primary_domain(),
    });
    // A tester error replaces the flash; otherwise the form's flash shows.
    if let (Some(t), Some(obj)) = (test_error, extra.as_object_mut()) {
        obj.insert("flash".into(), json!({ "kind": "error", "text": t }));
    }
    render(&st, Some(&c), "aliases.html", "Aliases", "aliases", extra)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AliasForm {
    pattern: String,
    targets: String,
}

async fn add_alias(
    State(st): State<AppState>,
    UiAdmin(c): UiAdmin,
    Form(f): Form<AliasForm>,
) -> Response {
    let pattern = f.pattern.trim().to_owned();
    let targets = split_list(&f.targets);
    let p = pattern.clone();
    let r = st
        .blocking(move |a| {
            a.add_alias(&p, &targets)
                .map_err(|e| ApiError::from(e).about("targets"))
                .map(|_| format!("Alias {p} → {}.", targets.join(", ")))
        })
        .await;
    done(&st, &c, "/aliases", r)
}

async fn delete_alias(
    State(st): State<AppState>,
    UiAdmin(c): UiAdmin,
    Form(f): Form<AliasForm>,
) -> Response {
    let p = f.pattern;
    let r = st
        .blocking(move |a| {
            a.delete_alias(&p)
                .map(|_| format!("Alias {p} deleted."))
                .map_err(Into::into)
        })
        .await;
    done(&st, &c, "/aliases", r)
}

async fn lists(State(st): State<AppState>, UiAdmin(c): UiAdmin) -> Response {
    match st
        .blocking(|a| {
            Ok(a.lists()?
                .into_iter()
                .map(ListView::from)
                .collect::<Vec<_>>())
        })
        .await
    {
        Ok(lists) => {
            let config = st.config();
            render(
                &st,
                Some(&c),
                "lists.html",
                "Mailing lists",
                "lists",
                json!({ "lists": lists, "domain": config.primary_domain(), "postmaster": config.postmaster_address() }),
            )
        }
        Err(e) => error_page_for(&st, &c, e),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ListForm {
    name: String,
    owner: String,
    posting: String,
    reply_to: String,
    subject_prefix: Option<String>,
    max_message_size: String,
}

impl ListForm {
    fn options(&self) -> Result<crate::api::ListOptionsBody, ApiError> {
        let opt = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
        let max = match self.max_message_size.trim() {
            "" => None,
            s => Some(
                s.parse::<u64>()
                    .map_err(|_| ApiError::field("max_message_size", "give a number of bytes"))?,
            ),
        };
        Ok(crate::api::ListOptionsBody {
            owner: opt(&self.owner),
            posting: opt(&self.posting),
            reply_to: opt(&self.reply_to),
            subject_prefix: self.subject_prefix.clone(),
            max_message_size: max,
        })
    }
}

async fn create_list(
    State(st): State<AppState>,
    UiAdmin(c): UiAdmin,
    Form(f): Form<ListForm>,
) -> Response {
    let name = f.name.trim().to_owned();
    let options = match f.options().and_then(|o| o.to_options()) {
        Ok(o) => o,
        Err(e) => return done(&st, &c, "/lists", Err(e)),
    };
    let n = name.clone();
    match st.blocking(move |a| Ok(a.list_create(&n, &options)?)).await {
        Ok(info) => done(
            &st,
            &c,
            &format!("/lists/{}", seg(&info.name)),
            Ok(format!("List {} created.", info.name)),
        ),
        Err(e) => done(&st, &c, "/lists", Err(e)),
    }
}

async fn list(
    State(st): State<AppState>,
    UiAdmin(c): UiAdmin,
    Path(name): Path<String>,
) -> Response {
    let r = st
        .blocking(move |a| {
            let l = ListView::from(a.list_show(&name)?);
            let members: Vec<MemberView> = a
                .list_members(&l.name)?
                .into_iter()
                .map(MemberView::from)
                .collect();
            let held = a.moderation_queue(&l.name)?;
            Ok((l, members, held))
        })
        .await;
    match r {
        Ok((l, members, held)) => {
            let title = format!("List {}", l.name);
            render(
                &st,
                Some(&c),
                "list.html",
                &title,
                "lists",
                json!({ "l": l, "members": members, "held": held, "domain": st.config().primary_domain() }),
            )
        }
        Err(e) => error_page_for(&st, &c, e),
    }
}

async fn list_options(
    State(st): State<AppState>,
    UiAdmin(c): UiAdmin,
    Path(name): Path<String>,
    Form(f): Form<ListForm>,
) -> Response {
    let back = format!("/lists/{}", seg(&name));
    let options = match f.options().and_then(|o| o.to_options()) {
        Ok(o) => o,
        Err(e) => return done(&st, &c, &back, Err(e)),
    };
    let r = st
        .blocking(move |a| Ok(a.list_set_options(&name, &options)?))
        .await
        .map(|l| format!("Options of {} saved.", l.name));
    done(&st, &c, &back, r)
}

async fn list_delete(
    State(st): State<AppState>,
    UiAdmin(c): UiAdmin,
    Path(name): Path<String>,
) -> Response {
    let n = name.clone();
    match st.blocking(move |a| Ok(a.list_delete(&n)?)).await {
        Ok(d) => done(
            &st,
            &c,
            "/lists",
            Ok(format!(
                "List {} deleted ({} members removed, {} held posts discarded).",
                d.name, d.members, d.held_posts_discarded
            )),
        ),
        Err(e) => done(&st, &c, &format!("/lists/{}", seg(&name)), Err(e)),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct MemberForm {
    address: String,
}

async fn list_subscribe(
    State(st): State<AppState>,
    UiAdmin(c): UiAdmin,
    Path(name): Path<String>,
    Form(f): Form<MemberForm>,
) -> Response {
    let back = format!("/lists/{}", seg(&name));
    let r = st
        .blocking(move |a| {
            a.list_subscribe(&name, f.address.trim())
                .map(|m| format!("{} added.", m.address))
                .map_err(|e| ApiError::from(e).about("address"))
        })
        .await;
    done(&st, &c, &back, r)
}

async fn list_unsubscribe(
    State(st): State<AppState>,
    UiAdmin(c): UiAdmin,
    Path(name): Path<String>,
    Form(f): Form<MemberForm>,
) -> Response {
    let back = format!("/lists/{}", seg(&name));
    let r = st
        .blocking(move |a| Ok(a.list_unsubscribe(&name, &f.address)?))
        .await
        .map(|addr| format!("{addr} removed."));
    done(&st, &c, &back, r)
}

async fn list_moderate(
    State(st): State<AppState>,
    UiAdmin(c): UiAdmin,
    Path((name, token, decision)): Path<(String, String, String)>,
) -> Response {
    let back = format!("/lists/{}", seg(&name));
    let approve = match decision.as_str() {
        "approve" => true,
        "reject" => false,
        _ => return done(&st, &c, &back, Err(ApiError::not_found("unknown decision"))),
    };
    let r = st
        .blocking(move |a| Ok(a.moderate(&name, &token, approve)?))
        .await
        .map(|m| {
            if m.approved {
                "Post approved: it goes to the members.".to_owned()
            } else {
                "Post rejected: the sender gets a bounce.".to_owned()
            }
        });
    done(&st, &c, &back, r)
}
