//! Marks kept in a recipient's `delivered_to` list besides real
//! destinations: a list post waiting for its moderator (`held:NAME`) or
//! approved by them (`approved:NAME`). Neither can be a mailbox (no `:` in
//! user names) nor a remote address (no `@`). The delivery agent writes
//! and reads them, the admin operations (approve/reject from the CLI or the
//! web admin) change them: both use these functions.

/// The mark of a post held for list `list`'s moderator.
pub fn held_mark(list: &str) -> String {
    format!("held:{}", list.to_ascii_lowercase())
}

/// The mark of a post the moderator of `list` approved.
pub fn approved_mark(list: &str) -> String {
    format!("approved:{}", list.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_are_lowercase_and_never_an_address() {
        assert_eq!(held_mark("Team"), "held:team");
        assert_eq!(approved_mark("TEAM"), "approved:team");
        assert!(!held_mark("x").contains('@'));
    }
}
