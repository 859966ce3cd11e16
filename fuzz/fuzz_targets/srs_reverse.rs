//! `postamt_srs::Srs::reverse` on arbitrary strings and times, plus the
//! forward/reverse round trip on arbitrary senders.
//!
//! Invariants: no panic (any time, any text); a reversed SRS0 address is
//! `local@domain` with both parts non-empty; what `forward` made, `reverse`
//! takes back at the same time (SRS0: the sender; SRS1: the first
//! forwarder's SRS0 address) unless it is too long to be accepted.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postamt_srs::Srs;

const MAX_ADDRESS_LEN: usize = 1024;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let (time, text) = data.split_at(8);
    let now = i64::from_le_bytes(time.try_into().expect("8 bytes"));
    let text = String::from_utf8_lossy(text);
    let srs = Srs::with_key([7u8; 32], "Fwd.Example.NET.");
    assert_eq!(srs.our_domain(), "fwd.example.net");

    if let Ok(orig) = srs.reverse(&text, now) {
        assert!(Srs::looks_like_srs(
            text.rsplit_once('@').map_or(&text, |(l, _)| l)
        ));
        let (l, d) = orig
            .rsplit_once('@')
            .expect("a reversed address has a domain");
        assert!(!l.is_empty() && !d.is_empty());
    }

    let fwd = srs.forward(&text, now);
    if fwd == *text || fwd.len() > MAX_ADDRESS_LEN {
        return;
    }
    assert!(fwd.ends_with("@fwd.example.net"), "forwarded to {fwd:?}");
    let back = srs.reverse(&fwd, now);
    let (local, domain) = text
        .rsplit_once('@')
        .expect("forward rewrote an address without @");
    let domain = domain.trim_end_matches('.');
    if fwd.starts_with("SRS0=") {
        let expected = format!("{local}@{domain}");
        assert!(
            back.as_deref().is_ok_and(|b| b == expected),
            "round trip of {text:?} via {fwd:?}: {back:?}"
        );
    } else {
        assert!(fwd.starts_with("SRS1="), "unexpected form {fwd:?}");
        assert!(back.is_ok(), "SRS1 {fwd:?} does not reverse: {back:?}");
        // One day later the SRS1 part still checks (it has no stamp).
        assert!(srs.reverse(&fwd, now.saturating_add(86_400)).is_ok());
    }
});
