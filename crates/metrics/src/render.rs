//! The Prometheus text exposition format (0.0.4) of a [`Snapshot`]: one
//! `# HELP` and one `# TYPE` line per family, then its samples.

use crate::{BounceClass, Protocol, Snapshot};
use std::fmt::Write;

/// One family being written.
struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, name: &'static str, kind: &str, help: &str) -> Family<'a> {
        // Writing into a String cannot fail.
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        Family { out, name }
    }

    /// One sample; `labels` are (name, value) pairs, the values escaped here.
    fn sample(&mut self, labels: &[(&str, &str)], value: u64) {
        self.out.push_str(self.name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    fn per_protocol(&mut self, protocols: &[Protocol], values: &[u64]) {
        for p in protocols {
            let v = values.get(*p as usize).copied().unwrap_or(0);
            self.sample(&[("protocol", p.name())], v);
        }
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// Renders every family.
pub(crate) fn render(s: &Snapshot, queue_length: u64, queue_oldest_secs: u64) -> String {
    let mut out = String::with_capacity(4096);
    let receiving = [Protocol::Smtp, Protocol::Submission];
    let all = Protocol::ALL;

    let mut f = Family::new(
        &mut out,
        "postamt_messages_received_total",
        "counter",
        "Messages accepted (250 after DATA or BDAT), by the port they came in on.",
    );
    f.per_protocol(&receiving, &s.received);

    let mut f = Family::new(
        &mut out,
        "postamt_deliveries_total",
        "counter",
        "Recipient deliveries: delivered (local or remote), deferred for a retry, bounced for good.",
    );
    f.sample(
        &[("result", "delivered"), ("destination", "local")],
        s.delivered_local,
    );
    f.sample(
        &[("result", "delivered"), ("destination", "remote")],
        s.delivered_remote,
    );
    f.sample(&[("result", "deferred")], s.deferred);
    f.sample(&[("result", "bounced")], s.bounced_total());

    let mut f = Family::new(
        &mut out,
        "postamt_bounces_total",
        "counter",
        "Recipients that failed for good, by the class of the enhanced status code (RFC 3463).",
    );
    for c in BounceClass::ALL {
        f.sample(&[("class", c.name())], s.bounced[c as usize]);
    }

    let mut f = Family::new(
        &mut out,
        "postamt_sessions_active",
        "gauge",
        "Client sessions open now, by protocol.",
    );
    f.per_protocol(&all, &s.sessions_active);

    let mut f = Family::new(
        &mut out,
        "postamt_sessions_total",
        "counter",
        "Client sessions started, by protocol.",
    );
    f.per_protocol(&all, &s.sessions_total);

    let mut f = Family::new(
        &mut out,
        "postamt_login_failures_total",
        "counter",
        "Refused logins (SMTP AUTH, POP3, IMAP, admin), by protocol.",
    );
    f.per_protocol(&all, &s.login_failures);

    let mut f = Family::new(
        &mut out,
        "postamt_tls_handshakes_total",
        "counter",
        "TLS handshakes (implicit TLS and STARTTLS/STLS), by protocol and result.",
    );
    for p in all {
        let i = p as usize;
        f.sample(&[("protocol", p.name()), ("result", "ok")], s.tls_ok[i]);
        f.sample(
            &[("protocol", p.name()), ("result", "failed")],
            s.tls_failed[i],
        );
    }

    let mut f = Family::new(
        &mut out,
        "postamt_bytes_received_total",
        "counter",
        "Bytes of accepted messages.",
    );
    f.sample(&[], s.bytes_received);

    let mut f = Family::new(
        &mut out,
        "postamt_bytes_sent_total",
        "counter",
        "Bytes of message data sent to clients or relayed out, by protocol.",
    );
    f.per_protocol(&all, &s.bytes_sent);

    let mut f = Family::new(
        &mut out,
        "postamt_queue_messages",
        "gauge",
        "Messages in the queue.",
    );
    f.sample(&[], queue_length);

    let mut f = Family::new(
        &mut out,
        "postamt_queue_oldest_seconds",
        "gauge",
        "Age in seconds of the oldest message in the queue (0 when it is empty).",
    );
    f.sample(&[], queue_oldest_secs);

    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Metrics;
    use std::collections::{BTreeMap, BTreeSet};

    /// A strict reader of the text format: every sample belongs to a family
    /// announced by `# HELP` then `# TYPE` (each once), names and labels
    /// are well formed, label values properly quoted and escaped, no series
    /// repeats, values are numbers. Returns series -> value.
    fn parse_strict(text: &str) -> Result<BTreeMap<String, f64>, String> {
        fn is_name(s: &str) -> bool {
            let mut b = s.bytes();
            matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_' || c == b':')
                && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
        }
        fn is_label(s: &str) -> bool {
            let mut b = s.bytes();
            matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
                && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
        }
        if !text.ends_with('\n') {
            return Err("output does not end with a newline".into());
        }
        let mut helped = BTreeSet::new();
        let mut typed: BTreeMap<String, String> = BTreeMap::new();
        let mut current: Option<String> = None;
        let mut series = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let n = n + 1;
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest
                    .split_once(' ')
                    .ok_or(format!("{n}: HELP without text"))?;
                if !is_name(name) || help.trim().is_empty() || !helped.insert(name.to_string()) {
                    return Err(format!("{n}: bad or repeated HELP"));
                }
                current = None;
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest
                    .split_once(' ')
                    .ok_or(format!("{n}: TYPE without kind"))?;
                if !helped.contains(name) || typed.contains_key(name) {
                    return Err(format!("{n}: TYPE before HELP or repeated"));
                }
                if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                    return Err(format!("{n}: unknown type {kind}"));
                }
                typed.insert(name.into(), kind.into());
                current = Some(name.into());
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                return Err(format!("{n}: stray line {line:?}"));
            }
            let fam = current
                .as_deref()
                .ok_or(format!("{n}: sample outside a family"))?;
            let (name, rest) = match line.find(['{', ' ']) {
                Some(i) => line.split_at(i),
                None => return Err(format!("{n}: no value")),
            };
            if name != fam {
                return Err(format!("{n}: sample {name} in family {fam}"));
            }
            let mut labels = Vec::new();
            let value_part = if let Some(body) = rest.strip_prefix('{') {
                let mut chars = body.char_indices().peekable();
                let end;
                loop {
                    let start = chars.peek().map(|(i, _)| *i).ok_or("unterminated")?;
                    let mut key_end = start;
                    for (i, c) in chars.by_ref() {
                        if c == '=' {
                            key_end = i;
                            break;
                        }
                    }
                    let key = &body[start..key_end];
                    if !is_label(key) {
                        return Err(format!("{n}: bad label name {key:?}"));
                    }
                    if chars.next().map(|(_, c)| c) != Some('"') {
                        return Err(format!("{n}: label value not quoted"));
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next() {
                            Some((_, '\\')) => match chars.next() {
                                Some((_, '\\')) => value.push('\\'),
                                Some((_, '"')) => value.push('"'),
                                Some((_, 'n')) => value.push('\n'),
                                _ => return Err(format!("{n}: bad escape")),
                            },
                            Some((_, '"')) => break,
                            Some((_, '\n')) | None => return Err(format!("{n}: unterminated")),
                            Some((_, c)) => value.push(c),
                        }
                    }
                    labels.push((key.to_string(), value));
                    match chars.next() {
                        Some((_, ',')) => continue,
                        Some((i, '}')) => {
                            end = i + 1;
                            break;
                        }
                        _ => return Err(format!("{n}: bad label separator")),
                    }
                }
                &body[end..]
            } else {
                rest
            };
            let value = value_part
                .strip_prefix(' ')
                .ok_or(format!("{n}: no space before value"))?;
            let v: f64 = value
                .parse()
                .map_err(|_| format!("{n}: bad value {value:?}"))?;
            if typed[fam] == "counter" && v < 0.0 {
                return Err(format!("{n}: negative counter"));
            }
            let keys: BTreeSet<_> = labels.iter().map(|(k, _)| k).collect();
            if keys.len() != labels.len() {
                return Err(format!("{n}: repeated label"));
            }
            let key = format!("{name}{labels:?}");
            if series.insert(key, v).is_some() {
                return Err(format!("{n}: repeated series"));
            }
        }
        if helped.len() != typed.len() {
            return Err("a HELP without TYPE".into());
        }
        Ok(series)
    }

    fn value(series: &BTreeMap<String, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
        let labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let key = format!("{name}{labels:?}");
        *series
            .get(&key)
            .unwrap_or_else(|| panic!("no series {key}"))
    }

    #[test]
    fn output_parses_strictly_and_carries_every_value() {
        let m = Metrics::new();
        m.message_received(Protocol::Submission, 1234);
        m.delivered(true);
        m.delivered(false);
        m.deferred();
        m.deferred();
        m.bounced(BounceClass::Policy);
        m.session_started(Protocol::Imap);
        m.login_failed(Protocol::Pop3);
        m.tls_handshake(Protocol::Smtp, false);
        m.bytes_sent(Protocol::Pop3, 77);
        let text = m.render(5, 3600);
        let s = parse_strict(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        fn p(proto: &str) -> [(&str, &str); 1] {
            [("protocol", proto)]
        }
        assert_eq!(
            value(&s, "postamt_messages_received_total", &p("submission")),
            1.0
        );
        assert_eq!(
            value(&s, "postamt_messages_received_total", &p("smtp")),
            0.0
        );
        assert_eq!(
            value(
                &s,
                "postamt_deliveries_total",
                &[("result", "delivered"), ("destination", "remote")]
            ),
            1.0
        );
        assert_eq!(
            value(&s, "postamt_deliveries_total", &[("result", "deferred")]),
            2.0
        );
        assert_eq!(
            value(&s, "postamt_deliveries_total", &[("result", "bounced")]),
            1.0
        );
        assert_eq!(
            value(&s, "postamt_bounces_total", &[("class", "policy")]),
            1.0
        );
        assert_eq!(value(&s, "postamt_sessions_active", &p("imap")), 1.0);
        assert_eq!(value(&s, "postamt_sessions_total", &p("imap")), 1.0);
        assert_eq!(value(&s, "postamt_login_failures_total", &p("pop3")), 1.0);
        assert_eq!(
            value(
                &s,
                "postamt_tls_handshakes_total",
                &[("protocol", "smtp"), ("result", "failed")]
            ),
            1.0
        );
        assert_eq!(value(&s, "postamt_bytes_received_total", &[]), 1234.0);
        assert_eq!(value(&s, "postamt_bytes_sent_total", &p("pop3")), 77.0);
        assert_eq!(value(&s, "postamt_queue_messages", &[]), 5.0);
        assert_eq!(value(&s, "postamt_queue_oldest_seconds", &[]), 3600.0);
        // Every family the contract names is there with its type.
        for (name, kind) in [
            ("postamt_messages_received_total", "counter"),
            ("postamt_deliveries_total", "counter"),
            ("postamt_bounces_total", "counter"),
            ("postamt_sessions_active", "gauge"),
            ("postamt_sessions_total", "counter"),
            ("postamt_login_failures_total", "counter"),
            ("postamt_tls_handshakes_total", "counter"),
            ("postamt_bytes_received_total", "counter"),
            ("postamt_bytes_sent_total", "counter"),
            ("postamt_queue_messages", "gauge"),
            ("postamt_queue_oldest_seconds", "gauge"),
        ] {
            assert!(text.contains(&format!("# TYPE {name} {kind}\n")), "{name}");
        }
    }

    #[test]
    fn the_checker_refuses_bad_output() {
        assert!(parse_strict("x 1\n").is_err(), "sample without family");
        assert!(parse_strict("# HELP x h\n# TYPE x counter\nx 1\nx 2\n").is_err());
        assert!(parse_strict("# HELP x h\n# TYPE x counter\nx{a=\"b} 1\n").is_err());
        assert!(parse_strict("# HELP x h\n# TYPE x counter\nx{a=b} 1\n").is_err());
        assert!(parse_strict("# HELP x h\n# TYPE x counter\nx one\n").is_err());
        assert!(parse_strict("# HELP x h\n# TYPE x counter\ny 1\n").is_err());
        assert!(parse_strict("# HELP x h\n# TYPE x counter\nx 1").is_err());
        assert!(parse_strict("# HELP x h\n# TYPE x counter\nx{a=\"\\\"\"} 1\n").is_ok());
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
