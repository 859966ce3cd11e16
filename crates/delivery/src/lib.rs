//! The delivery agent: takes queued messages from the spool, expands each
//! recipient through the directory, delivers locally into the store, retries
//! temporary failures on the configured schedule and bounces permanent ones
//! (RFC 3464), with a copy to the postmaster for local failures. It also
//! carries out forwards (remote copies with an SRS sender, bounces to SRS
//! addresses returned to the original sender), auto-replies (RFC 3834) and
//! mailing lists (fan-out, requests by mail, moderation).
//!
//! Map: `scheduler` (the run loop, and hourly list housekeeping) ->
//! `attempt` (one message: `Directory::classify` per recipient) -> `local`
//! (one mailbox) / `remote` (the remote recipients, by domain and envelope
//! sender: `limits`, `route` over `dns`, the SMTP client behind
//! `transport`, `signer` before sending) / `lists` (posts, requests,
//! moderation) / `autoreply` / `srs` (sender rewriting), with `message`
//! (raw header helpers), `failure` (what went wrong), `policy` (retry,
//! give-up and warning rules) and `bounce` (the DSN text). The spool, store
//! and directory are reached through the traits in `backend`.

pub mod attempt;
pub mod autoreply;
pub mod backend;
pub mod bounce;
pub mod context;
pub mod dns;
pub mod failure;
#[cfg(test)]
mod features_tests;
pub mod limits;
pub mod lists;
pub mod local;
pub mod message;
pub mod policy;
pub mod remote;
#[cfg(test)]
mod remote_tests;
pub mod route;
pub mod scheduler;
pub mod signer;
pub mod srs;
#[cfg(test)]
mod testing;
pub mod transport;

pub use context::Context;
pub use remote::{RemoteDelivery, SetupError};
pub use signer::{DkimSigning, MessageSigner, NoSigning};

use postamt_config::Config;
use postamt_directory::Directory;
use postamt_spool::Spool;
use postamt_store::MailStore;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The delivery agent's shared state.
pub struct DeliveryAgent {
    pub config: Arc<Config>,
    pub directory: Arc<Directory>,
    pub spool: Arc<Spool>,
    pub store: Arc<MailStore>,
    ctx: Arc<Context>,
}

impl DeliveryAgent {
    /// The agent with remote delivery built from the configuration. A part
    /// of it that cannot be set up (unreadable `tls_ca_file`, bad
    /// smarthost, no resolver configuration) is logged, and remote mail
    /// then waits in the queue with that reason; `try_new` reports it
    /// instead.
    pub fn new(
        config: Arc<Config>,
        directory: Arc<Directory>,
        spool: Arc<Spool>,
        store: Arc<MailStore>,
    ) -> Arc<Self> {
        let remote =
            RemoteDelivery::from_config_or_degraded(&config, context::DEFAULT_MAX_IN_FLIGHT);
        DeliveryAgent::with_remote(config, directory, spool, store, remote)
    }

    /// The agent with remote delivery built from the configuration, or the
    /// reason it cannot be (for `serve` to refuse to start).
    pub fn try_new(
        config: Arc<Config>,
        directory: Arc<Directory>,
        spool: Arc<Spool>,
        store: Arc<MailStore>,
    ) -> Result<Arc<Self>, SetupError> {
        let remote = RemoteDelivery::from_config(&config, context::DEFAULT_MAX_IN_FLIGHT)?;
        Ok(DeliveryAgent::with_remote(
            config, directory, spool, store, remote,
        ))
    }

    /// The agent with the given remote delivery (a DKIM signer set with
    /// `RemoteDelivery::with_signer`, or test doubles).
    pub fn with_remote(
        config: Arc<Config>,
        directory: Arc<Directory>,
        spool: Arc<Spool>,
        store: Arc<MailStore>,
        remote: RemoteDelivery,
    ) -> Arc<Self> {
        DeliveryAgent::with_remote_and_srs(config, directory, spool, store, remote, None)
    }

    /// `with_remote`, plus sender rewriting for forwarded copies and the
    /// return of their bounces (`postamt_srs::Srs::load_or_create(
    /// <data_dir>/srs.key, primary domain)`). Without it, forwarded copies
    /// keep the original sender and SRS addresses are unknown.
    pub fn with_remote_and_srs(
        config: Arc<Config>,
        directory: Arc<Directory>,
        spool: Arc<Spool>,
        store: Arc<MailStore>,
        remote: RemoteDelivery,
        srs: Option<Arc<postamt_srs::Srs>>,
    ) -> Arc<Self> {
        let mut ctx = Context::new(
            Arc::clone(&config),
            Arc::clone(&spool) as Arc<dyn backend::QueueBackend>,
            Arc::clone(&store) as Arc<dyn backend::StoreBackend>,
            Arc::clone(&directory) as Arc<dyn backend::ResolverBackend>,
        )
        .with_remote(Arc::new(remote));
        if let Some(s) = srs {
            ctx = ctx.with_srs(s);
        }
        let ctx = Arc::new(ctx);
        Arc::new(DeliveryAgent {
            config,
            directory,
            spool,
            store,
            ctx,
        })
    }

    /// Runs until `shutdown`: recovers the queue at start, then delivers new
    /// arrivals at once and due retries on schedule. Finishes the messages in
    /// hand before returning.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        scheduler::run(Arc::clone(&self.ctx), shutdown).await
    }

    /// Makes every queued message (not held) due now and wakes the agent.
    /// Returns at once: the running agent saves `next_attempt = now` in the
    /// spool and picks up messages it was not told about.
    pub fn flush(&self) {
        self.ctx.flush()
    }

    /// Applies a reloaded configuration to the attempts that start from
    /// now on (see [`Context::set_config`]: remote routing keeps its
    /// settings until a restart).
    pub fn reconfigure(&self, config: Arc<Config>) {
        self.ctx.set_config(config);
    }

    /// Makes the running agent re-read the queue (after the CLI held,
    /// released or deleted a message). It also does so every minute.
    pub fn rescan(&self) {
        self.ctx.rescan()
    }
}
