//! Checks that go beyond types: addresses parse, names are sane, templates are safe.

use crate::Config;
use std::net::SocketAddr;

/// Returns `(key, reason)` for the first invalid value.
pub(crate) fn validate(c: &Config) -> Result<(), (String, String)> {
    if !is_domain(&c.hostname) {
        return Err((
            "hostname".into(),
            format!("`{}` is not a valid host name", c.hostname),
        ));
    }
    for (i, d) in c.domains.iter().enumerate() {
        if !is_domain(d) {
            return Err((
                format!("domains[{i}]"),
                format!("`{d}` is not a valid domain"),
            ));
        }
    }
    if let Some(p) = &c.postmaster {
        match p.rsplit_once('@') {
            Some((l, d)) if !l.is_empty() && is_domain(d) => {}
            _ => {
                return Err((
                    "postmaster".into(),
                    format!("`{p}` is not an address local@domain"),
                ));
            }
        }
    }
    if let Some(t) = &c.mailbox_template
        && !t.contains("%u")
    {
        return Err((
            "mailbox_template".into(),
            "must contain %u, or every user would share one mailbox".into(),
        ));
    }
    for (name, list) in c.listen.entries() {
        for (i, a) in list.iter().enumerate() {
            if a.parse::<SocketAddr>().is_err() {
                return Err((
                    format!("listen.{name}[{i}]"),
                    format!("`{a}` is not an address ip:port (e.g. \"0.0.0.0:25\" or \"[::]:25\")"),
                ));
            }
        }
    }
    // The web admin carries passwords and session cookies: plain HTTP
    // only where nothing leaves the machine, unless the admin opts in.
    if c.tls.cert.is_none() && !c.admin.allow_plaintext_http {
        for (i, a) in c.listen.admin.iter().enumerate() {
            if let Ok(addr) = a.parse::<SocketAddr>()
                && !addr.ip().to_canonical().is_loopback()
            {
                return Err((
                    format!("listen.admin[{i}]"),
                    format!(
                        "`{a}` is not a loopback address, and without [tls] cert/key the web admin \
                         would serve passwords over plain HTTP; set [tls] cert and key (HTTPS), or \
                         listen on 127.0.0.1 (or, behind a TLS proxy on a trusted network, set \
                         [admin] allow_plaintext_http = true)"
                    ),
                ));
            }
        }
    }
    for (i, a) in c.dns.nameservers.iter().enumerate() {
        if a.parse::<SocketAddr>().is_err() {
            return Err((
                format!("dns.nameservers[{i}]"),
                format!("`{a}` is not an address ip:port"),
            ));
        }
    }
    if let Some(h) = &c.delivery.smarthost {
        let ok = match h.rsplit_once(':') {
            Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok(),
            None => is_domain(h),
        };
        if !ok {
            return Err((
                "delivery.smarthost".into(),
                format!("`{h}` is not host or host:port"),
            ));
        }
    }
    if c.delivery.retry_intervals.is_empty() {
        return Err((
            "delivery.retry_intervals".into(),
            "needs at least one interval".into(),
        ));
    }
    if c.delivery.retry_intervals.iter().any(|d| d.0.is_zero()) {
        return Err((
            "delivery.retry_intervals".into(),
            "intervals must be above zero".into(),
        ));
    }
    if c.delivery.max_connections == 0 || c.delivery.max_connections_per_domain == 0 {
        return Err((
            "delivery.max_connections".into(),
            "must be at least 1".into(),
        ));
    }
    if !is_domain(&c.dkim.selector) {
        return Err((
            "dkim.selector".into(),
            format!("`{}` is not a valid DNS label", c.dkim.selector),
        ));
    }
    if c.limits.max_message_size < 1024 {
        return Err((
            "limits.max_message_size".into(),
            "must be at least 1024 bytes".into(),
        ));
    }
    if c.limits.max_recipients == 0 {
        return Err(("limits.max_recipients".into(), "must be at least 1".into()));
    }
    if c.limits.max_connections == 0 || c.limits.max_connections_per_ip == 0 {
        return Err(("limits.max_connections".into(), "must be at least 1".into()));
    }
    if c.limits.idle_timeout.0.is_zero() {
        return Err(("limits.idle_timeout".into(), "must be above zero".into()));
    }
    if !["error", "warn", "info", "debug", "trace"].contains(&c.logging.level.as_str()) {
        return Err((
            "logging.level".into(),
            format!(
                "`{}` is not one of error, warn, info, debug, trace",
                c.logging.level
            ),
        ));
    }
    for (i, e) in c.tls.sni.iter().enumerate() {
        if !is_domain(&e.hostname) {
            return Err((
                format!("tls.sni[{i}].hostname"),
                format!("`{}` is not a host name", e.hostname),
            ));
        }
    }
    if c.tls.cert.is_some() != c.tls.key.is_some() {
        return Err(("tls".into(), "cert and key must be set together".into()));
    }
    Ok(())
}

/// A DNS name: dot-separated labels of letters, digits and hyphens.
pub(crate) fn is_domain(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use crate::{ConfigError, parse};
    use std::path::Path;

    fn err(text: &str) -> String {
        match parse(text, Path::new("/etc/postamt.toml")) {
            Err(e @ ConfigError::Key { .. }) | Err(e @ ConfigError::Syntax { .. }) => e.to_string(),
            Err(e) => panic!("unexpected {e}"),
            Ok(_) => panic!("accepted: {text}"),
        }
    }

    #[test]
    fn full_contract_example_parses() {
        let text = r#"
hostname = "mx.example.org"
domains = ["example.org"]
postmaster = "postmaster@example.org"
data_dir = "/var/lib/postamt"
mailbox_template = "/var/lib/postamt/mailboxes/%u"
create_mailboxes = true
[listen]
smtp = ["0.0.0.0:25"]
submission = ["0.0.0.0:587"]
submissions = ["0.0.0.0:465"]
pop3 = ["0.0.0.0:110"]
pop3s = ["0.0.0.0:995"]
imap = ["0.0.0.0:143"]
imaps = ["0.0.0.0:993"]
admin = ["127.0.0.1:8080"]
[delivery]
smarthost = "relay.example.net:25"
smarthost_user = "u"
smarthost_password = "p"
smarthost_tls = "starttls"
tls_required_domains = []
tls_ca_file = "/etc/postamt/extra-ca.pem"
remote_port = 25
retry_intervals = ["1m", "5m", "15m", "1h", "4h"]
give_up_after = "5d"
delay_warning_after = "4h"
copy_local_failures_to_postmaster = true
[limits]
max_message_size = 52428800
max_recipients = 1000
max_errors = 20
max_connections = 1000
max_connections_per_ip = 50
idle_timeout = "5m"
[logging]
dir = "/var/lib/postamt/logs"
receiver = true
delivery = true
retrieval = true
[dns]
nameservers = ["127.0.0.1:53"]
[tls]
cert = "/etc/postamt/cert.pem"
key = "/etc/postamt/key.pem"
"#;
        let c = parse(text, Path::new("x.toml")).unwrap();
        assert_eq!(c.limits.idle_timeout.0.as_secs(), 300);
        assert_eq!(c.delivery.retry_delay(1).as_secs(), 60);
        assert_eq!(c.delivery.retry_delay(99).as_secs(), 4 * 3600);
        assert!(c.is_local_domain("EXAMPLE.org"));
        assert!(c.is_local_domain("mx.example.org"));
        assert!(!c.is_local_domain("example.com"));
    }

    #[test]
    fn unknown_key_names_file_and_key() {
        let e = err("[limits]\nmax_mesage_size = 5\n");
        assert!(
            e.starts_with("/etc/postamt.toml: key `limits.max_mesage_size`"),
            "{e}"
        );
        assert!(e.contains("unknown field"), "{e}");
    }

    #[test]
    fn wrong_type_names_key() {
        let e = err("[limits]\nmax_recipients = \"many\"\n");
        assert!(e.contains("key `limits.max_recipients`"), "{e}");
    }

    #[test]
    fn bad_duration_names_key_and_reason() {
        let e = err("[limits]\nidle_timeout = \"5\"\n");
        assert!(
            e.contains("key `limits.idle_timeout`") && e.contains("no unit"),
            "{e}"
        );
    }

    #[test]
    fn admin_off_loopback_needs_tls() {
        let e = err("[listen]\nadmin = [\"0.0.0.0:8080\"]\n");
        assert!(e.contains("key `listen.admin[0]`"), "{e}");
        assert!(e.contains("[tls]"), "{e}");
        let ok = "[listen]\nadmin = [\"[::1]:8080\", \"127.0.0.2:8080\"]\n";
        assert!(parse(ok, Path::new("/etc/postamt.toml")).is_ok());
        let tls =
            "[listen]\nadmin = [\"0.0.0.0:8080\"]\n[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n";
        assert!(parse(tls, Path::new("/etc/postamt.toml")).is_ok());
    }

    #[test]
    fn admin_plaintext_http_off_loopback_is_an_explicit_opt_in() {
        let c = parse("data_dir = \"/d\"\n", Path::new("x.toml")).unwrap();
        assert!(!c.admin.allow_plaintext_http, "off by default");
        let e =
            err("[listen]\nadmin = [\"192.0.2.1:8080\"]\n[admin]\nallow_plaintext_http = false\n");
        assert!(e.contains("key `listen.admin[0]`"), "{e}");
        assert!(
            e.contains("allow_plaintext_http"),
            "the error names the opt-in: {e}"
        );
        let ok = "[listen]\nadmin = [\"0.0.0.0:8080\", \"[::]:8081\"]\n[admin]\nallow_plaintext_http = true\n";
        let c = parse(ok, Path::new("/etc/postamt.toml")).unwrap();
        assert!(c.admin.allow_plaintext_http);
        let e = err("[admin]\nallow_plaintext_http = \"yes\"\n");
        assert!(e.contains("key `admin.allow_plaintext_http`"), "{e}");
        let e = err("[admin]\nallow_plaintext = true\n");
        assert!(e.contains("key `admin.allow_plaintext`"), "{e}");
    }

    #[test]
    fn bad_listen_address() {
        let e = err("[listen]\nsmtp = [\"localhost\"]\n");
        assert!(e.contains("key `listen.smtp[0]`"), "{e}");
    }

    #[test]
    fn template_without_user_is_refused() {
        let e = err("mailbox_template = \"/srv/mail\"\n");
        assert!(e.contains("mailbox_template"), "{e}");
    }

    #[test]
    fn syntax_error_names_file() {
        let e = err("hostname = \n");
        assert!(e.starts_with("/etc/postamt.toml: invalid TOML"), "{e}");
    }

    #[test]
    fn defaults_are_sane() {
        let c = parse("data_dir = \"/d\"\n", Path::new("x.toml")).unwrap();
        assert_eq!(c.mailbox_template(), "/d/mailboxes/%u");
        assert_eq!(c.postmaster_address(), "postmaster@localhost");
        assert_eq!(c.spool_dir(), Path::new("/d/spool"));
    }
}
