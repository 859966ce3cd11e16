//! The on-disk format of a queue file, pure encoding and decoding (no paths,
//! no fsync):
//!
//! ```text
//! POSTAMT-QUEUE-1 <n> <crc>\n  header line: magic, the JSON length in bytes
//!                              and the CRC-32 of the message (8 hex digits)
//! <n bytes of JSON>\n          the initial envelope (serde_json of `Envelope`)
//! <message bytes>              exactly as given to `enqueue`, to the end of file
//! ```
//!
//! The JSON is length-prefixed, so the message bytes may contain anything
//! (NUL, bare CR or LF, "POSTAMT" lines...). The CRC lets a reader tell a
//! file whose blocks a crash left half written (the spool links a queue
//! file before its fsync) from a good one; files written before it existed
//! have no CRC and are read as they are. A state file (`state/<id>.json`)
//! is the plain JSON of the current `Envelope`.

use crate::Envelope;
use std::io::{BufRead, Read};

/// The first token of every queue file.
pub const MAGIC: &str = "POSTAMT-QUEUE-1";
/// Upper bound of an envelope's JSON (queue header or state file); a
/// larger one is treated as corruption rather than read into memory.
pub const MAX_ENVELOPE_LEN: u64 = 16 * 1024 * 1024;
/// Upper bound of the header line, newline included.
const MAX_HEADER_LINE: u64 = 64;

/// Why a queue file or state file could not be decoded.
#[derive(Debug)]
pub enum DecodeError {
    Io(std::io::Error),
    Corrupt(String),
}

impl From<std::io::Error> for DecodeError {
    fn from(e: std::io::Error) -> Self {
        DecodeError::Io(e)
    }
}

/// A queue file's header, decoded.
#[derive(Debug)]
pub struct Header {
    /// The initial envelope.
    pub envelope: Envelope,
    /// The header's length: the offset where the message bytes start.
    pub len: u64,
    /// CRC-32 of the message bytes (`None` in files from before it existed).
    pub crc32: Option<u32>,
}

/// The CRC-32 a header records for `message`.
pub fn checksum(message: &[u8]) -> u32 {
    crc32fast::hash(message)
}

/// Checks `message` against the header's CRC (files without one pass).
pub fn verify_message(header_crc: Option<u32>, message: &[u8]) -> Result<(), DecodeError> {
    match header_crc {
        Some(expected) if checksum(message) != expected => Err(DecodeError::Corrupt(
            "message bytes do not match the header's CRC-32 (a write cut short?)".into(),
        )),
        _ => Ok(()),
    }
}

/// The bytes that precede `message` in a queue file.
pub fn encode_header(env: &Envelope, message: &[u8]) -> Result<Vec<u8>, serde_json::Error> {
    let json = serde_json::to_vec(env)?;
    let mut out = format!("{MAGIC} {} {:08x}\n", json.len(), checksum(message)).into_bytes();
    out.reserve(json.len() + 1);
    out.extend_from_slice(&json);
    out.push(b'\n');
    Ok(out)
}

/// Reads the header of a queue file. The reader is left at the first
/// message byte.
pub fn read_header<R: BufRead>(r: &mut R) -> Result<Header, DecodeError> {
    let mut line = Vec::new();
    r.by_ref()
        .take(MAX_HEADER_LINE)
        .read_until(b'\n', &mut line)?;
    if line.last() != Some(&b'\n') {
        return Err(DecodeError::Corrupt(
            "missing or overlong header line".into(),
        ));
    }
    let text = std::str::from_utf8(&line[..line.len() - 1])
        .map_err(|_| DecodeError::Corrupt("header line is not UTF-8".into()))?;
    let mut fields = text.split(' ');
    if fields.next() != Some(MAGIC) {
        return Err(DecodeError::Corrupt("not a postamt queue file".into()));
    }
    let len = match fields.next() {
        Some(n) => n
            .parse::<u64>()
            .map_err(|_| DecodeError::Corrupt(format!("bad envelope length {n:?}")))?,
        None => return Err(DecodeError::Corrupt("not a postamt queue file".into())),
    };
    let crc32 = match fields.next() {
        None => None,
        Some(c) if c.len() == 8 => Some(
            u32::from_str_radix(c, 16)
                .map_err(|_| DecodeError::Corrupt(format!("bad checksum {c:?}")))?,
        ),
        Some(c) => return Err(DecodeError::Corrupt(format!("bad checksum {c:?}"))),
    };
    if fields.next().is_some() {
        return Err(DecodeError::Corrupt(
            "extra fields in the header line".into(),
        ));
    }
    if len > MAX_ENVELOPE_LEN {
        return Err(DecodeError::Corrupt(format!(
            "envelope of {len} bytes is too large"
        )));
    }
    let mut json = Vec::new();
    r.by_ref().take(len + 1).read_to_end(&mut json)?;
    if json.len() as u64 != len + 1 || json.last() != Some(&b'\n') {
        return Err(DecodeError::Corrupt("truncated envelope".into()));
    }
    json.pop();
    let envelope = decode_envelope(&json)?;
    Ok(Header {
        envelope,
        len: line.len() as u64 + len + 1,
        crc32,
    })
}

/// Decodes an envelope's JSON (queue header or state file).
pub fn decode_envelope(json: &[u8]) -> Result<Envelope, DecodeError> {
    serde_json::from_slice(json).map_err(|e| DecodeError::Corrupt(format!("bad envelope: {e}")))
}

/// Reads at most `MAX_ENVELOPE_LEN` bytes of a state file and decodes it.
pub fn read_state<R: Read>(r: R) -> Result<Envelope, DecodeError> {
    let mut json = Vec::new();
    r.take(MAX_ENVELOPE_LEN + 1).read_to_end(&mut json)?;
    if json.len() as u64 > MAX_ENVELOPE_LEN {
        return Err(DecodeError::Corrupt("state file is too large".into()));
    }
    decode_envelope(&json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NewMessage, QueueId};
    use std::io::Cursor;

    fn envelope() -> Envelope {
        let msg = NewMessage {
            mail_from: "a@example.org".into(),
            recipients: vec!["b@example.org".into()],
            ..Default::default()
        };
        Envelope::initial(QueueId::generate(), msg, 5, 42)
    }

    #[test]
    fn header_round_trip_leaves_reader_at_message() {
        let env = envelope();
        let message = b"\nPOSTAMT-QUEUE-1 3\n\0\r";
        let mut file = encode_header(&env, message).unwrap();
        let header_len = file.len() as u64;
        file.extend_from_slice(message);
        let mut r = Cursor::new(&file);
        let header = read_header(&mut r).unwrap();
        assert_eq!(header.envelope, env);
        assert_eq!(header.len, header_len);
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, message);
        assert!(verify_message(header.crc32, &rest).is_ok());
    }

    #[test]
    fn checksum_catches_damaged_message_bytes() {
        let env = envelope();
        let header = encode_header(&env, b"hello").unwrap();
        let crc = read_header(&mut Cursor::new(&header)).unwrap().crc32;
        assert_eq!(crc, Some(crc32fast::hash(b"hello")));
        assert!(verify_message(crc, b"hello").is_ok());
        // A crash can leave blocks of zeros where the message was.
        assert!(matches!(
            verify_message(crc, b"\0\0\0\0\0"),
            Err(DecodeError::Corrupt(why)) if why.contains("CRC")
        ));
        assert!(matches!(
            verify_message(crc, b"hell"),
            Err(DecodeError::Corrupt(_))
        ));
    }

    #[test]
    fn header_without_checksum_is_still_read() {
        let env = envelope();
        let json = serde_json::to_vec(&env).unwrap();
        let mut file = format!("{MAGIC} {}\n", json.len()).into_bytes();
        file.extend_from_slice(&json);
        file.extend_from_slice(b"\nbody");
        let header = read_header(&mut Cursor::new(&file)).unwrap();
        assert_eq!(header.envelope, env);
        assert_eq!(header.crc32, None);
        assert!(verify_message(header.crc32, b"anything").is_ok());
    }

    fn corrupt(bytes: &[u8]) -> String {
        match read_header(&mut Cursor::new(bytes)) {
            Err(DecodeError::Corrupt(why)) => why,
            other => panic!("expected corruption, got {other:?}"),
        }
    }

    #[test]
    fn rejects_damaged_headers() {
        assert!(corrupt(b"").contains("header line"));
        assert!(corrupt(b"From: x\r\n").contains("not a postamt"));
        assert!(corrupt(&[b'A'; 200]).contains("header line"));
        assert!(corrupt(b"POSTAMT-QUEUE-1 x\n").contains("length"));
        assert!(corrupt(b"POSTAMT-QUEUE-1 99999999999\n").contains("too large"));
        assert!(corrupt(b"POSTAMT-QUEUE-1 10\n{\"id\":").contains("truncated"));
        assert!(corrupt(b"POSTAMT-QUEUE-1 2\n{}\n").contains("bad envelope"));
        assert!(corrupt(b"POSTAMT-QUEUE-1 2 12\n{}\n").contains("checksum"));
        assert!(corrupt(b"POSTAMT-QUEUE-1 2 1234567g\n{}\n").contains("checksum"));
        assert!(corrupt(b"POSTAMT-QUEUE-1 2 12345678 x\n{}\n").contains("extra"));
        let mut full = encode_header(&envelope(), b"").unwrap();
        let n = full.len();
        full[n - 1] = b'x'; // the newline after the JSON
        assert!(corrupt(&full).contains("truncated"));
    }

    #[test]
    fn state_round_trip_and_bound() {
        let env = envelope();
        let json = serde_json::to_vec(&env).unwrap();
        assert_eq!(read_state(Cursor::new(json)).unwrap(), env);
        assert!(matches!(
            read_state(Cursor::new(b"{")),
            Err(DecodeError::Corrupt(_))
        ));
    }
}
