//! Zone-file (RFC 1035 master file) rendering of TXT values: the value cut
//! into character-strings of at most 255 bytes, each quoted and escaped.

/// The longest character-string in a TXT record.
pub const MAX_TXT_STRING: usize = 255;

/// Cuts `value` into pieces of at most 255 bytes (whole bytes, in order).
pub fn txt_strings(value: &str) -> Vec<&[u8]> {
    let bytes = value.as_bytes();
    if bytes.is_empty() {
        return vec![bytes];
    }
    bytes.chunks(MAX_TXT_STRING).collect()
}

/// One quoted, escaped character-string: `"` and `\` get a backslash,
/// bytes outside printable ASCII become `\DDD`.
pub fn quote_txt_string(piece: &[u8]) -> String {
    let mut out = String::with_capacity(piece.len() + 2);
    out.push('"');
    for &b in piece {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(b as char);
            }
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\{b:03}")),
        }
    }
    out.push('"');
    out
}

/// The value as the RDATA of a zone-file TXT line: quoted strings joined
/// by spaces.
pub fn txt_rdata(value: &str) -> String {
    txt_strings(value)
        .into_iter()
        .map(quote_txt_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `name. IN TXT "..." "..."` (`name` gets its trailing dot).
pub fn txt_zone_line(name: &str, value: &str) -> String {
    format!("{} IN TXT {}", fqdn(name), txt_rdata(value))
}

/// `name` with exactly one trailing dot.
pub fn fqdn(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_one_string() {
        assert_eq!(
            txt_zone_line("example.org", "v=spf1 mx -all"),
            "example.org. IN TXT \"v=spf1 mx -all\""
        );
    }

    #[test]
    fn long_values_split_at_255_bytes() {
        let value = "x".repeat(600);
        let rdata = txt_rdata(&value);
        let parts: Vec<&str> = rdata.split(' ').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].len(), 257);
        assert_eq!(parts[1].len(), 257);
        assert_eq!(parts[2].len(), 92);
    }

    #[test]
    fn quotes_and_controls_are_escaped() {
        assert_eq!(quote_txt_string(b"a\"b\\c\n"), "\"a\\\"b\\\\c\\010\"");
        assert_eq!(txt_rdata(""), "\"\"");
    }
}
