//! The operations behind both faces (JSON API and UI pages), each a thin
//! wrapper over `postamt_ops` that adds what HTTP needs: parsing dates and
//! times, checking a user's old password through the shared
//! `Authenticator`, writing settings and applying them with the reload
//! hook, gathering the dashboard, DNS and TLS views.

use crate::error::ApiError;
use crate::state::AppState;
use crate::views::{AutoreplyView, ForwardView};
use chrono::{NaiveDate, NaiveDateTime, TimeZone, Utc};
use postamt_ops::logs::{LogEvent, LogQuery, Trace, TraceKey};
use postamt_ops::settings::{Settings, SettingsWritten};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

/// Most events a log search returns.
pub const LOG_LIMIT: usize = 1000;
/// Most messages one trace search returns.
pub const TRACE_LIMIT: usize = 20;

/// A `YYYY-MM-DD` date field (empty = none).
pub fn parse_day(field: &str, s: &str) -> Result<Option<NaiveDate>, ApiError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map(Some)
        .map_err(|_| ApiError::field(field, format!("`{s}` is not a date (YYYY-MM-DD)")))
}

/// A moment: Unix seconds, RFC 3339, `YYYY-MM-DD HH:MM[:SS]` or
/// `YYYY-MM-DD` (UTC). Empty = none.
pub fn parse_time(field: &str, s: &str) -> Result<Option<i64>, ApiError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    if let Ok(n) = s.parse::<i64>() {
        return Ok(Some(n));
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(Some(t.timestamp()));
    }
    for f in [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Ok(Some(Utc.from_utc_datetime(&t).timestamp()));
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d")
        && let Some(t) = d.and_hms_opt(0, 0, 0)
    {
        return Ok(Some(Utc.from_utc_datetime(&t).timestamp()));
    }
    Err(ApiError::field(
        field,
        format!("`{s}` is not a time (YYYY-MM-DD HH:MM, RFC 3339 or Unix seconds)"),
    ))
}

/// Sets `user`'s auto-reply.
pub async fn set_autoreply(
    st: &AppState,
    user: String,
    subject: String,
    body: String,
    from: &str,
    until: &str,
) -> Result<AutoreplyView, ApiError> {
    let from = parse_day("from", from)?;
    let until = parse_day("until", until)?;
    if subject.trim().is_empty() {
        return Err(ApiError::field("subject", "give a subject"));
    }
    if subject.contains(['\r', '\n']) {
        return Err(ApiError::field(
            "subject",
            "line breaks are not allowed in a subject",
        ));
    }
    st.blocking(move |a| {
        let r = a
            .autoreply_set(&user, &subject, &body, from, until)
            .map_err(|e| ApiError::from(e).about("until"))?;
        Ok(AutoreplyView::from(r))
    })
    .await
}

/// Sets `user`'s forward.
pub async fn set_forward(
    st: &AppState,
    user: String,
    addresses: Vec<String>,
    keep_copy: bool,
) -> Result<ForwardView, ApiError> {
    if addresses.is_empty() {
        return Err(ApiError::field("addresses", "give at least one address"));
    }
    st.blocking(move |a| {
        let f = a
            .forward_set(&user, &addresses, keep_copy)
            .map_err(|e| ApiError::from(e).about("addresses"))?;
        Ok(ForwardView::from(f))
    })
    .await
}

/// Changes a user's own password after checking the old one through the
/// shared login checker (same delays after failures as every protocol).
pub async fn change_own_password(
    st: &AppState,
    user: &str,
    old: &str,
    new: &str,
    ip: IpAddr,
) -> Result<(), ApiError> {
    if new.is_empty() {
        return Err(ApiError::field("new", "the new password is empty"));
    }
    if st.ctx().auth.login(user, old, ip).await.is_err() {
        crate::metrics_route::login_failed();
        return Err(ApiError::field("old", "the current password is wrong"));
    }
    let (u, p) = (user.to_owned(), new.to_owned());
    st.blocking(move |a| {
        a.set_password(&u, &p)
            .map_err(|e| ApiError::from(e).about("new"))
    })
    .await
}

/// What applying settings did.
#[derive(Clone, Debug, Serialize)]
pub struct Applied {
    pub changed: Vec<String>,
    pub restart_needed: Vec<String>,
    /// The reload hook's summary, or why it failed.
    pub reload: Result<String, String>,
}

impl Applied {
    /// One sentence for a flash message.
    pub fn summary(&self) -> String {
        if self.changed.is_empty() {
            return "Nothing changed.".into();
        }
        let mut s = format!("Saved: {}.", self.changed.join(", "));
        match &self.reload {
            Ok(m) if !m.is_empty() => s.push_str(&format!(" Applied: {m}.")),
            Ok(_) => s.push_str(" Applied."),
            Err(e) => s.push_str(&format!(" Not applied yet: {e}.")),
        }
        if !self.restart_needed.is_empty() {
            s.push_str(&format!(
                " Takes effect after a restart: {}.",
                self.restart_needed.join(", ")
            ));
        }
        s
    }
}

/// The settings in the file now.
pub async fn read_settings(st: &AppState) -> Result<Settings, ApiError> {
    let path = st.ctx().config_path.clone();
    st.blocking(move |_| Ok(postamt_ops::settings::read_settings(&path)?))
        .await
}

/// Writes `new` into the config file, then applies it (reload hook) and
/// takes the new configuration for this server's own views.
pub async fn apply_settings(st: &AppState, new: Settings) -> Result<Applied, ApiError> {
    let path = st.ctx().config_path.clone();
    let written: SettingsWritten = st
        .blocking(move |_| Ok(postamt_ops::settings::write_settings(&path, &new)?))
        .await?;
    if written.changed.is_empty() {
        return Ok(Applied {
            changed: Vec::new(),
            restart_needed: Vec::new(),
            reload: Ok(String::new()),
        });
    }
    let reload = Arc::clone(&st.ctx().reload);
    let reload = tokio::task::spawn_blocking(move || reload())
        .await
        .unwrap_or_else(|e| Err(format!("the reload failed: {e}")));
    let path = st.ctx().config_path.clone();
    match tokio::task::spawn_blocking(move || postamt_config::load(&path)).await {
        Ok(Ok(c)) => st.set_config(Arc::new(c)),
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot re-read the configuration"),
        Err(e) => tracing::warn!(error = %e, "cannot re-read the configuration"),
    }
    tracing::info!(changed = ?written.changed, restart_needed = ?written.restart_needed, "settings changed from the web admin");
    Ok(Applied {
        changed: written.changed,
        restart_needed: written.restart_needed,
        reload,
    })
}

/// Merges a JSON object of settings fields onto `current`; unknown fields
/// and wrong types are refused naming the field.
pub fn merge_settings(current: &Settings, patch: &serde_json::Value) -> Result<Settings, ApiError> {
    let serde_json::Value::Object(patch) = patch else {
        return Err(ApiError::bad_request(
            "the body must be a JSON object of settings",
        ));
    };
    let mut value =
        serde_json::to_value(current).map_err(|e| ApiError::internal(format!("settings: {e}")))?;
    let serde_json::Value::Object(obj) = &mut value else {
        return Err(ApiError::internal("settings are not an object"));
    };
    for (k, v) in patch {
        if !obj.contains_key(k) {
            return Err(ApiError::field(k, "no such setting"));
        }
        obj.insert(k.clone(), v.clone());
    }
    serde_json::from_value::<Settings>(value.clone()).map_err(|e| {
        // Name the field whose value does not fit.
        let bad = patch
            .iter()
            .find(|(k, v)| {
                let mut probe = serde_json::to_value(current).unwrap_or_default();
                if let serde_json::Value::Object(o) = &mut probe {
                    o.insert((*k).clone(), (*v).clone());
                }
                serde_json::from_value::<Settings>(probe).is_err()
            })
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| "settings".into());
        ApiError::field(&bad, e)
    })
}

/// A log viewer search.
pub async fn search_logs(st: &AppState, query: LogQuery) -> Result<Vec<LogEvent>, ApiError> {
    let dir = st.config().log_dir();
    st.blocking(move |_| Ok(postamt_ops::logs::search(&dir, &query)?))
        .await
}

/// The trace key of a `by`/`key` pair.
pub fn trace_key(by: &str, key: &str) -> Result<TraceKey, ApiError> {
    let key = key.trim();
    if key.is_empty() {
        return Err(ApiError::field("key", "give a value to search for"));
    }
    if key.len() > 998 || key.chars().any(char::is_control) {
        return Err(ApiError::field(
            "key",
            "too long or contains control characters",
        ));
    }
    let k = key.to_owned();
    Ok(match by {
        "queue_id" | "" => TraceKey::QueueId(k),
        "sender" => TraceKey::Sender(k),
        "recipient" => TraceKey::Recipient(k),
        "message_id" => TraceKey::MessageId(k),
        other => {
            return Err(ApiError::field(
                "by",
                format!("`{other}` is not one of queue_id, sender, recipient, message_id"),
            ));
        }
    })
}

/// A message trace.
pub async fn trace(st: &AppState, key: TraceKey) -> Result<Vec<Trace>, ApiError> {
    let dir = st.config().log_dir();
    st.blocking(move |_| Ok(postamt_ops::logs::trace(&dir, &key, TRACE_LIMIT)?))
        .await
}

/// One service's listen addresses, configured and bound.
#[derive(Clone, Debug, Serialize)]
pub struct ServiceView {
    pub name: String,
    pub configured: Vec<String>,
    pub listening: Vec<String>,
}

/// The services as configured and as the running server reports them
/// (`run/listeners.json`).
pub fn services(config: &postamt_config::Config) -> Vec<ServiceView> {
    let bound: BTreeMap<String, Vec<String>> =
        std::fs::read(config.run_dir().join("listeners.json"))
            .ok()
            .filter(|b| b.len() < 1024 * 1024)
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
    config
        .listen
        .entries()
        .iter()
        .map(|(name, addrs)| ServiceView {
            name: (*name).to_owned(),
            configured: (*addrs).clone(),
            listening: bound.get(*name).cloned().unwrap_or_default(),
        })
        .collect()
}

/// One certificate as the TLS page shows it.
#[derive(Clone, Debug, Serialize)]
pub struct CertView {
    pub sni_hostname: Option<String>,
    pub subject: String,
    pub issuer: String,
    pub not_before: i64,
    pub not_after: i64,
    /// Seconds until it expires (negative: expired).
    pub expires_in: i64,
    pub self_signed: bool,
    pub fingerprint: String,
    pub file: Option<String>,
}

/// The certificates the server serves: the configured ones, or the
/// self-signed one the mail listeners use without `[tls]`.
pub fn certificates(st: &AppState) -> Vec<CertView> {
    let now = Utc::now().timestamp();
    st.served_certificates()
        .into_iter()
        .map(|c| CertView {
            expires_in: c.not_after.saturating_sub(now),
            sni_hostname: c.sni_hostname,
            subject: c.subject,
            issuer: c.issuer,
            not_before: c.not_before,
            not_after: c.not_after,
            self_signed: c.self_signed,
            fingerprint: c.fingerprint_sha256,
            file: c.cert_file.map(|p| p.display().to_string()),
        })
        .collect()
}

/// One DNS record: what to publish, and (after a check) what DNS says.
#[derive(Clone, Debug, Serialize)]
pub struct DnsRow {
    pub kind: String,
    pub name: String,
    pub rtype: String,
    pub value: String,
    pub note: Option<String>,
    pub found: Vec<String>,
    pub verdict: Option<postamt_ops::dnscheck::Verdict>,
    pub detail: Option<String>,
}

/// Refuses a domain that is not ours (the DNS page checks only those).
pub fn our_domain(config: &postamt_config::Config, domain: &str) -> Result<String, ApiError> {
    let d = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    if d.is_empty() {
        return Ok(config.primary_domain());
    }
    if !config.is_local_domain(&d) {
        return Err(ApiError::field(
            "domain",
            format!("`{d}` is not one of the domains this server accepts mail for"),
        ));
    }
    Ok(d)
}

/// The records `domain` should publish (MX, SPF, DKIM, DMARC, autoconfig).
pub async fn dns_records(st: &AppState, domain: String) -> Result<Vec<DnsRow>, ApiError> {
    let hostname = st.config().hostname.trim_end_matches('.').to_owned();
    st.blocking(move |a| {
        let mut rows: Vec<DnsRow> = a
            .dns_records(&domain)
            .map_err(|e| ApiError::from(e).about("domain"))?
            .into_iter()
            .map(|r| DnsRow {
                kind: kind_of(&r.name, &r.rtype, &r.value),
                name: r.name,
                rtype: r.rtype,
                value: r.value,
                note: r.note,
                found: Vec::new(),
                verdict: None,
                detail: None,
            })
            .collect();
        if !rows.iter().any(|r| r.name.starts_with("autoconfig.")) {
            rows.push(DnsRow {
                kind: "autoconfig".into(),
                name: format!("autoconfig.{domain}."),
                rtype: "CNAME".into(),
                value: format!("{hostname}."),
                note: Some(
                    "Thunderbird asks http://autoconfig.DOMAIN/mail/config-v1.1.xml: point it at the admin listener's host.".into(),
                ),
                found: Vec::new(),
                verdict: None,
                detail: None,
            });
        }
        Ok(rows)
    })
    .await
}

fn kind_of(name: &str, rtype: &str, value: &str) -> String {
    if rtype == "MX" {
        "MX".into()
    } else if name.contains("._domainkey.") {
        "DKIM".into()
    } else if name.starts_with("_dmarc.") {
        "DMARC".into()
    } else if name.starts_with("autoconfig.") {
        "autoconfig".into()
    } else if value.starts_with("v=spf1") || rtype == "TXT" {
        "SPF".into()
    } else {
        rtype.to_owned()
    }
}

/// Checks the records of `domain` against DNS now.
pub async fn dns_check(st: &AppState, domain: String) -> Result<Vec<DnsRow>, ApiError> {
    let admin = st.admin();
    // Its own task: a failure inside is a 500, not a dropped connection.
    let checks = tokio::spawn(async move { admin.dns_check(&domain).await })
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "DNS check failed");
            ApiError::internal("the DNS check failed; see the server log")
        })??;
    Ok(checks
        .into_iter()
        .map(|c| DnsRow {
            kind: c.kind,
            name: c.name,
            rtype: c.rtype,
            value: c.expected,
            note: None,
            found: c.found,
            verdict: Some(c.verdict),
            detail: c.detail,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_days() {
        assert_eq!(parse_time("since", "").unwrap(), None);
        assert_eq!(parse_time("since", "86400").unwrap(), Some(86400));
        assert_eq!(parse_time("since", "1970-01-02").unwrap(), Some(86400));
        assert_eq!(
            parse_time("since", "1970-01-02 00:01").unwrap(),
            Some(86460)
        );
        assert_eq!(
            parse_time("since", "1970-01-02T00:00:00Z").unwrap(),
            Some(86400)
        );
        let e = parse_time("until", "yesterday").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("until"));
        assert!(parse_day("from", "2030-02-30").is_err());
        assert_eq!(
            parse_day("from", "2030-01-31").unwrap(),
            NaiveDate::from_ymd_opt(2030, 1, 31)
        );
    }

    #[test]
    fn trace_keys() {
        assert_eq!(
            trace_key("sender", " a@b ").unwrap(),
            TraceKey::Sender("a@b".into())
        );
        assert_eq!(
            trace_key("bogus", "x").unwrap_err().field.as_deref(),
            Some("by")
        );
        assert_eq!(
            trace_key("sender", " ").unwrap_err().field.as_deref(),
            Some("key")
        );
    }

    fn settings() -> Settings {
        Settings {
            hostname: "mx.example.org".into(),
            domains: vec!["example.org".into()],
            postmaster: None,
            mailbox_template: None,
            create_mailboxes: true,
            spool_dir: None,
            smarthost: None,
            copy_local_failures_to_postmaster: true,
            log_receiver: true,
            log_delivery: true,
            log_retrieval: true,
            log_level: "info".into(),
        }
    }

    #[test]
    fn settings_patch_merges_and_names_bad_fields() {
        let s = settings();
        let m = merge_settings(&s, &serde_json::json!({"smarthost": "relay.test:25"})).unwrap();
        assert_eq!(m.smarthost.as_deref(), Some("relay.test:25"));
        assert_eq!(m.hostname, "mx.example.org");
        let e = merge_settings(&s, &serde_json::json!({"nope": 1})).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("nope"));
        let e = merge_settings(&s, &serde_json::json!({"create_mailboxes": "yes"})).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("create_mailboxes"));
        assert!(merge_settings(&s, &serde_json::json!([1])).is_err());
    }

    #[test]
    fn record_kinds() {
        assert_eq!(kind_of("example.org.", "MX", "10 mx."), "MX");
        assert_eq!(kind_of("example.org.", "TXT", "v=spf1 mx -all"), "SPF");
        assert_eq!(
            kind_of("postamt._domainkey.example.org.", "TXT", ""),
            "DKIM"
        );
        assert_eq!(kind_of("_dmarc.example.org.", "TXT", "v=DMARC1"), "DMARC");
    }
}
