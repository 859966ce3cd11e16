//! The config file install writes when there is none: quickstart's text
//! (same keys and comments) with the data directory put in and every
//! listener on its standard port (quickstart falls back to unprivileged
//! ports when a standard one is taken or it is not root; a service binds
//! them with `CAP_NET_BIND_SERVICE`).

use std::path::Path;

/// Each listener's standard port.
const STANDARD_PORTS: [(&str, u16); 8] = [
    ("smtp", 25),
    ("submission", 587),
    ("submissions", 465),
    ("pop3", 110),
    ("pop3s", 995),
    ("imap", 143),
    ("imaps", 993),
    ("admin", 8080),
];

/// The config text for a service with its data in `data_dir`.
pub fn text(data_dir: &Path, domain: Option<&str>) -> String {
    standard_ports(&crate::quickstart::config_text(data_dir, domain, true))
}

/// Puts every `[listen]` entry of quickstart's text on its standard port
/// and names install as the writer (pure).
pub fn standard_ports(quickstart_text: &str) -> String {
    let mut out = String::with_capacity(quickstart_text.len());
    for line in quickstart_text.lines() {
        let line = line.replace("`postamt quickstart`", "`postamt install`");
        out.push_str(&with_standard_port(&line));
        out.push('\n');
    }
    out
}

/// `smtp = ["127.0.0.1:2525"]  # ...` -> `smtp = ["127.0.0.1:25"]  # ...`;
/// other lines as they are.
fn with_standard_port(line: &str) -> String {
    let Some((key, rest)) = line.split_once(" = [\"") else {
        return line.to_string();
    };
    let Some(port) = STANDARD_PORTS
        .iter()
        .find(|(k, _)| *k == key.trim())
        .map(|(_, p)| *p)
    else {
        return line.to_string();
    };
    let Some(colon) = rest.find(':') else {
        return line.to_string();
    };
    let digits = rest[colon + 1..]
        .bytes()
        .take_while(u8::is_ascii_digit)
        .count();
    if digits == 0 {
        return line.to_string();
    }
    format!(
        "{key} = [\"{}{port}{}",
        &rest[..=colon],
        &rest[colon + 1 + digits..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn every_listener_gets_its_standard_port_and_comments_stay() {
        let qs = "# Postamt configuration written by `postamt quickstart`.\n\
                  [listen]                          # 127.0.0.1 only\n\
                  smtp = [\"127.0.0.1:2525\"]               # MX\n\
                  submissions = [\"127.0.0.1:2466\"] # TLS + AUTH\n\
                  admin = [\"127.0.0.1:8082\"]             # web admin\n\
                  smtpx = [\"127.0.0.1:2525\"]\n";
        let out = standard_ports(qs);
        assert_eq!(
            out,
            "# Postamt configuration written by `postamt install`.\n\
             [listen]                          # 127.0.0.1 only\n\
             smtp = [\"127.0.0.1:25\"]               # MX\n\
             submissions = [\"127.0.0.1:465\"] # TLS + AUTH\n\
             admin = [\"127.0.0.1:8080\"]             # web admin\n\
             smtpx = [\"127.0.0.1:2525\"]\n"
        );
    }

    #[test]
    fn the_written_config_loads_with_the_data_dir_and_standard_ports() {
        let data = PathBuf::from("/var/lib/postamt");
        let text = text(&data, Some("example.org"));
        let cfg = postamt_config::parse(&text, Path::new("/etc/postamt/postamt.toml"))
            .expect("install's config must validate");
        assert_eq!(cfg.data_dir, data);
        assert_eq!(cfg.hostname, "example.org");
        for (name, addrs) in cfg.listen.entries() {
            let want = STANDARD_PORTS
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, p)| *p)
                .expect("a known listener");
            assert_eq!(addrs, &vec![format!("127.0.0.1:{want}")], "{name}");
        }
        assert!(text.contains("written by `postamt install`"));
    }
}
