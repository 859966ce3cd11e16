//! The CAPA list (RFC 2449), computed from the session's properties so that
//! what is advertised always matches what the session accepts.

/// Facts about a connection that decide what it may do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionProps {
    /// The connection is encrypted (implicit TLS, or after STLS).
    pub secure: bool,
    /// The peer is a loopback address.
    pub loopback: bool,
    /// STLS may be offered (the connection has a TLS acceptor). STLS is
    /// advertised and accepted only while `secure` is false.
    pub tls_available: bool,
}

impl SessionProps {
    /// Plaintext logins (USER/PASS, AUTH PLAIN) only on loopback or over TLS.
    pub fn plaintext_allowed(&self) -> bool {
        self.secure || self.loopback
    }
}

/// The SASL mechanisms this session may use.
pub fn sasl_mechanisms(props: &SessionProps) -> Vec<&'static str> {
    if props.plaintext_allowed() {
        vec!["PLAIN"]
    } else {
        Vec::new()
    }
}

/// The capability lines for `CAPA`, in a stable order.
pub fn capabilities(props: &SessionProps) -> Vec<String> {
    let mut caps: Vec<String> = vec!["TOP".into(), "UIDL".into()];
    if props.plaintext_allowed() {
        caps.push("USER".into());
    }
    caps.extend([
        "RESP-CODES".into(),
        "AUTH-RESP-CODE".into(),
        "PIPELINING".into(),
    ]);
    if props.tls_available && !props.secure {
        caps.push("STLS".into());
    }
    let mechs = sasl_mechanisms(props);
    if !mechs.is_empty() {
        caps.push(format!("SASL {}", mechs.join(" ")));
    }
    caps.push("IMPLEMENTATION Postamt".into());
    caps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_gets_everything() {
        let props = SessionProps {
            loopback: true,
            ..Default::default()
        };
        assert_eq!(
            capabilities(&props),
            vec![
                "TOP",
                "UIDL",
                "USER",
                "RESP-CODES",
                "AUTH-RESP-CODE",
                "PIPELINING",
                "SASL PLAIN",
                "IMPLEMENTATION Postamt"
            ]
        );
    }

    #[test]
    fn remote_plaintext_hides_logins() {
        let props = SessionProps::default();
        let caps = capabilities(&props);
        assert!(!caps.iter().any(|c| c == "USER"));
        assert!(!caps.iter().any(|c| c.starts_with("SASL")));
        assert!(caps.iter().any(|c| c == "PIPELINING"));
        assert!(!props.plaintext_allowed());
    }

    #[test]
    fn tls_sessions_allow_plaintext_and_offer_stls_only_before_tls() {
        let secure = SessionProps {
            secure: true,
            tls_available: true,
            ..Default::default()
        };
        assert!(secure.plaintext_allowed());
        assert!(!capabilities(&secure).iter().any(|c| c == "STLS"));
        let before = SessionProps {
            tls_available: true,
            ..Default::default()
        };
        assert!(capabilities(&before).iter().any(|c| c == "STLS"));
    }
}
