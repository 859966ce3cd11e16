//! The admin verbs of the CLI (`check-config`, `user`, `alias`, `list`,
//! `autoreply`, `forward`, `queue`, `dkim`, `dns-records`): argument
//! handling and printing around the shared `postamt_ops` operations.

use crate::cli::{AliasCmd, AutoreplyCmd, DkimCmd, ForwardCmd, ListCmd, QueueCmd, UserCmd};
use anyhow::{Context, Result, bail};
use postamt_ops::{Admin, Autoreply, AutoreplyState, Forward, ListInfo};
use postamt_spool::RecipientStatus;
use std::io::BufRead;
use std::path::Path;
use std::sync::Arc;

/// Loads the configuration, with the file, key and reason on error.
pub fn load_config(path: &Path) -> Result<Arc<postamt_config::Config>> {
    Ok(Arc::new(postamt_config::load(path)?))
}

fn open_admin(path: &Path) -> Result<Admin> {
    let config = load_config(path)?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data_dir {}", config.data_dir.display()))?;
    Ok(Admin::open(config)?)
}

pub fn check_config(path: &Path) -> Result<()> {
    let c = load_config(path)?;
    println!("{}: ok", path.display());
    println!("  hostname:        {}", c.hostname);
    println!("  accept mail for: {}", c.local_domains().join(", "));
    println!("  postmaster:      {}", c.postmaster_address());
    println!("  data_dir:        {}", c.data_dir.display());
    println!("  mailboxes:       {}", c.mailbox_template());
    println!("  spool:           {}", c.spool_dir().display());
    println!("  logs:            {}", c.log_dir().display());
    for (name, addrs) in c.listen.entries() {
        if !addrs.is_empty() {
            println!("  listen {name:<12} {}", addrs.join(", "));
        }
    }
    Ok(())
}

/// Reads a password from stdin (one line) or makes a random one and prints it.
fn obtain_password(from_stdin: bool, name: &str) -> Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        let p = line.trim_end_matches(['\r', '\n']).to_string();
        if p.is_empty() {
            bail!("no password on standard input");
        }
        Ok(p)
    } else {
        let p = crate::quickstart::random_password();
        println!("password for {name}: {p}");
        Ok(p)
    }
}

pub fn user(path: &Path, cmd: UserCmd) -> Result<()> {
    let admin = open_admin(path)?;
    match cmd {
        UserCmd::Add {
            name,
            password_stdin,
            admin: is_admin,
        } => {
            let p = obtain_password(password_stdin, &name)?;
            admin.add_user(&name, &p, is_admin)?;
            println!("user {name} added");
        }
        UserCmd::Del { name } => {
            admin.delete_user(&name)?;
            println!("user {name} deleted (the mailbox stays on disk)");
        }
        UserCmd::List => {
            for u in admin.list_users()? {
                let created = chrono::DateTime::from_timestamp(u.created_at, 0)
                    .map(|d| d.format("%Y-%m-%d").to_string())
                    .unwrap_or_default();
                println!(
                    "{}\t{}\t{}",
                    u.name,
                    if u.admin { "admin" } else { "user" },
                    created
                );
            }
        }
        UserCmd::Passwd {
            name,
            password_stdin,
        } => {
            let p = obtain_password(password_stdin, &name)?;
            admin.set_password(&name, &p)?;
            println!("password of {name} changed");
        }
    }
    Ok(())
}

pub fn alias(path: &Path, cmd: AliasCmd) -> Result<()> {
    let admin = open_admin(path)?;
    match cmd {
        AliasCmd::Add { pattern, targets } => {
            admin.add_alias(&pattern, &targets)?;
            println!("alias {pattern} -> {}", targets.join(", "));
        }
        AliasCmd::Del { pattern } => {
            admin.delete_alias(&pattern)?;
            println!("alias {pattern} deleted");
        }
        AliasCmd::List => {
            for a in admin.list_aliases()? {
                println!("{}\t{}", a.pattern, a.targets.join(", "));
            }
        }
    }
    Ok(())
}

fn date(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| t.to_string())
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A list's addresses and options, one `key: value` per line.
fn print_list(info: &ListInfo, members: Option<u64>, domain: &str) {
    println!("list:         {}", info.name);
    println!("address:      {}@{domain}", info.name);
    println!("requests:     {}-request@{domain}", info.name);
    println!("bounces:      {}-bounces@{domain}", info.name);
    println!(
        "owner:        {} (also {}-owner@{domain})",
        info.owner, info.name
    );
    println!("posting:      {}", info.posting);
    println!("reply-to:     {}", info.reply_to);
    println!("prefix:       {:?}", info.subject_prefix);
    if info.max_message_size == 0 {
        println!("max size:     the server's limit");
    } else {
        println!("max size:     {} bytes", info.max_message_size);
    }
    if let Some(n) = members {
        println!("members:      {n}");
    }
    println!("created:      {}", date(info.created_at));
}

pub fn list(path: &Path, cmd: ListCmd) -> Result<()> {
    let admin = open_admin(path)?;
    let domain = admin.config.primary_domain();
    match cmd {
        ListCmd::Create { name, options } => {
            let info = admin.list_create(&name, &options.to_options())?;
            println!("list {} created", info.name);
            print_list(&info, Some(0), &domain);
        }
        ListCmd::Set { name, options } => {
            let info = admin.list_set_options(&name, &options.to_options())?;
            println!("list {} changed", info.name);
            print_list(&info, None, &domain);
        }
        ListCmd::Delete { name } => {
            let d = admin.list_delete(&name)?;
            println!(
                "list {} deleted ({} removed, {} discarded, {} dropped)",
                d.name,
                plural(d.members, "member", "members"),
                plural(d.held_posts_discarded, "held post", "held posts"),
                plural(
                    d.confirmations_dropped,
                    "open confirmation",
                    "open confirmations"
                ),
            );
        }
        ListCmd::Subscribe { name, address } => {
            let m = admin.list_subscribe(&name, &address)?;
            println!("{} subscribed to {name}", m.address);
        }
        ListCmd::Unsubscribe { name, address } => {
            let address = admin.list_unsubscribe(&name, &address)?;
            println!("{address} unsubscribed from {name}");
        }
        ListCmd::Members { name } => {
            let members = admin.list_members(&name)?;
            if members.is_empty() {
                eprintln!("list {name} has no members");
            }
            for m in members {
                println!("{}", m.address);
            }
        }
        ListCmd::Show { name } => {
            let s = admin.list_show(&name)?;
            print_list(&s.list, Some(s.members), &domain);
        }
        ListCmd::List => {
            let lists = admin.lists()?;
            if lists.is_empty() {
                eprintln!("no lists");
            }
            for s in lists {
                println!(
                    "{}\t{}\t{}\t{}",
                    s.list.name,
                    plural(
                        usize::try_from(s.members).unwrap_or(usize::MAX),
                        "member",
                        "members"
                    ),
                    s.list.posting,
                    s.list.owner
                );
            }
        }
    }
    Ok(())
}

/// Longest file `autoreply set --body-file` reads (the directory takes 64 KiB).
const MAX_BODY_FILE: u64 = 1024 * 1024;

fn read_body_file(path: &Path) -> Result<String> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.len() > MAX_BODY_FILE {
        bail!("{} is larger than 1 MiB", path.display());
    }
    std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {} as UTF-8 text", path.display()))
}

/// When an auto-reply answers, in words.
fn autoreply_window_text(a: &Autoreply) -> String {
    let from = a
        .starts_at
        .map(|s| format!("from {} 00:00 UTC", date(s)))
        .unwrap_or_else(|| "from now".into());
    let until = a
        .ends_at
        .map(|e| format!("until the end of {} UTC", date(e - 1)))
        .unwrap_or_else(|| "until switched off".into());
    format!("{from} {until}")
}

fn print_autoreply(a: &Autoreply) {
    let now = chrono::Utc::now().timestamp();
    println!("user:     {}", a.user);
    println!("state:    {}", AutoreplyState::of(a, now).as_str());
    println!("answers:  {}", autoreply_window_text(a));
    println!("subject:  {}", a.subject);
    println!("set:      {}", date(a.created_at));
    println!();
    println!("{}", a.body.trim_end());
}

pub fn autoreply(path: &Path, cmd: AutoreplyCmd) -> Result<()> {
    let admin = open_admin(path)?;
    match cmd {
        AutoreplyCmd::Set {
            user,
            subject,
            body,
            body_file,
            from,
            until,
        } => {
            let body = match (body, body_file) {
                (Some(b), _) => b,
                (None, Some(p)) => read_body_file(&p)?,
                (None, None) => bail!("give the reply's text with --body or --body-file"),
            };
            let a = admin.autoreply_set(&user, &subject, &body, from, until)?;
            let now = chrono::Utc::now().timestamp();
            println!(
                "auto-reply of {} set ({}), answering {}; each sender gets it at most once in 7 days",
                a.user,
                AutoreplyState::of(&a, now).as_str(),
                autoreply_window_text(&a)
            );
        }
        AutoreplyCmd::Off { user } => {
            admin.autoreply_off(&user)?;
            println!("auto-reply of {user} switched off");
        }
        AutoreplyCmd::Show { user } => match admin.autoreply_show(&user)? {
            Some(a) => print_autoreply(&a),
            None => println!("{user} has no auto-reply"),
        },
    }
    Ok(())
}

fn forward_text(f: &Forward) -> String {
    format!(
        "mail to {} goes to {}{}",
        f.user,
        f.addresses.join(", "),
        if f.keep_copy {
            "; a copy stays in the mailbox"
        } else {
            "; no copy stays in the mailbox"
        }
    )
}

pub fn forward(path: &Path, cmd: ForwardCmd) -> Result<()> {
    let admin = open_admin(path)?;
    match cmd {
        ForwardCmd::Set {
            user,
            addresses,
            keep_copy,
        } => {
            let f = admin.forward_set(&user, &addresses, keep_copy)?;
            println!("forward set: {}", forward_text(&f));
        }
        ForwardCmd::Off { user } => {
            admin.forward_off(&user)?;
            println!("forward of {user} removed; mail goes to the mailbox");
        }
        ForwardCmd::Show { user } => match admin.forward_show(&user)? {
            Some(f) => println!("{}", forward_text(&f)),
            None => println!("{user} has no forward; mail goes to the mailbox"),
        },
    }
    Ok(())
}

fn told(server_notified: bool) -> &'static str {
    if server_notified {
        "the running server was told"
    } else {
        "no server is running; takes effect at its next start"
    }
}

pub fn queue(path: &Path, cmd: QueueCmd) -> Result<()> {
    let admin = open_admin(path)?;
    let q = admin.queue();
    match cmd {
        QueueCmd::List => {
            let entries = q.list()?;
            if entries.is_empty() {
                println!("the queue is empty");
            }
            for e in &entries {
                let env = &e.envelope;
                let arrived = chrono::DateTime::from_timestamp(env.created_at, 0)
                    .map(|d| d.format("%Y-%m-%d %H:%M:%S").to_string())
                    .unwrap_or_default();
                let pending: Vec<&str> = env
                    .recipients
                    .iter()
                    .filter(|r| r.status == RecipientStatus::Pending)
                    .map(|r| r.address.as_str())
                    .collect();
                println!(
                    "{}  {:>8}  {}  <{}> -> {}  [{}]",
                    env.id,
                    env.size,
                    arrived,
                    env.mail_from,
                    pending.join(", "),
                    e.reason
                );
            }
            println!("{} message(s) queued", entries.len());
        }
        QueueCmd::Show { id } => {
            let (env, headers) = q.show(&id)?;
            println!("id:        {}", env.id);
            println!("from:      <{}>", env.mail_from);
            if let Some(c) = &env.client {
                println!(
                    "client:    {c} (helo {})",
                    env.helo.as_deref().unwrap_or("-")
                );
            }
            println!("size:      {}", env.size);
            println!("arrived:   {}", ts(env.created_at));
            println!("attempts:  {}", env.attempts);
            println!("next:      {}", ts(env.next_attempt));
            println!("held:      {}", env.held);
            for r in &env.recipients {
                println!(
                    "rcpt:      <{}> {:?} attempts={}{}",
                    r.address,
                    r.status,
                    r.attempts,
                    r.last_error
                        .as_ref()
                        .map(|e| format!(" last error: {e}"))
                        .unwrap_or_default()
                );
            }
            println!();
            print!("{headers}");
        }
        QueueCmd::Flush => {
            let a = q.flush()?;
            println!(
                "{} message(s) due now; {}",
                a.count,
                told(a.server_notified)
            );
        }
        QueueCmd::Hold { id } => {
            let a = q.hold(&id)?;
            println!("{id} held; {}", told(a.server_notified));
        }
        QueueCmd::Release { id } => {
            let a = q.release(&id)?;
            println!("{id} released; {}", told(a.server_notified));
        }
        QueueCmd::Delete { id } => {
            let a = q.delete(&id)?;
            println!("{id} deleted; {}", told(a.server_notified));
        }
    }
    Ok(())
}

fn ts(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| t.to_string())
}

pub fn dkim(path: &Path, cmd: DkimCmd) -> Result<()> {
    let admin = open_admin(path)?;
    match cmd {
        DkimCmd::Generate { domain, force } => {
            let key = admin.dkim_generate(&domain, force)?;
            hand_to_service_user(&admin.config, &key.path)?;
            println!("key written to {}", key.path.display());
            println!("publish this TXT record, then mail from {domain} is signed:");
            println!();
            println!("{}", key.zone_file_line());
        }
    }
    Ok(())
}

pub fn dns_records(path: &Path, domain: &str) -> Result<()> {
    let admin = open_admin(path)?;
    let records = admin.dns_records(domain)?;
    for line in postamt_sender_auth::zone_file_lines(&records) {
        println!("{line}");
    }
    Ok(())
}

/// Files the CLI creates as root must stay readable by the server once it
/// runs as `user`.
fn hand_to_service_user(config: &postamt_config::Config, file: &Path) -> Result<()> {
    if let (true, Some(name)) = (crate::privilege::is_root(), &config.user) {
        let account = crate::privilege::lookup(name)?;
        if let Some(dir) = file.parent() {
            std::os::unix::fs::chown(dir, Some(account.uid), Some(account.gid))?;
        }
        std::os::unix::fs::chown(file, Some(account.uid), Some(account.gid))?;
    }
    Ok(())
}
