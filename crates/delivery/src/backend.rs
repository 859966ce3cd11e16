//! The narrow views of the spool, the local store and the directory that the
//! delivery agent needs, as traits: the real structs implement them here, and
//! the unit tests put in-memory fakes behind them. All methods block (file or
//! database I/O): call them from `spawn_blocking`.

use postamt_directory::{Destination, Directory, Expansion, LocalDomains, ResolveError, Target};
use postamt_spool::{Envelope, Loaded, NewMessage, QueueId, Spool, SpoolError};
use postamt_store::{MailStore, StoreError};
use tokio::sync::mpsc::UnboundedReceiver;

/// The queue as the delivery agent uses it.
pub trait QueueBackend: Send + Sync {
    /// The receiver of new arrivals' ids; `None` once taken.
    fn take_arrivals(&self) -> Option<UnboundedReceiver<QueueId>>;
    /// Every queued envelope.
    fn list(&self) -> Result<Vec<Envelope>, SpoolError>;
    fn get(&self, id: &QueueId) -> Result<Envelope, SpoolError>;
    fn read_message(&self, id: &QueueId) -> Result<Vec<u8>, SpoolError>;
    /// The envelope and the message at once (the real spool reads the
    /// queue file once).
    fn load(&self, id: &QueueId) -> Result<Loaded, SpoolError> {
        Ok(Loaded {
            envelope: self.get(id)?,
            message: self.read_message(id)?,
            has_state: true,
        })
    }
    fn update(&self, env: &Envelope) -> Result<(), SpoolError>;
    fn remove(&self, id: &QueueId) -> Result<(), SpoolError>;
    /// Removes a finished message; `has_state` as `load` said, `size` the
    /// message's.
    fn remove_finished(&self, id: &QueueId, has_state: bool, size: u64) -> Result<(), SpoolError> {
        let _ = (has_state, size);
        self.remove(id)
    }
    /// Queues a new message (bounces, delay warnings) durably.
    fn enqueue(&self, msg: NewMessage, data: Vec<u8>) -> Result<QueueId, SpoolError>;
}

/// Local mailboxes.
pub trait StoreBackend: Send + Sync {
    /// Delivers `data` into `user`'s inbox; returns the new message's name.
    fn deliver(&self, user: &str, data: &[u8], queue_id: &str) -> Result<String, StoreError>;

    /// Delivers a quarantined message into `user`'s Junk folder (the inbox
    /// when there is none); returns the new message's name and whether it
    /// went to Junk. Stores without folders deliver to the inbox.
    fn deliver_to_junk(
        &self,
        user: &str,
        data: &[u8],
        queue_id: &str,
    ) -> Result<(String, bool), StoreError> {
        Ok((self.deliver(user, data, queue_id)?, false))
    }
}

/// Recipient expansion.
pub trait ResolverBackend: Send + Sync {
    fn resolve(
        &self,
        address: &str,
        local: &LocalDomains,
    ) -> Result<Vec<Destination>, ResolveError>;

    /// What a recipient address is (list, list service address, or
    /// destinations with forwards applied): the delivery agent's question.
    /// The default knows no lists and no forwards: `resolve`'s destinations.
    fn classify(&self, address: &str, local: &LocalDomains) -> Result<Target, ResolveError> {
        self.resolve(address, local).map(|destinations| {
            Target::Deliver(Expansion {
                destinations,
                ..Expansion::default()
            })
        })
    }

    /// The directory behind, for lists, forwards, auto-replies and pending
    /// confirmations; `None` (the default) for a resolver that knows none
    /// of them, and then those features are skipped.
    fn mail_directory(&self) -> Option<&Directory> {
        None
    }
}

impl QueueBackend for Spool {
    fn take_arrivals(&self) -> Option<UnboundedReceiver<QueueId>> {
        Spool::take_arrivals(self)
    }
    fn list(&self) -> Result<Vec<Envelope>, SpoolError> {
        Spool::list(self)
    }
    fn get(&self, id: &QueueId) -> Result<Envelope, SpoolError> {
        Spool::get(self, id)
    }
    fn read_message(&self, id: &QueueId) -> Result<Vec<u8>, SpoolError> {
        Spool::read_message(self, id)
    }
    fn load(&self, id: &QueueId) -> Result<Loaded, SpoolError> {
        Spool::load(self, id)
    }
    fn remove_finished(&self, id: &QueueId, has_state: bool, size: u64) -> Result<(), SpoolError> {
        Spool::remove_finished(self, id, has_state, size)
    }
    fn update(&self, env: &Envelope) -> Result<(), SpoolError> {
        Spool::update(self, env)
    }
    fn remove(&self, id: &QueueId) -> Result<(), SpoolError> {
        Spool::remove(self, id)
    }
    fn enqueue(&self, msg: NewMessage, data: Vec<u8>) -> Result<QueueId, SpoolError> {
        Spool::enqueue_blocking(self, msg, data)
    }
}

impl StoreBackend for MailStore {
    fn deliver(&self, user: &str, data: &[u8], queue_id: &str) -> Result<String, StoreError> {
        MailStore::deliver(self, user, data, queue_id)
    }

    fn deliver_to_junk(
        &self,
        user: &str,
        data: &[u8],
        queue_id: &str,
    ) -> Result<(String, bool), StoreError> {
        MailStore::deliver_to_junk(self, user, data, queue_id)
    }
}

impl ResolverBackend for Directory {
    fn resolve(
        &self,
        address: &str,
        local: &LocalDomains,
    ) -> Result<Vec<Destination>, ResolveError> {
        Directory::resolve(self, address, local)
    }
    fn classify(&self, address: &str, local: &LocalDomains) -> Result<Target, ResolveError> {
        Directory::classify(self, address, local)
    }
    fn mail_directory(&self) -> Option<&Directory> {
        Some(self)
    }
}
