//! The TLS handshake after STARTTLS (RFC 3501 6.2.1, RFC 9051 11.1): the
//! shared upgrade of `postamt_net` (bounded by a timeout, abandoned at
//! shutdown; the caller drops every byte buffered before it, so no
//! plaintext pipelined after STARTTLS is ever executed).

pub use postamt_net::tls::starttls::{StartTlsError, describe, handshake};
