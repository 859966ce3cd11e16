//! The command line: verbs and their arguments (clap).

use clap::{Args, Parser, Subcommand};
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
    /// Inspect and steer the mail queue (works while the server runs).
    #[command(subcommand)]
    Queue(QueueCmd),
    /// DKIM signing keys.
    #[command(subcommand)]
    Dkim(DkimCmd),
    /// Print the DNS records (MX, SPF, DKIM, DMARC) a domain should publish.
    DnsRecords { domain: String },
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
