//! Thunderbird autoconfig (`config-v1.1.xml`): the IMAP, POP3 and
//! submission servers of this installation, with the ports the server
//! really listens on (`run/listeners.json`) or else the configured ones.
//! Pure: building the XML needs only the config and the bound addresses.

use postamt_config::Config;
use std::collections::BTreeMap;

/// The port of an address such as `0.0.0.0:993` or `[::]:993`.
fn port_of(addr: &str) -> Option<u16> {
    addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok())
}

/// The first usable port of a service: a bound one, else a configured
/// non-zero one.
fn service_port(config: &Config, bound: &BTreeMap<String, Vec<String>>, name: &str) -> Option<u16> {
    if let Some(p) = bound
        .get(name)
        .and_then(|v| v.iter().find_map(|a| port_of(a)))
        .filter(|p| *p != 0)
    {
        return Some(p);
    }
    config
        .listen
        .entries()
        .iter()
        .find(|(n, _)| *n == name)
        .and_then(|(_, addrs)| addrs.iter().find_map(|a| port_of(a)))
        .filter(|p| *p != 0)
}

/// Escapes text for XML content and attributes.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// The domain to describe: the address's domain when it is ours, else
/// the primary domain.
pub fn domain_for(config: &Config, email: Option<&str>) -> String {
    email
        .and_then(|e| e.rsplit_once('@'))
        .map(|(_, d)| d.trim().trim_end_matches('.').to_ascii_lowercase())
        .filter(|d| config.is_local_domain(d))
        .unwrap_or_else(|| config.primary_domain())
}

/// The autoconfig document.
pub fn document(
    config: &Config,
    bound: &BTreeMap<String, Vec<String>>,
    email: Option<&str>,
) -> String {
    let domain = xml_escape(&domain_for(config, email));
    let host = xml_escape(config.hostname.trim_end_matches('.'));
    let server = |tag: &str, kind: &str, service: &str, socket: &str| -> String {
        match service_port(config, bound, service) {
            Some(port) => format!(
                "    <{tag} type=\"{kind}\">\n      <hostname>{host}</hostname>\n      <port>{port}</port>\n      <socketType>{socket}</socketType>\n      <authentication>password-cleartext</authentication>\n      <username>%EMAILLOCALPART%</username>\n    </{tag}>\n"
            ),
            None => String::new(),
        }
    };
    let mut out = String::new();
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<clientConfig version=\"1.1\">\n");
    out.push_str(&format!("  <emailProvider id=\"{domain}\">\n"));
    out.push_str(&format!("    <domain>{domain}</domain>\n"));
    out.push_str(&format!("    <displayName>{domain} mail</displayName>\n"));
    out.push_str(&format!(
        "    <displayShortName>{domain}</displayShortName>\n"
    ));
    // Best first: implicit TLS, then STARTTLS.
    out.push_str(&server("incomingServer", "imap", "imaps", "SSL"));
    out.push_str(&server("incomingServer", "imap", "imap", "STARTTLS"));
    out.push_str(&server("incomingServer", "pop3", "pop3s", "SSL"));
    out.push_str(&server("incomingServer", "pop3", "pop3", "STARTTLS"));
    out.push_str(&server("outgoingServer", "smtp", "submissions", "SSL"));
    out.push_str(&server("outgoingServer", "smtp", "submission", "STARTTLS"));
    out.push_str("  </emailProvider>\n</clientConfig>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let mut c = Config {
            hostname: "mx.example.org".into(),
            domains: vec!["example.org".into(), "example.net".into()],
            ..Config::default()
        };
        c.listen.imaps = vec!["0.0.0.0:993".into()];
        c.listen.pop3s = vec!["[::]:995".into()];
        c.listen.pop3 = vec!["0.0.0.0:110".into()];
        c.listen.submission = vec!["0.0.0.0:587".into()];
        c.listen.submissions = vec!["0.0.0.0:0".into()];
        c
    }

    #[test]
    fn names_the_configured_and_bound_ports() {
        let mut bound = BTreeMap::new();
        bound.insert(
            "submissions".to_string(),
            vec!["127.0.0.1:40465".to_string()],
        );
        let x = document(&config(), &bound, Some("alice@EXAMPLE.net"));
        assert!(x.contains("<domain>example.net</domain>"), "{x}");
        assert!(x.contains("<hostname>mx.example.org</hostname>"));
        assert!(x.contains("<port>993</port>\n      <socketType>SSL</socketType>"));
        assert!(x.contains("<port>995</port>"));
        assert!(x.contains("<port>110</port>\n      <socketType>STARTTLS</socketType>"));
        assert!(x.contains("<port>587</port>"));
        assert!(x.contains("<port>40465</port>"), "bound port wins over :0");
        assert!(!x.contains("<port>143</port>"), "imap is not configured");
        assert!(!x.contains("<port>0</port>"));
    }

    #[test]
    fn foreign_or_missing_address_gives_the_primary_domain() {
        let c = config();
        assert_eq!(domain_for(&c, Some("x@evil.test")), "example.org");
        assert_eq!(domain_for(&c, None), "example.org");
        assert_eq!(domain_for(&c, Some("no-at-sign")), "example.org");
    }

    #[test]
    fn escapes() {
        assert_eq!(xml_escape("a<b>&\"'\n"), "a&lt;b&gt;&amp;&quot;&apos;");
    }
}
