//! The configuration's types with their defaults, one struct per TOML table.

use crate::HumanDuration;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The whole configuration file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The server's FQDN, used in greetings, `Received:` and bounces.
    pub hostname: String,
    /// "Accept Mail For": the domains whose mail is delivered locally.
    /// The hostname is always local too.
    pub domains: Vec<String>,
    /// Where postmaster mail and local-failure copies go.
    /// Default: `postmaster@<first domain or hostname>`.
    pub postmaster: Option<String>,
    /// Root of everything the server writes.
    pub data_dir: PathBuf,
    /// "Mailbox Directory": `%u` is the user, `%d` the domain.
    /// Default: `<data_dir>/mailboxes/%u`.
    pub mailbox_template: Option<String>,
    /// "Automatically Create Mailbox" on first mail.
    pub create_mailboxes: bool,
    /// The queue directory. Default: `<data_dir>/spool`.
    pub spool_dir: Option<PathBuf>,
    /// The account to run as after binding the ports when started as root.
    pub user: Option<String>,
    pub listen: Listen,
    pub submission: Submission,
    pub delivery: Delivery,
    pub limits: Limits,
    pub logging: Logging,
    pub dns: Dns,
    pub tls: Tls,
    pub dkim: Dkim,
    pub sender_auth: SenderAuth,
    pub admin: WebAdmin,
    /// The file this configuration was read from (not a key).
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            hostname: "localhost".into(),
            domains: Vec::new(),
            postmaster: None,
            data_dir: PathBuf::from("/var/lib/postamt"),
            mailbox_template: None,
            create_mailboxes: true,
            spool_dir: None,
            user: None,
            listen: Listen::default(),
            submission: Submission::default(),
            delivery: Delivery::default(),
            limits: Limits::default(),
            logging: Logging::default(),
            dns: Dns::default(),
            tls: Tls::default(),
            dkim: Dkim::default(),
            sender_auth: SenderAuth::default(),
            admin: WebAdmin::default(),
            source: None,
        }
    }
}

/// `[listen]`: socket addresses per service; an empty list turns it off.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Listen {
    pub smtp: Vec<String>,
    pub submission: Vec<String>,
    pub submissions: Vec<String>,
    pub pop3: Vec<String>,
    pub pop3s: Vec<String>,
    pub imap: Vec<String>,
    pub imaps: Vec<String>,
    pub admin: Vec<String>,
}

impl Listen {
    /// Every service's `[listen]` key with its addresses, in a fixed order.
    pub fn entries(&self) -> [(&'static str, &Vec<String>); 8] {
        [
            ("smtp", &self.smtp),
            ("submission", &self.submission),
            ("submissions", &self.submissions),
            ("pop3", &self.pop3),
            ("pop3s", &self.pop3s),
            ("imap", &self.imap),
            ("imaps", &self.imaps),
            ("admin", &self.admin),
        ]
    }
}

/// How mail leaves the server towards a smarthost.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SmarthostTls {
    /// STARTTLS required.
    Starttls,
    /// Implicit TLS from the first byte.
    Tls,
    /// STARTTLS when offered, plaintext otherwise.
    #[default]
    Opportunistic,
}

/// `[delivery]`: remote delivery, retries, bounces.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Delivery {
    /// "SMTP Gateway Host" (`host:port`); unset = deliver by MX.
    pub smarthost: Option<String>,
    pub smarthost_user: Option<String>,
    pub smarthost_password: Option<String>,
    pub smarthost_tls: SmarthostTls,
    pub tls_required_domains: Vec<String>,
    pub tls_ca_file: Option<PathBuf>,
    pub remote_port: u16,
    pub retry_intervals: Vec<HumanDuration>,
    pub give_up_after: HumanDuration,
    pub delay_warning_after: HumanDuration,
    pub copy_local_failures_to_postmaster: bool,
    /// Outbound: time to establish a TCP connection.
    pub connect_timeout: HumanDuration,
    /// Outbound: wait for each reply (RFC 5321: at least 5 minutes).
    pub command_timeout: HumanDuration,
    /// Outbound: wait for the reply to the end of data (RFC 5321: 10 minutes).
    pub data_timeout: HumanDuration,
    /// Outbound SMTP connections open at once, in total.
    pub max_connections: usize,
    /// Outbound SMTP connections open at once to one destination domain.
    pub max_connections_per_domain: usize,
}

impl Default for Delivery {
    fn default() -> Self {
        Delivery {
            smarthost: None,
            smarthost_user: None,
            smarthost_password: None,
            smarthost_tls: SmarthostTls::default(),
            tls_required_domains: Vec::new(),
            tls_ca_file: None,
            remote_port: 25,
            // 1m, 5m, 15m, 1h, 4h.
            retry_intervals: [60, 300, 900, 3600, 4 * 3600]
                .into_iter()
                .map(HumanDuration::secs)
                .collect(),
            give_up_after: HumanDuration::secs(5 * 86400),
            delay_warning_after: HumanDuration::secs(4 * 3600),
            copy_local_failures_to_postmaster: true,
            connect_timeout: HumanDuration::secs(30),
            command_timeout: HumanDuration::secs(300),
            data_timeout: HumanDuration::secs(600),
            max_connections: 50,
            max_connections_per_domain: 5,
        }
    }
}

impl Delivery {
    /// The wait before retry number `attempt` (1-based): the schedule, then its
    /// last entry again.
    pub fn retry_delay(&self, attempt: u32) -> std::time::Duration {
        let i = (attempt.max(1) as usize - 1).min(self.retry_intervals.len().saturating_sub(1));
        self.retry_intervals
            .get(i)
            .map(|d| d.0)
            .unwrap_or(std::time::Duration::from_secs(300))
    }
}

/// `[limits]`: bounds on sessions and messages.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Bytes; advertised as SIZE.
    pub max_message_size: u64,
    /// Per message; more get 452 4.5.3.
    pub max_recipients: usize,
    /// Bad commands in a session before 421 and close.
    pub max_errors: u32,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// SMTP, POP3 and IMAP before login.
    pub idle_timeout: HumanDuration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: 50 * 1024 * 1024,
            max_recipients: 1000,
            max_errors: 20,
            max_connections: 1000,
            max_connections_per_ip: 50,
            idle_timeout: HumanDuration::secs(300),
        }
    }
}

/// `[logging]`: the classic three logs, each a file under `dir`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Logging {
    /// Default: `<data_dir>/logs`.
    pub dir: Option<PathBuf>,
    pub receiver: bool,
    pub delivery: bool,
    pub retrieval: bool,
    /// Minimum level: error, warn, info, debug or trace.
    pub level: String,
}

impl Default for Logging {
    fn default() -> Self {
        Logging {
            dir: None,
            receiver: true,
            delivery: true,
            retrieval: true,
            level: "info".into(),
        }
    }
}

/// `[dns]`: resolver settings.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Dns {
    /// `ip:port` of nameservers; empty = the system's resolver configuration.
    pub nameservers: Vec<String>,
}

/// `[tls]`: certificate and key; unset = a self-signed certificate.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tls {
    /// PEM certificate chain, leaf first.
    pub cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// More certificates chosen by SNI host name (`[[tls.sni]]`); `cert`/`key`
    /// serve every other name.
    pub sni: Vec<SniCertificate>,
}

/// One `[[tls.sni]]` entry.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SniCertificate {
    /// The host name clients ask for (e.g. `mail.example.net`).
    pub hostname: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `[dkim]`: outbound DKIM signing.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Dkim {
    /// Sign outgoing mail whose sender domain has a key.
    pub sign: bool,
    /// The selector published in DNS (`<selector>._domainkey.<domain>`).
    pub selector: String,
    /// Where `postamt dkim generate` puts keys (`<domain>.key`).
    /// Default: `<data_dir>/dkim`.
    pub key_dir: Option<PathBuf>,
}

impl Default for Dkim {
    fn default() -> Self {
        Dkim {
            sign: true,
            selector: "postamt".into(),
            key_dir: None,
        }
    }
}

/// What to do with a DMARC `p=reject`/`p=quarantine` verdict.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DmarcAction {
    /// Do what the domain's policy asks (reject at DATA; quarantine = deliver
    /// marked as junk).
    #[default]
    Honor,
    /// Only record the result in `Authentication-Results`.
    Report,
}

/// `[sender_auth]`: inbound SPF, DKIM and DMARC checks on the MX port.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SenderAuth {
    /// Check SPF, DKIM and DMARC and add `Authentication-Results`.
    pub verify: bool,
    pub dmarc: DmarcAction,
}

impl Default for SenderAuth {
    fn default() -> Self {
        SenderAuth {
            verify: true,
            dmarc: DmarcAction::Honor,
        }
    }
}

/// `[admin]`: the web admin on the `admin` listener.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebAdmin {
    /// Serve plain HTTP on a non-loopback `listen.admin` address when no
    /// `[tls]` certificate is configured (e.g. behind a TLS-terminating
    /// proxy on a private network). Off by default: passwords and session
    /// cookies would cross the network in clear.
    pub allow_plaintext_http: bool,
}

/// `[submission]`: the mail submission ports (587, 465).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Submission {
    /// Allow AUTH without TLS from loopback clients (e.g. a local webmail).
    /// Off by default: passwords travel only inside TLS.
    pub allow_plaintext_on_loopback: bool,
}

impl Config {
    /// The local domains: the hostname and "Accept Mail For", lowercased.
    pub fn local_domains(&self) -> Vec<String> {
        let mut v = vec![self.hostname.to_ascii_lowercase()];
        for d in &self.domains {
            let d = d.to_ascii_lowercase();
            if !v.contains(&d) {
                v.push(d);
            }
        }
        v
    }

    /// Whether mail for `domain` is delivered here (case-insensitive; an
    /// address literal `[ip]` is not local).
    pub fn is_local_domain(&self, domain: &str) -> bool {
        let d = domain.trim_end_matches('.');
        d.eq_ignore_ascii_case(&self.hostname)
            || self.domains.iter().any(|x| x.eq_ignore_ascii_case(d))
    }

    /// The domain used for local users' addresses: the first of `domains`,
    /// else the hostname.
    pub fn primary_domain(&self) -> String {
        self.domains
            .first()
            .unwrap_or(&self.hostname)
            .to_ascii_lowercase()
    }

    /// The postmaster address.
    pub fn postmaster_address(&self) -> String {
        self.postmaster
            .clone()
            .unwrap_or_else(|| format!("postmaster@{}", self.primary_domain()))
    }

    /// The queue directory.
    pub fn spool_dir(&self) -> PathBuf {
        self.spool_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("spool"))
    }

    /// The directory database (SQLite).
    pub fn directory_db(&self) -> PathBuf {
        self.data_dir.join("directory.sqlite")
    }

    /// Where the log files go.
    pub fn log_dir(&self) -> PathBuf {
        self.logging
            .dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("logs"))
    }

    /// Where DKIM keys live.
    pub fn dkim_key_dir(&self) -> PathBuf {
        self.dkim
            .key_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("dkim"))
    }

    /// Runtime state: pid file, control socket, bound addresses.
    pub fn run_dir(&self) -> PathBuf {
        self.data_dir.join("run")
    }

    /// The mailbox directory template.
    pub fn mailbox_template(&self) -> String {
        self.mailbox_template
            .clone()
            .unwrap_or_else(|| format!("{}/%u", self.data_dir.join("mailboxes").display()))
    }

    /// The directory the config file lives in (for relative paths).
    pub fn base_dir(&self) -> &Path {
        self.source
            .as_deref()
            .and_then(Path::parent)
            .unwrap_or(Path::new("."))
    }
}
