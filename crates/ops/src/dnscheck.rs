//! The DNS page's live check: for each record Postamt asks an admin to
//! publish (MX, SPF, DKIM, DMARC, autoconfig), what DNS actually answers
//! and whether it is ok, missing or wrong.
//!
//! The verdicts are pure functions of the expected value and the answer
//! ([`judge_mx`] and friends, tested without DNS); [`Admin::dns_check`]
//! only does the lookups (hickory, the `[dns]` nameservers, each lookup
//! bounded by [`LOOKUP_TIMEOUT`]).

use crate::{Admin, OpsError};
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::{Resolver, TokioResolver};
use postamt_sender_auth::DnsRecord;
use serde::Serialize;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The verdict on one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    Missing,
    Wrong,
    /// The lookup failed (timeout, SERVFAIL): unknown.
    Unknown,
}

/// One record: what to publish and what DNS says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RecordCheck {
    /// `MX`, `SPF`, `DKIM`, `DMARC`, `autoconfig`.
    pub kind: String,
    /// Owner name (e.g. `example.org.`, `postamt._domainkey.example.org.`).
    pub name: String,
    /// Record type (MX, TXT, CNAME, A).
    pub rtype: String,
    /// The value to publish.
    pub expected: String,
    /// What DNS answered (each record as text).
    pub found: Vec<String>,
    pub verdict: Verdict,
    /// Why, in a sentence, when not ok.
    pub detail: Option<String>,
}

/// One lookup's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer<T> {
    /// Records of the asked type.
    Found(Vec<T>),
    /// None: the name does not exist or has no record of that type.
    Nothing,
    /// The lookup failed (timeout, SERVFAIL...): why.
    Failed(String),
}

/// The longest wait for one lookup.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(4);
/// Records of one answer looked at.
const MAX_RECORDS: usize = 32;

/// A verdict and its detail.
type Judged = (Verdict, Option<String>);

fn ok() -> Judged {
    (Verdict::Ok, None)
}

fn not_ok(v: Verdict, detail: impl Into<String>) -> Judged {
    (v, Some(detail.into()))
}

/// Lowercase, no trailing dot.
fn norm(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

fn failed(why: &str) -> Judged {
    not_ok(Verdict::Unknown, format!("the lookup failed: {why}"))
}

/// The `autoconfig.DOMAIN` record that lets Thunderbird find the server.
pub fn autoconfig_record(hostname: &str, domain: &str) -> DnsRecord {
    let host = norm(hostname);
    let domain = norm(domain);
    DnsRecord {
        name: format!("autoconfig.{domain}."),
        rtype: "CNAME".into(),
        value: format!("{host}."),
        note: Some(format!(
            "Autoconfig: Thunderbird fetches the account settings from https://autoconfig.{domain}/ (or an A record with {host}'s address)."
        )),
    }
}

/// MX: ok when an MX record names `expected` (`10 mx.example.org.`).
pub fn judge_mx(expected: &str, answer: &Answer<(u16, String)>) -> Judged {
    let want = norm(expected.split_whitespace().last().unwrap_or(""));
    match answer {
        Answer::Failed(why) => failed(why),
        Answer::Nothing => not_ok(
            Verdict::Missing,
            "no MX record: other servers cannot find where to deliver",
        ),
        Answer::Found(mx) if mx.is_empty() => not_ok(
            Verdict::Missing,
            "no MX record: other servers cannot find where to deliver",
        ),
        Answer::Found(mx) => {
            let hosts: Vec<String> = mx.iter().map(|(_, h)| norm(h)).collect();
            if hosts.iter().all(|h| h.is_empty()) {
                return not_ok(
                    Verdict::Wrong,
                    "a null MX (`0 .`): the domain says it accepts no mail",
                );
            }
            if hosts.contains(&want) {
                ok()
            } else {
                not_ok(
                    Verdict::Wrong,
                    format!("the MX records name {}, not {want}", hosts.join(", ")),
                )
            }
        }
    }
}

/// The records starting with `v=<tag>` (case-insensitive).
fn tagged<'a>(records: &'a [String], version: &str) -> Vec<&'a String> {
    records
        .iter()
        .filter(|r| {
            let r = r.trim_start();
            r.len() >= version.len() && r[..version.len()].eq_ignore_ascii_case(version)
        })
        .collect()
}

fn collapse(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase()
}

/// SPF: exactly one `v=spf1` record, allowing the MX hosts.
pub fn judge_spf(expected: &str, answer: &Answer<String>) -> Judged {
    let records = match answer {
        Answer::Failed(why) => return failed(why),
        Answer::Nothing => return not_ok(Verdict::Missing, "no SPF record (TXT v=spf1)"),
        Answer::Found(r) => r,
    };
    let spf = tagged(records, "v=spf1");
    match spf.as_slice() {
        [] => not_ok(Verdict::Missing, "no SPF record (TXT v=spf1)"),
        [one] => {
            if collapse(one) == collapse(expected) {
                return ok();
            }
            let allows_mx = one.split_whitespace().any(|t| {
                let t = t.trim_start_matches(['+']).to_ascii_lowercase();
                t == "mx" || t.starts_with("mx:") || t.starts_with("mx/")
            });
            if allows_mx {
                (
                    Verdict::Ok,
                    Some("differs from the suggestion but allows the MX hosts".into()),
                )
            } else {
                not_ok(
                    Verdict::Wrong,
                    "the SPF record has no `mx` mechanism: check that it allows this server",
                )
            }
        }
        _ => not_ok(
            Verdict::Wrong,
            "several SPF records: receivers treat that as an error (permerror); merge them into one",
        ),
    }
}

/// The `p=` tag of a DKIM key record, whitespace removed.
fn dkim_key(record: &str) -> Option<String> {
    record.split(';').find_map(|tag| {
        let (k, v) = tag.split_once('=')?;
        (k.trim() == "p").then(|| v.split_whitespace().collect())
    })
}

/// DKIM: a key record whose public key is the one this server signs with.
/// An empty `expected` means the server has no key yet.
pub fn judge_dkim(expected: &str, answer: &Answer<String>) -> Judged {
    let records = match answer {
        Answer::Failed(why) => return failed(why),
        Answer::Nothing => &Vec::new(),
        Answer::Found(r) => r,
    };
    let keys: Vec<String> = records.iter().filter_map(|r| dkim_key(r)).collect();
    if expected.is_empty() {
        return if keys.is_empty() {
            not_ok(
                Verdict::Missing,
                "no DKIM key yet: run `postamt dkim generate DOMAIN`, then publish its record",
            )
        } else {
            not_ok(
                Verdict::Wrong,
                "DNS publishes a key for this selector but this server has none: generate it or change [dkim] selector",
            )
        };
    }
    let Some(want) = dkim_key(expected) else {
        return not_ok(Verdict::Unknown, "the expected record has no p= tag");
    };
    if keys.is_empty() {
        not_ok(Verdict::Missing, "no DKIM key record at this name")
    } else if keys.contains(&want) {
        ok()
    } else {
        not_ok(
            Verdict::Wrong,
            "the published public key is not the one this server signs with",
        )
    }
}

/// DMARC: exactly one `v=DMARC1` record with a valid policy.
pub fn judge_dmarc(expected: &str, answer: &Answer<String>) -> Judged {
    let records = match answer {
        Answer::Failed(why) => return failed(why),
        Answer::Nothing => return not_ok(Verdict::Missing, "no DMARC record (TXT v=DMARC1)"),
        Answer::Found(r) => r,
    };
    let dmarc = tagged(records, "v=DMARC1");
    match dmarc.as_slice() {
        [] => not_ok(Verdict::Missing, "no DMARC record (TXT v=DMARC1)"),
        [one] => {
            let policy = one.split(';').find_map(|tag| {
                let (k, v) = tag.split_once('=')?;
                (k.trim().eq_ignore_ascii_case("p")).then(|| v.trim().to_ascii_lowercase())
            });
            match policy.as_deref() {
                Some("none") => (
                    Verdict::Ok,
                    Some("p=none only monitors: forged mail is not stopped".into()),
                ),
                Some("quarantine" | "reject") if collapse(one) == collapse(expected) => ok(),
                Some("quarantine" | "reject") => (
                    Verdict::Ok,
                    Some("differs from the suggestion but sets a policy".into()),
                ),
                _ => not_ok(Verdict::Wrong, "the DMARC record has no valid p= policy"),
            }
        }
        _ => not_ok(
            Verdict::Wrong,
            "several DMARC records: receivers ignore them all; keep one",
        ),
    }
}

/// Autoconfig: a CNAME to the hostname, or addresses shared with it.
pub fn judge_autoconfig(
    hostname: &str,
    cname: &Answer<String>,
    addrs: &Answer<IpAddr>,
    host_addrs: &Answer<IpAddr>,
) -> Judged {
    let host = norm(hostname);
    match cname {
        Answer::Found(targets) if !targets.is_empty() => {
            let targets: Vec<String> = targets.iter().map(|t| norm(t)).collect();
            return if targets.contains(&host) {
                ok()
            } else {
                not_ok(
                    Verdict::Wrong,
                    format!("the CNAME points to {}, not {host}", targets.join(", ")),
                )
            };
        }
        Answer::Failed(why) => return failed(why),
        _ => {}
    }
    match (addrs, host_addrs) {
        (Answer::Failed(why), _) => failed(why),
        (Answer::Nothing, _) => not_ok(
            Verdict::Missing,
            "no autoconfig record: Thunderbird will ask for the server settings by hand",
        ),
        (Answer::Found(a), _) if a.is_empty() => not_ok(
            Verdict::Missing,
            "no autoconfig record: Thunderbird will ask for the server settings by hand",
        ),
        (Answer::Found(_), Answer::Failed(why)) => failed(why),
        (Answer::Found(a), Answer::Found(h)) if a.iter().any(|ip| h.contains(ip)) => ok(),
        (Answer::Found(a), _) => not_ok(
            Verdict::Wrong,
            format!(
                "the address {} is not {host}'s",
                a.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
    }
}

/// Builds one check from a record and its judgement.
fn check(kind: &str, record: &DnsRecord, found: Vec<String>, judged: Judged) -> RecordCheck {
    RecordCheck {
        kind: kind.into(),
        name: record.name.clone(),
        rtype: record.rtype.clone(),
        expected: record.value.clone(),
        found,
        verdict: judged.0,
        detail: judged.1,
    }
}

fn shown<T: ToString>(a: &Answer<T>) -> Vec<String> {
    match a {
        Answer::Found(v) => v.iter().map(ToString::to_string).collect(),
        _ => Vec::new(),
    }
}

impl Admin {
    /// The records `domain` should publish: MX, SPF, DKIM, DMARC (see
    /// [`Admin::dns_records`]) and the autoconfig CNAME.
    pub fn records_to_publish(&self, domain: &str) -> Result<Vec<DnsRecord>, OpsError> {
        let mut records = self.dns_records(domain)?;
        records.push(autoconfig_record(&self.config.hostname, domain));
        Ok(records)
    }

    /// Checks the records of `domain` against DNS (the `[dns]`
    /// nameservers), each lookup bounded by a few seconds.
    pub async fn dns_check(&self, domain: &str) -> Result<Vec<RecordCheck>, OpsError> {
        let records = self.records_to_publish(domain)?;
        let dns = Dns::new(&self.config.dns.nameservers)?;
        let find = |rtype: &str, prefix: &str| {
            records
                .iter()
                .find(|r| r.rtype == rtype && r.value.starts_with(prefix))
                .or_else(|| records.iter().find(|r| r.rtype == rtype))
        };
        let (Some(mx), Some(spf), Some(dmarc), Some(auto)) = (
            find("MX", ""),
            find("TXT", "v=spf1"),
            records.iter().find(|r| r.name.starts_with("_dmarc.")),
            records.iter().find(|r| r.rtype == "CNAME"),
        ) else {
            return Err(OpsError::Invalid(
                "domain: the records to publish are incomplete".into(),
            ));
        };
        let dkim = records.iter().find(|r| r.name.contains("._domainkey."));
        let hostname = self.config.hostname.clone();

        let (mx_a, spf_a, dkim_a, dmarc_a, cname_a, addrs_a, host_a) = tokio::join!(
            dns.mx(&mx.name),
            dns.txt(&spf.name),
            async {
                match dkim {
                    Some(d) => dns.txt(&d.name).await,
                    None => Answer::Nothing,
                }
            },
            dns.txt(&dmarc.name),
            dns.cname(&auto.name),
            dns.addresses(&auto.name),
            dns.addresses(&hostname),
        );
        let mx_found: Vec<String> = match &mx_a {
            Answer::Found(v) => v.iter().map(|(p, h)| format!("{p} {h}")).collect(),
            _ => Vec::new(),
        };
        let mut out = vec![
            check("MX", mx, mx_found, judge_mx(&mx.value, &mx_a)),
            check("SPF", spf, shown(&spf_a), judge_spf(&spf.value, &spf_a)),
        ];
        if let Some(d) = dkim {
            out.push(check(
                "DKIM",
                d,
                shown(&dkim_a),
                judge_dkim(&d.value, &dkim_a),
            ));
        }
        out.push(check(
            "DMARC",
            dmarc,
            shown(&dmarc_a),
            judge_dmarc(&dmarc.value, &dmarc_a),
        ));
        let mut auto_found = shown(&cname_a);
        if auto_found.is_empty() {
            auto_found = shown(&addrs_a);
        }
        out.push(check(
            "autoconfig",
            auto,
            auto_found,
            judge_autoconfig(&hostname, &cname_a, &addrs_a, &host_a),
        ));
        tracing::info!(
            domain,
            ok = out.iter().filter(|c| c.verdict == Verdict::Ok).count(),
            checked = out.len(),
            "DNS records checked"
        );
        Ok(out)
    }
}

/// The lookups, on hickory.
struct Dns {
    resolver: TokioResolver,
}

impl Dns {
    /// A resolver asking `nameservers` (`ip:port` or `ip`), or the
    /// system's configuration when empty.
    fn new(nameservers: &[String]) -> Result<Dns, OpsError> {
        let mut builder = if nameservers.is_empty() {
            Resolver::builder(TokioRuntimeProvider::default()).map_err(|e| {
                OpsError::Invalid(format!(
                    "dns: cannot read the system's resolver configuration: {e}"
                ))
            })?
        } else {
            let mut servers = Vec::with_capacity(nameservers.len());
            for s in nameservers {
                let addr = s
                    .parse::<SocketAddr>()
                    .or_else(|_| s.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                    .map_err(|_| {
                        OpsError::Invalid(format!("dns.nameservers: `{s}` is not ip:port"))
                    })?;
                let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                for c in &mut ns.connections {
                    c.port = addr.port();
                }
                servers.push(ns);
            }
            Resolver::builder_with_config(
                ResolverConfig::from_name_servers(servers),
                TokioRuntimeProvider::default(),
            )
        };
        let opts = builder.options_mut();
        opts.timeout = Duration::from_secs(2);
        opts.attempts = 1;
        opts.use_hosts_file = ResolveHosts::Never;
        opts.ndots = 0;
        // A live check: never an answer from a stale cache.
        opts.cache_size = 0;
        let resolver = builder
            .build()
            .map_err(|e| OpsError::Invalid(format!("dns: cannot build the resolver: {e}")))?;
        Ok(Dns { resolver })
    }

    /// One lookup within [`LOOKUP_TIMEOUT`], its records mapped by `f`.
    async fn lookup<T>(
        &self,
        name: &str,
        rtype: RecordType,
        f: impl Fn(&RData) -> Option<T>,
    ) -> Answer<T> {
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        match tokio::time::timeout(LOOKUP_TIMEOUT, self.resolver.lookup(fqdn, rtype)).await {
            Err(_) => Answer::Failed(format!("no answer within {} s", LOOKUP_TIMEOUT.as_secs())),
            Ok(Ok(lookup)) => {
                let v: Vec<T> = lookup
                    .answers()
                    .iter()
                    .filter_map(|r| f(&r.data))
                    .take(MAX_RECORDS)
                    .collect();
                if v.is_empty() {
                    Answer::Nothing
                } else {
                    Answer::Found(v)
                }
            }
            Ok(Err(e)) if e.is_nx_domain() || e.is_no_records_found() => Answer::Nothing,
            Ok(Err(e)) => Answer::Failed(e.to_string()),
        }
    }

    async fn mx(&self, name: &str) -> Answer<(u16, String)> {
        self.lookup(name, RecordType::MX, |d| match d {
            RData::MX(mx) => Some((mx.preference, mx.exchange.to_ascii())),
            _ => None,
        })
        .await
    }

    async fn txt(&self, name: &str) -> Answer<String> {
        self.lookup(name, RecordType::TXT, |d| match d {
            RData::TXT(t) => Some(
                t.txt_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect::<String>(),
            ),
            _ => None,
        })
        .await
    }

    async fn cname(&self, name: &str) -> Answer<String> {
        self.lookup(name, RecordType::CNAME, |d| match d {
            RData::CNAME(c) => Some(c.0.to_ascii()),
            _ => None,
        })
        .await
    }

    async fn addresses(&self, name: &str) -> Answer<IpAddr> {
        let (v4, v6) = tokio::join!(
            self.lookup(name, RecordType::A, |d| match d {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                _ => None,
            }),
            self.lookup(name, RecordType::AAAA, |d| match d {
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            }),
        );
        match (v4, v6) {
            (Answer::Found(mut a), Answer::Found(b)) => {
                a.extend(b);
                Answer::Found(a)
            }
            (Answer::Found(a), _) | (_, Answer::Found(a)) => Answer::Found(a),
            (Answer::Failed(e), _) | (_, Answer::Failed(e)) => Answer::Failed(e),
            _ => Answer::Nothing,
        }
    }
}

#[cfg(test)]
mod tests;
