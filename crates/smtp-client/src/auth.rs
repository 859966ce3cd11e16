//! SMTP AUTH (RFC 4954) client side: choosing PLAIN (RFC 4616) or LOGIN and
//! encoding what we send. Pure; the exchange runs in the connection code.

use crate::Credentials;
use crate::ehlo::Capabilities;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// A SASL mechanism we can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Login,
}

impl Mechanism {
    /// PLAIN when offered, else LOGIN, else `None`.
    pub fn choose(caps: &Capabilities) -> Option<Mechanism> {
        if caps.auth_plain {
            Some(Mechanism::Plain)
        } else if caps.auth_login {
            Some(Mechanism::Login)
        } else {
            None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
        }
    }
}

/// Credentials that cannot be sent (PLAIN separates fields with NUL).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("the AUTH user name or password contains a NUL byte")]
pub struct InvalidCredentials;

/// `AUTH PLAIN <initial response>` (no authorisation identity).
pub fn plain_command(credentials: &Credentials) -> Result<String, InvalidCredentials> {
    if credentials.user.contains('\0') || credentials.password.contains('\0') {
        return Err(InvalidCredentials);
    }
    let mut raw = Vec::with_capacity(credentials.user.len() + credentials.password.len() + 2);
    raw.push(0);
    raw.extend_from_slice(credentials.user.as_bytes());
    raw.push(0);
    raw.extend_from_slice(credentials.password.as_bytes());
    Ok(format!("AUTH PLAIN {}", STANDARD.encode(raw)))
}

/// One LOGIN response line (user name or password), base64.
pub fn login_response(value: &str) -> String {
    STANDARD.encode(value.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(user: &str, password: &str) -> Credentials {
        Credentials {
            user: user.into(),
            password: password.into(),
        }
    }

    #[test]
    fn plain_encoding() {
        // RFC 4616 example without authzid: "\0tim\0tanstaaftanstaaf".
        assert_eq!(
            plain_command(&creds("tim", "tanstaaftanstaaf")),
            Ok("AUTH PLAIN AHRpbQB0YW5zdGFhZnRhbnN0YWFm".to_string())
        );
        assert_eq!(plain_command(&creds("a\0b", "x")), Err(InvalidCredentials));
        assert_eq!(plain_command(&creds("a", "x\0")), Err(InvalidCredentials));
    }

    #[test]
    fn login_encoding() {
        assert_eq!(login_response("alice"), "YWxpY2U=");
        assert_eq!(login_response(""), "");
    }

    #[test]
    fn mechanism_preference() {
        let mut caps = Capabilities::default();
        assert_eq!(Mechanism::choose(&caps), None);
        caps.auth_login = true;
        assert_eq!(Mechanism::choose(&caps), Some(Mechanism::Login));
        caps.auth_plain = true;
        assert_eq!(Mechanism::choose(&caps), Some(Mechanism::Plain));
    }
}
