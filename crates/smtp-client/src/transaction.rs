//! One mail transaction, planned and judged without I/O: checks against the
//! server's capabilities (SMTPUTF8, SIZE) before anything is sent, 8-bit
//! content converted to 7 bit for a server without 8BITMIME, the
//! `MAIL FROM` and `RCPT TO` command lines (refusing addresses that could
//! inject commands), and turning the replies into per-recipient results.

use crate::downgrade;
use crate::ehlo::Capabilities;
use crate::stuffing::normalized_size;
use crate::{ClientError, Envelope, RecipientResult, Reply};
use std::borrow::Cow;

/// Longest address we put in a command (RFC 5321 allows a 256-octet path;
/// some leeway, but the command line stays far below 1000 bytes).
pub const MAX_ADDRESS: usize = 512;

/// How many RCPT commands go into one pipelined write: a bounded write, so
/// neither side can block the other with full socket buffers.
pub const PIPELINE_BATCH: usize = 100;

/// Why an address cannot be used in a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressProblem {
    TooLong,
    /// CR, LF, NUL or another control character, or `<` / `>`.
    ForbiddenCharacter,
    /// A space outside a quoted local part.
    UnquotedSpace,
    Empty,
}

/// Checks that `address` can be written between angle brackets without
/// changing the meaning of the command line. The null sender is checked by
/// the caller (an empty recipient is an error here).
pub fn check_address(address: &str) -> Result<(), AddressProblem> {
    if address.is_empty() {
        return Err(AddressProblem::Empty);
    }
    if address.len() > MAX_ADDRESS {
        return Err(AddressProblem::TooLong);
    }
    if address
        .chars()
        .any(|c| c.is_control() || c == '<' || c == '>')
    {
        return Err(AddressProblem::ForbiddenCharacter);
    }
    if address.contains(' ') {
        // Only inside a quoted local part: `"john doe"@example.org`.
        let quoted_end = address
            .strip_prefix('"')
            .and_then(|r| r.rfind('"'))
            .map(|i| i + 1);
        match quoted_end {
            Some(end) if !address[end + 1..].contains(' ') => {}
            _ => return Err(AddressProblem::UnquotedSpace),
        }
    }
    Ok(())
}

/// The synthetic reply for an address we refuse to send (never from the
/// server; the text says so).
pub fn local_address_reply(problem: AddressProblem, sender: bool) -> Reply {
    let (code, enhanced) = if sender {
        (553, "5.1.7")
    } else {
        (553, "5.1.3")
    };
    let why = match problem {
        AddressProblem::TooLong => "address too long",
        AddressProblem::ForbiddenCharacter => "address contains a forbidden character",
        AddressProblem::UnquotedSpace => "address contains an unquoted space",
        AddressProblem::Empty => "empty address",
    };
    Reply {
        code,
        enhanced: Some(enhanced.to_string()),
        text: format!("{why} (refused locally, not sent)"),
    }
}

/// Whether the envelope or message needs SMTPUTF8: the flag, or any
/// non-ASCII address.
pub fn needs_smtputf8(envelope: &Envelope) -> bool {
    envelope.smtputf8
        || !envelope.mail_from.is_ascii()
        || envelope.recipients.iter().any(|r| !r.is_ascii())
}

/// What to send for one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan<'m> {
    pub mail: String,
    /// Per envelope recipient: the RCPT command, or the local refusal.
    pub rcpts: Vec<Result<String, Reply>>,
    /// The bytes to send after DATA: the message, or its conversion to 7
    /// bit for a server without 8BITMIME.
    pub message: Cow<'m, [u8]>,
    /// The message was converted to 7 bit (RFC 6152 §3).
    pub downgraded: bool,
    /// What `SIZE=` announces: the size of `message` as sent.
    pub size: u64,
}

/// Checks the transaction against the server's capabilities and builds its
/// commands. Errors are for the whole transaction; nothing has been sent.
///
/// RFC 6152 §3: 8-bit content (a byte >= 0x80, or NUL) goes to a server
/// without 8BITMIME only converted to 7 bit ([`downgrade::to_seven_bit`]:
/// quoted-printable); when it cannot be converted the message is refused
/// ([`ClientError::Unconvertible`]). A server with 8BITMIME gets the bytes
/// unchanged, with `BODY=8BITMIME`.
pub fn plan<'m>(
    envelope: &Envelope,
    message: &'m [u8],
    caps: &Capabilities,
) -> Result<Plan<'m>, ClientError> {
    let smtputf8 = needs_smtputf8(envelope);
    if smtputf8 && !caps.smtputf8 {
        return Err(ClientError::Unsupported("SMTPUTF8"));
    }
    // The flag, or 8-bit bytes the caller did not flag.
    let eight_bit = envelope.eight_bit || !message.is_ascii();
    let message = if !caps.eight_bit_mime && downgrade::needs_8bitmime(message) {
        // Under SMTPUTF8 header fields may stay 8-bit; bodies are converted.
        downgrade::to_seven_bit(message, smtputf8).map_err(ClientError::Unconvertible)?
    } else {
        Cow::Borrowed(message)
    };
    let downgraded = matches!(message, Cow::Owned(_));
    let size = normalized_size(&message);
    if let Some(limit) = caps.max_size
        && size > limit
    {
        return Err(ClientError::TooLarge { size, limit });
    }
    if !envelope.mail_from.is_empty()
        && let Err(problem) = check_address(&envelope.mail_from)
    {
        return Err(ClientError::Reply {
            stage: crate::session::stage::MAIL,
            reply: local_address_reply(problem, true),
        });
    }
    let mut mail = format!("MAIL FROM:<{}>", envelope.mail_from);
    if caps.size {
        mail.push_str(&format!(" SIZE={size}"));
    }
    if eight_bit && caps.eight_bit_mime {
        mail.push_str(" BODY=8BITMIME");
    }
    if smtputf8 {
        mail.push_str(" SMTPUTF8");
    }
    let rcpts = envelope
        .recipients
        .iter()
        .map(|r| match check_address(r) {
            Ok(()) => Ok(format!("RCPT TO:<{r}>")),
            Err(problem) => Err(local_address_reply(problem, false)),
        })
        .collect();
    Ok(Plan {
        mail,
        rcpts,
        message,
        downgraded,
        size,
    })
}

/// A 2xx reply.
pub fn is_success(reply: &Reply) -> bool {
    (200..300).contains(&reply.code)
}

/// Per-recipient results: `rcpt` holds each recipient's RCPT reply (or
/// local refusal); `data` is the final DATA reply (or the refusal of the
/// DATA command), `None` when no recipient was accepted.
pub fn results(rcpt: Vec<Reply>, data: Option<&Reply>) -> Vec<RecipientResult> {
    rcpt.into_iter()
        .map(|r| match data {
            Some(d) if is_success(&r) && is_success(d) => RecipientResult::Accepted(d.clone()),
            Some(d) if is_success(&r) => RecipientResult::Rejected(d.clone()),
            _ => RecipientResult::Rejected(r),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(from: &str, to: &[&str]) -> Envelope {
        Envelope {
            mail_from: from.into(),
            recipients: to.iter().map(|s| s.to_string()).collect(),
            eight_bit: false,
            smtputf8: false,
        }
    }

    fn reply(code: u16) -> Reply {
        Reply {
            code,
            enhanced: None,
            text: format!("r{code}"),
        }
    }

    #[test]
    fn addresses() {
        assert_eq!(check_address("a@b.example"), Ok(()));
        assert_eq!(check_address("\"john doe\"@b.example"), Ok(()));
        assert_eq!(check_address("jörg@b.example"), Ok(()));
        assert_eq!(check_address(""), Err(AddressProblem::Empty));
        assert_eq!(
            check_address("a@b\r\nRCPT TO:<x@y>"),
            Err(AddressProblem::ForbiddenCharacter)
        );
        assert_eq!(
            check_address("a@b\n"),
            Err(AddressProblem::ForbiddenCharacter)
        );
        assert_eq!(
            check_address("a>@b"),
            Err(AddressProblem::ForbiddenCharacter)
        );
        assert_eq!(
            check_address("a@b SIZE=1"),
            Err(AddressProblem::UnquotedSpace)
        );
        assert_eq!(
            check_address("\"a b\"@c d"),
            Err(AddressProblem::UnquotedSpace)
        );
        assert_eq!(
            check_address(&"a".repeat(MAX_ADDRESS + 1)),
            Err(AddressProblem::TooLong)
        );
    }

    #[test]
    fn mail_parameters() {
        let caps = Capabilities {
            esmtp: true,
            size: true,
            max_size: Some(1000),
            eight_bit_mime: true,
            smtputf8: true,
            ..Capabilities::default()
        };
        let mut e = env("a@b.example", &["c@d.example"]);
        let p = plan(&e, b"hi", &caps).expect("fits");
        assert_eq!(p.mail, "MAIL FROM:<a@b.example> SIZE=4");
        assert_eq!(p.rcpts, vec![Ok("RCPT TO:<c@d.example>".to_string())]);
        e.eight_bit = true;
        e.smtputf8 = true;
        let p = plan(&e, b"hi\n", &caps).expect("fits");
        assert_eq!(
            p.mail,
            "MAIL FROM:<a@b.example> SIZE=4 BODY=8BITMIME SMTPUTF8"
        );
        assert!(!p.downgraded);
        assert_eq!(p.message.as_ref(), b"hi\n");
        // Unflagged 8-bit content is noticed.
        e.eight_bit = false;
        e.smtputf8 = false;
        let p = plan(&e, "\u{e9}".as_bytes(), &caps).expect("fits");
        assert_eq!(p.mail, "MAIL FROM:<a@b.example> SIZE=4 BODY=8BITMIME");
    }

    #[test]
    fn null_sender_and_no_extensions() {
        let e = Envelope {
            eight_bit: true,
            ..env("", &["c@d.example"])
        };
        let p = plan(&e, b"x", &Capabilities::default()).expect("plain SMTP");
        assert_eq!(p.mail, "MAIL FROM:<>");
        // Flagged 8-bit but 7-bit bytes: nothing to convert.
        assert!(!p.downgraded);
        assert_eq!(p.message.as_ref(), b"x");
    }

    #[test]
    fn eight_bit_for_a_server_without_8bitmime_is_converted() {
        let caps = Capabilities {
            esmtp: true,
            size: true,
            max_size: Some(1000),
            ..Capabilities::default()
        };
        let e = Envelope {
            eight_bit: true,
            ..env("a@b.example", &["c@d.example"])
        };
        let m = "Subject: x\r\n\r\ncaf\u{e9}\r\n";
        let p = plan(&e, m.as_bytes(), &caps).expect("converted");
        assert!(p.downgraded);
        let sent = String::from_utf8(p.message.to_vec()).expect("7-bit");
        assert!(sent.ends_with("Content-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9\r\n"));
        // No BODY=8BITMIME, and SIZE is the converted size.
        assert_eq!(
            p.mail,
            format!("MAIL FROM:<a@b.example> SIZE={}", sent.len())
        );
        // SIZE is checked against the converted message.
        let small = Capabilities {
            max_size: Some(m.len() as u64),
            ..caps.clone()
        };
        assert!(matches!(
            plan(&e, m.as_bytes(), &small),
            Err(ClientError::TooLarge { .. })
        ));
        // Not convertible: refused before anything is sent.
        let binary = "MIME-Version: 1.0\r\nContent-Transfer-Encoding: binary\r\n\r\n\u{e9}";
        assert!(matches!(
            plan(&e, binary.as_bytes(), &caps),
            Err(ClientError::Unconvertible(downgrade::Unconvertible::Binary))
        ));
        // A server with 8BITMIME gets the bytes as they are.
        let with = Capabilities {
            eight_bit_mime: true,
            ..caps
        };
        let p = plan(&e, binary.as_bytes(), &with).expect("unchanged");
        assert!(!p.downgraded);
        assert_eq!(p.message.as_ref(), binary.as_bytes());
        assert!(p.mail.ends_with(" BODY=8BITMIME"));
    }

    #[test]
    fn refusals_before_sending() {
        let caps = Capabilities {
            esmtp: true,
            size: true,
            max_size: Some(10),
            ..Capabilities::default()
        };
        let e = env("a@b.example", &["c@d.example"]);
        assert!(matches!(
            plan(&e, &[b'x'; 20], &caps),
            Err(ClientError::TooLarge {
                size: 22,
                limit: 10
            })
        ));
        let utf8 = env("a@b.example", &["jörg@d.example"]);
        assert!(matches!(
            plan(&utf8, b"x", &caps),
            Err(ClientError::Unsupported("SMTPUTF8"))
        ));
        let bad_sender = env("a@b\r\nDATA", &["c@d.example"]);
        match plan(&bad_sender, b"x", &caps) {
            Err(ClientError::Reply { reply, .. }) => {
                assert_eq!(reply.code, 553);
                assert!(reply.is_permanent());
            }
            other => panic!("unexpected {other:?}"),
        }
        let bad_rcpt = env("a@b.example", &["ok@d.example", "x@y\r\nQUIT"]);
        let p = plan(&bad_rcpt, b"x", &caps).expect("the transaction goes on");
        assert!(p.rcpts[0].is_ok());
        assert!(matches!(&p.rcpts[1], Err(r) if r.code == 553));
    }

    #[test]
    fn result_assembly() {
        let data_ok = reply(250);
        assert_eq!(
            results(vec![reply(250), reply(550), reply(251)], Some(&data_ok)),
            vec![
                RecipientResult::Accepted(data_ok.clone()),
                RecipientResult::Rejected(reply(550)),
                RecipientResult::Accepted(data_ok.clone()),
            ]
        );
        let data_bad = reply(554);
        assert_eq!(
            results(vec![reply(250), reply(450)], Some(&data_bad)),
            vec![
                RecipientResult::Rejected(data_bad.clone()),
                RecipientResult::Rejected(reply(450)),
            ]
        );
        assert_eq!(
            results(vec![reply(550)], None),
            vec![RecipientResult::Rejected(reply(550))]
        );
    }
}
