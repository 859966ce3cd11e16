//! The SRS address formats: building SRS0/SRS1 addresses and taking them
//! apart again, with the HMAC and the day stamp. Pure functions, no I/O.

use crate::SrsError;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Characters of hash in our addresses.
pub const HASH_LEN: usize = 4;
/// Days an SRS0 address stays valid.
pub const MAX_AGE_DAYS: i64 = 21;
/// Longer addresses are refused by [`reverse`] without further work.
pub const MAX_ADDRESS_LEN: usize = 1024;

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const SECONDS_PER_DAY: i64 = 86_400;
/// The day stamp is 10 bits (two base32 characters).
const STAMP_MODULUS: i64 = 1024;

/// Which SRS form a local part has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Srs0,
    Srs1,
}

/// `SRS0`/`SRS1` (any case) followed by a separator `=`, `+` or `-`.
pub fn srs_kind(local: &str) -> Option<Kind> {
    let b = local.as_bytes();
    if b.len() < 5 || !b[..3].eq_ignore_ascii_case(b"SRS") || !matches!(b[4], b'=' | b'+' | b'-') {
        return None;
    }
    match b[3] {
        b'0' => Some(Kind::Srs0),
        b'1' => Some(Kind::Srs1),
        _ => None,
    }
}

/// Lowercased, trailing dot removed.
pub fn normalise_domain(domain: &str) -> String {
    domain.trim_end_matches('.').to_ascii_lowercase()
}

type HmacSha256 = Hmac<Sha256>;

/// The first [`HASH_LEN`] base32 characters of the HMAC of the lowercased
/// `fields`, NUL-separated.
fn hash(key: &[u8; 32], fields: &[&str]) -> String {
    let mut mac =
        HmacSha256::new_from_slice(key).expect("HMAC-SHA256 accepts keys of every length");
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            mac.update(&[0]);
        }
        mac.update(f.to_ascii_lowercase().as_bytes());
    }
    let digest = mac.finalize().into_bytes();
    base32_prefix(&digest, HASH_LEN)
}

/// The first `n` base32 characters of `bytes` (only whole 5-bit groups:
/// at most ⌊8·len/5⌋ characters).
fn base32_prefix(bytes: &[u8], n: usize) -> String {
    let mut out = String::with_capacity(n);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            if out.len() == n {
                return out;
            }
            bits -= 5;
            out.push(char::from(BASE32[((acc >> bits) & 31) as usize]));
        }
        acc &= (1 << bits) - 1;
    }
    out
}

fn base32_value(c: u8) -> Option<i64> {
    match c.to_ascii_uppercase() {
        c @ b'A'..=b'Z' => Some(i64::from(c - b'A')),
        c @ b'2'..=b'7' => Some(i64::from(c - b'2') + 26),
        _ => None,
    }
}

fn day(now_unix: i64) -> i64 {
    now_unix.div_euclid(SECONDS_PER_DAY)
}

/// Two base32 characters: the day modulo 1024.
fn stamp(now_unix: i64) -> String {
    let d = day(now_unix).rem_euclid(STAMP_MODULUS);
    let hi = BASE32[(d >> 5) as usize];
    let lo = BASE32[(d & 31) as usize];
    [char::from(hi), char::from(lo)].into_iter().collect()
}

fn parse_stamp(tt: &str) -> Option<i64> {
    match tt.as_bytes() {
        [hi, lo] => Some(base32_value(*hi)? * 32 + base32_value(*lo)?),
        _ => None,
    }
}

/// Whether the stamp is at most [`MAX_AGE_DAYS`] old (the stamp wraps every
/// 1024 days; a stamp "in the future" counts as very old).
fn stamp_fresh(stamp: i64, now_unix: i64) -> bool {
    (day(now_unix) - stamp).rem_euclid(STAMP_MODULUS) <= MAX_AGE_DAYS
}

/// Case-insensitive comparison without an early exit.
fn hash_matches(given: &str, expected: &str) -> bool {
    let (g, e) = (given.as_bytes(), expected.as_bytes());
    if g.len() != e.len() {
        return false;
    }
    g.iter().zip(e).fold(0u8, |acc, (a, b)| {
        acc | (a.to_ascii_uppercase() ^ b.to_ascii_uppercase())
    }) == 0
}

/// Whether a local part can be embedded in an SRS local part as it is
/// (not quoted, no space, control, `@` or backslash).
fn embeddable(local: &str) -> bool {
    !local.is_empty()
        && !local
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\\' | '@'))
}

/// An SRS1 local part taken apart: `SRS1<sep>HASH=HOST=REST`, where REST is
/// what followed `SRS0` at the first forwarder (it starts with a separator).
struct Srs1Parts<'a> {
    hash: &'a str,
    host: &'a str,
    rest: &'a str,
}

fn split_srs1(local: &str) -> Option<Srs1Parts<'_>> {
    let body = local.get(5..)?;
    let (hash, tail) = body.split_once('=')?;
    let (host, rest) = tail.split_once('=')?;
    let rest_ok = rest.len() > 1 && matches!(rest.as_bytes()[0], b'=' | b'+' | b'-');
    (!hash.is_empty() && !host.is_empty() && rest_ok).then_some(Srs1Parts { hash, host, rest })
}

/// See [`crate::Srs::forward`].
pub fn forward(key: &[u8; 32], our_domain: &str, sender: &str, now_unix: i64) -> String {
    let Some((local, domain)) = sender.rsplit_once('@') else {
        if !sender.is_empty() {
            tracing::debug!(sender, "SRS: sender without a domain left as it is");
        }
        return sender.to_owned();
    };
    // `example.com.` (root dot) is `example.com`.
    let domain = domain.trim_end_matches('.');
    let domain_n = normalise_domain(domain);
    if domain_n.is_empty() || domain_n == our_domain {
        return sender.to_owned();
    }
    if !embeddable(local) || domain_n.contains('=') || !embeddable(domain) {
        tracing::debug!(sender, "SRS: sender cannot be rewritten, left as it is");
        return sender.to_owned();
    }
    match srs_kind(local) {
        // Another forwarder's SRS0: point back at that forwarder.
        Some(Kind::Srs0) if local.len() > 5 => {
            let rest = &local[4..];
            let h = hash(key, &["SRS1", domain, rest]);
            return format!("SRS1={h}={domain}={rest}@{our_domain}");
        }
        // Another forwarder's SRS1: keep its first forwarder.
        Some(Kind::Srs1) => {
            if let Some(p) = split_srs1(local) {
                let h = hash(key, &["SRS1", p.host, p.rest]);
                return format!("SRS1={h}={}={}@{our_domain}", p.host, p.rest);
            }
        }
        _ => {}
    }
    let tt = stamp(now_unix);
    let h = hash(key, &["SRS0", &tt, domain, local]);
    format!("SRS0={h}={tt}={domain}={local}@{our_domain}")
}

/// See [`crate::Srs::reverse`].
pub fn reverse(key: &[u8; 32], address: &str, now_unix: i64) -> Result<String, SrsError> {
    if address.len() > MAX_ADDRESS_LEN {
        return Err(SrsError::Malformed("address too long".into()));
    }
    let local = address.rsplit_once('@').map_or(address, |(l, _)| l);
    match srs_kind(local) {
        None => Err(SrsError::NotSrs),
        Some(Kind::Srs0) => reverse_srs0(key, local, now_unix),
        Some(Kind::Srs1) => reverse_srs1(key, local),
    }
}

fn reverse_srs0(key: &[u8; 32], local: &str, now_unix: i64) -> Result<String, SrsError> {
    let body = &local[5..];
    let mut parts = body.splitn(4, '=');
    let (Some(h), Some(tt), Some(domain), Some(orig_local)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SrsError::Malformed(
            "SRS0 needs hash, stamp, domain and local part".into(),
        ));
    };
    if h.is_empty() || domain.is_empty() || orig_local.is_empty() {
        return Err(SrsError::Malformed("SRS0 with an empty field".into()));
    }
    let stamp = parse_stamp(tt)
        .ok_or_else(|| SrsError::Malformed("SRS0 stamp is not two base32 characters".into()))?;
    if !hash_matches(h, &hash(key, &["SRS0", tt, domain, orig_local])) {
        return Err(SrsError::BadHash);
    }
    if !stamp_fresh(stamp, now_unix) {
        return Err(SrsError::Expired);
    }
    Ok(format!("{orig_local}@{domain}"))
}

fn reverse_srs1(key: &[u8; 32], local: &str) -> Result<String, SrsError> {
    let p = split_srs1(local)
        .ok_or_else(|| SrsError::Malformed("SRS1 needs hash, host and an SRS0 part".into()))?;
    if !hash_matches(p.hash, &hash(key, &["SRS1", p.host, p.rest])) {
        return Err(SrsError::BadHash);
    }
    Ok(format!("SRS0{}@{}", p.rest, p.host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_known_values() {
        // RFC 4648 test vector: "foobar" → MZXW6YTBOI (the last character
        // is from padding bits, which a prefix never uses).
        assert_eq!(base32_prefix(b"foobar", 9), "MZXW6YTBO");
        assert_eq!(base32_prefix(b"foobar", 4), "MZXW");
        assert_eq!(base32_prefix(b"f", 1), "M");
    }

    #[test]
    fn stamps_round_trip_and_wrap() {
        for d in [0i64, 1, 31, 32, 1023, 1024, 20_000] {
            let t = d * SECONDS_PER_DAY + 5;
            assert_eq!(parse_stamp(&stamp(t)), Some(d % 1024), "day {d}");
            assert_eq!(parse_stamp(&stamp(t).to_lowercase()), Some(d % 1024));
        }
        assert_eq!(parse_stamp("A"), None);
        assert_eq!(parse_stamp("A1"), None);
        assert_eq!(parse_stamp("AAA"), None);
    }

    #[test]
    fn freshness_window() {
        let now = 20_000 * SECONDS_PER_DAY;
        let s = 20_000 % 1024;
        assert!(stamp_fresh(s, now));
        assert!(stamp_fresh((s - 21).rem_euclid(1024), now));
        assert!(!stamp_fresh((s - 22).rem_euclid(1024), now));
        // Tomorrow's stamp is not accepted today.
        assert!(!stamp_fresh((s + 1).rem_euclid(1024), now));
    }

    #[test]
    fn kinds() {
        assert_eq!(srs_kind("SRS0=x"), Some(Kind::Srs0));
        assert_eq!(srs_kind("srs1+x"), Some(Kind::Srs1));
        assert_eq!(srs_kind("SRS0-x"), Some(Kind::Srs0));
        assert_eq!(srs_kind("SRS2=x"), None);
        assert_eq!(srs_kind("SRS0"), None);
        assert_eq!(srs_kind("SRS0x"), None);
        assert_eq!(srs_kind("sr"), None);
        assert_eq!(srs_kind("ßRS0=x"), None);
    }

    #[test]
    fn fields_are_separated_in_the_hash() {
        let k = [7u8; 32];
        assert_ne!(hash(&k, &["ab", "c"]), hash(&k, &["a", "bc"]));
        assert_eq!(hash(&k, &["AB", "c"]), hash(&k, &["ab", "C"]));
        assert_eq!(hash(&k, &["x"]).len(), HASH_LEN);
    }
}
