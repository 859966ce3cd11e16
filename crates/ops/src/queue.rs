//! Queue operations for admins: list, show, hold, release, delete, flush.

use crate::control::{self, Command};
use crate::{Admin, OpsError};
use postamt_spool::{Envelope, QueueId, RecipientStatus};

/// One line of `queue list`.
#[derive(Clone, Debug)]
pub struct QueueEntry {
    pub envelope: Envelope,
    /// Why it waits, in words.
    pub reason: String,
}

/// The queue verbs, borrowed from an [`Admin`].
pub struct QueueOps<'a> {
    pub(crate) admin: &'a Admin,
}

/// What a flush/hold/release/delete did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Applied {
    /// Messages changed.
    pub count: usize,
    /// Whether a running server was told at once.
    pub server_notified: bool,
}

impl QueueOps<'_> {
    /// Every queued message with the reason it waits.
    pub fn list(&self) -> Result<Vec<QueueEntry>, OpsError> {
        let now = chrono::Utc::now().timestamp();
        let moderated = self.held_for_moderation();
        Ok(self
            .admin
            .spool
            .list()?
            .into_iter()
            .map(|envelope| {
                let reason = match moderated.get(envelope.id.as_str()) {
                    Some(list) if envelope.held => {
                        format!("held for moderation by the owner of list {list}")
                    }
                    _ => wait_reason(&envelope, now),
                };
                QueueEntry { envelope, reason }
            })
            .collect())
    }

    /// Queue id -> list name of every post waiting for a moderator.
    fn held_for_moderation(&self) -> std::collections::HashMap<String, String> {
        let mut out = std::collections::HashMap::new();
        let Ok(lists) = self.admin.directory.lists() else {
            return out;
        };
        for l in lists {
            if let Ok(pending) = self.admin.directory.list_pending(&l.list.name) {
                for p in pending {
                    if p.action == postamt_directory::PendingAction::Post {
                        out.insert(p.payload, p.list);
                    }
                }
            }
        }
        out
    }

    /// One message's envelope and its header section.
    pub fn show(&self, id: &str) -> Result<(Envelope, String), OpsError> {
        let id: QueueId = id.parse()?;
        let env = self.admin.spool.get(&id)?;
        let data = self.admin.spool.read_message(&id)?;
        let end = find_header_end(&data);
        let headers = String::from_utf8_lossy(&data[..end]).into_owned();
        Ok((env, headers))
    }

    /// Holds a message: it stays queued but is not delivered until released.
    pub fn hold(&self, id: &str) -> Result<Applied, OpsError> {
        self.change(id, |e| e.held = true)
    }

    /// Releases a held message and makes it due now.
    pub fn release(&self, id: &str) -> Result<Applied, OpsError> {
        let now = chrono::Utc::now().timestamp();
        self.change(id, |e| {
            e.held = false;
            e.next_attempt = now;
        })
    }

    /// Removes a message from the queue without delivering or bouncing it.
    pub fn delete(&self, id: &str) -> Result<Applied, OpsError> {
        let id: QueueId = id.parse()?;
        self.admin.spool.get(&id)?;
        self.admin.spool.remove(&id)?;
        tracing::info!(queue_id = %id, "deleted by admin");
        let server_notified = self.notify(Command::Rescan);
        Ok(Applied {
            count: 1,
            server_notified,
        })
    }

    /// Makes every message that is not held due now.
    pub fn flush(&self) -> Result<Applied, OpsError> {
        let now = chrono::Utc::now().timestamp();
        let mut count = 0;
        for mut e in self.admin.spool.list()? {
            if !e.held && e.next_attempt > now {
                e.next_attempt = now;
                self.admin.spool.update(&e)?;
            }
            if !e.held {
                count += 1;
            }
        }
        let server_notified = self.notify(Command::Flush);
        Ok(Applied {
            count,
            server_notified,
        })
    }

    fn change(&self, id: &str, f: impl FnOnce(&mut Envelope)) -> Result<Applied, OpsError> {
        let id: QueueId = id.parse()?;
        let mut env = self.admin.spool.get(&id)?;
        f(&mut env);
        self.admin.spool.update(&env)?;
        tracing::info!(queue_id = %id, held = env.held, "changed by admin");
        let server_notified = self.notify(Command::Rescan);
        Ok(Applied {
            count: 1,
            server_notified,
        })
    }

    fn notify(&self, cmd: Command) -> bool {
        match control::notify(&self.admin.config.run_dir(), cmd) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "could not reach the running server");
                false
            }
        }
    }
}

/// Why a message is still in the queue, for humans.
pub fn wait_reason(e: &Envelope, now: i64) -> String {
    if e.held {
        return "held by the admin".into();
    }
    let errors: Vec<String> = e
        .recipients
        .iter()
        .filter(|r| r.status == RecipientStatus::Pending)
        .filter_map(|r| {
            r.last_error
                .as_ref()
                .map(|m| format!("{}: {}", r.address, m))
        })
        .collect();
    let when = if e.next_attempt <= now {
        "due now".to_string()
    } else {
        format!("next attempt in {}s", e.next_attempt - now)
    };
    if errors.is_empty() {
        if e.attempts == 0 {
            format!("new, {when}")
        } else {
            when
        }
    } else {
        format!("deferred ({}), {when}", errors.join("; "))
    }
}

/// The length of the header section including the blank line (or all of it).
fn find_header_end(data: &[u8]) -> usize {
    if let Some(p) = data.windows(4).position(|w| w == b"\r\n\r\n") {
        return p + 4;
    }
    if let Some(p) = data.windows(2).position(|w| w == b"\n\n") {
        return p + 2;
    }
    data.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_end() {
        assert_eq!(find_header_end(b"A: b\r\n\r\nbody"), 8);
        assert_eq!(find_header_end(b"A: b\n\nbody"), 6);
        assert_eq!(find_header_end(b"A: b"), 4);
    }
}
