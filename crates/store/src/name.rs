//! Maildir file names, pure functions only: making our unique names,
//! reading them back (delivery time, queue id), and the stable UID of any
//! message file (ours or another program's).
//!
//! Our names (one path component; no `/` or `:`):
//!
//! ```text
//! <secs>.M<usec>P<pid>Q<queue id>_<n>.<host>,S=<size>
//! ```
//!
//! `n` is a per-process counter (kept to four digits: it only has to tell
//! apart deliveries within one microsecond, and a clash is caught by the
//! no-replace link anyway). `<host>` is the host's first label, shortened
//! so that the UID stays within 70 characters.
//!
//! The UID of a file is its base name without the `:2,<flags>` info and
//! without Maildir++ `,X=value` fields (`,S=`, `,W=`): it does not change
//! when a reader moves the file from `new/` to `cur/` or changes flags.
//! POP3 uses it for UIDL, so it must be 1-70 characters in 0x21-0x7E
//! (RFC 1939); a foreign name that is not gets `X` + a 128-bit FNV-1a hash
//! of its base name instead (stable, since the base name never changes).

/// Longest UID (RFC 1939's limit for UIDL).
pub const MAX_UID_LEN: usize = 70;

/// The pieces of one of our unique names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameParts<'a> {
    pub secs: u64,
    pub micros: u32,
    pub pid: u32,
    /// Sanitised by `unique_name`: ASCII alphanumerics only, at most 32.
    pub queue_id: &'a str,
    pub counter: u64,
    /// Sanitised and shortened by `unique_name`.
    pub host: &'a str,
    pub size: u64,
}

/// Builds a unique name; its UID (the part before `,S=`) is at most
/// `MAX_UID_LEN` characters.
pub fn unique_name(p: &NameParts<'_>) -> String {
    let qid: String = p
        .queue_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(32)
        .collect::<String>()
        .to_ascii_lowercase();
    let q = if qid.is_empty() {
        String::new()
    } else {
        format!("Q{qid}_")
    };
    let micros = p.micros.min(999_999);
    let head = format!("{}.M{micros}P{}{q}{}", p.secs, p.pid, p.counter % 10_000);
    let budget = MAX_UID_LEN.saturating_sub(head.len() + 1).max(1);
    let mut host: String = p
        .host
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(budget)
        .collect();
    if host.is_empty() {
        host.push('h');
    }
    format!("{head}.{host},S={}", p.size)
}

/// The host name's first label, made safe for a Maildir name.
pub fn host_tag(hostname: &str) -> String {
    let first = hostname.split('.').next().unwrap_or("");
    let tag: String = first
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(63)
        .collect();
    if tag.is_empty() {
        "localhost".to_string()
    } else {
        tag
    }
}

/// The base name: the file name without the `:<info>` part.
pub fn base_name(file_name: &[u8]) -> &[u8] {
    match file_name.iter().position(|&b| b == b':') {
        Some(i) => &file_name[..i],
        None => file_name,
    }
}

/// The base name without trailing Maildir++ `,X=value` fields.
fn unique_part(base: &[u8]) -> &[u8] {
    let mut parts = base.split(|&b| b == b',');
    let first = parts.next().unwrap_or(base);
    let all_fields = parts.all(|f| f.len() >= 2 && f[0].is_ascii_uppercase() && f[1] == b'=');
    if all_fields { first } else { base }
}

/// The stable UID of a message file called `file_name` (see module docs).
pub fn uid_for(file_name: &[u8]) -> String {
    let base = base_name(file_name);
    let unique = unique_part(base);
    let printable = unique.iter().all(|&b| (0x21..=0x7e).contains(&b));
    if !unique.is_empty() && unique.len() <= MAX_UID_LEN && printable {
        // Printable ASCII, hence valid UTF-8.
        String::from_utf8_lossy(unique).into_owned()
    } else {
        hashed_uid(base)
    }
}

/// `X` + 32 hex digits of FNV-1a 128 over `bytes`: a stable UID for names
/// that cannot be one themselves.
pub fn hashed_uid(bytes: &[u8]) -> String {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    let mut h = OFFSET;
    for &b in bytes {
        h ^= u128::from(b);
        h = h.wrapping_mul(PRIME);
    }
    format!("X{h:032x}")
}

/// Delivery time (seconds, microseconds) from a name starting
/// `<secs>.M<usec>` (ours, Dovecot's, and most others'); microseconds are
/// 0 when the name does not carry them.
pub fn delivery_time(file_name: &[u8]) -> Option<(u64, u32)> {
    let name = std::str::from_utf8(base_name(file_name)).ok()?;
    let (secs, rest) = name.split_once('.')?;
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: u64 = secs.parse().ok()?;
    let micros = rest
        .strip_prefix('M')
        .map(|r| {
            let digits: String = r.chars().take_while(char::is_ascii_digit).take(6).collect();
            digits.parse().unwrap_or(0)
        })
        .unwrap_or(0);
    Some((secs, micros))
}

/// The queue id carried by one of our names (`...P<pid>Q<id>_<n>.`).
pub fn queue_id_of(file_name: &[u8]) -> Option<String> {
    let name = std::str::from_utf8(base_name(file_name)).ok()?;
    let unique = name.split('.').nth(1)?;
    let rest = unique.strip_prefix('M')?;
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
    let rest = rest.strip_prefix('P')?;
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
    let rest = rest.strip_prefix('Q')?;
    let (qid, counter) = rest.split_once('_')?;
    let ok = (1..=32).contains(&qid.len())
        && qid.bytes().all(|b| b.is_ascii_alphanumeric())
        && !counter.is_empty()
        && counter.bytes().all(|b| b.is_ascii_digit());
    ok.then(|| qid.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const QID: &str = "0193f1c2a4b57c3d8e9f0a1b2c3d4e5f";

    fn parts<'a>(host: &'a str, counter: u64, pid: u32, size: u64) -> NameParts<'a> {
        NameParts {
            secs: 1_732_500_000,
            micros: 123_456,
            pid,
            queue_id: QID,
            counter,
            host,
            size,
        }
    }

    #[test]
    fn our_name_has_the_documented_shape() {
        let n = unique_name(&parts("mx", 7, 4242, 4096));
        assert_eq!(n, format!("1732500000.M123456P4242Q{QID}_7.mx,S=4096"));
        assert_eq!(
            uid_for(n.as_bytes()),
            format!("1732500000.M123456P4242Q{QID}_7.mx")
        );
        assert_eq!(queue_id_of(n.as_bytes()).as_deref(), Some(QID));
        assert_eq!(delivery_time(n.as_bytes()), Some((1_732_500_000, 123_456)));
    }

    #[test]
    fn uid_is_stable_across_moves_and_flags() {
        let n = unique_name(&parts("mx", 1, 1, 10));
        let uid = uid_for(n.as_bytes());
        for moved in [format!("{n}:2,"), format!("{n}:2,S"), format!("{n}:2,FRS")] {
            assert_eq!(uid_for(moved.as_bytes()), uid);
            assert_eq!(queue_id_of(moved.as_bytes()).as_deref(), Some(QID));
        }
    }

    #[test]
    fn worst_case_names_still_make_valid_uids() {
        let long_host = "a-very-long-host-name-that-goes-on-and-on.example.org";
        let n = unique_name(&parts(long_host, u64::MAX, u32::MAX, u64::MAX));
        let uid = uid_for(n.as_bytes());
        assert!(uid.len() <= MAX_UID_LEN, "{uid} is {} long", uid.len());
        assert!(uid.starts_with("1732500000."), "not hashed: {uid}");
        assert!(!n.contains('/') && !n.contains(':'));
        // Hostile host and queue id characters are dropped.
        let n = unique_name(&NameParts {
            host: "ev/il:h\u{f6}st",
            queue_id: "../x:y",
            ..parts("", 0, 1, 1)
        });
        assert!(!n.contains('/') && !n.contains(':'), "{n}");
        assert!(n.contains("Qxy_0.evilhst,"), "{n}");
    }

    #[test]
    fn foreign_names() {
        // Dovecot style.
        let d = b"1700000000.M581P1234.host,S=1234,W=1260:2,RS";
        assert_eq!(uid_for(d), "1700000000.M581P1234.host");
        assert_eq!(delivery_time(d), Some((1_700_000_000, 581)));
        assert_eq!(queue_id_of(d), None);
        // Classic style, no microseconds.
        assert_eq!(
            delivery_time(b"1700000000.12345_1.host"),
            Some((1_700_000_000, 0))
        );
        // A comma that is not a field stays part of the UID.
        assert_eq!(uid_for(b"123.a,b.host"), "123.a,b.host");
        assert_eq!(delivery_time(b"mutt-abc"), None);
    }

    #[test]
    fn unusable_names_get_a_stable_hash() {
        let long = "x".repeat(71);
        let h = uid_for(long.as_bytes());
        assert!(h.starts_with('X') && h.len() == 33, "{h}");
        assert_eq!(
            h,
            uid_for(format!("{long}:2,S").as_bytes()),
            "stable across flags"
        );
        assert_ne!(h, uid_for("y".repeat(71).as_bytes()));
        let spaced = uid_for(b"a name with spaces");
        assert!(spaced.starts_with('X'));
        assert!(uid_for(b"caf\xc3\xa9").starts_with('X'));
        assert!(uid_for(b"\xff\xfe").starts_with('X'));
        assert_eq!(
            hashed_uid(b""),
            format!("X{:032x}", 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d_u128)
        );
    }

    #[test]
    fn host_tags() {
        assert_eq!(host_tag("mx.example.org"), "mx");
        assert_eq!(host_tag(""), "localhost");
        assert_eq!(host_tag("we/ird:"), "weird");
    }

    proptest! {
        #[test]
        fn every_uid_is_valid_for_uidl(name in proptest::collection::vec(any::<u8>(), 0..200)) {
            let uid = uid_for(&name);
            prop_assert!(!uid.is_empty() && uid.len() <= MAX_UID_LEN);
            prop_assert!(uid.bytes().all(|b| (0x21..=0x7e).contains(&b)));
        }

        #[test]
        fn our_names_round_trip(secs in 0u64..10_000_000_000, micros in 0u32..1_000_000,
                                pid in any::<u32>(), counter in any::<u64>(),
                                host in "[a-z0-9.-]{0,80}", size in any::<u64>()) {
            let qid = QID;
            let n = unique_name(&NameParts { secs, micros, pid, queue_id: qid, counter, host: &host, size });
            prop_assert!(!n.contains('/') && !n.contains(':'));
            let uid = uid_for(n.as_bytes());
            prop_assert!(!uid.starts_with('X'), "ours are never hashed: {}", n);
            let parsed = queue_id_of(n.as_bytes());
            prop_assert_eq!(parsed.as_deref(), Some(qid));
            prop_assert_eq!(delivery_time(n.as_bytes()), Some((secs, micros)));
        }
    }
}
