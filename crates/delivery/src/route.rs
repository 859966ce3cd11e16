//! Where mail for one destination domain goes: the smarthost when one is
//! configured, else the domain's MX hosts in preference order (equal
//! preferences shuffled), or the domain itself when it has no MX (implicit
//! MX), or the address of a domain literal (`user@[192.0.2.1]`). Decides the
//! TLS policy and AUTH, and refuses routes that loop back to us (RFC 5321
//! §5.1: our own name among the MX hosts drops it and every host of equal
//! or higher preference). DNS failures become the failures that bounce
//! (null MX, NXDOMAIN) or wait (SERVFAIL, timeout).

use crate::dns::{DnsError, MxAnswer, MxHost, Resolver, normalize_name};
use crate::failure::Failure;
use postamt_config::{Config, SmarthostTls};
use postamt_smtp_client::{Credentials, TlsPolicy};
use rand::Rng;
use rand::seq::SliceRandom;
use std::net::{IpAddr, SocketAddr};

/// The smarthost: everything remote goes there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Smarthost {
    /// Host name or IP address (no brackets).
    pub host: String,
    pub port: u16,
    pub tls: TlsPolicy,
}

/// A configuration that cannot route mail.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RouteError {
    #[error("invalid smarthost {0:?}: expected host, host:port or [ipv6]:port")]
    BadSmarthost(String),
}

/// Parses `smarthost`: `host`, `host:port`, `ip`, `ip:port`, `[ipv6]` or
/// `[ipv6]:port`. The default port is 25, or 465 with implicit TLS.
pub fn parse_smarthost(s: &str, tls: SmarthostTls) -> Result<Smarthost, RouteError> {
    let tls = match tls {
        SmarthostTls::Starttls => TlsPolicy::RequireStartTls,
        SmarthostTls::Tls => TlsPolicy::Implicit,
        SmarthostTls::Opportunistic => TlsPolicy::Opportunistic,
    };
    let default_port = if tls == TlsPolicy::Implicit { 465 } else { 25 };
    let bad = || RouteError::BadSmarthost(s.to_string());
    let s = s.trim();
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (ip, after) = rest.split_once(']').ok_or_else(bad)?;
        let port = match after {
            "" => default_port,
            p => p
                .strip_prefix(':')
                .and_then(|p| p.parse().ok())
                .ok_or_else(bad)?,
        };
        (ip.to_string(), port)
    } else if s.parse::<IpAddr>().is_ok() {
        (s.to_string(), default_port)
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse::<u16>().map_err(|_| bad())?),
            None => (s.to_string(), default_port),
        }
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let valid_host = host.parse::<IpAddr>().is_ok()
        || (!host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|l| {
                !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            }));
    if !valid_host || port == 0 {
        return Err(bad());
    }
    Ok(Smarthost { host, port, tls })
}

/// The routing part of the configuration.
#[derive(Clone)]
pub struct RouteSettings {
    /// Our host name, lowercase (loop detection).
    pub hostname: String,
    pub smarthost: Option<Smarthost>,
    pub credentials: Option<Credentials>,
    /// Destination domains that need verified STARTTLS (lowercase).
    pub tls_required_domains: Vec<String>,
    /// Port of MX hosts.
    pub remote_port: u16,
    /// Our SMTP listening addresses (loop detection).
    pub own_addresses: Vec<SocketAddr>,
}

impl RouteSettings {
    pub fn from_config(cfg: &Config) -> Result<RouteSettings, RouteError> {
        let d = &cfg.delivery;
        let smarthost = match d.smarthost.as_deref().map(str::trim) {
            Some(s) if !s.is_empty() => Some(parse_smarthost(s, d.smarthost_tls)?),
            _ => None,
        };
        let credentials = match (&d.smarthost_user, &d.smarthost_password) {
            (Some(user), Some(password)) if !user.is_empty() => Some(Credentials {
                user: user.clone(),
                password: password.clone(),
            }),
            _ => None,
        };
        Ok(RouteSettings {
            hostname: normalize_name(&cfg.hostname),
            smarthost,
            credentials,
            tls_required_domains: d
                .tls_required_domains
                .iter()
                .map(|x| normalize_name(x))
                .collect(),
            remote_port: d.remote_port,
            own_addresses: cfg
                .listen
                .smtp
                .iter()
                .filter_map(|a| a.parse().ok())
                .collect(),
        })
    }

    fn requires_tls(&self, domain: &str) -> bool {
        self.tls_required_domains.iter().any(|d| d == domain)
    }
}

/// One host to try, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteHost {
    /// The name to look up, verify and log (or the IP of a literal).
    pub name: String,
    /// Its addresses when known without DNS (IP smarthost, domain literal).
    pub fixed: Option<Vec<IpAddr>>,
}

/// How mail for one domain leaves.
#[derive(Clone)]
pub struct Route {
    pub hosts: Vec<RouteHost>,
    pub port: u16,
    pub tls: TlsPolicy,
    pub credentials: Option<Credentials>,
    /// The domain has no MX: its own address records are used.
    pub implicit: bool,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("hosts", &self.hosts)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field(
                "auth_user",
                &self.credentials.as_ref().map(|c| c.user.as_str()),
            )
            .field("implicit", &self.implicit)
            .finish()
    }
}

/// The failure of a route that loops back to us.
pub fn loop_failure(domain: &str) -> Failure {
    Failure::permanent(
        "5.4.6",
        &format!("mail for {domain} loops back to myself"),
        false,
    )
}

/// What a DNS failure of the MX lookup means for the recipients.
pub fn dns_failure(domain: &str, e: &DnsError) -> Failure {
    match e {
        DnsError::NxDomain(_) => Failure::permanent(
            "5.1.2",
            &format!("domain {domain} does not exist (NXDOMAIN)"),
            false,
        ),
        DnsError::BadName(_) => {
            Failure::permanent("5.1.2", &format!("bad destination domain {domain}"), false)
        }
        DnsError::Temporary(_, why) => Failure::temporary(
            "4.4.3",
            &format!("DNS lookup for {domain} failed: {why}"),
            false,
        ),
    }
}

/// Sorts MX hosts by preference, shuffling hosts of equal preference.
pub fn order_mx(mut hosts: Vec<MxHost>, rng: &mut impl Rng) -> Vec<MxHost> {
    hosts.shuffle(rng);
    // A stable sort keeps the shuffled order within each preference.
    hosts.sort_by_key(|h| h.preference);
    hosts
}

/// RFC 5321 §5.1: when our own name is an MX host, drop it and every host
/// of equal or higher preference; nothing left means a loop.
pub fn drop_self(hosts: Vec<MxHost>, hostname: &str) -> Option<Vec<MxHost>> {
    let own = hosts
        .iter()
        .filter(|h| h.host == hostname)
        .map(|h| h.preference)
        .min();
    let kept: Vec<MxHost> = match own {
        Some(p) => hosts.into_iter().filter(|h| h.preference < p).collect(),
        None => hosts,
    };
    (!kept.is_empty()).then_some(kept)
}

/// Whether connecting to `addr` would reach one of our own SMTP listeners.
pub fn is_own_address(addr: SocketAddr, own: &[SocketAddr]) -> bool {
    own.iter().any(|o| {
        o.port() == addr.port()
            && (o.ip() == addr.ip()
                || (o.ip().is_unspecified()
                    && (addr.ip().is_loopback() || addr.ip().is_unspecified())))
    })
}

/// The IP of a domain literal (`[192.0.2.1]`, `[IPv6:2001:db8::1]`).
pub fn domain_literal(domain: &str) -> Option<IpAddr> {
    let inner = domain.strip_prefix('[')?.strip_suffix(']')?;
    let inner = inner
        .strip_prefix("IPv6:")
        .or_else(|| inner.strip_prefix("ipv6:"))
        .unwrap_or(inner);
    inner.parse().ok()
}

/// The route for `domain` (lowercase, no trailing dot).
pub async fn route(
    domain: &str,
    s: &RouteSettings,
    resolver: &dyn Resolver,
) -> Result<Route, Failure> {
    let required = s.requires_tls(domain);
    if let Some(sh) = &s.smarthost {
        if sh.host == s.hostname {
            return Err(loop_failure(domain));
        }
        let tls = match sh.tls {
            TlsPolicy::Opportunistic if required => TlsPolicy::RequireStartTls,
            t => t,
        };
        let fixed = sh.host.parse::<IpAddr>().ok().map(|ip| vec![ip]);
        return Ok(Route {
            hosts: vec![RouteHost {
                name: sh.host.clone(),
                fixed,
            }],
            port: sh.port,
            tls,
            credentials: s.credentials.clone(),
            implicit: false,
        });
    }
    let tls = if required {
        TlsPolicy::RequireStartTls
    } else {
        TlsPolicy::Opportunistic
    };
    let mut route = Route {
        hosts: Vec::new(),
        port: s.remote_port,
        tls,
        credentials: None,
        implicit: false,
    };
    if let Some(ip) = domain_literal(domain) {
        route.hosts.push(RouteHost {
            name: ip.to_string(),
            fixed: Some(vec![ip]),
        });
        return Ok(route);
    }
    match resolver.mx(domain).await {
        Ok(MxAnswer::Null) => Err(Failure::permanent(
            "5.1.10",
            &format!("domain {domain} accepts no mail (null MX)"),
            false,
        )),
        Ok(MxAnswer::NoMx) => {
            route.implicit = true;
            route.hosts.push(RouteHost {
                name: domain.to_string(),
                fixed: None,
            });
            Ok(route)
        }
        Ok(MxAnswer::Hosts(hosts)) => {
            let hosts = order_mx(hosts, &mut rand::rng());
            let hosts = drop_self(hosts, &s.hostname).ok_or_else(|| loop_failure(domain))?;
            route.hosts = hosts
                .into_iter()
                .map(|h| RouteHost {
                    name: h.host,
                    fixed: None,
                })
                .collect();
            Ok(route)
        }
        Err(e) => Err(dns_failure(domain, &e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn mx(p: u16, h: &str) -> MxHost {
        MxHost {
            preference: p,
            host: h.into(),
        }
    }

    #[test]
    fn smarthosts_parse() {
        let o = SmarthostTls::Opportunistic;
        assert_eq!(
            parse_smarthost("Relay.Example.NET:2525", o).unwrap(),
            Smarthost {
                host: "relay.example.net".into(),
                port: 2525,
                tls: TlsPolicy::Opportunistic
            }
        );
        assert_eq!(parse_smarthost("relay.example.net", o).unwrap().port, 25);
        let t = parse_smarthost("relay.example.net", SmarthostTls::Tls).unwrap();
        assert_eq!((t.port, t.tls), (465, TlsPolicy::Implicit));
        let s = parse_smarthost("relay:587", SmarthostTls::Starttls).unwrap();
        assert_eq!((s.port, s.tls), (587, TlsPolicy::RequireStartTls));
        assert_eq!(parse_smarthost("[::1]:2525", o).unwrap().host, "::1");
        assert_eq!(parse_smarthost("[::1]", o).unwrap().port, 25);
        assert_eq!(
            parse_smarthost("192.0.2.7:26", o).unwrap().host,
            "192.0.2.7"
        );
        assert_eq!(parse_smarthost("2001:db8::1", o).unwrap().port, 25);
        for bad in ["", "relay:x", "relay:0", "[::1", "re lay:25", "relay:99999"] {
            assert!(parse_smarthost(bad, o).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn mx_hosts_sort_by_preference_and_shuffle_ties() {
        let hosts = vec![mx(20, "c"), mx(10, "a"), mx(10, "b"), mx(5, "first")];
        let mut seen_a_first = false;
        let mut seen_b_first = false;
        for seed in 0..64 {
            let o = order_mx(hosts.clone(), &mut StdRng::seed_from_u64(seed));
            let names: Vec<&str> = o.iter().map(|h| h.host.as_str()).collect();
            assert_eq!(names[0], "first");
            assert_eq!(names[3], "c");
            match names[1] {
                "a" => seen_a_first = true,
                "b" => seen_b_first = true,
                x => panic!("{x}"),
            }
        }
        assert!(seen_a_first && seen_b_first, "ties are shuffled");
    }

    #[test]
    fn our_own_mx_drops_itself_and_worse_hosts() {
        let hosts = vec![mx(10, "a"), mx(20, "me.example"), mx(20, "b"), mx(30, "c")];
        let kept = drop_self(hosts, "me.example").unwrap();
        assert_eq!(kept, vec![mx(10, "a")]);
        assert_eq!(
            drop_self(vec![mx(10, "me.example"), mx(20, "b")], "me.example"),
            None
        );
        assert_eq!(
            drop_self(vec![mx(10, "a")], "me.example"),
            Some(vec![mx(10, "a")])
        );
    }

    #[test]
    fn own_addresses_are_recognised() {
        let own: Vec<SocketAddr> = vec![
            "0.0.0.0:25".parse().unwrap(),
            "192.0.2.5:2525".parse().unwrap(),
        ];
        assert!(is_own_address("127.0.0.1:25".parse().unwrap(), &own));
        assert!(is_own_address("192.0.2.5:2525".parse().unwrap(), &own));
        assert!(!is_own_address("192.0.2.9:25".parse().unwrap(), &own));
        assert!(!is_own_address("127.0.0.1:2526".parse().unwrap(), &own));
    }

    #[test]
    fn domain_literals() {
        assert_eq!(
            domain_literal("[192.0.2.1]"),
            Some("192.0.2.1".parse().unwrap())
        );
        assert_eq!(
            domain_literal("[IPv6:2001:db8::1]"),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(domain_literal("example.net"), None);
        assert_eq!(domain_literal("[nonsense]"), None);
    }

    #[test]
    fn dns_failures_map_to_status_codes() {
        let f = dns_failure("x.invalid", &DnsError::NxDomain("x.invalid".into()));
        assert_eq!((f.status.as_str(), f.is_permanent()), ("5.1.2", true));
        let f = dns_failure(
            "x.net",
            &DnsError::Temporary("x.net".into(), "SERVFAIL".into()),
        );
        assert_eq!((f.status.as_str(), f.is_permanent()), ("4.4.3", false));
        assert!(f.text.contains("SERVFAIL"));
    }
}
