//! The systemd unit install writes (pure): the hardened unit shipped in
//! `packaging/postamt.service`, embedded in the binary, with the account,
//! the binary, the config and the data directory put in.

use super::InstallError;
use std::path::{Path, PathBuf};

/// The shipped unit, as the packaging folder has it.
pub const TEMPLATE: &str = include_str!("../../../../packaging/postamt.service");

/// The paths in the shipped unit that install replaces.
const TEMPLATE_DATA_DIR: &str = "/var/lib/postamt";
const TEMPLATE_CONFIG_DIR: &str = "/etc/postamt";

/// What goes into the unit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitParams {
    pub user: String,
    pub binary: PathBuf,
    pub config: PathBuf,
    pub data_dir: PathBuf,
    /// Directories outside the data dir the server writes (a spool, log or
    /// mailbox directory configured elsewhere).
    pub extra_write_paths: Vec<PathBuf>,
}

/// The lines every rendered unit must have: the hardening the service
/// relies on. A template that lost one is refused.
pub const REQUIRED: [&str; 9] = [
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
    "AmbientCapabilities=CAP_NET_BIND_SERVICE",
    "Restart=on-failure",
    "WantedBy=multi-user.target",
    "[Service]",
];

/// Whether a path can stand in a unit file as it is: absolute, and only
/// characters that need no quoting or escaping (`%` and `$` are
/// specifiers there, spaces split words).
pub fn unit_safe_path(p: &Path) -> bool {
    let Some(s) = p.to_str() else {
        return false;
    };
    p.is_absolute()
        && s.len() <= 1024
        && !p
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-' | b'+' | b'@')
        })
}

/// The single directory name of `path` below `base` (`/var/lib/postamt`
/// below `/var/lib` is `postamt`), for systemd's `StateDirectory=` and
/// `ConfigurationDirectory=`, which are relative to those bases.
fn name_below<'a>(path: &'a Path, base: &str) -> Option<&'a str> {
    (path.parent()? == Path::new(base))
        .then(|| path.file_name()?.to_str())
        .flatten()
}

fn show(p: &Path) -> String {
    p.display().to_string()
}

/// Renders the unit for `p`.
pub fn render(template: &str, p: &UnitParams) -> Result<String, InstallError> {
    for path in [&p.binary, &p.config, &p.data_dir]
        .into_iter()
        .chain(&p.extra_write_paths)
    {
        if !unit_safe_path(path) {
            return Err(InstallError::UnsafePath(path.clone()));
        }
    }
    let config_dir = p.config.parent().unwrap_or(Path::new("/"));
    let data = show(&p.data_dir);
    let conf = show(config_dir);
    let state_name = name_below(&p.data_dir, "/var/lib");
    let config_name = name_below(config_dir, "/etc");
    let mut out = String::with_capacity(template.len() + 256);
    let mut push = |line: &str| {
        out.push_str(line);
        out.push('\n');
    };
    for line in template.lines() {
        if line.starts_with('#') {
            push(
                &line
                    .replace(TEMPLATE_DATA_DIR, &data)
                    .replace(TEMPLATE_CONFIG_DIR, &conf),
            );
            continue;
        }
        let key = line.split_once('=').map(|(k, _)| k.trim());
        match key {
            Some("User") => push(&format!("User={}", p.user)),
            Some("Group") => push(&format!("Group={}", p.user)),
            Some("ExecStart") => push(&format!(
                "ExecStart={} serve --config {}",
                show(&p.binary),
                show(&p.config)
            )),
            Some("StateDirectory") => {
                if let Some(name) = state_name {
                    push(&format!("StateDirectory={name}"));
                }
                push(&format!("ReadWritePaths={data}"));
            }
            Some("StateDirectoryMode") => {
                if state_name.is_some() {
                    push(line);
                }
            }
            Some("ConfigurationDirectory") => {
                if let Some(name) = config_name {
                    push(&format!("ConfigurationDirectory={name}"));
                }
            }
            Some("ConfigurationDirectoryMode") => {
                if config_name.is_some() {
                    // What install makes: root-owned, the service's group
                    // may write (settings saved from the web admin).
                    push(&format!(
                        "ConfigurationDirectoryMode={:04o}",
                        super::plan::CONFIG_DIR_MODE
                    ));
                }
            }
            Some("ReadWritePaths") => {
                push(&format!("ReadWritePaths={conf}"));
                for extra in &p.extra_write_paths {
                    push(&format!("ReadWritePaths={}", show(extra)));
                }
            }
            _ => push(line),
        }
    }
    let wanted_rw = format!("ReadWritePaths={data}");
    for required in REQUIRED
        .iter()
        .copied()
        .chain([wanted_rw.as_str(), "User=", "ExecStart="])
    {
        if !out.lines().any(|l| l.starts_with(required)) {
            return Err(InstallError::Template(required.to_string()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> UnitParams {
        UnitParams {
            user: "postamt".into(),
            binary: "/usr/local/bin/postamt".into(),
            config: "/etc/postamt/postamt.toml".into(),
            data_dir: "/var/lib/postamt".into(),
            extra_write_paths: Vec::new(),
        }
    }

    fn lines_with<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
        unit.lines()
            .filter(|l| l.starts_with(&format!("{key}=")))
            .collect()
    }

    #[test]
    fn standard_paths_keep_the_shipped_unit_with_the_data_dir_writable() {
        let unit = render(TEMPLATE, &params()).unwrap();
        assert_eq!(lines_with(&unit, "User"), ["User=postamt"]);
        assert_eq!(lines_with(&unit, "Group"), ["Group=postamt"]);
        assert_eq!(
            lines_with(&unit, "ExecStart"),
            ["ExecStart=/usr/local/bin/postamt serve --config /etc/postamt/postamt.toml"]
        );
        assert_eq!(
            lines_with(&unit, "StateDirectory"),
            ["StateDirectory=postamt"]
        );
        assert_eq!(
            lines_with(&unit, "ConfigurationDirectory"),
            ["ConfigurationDirectory=postamt"]
        );
        assert_eq!(
            lines_with(&unit, "ConfigurationDirectoryMode"),
            ["ConfigurationDirectoryMode=0770"]
        );
        assert_eq!(
            lines_with(&unit, "ReadWritePaths"),
            [
                "ReadWritePaths=/var/lib/postamt",
                "ReadWritePaths=/etc/postamt"
            ]
        );
        for r in REQUIRED {
            assert!(unit.lines().any(|l| l == r), "{r} missing");
        }
        // Only the one capability, in both sets.
        assert!(
            unit.lines()
                .filter(|l| l.contains("CAP_"))
                .all(|l| l.ends_with("=CAP_NET_BIND_SERVICE")),
            "{unit}"
        );
    }

    #[test]
    fn other_paths_replace_the_defaults_everywhere() {
        let p = UnitParams {
            user: "mail2".into(),
            binary: "/opt/postamt/bin/postamt".into(),
            config: "/srv/postamt-conf/main.toml".into(),
            data_dir: "/srv/mail".into(),
            extra_write_paths: vec!["/var/spool/postamt".into()],
        };
        let unit = render(TEMPLATE, &p).unwrap();
        assert_eq!(lines_with(&unit, "User"), ["User=mail2"]);
        assert_eq!(
            lines_with(&unit, "ExecStart"),
            ["ExecStart=/opt/postamt/bin/postamt serve --config /srv/postamt-conf/main.toml"]
        );
        // Not below /var/lib or /etc: no systemd-made directories.
        assert!(lines_with(&unit, "StateDirectory").is_empty(), "{unit}");
        assert!(lines_with(&unit, "StateDirectoryMode").is_empty());
        assert!(lines_with(&unit, "ConfigurationDirectory").is_empty());
        assert_eq!(
            lines_with(&unit, "ReadWritePaths"),
            [
                "ReadWritePaths=/srv/mail",
                "ReadWritePaths=/srv/postamt-conf",
                "ReadWritePaths=/var/spool/postamt"
            ]
        );
        assert!(!unit.contains("/var/lib/postamt"), "{unit}");
        assert!(!unit.contains("/etc/postamt"), "{unit}");
    }

    #[test]
    fn paths_that_would_need_quoting_are_refused() {
        for bad in [
            "/opt/my postamt/postamt",
            "/opt/%h/postamt",
            "/opt/$X/postamt",
            "relative/postamt",
            "/opt/../etc/postamt",
            "/opt/p\nExecStartPre=/bin/sh",
        ] {
            let mut p = params();
            p.binary = bad.into();
            assert!(
                matches!(render(TEMPLATE, &p), Err(InstallError::UnsafePath(_))),
                "{bad:?} accepted"
            );
        }
        let mut p = params();
        p.data_dir = "/var/lib/post amt".into();
        assert!(render(TEMPLATE, &p).is_err());
    }

    #[test]
    fn a_template_without_the_hardening_is_refused() {
        let weakened = TEMPLATE.replace("ProtectSystem=strict\n", "");
        assert!(matches!(
            render(&weakened, &params()),
            Err(InstallError::Template(line)) if line == "ProtectSystem=strict"
        ));
    }
}
