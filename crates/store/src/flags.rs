//! Message flags as IMAP knows them: the system flags and keywords, kept
//! per message in the folder index (and mirrored into Maildir file names,
//! `:2,` info, for the letters Maildir defines).

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The set of flags on one message. `\Recent` is not stored: it is a
/// property of a session's view, not of the message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Flags {
    pub seen: bool,
    pub answered: bool,
    pub flagged: bool,
    pub deleted: bool,
    pub draft: bool,
    /// Keywords (atoms, compared case-insensitively, stored as first set).
    pub keywords: BTreeSet<String>,
}

/// How STORE combines the given flags with the existing ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlagOp {
    /// `FLAGS`: replace.
    Replace,
    /// `+FLAGS`: add.
    Add,
    /// `-FLAGS`: remove.
    Remove,
}

/// Longest keyword kept (longer ones are refused by [`Flags::add_keyword`]).
pub const MAX_KEYWORD_LEN: usize = 128;
/// Most keywords kept on one message.
pub const MAX_KEYWORDS: usize = 64;

/// Bits of the system flags in the index's `flags` column.
const SEEN: u8 = 1;
const ANSWERED: u8 = 2;
const FLAGGED: u8 = 4;
const DELETED: u8 = 8;
const DRAFT: u8 = 16;

impl Flags {
    /// Adds a keyword unless one equal to it (case-insensitively) is
    /// there; refuses empty, overlong and non-atom keywords and keeps at
    /// most [`MAX_KEYWORDS`]. Returns whether it was added.
    pub fn add_keyword(&mut self, keyword: &str) -> bool {
        if !valid_keyword(keyword) || self.keywords.len() >= MAX_KEYWORDS {
            return false;
        }
        if self.has_keyword(keyword) {
            return false;
        }
        self.keywords.insert(keyword.to_string())
    }

    /// Whether the message carries `keyword` (case-insensitive).
    pub fn has_keyword(&self, keyword: &str) -> bool {
        self.keywords
            .iter()
            .any(|k| k.eq_ignore_ascii_case(keyword))
    }

    /// Applies a STORE operation; returns the result.
    pub fn apply(&self, op: FlagOp, given: &Flags) -> Flags {
        match op {
            FlagOp::Replace => {
                let mut out = Flags {
                    keywords: BTreeSet::new(),
                    ..given.clone()
                };
                for k in &given.keywords {
                    out.add_keyword(k);
                }
                out
            }
            FlagOp::Add => {
                let mut out = self.clone();
                out.seen |= given.seen;
                out.answered |= given.answered;
                out.flagged |= given.flagged;
                out.deleted |= given.deleted;
                out.draft |= given.draft;
                for k in &given.keywords {
                    out.add_keyword(k);
                }
                out
            }
            FlagOp::Remove => {
                let mut out = self.clone();
                out.seen &= !given.seen;
                out.answered &= !given.answered;
                out.flagged &= !given.flagged;
                out.deleted &= !given.deleted;
                out.draft &= !given.draft;
                out.keywords.retain(|k| !given.has_keyword(k));
                out
            }
        }
    }

    /// The system flags as the index's bit set.
    pub(crate) fn bits(&self) -> u8 {
        let mut b = 0;
        for (on, bit) in [
            (self.seen, SEEN),
            (self.answered, ANSWERED),
            (self.flagged, FLAGGED),
            (self.deleted, DELETED),
            (self.draft, DRAFT),
        ] {
            if on {
                b |= bit;
            }
        }
        b
    }

    /// Flags from the index's bit set and keyword list (space separated).
    pub(crate) fn from_bits(bits: u8, keywords: &str) -> Flags {
        let mut f = Flags {
            seen: bits & SEEN != 0,
            answered: bits & ANSWERED != 0,
            flagged: bits & FLAGGED != 0,
            deleted: bits & DELETED != 0,
            draft: bits & DRAFT != 0,
            keywords: BTreeSet::new(),
        };
        for k in keywords.split(' ').filter(|k| !k.is_empty()) {
            f.add_keyword(k);
        }
        f
    }

    /// The keywords as stored in the index (space separated).
    pub(crate) fn keyword_text(&self) -> String {
        let mut out = String::new();
        for k in &self.keywords {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(k);
        }
        out
    }

    /// The Maildir info letters (`:2,` part) for these flags, in ASCII
    /// order as Maildir requires: D F R S T.
    pub fn maildir_letters(&self) -> String {
        let mut s = String::with_capacity(5);
        if self.draft {
            s.push('D');
        }
        if self.flagged {
            s.push('F');
        }
        if self.answered {
            s.push('R');
        }
        if self.seen {
            s.push('S');
        }
        if self.deleted {
            s.push('T');
        }
        s
    }

    /// The system flags named by a file name's `:2,` info (unknown
    /// letters ignored); keywords empty.
    pub fn from_file_name(file_name: &[u8]) -> Flags {
        let mut f = Flags::default();
        let Some(info) = info_letters(file_name) else {
            return f;
        };
        for &c in info {
            match c {
                b'D' => f.draft = true,
                b'F' => f.flagged = true,
                b'R' => f.answered = true,
                b'S' => f.seen = true,
                b'T' => f.deleted = true,
                _ => {}
            }
        }
        f
    }

    /// Whether the system flags equal those of `other` (keywords ignored).
    pub(crate) fn same_system(&self, other: &Flags) -> bool {
        self.bits() == other.bits()
    }
}

/// The letters after `:2,` in a Maildir file name, if it has that info.
pub(crate) fn info_letters(file_name: &[u8]) -> Option<&[u8]> {
    let colon = file_name.iter().position(|&b| b == b':')?;
    file_name[colon + 1..].strip_prefix(b"2,")
}

/// Whether `k` is an IMAP atom usable as a keyword (no `\`, spaces,
/// parentheses, wildcards, quotes or controls).
pub fn valid_keyword(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= MAX_KEYWORD_LEN
        && k.bytes().all(|b| {
            (0x21..0x7f).contains(&b)
                && !matches!(
                    b,
                    b'(' | b')' | b'{' | b' ' | b'%' | b'*' | b'"' | b'\\' | b']'
                )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kw(f: &[&str]) -> Flags {
        let mut out = Flags::default();
        for k in f {
            out.add_keyword(k);
        }
        out
    }

    #[test]
    fn letters_round_trip_in_order() {
        let f = Flags {
            seen: true,
            answered: true,
            flagged: true,
            deleted: true,
            draft: true,
            keywords: BTreeSet::new(),
        };
        assert_eq!(f.maildir_letters(), "DFRST");
        let back = Flags::from_file_name(b"1.M2P3.h,S=4:2,DFRST");
        assert_eq!(back, f);
        assert_eq!(Flags::from_file_name(b"1.M2P3.h:2,S").bits(), SEEN);
        assert_eq!(Flags::from_file_name(b"1.M2P3.h").bits(), 0);
        assert_eq!(Flags::from_file_name(b"1.M2P3.h:1,S").bits(), 0);
        assert_eq!(Flags::from_file_name(b"x:2,aSz").bits(), SEEN);
    }

    #[test]
    fn bits_and_keywords_round_trip() {
        let mut f = kw(&["$Forwarded", "Work"]);
        f.flagged = true;
        f.draft = true;
        let back = Flags::from_bits(f.bits(), &f.keyword_text());
        assert_eq!(back, f);
    }

    #[test]
    fn keywords_are_case_insensitive_and_bounded() {
        let mut f = kw(&["Work"]);
        assert!(!f.add_keyword("work"));
        assert!(f.has_keyword("WORK"));
        assert!(!f.add_keyword("bad word"));
        assert!(!f.add_keyword("\\Seen"));
        assert!(!f.add_keyword(""));
        assert!(!f.add_keyword(&"k".repeat(MAX_KEYWORD_LEN + 1)));
        for i in 0..100 {
            f.add_keyword(&format!("k{i}"));
        }
        assert_eq!(f.keywords.len(), MAX_KEYWORDS);
    }

    #[test]
    fn store_operations() {
        let mut cur = kw(&["A", "B"]);
        cur.seen = true;
        let mut given = kw(&["b", "C"]);
        given.flagged = true;
        let added = cur.apply(FlagOp::Add, &given);
        assert!(added.seen && added.flagged);
        assert_eq!(added.keywords.len(), 3, "{added:?}");
        let removed = added.apply(FlagOp::Remove, &given);
        assert!(removed.seen && !removed.flagged);
        assert_eq!(removed.keywords.iter().collect::<Vec<_>>(), vec!["A"]);
        let replaced = cur.apply(FlagOp::Replace, &given);
        assert_eq!(replaced, given);
    }
}
