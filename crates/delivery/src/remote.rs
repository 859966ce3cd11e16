//! Remote delivery (to addresses outside our domains). Issue 4 brings the
//! SMTP client (MX lookup or smarthost); until then every remote destination
//! is deferred with a clear reason, so it waits visibly in the queue and
//! bounces after `give_up_after` like any other temporary failure.

use crate::failure::Failure;
use postamt_spool::Envelope;

/// The status code of the placeholder deferral.
pub const NOT_AVAILABLE_STATUS: &str = "4.4.0";
/// The text of the placeholder deferral.
pub const NOT_AVAILABLE_TEXT: &str = "remote delivery is not available in this version";

/// Delivers the message to one remote address. Replaced by issue 4.
pub fn deliver_remote(address: &str, data: &[u8], env: &Envelope) -> Result<(), Failure> {
    let _ = (address, data, env);
    Err(Failure::temporary(
        NOT_AVAILABLE_STATUS,
        NOT_AVAILABLE_TEXT,
        false,
    ))
}
