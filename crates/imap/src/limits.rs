//! Bounds on what an IMAP client may send, shared by the session's command
//! reader and the `imap_command` fuzz target so that both frame and decode
//! commands with the same limits (imap-codec's fragmentizer + decoders).
//!
//! Sizes are in bytes. Before login everything is small (a hostile peer
//! gets `BYE` quickly); after login a literal may carry a whole message
//! (APPEND), bounded by `[limits] max_message_size`.

/// Longest command line (one line of a command, literals excluded), as
/// Dovecot's default `imap_max_line_length` (64 KiB).
pub const MAX_LINE_LEN: usize = 64 * 1024;

/// Largest literal a client may announce before it is authenticated
/// (LOGIN user/password, AUTHENTICATE initial response).
pub const MAX_LITERAL_BEFORE_AUTH: u32 = 8 * 1024;

/// Largest whole command (lines + literals) before authentication: the
/// fragmentizer's `max_message_size` in that state.
pub const MAX_COMMAND_BEFORE_AUTH: u32 = 16 * 1024;

/// Largest literal after login when the configuration sets no smaller
/// message size limit (APPEND of a big message).
pub const MAX_LITERAL_AFTER_AUTH_DEFAULT: u32 = 50 * 1024 * 1024;

/// Room for the command line(s) around a literal after login.
pub const COMMAND_OVERHEAD: u32 = 2 * MAX_LINE_LEN as u32;

/// Most literals in one command (e.g. a multi-append or many quoted names).
pub const MAX_LITERALS_PER_COMMAND: usize = 64;

/// Longest line of an AUTHENTICATE continuation (base64 of a PLAIN
/// response; RFC 4616 bounds each field at 255 octets).
pub const MAX_AUTHENTICATE_LINE: u32 = 8 * 1024;

/// Longest line accepted while idling (only `DONE` is expected).
pub const MAX_IDLE_LINE: u32 = 1024;

/// Deepest MIME nesting rendered in BODYSTRUCTURE or walked by SEARCH;
/// deeper parts are shown as opaque `application/octet-stream` leaves.
pub const MAX_MIME_DEPTH: usize = 64;

/// Largest literal after login for a configured `[limits] max_message_size`
/// (0 or anything above `u32` range falls back to
/// [`MAX_LITERAL_AFTER_AUTH_DEFAULT`] capped to fit the codec's `u32`).
pub fn max_literal_after_auth(max_message_size: u64) -> u32 {
    if max_message_size == 0 {
        return MAX_LITERAL_AFTER_AUTH_DEFAULT;
    }
    u32::try_from(max_message_size).unwrap_or(u32::MAX - COMMAND_OVERHEAD)
}

/// The fragmentizer's `max_message_size` for a session in the given state:
/// a whole command (lines and literals) never grows beyond this.
pub fn max_command_size(authenticated: bool, max_message_size: u64) -> u32 {
    if authenticated {
        max_literal_after_auth(max_message_size).saturating_add(COMMAND_OVERHEAD)
    } else {
        MAX_COMMAND_BEFORE_AUTH
    }
}

/// What to do with a literal a client announced (`{n}` or `{n+}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LiteralVerdict {
    /// Within bounds: send `+` for a synchronizing literal, read it.
    Accept,
    /// Too big for this state: a synchronizing literal is refused with a
    /// tagged `NO [TOOBIG]`/`BAD` (the client will not send it); a
    /// non-synchronizing one is already on its way, so the session must
    /// close with `BYE` (its bytes cannot be told from commands).
    TooBig,
}

/// Checks an announced literal length against the state's limit.
pub fn check_literal(length: u32, authenticated: bool, max_message_size: u64) -> LiteralVerdict {
    let limit = if authenticated {
        max_literal_after_auth(max_message_size)
    } else {
        MAX_LITERAL_BEFORE_AUTH
    };
    if length > limit {
        LiteralVerdict::TooBig
    } else {
        LiteralVerdict::Accept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_limits_depend_on_state() {
        assert_eq!(check_literal(100, false, 0), LiteralVerdict::Accept);
        assert_eq!(
            check_literal(MAX_LITERAL_BEFORE_AUTH + 1, false, 0),
            LiteralVerdict::TooBig
        );
        assert_eq!(
            check_literal(MAX_LITERAL_BEFORE_AUTH + 1, true, 1 << 20),
            LiteralVerdict::Accept
        );
        assert_eq!(
            check_literal((1 << 20) + 1, true, 1 << 20),
            LiteralVerdict::TooBig
        );
    }

    #[test]
    fn command_size_covers_a_full_literal() {
        let max = 10 * 1024 * 1024;
        assert!(max_command_size(true, max) > max as u32);
        assert_eq!(max_command_size(false, max), MAX_COMMAND_BEFORE_AUTH);
        const { assert!(MAX_COMMAND_BEFORE_AUTH > MAX_LITERAL_BEFORE_AUTH) };
        // No overflow on absurd configurations.
        assert!(max_command_size(true, u64::MAX) >= COMMAND_OVERHEAD);
        assert_eq!(max_literal_after_auth(0), MAX_LITERAL_AFTER_AUTH_DEFAULT);
    }
}
