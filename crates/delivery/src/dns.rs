//! DNS for remote delivery: the MX records of a destination domain and the
//! addresses of a mail host, behind the `Resolver` trait (the unit tests use
//! a table), with the real implementation on hickory-resolver configured
//! from `[dns] nameservers` or the system's resolver configuration.
//!
//! The answers keep apart what routing must treat differently: MX records,
//! no MX at all (implicit MX, RFC 5321 §5.1), a null MX (RFC 7505), a domain
//! that does not exist (NXDOMAIN) and a lookup that failed for now
//! (SERVFAIL, timeout, no nameserver reachable).

use hickory_resolver::config::{LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::{Resolver as HickoryInner, TokioResolver};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::time::Duration;

/// A boxed future, so that the traits of this crate stay object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Per-query timeout of the real resolver.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// Tries per query (per nameserver pool) of the real resolver.
pub const QUERY_ATTEMPTS: usize = 2;
/// At most this many MX records are used from one answer.
pub const MAX_MX_RECORDS: usize = 16;
/// At most this many addresses are used for one host.
pub const MAX_ADDRESSES: usize = 16;

/// One MX record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MxHost {
    pub preference: u16,
    /// The exchange, lowercase, without the trailing dot.
    pub host: String,
}

/// What the MX lookup of a domain found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MxAnswer {
    /// MX records (unsorted, as received).
    Hosts(Vec<MxHost>),
    /// The domain exists but has no MX: deliver to its own A/AAAA.
    NoMx,
    /// RFC 7505 null MX (`MX 0 .`): the domain accepts no mail.
    Null,
}

/// Why a lookup failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// The name does not exist.
    #[error("{0}: domain not found (NXDOMAIN)")]
    NxDomain(String),
    /// A failure that may pass (SERVFAIL, timeout, no nameserver).
    #[error("{0}: DNS lookup failed: {1}")]
    Temporary(String, String),
    /// The name is not a valid domain name.
    #[error("{0}: not a valid domain name")]
    BadName(String),
}

/// MX and address lookups.
pub trait Resolver: Send + Sync {
    /// The MX records of `domain`.
    fn mx<'a>(&'a self, domain: &'a str) -> BoxFuture<'a, Result<MxAnswer, DnsError>>;
    /// The IPv4 and IPv6 addresses of `host` (empty when it has none).
    fn addresses<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<Vec<IpAddr>, DnsError>>;
}

/// Normalises a DNS name: lowercase, no trailing dot.
pub fn normalize_name(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Classifies MX records (preference, exchange) into an answer: a sole
/// record whose exchange is the root (`.`) is a null MX; root exchanges
/// mixed with real ones are ignored (RFC 7505 §3: a misconfiguration).
pub fn mx_answer(records: Vec<(u16, String)>) -> MxAnswer {
    if records.is_empty() {
        return MxAnswer::NoMx;
    }
    let is_root = |h: &str| h.is_empty() || h == ".";
    if records.len() == 1 && is_root(&records[0].1) {
        return MxAnswer::Null;
    }
    let hosts: Vec<MxHost> = records
        .into_iter()
        .filter(|(_, h)| !is_root(h))
        .take(MAX_MX_RECORDS)
        .map(|(preference, h)| MxHost {
            preference,
            host: normalize_name(&h),
        })
        .collect();
    if hosts.is_empty() {
        MxAnswer::Null
    } else {
        MxAnswer::Hosts(hosts)
    }
}

/// Why the real resolver could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum DnsSetupError {
    #[error("invalid [dns] nameserver {0:?}: expected ip:port")]
    BadNameserver(String),
    #[error("cannot read the system's resolver configuration: {0}")]
    System(String),
    #[error("cannot build the DNS resolver: {0}")]
    Build(String),
}

/// Parses one `[dns] nameservers` entry: `ip:port`, `[v6]:port`, or a bare
/// IP (port 53).
pub fn parse_nameserver(s: &str) -> Result<SocketAddr, DnsSetupError> {
    let s = s.trim();
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    s.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| DnsSetupError::BadNameserver(s.to_string()))
}

/// The real resolver (hickory, over UDP with TCP fallback).
pub struct HickoryResolver {
    inner: TokioResolver,
}

impl HickoryResolver {
    /// A resolver asking `nameservers` (UDP and TCP, no search domains,
    /// short timeouts), or the system's configuration when the list is empty.
    pub fn new(nameservers: &[String]) -> Result<HickoryResolver, DnsSetupError> {
        let mut builder = if nameservers.is_empty() {
            HickoryInner::builder(TokioRuntimeProvider::default())
                .map_err(|e| DnsSetupError::System(e.to_string()))?
        } else {
            let mut servers = Vec::with_capacity(nameservers.len());
            for s in nameservers {
                let addr = parse_nameserver(s)?;
                let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                for c in &mut ns.connections {
                    c.port = addr.port();
                }
                servers.push(ns);
            }
            HickoryInner::builder_with_config(
                ResolverConfig::from_name_servers(servers),
                TokioRuntimeProvider::default(),
            )
        };
        let opts = builder.options_mut();
        opts.timeout = QUERY_TIMEOUT;
        opts.attempts = QUERY_ATTEMPTS;
        opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        // Mail routing follows the DNS, not /etc/hosts, and names are
        // always absolute (no search domains).
        opts.use_hosts_file = ResolveHosts::Never;
        opts.ndots = 0;
        let inner = builder
            .build()
            .map_err(|e| DnsSetupError::Build(e.to_string()))?;
        Ok(HickoryResolver { inner })
    }
}

/// The absolute form of `name` (trailing dot: no search list applies).
fn fqdn(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

/// Maps a hickory error: NXDOMAIN is definitive, "no records" is reported
/// as `None` (the name exists without records of that type), the rest is
/// temporary.
fn classify(name: &str, e: &NetError) -> Result<(), DnsError> {
    if e.is_nx_domain() {
        Err(DnsError::NxDomain(name.to_string()))
    } else if e.is_no_records_found() {
        Ok(())
    } else {
        Err(DnsError::Temporary(name.to_string(), e.to_string()))
    }
}

/// Whether `name` can be asked for at all (letters, digits, hyphens,
/// underscores and dots; labels of 1-63, at most 253 characters).
fn valid_name(name: &str) -> bool {
    let name = name.trim_end_matches('.');
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

impl Resolver for HickoryResolver {
    fn mx<'a>(&'a self, domain: &'a str) -> BoxFuture<'a, Result<MxAnswer, DnsError>> {
        Box::pin(async move {
            if !valid_name(domain) {
                return Err(DnsError::BadName(domain.to_string()));
            }
            match self.inner.lookup(fqdn(domain), RecordType::MX).await {
                Ok(lookup) => {
                    let records = lookup
                        .answers()
                        .iter()
                        .filter_map(|r| match &r.data {
                            RData::MX(mx) => Some((mx.preference, mx.exchange.to_ascii())),
                            _ => None,
                        })
                        .collect();
                    Ok(mx_answer(records))
                }
                Err(e) => classify(domain, &e).map(|()| MxAnswer::NoMx),
            }
        })
    }

    fn addresses<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<Vec<IpAddr>, DnsError>> {
        Box::pin(async move {
            if !valid_name(host) {
                return Err(DnsError::BadName(host.to_string()));
            }
            match self.inner.lookup_ip(fqdn(host)).await {
                Ok(ips) => {
                    let mut v: Vec<IpAddr> = Vec::new();
                    for ip in ips.iter() {
                        if !v.contains(&ip) {
                            v.push(ip);
                        }
                        if v.len() == MAX_ADDRESSES {
                            break;
                        }
                    }
                    Ok(v)
                }
                Err(e) => classify(host, &e).map(|()| Vec::new()),
            }
        })
    }
}

/// A resolver that always fails temporarily: used when the real one cannot
/// be set up, so remote mail waits in the queue with the reason.
pub struct BrokenResolver(pub String);

impl Resolver for BrokenResolver {
    fn mx<'a>(&'a self, domain: &'a str) -> BoxFuture<'a, Result<MxAnswer, DnsError>> {
        Box::pin(async move { Err(DnsError::Temporary(domain.to_string(), self.0.clone())) })
    }
    fn addresses<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<Vec<IpAddr>, DnsError>> {
        Box::pin(async move { Err(DnsError::Temporary(host.to_string(), self.0.clone())) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mx_answers_are_classified() {
        assert_eq!(mx_answer(vec![]), MxAnswer::NoMx);
        assert_eq!(mx_answer(vec![(0, ".".into())]), MxAnswer::Null);
        assert_eq!(mx_answer(vec![(0, "".into())]), MxAnswer::Null);
        assert_eq!(
            mx_answer(vec![(10, "MX1.Example.NET.".into()), (0, ".".into())]),
            MxAnswer::Hosts(vec![MxHost {
                preference: 10,
                host: "mx1.example.net".into()
            }]),
            "a root exchange beside real ones is ignored"
        );
        let many: Vec<(u16, String)> = (0..100).map(|i| (i, format!("mx{i}.x.net"))).collect();
        match mx_answer(many) {
            MxAnswer::Hosts(h) => assert_eq!(h.len(), MAX_MX_RECORDS),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn nameservers_parse() {
        assert_eq!(
            parse_nameserver("127.0.0.1:5353").unwrap(),
            "127.0.0.1:5353".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            parse_nameserver("[::1]:53").unwrap(),
            "[::1]:53".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            parse_nameserver("192.0.2.53").unwrap(),
            "192.0.2.53:53".parse::<SocketAddr>().unwrap()
        );
        assert!(parse_nameserver("dns.example.net:53").is_err());
    }

    #[test]
    fn names_are_checked_before_asking() {
        assert!(valid_name("mx.example.net"));
        assert!(valid_name("mx.example.net."));
        assert!(valid_name("_dmarc.example.net"));
        assert!(!valid_name(""));
        assert!(!valid_name("a..b"));
        assert!(!valid_name("bad name.net"));
        assert!(!valid_name(&"a".repeat(64)));
    }
}
