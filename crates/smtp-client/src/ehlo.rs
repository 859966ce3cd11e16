//! The server's capabilities from its EHLO reply (RFC 5321 §4.1.1.1):
//! PIPELINING, SIZE, 8BITMIME, SMTPUTF8, STARTTLS, AUTH mechanisms and the
//! rest we may use. Pure.

use crate::Reply;

/// Longest server name kept (a DNS name has at most 253 characters).
const MAX_NAME: usize = 255;

/// What the server announced. `Default` is a server that only knows HELO.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// EHLO was accepted (false after the HELO fallback).
    pub esmtp: bool,
    pub pipelining: bool,
    pub starttls: bool,
    pub eight_bit_mime: bool,
    pub smtputf8: bool,
    pub enhanced_status_codes: bool,
    pub chunking: bool,
    pub dsn: bool,
    /// SIZE was announced (so `MAIL FROM` may carry `SIZE=`).
    pub size: bool,
    /// The announced maximum message size; `None` when SIZE was absent, had
    /// no or a zero argument (no fixed limit) or an unreadable one.
    pub max_size: Option<u64>,
    pub auth_plain: bool,
    pub auth_login: bool,
}

impl Capabilities {
    /// Parses an EHLO reply; returns the server's name (the first word of
    /// the first line) and its capabilities. Unknown keywords are ignored.
    pub fn from_ehlo(reply: &Reply) -> (String, Capabilities) {
        let mut lines = reply.text.split('\n');
        let name = lines
            .next()
            .and_then(|l| l.split_whitespace().next())
            .map(|n| n.chars().take(MAX_NAME).collect())
            .unwrap_or_default();
        let mut caps = Capabilities {
            esmtp: true,
            ..Capabilities::default()
        };
        for line in lines {
            caps.add_line(line);
        }
        (name, caps)
    }

    fn add_line(&mut self, line: &str) {
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else {
            return;
        };
        // Old servers write `AUTH=LOGIN PLAIN`.
        let (keyword, inline) = match first.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (first, None),
        };
        let params: Vec<&str> = inline.into_iter().chain(words).collect();
        match keyword.to_ascii_uppercase().as_str() {
            "PIPELINING" => self.pipelining = true,
            "STARTTLS" => self.starttls = true,
            "8BITMIME" => self.eight_bit_mime = true,
            "SMTPUTF8" => self.smtputf8 = true,
            "ENHANCEDSTATUSCODES" => self.enhanced_status_codes = true,
            "CHUNKING" => self.chunking = true,
            "DSN" => self.dsn = true,
            "SIZE" => {
                self.size = true;
                self.max_size = params.first().and_then(|p| parse_size(p));
            }
            "AUTH" => {
                for mechanism in params {
                    if mechanism.eq_ignore_ascii_case("PLAIN") {
                        self.auth_plain = true;
                    } else if mechanism.eq_ignore_ascii_case("LOGIN") {
                        self.auth_login = true;
                    }
                }
            }
            _ => {}
        }
    }
}

/// A SIZE argument: decimal digits only, no overflow; 0 means no limit.
fn parse_size(param: &str) -> Option<u64> {
    if param.is_empty() || !param.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Too large for u64 is as good as no limit.
    param.parse::<u64>().ok().filter(|n| *n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ehlo(text: &str) -> Reply {
        Reply {
            code: 250,
            enhanced: None,
            text: text.to_string(),
        }
    }

    #[test]
    fn typical_server() {
        let (name, caps) = Capabilities::from_ehlo(&ehlo(
            "mx.example.org Hello there\nPIPELINING\nSIZE 10240000\n8BITMIME\nSMTPUTF8\nSTARTTLS\nENHANCEDSTATUSCODES\nAUTH PLAIN LOGIN CRAM-MD5\nCHUNKING\nDSN",
        ));
        assert_eq!(name, "mx.example.org");
        assert_eq!(
            caps,
            Capabilities {
                esmtp: true,
                pipelining: true,
                starttls: true,
                eight_bit_mime: true,
                smtputf8: true,
                enhanced_status_codes: true,
                chunking: true,
                dsn: true,
                size: true,
                max_size: Some(10_240_000),
                auth_plain: true,
                auth_login: true,
            }
        );
    }

    #[test]
    fn minimal_server() {
        let (name, caps) = Capabilities::from_ehlo(&ehlo("tiny"));
        assert_eq!(name, "tiny");
        assert_eq!(
            caps,
            Capabilities {
                esmtp: true,
                ..Capabilities::default()
            }
        );
    }

    #[test]
    fn keywords_case_insensitive_and_old_auth_syntax() {
        let (_, caps) = Capabilities::from_ehlo(&ehlo("x\npipelining\nAuth=login\nstarttls"));
        assert!(caps.pipelining && caps.starttls && caps.auth_login);
        assert!(!caps.auth_plain);
    }

    #[test]
    fn size_arguments() {
        let size = |arg: &str| {
            let (_, caps) = Capabilities::from_ehlo(&ehlo(&format!("x\nSIZE{arg}")));
            assert!(caps.size);
            caps.max_size
        };
        assert_eq!(size(""), None);
        assert_eq!(size(" 0"), None);
        assert_eq!(size(" 52428800"), Some(52_428_800));
        assert_eq!(size(" 18446744073709551615"), Some(u64::MAX));
        assert_eq!(size(" 99999999999999999999999999999"), None);
        assert_eq!(size(" -5"), None);
        assert_eq!(size(" 12abc"), None);
    }

    #[test]
    fn not_mistaken_for_prefixes() {
        let (_, caps) = Capabilities::from_ehlo(&ehlo("x\nPIPELININGX\nSTARTTLSFOO\nXSIZE 5"));
        assert_eq!(
            caps,
            Capabilities {
                esmtp: true,
                ..Capabilities::default()
            }
        );
    }

    #[test]
    fn empty_reply_and_long_name() {
        let (name, _) = Capabilities::from_ehlo(&ehlo(""));
        assert_eq!(name, "");
        let (name, _) = Capabilities::from_ehlo(&ehlo(&"n".repeat(1000)));
        assert_eq!(name.len(), MAX_NAME);
    }
}
