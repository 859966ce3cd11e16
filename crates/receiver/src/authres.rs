//! Inbound sender authentication as the receiver applies it (RFC 8601,
//! RFC 7489): the outer time bound of a check, recognising incoming fields
//! that claim to be ours (an `Authentication-Results` field with our
//! authserv-id, RFC 8601 §5, and our quarantine mark), the header written
//! when the checks time out, the quarantine mark itself, and RFC 8601
//! result names for the log. Pure: no I/O.

use postamt_sender_auth::{Action, AuthResult, DmarcOutcome, DmarcPolicy};
use std::time::Duration;

/// The longest a session waits for the checks of one message. The checks
/// bound themselves (`max(spf, dkim) + dmarc`, 8 s by default); this outer
/// bound makes sure no resolver misbehaviour holds the client's end of
/// DATA longer than this, far below the 10 minutes a client waits for it
/// (RFC 5321 §4.5.3.2.6).
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// The header field name of RFC 8601.
pub const AUTH_RESULTS_FIELD: &str = "Authentication-Results";

/// Our mark on a message that fails DMARC under a `p=quarantine` policy;
/// local delivery files such a message in the user's Junk folder.
pub use postamt_sender_auth::QUARANTINE_FIELD;

/// RFC 2045 `tspecials`: not allowed in a `token` (RFC 8601 `value`).
const TSPECIALS: &[u8] = b"()<>@,;:\\\"/[]?=";

/// Longest domain shown in the quarantine mark.
const MAX_DOMAIN_LEN: usize = 253;

/// Whether an incoming header field must not survive: an
/// `Authentication-Results` field whose authserv-id is our `hostname`
/// (forged, or at best unverifiable: results that claim to be ours are only
/// those we add; RFC 8601 §5), or a quarantine mark we did not set.
pub fn must_remove(name: &[u8], value: &[u8], hostname: &str) -> bool {
    if name.eq_ignore_ascii_case(QUARANTINE_FIELD.as_bytes()) {
        return true;
    }
    name.eq_ignore_ascii_case(AUTH_RESULTS_FIELD.as_bytes())
        && authserv_id(value).is_some_and(|id| same_host(&id, hostname))
}

/// The authserv-id of an `Authentication-Results` field value (RFC 8601
/// §2.2: `[CFWS] authserv-id`, a `token` or a `quoted-string`), after any
/// comments and folding; `None` when there is none.
pub fn authserv_id(value: &[u8]) -> Option<Vec<u8>> {
    let mut i = skip_cfws(value)?;
    if value.get(i) == Some(&b'"') {
        let mut out = Vec::new();
        i += 1;
        loop {
            match *value.get(i)? {
                b'"' => return Some(out),
                b'\\' => {
                    out.push(*value.get(i + 1)?);
                    i += 2;
                }
                // Folding inside the quoted string.
                b'\r' | b'\n' => i += 1,
                b => {
                    out.push(b);
                    i += 1;
                }
            }
        }
    }
    let rest = &value[i..];
    let end = rest
        .iter()
        .position(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b';' | b'(' | b'"'))
        .unwrap_or(rest.len());
    let token = &rest[..end];
    (!token.is_empty()).then(|| token.to_vec())
}

/// The index of the first byte after leading whitespace, line ends and
/// (nested) comments; `None` when nothing else follows.
fn skip_cfws(value: &[u8]) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = 0;
    while let Some(&b) = value.get(i) {
        match b {
            b'(' => depth += 1,
            b')' if depth > 0 => depth -= 1,
            // A quoted-pair inside a comment.
            b'\\' if depth > 0 => i += 1,
            b' ' | b'\t' | b'\r' | b'\n' => {}
            _ if depth > 0 => {}
            _ => return Some(i),
        }
        i += 1;
    }
    None
}

/// Whether an authserv-id names `hostname`: ASCII case-insensitive, a
/// trailing root dot ignored on either side.
pub fn same_host(id: &[u8], hostname: &str) -> bool {
    let trim = |s: &[u8]| -> Vec<u8> {
        let mut s = s.to_vec();
        while s.last() == Some(&b'.') {
            s.pop();
        }
        s
    };
    let ours = trim(hostname.as_bytes());
    !ours.is_empty() && trim(id).eq_ignore_ascii_case(&ours)
}

/// Our hostname as an RFC 8601 authserv-id: the lowercased name without a
/// root dot, as a `token`, or as a `quoted-string` should it contain
/// anything a token may not.
pub fn authserv_id_text(hostname: &str) -> String {
    let host = hostname.trim_end_matches('.').to_ascii_lowercase();
    let is_token = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_graphic() && !TSPECIALS.contains(&b));
    if is_token {
        return host;
    }
    let mut quoted = String::with_capacity(host.len() + 2);
    quoted.push('"');
    for c in host.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

/// The `Authentication-Results` field written when the checks did not
/// finish within [`CHECK_TIMEOUT`]: every method `temperror` (RFC 8601
/// §2.7: the result could not be determined now), with the reason. Not
/// `none`, which would claim that nothing was tried or that the message is
/// unsigned; `temperror` is also what the checks themselves report for a
/// DNS outage, so readers see one shape for both.
pub fn timed_out(hostname: &str) -> String {
    let reason = "reason=\"checks timed out\"";
    format!(
        "{AUTH_RESULTS_FIELD}: {};\r\n\tspf=temperror {reason};\r\n\tdkim=temperror {reason};\r\n\
         \tdmarc=temperror {reason}\r\n",
        authserv_id_text(hostname)
    )
}

/// `X-Postamt-Quarantine: dmarc (<from domain> policy quarantine)` with
/// CRLF; the domain (from the message) reduced to letters, digits, `.`,
/// `-` and `_`, anything else shown as `_`.
pub fn quarantine_field(from_domain: Option<&str>) -> String {
    let domain: String = from_domain
        .unwrap_or("")
        .chars()
        .take(MAX_DOMAIN_LEN)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let domain = if domain.is_empty() {
        "unknown"
    } else {
        &domain
    };
    format!("{QUARANTINE_FIELD}: dmarc ({domain} policy quarantine)\r\n")
}

/// The header as given, ending in CRLF (added if the verifier forgot it).
pub fn with_crlf(mut header: String) -> String {
    if !header.ends_with("\r\n") {
        while header.ends_with(['\r', '\n']) {
            header.pop();
        }
        header.push_str("\r\n");
    }
    header
}

/// The RFC 8601 name of a result, for the log.
pub fn result_name(r: AuthResult) -> &'static str {
    match r {
        AuthResult::None => "none",
        AuthResult::Pass => "pass",
        AuthResult::Fail => "fail",
        AuthResult::SoftFail => "softfail",
        AuthResult::Neutral => "neutral",
        AuthResult::TempError => "temperror",
        AuthResult::PermError => "permerror",
    }
}

/// The DMARC result for the log, with the policy of a failure.
pub fn dmarc_name(d: DmarcOutcome) -> &'static str {
    match d {
        DmarcOutcome::None => "none",
        DmarcOutcome::Pass => "pass",
        DmarcOutcome::Fail {
            policy: DmarcPolicy::None,
        } => "fail (p=none)",
        DmarcOutcome::Fail {
            policy: DmarcPolicy::Quarantine,
        } => "fail (p=quarantine)",
        DmarcOutcome::Fail {
            policy: DmarcPolicy::Reject,
        } => "fail (p=reject)",
        DmarcOutcome::TempError => "temperror",
        DmarcOutcome::PermError => "permerror",
    }
}

/// The action for the log.
pub fn action_name(a: &Action) -> &'static str {
    match a {
        Action::Accept => "accept",
        Action::Reject(_) => "reject",
        Action::Quarantine => "quarantine",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postamt_sender_auth::VerifyLimits;

    fn id(v: &str) -> Option<String> {
        authserv_id(v.as_bytes()).map(|b| String::from_utf8(b).expect("utf8"))
    }

    #[test]
    fn authserv_id_forms() {
        assert_eq!(
            id(" mx.example.org; spf=pass"),
            Some("mx.example.org".into())
        );
        assert_eq!(id(" mx.example.org 1; none"), Some("mx.example.org".into()));
        assert_eq!(id("mx.example.org;"), Some("mx.example.org".into()));
        assert_eq!(id(" mx.example.org(c); x"), Some("mx.example.org".into()));
        assert_eq!(
            id(" (a (nested \\) comment)) \r\n\t mx.example.org;"),
            Some("mx.example.org".into())
        );
        assert_eq!(
            id(" \"mx.exa\\mple.org\"; x"),
            Some("mx.example.org".into())
        );
        assert_eq!(
            id("\r\n\tMX.Example.Org.\r\n"),
            Some("MX.Example.Org.".into())
        );
        assert_eq!(id(" ; spf=pass"), None);
        assert_eq!(id("   \r\n"), None);
        assert_eq!(id(" (unterminated comment mx.example.org;"), None);
        assert_eq!(id(" \"unterminated"), None);
    }

    #[test]
    fn same_host_ignores_case_and_root_dot() {
        assert!(same_host(b"MX.example.ORG.", "mx.example.org"));
        assert!(same_host(b"mx.example.org", "mx.example.org."));
        assert!(!same_host(b"mx.example.org.evil.net", "mx.example.org"));
        assert!(!same_host(b"example.org", "mx.example.org"));
        assert!(!same_host(b"", ""));
        assert!(!same_host(b".", "."));
    }

    #[test]
    fn what_must_be_removed() {
        let host = "mx.example.org";
        assert!(must_remove(
            b"Authentication-Results",
            b" mx.example.org; dkim=pass\r\n",
            host
        ));
        assert!(must_remove(
            b"authentication-results",
            b"\r\n\t\"MX.example.org\" ;\r\n",
            host
        ));
        assert!(!must_remove(
            b"Authentication-Results",
            b" other.example.net; dkim=pass\r\n",
            host
        ));
        assert!(!must_remove(
            b"Authentication-Results",
            b" ; broken\r\n",
            host
        ));
        assert!(!must_remove(
            b"ARC-Authentication-Results",
            b" i=1; mx.example.org; x\r\n",
            host
        ));
        assert!(!must_remove(b"Subject", b" mx.example.org\r\n", host));
        assert!(must_remove(
            b"X-Postamt-Quarantine",
            b" dmarc (x policy quarantine)\r\n",
            host
        ));
        assert!(must_remove(b"x-postamt-quarantine", b"\r\n", host));
    }

    #[test]
    fn timed_out_header_is_ours_and_well_formed() {
        let h = timed_out("MX.Example.org.");
        assert_eq!(
            h,
            "Authentication-Results: mx.example.org;\r\n\
             \tspf=temperror reason=\"checks timed out\";\r\n\
             \tdkim=temperror reason=\"checks timed out\";\r\n\
             \tdmarc=temperror reason=\"checks timed out\"\r\n"
        );
        let value = h
            .strip_prefix("Authentication-Results:")
            .expect("field name");
        assert!(must_remove(
            b"Authentication-Results",
            value.as_bytes(),
            "mx.example.org"
        ));
        // Every line but the first is a continuation; only CRLF line ends.
        for line in h.trim_end_matches("\r\n").split("\r\n").skip(1) {
            assert!(line.starts_with('\t'), "{line:?}");
        }
        assert_eq!(h.matches('\n').count(), h.matches("\r\n").count());
    }

    #[test]
    fn odd_hostnames_are_quoted() {
        assert_eq!(authserv_id_text("mx.example.org"), "mx.example.org");
        assert_eq!(authserv_id_text("a b\"c"), "\"a b\\\"c\"");
        assert_eq!(authserv_id_text(""), "\"\"");
        let quoted = authserv_id_text("a b");
        assert_eq!(authserv_id(quoted.as_bytes()), Some(b"a b".to_vec()));
    }

    #[test]
    fn quarantine_mark_is_safe() {
        assert_eq!(
            quarantine_field(Some("remote.net")),
            "X-Postamt-Quarantine: dmarc (remote.net policy quarantine)\r\n"
        );
        assert_eq!(
            quarantine_field(Some("evil)\r\nBcc: x")),
            "X-Postamt-Quarantine: dmarc (evil___Bcc__x policy quarantine)\r\n"
        );
        assert_eq!(
            quarantine_field(None),
            "X-Postamt-Quarantine: dmarc (unknown policy quarantine)\r\n"
        );
        let long = "a".repeat(1000);
        assert_eq!(
            quarantine_field(Some(&long)).len(),
            quarantine_field(Some("")).len() - "unknown".len() + MAX_DOMAIN_LEN
        );
    }

    #[test]
    fn header_line_end_is_enforced() {
        assert_eq!(with_crlf("A: b\r\n".into()), "A: b\r\n");
        assert_eq!(with_crlf("A: b".into()), "A: b\r\n");
        assert_eq!(with_crlf("A: b\n".into()), "A: b\r\n");
    }

    #[test]
    fn log_names() {
        assert_eq!(result_name(AuthResult::SoftFail), "softfail");
        assert_eq!(result_name(AuthResult::TempError), "temperror");
        assert_eq!(
            dmarc_name(DmarcOutcome::Fail {
                policy: DmarcPolicy::Reject
            }),
            "fail (p=reject)"
        );
        assert_eq!(action_name(&Action::Quarantine), "quarantine");
        assert_eq!(action_name(&Action::Reject("550".into())), "reject");
    }

    #[test]
    fn default_check_bounds_fit_inside_the_outer_timeout() {
        let l = VerifyLimits::default();
        assert!(l.spf_timeout.max(l.dkim_timeout) + l.dmarc_timeout < CHECK_TIMEOUT);
    }
}
