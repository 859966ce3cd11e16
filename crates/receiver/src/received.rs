//! Trace information (RFC 5321 4.4): the `Received:` header we prepend to
//! every message, and the hop count (existing `Received:` fields) used to
//! detect mail loops.

use chrono::{DateTime, FixedOffset};
use std::net::IpAddr;

/// A message with this many `Received:` fields or more is refused as a loop
/// (RFC 5321 6.3 suggests at least 100 hops be allowed for relays; a final
/// destination may be stricter; Postfix uses 50).
pub const MAX_HOPS: usize = 50;

/// What goes into our `Received:` header.
#[derive(Clone, Debug)]
pub struct TraceInfo<'a> {
    /// The client's HELO/EHLO name.
    pub helo: &'a str,
    /// The client's address.
    pub ip: IpAddr,
    /// Our hostname.
    pub hostname: &'a str,
    /// EHLO (`ESMTP`) or HELO (`SMTP`).
    pub esmtp: bool,
    /// The message came over TLS (`ESMTPS`, RFC 3848).
    pub tls: bool,
    /// The client authenticated (`ESMTPA`, RFC 3848).
    pub authenticated: bool,
    /// The queue id the message will have.
    pub queue_id: &'a str,
    /// The recipient, named only when there is exactly one.
    pub single_recipient: Option<&'a str>,
    /// When the message arrived.
    pub date: DateTime<FixedOffset>,
}

/// Builds the header, folded with CRLF + TAB (shown as `<TAB>`), ending in CRLF:
///
/// ```text
/// Received: from <helo> ([<ip>])
/// <TAB>by <hostname> (Postamt) with ESMTP id <queue id>
/// <TAB>for <rcpt>; <RFC 5322 date>
/// ```
///
/// Without a single recipient the date follows the id on the next line.
/// The protocol is one of RFC 3848's `SMTP`, `ESMTP`, `ESMTPS`, `ESMTPA`,
/// `ESMTPSA`.
pub fn received_header(t: &TraceInfo<'_>) -> Vec<u8> {
    let protocol = protocol(t.esmtp, t.tls, t.authenticated);
    let date = t.date.to_rfc2822();
    let mut h = format!(
        "Received: from {} ({})\r\n\tby {} (Postamt) with {protocol} id {}",
        header_safe(t.helo),
        address_literal(t.ip),
        header_safe(t.hostname),
        header_safe(t.queue_id),
    );
    match t.single_recipient {
        Some(rcpt) => h.push_str(&format!("\r\n\tfor <{}>; {date}\r\n", header_safe(rcpt))),
        None => h.push_str(&format!(";\r\n\t{date}\r\n")),
    }
    h.into_bytes()
}

/// The `with` keyword (RFC 3848 transmission types).
pub fn protocol(esmtp: bool, tls: bool, authenticated: bool) -> &'static str {
    match (esmtp, tls, authenticated) {
        (false, _, _) => "SMTP",
        (true, false, false) => "ESMTP",
        (true, true, false) => "ESMTPS",
        (true, false, true) => "ESMTPA",
        (true, true, true) => "ESMTPSA",
    }
}

/// `[192.0.2.1]` or `[IPv6:2001:db8::1]` (RFC 5321 4.1.3); IPv4-mapped
/// IPv6 addresses are shown as IPv4.
pub fn address_literal(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => format!("[{v4}]"),
        IpAddr::V6(v6) => format!("[IPv6:{v6}]"),
    }
}

/// Client-supplied text made safe inside a header: no controls, no
/// whitespace (which could fold or end the field), no parentheses or angle
/// brackets that would change the field's structure.
fn header_safe(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .take(255)
        .map(|c| {
            if c.is_control() || c.is_whitespace() || matches!(c, '(' | ')' | '<' | '>' | ';') {
                '_'
            } else {
                c
            }
        })
        .collect();
    if cleaned.is_empty() {
        "unknown".to_string()
    } else {
        cleaned
    }
}

/// The number of `Received:` fields in the header section of `message` (up
/// to the first empty line; a bare LF counts as a line end here, so a
/// message cannot hide trace fields from the count by its line ends).
pub fn count_hops(message: &[u8]) -> usize {
    let mut count = 0;
    let mut rest = message;
    loop {
        let (line, next) = match memchr::memchr(b'\n', rest) {
            Some(pos) => (&rest[..pos], Some(&rest[pos + 1..])),
            None => (rest, None),
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return count;
        }
        if is_received_field(line) {
            count += 1;
        }
        match next {
            Some(n) => rest = n,
            None => return count,
        }
    }
}

/// Whether a header line starts the field `Received` (name case-insensitive,
/// obsolete whitespace before the colon allowed).
fn is_received_field(line: &[u8]) -> bool {
    const NAME: &[u8] = b"received";
    if line.len() <= NAME.len() || !line[..NAME.len()].eq_ignore_ascii_case(NAME) {
        return false;
    }
    line[NAME.len()..]
        .iter()
        .find(|&&b| b != b' ' && b != b'\t')
        .is_some_and(|&b| b == b':')
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn date() -> DateTime<FixedOffset> {
        FixedOffset::east_opt(3600)
            .and_then(|tz| tz.with_ymd_and_hms(2024, 3, 5, 14, 7, 9).single())
            .expect("valid test date")
    }

    #[test]
    fn header_with_single_recipient() {
        let h = received_header(&TraceInfo {
            helo: "client.example.net",
            ip: "192.0.2.7".parse().expect("ip"),
            hostname: "mx.example.org",
            esmtp: true,
            tls: false,
            authenticated: false,
            queue_id: "0190abcdef",
            single_recipient: Some("bob@example.org"),
            date: date(),
        });
        assert_eq!(
            String::from_utf8(h).expect("ascii"),
            "Received: from client.example.net ([192.0.2.7])\r\n\
             \tby mx.example.org (Postamt) with ESMTP id 0190abcdef\r\n\
             \tfor <bob@example.org>; Tue, 5 Mar 2024 14:07:09 +0100\r\n"
        );
    }

    #[test]
    fn header_without_for_and_with_helo_protocol() {
        let h = received_header(&TraceInfo {
            helo: "c",
            ip: "2001:db8::1".parse().expect("ip"),
            hostname: "mx",
            esmtp: false,
            tls: false,
            authenticated: false,
            queue_id: "q1",
            single_recipient: None,
            date: date(),
        });
        assert_eq!(
            String::from_utf8(h).expect("ascii"),
            "Received: from c ([IPv6:2001:db8::1])\r\n\
             \tby mx (Postamt) with SMTP id q1;\r\n\
             \tTue, 5 Mar 2024 14:07:09 +0100\r\n"
        );
    }

    #[test]
    fn tls_and_auth_protocols() {
        assert_eq!(protocol(true, true, false), "ESMTPS");
        assert_eq!(protocol(true, true, true), "ESMTPSA");
        assert_eq!(protocol(true, false, true), "ESMTPA");
        assert_eq!(protocol(true, false, false), "ESMTP");
        assert_eq!(protocol(false, true, false), "SMTP");
        let h = received_header(&TraceInfo {
            helo: "laptop",
            ip: "192.0.2.7".parse().expect("ip"),
            hostname: "mx",
            esmtp: true,
            tls: true,
            authenticated: true,
            queue_id: "q",
            single_recipient: None,
            date: date(),
        });
        let s = String::from_utf8(h).expect("utf8");
        assert!(
            s.contains("\tby mx (Postamt) with ESMTPSA id q;\r\n"),
            "{s}"
        );
    }

    #[test]
    fn mapped_ipv4_is_shown_as_ipv4() {
        let ip: IpAddr = "::ffff:192.0.2.9".parse().expect("ip");
        assert_eq!(address_literal(ip), "[192.0.2.9]");
    }

    #[test]
    fn hostile_helo_cannot_break_the_header() {
        let h = received_header(&TraceInfo {
            helo: "evil\r\nBcc: x (y) <z>;",
            ip: "192.0.2.7".parse().expect("ip"),
            hostname: "mx",
            esmtp: true,
            tls: false,
            authenticated: false,
            queue_id: "q",
            single_recipient: Some("a\tb@x"),
            date: date(),
        });
        let s = String::from_utf8(h).expect("utf8");
        assert!(s.starts_with("Received: from evil__Bcc:_x__y___z__ ([192.0.2.7])\r\n"));
        assert!(s.contains("for <a_b@x>;"));
        // Exactly three lines, the continuation lines folded with TAB.
        let lines: Vec<&str> = s.split("\r\n").collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[1].starts_with('\t') && lines[2].starts_with('\t'));
        assert_eq!(lines[3], "");
    }

    #[test]
    fn counts_received_fields_in_header_only() {
        let m = b"Received: a\r\nreceived : b\r\nRECEIVED:\tc\r\nReceived-SPF: pass\r\n\
                  X-Received: d\r\n  Received: folded\r\nSubject: s\r\n\r\nReceived: body\r\n";
        assert_eq!(count_hops(m), 3);
    }

    #[test]
    fn counts_with_bare_lf_and_without_body() {
        assert_eq!(count_hops(b"Received: a\nReceived: b\n\nReceived: c\n"), 2);
        assert_eq!(count_hops(b"Received: a"), 1);
        assert_eq!(count_hops(b""), 0);
        assert_eq!(count_hops(b"\r\nReceived: a\r\n"), 0);
    }

    #[test]
    fn fifty_hops_are_counted() {
        let mut m = Vec::new();
        for i in 0..MAX_HOPS {
            m.extend_from_slice(format!("Received: from h{i}\r\n\tby x\r\n").as_bytes());
        }
        m.extend_from_slice(b"\r\nbody\r\n");
        assert_eq!(count_hops(&m), MAX_HOPS);
    }
}
