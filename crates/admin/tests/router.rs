//! The admin router driven with tower's `oneshot` (no sockets): logins,
//! 401 and 403 route by route, the CSRF guard, escaping, field errors,
//! self-service, settings written into the file, autoconfig, metrics, docs.

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use base64::Engine;
use postamt_admin::{AdminContext, AppState, router};
use postamt_directory::auth::Authenticator;
use postamt_net::tls::TlsProvider;
use postamt_ops::Admin;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tower::ServiceExt;

const CONFIG: &str = r#"# Postamt test configuration
hostname = "mx.example.org"   # the FQDN
domains = ["example.org"]
data_dir = "DATA"

[listen]
imaps = ["0.0.0.0:993"]
submission = ["0.0.0.0:587"]

[delivery]
# The SMTP gateway host
copy_local_failures_to_postmaster = true
"#;

struct Env {
    _dir: tempfile::TempDir,
    dir: std::path::PathBuf,
    app: Router,
    reloads: Arc<AtomicUsize>,
}

fn setup() -> Env {
    setup_with(|_, _| None)
}

/// `setup` with the mail services' certificates given by `served_tls`
/// (called with the data dir and the config once they exist).
fn setup_with(
    served_tls: impl FnOnce(&Path, &postamt_config::Config) -> Option<Arc<TlsProvider>>,
) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let data = root.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let config_path = root.join("postamt.toml");
    std::fs::write(&config_path, CONFIG.replace("DATA", data.to_str().unwrap())).unwrap();
    let config = Arc::new(postamt_config::load(&config_path).unwrap());
    let admin = Admin::open(Arc::clone(&config)).unwrap();
    admin.add_user("boss", "boss-pw", true).unwrap();
    admin.add_user("carl", "carl-pw", false).unwrap();
    admin.add_user("dora", "dora-pw", false).unwrap();
    let auth = Arc::new(Authenticator::with_delays(
        Arc::clone(&admin.directory),
        Duration::from_millis(1),
        Duration::from_millis(2),
    ));
    let reloads = Arc::new(AtomicUsize::new(0));
    let r = Arc::clone(&reloads);
    let served_tls = served_tls(&data, &config);
    let ctx = Arc::new(AdminContext {
        config,
        config_path,
        auth,
        tls: None,
        served_tls,
        reload: Arc::new(move || {
            r.fetch_add(1, Ordering::SeqCst);
            Ok("reloaded".into())
        }),
    });
    let state = AppState::with_admin(ctx, admin, false);
    Env {
        _dir: dir,
        dir: root,
        app: router(state),
        reloads,
    }
}

fn basic(user: &str, pw: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
    )
}

struct Resp {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

async fn send(app: &Router, req: Request<Body>) -> Resp {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), 10 << 20)
        .await
        .unwrap();
    Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn req(method: Method, uri: &str) -> axum::http::request::Builder {
    Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, "127.0.0.1:8080")
}

async fn api(
    app: &Router,
    method: Method,
    uri: &str,
    auth: Option<&str>,
    body: Option<Value>,
) -> Resp {
    let mut b = req(method, uri);
    if let Some(a) = auth {
        b = b.header(header::AUTHORIZATION, a);
    }
    let body = match body {
        Some(v) => {
            b = b.header(header::CONTENT_TYPE, "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    send(app, b.body(body).unwrap()).await
}

/// A browser session: the cookie and the CSRF token.
struct Browser {
    cookie: String,
    csrf: String,
}

async fn login(app: &Router, user: &str, pw: &str) -> Browser {
    let form =
        serde_urlencoded::to_string([("user", user), ("password", pw), ("next", "")]).unwrap();
    let r = send(
        app,
        req(Method::POST, "/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(form))
            .unwrap(),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::SEE_OTHER,
        "login of {user}: {}",
        r.body
    );
    let set = r
        .headers
        .get(header::SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let cookie = set.split(';').next().unwrap().to_owned();
    let me = send(
        app,
        req(Method::GET, "/api/v1/me")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(me.status, StatusCode::OK);
    let csrf = me.json()["csrf_token"].as_str().unwrap().to_owned();
    assert_eq!(csrf.len(), 64);
    Browser { cookie, csrf }
}

impl Browser {
    async fn get(&self, app: &Router, uri: &str) -> Resp {
        send(
            app,
            req(Method::GET, uri)
                .header(header::COOKIE, &self.cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }
    async fn form(
        &self,
        app: &Router,
        uri: &str,
        fields: &[(&str, &str)],
        with_csrf: bool,
    ) -> Resp {
        let mut f: Vec<(&str, &str)> = fields.to_vec();
        if with_csrf {
            f.push(("csrf", &self.csrf));
        }
        let body = serde_urlencoded::to_string(&f).unwrap();
        send(
            app,
            req(Method::POST, uri)
                .header(header::COOKIE, &self.cookie)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(body))
                .unwrap(),
        )
        .await
    }
    async fn flash(&self, app: &Router, page: &str) -> String {
        self.get(app, page).await.body
    }
}

/// Every admin API route (method, path).
const ADMIN_API: &[(&str, &str)] = &[
    ("GET", "/api/v1/users"),
    ("POST", "/api/v1/users"),
    ("GET", "/api/v1/users/carl"),
    ("DELETE", "/api/v1/users/carl"),
    ("PUT", "/api/v1/users/carl/password"),
    ("PUT", "/api/v1/users/carl/admin"),
    ("GET", "/api/v1/users/carl/mailbox"),
    ("GET", "/api/v1/users/carl/autoreply"),
    ("PUT", "/api/v1/users/carl/autoreply"),
    ("DELETE", "/api/v1/users/carl/autoreply"),
    ("GET", "/api/v1/users/carl/forward"),
    ("PUT", "/api/v1/users/carl/forward"),
    ("DELETE", "/api/v1/users/carl/forward"),
    ("GET", "/api/v1/aliases"),
    ("POST", "/api/v1/aliases"),
    ("GET", "/api/v1/aliases/test?address=a"),
    ("GET", "/api/v1/aliases/sales"),
    ("DELETE", "/api/v1/aliases/sales"),
    ("GET", "/api/v1/lists"),
    ("POST", "/api/v1/lists"),
    ("GET", "/api/v1/lists/team"),
    ("PATCH", "/api/v1/lists/team"),
    ("DELETE", "/api/v1/lists/team"),
    ("GET", "/api/v1/lists/team/members"),
    ("POST", "/api/v1/lists/team/members"),
    ("DELETE", "/api/v1/lists/team/members/a@example.org"),
    ("GET", "/api/v1/lists/team/moderation"),
    ("POST", "/api/v1/lists/team/moderation/tok/approve"),
    ("GET", "/api/v1/queue"),
    ("POST", "/api/v1/queue/flush"),
    ("GET", "/api/v1/queue/0123"),
    ("DELETE", "/api/v1/queue/0123"),
    ("POST", "/api/v1/queue/0123/hold"),
    ("POST", "/api/v1/queue/0123/release"),
    ("POST", "/api/v1/queue/0123/bounce"),
    ("GET", "/api/v1/settings"),
    ("PUT", "/api/v1/settings"),
    ("GET", "/api/v1/logs"),
    ("GET", "/api/v1/trace?queue_id=x"),
    ("GET", "/api/v1/dashboard"),
    ("GET", "/api/v1/dns/example.org"),
    ("GET", "/api/v1/dns/example.org/check"),
    ("POST", "/api/v1/dkim/example.org"),
    ("GET", "/api/v1/tls"),
];

/// Every admin page (GET) and form (POST) of the UI.
const ADMIN_UI: &[(&str, &str)] = &[
    ("GET", "/users"),
    ("POST", "/users"),
    ("GET", "/users/carl"),
    ("POST", "/users/carl/password"),
    ("POST", "/users/carl/admin?admin=on"),
    ("POST", "/users/carl/delete"),
    ("POST", "/users/carl/autoreply"),
    ("POST", "/users/carl/autoreply/off"),
    ("POST", "/users/carl/forward"),
    ("POST", "/users/carl/forward/off"),
    ("GET", "/aliases"),
    ("POST", "/aliases"),
    ("POST", "/aliases/delete"),
    ("GET", "/lists"),
    ("POST", "/lists"),
    ("GET", "/lists/team"),
    ("POST", "/lists/team/options"),
    ("POST", "/lists/team/delete"),
    ("POST", "/lists/team/members"),
    ("POST", "/lists/team/members/remove"),
    ("POST", "/lists/team/moderation/tok/approve"),
    ("GET", "/directories"),
    ("POST", "/directories"),
    ("GET", "/misc"),
    ("POST", "/misc"),
    ("GET", "/logging"),
    ("POST", "/logging"),
    ("GET", "/queue"),
    ("POST", "/queue/flush"),
    ("GET", "/queue/0123"),
    ("POST", "/queue/0123/hold"),
    ("GET", "/trace"),
    ("GET", "/dns"),
    ("POST", "/dns/dkim"),
    ("GET", "/tls"),
];

#[tokio::test]
async fn every_admin_api_route_needs_credentials() {
    let env = setup();
    for (m, path) in ADMIN_API {
        let r = api(&env.app, m.parse().unwrap(), path, None, Some(json!({}))).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{m} {path}: {}", r.body);
        assert!(
            r.headers.contains_key(header::WWW_AUTHENTICATE),
            "{m} {path}"
        );
    }
    let r = api(
        &env.app,
        Method::GET,
        "/api/v1/users",
        Some(&basic("boss", "wrong")),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = api(&env.app, Method::GET, "/api/v1/me", None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn every_admin_api_route_refuses_a_user() {
    let env = setup();
    let carl = basic("carl", "carl-pw");
    for (m, path) in ADMIN_API {
        let r = api(
            &env.app,
            m.parse().unwrap(),
            path,
            Some(&carl),
            Some(json!({})),
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{m} {path}: {}", r.body);
    }
    // Nothing was changed by any of them.
    let r = api(
        &env.app,
        Method::GET,
        "/api/v1/users/carl",
        Some(&basic("boss", "boss-pw")),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn every_admin_page_refuses_a_user_and_sends_strangers_to_login() {
    let env = setup();
    let carl = login(&env.app, "carl", "carl-pw").await;
    for (m, path) in ADMIN_UI {
        let r = if *m == "GET" {
            carl.get(&env.app, path).await
        } else {
            carl.form(&env.app, path, &[], true).await
        };
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{m} {path}");
        assert!(r.body.contains("for admins"), "{m} {path}: {}", r.body);
        // Without a session: to the login page.
        let r = send(
            &env.app,
            req(m.parse().unwrap(), path).body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{m} {path}");
        assert!(
            r.location().starts_with("/login?next="),
            "{m} {path}: {}",
            r.location()
        );
    }
    // The start page sends a user to their own page.
    let r = carl.get(&env.app, "/").await;
    assert_eq!(r.location(), "/me");
}

#[tokio::test]
async fn login_sets_a_strict_httponly_cookie_and_logout_ends_it() {
    let env = setup();
    let form = "user=boss&password=boss-pw&next=%2Fqueue";
    let r = send(
        &env.app,
        req(Method::POST, "/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(form))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), "/queue");
    let set = r.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(!set.contains("Secure"), "plain HTTP: no Secure flag");

    let b = login(&env.app, "boss", "boss-pw").await;
    assert_eq!(b.get(&env.app, "/").await.status, StatusCode::OK);
    let r = b.form(&env.app, "/logout", &[], true).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(
        r.headers
            .get(header::SET_COOKIE)
            .unwrap()
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(
        b.get(&env.app, "/users").await.status,
        StatusCode::SEE_OTHER
    );

    let bad = "user=boss&password=nope";
    let r = send(
        &env.app,
        req(Method::POST, "/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(bad))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(!r.headers.contains_key(header::SET_COOKIE));
    assert!(r.body.contains("Wrong user name or password"));
}

#[tokio::test]
async fn forms_and_cookie_api_calls_need_the_csrf_token() {
    let env = setup();
    let b = login(&env.app, "boss", "boss-pw").await;
    // A form without the token changes nothing.
    let r = b
        .form(
            &env.app,
            "/users",
            &[("name", "eve"), ("password", "eve-pw")],
            false,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("CSRF"));
    let r = b
        .form(
            &env.app,
            "/users",
            &[
                ("name", "eve"),
                ("password", "eve-pw"),
                ("csrf", "0".repeat(64).as_str()),
            ],
            false,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let users = api(
        &env.app,
        Method::GET,
        "/api/v1/users",
        Some(&basic("boss", "boss-pw")),
        None,
    )
    .await;
    assert!(!users.body.contains("\"eve\""));
    // With it, the user is added.
    let r = b
        .form(
            &env.app,
            "/users",
            &[("name", "eve"), ("password", "eve-pw")],
            true,
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(
        b.flash(&env.app, "/users")
            .await
            .contains("User eve added.")
    );

    // The JSON API with the cookie: the header is required.
    let mk = |tok: Option<&str>| {
        let mut r = req(Method::POST, "/api/v1/aliases")
            .header(header::COOKIE, &b.cookie)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(t) = tok {
            r = r.header("X-CSRF-Token", t);
        }
        r.body(Body::from(
            json!({"pattern": "sales", "targets": ["eve"]}).to_string(),
        ))
        .unwrap()
    };
    assert_eq!(send(&env.app, mk(None)).await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        send(&env.app, mk(Some("bad"))).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send(&env.app, mk(Some(&b.csrf))).await.status,
        StatusCode::CREATED
    );

    // A cross-origin request is refused even with Basic credentials.
    let r = send(
        &env.app,
        req(Method::POST, "/api/v1/queue/flush")
            .header(header::AUTHORIZATION, basic("boss", "boss-pw"))
            .header(header::ORIGIN, "https://evil.example")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn values_are_shown_as_text_never_run() {
    let env = setup();
    let boss = basic("boss", "boss-pw");
    let probe = "<script>alert('x')</script>";
    let r = api(
        &env.app,
        Method::PUT,
        "/api/v1/users/carl/autoreply",
        Some(&boss),
        Some(json!({"subject": probe, "body": "away <b>now</b>"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = api(
        &env.app,
        Method::POST,
        "/api/v1/lists",
        Some(&boss),
        Some(json!({"name": "team", "subject_prefix": probe})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let b = login(&env.app, "boss", "boss-pw").await;
    for page in ["/users/carl", "/lists/team"] {
        let html = b.get(&env.app, page).await.body;
        assert!(!html.contains("<script>alert"), "{page} runs the probe");
        assert!(
            html.contains("&lt;script&gt;alert("),
            "{page} does not show the probe"
        );
    }
    let carl = login(&env.app, "carl", "carl-pw").await;
    let html = carl.get(&env.app, "/me").await.body;
    assert!(!html.contains("<script>alert") && html.contains("&lt;script&gt;"));
    // The tester echoes the address escaped too.
    let html = b
        .get(&env.app, "/aliases?test=%3Cscript%3Ex%40example.org")
        .await
        .body;
    assert!(!html.contains("<script>x@"));
}

#[tokio::test]
async fn header_fields_refuse_line_breaks_and_bad_input_names_the_field() {
    let env = setup();
    let boss = basic("boss", "boss-pw");
    let r = api(
        &env.app,
        Method::PUT,
        "/api/v1/users/carl/autoreply",
        Some(&boss),
        Some(json!({"subject": "away\r\nBcc: x@evil.example", "body": "b"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["field"], "subject");
    let r = api(
        &env.app,
        Method::POST,
        "/api/v1/lists",
        Some(&boss),
        Some(json!({"name": "crlf", "subject_prefix": "[x]\nBcc: y"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["field"], "subject_prefix");
    // Nothing half-applied: the list does not exist.
    let r = api(
        &env.app,
        Method::GET,
        "/api/v1/lists/crlf",
        Some(&boss),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    let r = api(
        &env.app,
        Method::POST,
        "/api/v1/users",
        Some(&boss),
        Some(json!({"name": "x"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["field"], "password");
    let r = api(
        &env.app,
        Method::POST,
        "/api/v1/users",
        Some(&boss),
        Some(json!({"name": "bad name", "password": "p"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["field"], "name");
    let r = api(
        &env.app,
        Method::PUT,
        "/api/v1/users/carl/autoreply",
        Some(&boss),
        Some(json!({"subject": "s", "body": "b", "until": "tomorrow"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["field"], "until");
    let r = api(
        &env.app,
        Method::PATCH,
        "/api/v1/lists/nolist",
        Some(&boss),
        Some(json!({"posting": "sometimes"})),
    )
    .await;
    assert_eq!(r.json()["field"], "posting");

    // The UI shows the error after the redirect.
    let b = login(&env.app, "boss", "boss-pw").await;
    b.form(
        &env.app,
        "/users/carl/autoreply",
        &[("subject", "a\nb"), ("body", "x")],
        true,
    )
    .await;
    let html = b.flash(&env.app, "/users/carl").await;
    assert!(
        html.contains("flash error") && html.contains("subject"),
        "{html}"
    );
}

#[tokio::test]
async fn api_crud_round_trip() {
    let env = setup();
    let boss = basic("boss", "boss-pw");
    let r = api(
        &env.app,
        Method::POST,
        "/api/v1/users",
        Some(&boss),
        Some(json!({"name": "fred", "password": "fred-pw"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.json()["name"], "fred");
    // The new user can log in.
    let r = api(
        &env.app,
        Method::GET,
        "/api/v1/me",
        Some(&basic("fred", "fred-pw")),
        None,
    )
    .await;
    assert_eq!(r.json()["admin"], false);
    let r = api(
        &env.app,
        Method::POST,
        "/api/v1/users",
        Some(&boss),
        Some(json!({"name": "fred", "password": "x"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = api(
        &env.app,
        Method::PUT,
        "/api/v1/users/fred/admin",
        Some(&boss),
        Some(json!({"admin": true})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = api(
        &env.app,
        Method::GET,
        "/api/v1/users",
        Some(&basic("fred", "fred-pw")),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "fred is an admin now");
    let r = api(
        &env.app,
        Method::DELETE,
        "/api/v1/users/boss",
        Some(&boss),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "no deleting oneself");

    let r = api(
        &env.app,
        Method::POST,
        "/api/v1/aliases",
        Some(&boss),
        Some(json!({"pattern": "sales-*", "targets": ["fred"]})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = api(
        &env.app,
        Method::GET,
        "/api/v1/aliases/test?address=sales-eu@example.org",
        Some(&boss),
        None,
    )
    .await;
    let t = r.json();
    assert_eq!(t["rule"]["kind"], "wildcard_alias");
    assert_eq!(t["rule"]["pattern"], "sales-*");
    assert_eq!(t["mailboxes"], json!(["fred"]));
    let r = api(
        &env.app,
        Method::DELETE,
        "/api/v1/aliases/sales-*",
        Some(&boss),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = api(&env.app, Method::GET, "/api/v1/aliases", Some(&boss), None).await;
    assert_eq!(r.json(), json!([]));

    let r = api(
        &env.app,
        Method::POST,
        "/api/v1/lists",
        Some(&boss),
        Some(json!({"name": "team", "posting": "moderated"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.json()["posting"], "moderated");
    let r = api(
        &env.app,
        Method::POST,
        "/api/v1/lists/team/members",
        Some(&boss),
        Some(json!({"address": "fred"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.json()["address"], "fred@example.org");
    let r = api(
        &env.app,
        Method::GET,
        "/api/v1/lists/team",
        Some(&boss),
        None,
    )
    .await;
    assert_eq!(r.json()["members"], 1);
    // fred sees the list and leaves it himself.
    let fred = basic("fred", "fred-pw");
    let r = api(&env.app, Method::GET, "/api/v1/me/lists", Some(&fred), None).await;
    assert_eq!(r.json()[0]["list"], "team");
    let r = api(
        &env.app,
        Method::DELETE,
        "/api/v1/me/lists/team",
        Some(&fred),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = api(
        &env.app,
        Method::GET,
        "/api/v1/lists/team/members",
        Some(&boss),
        None,
    )
    .await;
    assert_eq!(r.json(), json!([]));
    let r = api(
        &env.app,
        Method::DELETE,
        "/api/v1/lists/team",
        Some(&boss),
        None,
    )
    .await;
    assert_eq!(r.json()["deleted"], "team");

    let r = api(
        &env.app,
        Method::PUT,
        "/api/v1/users/carl/forward",
        Some(&boss),
        Some(json!({"addresses": ["x@remote.test"], "keep_copy": true})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = api(
        &env.app,
        Method::GET,
        "/api/v1/users/carl/forward",
        Some(&boss),
        None,
    )
    .await;
    assert_eq!(r.json()["addresses"], json!(["x@remote.test"]));
    let r = api(
        &env.app,
        Method::DELETE,
        "/api/v1/users/carl/forward",
        Some(&boss),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);

    let r = api(&env.app, Method::GET, "/api/v1/queue", Some(&boss), None).await;
    assert_eq!(r.json(), json!([]));
    let r = api(
        &env.app,
        Method::GET,
        "/api/v1/queue/nosuchid",
        Some(&boss),
        None,
    )
    .await;
    assert!(r.status.is_client_error());
    let r = api(&env.app, Method::GET, "/api/v1/nothing", Some(&boss), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn self_service_changes_only_the_own_account() {
    let env = setup();
    let carl = basic("carl", "carl-pw");
    let r = api(
        &env.app,
        Method::PUT,
        "/api/v1/me/password",
        Some(&carl),
        Some(json!({"old": "wrong", "new": "n"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["field"], "old");
    let r = api(
        &env.app,
        Method::PUT,
        "/api/v1/me/password",
        Some(&carl),
        Some(json!({"old": "carl-pw", "new": "carl-new"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        api(&env.app, Method::GET, "/api/v1/me", Some(&carl), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let carl = basic("carl", "carl-new");
    let r = api(
        &env.app,
        Method::PUT,
        "/api/v1/me/autoreply",
        Some(&carl),
        Some(json!({"subject": "Away", "body": "back soon", "from": "2999-01-01", "until": "2999-01-31"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["state"], "scheduled");
    // dora's account is untouched.
    let boss = basic("boss", "boss-pw");
    let r = api(
        &env.app,
        Method::GET,
        "/api/v1/users/dora/autoreply",
        Some(&boss),
        None,
    )
    .await;
    assert_eq!(r.json(), Value::Null);
    let r = api(
        &env.app,
        Method::GET,
        "/api/v1/users/carl/autoreply",
        Some(&boss),
        None,
    )
    .await;
    assert_eq!(r.json()["subject"], "Away");

    // The same through the UI, password change with the form.
    let b = login(&env.app, "dora", "dora-pw").await;
    let r = b
        .form(
            &env.app,
            "/me/password",
            &[("old", "dora-pw"), ("new", "d2"), ("again", "d3")],
            true,
        )
        .await;
    assert_eq!(r.location(), "/me");
    assert!(b.flash(&env.app, "/me").await.contains("differ"));
    b.form(
        &env.app,
        "/me/password",
        &[("old", "dora-pw"), ("new", "d2"), ("again", "d2")],
        true,
    )
    .await;
    assert!(b.flash(&env.app, "/me").await.contains("Password changed."));
    assert_eq!(
        api(
            &env.app,
            Method::GET,
            "/api/v1/me",
            Some(&basic("dora", "d2")),
            None
        )
        .await
        .status,
        StatusCode::OK
    );
    b.form(
        &env.app,
        "/me/forward",
        &[("addresses", "dora@remote.test"), ("keep_copy", "on")],
        true,
    )
    .await;
    let html = b.get(&env.app, "/me").await.body;
    assert!(
        html.contains("dora@remote.test") && html.contains("a copy stays"),
        "{html}"
    );
}

#[tokio::test]
async fn admin_ui_pages_render() {
    let env = setup();
    let b = login(&env.app, "boss", "boss-pw").await;
    for page in [
        "/",
        "/users",
        "/users/carl",
        "/aliases",
        "/aliases?test=carl",
        "/lists",
        "/directories",
        "/misc",
        "/logging",
        "/queue",
        "/trace",
        "/trace?by=sender&key=a@b",
        "/dns",
        "/tls",
        "/me",
    ] {
        let r = b.get(&env.app, page).await;
        assert_eq!(r.status, StatusCode::OK, "{page}: {}", r.body);
        assert!(r.body.contains("<nav class=\"side\">"), "{page}");
        assert!(r.body.contains(&b.csrf), "{page} lacks the CSRF token");
        assert!(r.headers.get(header::CONTENT_SECURITY_POLICY).is_some());
        assert_eq!(r.headers.get(header::X_FRAME_OPTIONS).unwrap(), "DENY");
    }
    let html = b.get(&env.app, "/aliases?test=carl").await.body;
    assert!(html.contains("the user <b>carl</b>"), "{html}");
    let html = b.get(&env.app, "/dns").await.body;
    assert!(html.contains("autoconfig.example.org."), "{html}");
    // An alias and a list through the forms.
    b.form(
        &env.app,
        "/aliases",
        &[("pattern", "*@example.org"), ("targets", "carl, dora")],
        true,
    )
    .await;
    let html = b
        .get(&env.app, "/aliases?test=nobody%40example.org")
        .await
        .body;
    assert!(
        html.contains("the wildcard alias <code>*@example.org</code>"),
        "{html}"
    );
    b.form(
        &env.app,
        "/lists",
        &[("name", "club"), ("posting", "anyone")],
        true,
    )
    .await;
    b.form(
        &env.app,
        "/lists/club/members",
        &[("address", "carl")],
        true,
    )
    .await;
    let html = b.get(&env.app, "/lists/club").await.body;
    assert!(html.contains("carl@example.org"), "{html}");
}

#[tokio::test]
async fn settings_are_written_into_the_file_with_comments_kept() {
    let env = setup();
    let boss = basic("boss", "boss-pw");
    let r = api(&env.app, Method::GET, "/api/v1/settings", Some(&boss), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["hostname"], "mx.example.org");
    let r = api(
        &env.app,
        Method::PUT,
        "/api/v1/settings",
        Some(&boss),
        Some(json!({"smarthost": "relay.example.net:25"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let j = r.json();
    assert_eq!(j["changed"], json!(["delivery.smarthost"]));
    assert_eq!(j["settings"]["smarthost"], "relay.example.net:25");
    assert_eq!(env.reloads.load(Ordering::SeqCst), 1);
    let text = std::fs::read_to_string(env.dir.join("postamt.toml")).unwrap();
    assert!(text.contains("relay.example.net:25"), "{text}");
    assert!(
        text.contains("# The SMTP gateway host") && text.contains("# the FQDN"),
        "{text}"
    );
    let r = api(
        &env.app,
        Method::PUT,
        "/api/v1/settings",
        Some(&boss),
        Some(json!({"create_mailboxes": "yes"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["field"], "create_mailboxes");
    let r = api(
        &env.app,
        Method::PUT,
        "/api/v1/settings",
        Some(&boss),
        Some(json!({"hostname": ""})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);

    // The Misc page writes the same file.
    let b = login(&env.app, "boss", "boss-pw").await;
    let r = b
        .form(
            &env.app,
            "/misc",
            &[
                ("hostname", "mx.example.org"),
                ("domains", "example.org, example.net"),
                ("smarthost", "relay2.example.net:587"),
            ],
            true,
        )
        .await;
    assert_eq!(r.location(), "/misc");
    let html = b.get(&env.app, "/misc").await.body;
    assert!(
        html.contains("Saved:") && html.contains("relay2.example.net:587"),
        "{html}"
    );
    let text = std::fs::read_to_string(env.dir.join("postamt.toml")).unwrap();
    assert!(text.contains("relay2.example.net:587") && text.contains("example.net"));
    assert!(text.contains("# Postamt test configuration"));
    // The new domain is ours now for this server's own views.
    let r = api(
        &env.app,
        Method::GET,
        "/api/v1/dns/example.net",
        Some(&boss),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = api(
        &env.app,
        Method::GET,
        "/api/v1/dns/evil.test",
        Some(&boss),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn public_routes_autoconfig_metrics_docs() {
    let env = setup();
    for uri in [
        "/.well-known/autoconfig/mail/config-v1.1.xml",
        "/mail/config-v1.1.xml?emailaddress=carl%40example.org",
    ] {
        let r = api(&env.app, Method::GET, uri, None, None).await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(
            r.headers
                .get(header::CONTENT_TYPE)
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("application/xml")
        );
        assert!(r.body.contains("<hostname>mx.example.org</hostname>"));
        assert!(r.body.contains("<port>993</port>") && r.body.contains("<port>587</port>"));
    }
    let r = api(&env.app, Method::GET, "/metrics", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("# TYPE"), "{}", r.body);
    let r = api(&env.app, Method::GET, "/docs/", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("<html"));
    let r = api(&env.app, Method::GET, "/docs/../../etc/passwd", None, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = api(&env.app, Method::GET, "/static/style.css", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = api(&env.app, Method::GET, "/no/such/page", None, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_deleted_user_loses_the_session_at_once() {
    let env = setup();
    let carl = login(&env.app, "carl", "carl-pw").await;
    assert_eq!(carl.get(&env.app, "/me").await.status, StatusCode::OK);
    let r = api(
        &env.app,
        Method::DELETE,
        "/api/v1/users/carl",
        Some(&basic("boss", "boss-pw")),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        carl.get(&env.app, "/me").await.status,
        StatusCode::SEE_OTHER
    );
}

#[test]
fn config_fixture_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(&p, CONFIG.replace("DATA", "/tmp/x")).unwrap();
    assert!(postamt_config::load(Path::new(&p)).is_ok());
}

#[tokio::test]
async fn tls_shows_the_self_signed_certificate_of_the_mail_services() {
    let env = setup();
    let boss = basic("boss", "boss-pw");
    // No certificate made yet (the mail services make it at their start).
    let r = api(&env.app, Method::GET, "/api/v1/tls", Some(&boss), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json(), json!([]));
    let b = login(&env.app, "boss", "boss-pw").await;
    let html = b.get(&env.app, "/tls").await.body;
    assert!(html.contains("No certificate is loaded yet"), "{html}");

    // The self-signed certificate the mail services made (without
    // [tls]) and serve: described.
    let t = postamt_net::tls::testing::self_signed("mx.example.org");
    let mut served = None;
    let mut cert_file = std::path::PathBuf::new();
    let env = setup_with(|data, config| {
        let tls_dir = data.join("tls");
        std::fs::create_dir_all(&tls_dir).unwrap();
        cert_file = tls_dir.join(postamt_net::tls::SELF_SIGNED_CERT_FILE);
        std::fs::write(&cert_file, &t.ca_pem).unwrap();
        std::fs::write(
            tls_dir.join(postamt_net::tls::SELF_SIGNED_KEY_FILE),
            &t.key_pem,
        )
        .unwrap();
        served = Some(TlsProvider::from_config(config).unwrap());
        served.clone()
    });
    let served = served.unwrap();
    let tls_dir = cert_file.parent().unwrap().to_path_buf();
    let b = login(&env.app, "boss", "boss-pw").await;
    let r = api(&env.app, Method::GET, "/api/v1/tls", Some(&boss), None).await;
    let certs = r.json();
    let certs = certs.as_array().unwrap();
    assert_eq!(certs.len(), 1, "{certs:?}");
    let c = &certs[0];
    assert!(
        c["subject"].as_str().unwrap().contains("CN=mx.example.org"),
        "{c}"
    );
    assert_eq!(c["subject"], c["issuer"]);
    assert_eq!(c["self_signed"], json!(true));
    assert_eq!(c["fingerprint"], json!(t.fingerprint_sha256));
    assert_eq!(c["file"], json!(cert_file.display().to_string()));
    assert!(c["expires_in"].as_i64().unwrap() > 86_400, "{c}");
    let html = b.get(&env.app, "/tls").await.body;
    assert!(html.contains(&t.fingerprint_sha256), "{html}");
    assert!(html.contains("The mail services"), "{html}");

    // A new certificate in the file is shown once the server's
    // certificate watcher has reloaded it.
    let t2 = postamt_net::tls::testing::self_signed("mx.example.org");
    std::fs::write(&cert_file, &t2.ca_pem).unwrap();
    std::fs::write(
        tls_dir.join(postamt_net::tls::SELF_SIGNED_KEY_FILE),
        &t2.key_pem,
    )
    .unwrap();
    served.reload().unwrap();
    let r = api(&env.app, Method::GET, "/api/v1/tls", Some(&boss), None).await;
    assert_eq!(r.json()[0]["fingerprint"], json!(t2.fingerprint_sha256));
}

#[tokio::test]
async fn query_strings_queue_ids_and_settings_errors_name_the_field() {
    let env = setup();
    let boss = basic("boss", "boss-pw");
    for (method, uri, field) in [
        (
            Method::POST,
            "/api/v1/dkim/example.org?force=maybe",
            "force",
        ),
        (Method::POST, "/api/v1/dkim/example.org?forse=true", "forse"),
        (Method::GET, "/api/v1/logs?limit=many", "limit"),
        (Method::GET, "/api/v1/logs?since=yesterday", "since"),
        (Method::POST, "/api/v1/queue/not-a-queue-id/hold", "id"),
        (Method::POST, "/api/v1/queue/not-a-queue-id/bounce", "id"),
        (Method::DELETE, "/api/v1/queue/not-a-queue-id", "id"),
        (Method::GET, "/api/v1/queue/not-a-queue-id", "id"),
    ] {
        let r = api(&env.app, method.clone(), uri, Some(&boss), None).await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "{method} {uri}: {}",
            r.body
        );
        let j = r.json();
        assert_eq!(j["field"], json!(field), "{method} {uri}: {j}");
        assert!(
            j["error"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{field}: ")),
            "{method} {uri}: {j}"
        );
    }
    assert!(
        !env.dir.join("data").join("dkim").exists() || {
            std::fs::read_dir(env.dir.join("data").join("dkim"))
                .unwrap()
                .next()
                .is_none()
        }
    );
    // A well-formed id that is not queued is a 404.
    let r = api(
        &env.app,
        Method::POST,
        "/api/v1/queue/0123456789abcdef0123456789abcdef/hold",
        Some(&boss),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);

    // Settings refused by the config loader name the settings field.
    let before = std::fs::read(env.dir.join("postamt.toml")).unwrap();
    for (patch, field) in [
        (json!({"log_level": "loud"}), "log_level"),
        (json!({"domains": ["ok.example", "bad domain"]}), "domains"),
        (
            json!({"smarthost": "relay.example:25", "log_level": "loud"}),
            "log_level",
        ),
        (json!({"hostname": "bad host!"}), "hostname"),
    ] {
        let r = api(
            &env.app,
            Method::PUT,
            "/api/v1/settings",
            Some(&boss),
            Some(patch.clone()),
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{patch}: {}", r.body);
        assert_eq!(r.json()["field"], json!(field), "{patch}: {}", r.body);
        assert_eq!(
            std::fs::read(env.dir.join("postamt.toml")).unwrap(),
            before,
            "{patch}: the file changed"
        );
    }
    assert_eq!(env.reloads.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_list_owner_that_is_nobody_here_is_refused_naming_the_field() {
    let env = setup();
    let boss = basic("boss", "boss-pw");
    let r = api(
        &env.app,
        Method::POST,
        "/api/v1/lists",
        Some(&boss),
        Some(json!({"name": "club", "owner": "ghost@example.org"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.json()["field"], json!("owner"), "{}", r.body);
    let r = api(
        &env.app,
        Method::GET,
        "/api/v1/lists/club",
        Some(&boss),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "nothing created");
    let r = api(
        &env.app,
        Method::POST,
        "/api/v1/lists",
        Some(&boss),
        Some(json!({"name": "club", "owner": "carl"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = api(
        &env.app,
        Method::PATCH,
        "/api/v1/lists/club",
        Some(&boss),
        Some(json!({"posting": "anyone", "owner": "ghost@example.org"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.json()["field"], json!("owner"), "{}", r.body);
    let r = api(
        &env.app,
        Method::GET,
        "/api/v1/lists/club",
        Some(&boss),
        None,
    )
    .await;
    let l = r.json();
    assert_eq!(l["owner"], json!("carl@example.org"), "{l}");
    assert_eq!(l["posting"], json!("members"), "nothing half-applied: {l}");
}
