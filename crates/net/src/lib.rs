//! Networking shared by all servers: listeners, connection limits and
//! graceful shutdown.
