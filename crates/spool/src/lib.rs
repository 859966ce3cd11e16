//! The spool: the durable queue between the SMTP receiver and the delivery
//! agent. `enqueue` returns only when the message and its envelope are on
//! disk and fsynced (file and directory); everything unfinished is found
//! again after a crash. Delivery is at-least-once: a crash may deliver a
//! message twice, never lose it.
//!
//! # On disk
//!
//! ```text
//! <spool>/tmp/<id>.<pid>.<n>.tmp    files being written; never read
//! <spool>/queue/<id>                one per message: header + message bytes
//! <spool>/state/<id>.json           the current envelope, once it changed
//! ```
//!
//! A queue file is `POSTAMT-QUEUE-1 <n> <crc>\n`, then `n` bytes of JSON
//! (the initial `Envelope`), `\n`, then the message bytes exactly as given
//! (see the `format` module). It is written once and never changed:
//! written under `tmp/` (and written out by the kernel), renamed into
//! `queue/` (never replacing a file), then `queue/` and the file are
//! fsynced before `enqueue`
//! returns. The directory fsync is shared by all writers in flight (group
//! commit, see the `committer` module); on a journalling file system it is
//! the one commit that makes the group durable. Then the id is announced
//! on the arrivals channel. A reader checks the message against the CRC in
//! the header, so a file a crash cut short is reported as damaged, never
//! delivered.
//!
//! Delivery progress goes to `state/<id>.json`, replaced atomically
//! (tmp, fsync, rename). No state file means the initial envelope. The
//! state directory's fsync is lazy (batched, not waited for, at most half
//! a second late): a state update lost in a power cut costs at most a
//! duplicate delivery. So is the fsync of `queue/` after a removal. A
//! message delivered at its first attempt never gets a state file: the
//! delivery agent `load`s it (one read of the queue file) and
//! `remove_finished` unlinks it.
//!
//! `remove` unlinks the queue file first, then the state file; a state
//! file without its queue file is an orphan, ignored and removed at `open`.
//! `open` also removes temporary files no writer will finish (see the
//! `recovery` module).
//!
//! # Several processes
//!
//! The CLI opens the spool while the server runs: it may list, read and
//! `update` (hold, release, flush) or `remove`. Every change is a single
//! atomic rename or unlink, so readers never see half a file; when the
//! server and the CLI update the same message at once, the last rename
//! wins. That is acceptable: the envelope is a hint for scheduling and for
//! which recipients are done, and a lost change costs at most a repeated
//! attempt (or an admin repeating a hold).
//! Run the CLI as the server's user: files are created mode 0600.
//!
//! # Damaged files
//!
//! A queue file that cannot be read is logged and skipped by `list`, and
//! reported by [`Spool::corrupt`] / [`Spool::scan`]; a damaged state file
//! falls back to the initial envelope (the message is delivered again to
//! every recipient rather than lost) and is reported the same way.

mod committer;
mod envelope;
mod error;
mod format;
mod id;
mod layout;
pub mod marks;
mod recovery;
mod spool;

pub use envelope::{Envelope, NewMessage, Recipient, RecipientStatus};
pub use error::SpoolError;
pub use id::{QUEUE_ID_LEN, QueueId};
pub use recovery::CleanupReport;
pub use spool::{CorruptFile, Listing, Loaded, Spool};
