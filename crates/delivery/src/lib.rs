//! The delivery agent: takes queued messages from the spool, expands each
//! recipient through the directory, delivers locally into the store, retries
//! temporary failures on the configured schedule and bounces permanent ones
//! (RFC 3464), with a copy to the postmaster for local failures.
//!
//! SKELETON: signatures are the contract other crates code against; the
//! bodies are being written.

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
}

impl DeliveryAgent {
    pub fn new(
        config: Arc<Config>,
        directory: Arc<Directory>,
        spool: Arc<Spool>,
        store: Arc<MailStore>,
    ) -> Arc<Self> {
        Arc::new(DeliveryAgent {
            config,
            directory,
            spool,
            store,
        })
    }

    /// Runs until `shutdown`: recovers the queue at start, then delivers new
    /// arrivals at once and due retries on schedule. Finishes the messages in
    /// hand before returning.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let _ = shutdown;
        todo!()
    }

    /// Makes every queued message (not held) due now and wakes the agent.
    pub fn flush(&self) {
        todo!()
    }
}
