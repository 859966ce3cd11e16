//! Sender rewriting (SRS) as the delivery agent uses it: the envelope
//! sender of a forwarded copy to a remote destination becomes an address
//! at our domain (so SPF passes at the destination), and a bounce sent
//! back to such an address is relayed to the original sender. The codec
//! itself lives in `postamt-srs`; the agent reaches it through the
//! [`SenderRewriter`] trait so that the tests can use a transparent fake.

use postamt_directory::LocalDomains;

/// The SRS codec as the agent needs it.
pub trait SenderRewriter: Send + Sync {
    /// The rewritten sender for a copy of mail from `sender` (never empty).
    fn forward(&self, sender: &str, now: i64) -> String;
    /// The original sender behind an SRS `address`, or why there is none
    /// (not SRS, forged hash, expired).
    fn reverse(&self, address: &str, now: i64) -> Result<String, String>;
}

impl SenderRewriter for postamt_srs::Srs {
    fn forward(&self, sender: &str, now: i64) -> String {
        postamt_srs::Srs::forward(self, sender, now)
    }
    fn reverse(&self, address: &str, now: i64) -> Result<String, String> {
        postamt_srs::Srs::reverse(self, address, now).map_err(|e| e.to_string())
    }
}

/// Whether a local part has the SRS shape (`SRS0=` or `SRS1=`, any case).
pub fn looks_like_srs(local_part: &str) -> bool {
    postamt_srs::Srs::looks_like_srs(local_part)
}

/// What an SRS-shaped recipient at one of our domains leads to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SrsReturn {
    /// Not an SRS address of ours: resolve it normally.
    NotSrs,
    /// Relay to this original sender.
    Relay(String),
    /// SRS-shaped but invalid (forged or expired): refuse.
    Invalid(String),
}

/// Looks at recipient `address`: an SRS address at a local domain is
/// reversed.
pub fn srs_return(
    srs: Option<&dyn SenderRewriter>,
    address: &str,
    domains: &LocalDomains,
    now: i64,
) -> SrsReturn {
    let Some(srs) = srs else {
        return SrsReturn::NotSrs;
    };
    let Some((local, domain)) = address.rsplit_once('@') else {
        return SrsReturn::NotSrs;
    };
    if !looks_like_srs(local) || !domains.contains(domain) {
        return SrsReturn::NotSrs;
    }
    match srs.reverse(address, now) {
        Ok(orig) => SrsReturn::Relay(orig),
        Err(why) => SrsReturn::Invalid(why),
    }
}

#[cfg(test)]
pub mod fake {
    //! A transparent SRS for tests: `SRS0=TEST=local=domain@example.org`.
    use super::SenderRewriter;

    pub struct FakeSrs;

    impl SenderRewriter for FakeSrs {
        fn forward(&self, sender: &str, _now: i64) -> String {
            match sender.rsplit_once('@') {
                Some((l, d)) => format!("SRS0=TEST={d}={l}@example.org"),
                None => sender.to_string(),
            }
        }
        fn reverse(&self, address: &str, _now: i64) -> Result<String, String> {
            let local = address.rsplit_once('@').map_or(address, |(l, _)| l);
            let rest = local
                .strip_prefix("SRS0=TEST=")
                .ok_or_else(|| "bad hash".to_string())?;
            let (d, l) = rest.split_once('=').ok_or_else(|| "bad form".to_string())?;
            Ok(format!("{l}@{d}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domains() -> LocalDomains {
        LocalDomains::new("example.org", ["mx.example.org"], "postmaster@example.org")
    }

    #[test]
    fn srs_shape() {
        assert!(looks_like_srs("SRS0=abc"));
        assert!(looks_like_srs("srs1=abc"));
        assert!(!looks_like_srs("srs"));
        assert!(!looks_like_srs("bob"));
    }

    #[test]
    fn only_local_srs_addresses_are_reversed() {
        let s = fake::FakeSrs;
        let d = domains();
        assert_eq!(
            srs_return(Some(&s), "SRS0=TEST=x.org=s@example.org", &d, 0),
            SrsReturn::Relay("s@x.org".into())
        );
        assert_eq!(
            srs_return(Some(&s), "SRS0=TEST=x.org=s@other.net", &d, 0),
            SrsReturn::NotSrs
        );
        assert_eq!(
            srs_return(Some(&s), "bob@example.org", &d, 0),
            SrsReturn::NotSrs
        );
        assert!(matches!(
            srs_return(Some(&s), "SRS0=forged@example.org", &d, 0),
            SrsReturn::Invalid(_)
        ));
        assert_eq!(
            srs_return(None, "SRS0=TEST=x.org=s@example.org", &d, 0),
            SrsReturn::NotSrs
        );
    }
}
