//! Turning stored message bytes into a POP3 multi-line body (pure).
//!
//! [`DotStuffed`] yields the wire bytes as a sequence of slices: long runs of
//! the original data untouched (no copy), with a `.` inserted before every
//! line that starts with one, a CR added before a bare LF, a final CRLF when
//! the data does not end with one, and the terminating `.\r\n`.
//! [`top_end`] finds where `TOP n k` cuts a message.

/// An iterator over the wire form of a multi-line body, terminator included.
pub struct DotStuffed<'a> {
    rest: &'a [u8],
    /// An insertion to yield before continuing with `rest`.
    pending: Option<&'static [u8]>,
    /// The next byte of `rest` starts a line.
    at_line_start: bool,
    /// Everything yielded so far ends with CRLF (or nothing was yielded:
    /// the status line before the body ends with CRLF).
    ends_with_crlf: bool,
    done: bool,
}

impl<'a> DotStuffed<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        DotStuffed {
            rest: data,
            pending: None,
            at_line_start: true,
            ends_with_crlf: true,
            done: false,
        }
    }
}

impl<'a> Iterator for DotStuffed<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if let Some(p) = self.pending.take() {
            return Some(p);
        }
        if self.rest.is_empty() {
            if self.done {
                return None;
            }
            self.done = true;
            return Some(if self.ends_with_crlf {
                b".\r\n"
            } else {
                b"\r\n.\r\n"
            });
        }
        if self.at_line_start && self.rest[0] == b'.' {
            self.at_line_start = false;
            self.ends_with_crlf = false;
            return Some(b".");
        }
        // Collect whole CRLF lines into one run until one needs a change.
        let mut end = 0;
        loop {
            let Some(lf) = memchr::memchr(b'\n', &self.rest[end..]) else {
                // The last line has no line end: take it all.
                end = self.rest.len();
                self.at_line_start = false;
                self.ends_with_crlf = false;
                break;
            };
            let lf = end + lf;
            if lf == 0 || self.rest[lf - 1] != b'\r' {
                // A bare LF: yield what precedes it, then CRLF in its place.
                let run = &self.rest[..lf];
                self.rest = &self.rest[lf + 1..];
                self.at_line_start = true;
                self.ends_with_crlf = true;
                if run.is_empty() {
                    return Some(b"\r\n");
                }
                self.pending = Some(b"\r\n");
                return Some(run);
            }
            end = lf + 1;
            if end == self.rest.len() || self.rest[end] == b'.' {
                self.at_line_start = true;
                self.ends_with_crlf = true;
                break;
            }
        }
        let run = &self.rest[..end];
        self.rest = &self.rest[end..];
        Some(run)
    }
}

/// The wire form of `data` as one buffer (tests and small bodies).
pub fn dot_stuff_to_vec(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 5);
    for piece in DotStuffed::new(data) {
        out.extend_from_slice(piece);
    }
    out
}

/// The byte offset where `TOP` with `body_lines` body lines ends: the
/// headers, the blank line after them, then up to `body_lines` lines of the
/// body. A message without a blank line is all headers and is sent whole.
pub fn top_end(data: &[u8], body_lines: u32) -> usize {
    let mut pos = 0;
    // Skip the header lines and the blank line that ends them.
    loop {
        let Some(lf) = memchr::memchr(b'\n', &data[pos..]) else {
            return data.len();
        };
        let line = &data[pos..pos + lf];
        pos += lf + 1;
        if line.is_empty() || line == b"\r" {
            break;
        }
    }
    for _ in 0..body_lines {
        match memchr::memchr(b'\n', &data[pos..]) {
            Some(lf) => pos += lf + 1,
            None => return data.len(),
        }
    }
    pos
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(data: &[u8]) -> Vec<u8> {
        dot_stuff_to_vec(data)
    }

    #[test]
    fn plain_crlf_message_passes_in_one_piece() {
        let data = b"Subject: hi\r\n\r\nhello\r\nworld\r\n";
        let pieces: Vec<&[u8]> = DotStuffed::new(data).collect();
        assert_eq!(pieces, vec![&data[..], b".\r\n"]);
    }

    #[test]
    fn empty_message_is_just_the_terminator() {
        assert_eq!(wire(b""), b".\r\n");
    }

    #[test]
    fn missing_final_crlf_is_added() {
        assert_eq!(wire(b"abc"), b"abc\r\n.\r\n");
        assert_eq!(wire(b"a\r\nb"), b"a\r\nb\r\n.\r\n");
    }

    #[test]
    fn dot_lines_are_stuffed() {
        assert_eq!(wire(b".\r\n"), b"..\r\n.\r\n");
        assert_eq!(wire(b"a\r\n.\r\nb\r\n"), b"a\r\n..\r\nb\r\n.\r\n");
        assert_eq!(wire(b"..x\r\n"), b"...x\r\n.\r\n");
        assert_eq!(wire(b"a\r\n."), b"a\r\n..\r\n.\r\n");
        assert_eq!(wire(b".\r\n.\r\n.\r\n"), b"..\r\n..\r\n..\r\n.\r\n");
    }

    #[test]
    fn dots_inside_lines_are_untouched() {
        assert_eq!(wire(b"a.b\r\n x.\r\n"), b"a.b\r\n x.\r\n.\r\n");
    }

    #[test]
    fn bare_lf_becomes_crlf() {
        assert_eq!(wire(b"a\nb\n"), b"a\r\nb\r\n.\r\n");
        assert_eq!(wire(b"\n\n"), b"\r\n\r\n.\r\n");
        assert_eq!(wire(b"a\n.b\n"), b"a\r\n..b\r\n.\r\n");
        assert_eq!(wire(b"a\r\nb\nc"), b"a\r\nb\r\nc\r\n.\r\n");
    }

    #[test]
    fn lone_cr_is_kept_and_never_ends_a_line() {
        assert_eq!(wire(b"a\r.b\r\n"), b"a\r.b\r\n.\r\n");
    }

    #[test]
    fn output_never_contains_an_early_terminator() {
        let nasty: &[&[u8]] = &[
            b"\r\n.\r\n",
            b".\n.\n",
            b"x\r\n.\r\n.\r\nmore",
            b"\n.",
            b".",
        ];
        for data in nasty {
            let out = wire(data);
            let term = b"\r\n.\r\n";
            let first = out.windows(5).position(|w| w == term);
            // The only terminator is the very end (or the output is just ".\r\n").
            match first {
                Some(i) => assert_eq!(i + 5, out.len(), "early end in {out:?}"),
                None => assert_eq!(out, b".\r\n"),
            }
            assert!(!out.starts_with(b".\r\n") || out.len() == 3);
        }
    }

    #[test]
    fn unstuffing_gives_back_crlf_normalised_data() {
        let data = b"From: a\r\n\r\n.hidden\r\nline\n..two\r\nend";
        let out = wire(data);
        let body = &out[..out.len() - 3];
        let mut back = Vec::new();
        for line in body.split_inclusive(|&b| b == b'\n') {
            back.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
        }
        assert_eq!(back, b"From: a\r\n\r\n.hidden\r\nline\r\n..two\r\nend\r\n");
    }

    #[test]
    fn large_message_stays_in_few_pieces() {
        let line = b"0123456789012345678901234567890123456789012345678901234567890123456789\r\n";
        let mut data = Vec::new();
        while data.len() < 2 * 1024 * 1024 {
            data.extend_from_slice(line);
        }
        let pieces: Vec<&[u8]> = DotStuffed::new(&data).collect();
        assert_eq!(pieces.len(), 2);
        assert_eq!(pieces[0].len(), data.len());
    }

    #[test]
    fn top_counts_body_lines() {
        let msg = b"A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\nl3\r\n";
        assert_eq!(&msg[..top_end(msg, 0)], b"A: 1\r\nB: 2\r\n\r\n");
        assert_eq!(&msg[..top_end(msg, 1)], b"A: 1\r\nB: 2\r\n\r\nl1\r\n");
        assert_eq!(&msg[..top_end(msg, 2)], b"A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\n");
        assert_eq!(top_end(msg, 3), msg.len());
        assert_eq!(top_end(msg, 100), msg.len());
    }

    #[test]
    fn top_without_body_or_final_crlf() {
        // No blank line: all headers.
        let headers_only = b"A: 1\r\nB: 2\r\n";
        assert_eq!(top_end(headers_only, 0), headers_only.len());
        // Last body line without CRLF.
        let msg = b"A: 1\r\n\r\nl1\r\nl2";
        assert_eq!(top_end(msg, 1), 12);
        assert_eq!(top_end(msg, 2), msg.len());
        // Bare LF line ends.
        let lf = b"A: 1\n\nl1\nl2\n";
        assert_eq!(&lf[..top_end(lf, 1)], b"A: 1\n\nl1\n");
        assert_eq!(top_end(b"", 5), 0);
    }

    #[test]
    fn top_blank_lines_in_body_count_as_lines() {
        let msg = b"A: 1\r\n\r\n\r\n\r\nx\r\n";
        assert_eq!(&msg[..top_end(msg, 2)], b"A: 1\r\n\r\n\r\n\r\n");
    }

    /// The wire form's content: bare LFs as CRLF, a final CRLF added.
    fn normalised(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, &b) in data.iter().enumerate() {
            if b == b'\n' && (i == 0 || data[i - 1] != b'\r') {
                out.push(b'\r');
            }
            out.push(b);
        }
        if !out.is_empty() && !out.ends_with(b"\r\n") {
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    proptest::proptest! {
        #[test]
        fn stuffing_round_trips_and_ends_only_once(
            data in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::strategy::Just(b'.'),
                    proptest::strategy::Just(b'\r'),
                    proptest::strategy::Just(b'\n'),
                    proptest::prelude::any::<u8>(),
                ],
                0..200,
            )
        ) {
            let out = wire(&data);
            proptest::prop_assert!(out.ends_with(b".\r\n"));
            let body = &out[..out.len() - 3];
            // No terminator before the real one.
            let early = b"\r\n.\r\n";
            proptest::prop_assert!(!body.windows(5).any(|w| w == early));
            proptest::prop_assert!(body.is_empty() || body.ends_with(b"\r\n"));
            let mut back = Vec::new();
            for line in body.split_inclusive(|&b| b == b'\n') {
                back.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
            }
            proptest::prop_assert_eq!(back, normalised(&data));
        }

        #[test]
        fn top_end_is_a_line_boundary(
            data in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::strategy::Just(b'\n'),
                    proptest::strategy::Just(b'\r'),
                    proptest::prelude::any::<u8>(),
                ],
                0..200,
            ),
            k in 0u32..10,
        ) {
            let end = top_end(&data, k);
            proptest::prop_assert!(end <= data.len());
            proptest::prop_assert!(end == data.len() || data[end - 1] == b'\n');
            proptest::prop_assert!(top_end(&data, k + 1) >= end);
        }
    }
}
