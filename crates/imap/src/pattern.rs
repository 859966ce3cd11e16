//! LIST/LSUB name patterns (pure): the reference and the pattern joined,
//! `*` matching anything and `%` anything but the hierarchy delimiter
//! (RFC 3501 6.3.8), INBOX matched case-insensitively. Matching is a
//! dynamic programme, linear in name times pattern, so a hostile pattern
//! cannot make it explode.

use crate::names::canonical_inbox;

/// Longest pattern accepted (after joining with the reference).
pub const MAX_PATTERN_LEN: usize = 1024;

/// A LIST pattern ready for matching.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    chars: Vec<char>,
}

impl Pattern {
    /// Joins `reference` and `pattern` (with a `/` between them when
    /// neither provides one). `None` when the result is too long.
    pub fn new(reference: &str, pattern: &str) -> Option<Pattern> {
        let needs_delimiter = !reference.is_empty()
            && !pattern.is_empty()
            && !reference.ends_with('/')
            && !pattern.starts_with('/');
        let joined = if needs_delimiter {
            format!("{reference}/{pattern}")
        } else {
            format!("{reference}{pattern}")
        };
        if joined.len() > MAX_PATTERN_LEN {
            return None;
        }
        Some(Pattern {
            chars: canonical_inbox(joined).chars().collect(),
        })
    }

    /// Whether `name` (an IMAP name, `/`-delimited, INBOX spelled `INBOX`)
    /// matches.
    pub fn matches(&self, name: &str) -> bool {
        let name: Vec<char> = name.chars().collect();
        let p = &self.chars;
        // prev[j]: pattern[..i] matches name[..j].
        let mut prev = vec![false; name.len() + 1];
        prev[0] = true;
        for &pc in p {
            let mut cur = vec![false; name.len() + 1];
            match pc {
                '*' | '%' => {
                    // A wildcard matches empty, or extends a match by one
                    // character (for `%`, not the delimiter).
                    cur[0] = prev[0];
                    for j in 1..=name.len() {
                        cur[j] = prev[j] || (cur[j - 1] && (pc == '*' || name[j - 1] != '/'));
                    }
                }
                c => {
                    for j in 1..=name.len() {
                        cur[j] = prev[j - 1] && name[j - 1] == c;
                    }
                }
            }
            prev = cur;
        }
        prev[name.len()]
    }

    /// The pattern is empty: `LIST "" ""` asks for the delimiter only.
    pub fn is_empty(&self) -> bool {
        self.chars.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(reference: &str, pattern: &str, name: &str) -> bool {
        Pattern::new(reference, pattern).unwrap().matches(name)
    }

    #[test]
    fn star_matches_across_levels() {
        assert!(m("", "*", "INBOX"));
        assert!(m("", "*", "a/b/c"));
        assert!(m("", "a*", "a/b"));
        assert!(m("", "*c", "a/b/c"));
        assert!(!m("", "b*", "a/b"));
    }

    #[test]
    fn percent_stays_on_one_level() {
        assert!(m("", "%", "Sent"));
        assert!(!m("", "%", "a/b"));
        assert!(m("", "a/%", "a/b"));
        assert!(!m("", "a/%", "a/b/c"));
        assert!(m("", "%/%", "a/b"));
        assert!(m("", "a%", "a"));
    }

    #[test]
    fn literal_names_and_reference() {
        assert!(m("", "Sent", "Sent"));
        assert!(!m("", "Sent", "sent"));
        assert!(m("Projects", "%", "Projects/2026"));
        assert!(m("Projects/", "%", "Projects/2026"));
        assert!(!m("Projects", "%", "Projects"));
    }

    #[test]
    fn inbox_is_case_insensitive() {
        assert!(m("", "inbox", "INBOX"));
        assert!(m("", "Inbox/%", "INBOX/x"));
        assert!(m("", "INBOX", "INBOX"));
    }

    #[test]
    fn hostile_patterns_stay_cheap_and_bounded() {
        let p = Pattern::new("", &"*%".repeat(400)).unwrap();
        assert!(p.matches(&"a".repeat(500)));
        assert!(p.matches(&"a/".repeat(200)), "`*` crosses levels");
        let pct = Pattern::new("", &"%".repeat(600)).unwrap();
        assert!(!pct.matches(&"a/".repeat(200)), "`%` does not");
        assert!(Pattern::new("", &"*".repeat(MAX_PATTERN_LEN + 1)).is_none());
    }

    #[test]
    fn empty_pattern() {
        let p = Pattern::new("", "").unwrap();
        assert!(p.is_empty());
        assert!(!p.matches("INBOX"));
    }
}
