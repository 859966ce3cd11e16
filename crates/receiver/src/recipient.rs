//! The recipient check against the directory, as one blocking function the
//! backend runs on the blocking pool: bounces to our SRS addresses, mailing
//! lists (who may post, and their size limit) and every other local address
//! through [`Directory::classify`].
//!
//! The rules, in order, for an address at one of our domains:
//! 1. a local part that looks like SRS (`SRS0=…`, `SRS1=…`), when SRS is
//!    configured: accepted if [`Srs::reverse`] takes it (a bounce coming back
//!    for a message we forwarded; delivery sends it on to the original
//!    sender), otherwise refused as unknown ([`RcptVerdict::BadSrs`]);
//! 2. a list: accepted when anyone may post, the sender is a member, or
//!    the list is moderated (delivery holds the post for the owner);
//!    refused for a non-member on a members-only list
//!    ([`RcptVerdict::NotMember`]); the list's size limit goes with the
//!    verdict;
//! 3. a list's `-request`, `-owner` or `-bounces` address, or anything that
//!    expands to destinations: accepted;
//! 4. unknown: refused; an alias or forward loop: refused; the directory
//!    failing: temporary failure.

use crate::backend::RcptVerdict;
use postamt_directory::{
    Directory, DirectoryError, LocalDomains, PostPermission, ResolveError, Target,
};
use postamt_srs::Srs;
use tracing::{debug, info};

/// What the directory says about `address` (at one of our domains, or the
/// bare `postmaster`) for mail from `mail_from` (empty for the null
/// sender), at `now_unix` (for the age of SRS addresses).
pub fn recipient_verdict(
    directory: &Directory,
    local: &LocalDomains,
    srs: Option<&Srs>,
    address: &str,
    mail_from: &str,
    now_unix: i64,
) -> RcptVerdict {
    let local_part = address.rsplit_once('@').map_or(address, |(l, _)| l);
    if let Some(srs) = srs
        && Srs::looks_like_srs(local_part)
    {
        return match srs.reverse(address, now_unix) {
            Ok(original) => {
                info!(rcpt = %address, %original, from = %mail_from, "SRS address accepted");
                RcptVerdict::Accept
            }
            Err(e) => RcptVerdict::BadSrs(e.to_string()),
        };
    }
    match directory.classify(address, local) {
        Ok(Target::List { name }) => list_verdict(directory, &name, mail_from),
        Ok(Target::ListRequest { .. } | Target::ListOwner { .. } | Target::ListBounces { .. }) => {
            RcptVerdict::Accept
        }
        Ok(Target::Deliver(expansion)) if !expansion.is_empty() => RcptVerdict::Accept,
        Ok(Target::Deliver(_)) | Err(ResolveError::Unknown) => RcptVerdict::Unknown,
        Err(ResolveError::Loop(at)) => {
            debug!(rcpt = %address, loop_at = %at, "recipient expands into a loop");
            RcptVerdict::Loop
        }
        Err(ResolveError::TooDeep(depth)) => {
            debug!(rcpt = %address, depth, "recipient expands too deep");
            RcptVerdict::Loop
        }
        Err(ResolveError::Db(e)) => RcptVerdict::TempFail(e),
    }
}

/// Whether list `name` takes a post from `mail_from`, and its size limit.
fn list_verdict(directory: &Directory, name: &str, mail_from: &str) -> RcptVerdict {
    let info = match directory.get_list(name) {
        Ok(Some(info)) => info,
        // Deleted since `classify` looked.
        Ok(None) => return RcptVerdict::Unknown,
        Err(e) => return RcptVerdict::TempFail(e.to_string()),
    };
    match directory.list_may_post(&info.name, mail_from) {
        Ok(PostPermission::Allowed | PostPermission::Moderated) => RcptVerdict::AcceptList {
            list: info.name,
            max_message_size: info.max_message_size,
        },
        Ok(PostPermission::NotMember) => RcptVerdict::NotMember { list: info.name },
        Err(DirectoryError::NoSuchList(_)) => RcptVerdict::Unknown,
        Err(e) => RcptVerdict::TempFail(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postamt_directory::{ListOptions, Posting};

    const NOW: i64 = 1_764_000_000;

    fn domains() -> LocalDomains {
        LocalDomains::new("example.org", ["example.net"], "postmaster")
    }

    fn srs() -> Srs {
        Srs::with_key([9u8; 32], "example.org")
    }

    fn directory() -> Directory {
        let d = Directory::open_in_memory().expect("directory");
        d.add_user("alice", "pw-alice-1", false).expect("alice");
        d.add_user("bob", "pw-bob-1", false).expect("bob");
        d.add_alias("sales", &["alice".to_string()]).expect("alias");
        d.add_alias("loop1", &["loop2@example.org".to_string()])
            .expect("alias");
        d.add_alias("loop2", &["loop1@example.org".to_string()])
            .expect("alias");
        let opts = |posting, size| ListOptions {
            owner: Some("alice@example.org".into()),
            posting: Some(posting),
            max_message_size: Some(size),
            ..ListOptions::default()
        };
        d.create_list("team", &opts(Posting::Members, 5000))
            .expect("team");
        d.add_list_member("team", "alice@example.org")
            .expect("member");
        d.add_list_member("team", "carol@remote.example")
            .expect("member");
        d.create_list("open", &opts(Posting::Anyone, 0))
            .expect("open");
        d.create_list("mod", &opts(Posting::Moderated, 0))
            .expect("mod");
        d
    }

    fn verdict(d: &Directory, rcpt: &str, from: &str) -> RcptVerdict {
        recipient_verdict(d, &domains(), Some(&srs()), rcpt, from, NOW)
    }

    #[test]
    fn members_only_list() {
        let d = directory();
        let accepted = RcptVerdict::AcceptList {
            list: "team".into(),
            max_message_size: 5000,
        };
        assert_eq!(
            verdict(&d, "team@example.org", "alice@example.org"),
            accepted
        );
        assert_eq!(
            verdict(&d, "TEAM@example.net", "Carol@Remote.example"),
            accepted
        );
        let refused = RcptVerdict::NotMember {
            list: "team".into(),
        };
        assert_eq!(
            verdict(&d, "team@example.org", "mallory@evil.example"),
            refused
        );
        assert_eq!(verdict(&d, "team@example.org", "bob@example.org"), refused);
        // The null sender is nobody's member.
        assert_eq!(verdict(&d, "team@example.org", ""), refused);
    }

    #[test]
    fn open_and_moderated_lists_take_anyone() {
        let d = directory();
        assert_eq!(
            verdict(&d, "open@example.org", "stranger@remote.example"),
            RcptVerdict::AcceptList {
                list: "open".into(),
                max_message_size: 0
            }
        );
        assert_eq!(
            verdict(&d, "mod@example.org", "stranger@remote.example"),
            RcptVerdict::AcceptList {
                list: "mod".into(),
                max_message_size: 0
            }
        );
    }

    #[test]
    fn list_service_addresses_are_accepted_from_anyone() {
        let d = directory();
        for rcpt in [
            "team-request@example.org",
            "team-owner@example.org",
            "team-bounces@example.org",
        ] {
            assert_eq!(
                verdict(&d, rcpt, "stranger@remote.example"),
                RcptVerdict::Accept,
                "{rcpt}"
            );
            assert_eq!(verdict(&d, rcpt, ""), RcptVerdict::Accept, "{rcpt}");
        }
    }

    #[test]
    fn ordinary_addresses() {
        let d = directory();
        assert_eq!(
            verdict(&d, "alice@example.org", "x@remote.example"),
            RcptVerdict::Accept
        );
        assert_eq!(
            verdict(&d, "sales@example.net", "x@remote.example"),
            RcptVerdict::Accept
        );
        assert_eq!(verdict(&d, "postmaster", ""), RcptVerdict::Accept);
        assert_eq!(
            verdict(&d, "nobody@example.org", "x@remote.example"),
            RcptVerdict::Unknown
        );
        assert_eq!(
            verdict(&d, "loop1@example.org", "x@remote.example"),
            RcptVerdict::Loop
        );
    }

    #[test]
    fn forwarded_user_is_accepted() {
        let d = directory();
        d.set_forward("bob", &["bob@remote.example".to_string()], false)
            .expect("forward");
        assert_eq!(
            verdict(&d, "bob@example.org", "x@remote.example"),
            RcptVerdict::Accept
        );
    }

    #[test]
    fn srs_bounces() {
        let d = directory();
        let s = srs();
        let ours = s.forward("carol@remote.example", NOW - 3 * 86_400);
        assert!(ours.ends_with("@example.org"), "{ours}");
        // A bounce to a forwarded message: accepted, from the null sender.
        assert_eq!(verdict(&d, &ours, ""), RcptVerdict::Accept);
        // Hash damaged, expired, another key, or unparsable: refused.
        let forged = ours.replacen("=carol@", "=mallory@", 1);
        assert!(matches!(verdict(&d, &forged, ""), RcptVerdict::BadSrs(_)));
        let old = s.forward("carol@remote.example", NOW - 30 * 86_400);
        assert!(matches!(verdict(&d, &old, ""), RcptVerdict::BadSrs(e) if e.contains("expired")));
        let stranger = Srs::with_key([1u8; 32], "example.org").forward("c@r.example", NOW);
        assert!(matches!(verdict(&d, &stranger, ""), RcptVerdict::BadSrs(_)));
        assert!(matches!(
            verdict(&d, "SRS0=x@example.org", ""),
            RcptVerdict::BadSrs(_)
        ));
    }

    #[test]
    fn without_srs_an_srs_looking_address_is_an_ordinary_one() {
        let d = directory();
        let ours = srs().forward("carol@remote.example", NOW);
        assert_eq!(
            recipient_verdict(&d, &domains(), None, &ours, "", NOW),
            RcptVerdict::Unknown
        );
    }
}
