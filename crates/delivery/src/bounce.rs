//! Delivery status notifications (RFC 3464), built as bytes: the bounce for
//! failed recipients and the delay warning for ones still being retried, plus
//! the rule of who receives them. Pure: no I/O, no clock.
//!
//! Shape: `multipart/report; report-type=delivery-status` with a plain-text
//! explanation, the `message/delivery-status` part, and the original
//! message's header section as `text/rfc822-headers`.

use crate::failure::{clean_text, remote_reply, status_of};

/// Subject of a bounce.
pub const FAILURE_SUBJECT: &str = "Undelivered Mail Returned to Sender";
/// Subject of a delay warning.
pub const DELAY_SUBJECT: &str = "Delayed Mail (still being retried)";
/// The most of the original header section a report carries.
pub const MAX_ORIGINAL_HEADERS: usize = 64 * 1024;

/// Which report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportKind {
    /// Recipients failed for good (`Action: failed`).
    Failure,
    /// Recipients still pending after a while (`Action: delayed`).
    Delay {
        /// Unix seconds: when retrying stops.
        retry_until: i64,
    },
}

/// One recipient's line in the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportRecipient {
    pub address: String,
    /// Enhanced status code: class 5 for failures, 4 for delays.
    pub status: String,
    /// The reason as recorded (`"5.2.1 mailbox unavailable"`), or the
    /// remote server's reply (`"550 5.1.1 no such user"`).
    pub diagnostic: String,
    /// The remote host that gave the reply (`Remote-MTA`).
    pub remote_mta: Option<String>,
}

impl ReportRecipient {
    /// A failed recipient from its stored `last_error`; the status is forced
    /// to class 5.
    pub fn failed(address: &str, last_error: Option<&str>) -> ReportRecipient {
        ReportRecipient::with_class(address, last_error, '5', "delivery failed")
    }

    /// A delayed recipient from its stored `last_error`; the status is
    /// forced to class 4.
    pub fn delayed(address: &str, last_error: Option<&str>) -> ReportRecipient {
        ReportRecipient::with_class(address, last_error, '4', "delivery not yet successful")
    }

    fn with_class(
        address: &str,
        last_error: Option<&str>,
        class: char,
        default_text: &str,
    ) -> ReportRecipient {
        let line = last_error.map(clean_text).unwrap_or_default();
        let status = match status_of(&line) {
            Some(s) => format!("{class}{}", &s[1..]),
            None => format!("{class}.0.0"),
        };
        let (diagnostic, remote_mta) = if line.is_empty() {
            (format!("{status} {default_text}"), None)
        } else if let Some((host, reply)) = remote_reply(&line) {
            (reply.to_string(), Some(host.to_string()))
        } else {
            (line.clone(), None)
        };
        ReportRecipient {
            address: clean_text(address),
            status,
            diagnostic,
            remote_mta,
        }
    }
}

/// Everything a report says.
#[derive(Clone, Debug)]
pub struct Report<'a> {
    pub kind: ReportKind,
    /// Our host name (Reporting-MTA, From, Message-ID).
    pub hostname: &'a str,
    /// The `To:` header address (the original sender, or the postmaster for
    /// a double bounce).
    pub to: &'a str,
    /// The original message's queue id.
    pub queue_id: &'a str,
    /// Unix seconds: when the original arrived.
    pub arrival: i64,
    /// Unix seconds: now (Date, Last-Attempt-Date).
    pub now: i64,
    /// The Message-ID without angle brackets (`local@host`).
    pub message_id: &'a str,
    pub recipients: &'a [ReportRecipient],
    /// The original message (only its header section is used).
    pub original: &'a [u8],
}

/// Who receives a bounce. A normal sender gets it (and the postmaster a copy
/// when `copy_to_postmaster`); a null-sender message's failure goes to the
/// postmaster instead (a double bounce), unless the postmaster itself is
/// among the failed recipients: then it is dropped, which ends any loop.
pub fn bounce_targets(
    sender: &str,
    postmaster: &str,
    copy_to_postmaster: bool,
    failed: &[String],
) -> Vec<String> {
    if sender.is_empty() {
        if failed.iter().any(|f| f.eq_ignore_ascii_case(postmaster)) {
            return Vec::new();
        }
        return vec![postmaster.to_string()];
    }
    let mut v = vec![sender.to_string()];
    if copy_to_postmaster && !sender.eq_ignore_ascii_case(postmaster) {
        v.push(postmaster.to_string());
    }
    v
}

/// RFC 5322 date-time of a Unix time, in UTC.
pub fn format_date(ts: i64) -> String {
    chrono::DateTime::from_timestamp(ts, 0)
        .unwrap_or(chrono::DateTime::UNIX_EPOCH)
        .to_rfc2822()
}

/// The original message's header section (up to the first empty line),
/// with CRLF line ends, cut at a line boundary after `max` bytes.
pub fn header_section(msg: &[u8], max: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len().min(max) + 2);
    for line in msg.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() || out.len() + line.len() + 2 > max {
            break;
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Plain words for a status code.
fn plain_reason(status: &str, kind: ReportKind) -> &'static str {
    let tail = status.get(2..).unwrap_or("");
    match tail {
        "1.1" => "there is no mailbox by this name here",
        "1.3" => "the address does not name a valid mailbox",
        "2.0" => "the mailbox could not be written to",
        "2.1" => "the mailbox is not available",
        "3.0" => "the mail system had an internal problem",
        "4.0" => "the destination could not be reached",
        "4.6" => "the address is part of a forwarding loop",
        "4.7" => "delivery kept failing until the time limit ran out",
        _ if kind == ReportKind::Failure => "the message could not be delivered",
        _ => "delivery has not succeeded yet",
    }
}

/// A boundary made of safe characters that occurs in none of `parts`.
fn choose_boundary(queue_id: &str, now: i64, hostname: &str, parts: &[&[u8]]) -> String {
    let safe = |s: &str| -> String {
        s.chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
            .take(64)
            .collect()
    };
    let base = format!("{}/{}.{}", safe(queue_id), now, safe(hostname));
    let occurs = |b: &str| {
        parts
            .iter()
            .any(|p| p.windows(b.len()).any(|w| w == b.as_bytes()))
    };
    let mut n = 0u64;
    let mut boundary = base.clone();
    while occurs(&boundary) {
        n += 1;
        boundary = format!("{base}={n}");
    }
    boundary
}

fn type_of(address: &str) -> &'static str {
    if address.is_ascii() {
        "rfc822"
    } else {
        "utf-8"
    }
}

fn crlf(out: &mut String, line: &str) {
    out.push_str(line);
    out.push_str("\r\n");
}

/// The human-readable part.
fn explanation(r: &Report) -> String {
    let mut t = String::new();
    crlf(
        &mut t,
        &format!("This is the mail delivery system at {}.", r.hostname),
    );
    crlf(&mut t, "");
    match r.kind {
        ReportKind::Failure => {
            crlf(
                &mut t,
                "Your message could not be delivered to the recipients below.",
            );
            crlf(&mut t, "This is final: the mail system will not try again.");
        }
        ReportKind::Delay { retry_until } => {
            crlf(
                &mut t,
                "Your message has not been delivered yet to the recipients below.",
            );
            crlf(
                &mut t,
                &format!(
                    "The mail system keeps trying until {}.",
                    format_date(retry_until)
                ),
            );
            crlf(
                &mut t,
                "You do not need to send it again; you will hear from us only",
            );
            crlf(&mut t, "if it finally fails.");
        }
    }
    crlf(
        &mut t,
        &format!("The message arrived on {}.", format_date(r.arrival)),
    );
    crlf(&mut t, "");
    for rcpt in r.recipients {
        crlf(
            &mut t,
            &format!("<{}>: {}", rcpt.address, plain_reason(&rcpt.status, r.kind)),
        );
        match &rcpt.remote_mta {
            Some(host) => crlf(&mut t, &format!("    ({host} said: {})", rcpt.diagnostic)),
            None => crlf(&mut t, &format!("    ({})", rcpt.diagnostic)),
        }
        crlf(&mut t, "");
    }
    crlf(
        &mut t,
        &format!(
            "For help, write to the postmaster of {} and quote the queue id {}.",
            r.hostname, r.queue_id
        ),
    );
    crlf(&mut t, "The header section of your message is attached.");
    t
}

/// The `message/delivery-status` part's body.
fn status_fields(r: &Report) -> String {
    let mut s = String::new();
    crlf(&mut s, &format!("Reporting-MTA: dns; {}", r.hostname));
    crlf(&mut s, &format!("X-Postamt-Queue-ID: {}", r.queue_id));
    crlf(&mut s, &format!("Arrival-Date: {}", format_date(r.arrival)));
    for rcpt in r.recipients {
        crlf(&mut s, "");
        crlf(
            &mut s,
            &format!(
                "Final-Recipient: {}; {}",
                type_of(&rcpt.address),
                rcpt.address
            ),
        );
        match r.kind {
            ReportKind::Failure => crlf(&mut s, "Action: failed"),
            ReportKind::Delay { .. } => crlf(&mut s, "Action: delayed"),
        }
        crlf(&mut s, &format!("Status: {}", rcpt.status));
        if let Some(host) = &rcpt.remote_mta {
            crlf(&mut s, &format!("Remote-MTA: dns; {host}"));
        }
        crlf(
            &mut s,
            &format!("Diagnostic-Code: smtp; {}", rcpt.diagnostic),
        );
        crlf(
            &mut s,
            &format!("Last-Attempt-Date: {}", format_date(r.now)),
        );
        if let ReportKind::Delay { retry_until } = r.kind {
            crlf(
                &mut s,
                &format!("Will-Retry-Until: {}", format_date(retry_until)),
            );
        }
    }
    s
}

/// Builds the whole report message (CRLF line ends).
pub fn build_report(r: &Report) -> Vec<u8> {
    let text = explanation(r);
    let status = status_fields(r);
    let headers = header_section(r.original, MAX_ORIGINAL_HEADERS);
    let boundary = choose_boundary(
        r.queue_id,
        r.now,
        r.hostname,
        &[text.as_bytes(), status.as_bytes(), &headers],
    );
    let subject = match r.kind {
        ReportKind::Failure => FAILURE_SUBJECT,
        ReportKind::Delay { .. } => DELAY_SUBJECT,
    };
    let charset = if text.is_ascii() { "us-ascii" } else { "utf-8" };
    let encoding = if text.is_ascii() { "7bit" } else { "8bit" };

    let mut h = String::new();
    crlf(
        &mut h,
        &format!("From: Mail Delivery System <MAILER-DAEMON@{}>", r.hostname),
    );
    crlf(&mut h, &format!("To: <{}>", clean_text(r.to)));
    crlf(&mut h, &format!("Subject: {subject}"));
    crlf(&mut h, &format!("Date: {}", format_date(r.now)));
    crlf(&mut h, &format!("Message-ID: <{}>", r.message_id));
    crlf(&mut h, "MIME-Version: 1.0");
    crlf(&mut h, "Auto-Submitted: auto-replied");
    crlf(
        &mut h,
        "Content-Type: multipart/report; report-type=delivery-status;",
    );
    crlf(&mut h, &format!("\tboundary=\"{boundary}\""));
    crlf(&mut h, "");
    crlf(&mut h, "This is a MIME-encapsulated message.");
    crlf(&mut h, "");
    crlf(&mut h, &format!("--{boundary}"));
    crlf(&mut h, "Content-Description: Notification");
    crlf(
        &mut h,
        &format!("Content-Type: text/plain; charset={charset}"),
    );
    crlf(&mut h, &format!("Content-Transfer-Encoding: {encoding}"));
    crlf(&mut h, "");
    h.push_str(&text);
    crlf(&mut h, "");
    crlf(&mut h, &format!("--{boundary}"));
    crlf(&mut h, "Content-Description: Delivery report");
    crlf(&mut h, "Content-Type: message/delivery-status");
    crlf(&mut h, "");
    h.push_str(&status);
    crlf(&mut h, "");
    crlf(&mut h, &format!("--{boundary}"));
    crlf(&mut h, "Content-Description: Undelivered Message Headers");
    crlf(&mut h, "Content-Type: text/rfc822-headers");
    crlf(&mut h, "");

    let mut out = h.into_bytes();
    out.extend_from_slice(&headers);
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A parsed MIME entity: header fields (name lowercased) and body.
    pub(crate) struct Entity {
        pub headers: Vec<(String, String)>,
        pub body: String,
    }

    impl Entity {
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n == &name.to_ascii_lowercase())
                .map(|(_, v)| v.as_str())
        }
    }

    /// Splits header section and body, unfolding continuation lines.
    pub(crate) fn parse_entity(raw: &str) -> Entity {
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in head.split("\r\n") {
            if line.starts_with([' ', '\t']) {
                let last = headers.last_mut().expect("continuation after a field");
                last.1.push(' ');
                last.1.push_str(line.trim());
            } else if let Some((n, v)) = line.split_once(':') {
                headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        Entity {
            headers,
            body: body.to_string(),
        }
    }

    /// A parsed report: top entity, boundary, and the parts.
    pub(crate) struct ParsedReport {
        pub top: Entity,
        pub boundary: String,
        pub parts: Vec<Entity>,
    }

    /// Parses a multipart message strictly enough to catch structure bugs:
    /// every line ends in CRLF, the boundary is declared, the closing
    /// delimiter is present.
    pub(crate) fn parse_report(bytes: &[u8]) -> ParsedReport {
        let raw = std::str::from_utf8(bytes).expect("report is UTF-8");
        for (i, _) in raw.match_indices('\n') {
            assert_eq!(&raw[i - 1..i], "\r", "bare LF at byte {i}");
        }
        let top = parse_entity(raw);
        let ct = top
            .header("content-type")
            .expect("content-type")
            .to_string();
        let boundary = ct
            .split("boundary=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .expect("boundary parameter")
            .to_string();
        let body = top.body.clone();
        let close = format!("\r\n--{boundary}--\r\n");
        assert!(body.ends_with(&close), "closing delimiter missing");
        let delim = format!("--{boundary}\r\n");
        let mut chunks = body[..body.len() - close.len()].split(&delim);
        chunks.next(); // preamble
        let parts = chunks
            .map(|c| parse_entity(c.strip_suffix("\r\n").unwrap_or(c)))
            .collect();
        ParsedReport {
            top,
            boundary,
            parts,
        }
    }

    /// The per-recipient field groups of a delivery-status body.
    pub(crate) fn status_groups(body: &str) -> Vec<Entity> {
        body.trim_end()
            .split("\r\n\r\n")
            .map(|g| parse_entity(&format!("{g}\r\n\r\n")))
            .collect()
    }

    const ORIGINAL: &[u8] =
        b"Received: from x\r\nSubject: Hello\r\nFrom: a@x.org\r\n\r\nsecret body\r\n";

    fn report<'a>(
        kind: ReportKind,
        rcpts: &'a [ReportRecipient],
        original: &'a [u8],
    ) -> Report<'a> {
        Report {
            kind,
            hostname: "mx.example.org",
            to: "a@x.org",
            queue_id: "0190abcd",
            arrival: 1_700_000_000,
            now: 1_700_003_600,
            message_id: "1700003600.0190abcd.bounce.1@mx.example.org",
            recipients: rcpts,
            original,
        }
    }

    #[test]
    fn failure_report_has_the_rfc3464_structure() {
        let rcpts = [
            ReportRecipient::failed("bob@example.org", Some("5.1.1 no such user")),
            ReportRecipient::failed("carol@example.org", Some("5.2.1 mailbox unavailable")),
        ];
        let bytes = build_report(&report(ReportKind::Failure, &rcpts, ORIGINAL));
        let p = parse_report(&bytes);
        assert_eq!(
            p.top.header("from"),
            Some("Mail Delivery System <MAILER-DAEMON@mx.example.org>")
        );
        assert_eq!(p.top.header("to"), Some("<a@x.org>"));
        assert_eq!(p.top.header("subject"), Some(FAILURE_SUBJECT));
        assert_eq!(p.top.header("mime-version"), Some("1.0"));
        assert_eq!(p.top.header("auto-submitted"), Some("auto-replied"));
        assert_eq!(
            p.top.header("message-id"),
            Some("<1700003600.0190abcd.bounce.1@mx.example.org>")
        );
        assert_eq!(
            p.top.header("date"),
            Some("Tue, 14 Nov 2023 23:13:20 +0000")
        );
        let ct = p.top.header("content-type").unwrap();
        assert!(
            ct.starts_with("multipart/report; report-type=delivery-status;"),
            "{ct}"
        );
        assert!(!p.boundary.is_empty());

        assert_eq!(p.parts.len(), 3);
        assert!(
            p.parts[0]
                .header("content-type")
                .unwrap()
                .starts_with("text/plain")
        );
        assert!(
            p.parts[0]
                .body
                .contains("<bob@example.org>: there is no mailbox")
        );
        assert!(p.parts[0].body.contains("(5.2.1 mailbox unavailable)"));
        assert_eq!(
            p.parts[1].header("content-type"),
            Some("message/delivery-status")
        );
        assert_eq!(
            p.parts[2].header("content-type"),
            Some("text/rfc822-headers")
        );

        let groups = status_groups(&p.parts[1].body);
        assert_eq!(groups.len(), 3, "per-message group + two recipients");
        assert_eq!(
            groups[0].header("reporting-mta"),
            Some("dns; mx.example.org")
        );
        assert_eq!(
            groups[0].header("arrival-date"),
            Some("Tue, 14 Nov 2023 22:13:20 +0000")
        );
        assert_eq!(
            groups[1].header("final-recipient"),
            Some("rfc822; bob@example.org")
        );
        assert_eq!(groups[1].header("action"), Some("failed"));
        assert_eq!(groups[1].header("status"), Some("5.1.1"));
        assert_eq!(
            groups[1].header("diagnostic-code"),
            Some("smtp; 5.1.1 no such user")
        );
        assert_eq!(
            groups[2].header("final-recipient"),
            Some("rfc822; carol@example.org")
        );
        assert_eq!(groups[2].header("status"), Some("5.2.1"));
        assert!(groups[2].header("will-retry-until").is_none());

        assert!(p.parts[2].body.contains("Subject: Hello\r\n"));
        assert!(
            !p.parts[2].body.contains("secret body"),
            "only headers are returned"
        );
    }

    #[test]
    fn delay_report_says_delayed_with_class_4() {
        let rcpts = [ReportRecipient::delayed(
            "bob@example.org",
            Some("4.2.0 mailbox I/O error: denied"),
        )];
        let kind = ReportKind::Delay {
            retry_until: 1_700_432_000,
        };
        let p = parse_report(&build_report(&report(kind, &rcpts, ORIGINAL)));
        assert_eq!(p.top.header("subject"), Some(DELAY_SUBJECT));
        let groups = status_groups(&p.parts[1].body);
        assert_eq!(groups[1].header("action"), Some("delayed"));
        assert_eq!(groups[1].header("status"), Some("4.2.0"));
        assert_eq!(
            groups[1].header("will-retry-until"),
            Some("Sun, 19 Nov 2023 22:13:20 +0000")
        );
        assert!(p.parts[0].body.contains("keeps trying until"));
    }

    #[test]
    fn status_class_is_forced_and_defaulted() {
        let r = ReportRecipient::failed("b@x", Some("4.2.0 disk full"));
        assert_eq!(r.status, "5.2.0");
        assert_eq!(r.diagnostic, "4.2.0 disk full");
        let r = ReportRecipient::failed("b@x", None);
        assert_eq!(r.status, "5.0.0");
        assert_eq!(r.diagnostic, "5.0.0 delivery failed");
        let r = ReportRecipient::failed("b@x", Some("weird\r\ninjected: yes"));
        assert_eq!(r.status, "5.0.0");
        assert_eq!(r.diagnostic, "weird injected: yes");
        let r = ReportRecipient::delayed("b@x", Some("5.1.1 x"));
        assert_eq!(r.status, "4.1.1");
    }

    #[test]
    fn a_remote_rejection_names_the_remote_mta_and_its_reply() {
        let rcpts = [ReportRecipient::failed(
            "bob@remote.net",
            Some(
                "5.1.1 mx1.remote.net said: 550 5.1.1 <bob@remote.net>: no such user (in reply to RCPT TO)",
            ),
        )];
        assert_eq!(rcpts[0].remote_mta.as_deref(), Some("mx1.remote.net"));
        let bytes = build_report(&report(ReportKind::Failure, &rcpts, ORIGINAL));
        let p = parse_report(&bytes);
        let groups = status_groups(&p.parts[1].body);
        assert_eq!(groups[1].header("status"), Some("5.1.1"));
        assert_eq!(groups[1].header("remote-mta"), Some("dns; mx1.remote.net"));
        assert_eq!(
            groups[1].header("diagnostic-code"),
            Some("smtp; 550 5.1.1 <bob@remote.net>: no such user")
        );
        assert!(
            p.parts[0]
                .body
                .contains("(mx1.remote.net said: 550 5.1.1 <bob@remote.net>: no such user)"),
            "{}",
            p.parts[0].body
        );
        let local = ReportRecipient::failed("b@x", Some("5.1.1 no such user"));
        assert_eq!(local.remote_mta, None);
    }

    #[test]
    fn boundary_never_occurs_in_the_content() {
        let rcpts = [ReportRecipient::failed("b@example.org", Some("5.1.1 no"))];
        let base = "0190abcd/1700003600.mx.example.org";
        let original = format!("X-Trap: {base} and {base}=1\r\n\r\nbody").into_bytes();
        let bytes = build_report(&report(ReportKind::Failure, &rcpts, &original));
        let p = parse_report(&bytes);
        assert_eq!(p.boundary, format!("{base}=2"));
        assert_eq!(p.parts.len(), 3);
        assert!(p.parts[2].body.contains("X-Trap"));
    }

    #[test]
    fn header_section_stops_at_the_body_and_normalises_line_ends() {
        assert_eq!(
            header_section(b"A: 1\nB: 2\n\nbody", 1000),
            b"A: 1\r\nB: 2\r\n"
        );
        assert_eq!(header_section(b"A: 1\r\n\r\nbody", 1000), b"A: 1\r\n");
        assert_eq!(header_section(b"A: 1\r\nB: 2", 1000), b"A: 1\r\nB: 2\r\n");
        assert_eq!(header_section(b"A: 1\r\nB: 22222\r\n", 10), b"A: 1\r\n");
        let huge = "X: y\r\n".repeat(100_000);
        assert!(
            header_section(huge.as_bytes(), MAX_ORIGINAL_HEADERS).len() <= MAX_ORIGINAL_HEADERS
        );
    }

    #[test]
    fn who_gets_the_bounce() {
        let failed = vec!["bob@example.org".to_string()];
        assert_eq!(
            bounce_targets("a@x.org", "postmaster@example.org", false, &failed),
            ["a@x.org"]
        );
        assert_eq!(
            bounce_targets("a@x.org", "postmaster@example.org", true, &failed),
            ["a@x.org", "postmaster@example.org"]
        );
        assert_eq!(
            bounce_targets(
                "Postmaster@example.org",
                "postmaster@example.org",
                true,
                &failed
            ),
            ["Postmaster@example.org"]
        );
        assert_eq!(
            bounce_targets("", "postmaster@example.org", false, &failed),
            ["postmaster@example.org"]
        );
        let pm_failed = vec!["POSTMASTER@example.org".to_string()];
        assert!(bounce_targets("", "postmaster@example.org", true, &pm_failed).is_empty());
    }

    #[test]
    fn non_ascii_recipients_use_the_utf8_address_type() {
        let rcpts = [ReportRecipient::failed(
            "jörg@example.org",
            Some("5.1.1 no"),
        )];
        let p = parse_report(&build_report(&report(
            ReportKind::Failure,
            &rcpts,
            ORIGINAL,
        )));
        let groups = status_groups(&p.parts[1].body);
        assert_eq!(
            groups[1].header("final-recipient"),
            Some("utf-8; jörg@example.org")
        );
        assert!(p.parts[0].header("content-type").unwrap().contains("utf-8"));
    }
}
