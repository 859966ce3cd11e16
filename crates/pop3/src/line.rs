//! A bounded buffer that splits client input into lines (pure).
//!
//! Lines end with LF (a preceding CR is stripped too). Several complete lines
//! may wait in the buffer (pipelining); a line longer than the limit is an
//! error, whether or not its end has arrived yet.

use thiserror::Error;

/// The client sent a line longer than the limit.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("line longer than {0} octets")]
pub struct LineTooLong(pub usize);

/// Input not yet consumed as lines.
pub struct LineBuffer {
    buf: Vec<u8>,
    /// Consumed bytes at the front of `buf`, dropped on the next `extend`.
    start: usize,
    /// Longest line accepted, line end included.
    max_line: usize,
}

impl LineBuffer {
    pub fn new(max_line: usize) -> Self {
        LineBuffer {
            buf: Vec::new(),
            start: 0,
            max_line,
        }
    }

    /// Appends bytes read from the client.
    pub fn extend(&mut self, data: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes waiting (complete lines and a partial one).
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next complete line without its line end, `None` when more input
    /// is needed.
    pub fn next_line(&mut self) -> Result<Option<Vec<u8>>, LineTooLong> {
        let rest = &self.buf[self.start..];
        match rest.iter().position(|&b| b == b'\n') {
            Some(lf) => {
                if lf + 1 > self.max_line {
                    return Err(LineTooLong(self.max_line));
                }
                let mut line = &rest[..lf];
                if let Some(stripped) = line.strip_suffix(b"\r") {
                    line = stripped;
                }
                let line = line.to_vec();
                self.start += lf + 1;
                Ok(Some(line))
            }
            None if rest.len() >= self.max_line => Err(LineTooLong(self.max_line)),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_pipelined_lines() {
        let mut b = LineBuffer::new(100);
        b.extend(b"STAT\r\nLIST 1\nUID");
        assert_eq!(b.next_line(), Ok(Some(b"STAT".to_vec())));
        assert_eq!(b.next_line(), Ok(Some(b"LIST 1".to_vec())));
        assert_eq!(b.next_line(), Ok(None));
        assert_eq!(b.pending(), 3);
        b.extend(b"L\r\n");
        assert_eq!(b.next_line(), Ok(Some(b"UIDL".to_vec())));
        assert_eq!(b.next_line(), Ok(None));
        assert_eq!(b.pending(), 0);
    }

    #[test]
    fn empty_lines_are_lines() {
        let mut b = LineBuffer::new(100);
        b.extend(b"\r\n\n");
        assert_eq!(b.next_line(), Ok(Some(Vec::new())));
        assert_eq!(b.next_line(), Ok(Some(Vec::new())));
    }

    #[test]
    fn long_line_is_refused_before_its_end_arrives() {
        let mut b = LineBuffer::new(10);
        b.extend(b"0123456789");
        assert_eq!(b.next_line(), Err(LineTooLong(10)));
    }

    #[test]
    fn limit_includes_the_line_end() {
        let mut b = LineBuffer::new(10);
        b.extend(b"01234567\r\n");
        assert_eq!(b.next_line(), Ok(Some(b"01234567".to_vec())));
        let mut b = LineBuffer::new(10);
        b.extend(b"012345678\r\n");
        assert_eq!(b.next_line(), Err(LineTooLong(10)));
    }

    #[test]
    fn buffer_is_compacted() {
        let mut b = LineBuffer::new(100);
        for _ in 0..1000 {
            b.extend(b"NOOP\r\n");
            assert_eq!(b.next_line(), Ok(Some(b"NOOP".to_vec())));
        }
        assert!(b.buf.len() <= 6);
    }
}
