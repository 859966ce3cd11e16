//! The DNS records a domain should publish for mail to and from this
//! server: MX, SPF, DKIM and DMARC, as data and as zone-file lines.

use crate::SenderAuthError;
use crate::domain::normalize_domain;
use crate::keys::{dkim_record_name, read_key_record};
use crate::zone::{fqdn, txt_rdata};
use postamt_config::Config;

/// One record to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsRecord {
    /// Owner name, fully qualified with its trailing dot (`example.org.`).
    pub name: String,
    /// `MX` or `TXT`.
    pub rtype: String,
    /// The RDATA in presentation form for MX (`10 mail.example.org.`), the
    /// raw unquoted text for TXT. Empty when the record cannot be given yet
    /// (see `note`).
    pub value: String,
    /// What it is for, or what to do first.
    pub note: Option<String>,
}

impl DnsRecord {
    /// The record as a zone-file line (`name IN TYPE rdata`, TXT values
    /// quoted and split into strings of at most 255 bytes), preceded by
    /// `; note` comment lines; a record without a value is only comments.
    pub fn zone_file_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if let Some(note) = &self.note {
            lines.extend(note.lines().map(|l| format!("; {l}")));
        }
        if self.value.is_empty() {
            lines.push(format!(
                "; {} IN {} (not available yet)",
                self.name, self.rtype
            ));
        } else if self.rtype == "TXT" {
            lines.push(format!("{} IN TXT {}", self.name, txt_rdata(&self.value)));
        } else {
            lines.push(format!("{} IN {} {}", self.name, self.rtype, self.value));
        }
        lines
    }
}

/// The records for `domain`: MX pointing at `hostname`, SPF allowing the MX
/// hosts, the DKIM key's TXT record (or a note to generate one) and a DMARC
/// policy reporting to the postmaster.
pub fn dns_records(config: &Config, domain: &str) -> Result<Vec<DnsRecord>, SenderAuthError> {
    let domain = normalize_domain(domain)?;
    let hostname = config.hostname.trim_end_matches('.').to_ascii_lowercase();
    let mut records = Vec::with_capacity(4);

    let mut mx_note = format!("Mail for {domain} goes to {hostname}.");
    if !config.is_local_domain(&domain) {
        mx_note.push_str(&format!(
            "\n{domain} is not in `domains` of the configuration: add it so mail for it is accepted."
        ));
    }
    records.push(DnsRecord {
        name: fqdn(&domain),
        rtype: "MX".into(),
        value: format!("10 {}", fqdn(&hostname)),
        note: Some(mx_note),
    });

    records.push(DnsRecord {
        name: fqdn(&domain),
        rtype: "TXT".into(),
        value: "v=spf1 mx -all".into(),
        note: Some(format!(
            "SPF: only the MX hosts of {domain} send its mail. If mail leaves through a smarthost, add it (e.g. include:...)."
        )),
    });

    let dkim_name = dkim_record_name(config, &domain)?;
    let dkim = match read_key_record(config, &domain) {
        Ok(Some(key)) => DnsRecord {
            name: fqdn(&key.txt_name),
            rtype: "TXT".into(),
            value: key.txt_value,
            note: Some(format!("DKIM public key of {}.", key.path.display())),
        },
        Ok(None) => DnsRecord {
            name: fqdn(&dkim_name),
            rtype: "TXT".into(),
            value: String::new(),
            note: Some(format!(
                "DKIM: no key for {domain} yet: run `postamt dkim generate {domain}`."
            )),
        },
        Err(e) => DnsRecord {
            name: fqdn(&dkim_name),
            rtype: "TXT".into(),
            value: String::new(),
            note: Some(format!("DKIM: the key cannot be read: {e}")),
        },
    };
    records.push(dkim);

    let rua = config.postmaster_address();
    let mut dmarc_note = String::from(
        "DMARC: unauthenticated mail claiming to be from this domain goes to junk; aggregate reports go to the postmaster.",
    );
    if let Some((_, rua_domain)) = rua.rsplit_once('@')
        && !rua_domain.eq_ignore_ascii_case(&domain)
    {
        dmarc_note.push_str(&format!(
            "\n{rua_domain} must accept reports for {domain}: publish {domain}._report._dmarc.{rua_domain}. IN TXT \"v=DMARC1\"."
        ));
    }
    records.push(DnsRecord {
        name: fqdn(&format!("_dmarc.{domain}")),
        rtype: "TXT".into(),
        value: format!("v=DMARC1; p=quarantine; rua=mailto:{rua}"),
        note: Some(dmarc_note),
    });

    Ok(records)
}

/// All records as zone-file lines (comments included).
pub fn zone_file_lines(records: &[DnsRecord]) -> Vec<String> {
    records
        .iter()
        .flat_map(DnsRecord::zone_file_lines)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{TEST_KEY_PEM, config_in, install_key};

    #[test]
    fn records_without_a_key_say_how_to_make_one() {
        let tmp = tempfile::tempdir().unwrap();
        let config = config_in(tmp.path());
        let r = dns_records(&config, "Example.org").unwrap();
        assert_eq!(r.len(), 4);
        assert_eq!(
            (r[0].name.as_str(), r[0].rtype.as_str(), r[0].value.as_str()),
            ("example.org.", "MX", "10 mail.example.org.")
        );
        assert_eq!(
            (r[1].name.as_str(), r[1].rtype.as_str(), r[1].value.as_str()),
            ("example.org.", "TXT", "v=spf1 mx -all")
        );
        assert_eq!(r[2].name, "postamt._domainkey.example.org.");
        assert_eq!(r[2].value, "");
        assert!(
            r[2].note
                .as_deref()
                .unwrap()
                .contains("postamt dkim generate example.org")
        );
        assert_eq!(r[3].name, "_dmarc.example.org.");
        assert_eq!(
            r[3].value,
            "v=DMARC1; p=quarantine; rua=mailto:postmaster@example.org"
        );

        let lines = zone_file_lines(&r);
        assert!(lines.contains(&"example.org. IN MX 10 mail.example.org.".to_string()));
        assert!(lines.contains(&"example.org. IN TXT \"v=spf1 mx -all\"".to_string()));
        assert!(lines.contains(&"_dmarc.example.org. IN TXT \"v=DMARC1; p=quarantine; rua=mailto:postmaster@example.org\"".to_string()));
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("; ") && l.contains("postamt dkim generate example.org"))
        );
        // Every non-comment line is a record line.
        assert!(
            lines
                .iter()
                .filter(|l| !l.starts_with(';'))
                .all(|l| l.contains(" IN "))
        );
    }

    #[test]
    fn records_with_a_key_include_its_txt_record() {
        let tmp = tempfile::tempdir().unwrap();
        let mut config = config_in(tmp.path());
        config.dkim.selector = "s2026".into();
        config.postmaster = Some("hostmaster@example.net".into());
        install_key(&config, "example.org", TEST_KEY_PEM);
        let r = dns_records(&config, "example.org").unwrap();
        let key = read_key_record(&config, "example.org").unwrap().unwrap();
        assert_eq!(r[2].name, "s2026._domainkey.example.org.");
        assert_eq!(r[2].value, key.txt_value);
        assert!(r[2].value.starts_with("v=DKIM1; k=rsa; p=MIIB"));
        assert!(r[3].value.ends_with("rua=mailto:hostmaster@example.net"));
        assert!(
            r[3].note
                .as_deref()
                .unwrap()
                .contains("example.org._report._dmarc.example.net")
        );
        let lines = zone_file_lines(&r);
        let dkim_line = lines
            .iter()
            .find(|l| l.starts_with("s2026._domainkey.example.org. IN TXT "))
            .unwrap();
        assert_eq!(dkim_line, &key.zone_file_line());
    }

    #[test]
    fn a_foreign_domain_gets_a_warning_and_bad_names_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let config = config_in(tmp.path());
        let r = dns_records(&config, "other.test").unwrap();
        assert!(r[0].note.as_deref().unwrap().contains("not in `domains`"));
        assert!(matches!(
            dns_records(&config, "../x"),
            Err(SenderAuthError::InvalidDomain(_))
        ));
    }
}
