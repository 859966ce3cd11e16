//! SMTP AUTH (RFC 4954) without I/O: parsing the AUTH command, the SASL
//! exchanges of PLAIN (RFC 4616) and LOGIN (the widely deployed
//! draft-murchison-sasl-login), and the base64 of every response. The
//! session checks the resulting credentials through its backend.
//!
//! SCRAM-SHA-256 is not offered: it needs a salted SCRAM verifier stored
//! per user, and the directory keeps only argon2id hashes.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use std::fmt;

/// The longest AUTH command or response line accepted, CRLF included
/// (RFC 4954 4: at least 12288 octets).
pub const MAX_AUTH_LINE: usize = 12 * 1024;

/// The mechanisms we offer, as advertised after `AUTH` in EHLO.
pub const ADVERTISED: &str = "PLAIN LOGIN";

/// `Username:` in base64, LOGIN's first challenge.
pub const LOGIN_USER_CHALLENGE: &str = "VXNlcm5hbWU6";
/// `Password:` in base64, LOGIN's second challenge.
pub const LOGIN_PASSWORD_CHALLENGE: &str = "UGFzc3dvcmQ6";

/// A SASL mechanism we implement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Login,
}

impl Mechanism {
    /// The mechanism named `name` (case-insensitive), if we offer it.
    pub fn from_name(name: &str) -> Option<Mechanism> {
        if name.eq_ignore_ascii_case("PLAIN") {
            Some(Mechanism::Plain)
        } else if name.eq_ignore_ascii_case("LOGIN") {
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

/// A parsed `AUTH <mechanism> [<initial-response>]` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthCommand<'a> {
    /// The mechanism name as sent.
    pub mechanism: &'a str,
    /// The initial response (still base64; `=` stands for an empty one).
    pub initial_response: Option<&'a str>,
}

/// Parses an AUTH line (verb already known to be AUTH); `None` on a
/// syntax error (no mechanism, extra words, not UTF-8).
pub fn parse_auth(line: &[u8]) -> Option<AuthCommand<'_>> {
    let line = std::str::from_utf8(line).ok()?;
    let line = line.strip_suffix('\n')?;
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut words = line.split([' ', '\t']).filter(|w| !w.is_empty());
    let verb = words.next()?;
    if !verb.eq_ignore_ascii_case("AUTH") {
        return None;
    }
    let mechanism = words.next()?;
    let initial_response = words.next();
    if words.next().is_some() {
        return None;
    }
    Some(AuthCommand {
        mechanism,
        initial_response,
    })
}

/// Why an exchange failed before any credentials could be checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaslError {
    /// The client sent `*` (RFC 4954 4).
    Cancelled,
    /// A response that is not valid base64.
    BadBase64,
    /// Decoded data that does not fit the mechanism (PLAIN without its two
    /// NUL separators, a name or password that is not UTF-8).
    Malformed,
}

/// A user name and password to check. The password is never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// PLAIN's authorization identity (empty: the same as `user`).
    pub authzid: String,
    pub user: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("authzid", &self.authzid)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Where an exchange stands while waiting for the client's next line.
#[derive(Clone, PartialEq, Eq)]
pub enum Exchange {
    /// PLAIN, after the empty `334 ` challenge.
    Plain,
    /// LOGIN, after the `Username:` challenge.
    LoginUser,
    /// LOGIN, after the `Password:` challenge.
    LoginPassword { user: String },
}

impl Exchange {
    pub fn mechanism(&self) -> Mechanism {
        match self {
            Exchange::Plain => Mechanism::Plain,
            Exchange::LoginUser | Exchange::LoginPassword { .. } => Mechanism::Login,
        }
    }
}

impl fmt::Debug for Exchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exchange::Plain => f.write_str("Plain"),
            Exchange::LoginUser => f.write_str("LoginUser"),
            Exchange::LoginPassword { .. } => f.write_str("LoginPassword"),
        }
    }
}

/// The outcome of one step of an exchange.
#[derive(Debug, PartialEq, Eq)]
pub enum SaslStep {
    /// Send `334 <challenge>` and wait for the response in `next`.
    Challenge {
        next: Exchange,
        challenge: &'static str,
    },
    /// Check these credentials.
    Done(Credentials),
    /// The exchange ends with an error reply.
    Failed(SaslError),
}

/// Starts an exchange for `AUTH <mechanism> [<initial>]`.
pub fn start(mechanism: Mechanism, initial: Option<&str>) -> SaslStep {
    let initial = match initial.map(decode_initial) {
        None => None,
        Some(Ok(bytes)) => Some(bytes),
        Some(Err(e)) => return SaslStep::Failed(e),
    };
    match (mechanism, initial) {
        (Mechanism::Plain, None) => SaslStep::Challenge {
            next: Exchange::Plain,
            challenge: "",
        },
        (Mechanism::Plain, Some(message)) => plain(&message),
        (Mechanism::Login, None) => SaslStep::Challenge {
            next: Exchange::LoginUser,
            challenge: LOGIN_USER_CHALLENGE,
        },
        (Mechanism::Login, Some(user)) => login_user(user),
    }
}

/// Continues an exchange with the client's response line (CRLF included
/// or not).
pub fn respond(state: Exchange, line: &[u8]) -> SaslStep {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line == b"*" {
        return SaslStep::Failed(SaslError::Cancelled);
    }
    let bytes = match decode(line) {
        Ok(b) => b,
        Err(e) => return SaslStep::Failed(e),
    };
    match state {
        Exchange::Plain => plain(&bytes),
        Exchange::LoginUser => login_user(bytes),
        Exchange::LoginPassword { user } => match String::from_utf8(bytes) {
            Ok(password) => SaslStep::Done(Credentials {
                authzid: String::new(),
                user,
                password,
            }),
            Err(_) => SaslStep::Failed(SaslError::Malformed),
        },
    }
}

fn login_user(bytes: Vec<u8>) -> SaslStep {
    match String::from_utf8(bytes) {
        Ok(user) => SaslStep::Challenge {
            next: Exchange::LoginPassword { user },
            challenge: LOGIN_PASSWORD_CHALLENGE,
        },
        Err(_) => SaslStep::Failed(SaslError::Malformed),
    }
}

/// RFC 4616: `[authzid] NUL authcid NUL passwd`.
fn plain(message: &[u8]) -> SaslStep {
    let mut parts = message.split(|&b| b == 0);
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return SaslStep::Failed(SaslError::Malformed);
    };
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).ok();
    match (text(authzid), text(user), text(password)) {
        (Some(authzid), Some(user), Some(password)) => SaslStep::Done(Credentials {
            authzid,
            user,
            password,
        }),
        _ => SaslStep::Failed(SaslError::Malformed),
    }
}

/// An initial response: `=` is the empty one (RFC 4954 4).
fn decode_initial(s: &str) -> Result<Vec<u8>, SaslError> {
    if s == "=" {
        Ok(Vec::new())
    } else {
        decode(s.as_bytes())
    }
}

/// Strict, padded base64; an empty line is an empty response.
fn decode(b: &[u8]) -> Result<Vec<u8>, SaslError> {
    if b.is_empty() {
        return Ok(Vec::new());
    }
    STANDARD.decode(b).map_err(|_| SaslError::BadBase64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(b: &[u8]) -> String {
        STANDARD.encode(b)
    }

    fn creds(authzid: &str, user: &str, password: &str) -> SaslStep {
        SaslStep::Done(Credentials {
            authzid: authzid.into(),
            user: user.into(),
            password: password.into(),
        })
    }

    #[test]
    fn parses_auth_lines() {
        assert_eq!(
            parse_auth(b"AUTH PLAIN AGEAYg==\r\n"),
            Some(AuthCommand {
                mechanism: "PLAIN",
                initial_response: Some("AGEAYg==")
            })
        );
        assert_eq!(
            parse_auth(b"auth login\r\n"),
            Some(AuthCommand {
                mechanism: "login",
                initial_response: None
            })
        );
        assert_eq!(parse_auth(b"AUTH\r\n"), None);
        assert_eq!(parse_auth(b"AUTH PLAIN a b\r\n"), None);
        assert_eq!(parse_auth(b"AUTH PLAIN \xff\r\n"), None);
        assert_eq!(parse_auth(b"AUTHX PLAIN\r\n"), None);
    }

    #[test]
    fn mechanisms_by_name() {
        assert_eq!(Mechanism::from_name("plain"), Some(Mechanism::Plain));
        assert_eq!(Mechanism::from_name("LOGIN"), Some(Mechanism::Login));
        assert_eq!(Mechanism::from_name("SCRAM-SHA-256"), None);
        assert_eq!(Mechanism::from_name("CRAM-MD5"), None);
    }

    #[test]
    fn plain_with_initial_response() {
        let ir = b64(b"\0alice\0secret");
        assert_eq!(
            start(Mechanism::Plain, Some(&ir)),
            creds("", "alice", "secret")
        );
        let ir = b64(b"alice\0alice\0pw");
        assert_eq!(
            start(Mechanism::Plain, Some(&ir)),
            creds("alice", "alice", "pw")
        );
    }

    #[test]
    fn plain_with_challenge() {
        let step = start(Mechanism::Plain, None);
        assert_eq!(
            step,
            SaslStep::Challenge {
                next: Exchange::Plain,
                challenge: ""
            }
        );
        let line = format!("{}\r\n", b64(b"\0bob\0pw"));
        assert_eq!(
            respond(Exchange::Plain, line.as_bytes()),
            creds("", "bob", "pw")
        );
    }

    #[test]
    fn plain_malformed() {
        // "=" is an empty message: no separators.
        assert_eq!(
            start(Mechanism::Plain, Some("=")),
            SaslStep::Failed(SaslError::Malformed)
        );
        let ir = b64(b"alice\0secret");
        assert_eq!(
            start(Mechanism::Plain, Some(&ir)),
            SaslStep::Failed(SaslError::Malformed)
        );
        let ir = b64(b"\0a\0b\0c");
        assert_eq!(
            start(Mechanism::Plain, Some(&ir)),
            SaslStep::Failed(SaslError::Malformed)
        );
        let ir = b64(b"\0a\0\xff");
        assert_eq!(
            start(Mechanism::Plain, Some(&ir)),
            SaslStep::Failed(SaslError::Malformed)
        );
    }

    #[test]
    fn bad_base64_and_cancel() {
        assert_eq!(
            start(Mechanism::Plain, Some("not*base64")),
            SaslStep::Failed(SaslError::BadBase64)
        );
        assert_eq!(
            respond(Exchange::Plain, b"@@@\r\n"),
            SaslStep::Failed(SaslError::BadBase64)
        );
        assert_eq!(
            respond(Exchange::LoginUser, b"*\r\n"),
            SaslStep::Failed(SaslError::Cancelled)
        );
        assert_eq!(
            respond(
                Exchange::LoginPassword {
                    user: "alice".into()
                },
                b"*\r\n"
            ),
            SaslStep::Failed(SaslError::Cancelled)
        );
    }

    #[test]
    fn login_exchange() {
        let step = start(Mechanism::Login, None);
        assert_eq!(
            step,
            SaslStep::Challenge {
                next: Exchange::LoginUser,
                challenge: LOGIN_USER_CHALLENGE
            }
        );
        assert_eq!(
            STANDARD.decode(LOGIN_USER_CHALLENGE).expect("b64"),
            b"Username:"
        );
        assert_eq!(
            STANDARD.decode(LOGIN_PASSWORD_CHALLENGE).expect("b64"),
            b"Password:"
        );
        let step = respond(
            Exchange::LoginUser,
            format!("{}\r\n", b64(b"alice")).as_bytes(),
        );
        assert_eq!(
            step,
            SaslStep::Challenge {
                next: Exchange::LoginPassword {
                    user: "alice".into()
                },
                challenge: LOGIN_PASSWORD_CHALLENGE
            }
        );
        let SaslStep::Challenge { next, .. } = step else {
            panic!("challenge expected");
        };
        assert_eq!(
            respond(next, format!("{}\r\n", b64(b"s3cret")).as_bytes()),
            creds("", "alice", "s3cret")
        );
    }

    #[test]
    fn login_with_initial_user() {
        let ir = b64(b"alice");
        assert_eq!(
            start(Mechanism::Login, Some(&ir)),
            SaslStep::Challenge {
                next: Exchange::LoginPassword {
                    user: "alice".into()
                },
                challenge: LOGIN_PASSWORD_CHALLENGE
            }
        );
    }

    #[test]
    fn empty_responses() {
        // An empty line is an empty password (the login check refuses it).
        assert_eq!(
            respond(
                Exchange::LoginPassword {
                    user: "alice".into()
                },
                b"\r\n"
            ),
            creds("", "alice", "")
        );
    }

    #[test]
    fn passwords_are_not_printed() {
        let c = Credentials {
            authzid: String::new(),
            user: "alice".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        let e = Exchange::LoginPassword {
            user: "alice".into(),
        };
        assert_eq!(format!("{e:?}"), "LoginPassword");
    }
}
