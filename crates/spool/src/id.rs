//! Queue ids: UUID v7 as 32 lowercase hex digits, sortable by arrival, and
//! the only strings the spool ever turns into file names.

use crate::SpoolError;
use serde::{Deserialize, Serialize};

/// Length of a queue id in hex digits.
pub const QUEUE_ID_LEN: usize = 32;

/// A queue id (UUID v7, simple lowercase hex): sortable by arrival.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct QueueId(pub String);

impl std::fmt::Display for QueueId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl QueueId {
    /// A new, unique id (UUID v7 as 32 lowercase hex digits).
    pub fn generate() -> QueueId {
        QueueId(uuid::Uuid::now_v7().simple().to_string())
    }

    /// Whether this id has the canonical form (32 lowercase hex digits), the
    /// only form the spool uses in a path. The field is public, so every
    /// path the spool builds checks this again.
    pub fn is_canonical(&self) -> bool {
        is_canonical(&self.0)
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether `s` is exactly 32 lowercase hex digits.
pub(crate) fn is_canonical(s: &str) -> bool {
    s.len() == QUEUE_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl std::str::FromStr for QueueId {
    type Err = SpoolError;
    /// Accepts only ids the spool could have made (32 hex digits, either
    /// case, normalised to lowercase), so an id from the command line can
    /// never name a path outside the spool.
    fn from_str(s: &str) -> Result<Self, SpoolError> {
        if s.len() == QUEUE_ID_LEN && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(QueueId(s.to_ascii_lowercase()))
        } else {
            // Bound what we echo back: the input may be anything.
            let shown: String = s.chars().take(64).collect();
            Err(SpoolError::NotFound(shown))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn generated_ids_are_canonical_unique_and_sorted() {
        let ids: Vec<QueueId> = (0..1000).map(|_| QueueId::generate()).collect();
        for id in &ids {
            assert!(id.is_canonical(), "{id}");
            assert_eq!(id.0.parse::<QueueId>().ok().as_ref(), Some(id));
        }
        let set: HashSet<_> = ids.iter().collect();
        assert_eq!(set.len(), ids.len());
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(
            sorted, ids,
            "v7 ids generated in one process sort by arrival"
        );
    }

    #[test]
    fn from_str_normalises_case() {
        let id: QueueId = "0193F1C2A4B57C3D8E9F0A1B2C3D4E5F".parse().unwrap();
        assert_eq!(id.0, "0193f1c2a4b57c3d8e9f0a1b2c3d4e5f");
    }

    #[test]
    fn from_str_rejects_paths_and_junk() {
        for bad in [
            "",
            "../x",
            "../../../../etc/passwd",
            "0193f1c2a4b57c3d8e9f0a1b2c3d4e5",   // 31
            "0193f1c2a4b57c3d8e9f0a1b2c3d4e5f0", // 33
            "0193f1c2a4b57c3d8e9f0a1b2c3d4e5g",
            "0193f1c2a4b57c3d8e9f0a1b2c3d4e/f",
            "0193f1c2-a4b5-7c3d-8e9f-0a1b2c3d",
            "0193f1c2a4b57c3d8e9f0a1b2c3d4e\u{e9}",
        ] {
            assert!(bad.parse::<QueueId>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn canonical_check_rejects_uppercase_and_paths() {
        assert!(!QueueId("../x".into()).is_canonical());
        assert!(!QueueId("0193F1C2A4B57C3D8E9F0A1B2C3D4E5F".into()).is_canonical());
        assert!(QueueId("0193f1c2a4b57c3d8e9f0a1b2c3d4e5f".into()).is_canonical());
    }
}
