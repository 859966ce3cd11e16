//! The directory's name rules (`names`): user and list names, alias
//! patterns and targets, address normalisation and the `*` wildcard
//! matcher. Input: a pattern and a text separated by the first NUL.
//!
//! Invariants: no panic; the wildcard matcher agrees with a simple
//! dynamic-programming reference; a valid user name is a safe single path
//! component; a valid target has no wildcard, space or control character;
//! normalisation is idempotent; `printable` has no control characters and
//! is bounded; list service suffixes split and rebuild the local part.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postamt_directory::names::{
    ListRole, MAX_LOCAL_PART_LEN, is_wildcard, normalize_address, printable, specificity,
    split_list_suffix, validate_list_name, validate_pattern, validate_target, validate_user_name,
    wildcard_match,
};

/// Reference matcher: `*` matches any run of characters (empty included).
fn reference_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // m[j] = pattern prefix p[..i] matches text prefix t[..j].
    let mut m = vec![false; t.len() + 1];
    m[0] = true;
    for &pc in &p {
        let mut next = vec![false; t.len() + 1];
        if pc == '*' {
            let mut any = false;
            for j in 0..=t.len() {
                any |= m[j];
                next[j] = any;
            }
        } else {
            for j in 1..=t.len() {
                next[j] = m[j - 1] && t[j - 1] == pc;
            }
        }
        m = next;
    }
    m[t.len()]
}

fn check_one(s: &str) {
    if validate_user_name(s).is_ok() {
        assert!(!s.is_empty() && s.len() <= 64);
        assert!(!s.contains('/') && !s.contains('\0') && s != "." && s != "..");
        assert!(!s.starts_with('.') && !s.starts_with('-'));
    }
    if validate_list_name(s).is_ok() {
        assert!(validate_user_name(s).is_ok());
        for role in ListRole::ALL {
            assert!(role.local_part(s).len() <= MAX_LOCAL_PART_LEN);
        }
        assert!(split_list_suffix(s).is_none());
    }
    if let Some((base, role)) = split_list_suffix(s) {
        assert!(!base.is_empty());
        assert!(s.to_ascii_lowercase().ends_with(role.suffix()));
        assert_eq!(base.len() + role.suffix().len(), s.len());
    }
    if validate_target(s).is_ok() {
        assert!(
            validate_pattern(s).is_ok(),
            "a valid target is a valid pattern"
        );
        assert!(!s.contains('*'));
        assert!(!s.chars().any(|c| c.is_whitespace() || c.is_control()));
        assert!(s.matches('@').count() <= 1);
    }
    if validate_pattern(s).is_ok() {
        assert!(!s.is_empty());
        assert!(s.matches('@').count() <= 1);
    }
    if let Ok(n) = normalize_address(s) {
        assert_eq!(n.matches('@').count(), 1, "{n:?}");
        assert!(!n.contains('*'));
        let again = normalize_address(&n);
        assert!(
            again.as_deref().is_ok_and(|a| a == n),
            "normalize_address not idempotent: {s:?} -> {n:?} -> {again:?}"
        );
        assert!(
            validate_target(&n).is_ok(),
            "normalised address {n:?} is not a valid target"
        );
    }
    let shown = printable(s);
    assert!(!shown.chars().any(char::is_control), "printable {shown:?}");
    assert!(shown.chars().count() <= 100 * 10 + 1);
    let (local_lit, has_domain, _) = specificity(s);
    assert!(local_lit <= s.chars().count());
    assert_eq!(has_domain, s.contains('@'));
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // Bound the quadratic reference.
    if text.len() > 2048 {
        return;
    }
    let (pattern, subject) = text.split_once('\0').unwrap_or((&text, ""));
    check_one(pattern);
    check_one(subject);
    let got = wildcard_match(pattern, subject);
    assert_eq!(
        got,
        reference_match(pattern, subject),
        "wildcard_match({pattern:?}, {subject:?})"
    );
    if !is_wildcard(subject) {
        assert!(
            wildcard_match(subject, subject),
            "a literal does not match itself"
        );
    }
    assert!(wildcard_match("*", subject));
    if got {
        // A pattern's literal characters all appear in what it matches.
        let (lit, _, dom) = specificity(pattern);
        assert!(lit + dom <= subject.chars().count() + 1);
    }
});
