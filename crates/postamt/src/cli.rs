//! The command line: verbs and their arguments (clap).

use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand, ValueEnum};
use postamt_ops::{ListOptions, Posting, ReplyTo};
use std::path::PathBuf;

/// Postamt, a complete Internet mail server.
#[derive(Debug, Parser)]
#[command(name = "postamt", version, about)]
pub struct Cli {
    /// The configuration file (TOML).
    #[arg(
        long,
        global = true,
        env = "POSTAMT_CONFIG",
        default_value = "/etc/postamt/postamt.toml"
    )]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the mail server in the foreground until SIGTERM or SIGINT.
    Serve,
    /// Create a working setup in a directory (config, data, a demo user) and serve it.
    Quickstart(QuickstartArgs),
    /// Read and validate the configuration, then print a summary.
    CheckConfig,
    /// Manage user accounts.
    #[command(subcommand)]
    User(UserCmd),
    /// Manage aliases (`*` wildcards allowed).
    #[command(subcommand)]
    Alias(AliasCmd),
    /// Manage mailing lists (NAME@ every local domain).
    #[command(subcommand)]
    List(ListCmd),
    /// Manage users' auto-replies (vacation messages).
    #[command(subcommand)]
    Autoreply(AutoreplyCmd),
    /// Manage users' forwarding.
    #[command(subcommand)]
    Forward(ForwardCmd),
    /// Inspect and steer the mail queue (works while the server runs).
    #[command(subcommand)]
    Queue(QueueCmd),
    /// DKIM signing keys.
    #[command(subcommand)]
    Dkim(DkimCmd),
    /// Print the DNS records (MX, SPF, DKIM, DMARC) a domain should publish.
    DnsRecords { domain: String },
    /// The admin guide (docs/) as HTML.
    #[command(subcommand)]
    Docs(DocsCmd),
    /// Install Postamt as a hardened systemd service (account, data dir, config, unit).
    Install(crate::install::InstallArgs),
    /// Stop and remove the systemd service; mail, data and config are kept.
    Uninstall(crate::install::UninstallArgs),
}

#[derive(Debug, Subcommand)]
pub enum DocsCmd {
    /// Write the admin guide as static HTML pages (and its CSS) into DIR.
    Build { dir: std::path::PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum DkimCmd {
    /// Make an RSA-2048 signing key for DOMAIN and print the TXT record to publish.
    Generate {
        domain: String,
        /// Replace an existing key (mail signed with the old one stops verifying
        /// once its TXT record is gone).
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Args)]
pub struct QuickstartArgs {
    /// Where to put the configuration and all data.
    #[arg(long, default_value = "postamt-data")]
    pub dir: PathBuf,
    /// The mail domain to accept mail for (default: localhost only).
    #[arg(long)]
    pub domain: Option<String>,
    /// Only create the setup; do not start serving.
    #[arg(long)]
    pub no_serve: bool,
}

#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Add an account. Without --password-stdin a random password is made and printed.
    Add {
        name: String,
        /// Read the password as one line from standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Give the account the admin role.
        #[arg(long)]
        admin: bool,
    },
    /// Delete an account (its mailbox stays on disk).
    Del { name: String },
    /// List the accounts.
    List,
    /// Set a new password. Without --password-stdin a random one is made and printed.
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AliasCmd {
    /// Add an alias (or replace its targets): PATTERN is `name`, `name@domain`,
    /// or either with `*`; each TARGET a user name or an address.
    Add {
        pattern: String,
        #[arg(required = true)]
        targets: Vec<String>,
    },
    /// Delete an alias.
    Del { pattern: String },
    /// List the aliases.
    List,
}

#[derive(Debug, Subcommand)]
pub enum QueueCmd {
    /// List queued messages and why each waits.
    List,
    /// Show one message's envelope, state and headers.
    Show { id: String },
    /// Retry every message now.
    Flush,
    /// Keep a message in the queue without delivering it.
    Hold { id: String },
    /// Release a held message.
    Release { id: String },
    /// Remove a message from the queue without delivering or bouncing it.
    Delete { id: String },
}

#[derive(Debug, Subcommand)]
pub enum ListCmd {
    /// Create a list: mail to NAME@ any local domain goes to its members;
    /// NAME-request, NAME-bounces and NAME-owner belong to it too.
    Create {
        name: String,
        #[command(flatten)]
        options: ListOptionArgs,
    },
    /// Change a list's options (only those given).
    Set {
        name: String,
        #[command(flatten)]
        options: ListOptionArgs,
    },
    /// Delete a list with its members; posts held for moderation are discarded.
    Delete { name: String },
    /// Add a member (an address; a bare name means NAME@ the primary domain).
    Subscribe { name: String, address: String },
    /// Remove a member.
    Unsubscribe { name: String, address: String },
    /// Print the members, one address per line.
    Members { name: String },
    /// Show a list's addresses and options.
    Show { name: String },
    /// List the lists with their member counts.
    List,
}

/// The options of `list create` and `list set`.
#[derive(Debug, Args)]
pub struct ListOptionArgs {
    /// The owner's address (default at creation: the postmaster).
    #[arg(long, value_name = "ADDRESS")]
    pub owner: Option<String>,
    /// Who may post (default at creation: members).
    #[arg(long, value_enum)]
    pub posting: Option<PostingArg>,
    /// Where replies go (default at creation: list).
    #[arg(long, value_enum)]
    pub reply_to: Option<ReplyToArg>,
    /// Put before the subject of list mail (default at creation: "[NAME] "; "" for none).
    #[arg(long, value_name = "TEXT", allow_hyphen_values = true)]
    pub prefix: Option<String>,
    /// Largest message the list takes, in bytes (0: the server's limit).
    #[arg(long, value_name = "BYTES")]
    pub max_size: Option<u64>,
}

impl ListOptionArgs {
    pub fn to_options(&self) -> ListOptions {
        ListOptions {
            owner: self.owner.clone(),
            posting: self.posting.map(Into::into),
            reply_to: self.reply_to.map(Into::into),
            subject_prefix: self.prefix.clone(),
            max_message_size: self.max_size,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PostingArg {
    /// Any sender.
    Anyone,
    /// Members only.
    Members,
    /// Every post waits for the owner's approval.
    Moderated,
}

impl From<PostingArg> for Posting {
    fn from(p: PostingArg) -> Posting {
        match p {
            PostingArg::Anyone => Posting::Anyone,
            PostingArg::Members => Posting::Members,
            PostingArg::Moderated => Posting::Moderated,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReplyToArg {
    /// Replies go to the list.
    List,
    /// Replies go to the poster.
    Sender,
}

impl From<ReplyToArg> for ReplyTo {
    fn from(r: ReplyToArg) -> ReplyTo {
        match r {
            ReplyToArg::List => ReplyTo::List,
            ReplyToArg::Sender => ReplyTo::Sender,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum AutoreplyCmd {
    /// Set a user's auto-reply (replacing any); senders get it once per 7 days.
    Set {
        user: String,
        /// The reply's subject (one line).
        #[arg(long)]
        subject: String,
        /// The reply's text.
        #[arg(
            long,
            required_unless_present = "body_file",
            conflicts_with = "body_file"
        )]
        body: Option<String>,
        /// Read the reply's text from a file instead.
        #[arg(long, value_name = "PATH")]
        body_file: Option<PathBuf>,
        /// First day it answers (UTC; default: at once).
        #[arg(long, value_name = "YYYY-MM-DD")]
        from: Option<NaiveDate>,
        /// Last day it answers, inclusive (UTC; default: until switched off).
        #[arg(long, value_name = "YYYY-MM-DD")]
        until: Option<NaiveDate>,
    },
    /// Switch a user's auto-reply off.
    Off { user: String },
    /// Show a user's auto-reply.
    Show { user: String },
}

#[derive(Debug, Subcommand)]
pub enum ForwardCmd {
    /// Forward a user's mail to one or more addresses (replacing any forward).
    Set {
        user: String,
        #[arg(required = true, value_name = "ADDRESS")]
        addresses: Vec<String>,
        /// Keep a copy in the user's own mailbox too.
        #[arg(long)]
        keep_copy: bool,
    },
    /// Stop forwarding: mail goes to the mailbox again.
    Off { user: String },
    /// Show a user's forward.
    Show { user: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("postamt").chain(args.iter().copied()))
    }

    #[test]
    fn list_create_with_every_option() {
        let cli = parse(&[
            "list",
            "create",
            "team",
            "--owner",
            "boss@example.org",
            "--posting",
            "moderated",
            "--reply-to",
            "sender",
            "--prefix",
            "",
            "--max-size",
            "1000",
        ])
        .expect("parse");
        let Command::List(ListCmd::Create { name, options }) = cli.command else {
            panic!("wrong command: {:?}", cli.command);
        };
        assert_eq!(name, "team");
        assert_eq!(
            options.to_options(),
            ListOptions {
                owner: Some("boss@example.org".into()),
                posting: Some(Posting::Moderated),
                reply_to: Some(ReplyTo::Sender),
                subject_prefix: Some(String::new()),
                max_message_size: Some(1000),
            }
        );
    }

    #[test]
    fn list_set_takes_only_what_is_given() {
        let cli = parse(&["list", "set", "team", "--posting", "anyone"]).expect("parse");
        let Command::List(ListCmd::Set { options, .. }) = cli.command else {
            panic!("wrong command");
        };
        assert_eq!(
            options.to_options(),
            ListOptions {
                posting: Some(Posting::Anyone),
                ..ListOptions::default()
            }
        );
        assert!(parse(&["list", "set", "team", "--posting", "everyone"]).is_err());
    }

    #[test]
    fn autoreply_and_forward() {
        let cli = parse(&[
            "autoreply",
            "set",
            "alice",
            "--subject",
            "Away",
            "--body",
            "Back soon",
            "--from",
            "2026-03-01",
            "--until",
            "2026-03-15",
        ])
        .expect("parse");
        let Command::Autoreply(AutoreplyCmd::Set {
            from, until, body, ..
        }) = cli.command
        else {
            panic!("wrong command");
        };
        assert_eq!(body.as_deref(), Some("Back soon"));
        assert_eq!(from, NaiveDate::from_ymd_opt(2026, 3, 1));
        assert_eq!(until, NaiveDate::from_ymd_opt(2026, 3, 15));
        assert!(
            parse(&["autoreply", "set", "alice", "--subject", "x"]).is_err(),
            "body needed"
        );
        assert!(
            parse(&[
                "autoreply",
                "set",
                "a",
                "--subject",
                "x",
                "--body",
                "y",
                "--from",
                "1.3.2026"
            ])
            .is_err()
        );

        let cli = parse(&[
            "forward",
            "set",
            "alice",
            "a@x.org",
            "b@y.org",
            "--keep-copy",
        ])
        .expect("parse");
        let Command::Forward(ForwardCmd::Set {
            addresses,
            keep_copy,
            ..
        }) = cli.command
        else {
            panic!("wrong command");
        };
        assert_eq!(addresses, ["a@x.org", "b@y.org"]);
        assert!(keep_copy);
        assert!(
            parse(&["forward", "set", "alice"]).is_err(),
            "an address is needed"
        );
    }
}
