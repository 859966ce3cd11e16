//! Validation and normalisation of the names the directory stores: user
//! names (which become directory names under the mailbox root), list names
//! and their service-address suffixes, alias patterns with `*` wildcards,
//! alias targets and full addresses (members, owners, forward targets);
//! plus the wildcard matcher.
//!
//! Everything here is pure: no I/O, no database.

use crate::DirectoryError;

/// Longest user name, in characters (all ASCII).
pub const MAX_USER_NAME_LEN: usize = 64;
/// Longest local part of a pattern or target, in bytes (RFC 5321 §4.5.3.1.1).
pub const MAX_LOCAL_PART_LEN: usize = 64;
/// Longest domain of a pattern or target, in bytes (RFC 5321 §4.5.3.1.2).
pub const MAX_DOMAIN_LEN: usize = 255;
/// Most targets one alias may have.
pub const MAX_ALIAS_TARGETS: usize = 1000;
/// Longest password accepted, in bytes (bounds the hashing work per attempt).
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Checks a user name: 1-64 ASCII letters, digits, `.`, `-`, `_`; not
/// starting with `.` or `-`; no `..`. Such a name is always a single, plain
/// path component (never `.`/`..`, no separator, no NUL), so a mailbox path
/// built from it cannot leave the mailbox root.
pub fn validate_user_name(name: &str) -> Result<(), DirectoryError> {
    let bad = || DirectoryError::InvalidUserName(printable(name));
    if name.is_empty() || name.len() > MAX_USER_NAME_LEN {
        return Err(bad());
    }
    if name.starts_with('.') || name.starts_with('-') || name.contains("..") {
        return Err(bad());
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    {
        return Err(bad());
    }
    Ok(())
}

/// Longest list name: the list's service addresses (`NAME-request`,
/// `NAME-bounces`) must still fit the 64-byte local part.
pub const MAX_LIST_NAME_LEN: usize = MAX_LOCAL_PART_LEN - "-bounces".len();

/// Names no list may take: they have a fixed meaning in mail.
const RESERVED_LIST_NAMES: &[&str] = &["postmaster", "mailer-daemon", "abuse"];

/// The service addresses a list `NAME` owns besides `NAME` itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ListRole {
    /// `NAME-request`: subscribe/unsubscribe/help by mail.
    Request,
    /// `NAME-bounces`: the envelope sender of list mail; bounces come here.
    Bounces,
    /// `NAME-owner`: reaches the list's owner.
    Owner,
}

impl ListRole {
    pub const ALL: [ListRole; 3] = [ListRole::Request, ListRole::Bounces, ListRole::Owner];

    /// The suffix, with its dash: `-request`, `-bounces`, `-owner`.
    pub fn suffix(self) -> &'static str {
        match self {
            ListRole::Request => "-request",
            ListRole::Bounces => "-bounces",
            ListRole::Owner => "-owner",
        }
    }

    /// The local part of this service address of list `name`.
    pub fn local_part(self, name: &str) -> String {
        format!("{name}{}", self.suffix())
    }
}

/// Splits `team-request` into (`team`, Request), and so on; case-insensitive.
/// `None` when the name carries no list suffix or nothing before it.
pub fn split_list_suffix(local: &str) -> Option<(&str, ListRole)> {
    ListRole::ALL.into_iter().find_map(|role| {
        let suffix = role.suffix();
        let cut = local.len().checked_sub(suffix.len())?;
        if cut == 0 || !local.is_char_boundary(cut) {
            return None;
        }
        let (base, tail) = local.split_at(cut);
        tail.eq_ignore_ascii_case(suffix).then_some((base, role))
    })
}

/// Checks a list name: the user-name rules (a list and a user share the
/// local-part namespace), at most [`MAX_LIST_NAME_LEN`] characters, not
/// ending in a list suffix (`-request`, `-bounces`, `-owner`, which name a
/// list's service addresses), and not `postmaster`, `mailer-daemon` or `abuse`.
pub fn validate_list_name(name: &str) -> Result<(), DirectoryError> {
    let bad = |why: String| DirectoryError::InvalidListName(printable(name), why);
    if validate_user_name(name).is_err() {
        return Err(bad(
            "use letters, digits, '.', '-', '_', not starting with '.' or '-'".into(),
        ));
    }
    if name.len() > MAX_LIST_NAME_LEN {
        return Err(bad(format!(
            "longer than {MAX_LIST_NAME_LEN} characters (its -request and -bounces addresses must fit 64)"
        )));
    }
    if let Some((_, role)) = split_list_suffix(name) {
        return Err(bad(format!(
            "a list name cannot end in `{}`: that names one of a list's own addresses",
            role.suffix()
        )));
    }
    if RESERVED_LIST_NAMES
        .iter()
        .any(|r| r.eq_ignore_ascii_case(name))
    {
        return Err(bad("this name is reserved".into()));
    }
    Ok(())
}

/// Checks a full mail address (`local@domain`) that the directory stores as
/// a list member, owner or forward target, and returns its stored form:
/// the local part as given, the domain lowercased without a trailing dot.
///
/// Accepted: a dot-atom local part of at most 64 bytes (no quoting, no
/// spaces, no RFC 5322 specials; UTF-8 allowed for SMTPUTF8), one `@`, and
/// a domain of at most 255 bytes made of labels of letters, digits and
/// inner `-` (or UTF-8), each at most 63 bytes. Address literals
/// (`[192.0.2.1]`) are refused.
pub fn normalize_address(address: &str) -> Result<String, DirectoryError> {
    let bad = |why: String| DirectoryError::InvalidAddress(printable(address), why);
    if !address.contains('@') {
        return Err(bad("a full address `local@domain` is needed".into()));
    }
    // A trailing dot (the root) is allowed and dropped.
    let trimmed = address.strip_suffix('.').unwrap_or(address);
    let (local, domain) = split_checked(trimmed, "address").map_err(bad)?;
    let domain = domain.unwrap_or_default();
    if local.contains('*') {
        return Err(bad("an address cannot contain the wildcard '*'".into()));
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(bad(
            "the local part has a leading, trailing or double '.'".into()
        ));
    }
    for label in domain.split('.') {
        if label.len() > 63 {
            return Err(bad("a domain label is longer than 63 bytes".into()));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(bad("a domain label starts or ends with '-'".into()));
        }
        if let Some(c) = label
            .chars()
            .find(|c| c.is_ascii() && !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(bad(format!("the domain contains the character '{c}'")));
        }
    }
    Ok(format!("{local}@{}", fold(&domain)))
}

/// Characters never allowed in a pattern or target: RFC 5322 "specials"
/// other than `.` and `@` (which have their own rules). Quoted local parts
/// are not supported in aliases.
const SPECIALS: &[char] = &['"', '(', ')', ',', ':', ';', '<', '>', '[', ']', '\\'];

/// Splits at the one `@`, checking the shared syntax of patterns and
/// targets. Returns (local, Some(domain)) or (local, None) for a bare local part.
fn split_checked(s: &str, what: &str) -> Result<(String, Option<String>), String> {
    if s.is_empty() {
        return Err(format!("the {what} is empty"));
    }
    if let Some(c) = s.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "contains a space or control character ({:?})",
            c.escape_default().to_string()
        ));
    }
    if let Some(c) = s.chars().find(|c| SPECIALS.contains(c)) {
        return Err(format!("contains the character '{c}'"));
    }
    let mut parts = s.split('@');
    let local = parts.next().unwrap_or_default();
    let domain = parts.next();
    if parts.next().is_some() {
        return Err("contains more than one '@'".into());
    }
    if local.is_empty() {
        return Err("the local part (before '@') is empty".into());
    }
    if local.len() > MAX_LOCAL_PART_LEN {
        return Err(format!(
            "the local part is longer than {MAX_LOCAL_PART_LEN} bytes"
        ));
    }
    if let Some(d) = domain {
        if d.is_empty() {
            return Err("the domain (after '@') is empty".into());
        }
        if d.len() > MAX_DOMAIN_LEN {
            return Err(format!("the domain is longer than {MAX_DOMAIN_LEN} bytes"));
        }
        if d.starts_with('.') || d.ends_with('.') || d.contains("..") {
            return Err("the domain has an empty label".into());
        }
    }
    Ok((local.to_owned(), domain.map(str::to_owned)))
}

/// Checks an alias pattern: `local`, `local@domain`, either with any number
/// of `*` wildcards.
pub fn validate_pattern(pattern: &str) -> Result<(), DirectoryError> {
    split_checked(pattern, "pattern")
        .map(|_| ())
        .map_err(|why| DirectoryError::InvalidPattern(printable(pattern), why))
}

/// Checks an alias target: a user name / local part (`bob`) or a full
/// address (`x@other.org`); no wildcards.
pub fn validate_target(target: &str) -> Result<(), DirectoryError> {
    let bad = |why: String| DirectoryError::InvalidTarget(printable(target), why);
    split_checked(target, "target").map_err(bad)?;
    if target.contains('*') {
        return Err(bad("a target cannot contain the wildcard '*'".into()));
    }
    Ok(())
}

/// The comparison key of a pattern, target or address: ASCII-lowercased.
/// (Non-ASCII characters of SMTPUTF8 addresses are compared as they are.)
pub fn fold(s: &str) -> String {
    s.to_ascii_lowercase()
}

/// Whether a pattern contains a wildcard.
pub fn is_wildcard(pattern: &str) -> bool {
    pattern.contains('*')
}

/// Whether a pattern names a full address (has a domain part).
pub fn is_full_address(pattern: &str) -> bool {
    pattern.contains('@')
}

/// How specific a wildcard pattern is; a greater key wins. Compared in
/// order: the non-`*` characters of the local part, then full-address
/// patterns before local-part patterns, then the non-`*` characters of the
/// domain. The local part comes first so that `sales-*` beats the catch-all
/// `*@example.org` for `sales-x@example.org`.
pub fn specificity(pattern: &str) -> (usize, bool, usize) {
    let (local, domain) = match pattern.split_once('@') {
        Some((l, d)) => (l, Some(d)),
        None => (pattern, None),
    };
    let literal = |s: &str| s.chars().filter(|&c| c != '*').count();
    (
        literal(local),
        domain.is_some(),
        domain.map(literal).unwrap_or(0),
    )
}

/// Glob matching where `*` matches any run of characters (including none)
/// and every other character matches itself. Both sides must already be
/// folded. Linear backtracking on the last `*`: O(len(text) * len(pattern))
/// at worst, and both are bounded by the validation limits.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    // Position of the last `*` seen in the pattern and the text position it
    // is currently assumed to stretch to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            // Let the last `*` swallow one more character and retry.
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// A name made safe to show in an error message and a log line: control
/// characters escaped, and cut to a sane length.
pub fn printable(s: &str) -> String {
    const MAX_SHOWN: usize = 100;
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == MAX_SHOWN {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_user_names() {
        for n in ["bob", "Bob", "carsten.doil", "a", "x_y-z.1", "0", "_x"] {
            assert!(validate_user_name(n).is_ok(), "{n}");
        }
        assert!(validate_user_name(&"a".repeat(64)).is_ok());
    }

    #[test]
    fn bad_user_names() {
        let long = "a".repeat(65);
        for n in [
            "", "../x", "a/b", ".x", "..", ".", "-x", "a..b", "a\0b", "a b", "a\\b", "ä", "a@b",
            "a\nb", "/", "x/", &long,
        ] {
            assert!(
                matches!(
                    validate_user_name(n),
                    Err(DirectoryError::InvalidUserName(_))
                ),
                "{n:?} should be rejected"
            );
        }
    }

    #[test]
    fn patterns() {
        for p in [
            "bob",
            "carsten.doil",
            "sales-*",
            "*@example.org",
            "*",
            "a*b*c",
            "x@y.org",
            "info@*",
            "*@*",
        ] {
            assert!(validate_pattern(p).is_ok(), "{p}");
        }
        for p in [
            "", "a b", "a\tb", "a@b@c", "@x.org", "x@", "a\0", "<a>", "a,b", "x@.org", "x@a..org",
            "x@org.",
        ] {
            assert!(
                matches!(validate_pattern(p), Err(DirectoryError::InvalidPattern(..))),
                "{p:?} should be rejected"
            );
        }
        assert!(validate_pattern(&"a".repeat(65)).is_err());
        assert!(validate_pattern(&format!("a@{}", "b".repeat(256))).is_err());
    }

    #[test]
    fn targets() {
        for t in ["bob", "x@other.org", "x@example.org", "Carsten.Doil"] {
            assert!(validate_target(t).is_ok(), "{t}");
        }
        for t in ["", "a*", "*@x.org", "a b", "a@b@c", "x@", "@x", "a\r\n"] {
            assert!(
                matches!(validate_target(t), Err(DirectoryError::InvalidTarget(..))),
                "{t:?} should be rejected"
            );
        }
    }

    #[test]
    fn glob() {
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("*", "anything"));
        assert!(wildcard_match("sales-*", "sales-"));
        assert!(wildcard_match("sales-*", "sales-eu"));
        assert!(!wildcard_match("sales-*", "sales"));
        assert!(!wildcard_match("sales-*", "xsales-eu"));
        assert!(wildcard_match("*@example.org", "bob@example.org"));
        assert!(!wildcard_match("*@example.org", "bob@example.org.uk"));
        assert!(wildcard_match("a*b*c", "aXbYc"));
        assert!(wildcard_match("a*b*c", "abc"));
        assert!(wildcard_match("a*b*c", "abbbcbc"));
        assert!(!wildcard_match("a*b*c", "acb"));
        assert!(wildcard_match("**x", "x"));
        assert!(!wildcard_match("abc", "abcd"));
        assert!(wildcard_match("abc", "abc"));
        assert!(wildcard_match("ü*", "über"));
    }

    #[test]
    fn specificity_order() {
        assert!(specificity("sales-*") > specificity("*@example.org"));
        assert!(specificity("sales-*@example.org") > specificity("sales-*"));
        assert!(specificity("*@example.org") > specificity("*"));
        assert!(specificity("sales-eu-*") > specificity("sales-*"));
        assert!(specificity("x*@example.org") > specificity("x*@*.org"));
    }

    #[test]
    fn list_names() {
        for n in [
            "team",
            "Team.EU",
            "a",
            "x_y-z",
            &"a".repeat(MAX_LIST_NAME_LEN),
        ] {
            assert!(validate_list_name(n).is_ok(), "{n}");
        }
        let long = "a".repeat(MAX_LIST_NAME_LEN + 1);
        for n in [
            "",
            "a b",
            "../x",
            ".x",
            "-x",
            "ä",
            &long,
            "team-request",
            "team-Bounces",
            "TEAM-OWNER",
            "postmaster",
            "Mailer-Daemon",
            "abuse",
        ] {
            assert!(
                matches!(
                    validate_list_name(n),
                    Err(DirectoryError::InvalidListName(..))
                ),
                "{n:?} should be rejected"
            );
        }
        // The longest name's service addresses still fit a local part.
        assert_eq!(
            ListRole::Bounces
                .local_part(&"a".repeat(MAX_LIST_NAME_LEN))
                .len(),
            MAX_LOCAL_PART_LEN
        );
    }

    #[test]
    fn list_suffixes() {
        assert_eq!(
            split_list_suffix("team-request"),
            Some(("team", ListRole::Request))
        );
        assert_eq!(
            split_list_suffix("Team-BOUNCES"),
            Some(("Team", ListRole::Bounces))
        );
        assert_eq!(split_list_suffix("a-owner"), Some(("a", ListRole::Owner)));
        assert_eq!(split_list_suffix("-owner"), None);
        assert_eq!(split_list_suffix("owner"), None);
        assert_eq!(split_list_suffix("team"), None);
        assert_eq!(split_list_suffix("éé-owner"), Some(("éé", ListRole::Owner)));
        assert_eq!(split_list_suffix("ä"), None);
    }

    #[test]
    fn addresses_are_checked_and_normalised() {
        assert_eq!(
            normalize_address("Bob.Smith@Example.ORG.").expect("ok"),
            "Bob.Smith@example.org"
        );
        assert_eq!(normalize_address("x@localhost").expect("ok"), "x@localhost");
        assert_eq!(
            normalize_address("jörg@bücher.de").expect("ok"),
            "jörg@bücher.de"
        );
        for a in [
            "",
            "bob",
            "@x.org",
            "bob@",
            "a@b@c.org",
            "a b@x.org",
            "a\r\n@x.org",
            "a\r\nRCPT TO:<x>@x.org",
            "<a@x.org>",
            "a,b@x.org",
            ".a@x.org",
            "a.@x.org",
            "a..b@x.org",
            "a*@x.org",
            "a@x..org",
            "a@-x.org",
            "a@x-.org",
            "a@x_y.org",
            "a@[192.0.2.1]",
            "a@.org",
        ] {
            assert!(
                matches!(
                    normalize_address(a),
                    Err(DirectoryError::InvalidAddress(..))
                ),
                "{a:?} should be rejected"
            );
        }
        assert!(normalize_address(&format!("{}@x.org", "a".repeat(65))).is_err());
        assert!(normalize_address(&format!("a@{}.org", "b".repeat(64))).is_err());
    }

    #[test]
    fn printable_escapes_and_cuts() {
        assert_eq!(printable("a\0b"), "a\\u{0}b");
        assert_eq!(printable(&"x".repeat(500)).chars().count(), 101);
    }
}
