//! Networking shared by all servers: binding listeners, accepting with
//! connection limits (total and per client IP), graceful shutdown, and TLS
//! ([`tls`]: certificates, acceptors, reloading).

mod limits;
mod listener;
pub mod tls;

pub use limits::{ConnectionLimits, ConnectionPermit, LimitExceeded};
pub use listener::{Service, bind, serve};
