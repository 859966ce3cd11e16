//! The envelope types: what the receiver hands to the spool (`NewMessage`)
//! and the per-message delivery state kept with it (`Envelope`).

use crate::QueueId;
use serde::{Deserialize, Serialize};

/// What the receiver (or the delivery agent, for bounces) hands to the spool.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NewMessage {
    /// The id to use (the receiver makes it before DATA so that the
    /// `Received:` header can name it); `None` = the spool makes one.
    pub id: Option<QueueId>,
    /// Envelope sender; empty for the null sender `<>`.
    pub mail_from: String,
    /// Envelope recipients as given in RCPT TO (already checked).
    pub recipients: Vec<String>,
    /// Client IP and HELO name, for logs and `queue show`.
    pub client: Option<String>,
    pub helo: Option<String>,
    /// Authenticated user, if any.
    pub auth_user: Option<String>,
    /// BODY=8BITMIME was given.
    pub eight_bit: bool,
    /// SMTPUTF8 was given.
    pub smtputf8: bool,
}

/// Per-recipient delivery state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecipientStatus {
    /// Not yet delivered (maybe deferred: see `last_error`).
    Pending,
    Delivered,
    /// Permanently failed; a bounce was (or will be) generated.
    Failed,
}

/// One envelope recipient and its fate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    pub address: String,
    pub status: RecipientStatus,
    pub attempts: u32,
    /// The last error or remote reply, for `queue list`, logs and bounces.
    pub last_error: Option<String>,
    /// Final destinations (user names or remote addresses) this recipient
    /// expanded to that already have the message, so a retry never
    /// delivers twice to them.
    #[serde(default)]
    pub delivered_to: Vec<String>,
}

/// A queued message's envelope and state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub id: QueueId,
    pub mail_from: String,
    pub recipients: Vec<Recipient>,
    pub client: Option<String>,
    pub helo: Option<String>,
    pub auth_user: Option<String>,
    pub eight_bit: bool,
    pub smtputf8: bool,
    /// Message size in bytes.
    pub size: u64,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds of the next delivery attempt.
    pub next_attempt: i64,
    /// Delivery attempts made so far.
    pub attempts: u32,
    /// Held by the admin: not delivered until released.
    pub held: bool,
    /// A delay warning was sent already.
    pub delay_warned: bool,
    /// Bounce already generated for these failed recipients (addresses).
    pub bounced: Vec<String>,
}

impl Envelope {
    /// Whether no recipient is pending any more.
    pub fn is_done(&self) -> bool {
        self.recipients
            .iter()
            .all(|r| r.status != RecipientStatus::Pending)
    }

    /// The envelope of a message just received: every recipient pending,
    /// due at once (`next_attempt == created_at == now`).
    pub fn initial(id: QueueId, msg: NewMessage, size: u64, now: i64) -> Envelope {
        Envelope {
            id,
            mail_from: msg.mail_from,
            recipients: msg
                .recipients
                .into_iter()
                .map(|address| Recipient {
                    address,
                    status: RecipientStatus::Pending,
                    attempts: 0,
                    last_error: None,
                    delivered_to: Vec::new(),
                })
                .collect(),
            client: msg.client,
            helo: msg.helo,
            auth_user: msg.auth_user,
            eight_bit: msg.eight_bit,
            smtputf8: msg.smtputf8,
            size,
            created_at: now,
            next_attempt: now,
            attempts: 0,
            held: false,
            delay_warned: false,
            bounced: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_message() -> NewMessage {
        NewMessage {
            id: None,
            mail_from: "alice@example.org".into(),
            recipients: vec!["bob@example.org".into(), "carol@example.net".into()],
            client: Some("192.0.2.1".into()),
            helo: Some("client.example".into()),
            auth_user: Some("alice".into()),
            eight_bit: true,
            smtputf8: false,
        }
    }

    #[test]
    fn initial_envelope_is_pending_and_due_now() {
        let id = QueueId::generate();
        let env = Envelope::initial(id.clone(), new_message(), 1234, 1_700_000_000);
        assert_eq!(env.id, id);
        assert_eq!(env.size, 1234);
        assert_eq!(env.created_at, 1_700_000_000);
        assert_eq!(env.next_attempt, env.created_at);
        assert_eq!(env.attempts, 0);
        assert!(!env.held && !env.delay_warned && env.bounced.is_empty());
        assert_eq!(env.recipients.len(), 2);
        assert_eq!(env.recipients[1].address, "carol@example.net");
        assert!(
            env.recipients
                .iter()
                .all(|r| r.status == RecipientStatus::Pending && r.attempts == 0)
        );
        assert_eq!(env.client.as_deref(), Some("192.0.2.1"));
        assert!(env.eight_bit && !env.smtputf8);
        assert!(!env.is_done());
    }

    #[test]
    fn done_when_no_recipient_pending() {
        let mut env = Envelope::initial(QueueId::generate(), new_message(), 1, 0);
        env.recipients[0].status = RecipientStatus::Delivered;
        assert!(!env.is_done());
        env.recipients[1].status = RecipientStatus::Failed;
        assert!(env.is_done());
    }

    #[test]
    fn status_serialises_lowercase_and_delivered_to_defaults() {
        let json = r#"{"address":"a@b","status":"delivered","attempts":2,"last_error":null}"#;
        let r: Recipient = serde_json::from_str(json).unwrap();
        assert_eq!(r.status, RecipientStatus::Delivered);
        assert!(r.delivered_to.is_empty());
        let back = serde_json::to_string(&r).unwrap();
        assert!(back.contains(r#""status":"delivered""#), "{back}");
    }
}
