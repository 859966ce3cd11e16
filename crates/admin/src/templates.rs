//! The UI's templates, embedded in the binary (`include_str!`), rendered
//! with minijinja. Autoescaping is on for every template (they all end in
//! `.html`), so any value — a list name, a subject, a log line — is shown
//! as text, never run. Filters: `datetime` (Unix seconds to UTC text),
//! `date`, `bytes` (a human size), `ago` (seconds as a duration), `urlencode` (a URL path
//! segment or query value), `addr` (an address, escaped, that may break
//! before its `@` in a narrow column).

use minijinja::{Environment, Value};
use serde::Serialize;

/// Every template: (name, source).
const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../templates/base.html")),
    ("macros.html", include_str!("../templates/macros.html")),
    ("login.html", include_str!("../templates/login.html")),
    ("error.html", include_str!("../templates/error.html")),
    (
        "dashboard.html",
        include_str!("../templates/dashboard.html"),
    ),
    ("users.html", include_str!("../templates/users.html")),
    ("user.html", include_str!("../templates/user.html")),
    ("aliases.html", include_str!("../templates/aliases.html")),
    ("lists.html", include_str!("../templates/lists.html")),
    ("list.html", include_str!("../templates/list.html")),
    (
        "directories.html",
        include_str!("../templates/directories.html"),
    ),
    ("misc.html", include_str!("../templates/misc.html")),
    ("logging.html", include_str!("../templates/logging.html")),
    ("queue.html", include_str!("../templates/queue.html")),
    (
        "queue_show.html",
        include_str!("../templates/queue_show.html"),
    ),
    ("trace.html", include_str!("../templates/trace.html")),
    ("dns.html", include_str!("../templates/dns.html")),
    ("tls.html", include_str!("../templates/tls.html")),
    ("me.html", include_str!("../templates/me.html")),
];

/// The compiled templates.
pub struct Templates {
    env: Environment<'static>,
}

impl Default for Templates {
    fn default() -> Self {
        Templates::new()
    }
}

impl Templates {
    pub fn new() -> Templates {
        let mut env = Environment::new();
        // Every name ends in .html: escape everything, whatever the name.
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
        env.add_filter("datetime", datetime);
        env.add_filter("date", date);
        env.add_filter("bytes", bytes);
        env.add_filter("ago", ago);
        env.add_filter("urlencode", |s: String| crate::ui::seg(&s));
        env.add_filter("addr", addr);
        for (name, src) in TEMPLATES {
            // The templates are part of the binary and covered by the
            // tests that render every page; a syntax error is a build bug.
            if let Err(e) = env.add_template(name, src) {
                tracing::error!(template = name, error = %e, "template does not compile");
            }
        }
        Templates { env }
    }

    /// Renders `name` with `ctx`; on failure a plain error text (logged).
    pub fn render<S: Serialize>(&self, name: &str, ctx: S) -> Result<String, String> {
        let t = self
            .env
            .get_template(name)
            .map_err(|e| format!("template {name}: {e}"))?;
        t.render(ctx).map_err(|e| {
            tracing::error!(template = name, error = %e, "rendering failed");
            format!("template {name}: {e}")
        })
    }
}

fn to_i64(v: &Value) -> Option<i64> {
    i64::try_from(v.clone()).ok()
}

fn datetime(v: Value) -> String {
    match to_i64(&v).and_then(|t| chrono::DateTime::from_timestamp(t, 0)) {
        Some(d) => d.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        None => String::from("–"),
    }
}

fn date(v: Value) -> String {
    match to_i64(&v).and_then(|t| chrono::DateTime::from_timestamp(t, 0)) {
        Some(d) => d.format("%Y-%m-%d").to_string(),
        None => String::from("–"),
    }
}

/// A byte count in B, KiB, MiB, GiB, TiB.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn bytes(v: Value) -> String {
    match u64::try_from(v) {
        Ok(n) => human_bytes(n),
        Err(_) => String::from("–"),
    }
}

/// Seconds as `3d 4h`, `5h 2m`, `7m 3s`, `9s`.
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    let (d, h, m, sec) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {sec}s")
    } else {
        format!("{sec}s")
    }
}

/// An address (or a list of them) HTML-escaped, with a line break
/// opportunity (`<wbr>`) before each `@`.
fn addr(s: String) -> Value {
    let escaped = minijinja::HtmlEscape(&s).to_string();
    Value::from_safe_string(escaped.replace('@', "<wbr>@"))
}

fn ago(v: Value) -> String {
    match to_i64(&v) {
        Some(n) => human_duration(n),
        None => String::from("–"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_compiles() {
        let t = Templates::new();
        for (name, _) in TEMPLATES {
            assert!(t.env.get_template(name).is_ok(), "{name} does not compile");
        }
    }

    #[test]
    fn values_are_escaped() {
        let t = Templates::new();
        let html = t
            .render(
                "error.html",
                minijinja::context! { status => 400, message => "<script>alert(1)</script>" },
            )
            .unwrap();
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"),
            "{html}"
        );
        assert!(!html.contains("<script>alert"));
    }

    #[test]
    fn filters() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_duration(90), "1m 30s");
        assert_eq!(human_duration(90_000), "1d 1h");
        assert_eq!(datetime(Value::from(0)), "1970-01-01 00:00:00 UTC");
        assert_eq!(
            addr("<b>x</b>@example.org".into()).to_string(),
            "&lt;b&gt;x&lt;&#x2f;b&gt;<wbr>@example.org"
        );
    }
}
