//! The CAPABILITY list (pure), computed from the connection's properties
//! and the session state, so that what is advertised always matches what
//! the session accepts (RFC 3501 6.1.1, RFC 2595 for LOGINDISABLED).

use crate::SessionProps;

impl SessionProps {
    /// Plaintext logins (LOGIN, AUTHENTICATE PLAIN) only on loopback or
    /// over TLS.
    pub fn plaintext_allowed(&self) -> bool {
        self.secure || self.loopback
    }

    /// STARTTLS is offered and accepted.
    pub fn starttls_offered(&self) -> bool {
        self.tls_available && !self.secure
    }
}

/// Capabilities advertised by every state.
const COMMON: &[&str] = &["IMAP4rev1", "SASL-IR", "LITERAL+", "ID", "ENABLE", "IDLE"];

/// Capabilities that matter once logged in.
const AUTHENTICATED: &[&str] = &[
    "NAMESPACE",
    "UNSELECT",
    "UIDPLUS",
    "MOVE",
    "CHILDREN",
    "SPECIAL-USE",
    "LIST-EXTENDED",
    "LIST-STATUS",
    "CONDSTORE",
    "QRESYNC",
    "ESEARCH",
    "STATUS=SIZE",
    "UTF8=ACCEPT",
];

/// The capability list for a session with `props`, logged in or not.
pub fn capabilities(props: &SessionProps, authenticated: bool) -> Vec<&'static str> {
    let mut caps: Vec<&'static str> = COMMON.to_vec();
    if authenticated {
        caps.extend_from_slice(AUTHENTICATED);
        return caps;
    }
    if props.starttls_offered() {
        caps.push("STARTTLS");
    }
    if props.plaintext_allowed() {
        caps.push("AUTH=PLAIN");
    } else {
        caps.push("LOGINDISABLED");
    }
    // Clients may cache the pre-login list; the full one follows in the
    // LOGIN reply. Advertising these early is harmless and saves a
    // CAPABILITY round trip for clients that only ask once.
    caps.extend_from_slice(AUTHENTICATED);
    caps
}

/// `CAPABILITY` data (without `* ` and line end).
pub fn capability_line(props: &SessionProps, authenticated: bool) -> String {
    let mut s = String::from("CAPABILITY");
    for c in capabilities(props, authenticated) {
        s.push(' ');
        s.push_str(c);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(secure: bool, loopback: bool, tls_available: bool) -> SessionProps {
        SessionProps {
            secure,
            loopback,
            tls_available,
        }
    }

    #[test]
    fn remote_plaintext_is_login_disabled_with_starttls() {
        let caps = capabilities(&props(false, false, true), false);
        assert!(caps.contains(&"LOGINDISABLED"));
        assert!(caps.contains(&"STARTTLS"));
        assert!(!caps.contains(&"AUTH=PLAIN"));
        assert_eq!(caps[0], "IMAP4rev1");
    }

    #[test]
    fn loopback_and_tls_may_log_in() {
        for p in [props(false, true, true), props(true, false, true)] {
            let caps = capabilities(&p, false);
            assert!(caps.contains(&"AUTH=PLAIN"), "{p:?}");
            assert!(!caps.contains(&"LOGINDISABLED"), "{p:?}");
        }
        assert!(!capabilities(&props(true, false, true), false).contains(&"STARTTLS"));
        assert!(capabilities(&props(false, true, true), false).contains(&"STARTTLS"));
        assert!(!capabilities(&props(false, true, false), false).contains(&"STARTTLS"));
    }

    #[test]
    fn after_login_no_login_capabilities() {
        let caps = capabilities(&props(true, false, false), true);
        for c in ["AUTH=PLAIN", "LOGINDISABLED", "STARTTLS"] {
            assert!(!caps.contains(&c), "{c}");
        }
        for c in [
            "IDLE",
            "UIDPLUS",
            "MOVE",
            "CONDSTORE",
            "QRESYNC",
            "ESEARCH",
            "SPECIAL-USE",
            "NAMESPACE",
            "UNSELECT",
            "CHILDREN",
            "ENABLE",
            "ID",
            "LITERAL+",
            "STATUS=SIZE",
        ] {
            assert!(caps.contains(&c), "{c}");
        }
    }

    #[test]
    fn line_starts_with_the_keyword() {
        let line = capability_line(&props(false, true, false), false);
        assert!(line.starts_with("CAPABILITY IMAP4rev1 "), "{line}");
    }
}
