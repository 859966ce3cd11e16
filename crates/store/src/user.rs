//! Mailbox path building: user-name validation (defence in depth: the
//! directory validates too) and expansion of the mailbox template.

use crate::StoreError;

/// Longest accepted user name.
pub const MAX_USER_LEN: usize = 64;

/// Checks that `user` (already lowercased) can safely be one path
/// component: 1-64 characters of ASCII letters, digits, `.`, `-`, `_`; not
/// starting with `.` or `-`; no `..` anywhere.
pub fn validate_user(user: &str) -> Result<(), StoreError> {
    let ok = !user.is_empty()
        && user.len() <= MAX_USER_LEN
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        && !user.starts_with(['.', '-'])
        && !user.contains("..");
    if ok {
        Ok(())
    } else {
        let shown: String = user.chars().take(MAX_USER_LEN + 1).collect();
        Err(StoreError::InvalidUser(shown))
    }
}

/// Whether a domain can safely be substituted for `%d` (one path component).
pub fn valid_domain(domain: &str) -> bool {
    !domain.is_empty()
        && domain.len() <= 253
        && domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        && !domain.starts_with(['.', '-'])
        && !domain.contains("..")
}

/// Expands `%u` (user), `%d` (domain) and `%%` (a literal `%`); any other
/// `%` sequence is kept as it is.
pub fn expand_template(template: &str, user: &str, domain: &str) -> String {
    let mut out = String::with_capacity(template.len() + user.len() + domain.len());
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('u') => out.push_str(user),
            Some('d') => out.push_str(domain),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for ok in [
            "bob",
            "carsten.doil",
            "a",
            "sales-team",
            "x_y",
            "0day",
            &"a".repeat(64),
        ] {
            assert!(validate_user(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_names_that_could_escape() {
        for bad in [
            "",
            "..",
            "../etc",
            "a/b",
            "/root",
            ".hidden",
            "-rf",
            "a..b",
            "a b",
            "a\0b",
            "bob@example.org",
            "b\u{f6}b",
            "a\\b",
            &"a".repeat(65),
        ] {
            assert!(
                matches!(validate_user(bad), Err(StoreError::InvalidUser(_))),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn domains() {
        assert!(valid_domain("example.org"));
        assert!(!valid_domain("../etc"));
        assert!(!valid_domain("a/b"));
        assert!(!valid_domain(""));
    }

    #[test]
    fn template_expansion() {
        assert_eq!(
            expand_template("/var/mail/%d/%u/Maildir", "bob", "example.org"),
            "/var/mail/example.org/bob/Maildir"
        );
        assert_eq!(expand_template("/m/%u%%%x%", "bob", "d"), "/m/bob%%x%");
    }
}
