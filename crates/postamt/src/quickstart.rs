//! `postamt quickstart`: a working mail server from nothing. Writes a config
//! and data dir (unprivileged ports when not root), creates a demo user with
//! a random password, prints how to send and fetch a mail, then serves.

use crate::cli::QuickstartArgs;
use anyhow::{Context, Result, bail};
use postamt_ops::Admin;
use rand::Rng;
use std::path::Path;
use std::sync::Arc;

/// A random password from an unambiguous alphabet, ~95 bits.
pub fn random_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..16)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// The first port of `candidates` that is free on 127.0.0.1, else the last.
fn free_port(candidates: &[u16]) -> u16 {
    candidates
        .iter()
        .copied()
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .unwrap_or(candidates[candidates.len() - 1])
}

/// The config text for a fresh setup: the standard ports as root when they
/// are free, else unprivileged ones.
pub(crate) fn config_text(data_dir: &Path, domain: Option<&str>, root: bool) -> String {
    let ports = |standard: u16, alternatives: &[u16]| {
        let mut c = Vec::with_capacity(alternatives.len() + 1);
        if root {
            c.push(standard);
        }
        c.extend_from_slice(alternatives);
        free_port(&c)
    };
    let smtp = ports(25, &[2525, 2526]);
    let submission = ports(587, &[2587, 2588]);
    let submissions = ports(465, &[2465, 2466]);
    let pop3 = ports(110, &[1110, 1111]);
    let pop3s = ports(995, &[1995, 1996]);
    let imap = ports(143, &[1143, 1144]);
    let imaps = ports(993, &[1993, 1994]);
    let admin = free_port(&[8080, 8081, 8082]);
    let hostname = domain.unwrap_or("localhost");
    let domains = domain
        .map(|d| format!("[\"{d}\"]"))
        .unwrap_or_else(|| "[]".into());
    format!(
        r#"# Postamt configuration written by `postamt quickstart`.
# Every key is explained in docs/configuration.md.

hostname = "{hostname}"           # this server's name (greeting, Received:, bounces)
domains = {domains}               # "Accept Mail For" (the hostname is always local)
data_dir = "{data}"               # spool, mailboxes, directory, logs
create_mailboxes = true           # create a user's Maildir on first mail

[listen]                          # 127.0.0.1 only; use 0.0.0.0 to serve the network
smtp = ["127.0.0.1:{smtp}"]               # MX: mail for our domains, STARTTLS
submission = ["127.0.0.1:{submission}"]   # mail clients: STARTTLS + AUTH
submissions = ["127.0.0.1:{submissions}"] # mail clients: TLS + AUTH
pop3 = ["127.0.0.1:{pop3}"]               # STLS
pop3s = ["127.0.0.1:{pop3s}"]             # TLS
imap = ["127.0.0.1:{imap}"]               # STARTTLS
imaps = ["127.0.0.1:{imaps}"]             # TLS
admin = ["127.0.0.1:{admin}"]             # web admin, API, /metrics, /docs (HTTP on loopback)

# [tls] cert/key unset: a self-signed certificate is made in data_dir/tls/

[limits]
max_message_size = 52428800
idle_timeout = "5m"

[logging]
receiver = true
delivery = true
retrieval = true
"#,
        data = data_dir
            .display()
            .to_string()
            .replace('\\', "\\\\")
            .replace('"', "\\\""),
    )
}

pub fn run(args: &QuickstartArgs) -> Result<()> {
    if let Some(d) = &args.domain
        && (d.is_empty() || d.contains(['"', '\\', '\n', ' ']))
    {
        bail!("--domain `{d}` is not a domain name");
    }
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let dir = std::fs::canonicalize(&args.dir)?;
    let config_path = dir.join("postamt.toml");
    let fresh = !config_path.exists();
    if fresh {
        let text = config_text(&dir, args.domain.as_deref(), crate::privilege::is_root());
        std::fs::write(&config_path, text)
            .with_context(|| format!("cannot write {}", config_path.display()))?;
    }
    let config = Arc::new(postamt_config::load(&config_path)?);
    let admin = Admin::open(Arc::clone(&config))?;
    let domain = config.primary_domain();
    let smtp = config.listen.smtp.first().cloned().unwrap_or_default();
    let pop3 = config.listen.pop3.first().cloned().unwrap_or_default();
    let imap = config.listen.imap.first().cloned().unwrap_or_default();
    let web = config.listen.admin.first().cloned().unwrap_or_default();
    let scheme = if config.tls.cert.is_some() {
        "https"
    } else {
        "http"
    };
    let submission = config
        .listen
        .submission
        .first()
        .cloned()
        .unwrap_or_default();
    let fresh_user = admin.directory.get_user("demo")?.is_none();
    let password = if fresh_user {
        let p = random_password();
        admin.add_user("demo", &p, true)?;
        if admin
            .list_aliases()?
            .iter()
            .all(|a| !a.pattern.eq_ignore_ascii_case("postmaster"))
        {
            admin.add_alias("postmaster", &["demo".to_string()])?;
        }
        p
    } else {
        "(unchanged; set a new one with `postamt user passwd demo`)".to_string()
    };
    let cfg = config_path.display();
    println!(
        r#"Postamt is set up in {dir}
  config file:  {cfg}{new}
  mail domain:  {domain}
  demo user:    demo   password: {password}   (an admin: it also logs in to the web admin)
  web admin:    {scheme}://{web}/   (API under /api/v1/, guide under /docs/)
  SMTP:         {smtp}
  POP3:         {pop3}
  IMAP:         {imap}
  submission:   {submission} (STARTTLS + AUTH; a self-signed certificate until you set [tls])

Send a mail:
  printf 'Subject: hello\r\n\r\nfirst mail\r\n' > /tmp/m.txt
  curl -s smtp://{smtp} --mail-from you@example.com --mail-rcpt demo@{domain} -T /tmp/m.txt
Fetch it:
  curl -s pop3://demo:{shown}@{pop3}/1
  curl -s 'imap://demo:{shown}@{imap}/INBOX;UID=1'
Send as demo through submission (any destination):
  curl -s smtp://{submission} --ssl-reqd -k -u demo:{shown} --mail-from demo@{domain} --mail-rcpt demo@{domain} -T /tmp/m.txt
Manage:
  postamt --config {cfg} user add alice
  postamt --config {cfg} queue list
"#,
        dir = dir.display(),
        new = if fresh { " (new)" } else { " (existing, kept)" },
        shown = if fresh_user {
            password.as_str()
        } else {
            "PASSWORD"
        },
    );
    if args.no_serve {
        return Ok(());
    }
    crate::serve::run(&config_path)
}
