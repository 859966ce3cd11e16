//! The message as sent after DATA (RFC 5321 §4.5.2): every line ending
//! normalised to CRLF (a bare CR or bare LF becomes CRLF, so nothing can
//! smuggle a second end-of-data past the next hop), lines starting with a
//! dot get another dot, and the data ends with `CRLF.CRLF`. Pure and
//! streaming: the message can be encoded chunk by chunk.

/// Encodes a message for DATA, chunk by chunk.
#[derive(Debug, Clone)]
pub struct DotStuffer {
    /// The next byte starts a line.
    at_line_start: bool,
    /// The last byte seen was a CR whose line ending is not written yet.
    pending_cr: bool,
}

impl Default for DotStuffer {
    fn default() -> Self {
        DotStuffer {
            at_line_start: true,
            pending_cr: false,
        }
    }
}

impl DotStuffer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends the encoding of `input` (the next part of the message) to
    /// `out`.
    pub fn encode(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        out.reserve(input.len() + input.len() / 32 + 4);
        while !input.is_empty() {
            if self.pending_cr {
                self.pending_cr = false;
                out.extend_from_slice(b"\r\n");
                self.at_line_start = true;
                if input.first() == Some(&b'\n') {
                    input = &input[1..];
                    continue;
                }
            }
            let end = input
                .iter()
                .position(|&b| b == b'\r' || b == b'\n')
                .unwrap_or(input.len());
            let (run, rest) = input.split_at(end);
            if let Some(&first) = run.first() {
                if self.at_line_start && first == b'.' {
                    out.push(b'.');
                }
                out.extend_from_slice(run);
                self.at_line_start = false;
            }
            match rest.split_first() {
                Some((b'\r', tail)) => {
                    self.pending_cr = true;
                    input = tail;
                }
                Some((_, tail)) => {
                    out.extend_from_slice(b"\r\n");
                    self.at_line_start = true;
                    input = tail;
                }
                None => input = rest,
            }
        }
    }

    /// Ends the last line if needed and appends the end-of-data mark.
    pub fn finish(self, out: &mut Vec<u8>) {
        if self.pending_cr || !self.at_line_start {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }
}

/// The whole message encoded in one go (for tests and small messages).
pub fn encode_message(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 16);
    let mut stuffer = DotStuffer::new();
    stuffer.encode(message, &mut out);
    stuffer.finish(&mut out);
    out
}

/// The size of the message with CRLF line endings and a final line ending,
/// before dot-stuffing: the `SIZE=` value (RFC 1870).
pub fn normalized_size(message: &[u8]) -> u64 {
    let mut size: u64 = 0;
    let mut prev_cr = false;
    for &b in message {
        match b {
            // A CR always stands for a line ending (CRLF): two bytes.
            b'\r' => size += 2,
            // An LF after a CR completes that CRLF; a bare one becomes CRLF.
            b'\n' if prev_cr => {}
            b'\n' => size += 2,
            _ => size += 1,
        }
        prev_cr = b == b'\r';
    }
    let ends_line = matches!(message.last(), None | Some(b'\r' | b'\n'));
    if !ends_line {
        size += 2;
    }
    size
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Reference: the message with every line ending as CRLF, ending in one.
    fn normalize(input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < input.len() {
            match input[i] {
                b'\r' if input.get(i + 1) == Some(&b'\n') => {
                    out.extend_from_slice(b"\r\n");
                    i += 2;
                    continue;
                }
                b'\r' | b'\n' => out.extend_from_slice(b"\r\n"),
                b => out.push(b),
            }
            i += 1;
        }
        if !out.is_empty() && !out.ends_with(b"\r\n") {
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    /// Undoes the DATA encoding: the message up to the end mark, or `None`
    /// when the end mark is missing or bytes follow it.
    fn unstuff(data: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let mut rest = data;
        loop {
            let end = rest.windows(2).position(|w| w == b"\r\n")?;
            let line = &rest[..end];
            rest = &rest[end + 2..];
            if line == b"." {
                return rest.is_empty().then_some(out);
            }
            out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
            out.extend_from_slice(b"\r\n");
        }
    }

    fn has_bare_cr_or_lf(data: &[u8]) -> bool {
        data.iter().enumerate().any(|(i, &b)| match b {
            b'\r' => data.get(i + 1) != Some(&b'\n'),
            b'\n' => i == 0 || data[i - 1] != b'\r',
            _ => false,
        })
    }

    #[test]
    fn examples() {
        assert_eq!(encode_message(b""), b".\r\n");
        assert_eq!(encode_message(b"a\r\n"), b"a\r\n.\r\n");
        assert_eq!(encode_message(b"a"), b"a\r\n.\r\n");
        assert_eq!(
            encode_message(b".x\n..y\r\n.\r\nz"),
            b"..x\r\n...y\r\n..\r\nz\r\n.\r\n"
        );
        // Smuggling attempts: a bare LF or CR around a dot.
        assert_eq!(
            encode_message(b"a\n.\nMAIL FROM:<x>\r\n"),
            b"a\r\n..\r\nMAIL FROM:<x>\r\n.\r\n"
        );
        assert_eq!(encode_message(b"a\r.\rb"), b"a\r\n..\r\nb\r\n.\r\n");
        assert_eq!(encode_message(b"\r\r\n\n"), b"\r\n\r\n\r\n.\r\n");
        assert_eq!(encode_message(b"x\r"), b"x\r\n.\r\n");
    }

    #[test]
    fn crlf_split_across_chunks() {
        let mut out = Vec::new();
        let mut s = DotStuffer::new();
        s.encode(b"line\r", &mut out);
        s.encode(b"\n.dot\r", &mut out);
        s.encode(b"\r\n", &mut out);
        s.finish(&mut out);
        assert_eq!(out, b"line\r\n..dot\r\n\r\n.\r\n");
    }

    #[test]
    fn sizes() {
        assert_eq!(normalized_size(b""), 0);
        assert_eq!(normalized_size(b"a"), 3);
        assert_eq!(normalized_size(b"a\n"), 3);
        assert_eq!(normalized_size(b"a\r\n"), 3);
        assert_eq!(normalized_size(b"a\r"), 3);
        assert_eq!(normalized_size(b"\r\r\n\n"), 6);
    }

    fn message_bytes() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            prop_oneof![
                3 => Just(b'\r'),
                3 => Just(b'\n'),
                3 => Just(b'.'),
                1 => any::<u8>(),
            ],
            0..300,
        )
    }

    proptest! {
        #[test]
        fn stuffing_is_safe_and_reversible(input in message_bytes(), cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6)) {
            let whole = encode_message(&input);
            // Chunked encoding gives the same bytes.
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
            points.sort_unstable();
            let mut chunked = Vec::new();
            let mut s = DotStuffer::new();
            let mut start = 0;
            for p in points {
                s.encode(&input[start..p], &mut chunked);
                start = p;
            }
            s.encode(&input[start..], &mut chunked);
            s.finish(&mut chunked);
            prop_assert_eq!(&chunked, &whole);

            prop_assert!(!has_bare_cr_or_lf(&whole));
            prop_assert!(whole.ends_with(b".\r\n"));
            let normalized = normalize(&input);
            prop_assert_eq!(unstuff(&whole), Some(normalized.clone()));
            prop_assert_eq!(normalized_size(&input), normalized.len() as u64);
        }
    }
}
