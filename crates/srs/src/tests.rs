//! Tests of the public codec: round trips, refusals and the key file.

use super::*;
use proptest::prelude::*;

const DAY: i64 = 86_400;
const NOW: i64 = 1_764_000_000; // 2025-11-24

fn srs() -> Srs {
    Srs::with_key([42u8; 32], "Forward.Example.")
}

fn local_of(a: &str) -> &str {
    a.rsplit_once('@').map_or(a, |(l, _)| l)
}

#[test]
fn srs0_round_trip() {
    let s = srs();
    let fwd = s.forward("alice@example.com", NOW);
    assert!(fwd.starts_with("SRS0="), "{fwd}");
    assert!(fwd.ends_with("=example.com=alice@forward.example"), "{fwd}");
    assert!(Srs::looks_like_srs(local_of(&fwd)));
    assert_eq!(s.reverse(&fwd, NOW).unwrap(), "alice@example.com");
    // Still valid 21 days later, not 22.
    assert_eq!(
        s.reverse(&fwd, NOW + 21 * DAY).unwrap(),
        "alice@example.com"
    );
    assert!(matches!(
        s.reverse(&fwd, NOW + 22 * DAY),
        Err(SrsError::Expired)
    ));
}

#[test]
fn null_sender_and_our_own_addresses_unchanged() {
    let s = srs();
    assert_eq!(s.forward("", NOW), "");
    assert_eq!(s.forward("bob@forward.example", NOW), "bob@forward.example");
    assert_eq!(
        s.forward("bob@FORWARD.example.", NOW),
        "bob@FORWARD.example."
    );
    let ours = s.forward("alice@example.com", NOW);
    assert_eq!(s.forward(&ours, NOW + DAY), ours);
    // Nothing to rewrite without a domain, or with a quoted local part.
    assert_eq!(s.forward("postmaster", NOW), "postmaster");
    assert_eq!(s.forward("\"a b\"@example.com", NOW), "\"a b\"@example.com");
}

#[test]
fn local_parts_with_separators_survive() {
    let s = srs();
    assert_eq!(
        s.reverse(&s.forward("a@example.com.", NOW), NOW).unwrap(),
        "a@example.com"
    );
    for sender in [
        "a=b@example.com",
        "x+tag@example.com",
        "first.last@sub.example.com",
    ] {
        let fwd = s.forward(sender, NOW);
        assert_eq!(s.reverse(&fwd, NOW).unwrap(), sender);
    }
}

#[test]
fn tampered_hash_refused() {
    let s = srs();
    let fwd = s.forward("alice@example.com", NOW);
    // Change the hash.
    let hash = &fwd[5..9];
    let other = if hash.starts_with('A') { "B" } else { "A" };
    let forged = format!("SRS0={other}{}", &fwd[6..]);
    assert!(matches!(s.reverse(&forged, NOW), Err(SrsError::BadHash)));
    // Keep the hash but redirect to another victim.
    let redirected = fwd.replace("=alice@", "=mallory@");
    assert!(matches!(
        s.reverse(&redirected, NOW),
        Err(SrsError::BadHash)
    ));
    let redomained = fwd.replace("=example.com=", "=evil.example=");
    assert!(matches!(
        s.reverse(&redomained, NOW),
        Err(SrsError::BadHash)
    ));
    // Another key does not accept ours.
    let stranger = Srs::with_key([1u8; 32], "forward.example");
    assert!(matches!(
        stranger.reverse(&fwd, NOW),
        Err(SrsError::BadHash)
    ));
}

#[test]
fn forged_stamp_refused_by_hash() {
    let s = srs();
    let fwd = s.forward("alice@example.com", NOW);
    // Rewriting the stamp to look fresh breaks the hash.
    let old = s.forward("alice@example.com", NOW - 100 * DAY);
    let tt_new = &fwd[10..12];
    let refreshed = format!("{}{}{}", &old[..10], tt_new, &old[12..]);
    assert_ne!(refreshed, fwd);
    assert!(matches!(s.reverse(&old, NOW), Err(SrsError::Expired)));
    assert!(matches!(s.reverse(&refreshed, NOW), Err(SrsError::BadHash)));
}

#[test]
fn case_insensitive() {
    let s = srs();
    let fwd = s.forward("Alice@Example.com", NOW);
    assert_eq!(s.reverse(&fwd, NOW).unwrap(), "Alice@Example.com");
    assert_eq!(
        s.reverse(&fwd.to_lowercase(), NOW).unwrap(),
        "alice@example.com"
    );
    assert_eq!(
        s.reverse(&fwd.to_uppercase(), NOW).unwrap(),
        "ALICE@EXAMPLE.COM"
    );
    assert!(Srs::looks_like_srs("srs0=abcd=AA=x=y"));
}

#[test]
fn srs1_chaining() {
    let first = Srs::with_key([1u8; 32], "first.example");
    let second = Srs::with_key([2u8; 32], "second.example");
    let third = Srs::with_key([3u8; 32], "third.example");

    let a = first.forward("alice@example.com", NOW);
    let b = second.forward(&a, NOW);
    let a_local = local_of(&a);
    assert_eq!(
        b,
        format!(
            "SRS1={}=first.example={}@second.example",
            &b[5..9],
            &a_local[4..]
        )
    );
    assert!(b.contains("=first.example==")); // Shevek's "==".
    // The second forwarder sends the bounce straight to the first.
    assert_eq!(second.reverse(&b, NOW).unwrap(), a);
    assert_eq!(first.reverse(&a, NOW).unwrap(), "alice@example.com");

    // A third forwarder keeps pointing at the first one.
    let c = third.forward(&b, NOW);
    assert!(
        c.starts_with("SRS1=") && c.ends_with("@third.example"),
        "{c}"
    );
    assert!(c.contains("=first.example=="));
    assert_eq!(third.reverse(&c, NOW).unwrap(), a);
    // Not with a tampered hash, nor with the wrong key.
    assert!(matches!(second.reverse(&c, NOW), Err(SrsError::BadHash)));
    let tampered = c.replacen("=first.example=", "=evil.example=", 1);
    assert!(matches!(
        third.reverse(&tampered, NOW),
        Err(SrsError::BadHash)
    ));
    // SRS1 reversal is case-insensitive too.
    assert_eq!(
        third
            .reverse(&c.to_lowercase(), NOW)
            .unwrap()
            .to_lowercase(),
        a.to_lowercase()
    );
}

#[test]
fn not_srs_and_malformed() {
    let s = srs();
    assert!(matches!(
        s.reverse("alice@forward.example", NOW),
        Err(SrsError::NotSrs)
    ));
    assert!(matches!(s.reverse("", NOW), Err(SrsError::NotSrs)));
    for bad in [
        "SRS0=@forward.example",
        "SRS0=ABCD@x",
        "SRS0=ABCD=AA@x",
        "SRS0=ABCD=AA=example.com@x",
        "SRS0=ABCD=A1=example.com=alice@x",
        "SRS0=ABCD=AAA=example.com=alice@x",
        "SRS0==AA=example.com=alice@x",
        "SRS1=ABCD@x",
        "SRS1=ABCD=host@x",
        "SRS1=ABCD=host=@x",
        "SRS1=ABCD=host=x@x",
        "SRS1==host==A=B=c=d@x",
    ] {
        assert!(
            matches!(s.reverse(bad, NOW), Err(SrsError::Malformed(_))),
            "{bad}"
        );
    }
    let long = format!("SRS0={}@x", "a".repeat(2000));
    assert!(matches!(s.reverse(&long, NOW), Err(SrsError::Malformed(_))));
}

#[test]
fn key_file_created_once_with_mode_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("srs.key");
    let a = Srs::load_or_create(&path, "forward.example").unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.len(), 32);
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let b = Srs::load_or_create(&path, "forward.example").unwrap();
    let fwd = a.forward("alice@example.com", NOW);
    assert_eq!(b.reverse(&fwd, NOW).unwrap(), "alice@example.com");
    // No temporary file left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    // Two fresh keys differ.
    let c = Srs::load_or_create(&dir.path().join("other.key"), "forward.example").unwrap();
    assert!(matches!(c.reverse(&fwd, NOW), Err(SrsError::BadHash)));
}

#[test]
fn short_key_file_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("srs.key");
    std::fs::write(&path, b"short").unwrap();
    assert!(matches!(
        Srs::load_or_create(&path, "forward.example"),
        Err(SrsError::Malformed(_))
    ));
    std::fs::write(&path, [0u8; 33]).unwrap();
    assert!(matches!(
        Srs::load_or_create(&path, "forward.example"),
        Err(SrsError::Malformed(_))
    ));
    let missing_dir = dir.path().join("nope/srs.key");
    assert!(matches!(
        Srs::load_or_create(&missing_dir, "forward.example"),
        Err(SrsError::Io(_))
    ));
}

#[test]
fn debug_hides_the_key() {
    let d = format!("{:?}", srs());
    assert!(d.contains("forward.example") && !d.contains("42"), "{d}");
}

proptest! {
    #[test]
    fn arbitrary_input_never_panics(addr in "\\PC{0,80}", now in any::<i64>()) {
        let s = srs();
        let _ = s.reverse(&addr, now);
        let _ = s.forward(&addr, now);
        let _ = Srs::looks_like_srs(&addr);
    }

    #[test]
    fn srs_shaped_input_never_panics(
        kind in "(?i)srs[01][=+-]",
        body in "[=A-Za-z0-9.+-]{0,40}",
        now in any::<i64>(),
    ) {
        let s = srs();
        let addr = format!("{kind}{body}@forward.example");
        let _ = s.reverse(&addr, now);
        let _ = s.forward(&format!("{kind}{body}@other.example"), now);
    }

    #[test]
    fn round_trip_any_plain_sender(
        local in "[A-Za-z0-9._+=-]{1,30}",
        domain in "[a-z0-9-]{1,20}\\.[a-z]{2,6}",
        now in 0i64..4_000_000_000,
    ) {
        prop_assume!(!Srs::looks_like_srs(&local));
        let s = srs();
        let sender = format!("{local}@{domain}");
        let fwd = s.forward(&sender, now);
        prop_assert_eq!(s.reverse(&fwd, now).unwrap(), sender.clone());
        prop_assert_eq!(s.reverse(&fwd.to_lowercase(), now + 5 * DAY).unwrap(), sender.to_lowercase());
    }
}
