//! RFC 5322 address lists (From, To, Cc...) into IMAP ENVELOPE address
//! structures, from the raw header value: display names unquoted but
//! RFC 2047 encoded words left encoded (IMAP sends them so), routes kept
//! as `adl`, groups as start/end markers. Lenient: whatever the header
//! holds gives some list, never an error.

use crate::meta::Address;

/// Most addresses taken from one header.
const MAX_ADDRESSES: usize = 1_000;
/// Most tokens read from one header.
const MAX_TOKENS: usize = 20_000;

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Atom(Vec<u8>),
    Quoted(Vec<u8>),
    Comment(Vec<u8>),
    Literal(Vec<u8>),
    Special(u8),
}

fn tokenize(v: &[u8]) -> Vec<Token> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < v.len() && out.len() < MAX_TOKENS {
        match v[i] {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'"' => {
                let (s, next) = super::header::quoted(v, i);
                out.push(Token::Quoted(s));
                i = next;
            }
            b'(' => {
                let mut depth = 0usize;
                let start = i + 1;
                let mut end = v.len();
                while i < v.len() {
                    match v[i] {
                        b'\\' => i += 1,
                        b'(' => depth += 1,
                        b')' => {
                            depth -= 1;
                            if depth == 0 {
                                end = i;
                                i += 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
                let end = end.min(v.len()).max(start.min(v.len()));
                out.push(Token::Comment(v[start.min(v.len())..end].to_vec()));
            }
            b'[' => {
                let start = i;
                let end = v[i..]
                    .iter()
                    .position(|&b| b == b']')
                    .map_or(v.len(), |p| i + p + 1);
                out.push(Token::Literal(v[start..end].to_vec()));
                i = end;
            }
            c @ (b'<' | b'>' | b':' | b';' | b'@' | b',' | b'.' | b')' | b'\\' | b']') => {
                out.push(Token::Special(c));
                i += 1;
            }
            _ => {
                let start = i;
                while i < v.len()
                    && !matches!(
                        v[i],
                        b' ' | b'\t'
                            | b'\r'
                            | b'\n'
                            | b'"'
                            | b'('
                            | b')'
                            | b'<'
                            | b'>'
                            | b':'
                            | b';'
                            | b'@'
                            | b','
                            | b'.'
                            | b'['
                            | b']'
                            | b'\\'
                    )
                {
                    i += 1;
                }
                out.push(Token::Atom(v[start..i].to_vec()));
            }
        }
    }
    out
}

/// Parses an address-list header value.
pub fn parse_list(raw: &[u8]) -> Vec<Address> {
    let tokens = tokenize(raw);
    let mut out = Vec::new();
    let mut item: Vec<Token> = Vec::new();
    let mut in_angle = false;
    let mut in_group = false;
    for tok in tokens {
        if out.len() >= MAX_ADDRESSES {
            break;
        }
        match tok {
            Token::Special(b'<') => {
                in_angle = true;
                item.push(tok);
            }
            Token::Special(b'>') => {
                in_angle = false;
                item.push(tok);
            }
            Token::Special(b',') if !in_angle => finish(&mut item, &mut out),
            Token::Special(b':')
                if !in_angle && !in_group && !item.contains(&Token::Special(b'@')) =>
            {
                let name = phrase(&item);
                item.clear();
                out.push(Address {
                    name: None,
                    adl: None,
                    mailbox: Some(name),
                    host: None,
                });
                in_group = true;
            }
            Token::Special(b';') if in_group && !in_angle => {
                finish(&mut item, &mut out);
                out.push(Address::default());
                in_group = false;
            }
            other => item.push(other),
        }
    }
    finish(&mut item, &mut out);
    if in_group {
        out.push(Address::default());
    }
    out
}

/// Display-name words joined by single spaces (quoted ones unquoted).
fn phrase(tokens: &[Token]) -> Vec<u8> {
    let mut out = Vec::new();
    for t in tokens {
        let word: &[u8] = match t {
            Token::Atom(a) | Token::Quoted(a) | Token::Literal(a) => a,
            Token::Special(b'.') => b".",
            _ => continue,
        };
        if !out.is_empty() && word != b"." && !out.ends_with(b".") {
            out.push(b' ');
        }
        out.extend_from_slice(word);
    }
    out
}

/// Local part or domain, as written (quoted strings re-quoted).
fn spec_text(tokens: &[Token]) -> Vec<u8> {
    let mut out = Vec::new();
    for t in tokens {
        match t {
            Token::Atom(a) | Token::Literal(a) => out.extend_from_slice(a),
            Token::Quoted(q) => {
                out.push(b'"');
                for &b in q {
                    if b == b'"' || b == b'\\' {
                        out.push(b'\\');
                    }
                    out.push(b);
                }
                out.push(b'"');
            }
            Token::Special(c) if *c != b'<' && *c != b'>' => out.push(*c),
            _ => {}
        }
    }
    out
}

/// (mailbox, host) of an addr-spec: split at the last `@`.
fn addr_spec(tokens: &[Token]) -> (Vec<u8>, Option<Vec<u8>>) {
    match tokens.iter().rposition(|t| *t == Token::Special(b'@')) {
        Some(at) => (spec_text(&tokens[..at]), Some(spec_text(&tokens[at + 1..]))),
        None => (spec_text(tokens), None),
    }
}

fn finish(item: &mut Vec<Token>, out: &mut Vec<Address>) {
    let tokens = std::mem::take(item);
    if !tokens.iter().any(|t| !matches!(t, Token::Comment(_))) {
        return;
    }
    let (name, adl, mailbox, host) =
        if let Some(lt) = tokens.iter().position(|t| *t == Token::Special(b'<')) {
            let name = phrase(&tokens[..lt]);
            let gt = tokens[lt..]
                .iter()
                .position(|t| *t == Token::Special(b'>'))
                .map_or(tokens.len(), |p| lt + p);
            let inner: Vec<Token> = tokens[lt + 1..gt]
                .iter()
                .filter(|t| !matches!(t, Token::Comment(_)))
                .cloned()
                .collect();
            let (adl, spec) = match inner.iter().position(|t| *t == Token::Special(b':')) {
                Some(colon) => (Some(spec_text(&inner[..colon])), &inner[colon + 1..]),
                None => (None, &inner[..]),
            };
            let (mailbox, host) = addr_spec(spec);
            (name, adl, mailbox, host)
        } else {
            let comment = tokens.iter().rev().find_map(|t| match t {
                Token::Comment(c) => Some(c.clone()),
                _ => None,
            });
            let spec: Vec<Token> = tokens
                .into_iter()
                .filter(|t| !matches!(t, Token::Comment(_)))
                .collect();
            let (mailbox, host) = addr_spec(&spec);
            (comment.unwrap_or_default(), None, mailbox, host)
        };
    let non_empty = |v: Vec<u8>| (!v.is_empty()).then_some(v);
    out.push(Address {
        name: non_empty(name),
        adl: adl.and_then(non_empty),
        mailbox: Some(mailbox),
        // NIL host marks a group in IMAP: a missing domain is "" instead.
        host: Some(host.unwrap_or_default()),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(name: Option<&str>, mailbox: &str, host: &str) -> Address {
        Address {
            name: name.map(|n| n.as_bytes().to_vec()),
            adl: None,
            mailbox: Some(mailbox.as_bytes().to_vec()),
            host: Some(host.as_bytes().to_vec()),
        }
    }

    #[test]
    fn common_forms() {
        let got = parse_list(
            b"\"Smith, John\" <john@example.org>, bob@x.y (Bob B), =?utf-8?q?J=C3=B6rg?= <j@z>,\r\n <plain@p>",
        );
        assert_eq!(
            got,
            vec![
                a(Some("Smith, John"), "john", "example.org"),
                a(Some("Bob B"), "bob", "x.y"),
                a(Some("=?utf-8?q?J=C3=B6rg?="), "j", "z"),
                a(None, "plain", "p"),
            ]
        );
    }

    #[test]
    fn groups_routes_and_quoted_locals() {
        let got = parse_list(b"team: a@b, C <c@d>;, \"odd local\"@e, <@r1,@r2:x@y>");
        assert_eq!(got.len(), 6);
        assert_eq!(got[0].mailbox.as_deref(), Some(&b"team"[..]));
        assert_eq!(got[0].host, None);
        assert_eq!(got[1], a(None, "a", "b"));
        assert_eq!(got[2], a(Some("C"), "c", "d"));
        assert_eq!(got[3], Address::default());
        assert_eq!(got[4], a(None, "\"odd local\"", "e"));
        assert_eq!(got[5].adl.as_deref(), Some(&b"@r1,@r2"[..]));
        assert_eq!(got[5].mailbox.as_deref(), Some(&b"x"[..]));

        let empty_group = parse_list(b"undisclosed-recipients:;");
        assert_eq!(empty_group.len(), 2);
        assert_eq!(empty_group[1], Address::default());
    }

    #[test]
    fn junk_never_fails() {
        assert!(parse_list(b"").is_empty());
        assert!(parse_list(b" , ,(only comment)").is_empty());
        let got = parse_list(b"nodomain");
        assert_eq!(got, vec![a(None, "nodomain", "")]);
        let got = parse_list(b"<unterminated@x");
        assert_eq!(got, vec![a(None, "unterminated", "x")]);
        let _ = parse_list(b"\"unterminated <a@b>");
        let _ = parse_list(b"(((( a@b");
        let _ = parse_list(b"a: b: c; ; ; <<>>@@[");
    }
}
