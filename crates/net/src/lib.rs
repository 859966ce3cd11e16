//! Networking shared by all servers: binding listeners, accepting with
//! connection limits (total and per client IP), and graceful shutdown.

mod limits;
mod listener;

pub use limits::{ConnectionLimits, ConnectionPermit, LimitExceeded};
pub use listener::{Service, bind, serve};
