//! The delivery agent: takes queued messages from the spool, expands each
//! recipient through the directory, delivers locally into the store, retries
//! temporary failures on the configured schedule and bounces permanent ones
//! (RFC 3464), with a copy to the postmaster for local failures.
//!
//! Map: `scheduler` (the run loop) -> `attempt` (one message) -> `local` /
//! `remote` (one destination) with `failure` (what went wrong), `policy`
//! (retry, give-up and warning rules) and `bounce` (the DSN text). The
//! spool, store and directory are reached through the traits in `backend`.

pub mod attempt;
pub mod backend;
pub mod bounce;
pub mod context;
pub mod failure;
pub mod local;
pub mod policy;
pub mod remote;
pub mod scheduler;
#[cfg(test)]
mod testing;

pub use context::Context;

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
    pub fn new(
        config: Arc<Config>,
        directory: Arc<Directory>,
        spool: Arc<Spool>,
        store: Arc<MailStore>,
    ) -> Arc<Self> {
        let ctx = Arc::new(Context::new(
            Arc::clone(&config),
            Arc::clone(&spool) as Arc<dyn backend::QueueBackend>,
            Arc::clone(&store) as Arc<dyn backend::StoreBackend>,
            Arc::clone(&directory) as Arc<dyn backend::ResolverBackend>,
        ));
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

    /// Makes the running agent re-read the queue (after the CLI held,
    /// released or deleted a message). It also does so every minute.
    pub fn rescan(&self) {
        self.ctx.rescan()
    }
}
