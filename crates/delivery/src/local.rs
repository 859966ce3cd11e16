//! Local delivery into the store, and the classification of directory and
//! store errors into temporary or permanent failures with their status codes.

use crate::backend::StoreBackend;
use crate::failure::Failure;
use postamt_directory::ResolveError;
use postamt_spool::QueueId;
use postamt_store::StoreError;

/// Delivers the message into `user`'s mailbox: the inbox, or the Junk
/// folder for a message the receiver marked as quarantined (DMARC
/// `p=quarantine`, see `postamt_sender_auth::is_quarantined`).
pub fn deliver_local(
    store: &dyn StoreBackend,
    user: &str,
    data: &[u8],
    id: &QueueId,
) -> Result<String, Failure> {
    if postamt_sender_auth::is_quarantined(data) {
        let (name, in_junk) = store
            .deliver_to_junk(user, data, &id.0)
            .map_err(|e| classify_store(&e))?;
        tracing::info!(queue_id = %id, user, folder = if in_junk { "Junk" } else { "INBOX" },
            "quarantined message (DMARC p=quarantine) filed");
        return Ok(name);
    }
    store
        .deliver(user, data, &id.0)
        .map_err(|e| classify_store(&e))
}

/// What a directory error means for the recipient.
pub fn classify_resolve(e: &ResolveError) -> Failure {
    match e {
        // The user was deleted between RCPT and delivery.
        ResolveError::Unknown => Failure::permanent("5.1.1", "no such user", true),
        ResolveError::Loop(_) | ResolveError::TooDeep(_) => {
            Failure::permanent("5.4.6", &e.to_string(), true)
        }
        ResolveError::Db(_) => Failure::temporary("4.3.0", &e.to_string(), true),
    }
}

/// What a store error means for the destination.
pub fn classify_store(e: &StoreError) -> Failure {
    match e {
        StoreError::NoMailbox(_) => Failure::permanent("5.2.1", "mailbox unavailable", true),
        StoreError::InvalidUser(_) => {
            Failure::permanent("5.1.3", "invalid mailbox name for this user", true)
        }
        // An unwritable mailbox, a full disk...: retried, bounced when too old.
        StoreError::Io(_) => Failure::temporary("4.2.0", &e.to_string(), true),
        StoreError::InUse => Failure::temporary("4.2.1", "mailbox is busy", true),
        StoreError::Gone(_) => Failure::temporary("4.3.0", &e.to_string(), true),
        // Folder errors come from IMAP operations, never from delivery
        // into INBOX; if one shows up, retry rather than bounce.
        StoreError::BadFolderName(_)
        | StoreError::NoSuchFolder(_)
        | StoreError::FolderExists(_)
        | StoreError::NotAllowed(_)
        | StoreError::Index(_) => Failure::temporary("4.3.0", &e.to_string(), true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::Severity;

    #[test]
    fn resolve_errors_map_to_status_codes() {
        let f = classify_resolve(&ResolveError::Unknown);
        assert_eq!(f.line(), "5.1.1 no such user");
        assert!(f.is_permanent());
        let f = classify_resolve(&ResolveError::Loop("a@b".into()));
        assert_eq!(
            (f.status.as_str(), f.severity),
            ("5.4.6", Severity::Permanent)
        );
        let f = classify_resolve(&ResolveError::TooDeep(10));
        assert_eq!(
            (f.status.as_str(), f.severity),
            ("5.4.6", Severity::Permanent)
        );
        let f = classify_resolve(&ResolveError::Db("locked".into()));
        assert_eq!(
            (f.status.as_str(), f.severity),
            ("4.3.0", Severity::Temporary)
        );
        assert!(f.local);
    }

    /// Records which of the two store calls each delivery used.
    #[derive(Default)]
    struct Recorder(std::sync::Mutex<Vec<&'static str>>);

    impl StoreBackend for Recorder {
        fn deliver(&self, _: &str, _: &[u8], _: &str) -> Result<String, StoreError> {
            self.0.lock().unwrap().push("inbox");
            Ok("n".into())
        }
        fn deliver_to_junk(
            &self,
            _: &str,
            _: &[u8],
            _: &str,
        ) -> Result<(String, bool), StoreError> {
            self.0.lock().unwrap().push("junk");
            Ok(("j".into(), true))
        }
    }

    #[test]
    fn quarantined_messages_go_to_junk_others_to_the_inbox() {
        let store = Recorder::default();
        let id = QueueId("0193f1c2a4b57c3d8e9f0a1b2c3d4e5f".into());
        let marked =
            b"X-Postamt-Quarantine: dmarc (a.example policy quarantine)\r\nFrom: a\r\n\r\nb";
        assert_eq!(deliver_local(&store, "bob", marked, &id).unwrap(), "j");
        let plain = b"From: a\r\n\r\nX-Postamt-Quarantine: in the body\r\n";
        assert_eq!(deliver_local(&store, "bob", plain, &id).unwrap(), "n");
        assert_eq!(*store.0.lock().unwrap(), ["junk", "inbox"]);
    }

    #[test]
    fn store_errors_map_to_status_codes() {
        let f = classify_store(&StoreError::NoMailbox("bob".into()));
        assert_eq!(f.line(), "5.2.1 mailbox unavailable");
        assert!(f.is_permanent());
        let f = classify_store(&StoreError::InvalidUser("../x".into()));
        assert_eq!(
            (f.status.as_str(), f.severity),
            ("5.1.3", Severity::Permanent)
        );
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        let f = classify_store(&StoreError::Io(io));
        assert_eq!(
            (f.status.as_str(), f.severity),
            ("4.2.0", Severity::Temporary)
        );
        assert!(f.line().starts_with("4.2.0 "), "{}", f.line());
        assert!(f.line().contains("denied"));
        assert!(f.local);
    }
}
