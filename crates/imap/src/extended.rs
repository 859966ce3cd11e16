//! Command syntax imap-codec does not parse (pure): ESEARCH's
//! `SEARCH RETURN (...)` (RFC 4731), split off so the codec can parse the
//! rest, and LIST-EXTENDED (RFC 5258) with LIST-STATUS (RFC 5819):
//! selection options, several patterns and return options.

use thiserror::Error;

/// The command uses extended syntax this server does not accept.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("{0}")]
pub struct SyntaxError(pub &'static str);

/// ESEARCH result options (`RETURN ()` means ALL).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SearchReturn {
    pub min: bool,
    pub max: bool,
    pub count: bool,
    pub all: bool,
}

/// If `msg` is `tag [UID] SEARCH RETURN (opts) rest`, returns the options
/// and `tag [UID] SEARCH rest` for the codec.
pub fn split_search_return(msg: &[u8]) -> Result<Option<(SearchReturn, Vec<u8>)>, SyntaxError> {
    let Some(sp) = msg.iter().position(|&b| b == b' ') else {
        return Ok(None);
    };
    let mut pos = sp + 1;
    if starts_with_ci(&msg[pos..], b"UID ") {
        pos += 4;
    }
    if !starts_with_ci(&msg[pos..], b"SEARCH ") {
        return Ok(None);
    }
    pos += 7;
    let keep = pos;
    if !starts_with_ci(&msg[pos..], b"RETURN (") {
        return Ok(None);
    }
    pos += 8;
    let Some(close) = msg[pos..].iter().position(|&b| b == b')') else {
        return Err(SyntaxError("unterminated RETURN options"));
    };
    let opts = &msg[pos..pos + close];
    pos += close + 1;
    if msg.get(pos) != Some(&b' ') {
        return Err(SyntaxError("search criteria expected after RETURN options"));
    }
    pos += 1;
    let mut ret = SearchReturn::default();
    for opt in opts.split(|&b| b == b' ').filter(|o| !o.is_empty()) {
        match opt.to_ascii_uppercase().as_slice() {
            b"MIN" => ret.min = true,
            b"MAX" => ret.max = true,
            b"COUNT" => ret.count = true,
            b"ALL" => ret.all = true,
            _ => return Err(SyntaxError("unsupported SEARCH RETURN option")),
        }
    }
    if !(ret.min || ret.max || ret.count || ret.all) {
        ret.all = true;
    }
    let mut rewritten = msg[..keep].to_vec();
    rewritten.extend_from_slice(&msg[pos..]);
    Ok(Some((ret, rewritten)))
}

fn starts_with_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.len() >= needle.len() && hay[..needle.len()].eq_ignore_ascii_case(needle)
}

/// LIST-EXTENDED selection options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListSelect {
    pub subscribed: bool,
    pub special_use: bool,
    pub recursive_match: bool,
}

/// STATUS items (for STATUS and LIST-STATUS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusItem {
    Messages,
    Recent,
    UidNext,
    UidValidity,
    Unseen,
    HighestModSeq,
    Size,
}

impl StatusItem {
    pub fn parse(atom: &[u8]) -> Option<StatusItem> {
        Some(match atom.to_ascii_uppercase().as_slice() {
            b"MESSAGES" => StatusItem::Messages,
            b"RECENT" => StatusItem::Recent,
            b"UIDNEXT" => StatusItem::UidNext,
            b"UIDVALIDITY" => StatusItem::UidValidity,
            b"UNSEEN" => StatusItem::Unseen,
            b"HIGHESTMODSEQ" => StatusItem::HighestModSeq,
            b"SIZE" => StatusItem::Size,
            _ => return None,
        })
    }
}

/// LIST-EXTENDED return options.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListReturn {
    pub subscribed: bool,
    pub children: bool,
    pub special_use: bool,
    pub status: Option<Vec<StatusItem>>,
}

/// A LIST command in basic or extended form.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListCommand {
    pub reference: Vec<u8>,
    pub patterns: Vec<Vec<u8>>,
    pub select: ListSelect,
    pub ret: ListReturn,
    /// Selection or return options were given (LIST-EXTENDED rules).
    pub extended: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Atom(Vec<u8>),
    Quoted(Vec<u8>),
    Open,
    Close,
}

/// Tokens of one line (no literals): atoms, quoted strings, parentheses.
fn tokenize(line: &[u8]) -> Result<Vec<Token>, SyntaxError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < line.len() {
        match line[i] {
            b' ' => i += 1,
            b'(' => {
                out.push(Token::Open);
                i += 1;
            }
            b')' => {
                out.push(Token::Close);
                i += 1;
            }
            b'"' => {
                let mut s = Vec::new();
                i += 1;
                loop {
                    match line.get(i) {
                        None => return Err(SyntaxError("unterminated quoted string")),
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(b'\\') => {
                            match line.get(i + 1) {
                                Some(&c @ (b'"' | b'\\')) => s.push(c),
                                _ => return Err(SyntaxError("bad escape in quoted string")),
                            }
                            i += 2;
                        }
                        Some(&c) => {
                            s.push(c);
                            i += 1;
                        }
                    }
                }
                out.push(Token::Quoted(s));
            }
            b'{' => return Err(SyntaxError("literal")),
            _ => {
                let start = i;
                while i < line.len() && !matches!(line[i], b' ' | b'(' | b')' | b'"') {
                    i += 1;
                }
                out.push(Token::Atom(line[start..i].to_vec()));
            }
        }
    }
    Ok(out)
}

/// Parses `tag LIST ...` when the message is one line without literals.
/// `Ok(None)`: not a LIST command, or one with literals (the codec's turn).
pub fn parse_list(msg: &[u8]) -> Result<Option<ListCommand>, SyntaxError> {
    let Some(body) = msg
        .strip_suffix(b"\r\n")
        .or_else(|| msg.strip_suffix(b"\n"))
    else {
        return Ok(None);
    };
    if body.contains(&b'\n') || body.contains(&b'\r') {
        return Ok(None);
    }
    let Some(sp) = body.iter().position(|&b| b == b' ') else {
        return Ok(None);
    };
    let rest = &body[sp + 1..];
    if !starts_with_ci(rest, b"LIST ") {
        return Ok(None);
    }
    let tokens = match tokenize(&rest[5..]) {
        Ok(t) => t,
        Err(SyntaxError("literal")) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut it = tokens.into_iter().peekable();
    let mut cmd = ListCommand::default();
    if it.peek() == Some(&Token::Open) {
        it.next();
        cmd.extended = true;
        loop {
            match it.next() {
                Some(Token::Close) => break,
                Some(Token::Atom(a)) => match a.to_ascii_uppercase().as_slice() {
                    b"SUBSCRIBED" => cmd.select.subscribed = true,
                    b"SPECIAL-USE" => cmd.select.special_use = true,
                    b"RECURSIVEMATCH" => cmd.select.recursive_match = true,
                    b"REMOTE" => {}
                    _ => return Err(SyntaxError("unknown LIST selection option")),
                },
                _ => return Err(SyntaxError("bad LIST selection options")),
            }
        }
        if cmd.select.recursive_match && !cmd.select.subscribed {
            return Err(SyntaxError("RECURSIVEMATCH needs another selection option"));
        }
    }
    cmd.reference = match it.next() {
        Some(Token::Atom(a)) | Some(Token::Quoted(a)) => a,
        _ => return Err(SyntaxError("LIST reference expected")),
    };
    match it.next() {
        Some(Token::Atom(a)) | Some(Token::Quoted(a)) => cmd.patterns.push(a),
        Some(Token::Open) => {
            cmd.extended = true;
            loop {
                match it.next() {
                    Some(Token::Close) => break,
                    Some(Token::Atom(a)) | Some(Token::Quoted(a)) => cmd.patterns.push(a),
                    _ => return Err(SyntaxError("bad LIST pattern list")),
                }
            }
            if cmd.patterns.is_empty() {
                return Err(SyntaxError("empty LIST pattern list"));
            }
        }
        _ => return Err(SyntaxError("LIST pattern expected")),
    }
    match it.next() {
        None => {}
        Some(Token::Atom(a)) if a.eq_ignore_ascii_case(b"RETURN") => {
            cmd.extended = true;
            if it.next() != Some(Token::Open) {
                return Err(SyntaxError("RETURN options expected"));
            }
            loop {
                match it.next() {
                    Some(Token::Close) => break,
                    Some(Token::Atom(a)) => match a.to_ascii_uppercase().as_slice() {
                        b"SUBSCRIBED" => cmd.ret.subscribed = true,
                        b"CHILDREN" => cmd.ret.children = true,
                        b"SPECIAL-USE" => cmd.ret.special_use = true,
                        b"STATUS" => {
                            if it.next() != Some(Token::Open) {
                                return Err(SyntaxError("STATUS items expected"));
                            }
                            let mut items = Vec::new();
                            loop {
                                match it.next() {
                                    Some(Token::Close) => break,
                                    Some(Token::Atom(a)) => match StatusItem::parse(&a) {
                                        Some(item) => items.push(item),
                                        None => return Err(SyntaxError("unknown STATUS item")),
                                    },
                                    _ => return Err(SyntaxError("bad STATUS items")),
                                }
                            }
                            cmd.ret.status = Some(items);
                        }
                        _ => return Err(SyntaxError("unknown LIST return option")),
                    },
                    _ => return Err(SyntaxError("bad LIST return options")),
                }
            }
        }
        _ => return Err(SyntaxError("unexpected LIST arguments")),
    }
    if it.next().is_some() {
        return Err(SyntaxError("unexpected LIST arguments"));
    }
    Ok(Some(cmd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_return_is_split_off() {
        let (ret, rest) = split_search_return(b"a UID SEARCH RETURN (MIN COUNT) UNSEEN\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            ret,
            SearchReturn {
                min: true,
                count: true,
                ..Default::default()
            }
        );
        assert_eq!(rest, b"a UID SEARCH UNSEEN\r\n");
        let (ret, rest) = split_search_return(b"b search return () ALL\r\n")
            .unwrap()
            .unwrap();
        assert!(ret.all && !ret.min);
        assert_eq!(rest, b"b search ALL\r\n");
        assert_eq!(split_search_return(b"c SEARCH UNSEEN\r\n").unwrap(), None);
        assert_eq!(split_search_return(b"c FETCH 1 FLAGS\r\n").unwrap(), None);
        assert!(split_search_return(b"d SEARCH RETURN (SAVE) ALL\r\n").is_err());
        assert!(split_search_return(b"d SEARCH RETURN (MIN\r\n").is_err());
    }

    #[test]
    fn basic_list() {
        let l = parse_list(b"a LIST \"\" \"*\"\r\n").unwrap().unwrap();
        assert_eq!(l.reference, b"");
        assert_eq!(l.patterns, vec![b"*".to_vec()]);
        assert!(!l.extended);
        let l = parse_list(b"a list Projects %\r\n").unwrap().unwrap();
        assert_eq!(l.reference, b"Projects");
        assert_eq!(l.patterns, vec![b"%".to_vec()]);
        assert_eq!(parse_list(b"a LSUB \"\" *\r\n").unwrap(), None);
    }

    #[test]
    fn extended_list() {
        let l = parse_list(
            b"a LIST (SUBSCRIBED RECURSIVEMATCH) \"\" (\"INBOX\" \"Sent*\") RETURN (CHILDREN SPECIAL-USE STATUS (MESSAGES UNSEEN))\r\n",
        )
        .unwrap()
        .unwrap();
        assert!(l.extended && l.select.subscribed && l.select.recursive_match);
        assert_eq!(l.patterns, vec![b"INBOX".to_vec(), b"Sent*".to_vec()]);
        assert!(l.ret.children && l.ret.special_use && !l.ret.subscribed);
        assert_eq!(
            l.ret.status,
            Some(vec![StatusItem::Messages, StatusItem::Unseen])
        );
        let l = parse_list(b"a LIST (SPECIAL-USE) \"\" \"*\"\r\n")
            .unwrap()
            .unwrap();
        assert!(l.select.special_use);
    }

    #[test]
    fn bad_lists() {
        assert!(parse_list(b"a LIST (BOGUS) \"\" *\r\n").is_err());
        assert!(parse_list(b"a LIST (RECURSIVEMATCH) \"\" *\r\n").is_err());
        assert!(parse_list(b"a LIST \"\"\r\n").is_err());
        assert!(parse_list(b"a LIST \"\" * EXTRA\r\n").is_err());
        assert!(parse_list(b"a LIST \"\" \"unterminated\r\n").is_err());
        assert!(parse_list(b"a LIST \"\" * RETURN (STATUS (BOGUS))\r\n").is_err());
        // Literals are left to the codec.
        assert_eq!(parse_list(b"a LIST \"\" {1}\r\n*\r\n").unwrap(), None);
    }

    #[test]
    fn quoted_escapes() {
        let l = parse_list(b"a LIST \"\" \"a\\\"b\"\r\n").unwrap().unwrap();
        assert_eq!(l.patterns, vec![b"a\"b".to_vec()]);
    }
}
