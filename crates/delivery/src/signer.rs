//! The hook where outbound messages are transformed before they leave for
//! remote hosts: DKIM signing (issue 4, item 5) plugs in here by
//! implementing `MessageSigner`. Local deliveries never pass through it.
//! The default, `NoSigning`, sends the bytes unchanged.

use std::borrow::Cow;

/// Transforms a message on its way out (e.g. adds a `DKIM-Signature`
/// header). Called once per delivery attempt of a message with remote
/// destinations, on a blocking thread (signing may be CPU work), before the
/// message is split into per-domain transactions. Must not fail the
/// delivery: when it cannot sign, it returns the message as it is (and
/// logs why).
pub trait MessageSigner: Send + Sync {
    /// `mail_from` is the envelope sender (empty for bounces).
    fn sign<'a>(&self, mail_from: &str, message: &'a [u8]) -> Cow<'a, [u8]>;
}

/// The default signer: sends the message unchanged.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoSigning;

impl MessageSigner for NoSigning {
    fn sign<'a>(&self, _mail_from: &str, message: &'a [u8]) -> Cow<'a, [u8]> {
        Cow::Borrowed(message)
    }
}

/// DKIM signing with the keys from `postamt dkim generate`: signs for the
/// domain of the `From:` header (what DMARC aligns with), else for the
/// envelope sender's domain, when a key exists for it.
pub struct DkimSigning {
    signer: postamt_sender_auth::DkimSigner,
}

impl DkimSigning {
    pub fn new(signer: postamt_sender_auth::DkimSigner) -> Self {
        DkimSigning { signer }
    }

    /// The domain to sign for, if we hold its key.
    fn signing_domain(&self, mail_from: &str, message: &[u8]) -> Option<String> {
        let from_header = mail_parser::MessageParser::new()
            .parse_headers(message)
            .and_then(|m| {
                m.from()
                    .and_then(|a| a.first())
                    .and_then(|a| a.address())
                    .and_then(|a| a.rsplit_once('@'))
                    .map(|(_, d)| d.to_ascii_lowercase())
            });
        let envelope = mail_from
            .rsplit_once('@')
            .map(|(_, d)| d.to_ascii_lowercase());
        [from_header, envelope]
            .into_iter()
            .flatten()
            .find(|d| self.signer.has_key(d))
    }
}

impl MessageSigner for DkimSigning {
    fn sign<'a>(&self, mail_from: &str, message: &'a [u8]) -> Cow<'a, [u8]> {
        let Some(domain) = self.signing_domain(mail_from, message) else {
            return Cow::Borrowed(message);
        };
        match self.signer.sign(message, &domain) {
            Some(Ok(header)) => {
                let mut out = Vec::with_capacity(header.len() + message.len());
                out.extend_from_slice(header.as_bytes());
                out.extend_from_slice(message);
                Cow::Owned(out)
            }
            // The signer logged why; the message leaves unsigned rather
            // than not at all.
            Some(Err(_)) | None => Cow::Borrowed(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = include_str!("../../sender-auth/testdata/rsa2048-a.pkcs8.pem");

    fn dkim(domain: &str) -> DkimSigning {
        let mut s = postamt_sender_auth::DkimSigner::new("postamt").expect("selector");
        s.insert_pem(domain, KEY.as_bytes()).expect("key");
        DkimSigning::new(s)
    }

    #[test]
    fn signs_for_the_from_domain() {
        let m = b"From: Alice <alice@Example.org>\r\nTo: bob@remote.example\r\nSubject: hi\r\n\r\nbody\r\n";
        let out = dkim("example.org").sign("bounce@other.example", m);
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("DKIM-Signature:"), "{text}");
        assert!(text.contains("d=example.org"), "{text}");
        assert!(text.contains("c=relaxed/simple"), "{text}");
        assert!(text.ends_with("\r\n\r\nbody\r\n"));
    }

    #[test]
    fn falls_back_to_the_envelope_domain_and_leaves_unknown_domains_alone() {
        let m = b"From: x@elsewhere.example\r\n\r\nbody\r\n";
        let out = dkim("example.org").sign("alice@example.org", m);
        assert!(out.starts_with(b"DKIM-Signature:"));
        let out = dkim("example.org").sign("a@nowhere.example", m);
        assert!(matches!(out, Cow::Borrowed(_)));
    }

    #[test]
    fn no_signing_keeps_the_bytes() {
        let m = b"Subject: x\r\n\r\nbody\r\n";
        assert!(matches!(NoSigning.sign("a@b.c", m), Cow::Borrowed(b) if b == m));
    }
}
