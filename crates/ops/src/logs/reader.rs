//! Reading log files backwards, newest line first, in blocks from the end:
//! a bounded number of bytes over a list of files, lines of bounded length.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Bytes read from a file at a time.
const BLOCK: u64 = 256 * 1024;
/// Longer lines are skipped (ours are well under 1 KiB).
pub(crate) const MAX_LINE: usize = 64 * 1024;

/// The lines of a list of files (newest file first), each file read from
/// its end, until `budget` bytes have been read.
pub(crate) struct RevLines {
    files: Vec<PathBuf>,
    current: Option<(File, u64)>,
    /// Bytes read but not yet returned: the start of the unread region's
    /// following data (one partial line or more).
    buf: Vec<u8>,
    /// Skipping the rest of an over-long line.
    skipping: bool,
    budget: u64,
}

impl RevLines {
    /// Reads `files` in order; `budget` bounds the bytes read over all.
    pub(crate) fn open(files: &[PathBuf], budget: u64) -> RevLines {
        let mut files = files.to_vec();
        files.reverse();
        RevLines {
            files,
            current: None,
            buf: Vec::new(),
            skipping: false,
            budget,
        }
    }

    fn open_next(&mut self) -> bool {
        while let Some(path) = self.files.pop() {
            if let Some(f) = open_file(&path) {
                self.current = Some(f);
                self.buf.clear();
                self.skipping = false;
                return true;
            }
        }
        false
    }

    /// The next line, newest first; `None` when the files or the budget
    /// are exhausted.
    pub(crate) fn next_line(&mut self) -> Option<String> {
        loop {
            if self.current.is_none() && !self.open_next() {
                return None;
            }
            if let Some(nl) = memrchr_nl(&self.buf) {
                let line = self.buf.split_off(nl + 1);
                self.buf.truncate(nl);
                if self.skipping {
                    // The tail of an over-long line.
                    self.skipping = false;
                    continue;
                }
                if line.is_empty() || line.len() > MAX_LINE {
                    continue;
                }
                return Some(into_text(line));
            }
            // No full line in the buffer: read the block before it.
            let (file, pos) = self.current.as_mut()?;
            if *pos == 0 || self.budget == 0 {
                // The file's first line (complete only when the whole file
                // was read).
                let first = std::mem::take(&mut self.buf);
                let whole = *pos == 0 && !self.skipping;
                self.current = None;
                if whole && !first.is_empty() && first.len() <= MAX_LINE {
                    return Some(into_text(first));
                }
                if self.budget == 0 {
                    self.files.clear();
                }
                continue;
            }
            let n = BLOCK.min(*pos).min(self.budget);
            let start = *pos - n;
            let mut block = vec![0u8; n as usize];
            let read = file
                .seek(SeekFrom::Start(start))
                .and_then(|_| file.read_exact(&mut block));
            if read.is_err() {
                // A file that shrank or vanished: go on with the next one.
                self.current = None;
                continue;
            }
            *pos = start;
            self.budget -= n;
            if self.skipping {
                self.buf.clear();
            }
            block.extend_from_slice(&self.buf);
            self.buf = block;
            if memrchr_nl(&self.buf).is_none() && self.buf.len() > MAX_LINE {
                // The line is too long: drop it up to its start.
                self.buf.clear();
                self.skipping = true;
            }
        }
    }
}

fn open_file(path: &Path) -> Option<(File, u64)> {
    let f = File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    Some((f, len))
}

fn memrchr_nl(b: &[u8]) -> Option<usize> {
    memchr::memrchr(b'\n', b)
}

/// The line as text without a copy when it is UTF-8 (our logs are); a
/// damaged line is repaired lossily.
fn into_text(line: Vec<u8>) -> String {
    String::from_utf8(line).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn all(mut r: RevLines) -> Vec<String> {
        let mut v = Vec::new();
        while let Some(l) = r.next_line() {
            v.push(l);
        }
        v
    }

    #[test]
    fn lines_come_newest_first_across_files() {
        let d = tempfile::tempdir().unwrap();
        let live = write(d.path(), "a.log", "3\n4\n\n5\n");
        let old = write(d.path(), "a.log.1", "1\n2");
        let got = all(RevLines::open(&[live, old], u64::MAX));
        assert_eq!(got, vec!["5", "4", "3", "2", "1"]);
    }

    #[test]
    fn big_files_are_read_in_blocks() {
        let d = tempfile::tempdir().unwrap();
        let text: String = (0..100_000).map(|i| format!("line {i}\n")).collect();
        let p = write(d.path(), "a.log", &text);
        let got = all(RevLines::open(&[p], u64::MAX));
        assert_eq!(got.len(), 100_000);
        assert_eq!(got[0], "line 99999");
        assert_eq!(got[99_999], "line 0");
        assert!(
            got.iter()
                .enumerate()
                .all(|(i, l)| *l == format!("line {}", 99_999 - i))
        );
    }

    #[test]
    fn the_budget_bounds_what_is_read() {
        let d = tempfile::tempdir().unwrap();
        let text: String = (0..1000).map(|i| format!("{i:09}\n")).collect();
        let p = write(d.path(), "a.log", &text);
        let old = write(d.path(), "a.log.1", "never\n");
        // 10 bytes per line: 55 bytes are 5 whole lines and a partial one.
        let got = all(RevLines::open(&[p, old], 55));
        assert_eq!(
            got,
            vec![
                "000000999",
                "000000998",
                "000000997",
                "000000996",
                "000000995"
            ]
        );
    }

    #[test]
    fn over_long_lines_are_skipped() {
        let d = tempfile::tempdir().unwrap();
        let long = "x".repeat(MAX_LINE * 3);
        let p = write(d.path(), "a.log", &format!("first\n{long}\nlast\n"));
        let got = all(RevLines::open(&[p], u64::MAX));
        assert!(got == ["last", "first"], "{} lines", got.len());
        let p = write(d.path(), "b.log", &format!("{long}\nlast\n"));
        let got = all(RevLines::open(&[p], u64::MAX));
        assert!(got == ["last"], "{} lines", got.len());
        let p = write(d.path(), "c.log", &format!("first\n{long}"));
        let got = all(RevLines::open(&[p], u64::MAX));
        assert!(got == ["first"], "{} lines", got.len());
    }

    #[test]
    fn missing_files_are_skipped() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "a.log", "x\n");
        let got = all(RevLines::open(&[d.path().join("none"), p], 100));
        assert_eq!(got, vec!["x"]);
    }
}
