//! A session's view of the selected folder (pure): which UID each message
//! sequence number stands for, resolving sequence and UID sets, new
//! messages appended at the end, and expunges the store has done that the
//! client has not been told of yet. Those keep their sequence numbers
//! until the session may announce them (never during FETCH, STORE or
//! SEARCH: RFC 3501 7.4.1), then leave highest first so every `EXPUNGE`
//! number is right when it is sent.

use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};
use std::collections::BTreeSet;
use thiserror::Error;

/// A message sequence number outside the view.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
#[error("invalid message sequence number {0}")]
pub struct BadSequence(pub u32);

/// One message picked by a set: its sequence number and UID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Picked {
    pub seq: u32,
    pub uid: u32,
}

/// The sequence-number map of one selected folder.
#[derive(Clone, Debug, Default)]
pub struct View {
    /// UIDs by sequence number (index = seq - 1), ascending.
    uids: Vec<u32>,
    /// UIDs still in `uids` that the store no longer has.
    gone: BTreeSet<u32>,
}

impl View {
    /// A view of `uids` (must be ascending; duplicates are dropped).
    pub fn new(mut uids: Vec<u32>) -> View {
        uids.sort_unstable();
        uids.dedup();
        View {
            uids,
            gone: BTreeSet::new(),
        }
    }

    /// Messages in the view (the last EXISTS sent).
    pub fn len(&self) -> u32 {
        u32::try_from(self.uids.len()).unwrap_or(u32::MAX)
    }

    pub fn is_empty(&self) -> bool {
        self.uids.is_empty()
    }

    /// The UID of sequence number `seq`.
    pub fn uid(&self, seq: u32) -> Option<u32> {
        let i = usize::try_from(seq).ok()?.checked_sub(1)?;
        self.uids.get(i).copied()
    }

    /// The sequence number of `uid`.
    pub fn seq(&self, uid: u32) -> Option<u32> {
        self.uids
            .binary_search(&uid)
            .ok()
            .and_then(|i| u32::try_from(i + 1).ok())
    }

    /// The highest UID in the view (0 when empty).
    pub fn max_uid(&self) -> u32 {
        self.uids.last().copied().unwrap_or(0)
    }

    /// All UIDs in sequence order.
    pub fn uids(&self) -> &[u32] {
        &self.uids
    }

    /// Whether the store expunged `uid` and the client was not told yet.
    pub fn is_gone(&self, uid: u32) -> bool {
        self.gone.contains(&uid)
    }

    /// Whether expunges wait to be announced.
    pub fn has_pending_expunges(&self) -> bool {
        !self.gone.is_empty()
    }

    /// Resolves a sequence set (`uid_mode`: a UID set) to the messages it
    /// names, ascending, each once. In a UID set, UIDs not in the view are
    /// ignored and `*` is the highest UID; in a sequence set, `*` is the
    /// last message, a number past the end is an error, and a range is
    /// cut at the end of the view.
    pub fn resolve(&self, set: &SequenceSet, uid_mode: bool) -> Result<Vec<Picked>, BadSequence> {
        // Index ranges [start, end) into `uids`, merged at the end, so a
        // set of many overlapping ranges costs no more than the view.
        let mut ranges: Vec<(usize, usize)> = Vec::new();
        let len = self.len();
        for seq in set.0.as_ref() {
            let (a, b) = match seq {
                Sequence::Single(x) => (*x, *x),
                Sequence::Range(x, y) => (*x, *y),
            };
            if uid_mode {
                if self.uids.is_empty() {
                    continue;
                }
                let val = |v: SeqOrUid| match v {
                    SeqOrUid::Value(n) => n.get(),
                    SeqOrUid::Asterisk => self.max_uid(),
                };
                let (x, y) = (val(a), val(b));
                let (lo, hi) = (x.min(y), x.max(y));
                let start = self.uids.partition_point(|&u| u < lo);
                let end = self.uids.partition_point(|&u| u <= hi);
                if start < end {
                    ranges.push((start, end));
                }
            } else {
                let val = |v: SeqOrUid| match v {
                    SeqOrUid::Value(n) => n.get(),
                    SeqOrUid::Asterisk => len,
                };
                let (x, y) = (val(a), val(b));
                if len == 0 {
                    // A range with `*` in an empty folder names nothing; a
                    // number alone does not exist.
                    if matches!(a, SeqOrUid::Asterisk) || matches!(b, SeqOrUid::Asterisk) {
                        continue;
                    }
                    return Err(BadSequence(x.max(y)));
                }
                let (lo, hi) = (x.min(y), x.max(y));
                if lo > len {
                    return Err(BadSequence(lo));
                }
                if matches!(seq, Sequence::Single(_)) && hi > len {
                    return Err(BadSequence(hi));
                }
                // `lo` is at least 1: values are non-zero and `*` is `len`.
                ranges.push(((lo - 1) as usize, hi.min(len) as usize));
            }
        }
        ranges.sort_unstable();
        let mut out: Vec<Picked> = Vec::new();
        let mut next = 0usize;
        for (start, end) in ranges {
            for i in start.max(next)..end {
                out.push(Picked {
                    seq: u32::try_from(i + 1).unwrap_or(u32::MAX),
                    uid: self.uids[i],
                });
            }
            next = next.max(end);
        }
        Ok(out)
    }

    /// Appends messages new to the view (UIDs above the highest one; others
    /// are ignored). Returns how many were added.
    pub fn add(&mut self, new: &[u32]) -> usize {
        let mut added = 0;
        let mut sorted = new.to_vec();
        sorted.sort_unstable();
        for uid in sorted {
            if uid > self.max_uid() {
                self.uids.push(uid);
                added += 1;
            }
        }
        added
    }

    /// Records that the store no longer has `uids` (those in the view).
    pub fn mark_gone(&mut self, uids: &[u32]) {
        for &uid in uids {
            if self.seq(uid).is_some() {
                self.gone.insert(uid);
            }
        }
    }

    /// Removes the pending expunges from the view and returns the
    /// `EXPUNGE` numbers to send, in the order to send them (highest
    /// first, so each is valid when sent).
    pub fn take_expunges(&mut self) -> Vec<u32> {
        let gone = std::mem::take(&mut self.gone);
        let mut seqs: Vec<u32> = gone.iter().filter_map(|&u| self.seq(u)).collect();
        seqs.sort_unstable_by(|a, b| b.cmp(a));
        self.uids.retain(|u| !gone.contains(u));
        seqs
    }

    /// Like [`View::take_expunges`] for QRESYNC sessions: the UIDs to
    /// announce in one `VANISHED`, ascending.
    pub fn take_vanished(&mut self) -> Vec<u32> {
        let gone = std::mem::take(&mut self.gone);
        self.uids.retain(|u| !gone.contains(u));
        gone.into_iter().collect()
    }
}

/// Whether `set` names `n`, with `*` standing for `star` (QRESYNC
/// known-UID sets, VANISHED filters).
pub fn set_contains(set: &SequenceSet, n: u32, star: u32) -> bool {
    let val = |v: SeqOrUid| match v {
        SeqOrUid::Value(x) => x.get(),
        SeqOrUid::Asterisk => star,
    };
    set.0.as_ref().iter().any(|s| match s {
        Sequence::Single(x) => val(*x) == n,
        Sequence::Range(a, b) => {
            let (a, b) = (val(*a), val(*b));
            a.min(b) <= n && n <= a.max(b)
        }
    })
}

/// Compresses ascending UIDs into IMAP set syntax (`1:3,7,9:10`).
pub fn uid_set_string(uids: &[u32]) -> String {
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end.saturating_add(1) {
            i += 1;
            end = sorted[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(s: &str) -> SequenceSet {
        SequenceSet::try_from(s).unwrap()
    }

    fn seqs(p: &[Picked]) -> Vec<u32> {
        p.iter().map(|p| p.seq).collect()
    }

    fn uids(p: &[Picked]) -> Vec<u32> {
        p.iter().map(|p| p.uid).collect()
    }

    #[test]
    fn maps_both_ways() {
        let v = View::new(vec![3, 7, 10]);
        assert_eq!(v.len(), 3);
        assert_eq!(v.uid(1), Some(3));
        assert_eq!(v.uid(3), Some(10));
        assert_eq!(v.uid(0), None);
        assert_eq!(v.uid(4), None);
        assert_eq!(v.seq(7), Some(2));
        assert_eq!(v.seq(8), None);
        assert_eq!(v.max_uid(), 10);
    }

    #[test]
    fn sequence_sets() {
        let v = View::new(vec![3, 7, 10, 11]);
        assert_eq!(seqs(&v.resolve(&set("1:*"), false).unwrap()), [1, 2, 3, 4]);
        assert_eq!(uids(&v.resolve(&set("2,4"), false).unwrap()), [7, 11]);
        assert_eq!(seqs(&v.resolve(&set("*:3"), false).unwrap()), [3, 4]);
        assert_eq!(seqs(&v.resolve(&set("3:2,2"), false).unwrap()), [2, 3]);
        assert_eq!(
            seqs(&v.resolve(&set("3:9"), false).unwrap()),
            [3, 4],
            "cut at end"
        );
        assert_eq!(v.resolve(&set("5"), false), Err(BadSequence(5)));
        assert_eq!(v.resolve(&set("5:9"), false), Err(BadSequence(5)));
    }

    #[test]
    fn uid_sets_ignore_missing_uids() {
        let v = View::new(vec![3, 7, 10, 11]);
        assert_eq!(uids(&v.resolve(&set("1:5"), true).unwrap()), [3]);
        assert_eq!(uids(&v.resolve(&set("8:*"), true).unwrap()), [10, 11]);
        assert_eq!(
            uids(&v.resolve(&set("100:*"), true).unwrap()),
            [11],
            "n:* has the last"
        );
        assert_eq!(
            uids(&v.resolve(&set("4:6"), true).unwrap()),
            Vec::<u32>::new()
        );
        assert_eq!(seqs(&v.resolve(&set("7,11"), true).unwrap()), [2, 4]);
    }

    #[test]
    fn many_overlapping_ranges_stay_cheap() {
        let v = View::new((1..=10_000).collect());
        let text = vec!["1:*"; 5000].join(",");
        let picked = v.resolve(&set(&text), false).unwrap();
        assert_eq!(picked.len(), 10_000);
        let picked = v.resolve(&set(&text), true).unwrap();
        assert_eq!(picked.len(), 10_000);
        assert_eq!(
            picked[9_999],
            Picked {
                seq: 10_000,
                uid: 10_000
            }
        );
    }

    #[test]
    fn empty_view() {
        let v = View::new(vec![]);
        assert!(v.resolve(&set("1:*"), false).unwrap().is_empty());
        assert!(v.resolve(&set("*"), false).unwrap().is_empty());
        assert_eq!(v.resolve(&set("1"), false), Err(BadSequence(1)));
        assert!(v.resolve(&set("1:*"), true).unwrap().is_empty());
    }

    #[test]
    fn expunges_keep_numbers_until_announced() {
        let mut v = View::new(vec![1, 2, 3, 4, 5]);
        v.mark_gone(&[2, 4, 99]);
        assert!(v.has_pending_expunges());
        // Still addressable by their old numbers.
        assert_eq!(v.uid(4), Some(4));
        assert!(v.is_gone(4));
        assert_eq!(v.len(), 5);
        let sent = v.take_expunges();
        assert_eq!(sent, [4, 2], "highest first: both numbers valid when sent");
        assert_eq!(v.uids(), [1, 3, 5]);
        assert_eq!(v.seq(5), Some(3));
        assert!(!v.has_pending_expunges());
    }

    #[test]
    fn expunge_numbers_replayed_by_the_client_give_its_view() {
        // Apply the EXPUNGEs as a client would, to a copy of the old view.
        let old = vec![10, 20, 30, 40, 50, 60];
        let mut v = View::new(old.clone());
        v.mark_gone(&[10, 30, 60]);
        let mut client = old;
        for seq in v.take_expunges() {
            client.remove((seq - 1) as usize);
        }
        assert_eq!(client, v.uids());
    }

    #[test]
    fn vanished_for_qresync() {
        let mut v = View::new(vec![1, 2, 3]);
        v.mark_gone(&[3, 1]);
        assert_eq!(v.take_vanished(), [1, 3]);
        assert_eq!(v.uids(), [2]);
    }

    #[test]
    fn new_messages_are_appended() {
        let mut v = View::new(vec![1, 2]);
        assert_eq!(v.add(&[5, 3, 2]), 2);
        assert_eq!(v.uids(), [1, 2, 3, 5]);
        assert_eq!(v.seq(5), Some(4));
    }

    #[test]
    fn set_membership() {
        let s = set("1:3,7,10:*");
        assert!(s_has(&s, 2) && s_has(&s, 7) && s_has(&s, 12) && s_has(&s, 20));
        assert!(!s_has(&s, 5) && !s_has(&s, 21));
        fn s_has(s: &SequenceSet, n: u32) -> bool {
            set_contains(s, n, 20)
        }
    }

    #[test]
    fn uid_sets_render_compactly() {
        assert_eq!(uid_set_string(&[1, 2, 3, 7, 9, 10]), "1:3,7,9:10");
        assert_eq!(uid_set_string(&[5]), "5");
        assert_eq!(uid_set_string(&[]), "");
        assert_eq!(uid_set_string(&[3, 1, 2, 2]), "1:3");
        assert_eq!(
            uid_set_string(&[u32::MAX - 1, u32::MAX]),
            format!("{}:{}", u32::MAX - 1, u32::MAX)
        );
    }
}
