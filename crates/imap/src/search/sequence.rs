//! Sequence sets (`1:4,7,9:*`) as SEARCH keys: membership of a message
//! number or UID, with `*` standing for the largest value in the view and
//! ranges taken in either order (RFC 3501 9, seq-range).

use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};

fn value(v: SeqOrUid, largest: u32) -> u32 {
    match v {
        SeqOrUid::Value(n) => n.get(),
        SeqOrUid::Asterisk => largest,
    }
}

/// Whether `n` is in `set`, `*` meaning `largest`.
pub fn contains(set: &SequenceSet, n: u32, largest: u32) -> bool {
    set.0.as_ref().iter().any(|seq| match *seq {
        Sequence::Single(v) => value(v, largest) == n,
        Sequence::Range(a, b) => {
            let (a, b) = (value(a, largest), value(b, largest));
            a.min(b) <= n && n <= a.max(b)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(s: &str) -> SequenceSet {
        SequenceSet::try_from(s).expect("valid test set")
    }

    #[test]
    fn singles_ranges_and_star() {
        let s = set("1:3,7,10:*");
        for n in [1, 2, 3, 7, 10, 11, 12] {
            assert!(contains(&s, n, 12), "{n}");
        }
        for n in [4, 5, 6, 8, 9, 13] {
            assert!(!contains(&s, n, 12), "{n}");
        }
    }

    #[test]
    fn star_alone_and_reversed_ranges() {
        assert!(contains(&set("*"), 5, 5));
        assert!(!contains(&set("*"), 4, 5));
        // "*:3" and "3:*" are the same range.
        assert!(contains(&set("*:3"), 4, 5));
        assert!(!contains(&set("*:3"), 2, 5));
        // "7:*" when the largest is 5 means 5:7.
        assert!(contains(&set("7:*"), 5, 5));
        assert!(!contains(&set("7:*"), 4, 5));
    }
}
