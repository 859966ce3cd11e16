//! The TLS handshake of an `STLS` upgrade (RFC 2595): the shared upgrade
//! of `postamt_net` (bounded by a timeout, abandoned at shutdown; the
//! caller drops every byte read before it).

pub use postamt_net::tls::starttls::{StartTlsError, describe, handshake};
