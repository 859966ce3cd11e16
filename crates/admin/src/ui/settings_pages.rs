//! The classic control panel's settings pages: Directories (mailbox
//! template, auto-create, spool dir, postmaster), Misc (host name, accept
//! mail for, smarthost, copy local failures to postmaster) and the
//! settings half of Logging. Each form changes only its own fields, writes
//! them into the TOML file (comments kept) and applies them.

use super::{checked, done, error_page_for, render};
use crate::actions;
use crate::authn::UiAdmin;
use crate::state::AppState;
use crate::views::split_list;
use axum::Router;
use axum::extract::{Form, State};
use axum::response::Response;
use axum::routing::{get, post};
use postamt_ops::settings::Settings;
use serde::Deserialize;
use serde_json::json;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/directories", get(directories).post(save_directories))
        .route("/misc", get(misc).post(save_misc))
        .route("/logging", post(save_logging))
}

fn opt(s: &str) -> Option<String> {
    Some(s.trim().to_owned()).filter(|s| !s.is_empty())
}

async fn directories(State(st): State<AppState>, UiAdmin(c): UiAdmin) -> Response {
    match actions::read_settings(&st).await {
        Ok(s) => {
            let config = st.config();
            render(
                &st,
                Some(&c),
                "directories.html",
                "Directories",
                "directories",
                json!({
                    "s": s,
                    "domain": config.primary_domain(),
                    "default_template": config.data_dir.join("mailboxes").join("%u").display().to_string(),
                    "config_path": st.ctx().config_path.display().to_string(),
                }),
            )
        }
        Err(e) => error_page_for(&st, &c, e),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct DirectoriesForm {
    mailbox_template: String,
    create_mailboxes: Option<String>,
    spool_dir: String,
    postmaster: String,
}

/// Reads the settings, lets `change` edit them, writes and applies them.
async fn save(
    st: &AppState,
    c: &crate::authn::Caller,
    back: &str,
    change: impl FnOnce(&mut Settings),
) -> Response {
    let r = async {
        let mut s = actions::read_settings(st).await?;
        change(&mut s);
        actions::apply_settings(st, s).await
    }
    .await;
    done(st, c, back, r.map(|a| a.summary()))
}

async fn save_directories(
    State(st): State<AppState>,
    UiAdmin(c): UiAdmin,
    Form(f): Form<DirectoriesForm>,
) -> Response {
    save(&st, &c, "/directories", |s| {
        s.mailbox_template = opt(&f.mailbox_template);
        s.create_mailboxes = checked(&f.create_mailboxes);
        s.spool_dir = opt(&f.spool_dir);
        s.postmaster = opt(&f.postmaster);
    })
    .await
}

async fn misc(State(st): State<AppState>, UiAdmin(c): UiAdmin) -> Response {
    match actions::read_settings(&st).await {
        Ok(s) => render(
            &st,
            Some(&c),
            "misc.html",
            "Misc",
            "misc",
            json!({ "s": s, "config_path": st.ctx().config_path.display().to_string() }),
        ),
        Err(e) => error_page_for(&st, &c, e),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct MiscForm {
    hostname: String,
    domains: String,
    smarthost: String,
    copy_local_failures_to_postmaster: Option<String>,
}

async fn save_misc(
    State(st): State<AppState>,
    UiAdmin(c): UiAdmin,
    Form(f): Form<MiscForm>,
) -> Response {
    save(&st, &c, "/misc", |s| {
        s.hostname = f.hostname.trim().to_owned();
        s.domains = split_list(&f.domains);
        s.smarthost = opt(&f.smarthost);
        s.copy_local_failures_to_postmaster = checked(&f.copy_local_failures_to_postmaster);
    })
    .await
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LoggingForm {
    log_receiver: Option<String>,
    log_delivery: Option<String>,
    log_retrieval: Option<String>,
    log_level: String,
}

async fn save_logging(
    State(st): State<AppState>,
    UiAdmin(c): UiAdmin,
    Form(f): Form<LoggingForm>,
) -> Response {
    save(&st, &c, "/logging", |s| {
        s.log_receiver = checked(&f.log_receiver);
        s.log_delivery = checked(&f.log_delivery);
        s.log_retrieval = checked(&f.log_retrieval);
        if !f.log_level.trim().is_empty() {
            s.log_level = f.log_level.trim().to_owned();
        }
    })
    .await
}
