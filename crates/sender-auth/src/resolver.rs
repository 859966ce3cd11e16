//! The DNS resolver behind the checks: mail-auth's `MessageAuthenticator`
//! (hickory-resolver) on the `[dns] nameservers` (UDP, TCP on truncation) or
//! the system configuration, with short, bounded query timeouts.

use crate::SenderAuthError;
use mail_auth::MessageAuthenticator;
use mail_auth::hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts,
};
use mail_auth::hickory_resolver::system_conf::read_system_conf;
use postamt_config::Config;
use std::net::SocketAddr;
use std::time::Duration;

/// How long one query waits for an answer from one nameserver.
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// A resolver for mail-auth's checks (and for anything else that wants the
/// configured DNS: `authenticator.resolver()` is a hickory `TokioResolver`).
/// Each query waits at most `query_timeout` per attempt, with one retry.
pub fn build_authenticator(
    config: &Config,
    query_timeout: Duration,
) -> Result<MessageAuthenticator, SenderAuthError> {
    let (resolver_config, mut opts) = if config.dns.nameservers.is_empty() {
        read_system_conf().map_err(|e| {
            SenderAuthError::Resolver(format!(
                "cannot read the system's resolver configuration: {e}"
            ))
        })?
    } else {
        let mut servers = Vec::with_capacity(config.dns.nameservers.len());
        for ns in &config.dns.nameservers {
            let addr: SocketAddr = ns
                .trim()
                .parse()
                .map_err(|_| SenderAuthError::BadNameserver(ns.clone()))?;
            servers.push(name_server(addr));
        }
        (
            ResolverConfig::from_name_servers(servers),
            ResolverOpts::default(),
        )
    };
    opts.timeout = query_timeout;
    opts.attempts = 2;
    MessageAuthenticator::new(resolver_config, opts)
        .map_err(|e| SenderAuthError::Resolver(e.to_string()))
}

/// A nameserver at `addr`: UDP first, TCP when an answer is truncated.
fn name_server(addr: SocketAddr) -> NameServerConfig {
    let mut udp = ConnectionConfig::udp();
    udp.port = addr.port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = addr.port();
    NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
}
