//! POP3 command lines parsed into [`Command`] values (pure, no I/O).
//!
//! Verbs are case-insensitive (RFC 1939 §3); message numbers and line counts
//! are plain decimal digits. `PASS` takes the rest of the line verbatim so
//! that passwords may contain spaces.

use thiserror::Error;

/// One client command, with validated arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `CAPA` (RFC 2449).
    Capa,
    /// `STLS` (RFC 2595): start TLS on this connection.
    Stls,
    /// `USER name`.
    User(String),
    /// `PASS secret` (the rest of the line, verbatim).
    Pass(String),
    /// `AUTH [mechanism [initial-response]]` (RFC 5034); `AUTH` alone lists
    /// the mechanisms.
    Auth {
        mechanism: Option<String>,
        initial: Option<String>,
    },
    Stat,
    /// `LIST [msg]`.
    List(Option<u32>),
    /// `UIDL [msg]`.
    Uidl(Option<u32>),
    /// `RETR msg`.
    Retr(u32),
    /// `TOP msg lines`.
    Top {
        msg: u32,
        lines: u32,
    },
    /// `DELE msg`.
    Dele(u32),
    Rset,
    Noop,
    Quit,
}

impl Command {
    /// The verb as sent on the wire (upper case), for logs.
    pub fn verb(&self) -> &'static str {
        match self {
            Command::Capa => "CAPA",
            Command::Stls => "STLS",
            Command::User(_) => "USER",
            Command::Pass(_) => "PASS",
            Command::Auth { .. } => "AUTH",
            Command::Stat => "STAT",
            Command::List(_) => "LIST",
            Command::Uidl(_) => "UIDL",
            Command::Retr(_) => "RETR",
            Command::Top { .. } => "TOP",
            Command::Dele(_) => "DELE",
            Command::Rset => "RSET",
            Command::Noop => "NOOP",
            Command::Quit => "QUIT",
        }
    }
}

/// Why a command line was refused; the `Display` text is sent after `-ERR `.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("Empty command")]
    Empty,
    #[error("Unknown command")]
    Unknown,
    #[error("Invalid characters in command")]
    NotUtf8,
    #[error("{0}: missing argument")]
    MissingArgument(&'static str),
    #[error("{0}: too many arguments")]
    TooManyArguments(&'static str),
    #[error("{0}: invalid number `{1}` (expected a decimal number)")]
    BadNumber(&'static str, String),
}

/// Longest argument echoed back in an error text.
const MAX_ECHO: usize = 20;

/// Parses one command line (without its CRLF).
pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
    let line = std::str::from_utf8(line).map_err(|_| ParseError::NotUtf8)?;
    let line = line.trim_start_matches(' ');
    if line.trim().is_empty() {
        return Err(ParseError::Empty);
    }
    let (verb, rest) = match line.split_once(' ') {
        Some((v, r)) => (v, r),
        None => (line, ""),
    };
    let verb = verb.to_ascii_uppercase();
    let args: Vec<&str> = rest.split_ascii_whitespace().collect();
    match verb.as_str() {
        "CAPA" => no_args("CAPA", &args).map(|()| Command::Capa),
        "STLS" => no_args("STLS", &args).map(|()| Command::Stls),
        "STAT" => no_args("STAT", &args).map(|()| Command::Stat),
        "RSET" => no_args("RSET", &args).map(|()| Command::Rset),
        "NOOP" => no_args("NOOP", &args).map(|()| Command::Noop),
        "QUIT" => no_args("QUIT", &args).map(|()| Command::Quit),
        "USER" => match args.as_slice() {
            [] => Err(ParseError::MissingArgument("USER")),
            [name] => Ok(Command::User((*name).to_owned())),
            _ => Err(ParseError::TooManyArguments("USER")),
        },
        "PASS" => {
            if rest.is_empty() {
                Err(ParseError::MissingArgument("PASS"))
            } else {
                Ok(Command::Pass(rest.to_owned()))
            }
        }
        "AUTH" => match args.as_slice() {
            [] => Ok(Command::Auth {
                mechanism: None,
                initial: None,
            }),
            [mech] => Ok(Command::Auth {
                mechanism: Some(mech.to_ascii_uppercase()),
                initial: None,
            }),
            [mech, initial] => Ok(Command::Auth {
                mechanism: Some(mech.to_ascii_uppercase()),
                initial: Some((*initial).to_owned()),
            }),
            _ => Err(ParseError::TooManyArguments("AUTH")),
        },
        "LIST" => optional_number("LIST", &args).map(Command::List),
        "UIDL" => optional_number("UIDL", &args).map(Command::Uidl),
        "RETR" => one_number("RETR", &args).map(Command::Retr),
        "DELE" => one_number("DELE", &args).map(Command::Dele),
        "TOP" => match args.as_slice() {
            [] | [_] => Err(ParseError::MissingArgument("TOP")),
            [msg, lines] => Ok(Command::Top {
                msg: number("TOP", msg)?,
                lines: number("TOP", lines)?,
            }),
            _ => Err(ParseError::TooManyArguments("TOP")),
        },
        _ => Err(ParseError::Unknown),
    }
}

fn no_args(verb: &'static str, args: &[&str]) -> Result<(), ParseError> {
    if args.is_empty() {
        Ok(())
    } else {
        Err(ParseError::TooManyArguments(verb))
    }
}

fn optional_number(verb: &'static str, args: &[&str]) -> Result<Option<u32>, ParseError> {
    match args {
        [] => Ok(None),
        [n] => number(verb, n).map(Some),
        _ => Err(ParseError::TooManyArguments(verb)),
    }
}

fn one_number(verb: &'static str, args: &[&str]) -> Result<u32, ParseError> {
    match args {
        [] => Err(ParseError::MissingArgument(verb)),
        [n] => number(verb, n),
        _ => Err(ParseError::TooManyArguments(verb)),
    }
}

/// Digits only (no sign, no spaces), fitting in a `u32`.
fn number(verb: &'static str, s: &str) -> Result<u32, ParseError> {
    let bad = || {
        let shown: String = s.chars().take(MAX_ECHO).collect();
        ParseError::BadNumber(verb, shown)
    };
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    s.parse().map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Command, ParseError> {
        parse(s.as_bytes())
    }

    #[test]
    fn verbs_are_case_insensitive() {
        assert_eq!(p("capa"), Ok(Command::Capa));
        assert_eq!(p("Stat"), Ok(Command::Stat));
        assert_eq!(p("rSeT"), Ok(Command::Rset));
        assert_eq!(p("noop"), Ok(Command::Noop));
        assert_eq!(p("quit"), Ok(Command::Quit));
        assert_eq!(p("stls"), Ok(Command::Stls));
        assert_eq!(p("retr 3"), Ok(Command::Retr(3)));
        assert_eq!(p("top 1 10"), Ok(Command::Top { msg: 1, lines: 10 }));
    }

    #[test]
    fn user_and_pass() {
        assert_eq!(p("USER alice"), Ok(Command::User("alice".into())));
        assert_eq!(p("USER"), Err(ParseError::MissingArgument("USER")));
        assert_eq!(
            p("USER alice bob"),
            Err(ParseError::TooManyArguments("USER"))
        );
        // The password is the rest of the line, spaces included.
        assert_eq!(
            p("PASS  secret with spaces "),
            Ok(Command::Pass(" secret with spaces ".into()))
        );
        assert_eq!(p("PASS"), Err(ParseError::MissingArgument("PASS")));
        assert_eq!(p("PASS "), Err(ParseError::MissingArgument("PASS")));
    }

    #[test]
    fn auth_forms() {
        assert_eq!(
            p("AUTH"),
            Ok(Command::Auth {
                mechanism: None,
                initial: None
            })
        );
        assert_eq!(
            p("auth plain"),
            Ok(Command::Auth {
                mechanism: Some("PLAIN".into()),
                initial: None
            })
        );
        assert_eq!(
            p("AUTH PLAIN AGFsaWNlAHNlY3JldA=="),
            Ok(Command::Auth {
                mechanism: Some("PLAIN".into()),
                initial: Some("AGFsaWNlAHNlY3JldA==".into())
            })
        );
        assert_eq!(
            p("AUTH PLAIN a b"),
            Err(ParseError::TooManyArguments("AUTH"))
        );
    }

    #[test]
    fn optional_message_numbers() {
        assert_eq!(p("LIST"), Ok(Command::List(None)));
        assert_eq!(p("LIST 2"), Ok(Command::List(Some(2))));
        assert_eq!(p("UIDL"), Ok(Command::Uidl(None)));
        assert_eq!(p("UIDL 7"), Ok(Command::Uidl(Some(7))));
        assert_eq!(p("LIST 1 2"), Err(ParseError::TooManyArguments("LIST")));
    }

    #[test]
    fn bad_numbers_are_refused() {
        assert_eq!(
            p("RETR abc"),
            Err(ParseError::BadNumber("RETR", "abc".into()))
        );
        assert_eq!(
            p("RETR -1"),
            Err(ParseError::BadNumber("RETR", "-1".into()))
        );
        assert_eq!(
            p("DELE +1"),
            Err(ParseError::BadNumber("DELE", "+1".into()))
        );
        assert_eq!(
            p("DELE 1.5"),
            Err(ParseError::BadNumber("DELE", "1.5".into()))
        );
        assert!(matches!(
            p("RETR 99999999999999999999"),
            Err(ParseError::BadNumber("RETR", _))
        ));
        assert!(matches!(p("TOP 1 x"), Err(ParseError::BadNumber("TOP", _))));
        // Long garbage is not echoed in full.
        let long = format!("LIST {}", "x".repeat(500));
        match p(&long) {
            Err(ParseError::BadNumber(_, shown)) => assert_eq!(shown.len(), MAX_ECHO),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn missing_and_extra_arguments() {
        assert_eq!(p("RETR"), Err(ParseError::MissingArgument("RETR")));
        assert_eq!(p("DELE"), Err(ParseError::MissingArgument("DELE")));
        assert_eq!(p("TOP 1"), Err(ParseError::MissingArgument("TOP")));
        assert_eq!(p("RETR 1 2"), Err(ParseError::TooManyArguments("RETR")));
        assert_eq!(p("TOP 1 2 3"), Err(ParseError::TooManyArguments("TOP")));
        assert_eq!(p("STAT 1"), Err(ParseError::TooManyArguments("STAT")));
        assert_eq!(p("QUIT now"), Err(ParseError::TooManyArguments("QUIT")));
        assert_eq!(p("NOOP x"), Err(ParseError::TooManyArguments("NOOP")));
        assert_eq!(p("STLS now"), Err(ParseError::TooManyArguments("STLS")));
    }

    #[test]
    fn unknown_empty_and_binary() {
        assert_eq!(p(""), Err(ParseError::Empty));
        assert_eq!(p("   "), Err(ParseError::Empty));
        assert_eq!(p("APOP x y"), Err(ParseError::Unknown));
        assert_eq!(p("RETRIEVE 1"), Err(ParseError::Unknown));
        assert_eq!(parse(b"RETR \xff"), Err(ParseError::NotUtf8));
    }

    #[test]
    fn tolerates_trailing_space() {
        assert_eq!(p("STAT "), Ok(Command::Stat));
        assert_eq!(p("RETR 1 "), Ok(Command::Retr(1)));
    }

    #[test]
    fn error_texts_are_clear() {
        assert_eq!(
            ParseError::BadNumber("RETR", "x".into()).to_string(),
            "RETR: invalid number `x` (expected a decimal number)"
        );
        assert_eq!(
            ParseError::MissingArgument("TOP").to_string(),
            "TOP: missing argument"
        );
    }
}
