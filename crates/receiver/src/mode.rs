//! Which service a session runs (the MX port or mail submission) and
//! whether its transport is already encrypted: the options a listener
//! passes to [`handle_connection_with`](crate::handle_connection_with).

/// The service on a listening port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Port 25 (`[listen] smtp`): mail for our domains only, never relaying,
    /// never offering AUTH.
    Mx,
    /// Ports 587 (`submission`, STARTTLS) and 465 (`submissions`, implicit
    /// TLS), RFC 6409/8314: AUTH required before MAIL; an authenticated user
    /// may send anywhere, from the addresses the user owns.
    Submission,
}

impl Mode {
    /// A short name for logs.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Mx => "smtp",
            Mode::Submission => "submission",
        }
    }

    /// The protocol its sessions, logins and messages count under in
    /// the metrics.
    pub fn metrics_protocol(self) -> postamt_metrics::Protocol {
        match self {
            Mode::Mx => postamt_metrics::Protocol::Smtp,
            Mode::Submission => postamt_metrics::Protocol::Submission,
        }
    }
}

/// How one connection starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionOptions {
    pub mode: Mode,
    /// The stream is already TLS (implicit TLS: the caller did the
    /// handshake). STARTTLS is then neither offered nor accepted.
    pub tls_active: bool,
}

impl SessionOptions {
    /// The MX port: plaintext start, STARTTLS when a certificate is set.
    pub const fn mx() -> SessionOptions {
        SessionOptions {
            mode: Mode::Mx,
            tls_active: false,
        }
    }

    /// Port 587: plaintext start, STARTTLS, then AUTH.
    pub const fn submission() -> SessionOptions {
        SessionOptions {
            mode: Mode::Submission,
            tls_active: false,
        }
    }

    /// Port 465: the caller has completed the TLS handshake.
    pub const fn submissions() -> SessionOptions {
        SessionOptions {
            mode: Mode::Submission,
            tls_active: true,
        }
    }
}

impl Default for SessionOptions {
    fn default() -> SessionOptions {
        SessionOptions::mx()
    }
}
