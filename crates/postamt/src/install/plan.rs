//! Planning `install` and `uninstall` (pure): from what the machine looks
//! like now (`Facts`) and what was asked (`Settings`), the list of steps
//! that brings it to the wanted state. A step already in place is an
//! `Unchanged` entry, so a second install plans no change and says so.

use std::path::{Path, PathBuf};

/// The systemd unit's name (without `.service`).
pub const UNIT: &str = "postamt";
/// Mode of the data directory.
pub const DATA_DIR_MODE: u32 = 0o750;
/// Mode of a config directory made by install: the web admin saves
/// settings through a temporary file beside the config, so the service's
/// group may write there.
pub const CONFIG_DIR_MODE: u32 = 0o770;
/// Mode of a config file made by install (root-owned, group of the service).
pub const CONFIG_FILE_MODE: u32 = 0o660;
/// Mode of the unit file.
pub const UNIT_FILE_MODE: u32 = 0o644;
/// Where the docs say the kept data is backed up.
const BACKUP_DOC: &str = "docs/backup.md";

/// What `install` was asked to do, with every default resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The service account (and its group).
    pub user: String,
    pub data_dir: PathBuf,
    pub config: PathBuf,
    pub unit_dir: PathBuf,
    /// `systemctl enable --now` at the end.
    pub enable: bool,
    /// The config text to write when there is no config file.
    pub config_text: String,
    /// The unit file's full text.
    pub unit_text: String,
}

impl Settings {
    pub fn unit_path(&self) -> PathBuf {
        unit_path(&self.unit_dir)
    }
}

/// The unit file in `unit_dir`.
pub fn unit_path(unit_dir: &Path) -> PathBuf {
    unit_dir.join(format!("{UNIT}.service"))
}

/// Owner, group and mode of an existing file or directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ownership {
    pub uid: u32,
    pub gid: u32,
    /// Permission bits (`0o7777` mask).
    pub mode: u32,
}

/// An existing system account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccountFact {
    pub uid: u32,
    pub gid: u32,
}

/// The unit's state as systemd reports it; `None` when unknown (systemd
/// not running, or systemctl missing).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceState {
    pub enabled: Option<bool>,
    pub active: Option<bool>,
}

/// What the machine looks like now (gathered by `facts`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    /// The account, if it exists.
    pub account: Option<AccountFact>,
    pub data_dir: Option<Ownership>,
    pub config_dir_exists: bool,
    pub config_exists: bool,
    /// The unit file's current text, if there is one.
    pub unit_text: Option<String>,
    /// Whether the directory for the unit file exists.
    pub unit_dir_exists: bool,
    /// Whether systemd manages this machine (`/run/systemd/system`).
    pub systemd_running: bool,
    pub service: ServiceState,
    /// The command that creates a system account, if one was found.
    pub useradd: Option<UserAdd>,
    /// The login shell that refuses logins (`/usr/sbin/nologin`, ...).
    pub nologin: PathBuf,
}

/// Which tool creates system accounts here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserAdd {
    /// shadow-utils' `useradd` (every Linux).
    Useradd(PathBuf),
    /// Debian's / BusyBox's `adduser`.
    Adduser(PathBuf),
}

/// One thing install or uninstall does (or finds already done).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Create the service account with this command.
    CreateUser { name: String, command: Vec<String> },
    /// Create a directory with this owner, group and mode.
    CreateDir {
        path: PathBuf,
        owner: String,
        group: String,
        mode: u32,
    },
    /// Hand an existing directory and everything in it to the account,
    /// and set the directory's mode.
    OwnDir {
        path: PathBuf,
        user: String,
        mode: u32,
    },
    /// Write (or replace) a file atomically with this owner and mode.
    WriteFile {
        path: PathBuf,
        owner: String,
        group: String,
        mode: u32,
        content: String,
        replaces: bool,
    },
    /// Remove a file.
    RemoveFile { path: PathBuf },
    /// Run a command (systemctl); it must exit 0.
    Run { command: Vec<String> },
    /// Already in place: nothing to do.
    Unchanged(String),
}

impl Step {
    /// Whether the step changes the machine.
    pub fn changes(&self) -> bool {
        !matches!(self, Step::Unchanged(_))
    }

    /// One line saying what the step does (without file contents).
    pub fn describe(&self) -> String {
        match self {
            Step::CreateUser { name, command } => format!(
                "create the system account `{name}` (no login shell): {}",
                shell_words(command)
            ),
            Step::CreateDir {
                path,
                owner,
                group,
                mode,
            } => format!(
                "create directory {} (owner {owner}:{group}, mode {mode:04o})",
                path.display()
            ),
            Step::OwnDir { path, user, mode } => format!(
                "hand {} and everything in it to {user}:{user}, mode {mode:04o}",
                path.display()
            ),
            Step::WriteFile {
                path,
                owner,
                group,
                mode,
                replaces,
                ..
            } => format!(
                "{} {} (owner {owner}:{group}, mode {mode:04o})",
                if *replaces { "replace" } else { "write" },
                path.display()
            ),
            Step::RemoveFile { path } => format!("remove {}", path.display()),
            Step::Run { command } => format!("run: {}", shell_words(command)),
            Step::Unchanged(what) => format!("unchanged: {what}"),
        }
    }
}

/// A plan: the steps in order, what stops a real run, and notes for the
/// admin.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// Reasons a real run refuses to start (nothing is changed then).
    pub blockers: Vec<String>,
    /// Printed after the steps.
    pub notes: Vec<String>,
}

impl Plan {
    /// How many steps change something.
    pub fn changes(&self) -> usize {
        self.steps.iter().filter(|s| s.changes()).count()
    }
}

/// A command line as a shell would take it (words quoted when needed).
pub fn shell_words(words: &[String]) -> String {
    words
        .iter()
        .map(|w| {
            let plain = !w.is_empty()
                && w.bytes().all(|b| {
                    b.is_ascii_alphanumeric()
                        || matches!(
                            b,
                            b'/' | b'.' | b'_' | b'-' | b'+' | b'=' | b':' | b'@' | b','
                        )
                });
            if plain {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn words(ws: &[&str]) -> Vec<String> {
    ws.iter().map(|w| w.to_string()).collect()
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

/// The command creating the account: a system account with a group of its
/// own, the data dir as its home (not created by the tool: the next step
/// does that with the right mode), and a shell that refuses logins.
fn create_user_command(tool: &UserAdd, user: &str, home: &Path, nologin: &Path) -> Vec<String> {
    let home = path_str(home);
    let shell = path_str(nologin);
    match tool {
        UserAdd::Useradd(bin) => vec![
            path_str(bin),
            "--system".into(),
            "--user-group".into(),
            "--home-dir".into(),
            home,
            "--no-create-home".into(),
            "--shell".into(),
            shell,
            user.into(),
        ],
        UserAdd::Adduser(bin) => vec![
            path_str(bin),
            "--system".into(),
            "--group".into(),
            "--home".into(),
            home,
            "--no-create-home".into(),
            "--shell".into(),
            shell,
            user.into(),
        ],
    }
}

/// Plans `postamt install`.
pub fn plan_install(s: &Settings, f: &Facts) -> Plan {
    let mut plan = Plan::default();
    let steps = &mut plan.steps;

    // 1. The account.
    match (&f.account, &f.useradd) {
        (Some(a), _) => steps.push(Step::Unchanged(format!(
            "the system account `{}` exists (uid {}, gid {})",
            s.user, a.uid, a.gid
        ))),
        (None, Some(tool)) => steps.push(Step::CreateUser {
            name: s.user.clone(),
            command: create_user_command(tool, &s.user, &s.data_dir, &f.nologin),
        }),
        (None, None) => plan.blockers.push(format!(
            "the account `{}` does not exist and neither useradd nor adduser was found to create it",
            s.user
        )),
    }

    // 2. The data directory, the account's own.
    match (&f.data_dir, &f.account) {
        (None, _) => steps.push(Step::CreateDir {
            path: s.data_dir.clone(),
            owner: s.user.clone(),
            group: s.user.clone(),
            mode: DATA_DIR_MODE,
        }),
        (Some(o), Some(a)) if o.uid == a.uid && o.gid == a.gid && o.mode == DATA_DIR_MODE => steps
            .push(Step::Unchanged(format!(
                "{} exists, owned by {}, mode {DATA_DIR_MODE:04o}",
                s.data_dir.display(),
                s.user
            ))),
        (Some(_), _) => steps.push(Step::OwnDir {
            path: s.data_dir.clone(),
            user: s.user.clone(),
            mode: DATA_DIR_MODE,
        }),
    }

    // 3. The config: its directory and the file, never overwritten.
    let config_dir = s.config.parent().unwrap_or(Path::new("/"));
    if f.config_dir_exists {
        if !f.config_exists {
            steps.push(Step::Unchanged(format!(
                "{} exists (kept as it is)",
                config_dir.display()
            )));
        }
    } else {
        steps.push(Step::CreateDir {
            path: config_dir.to_path_buf(),
            owner: "root".into(),
            group: s.user.clone(),
            mode: CONFIG_DIR_MODE,
        });
    }
    if f.config_exists {
        steps.push(Step::Unchanged(format!(
            "{} exists (kept: install never overwrites a config)",
            s.config.display()
        )));
    } else {
        steps.push(Step::WriteFile {
            path: s.config.clone(),
            owner: "root".into(),
            group: s.user.clone(),
            mode: CONFIG_FILE_MODE,
            content: s.config_text.clone(),
            replaces: false,
        });
        plan.notes.push(format!(
            "The new config listens on 127.0.0.1 only, for the host name `localhost`: set `hostname`, \
             `domains`, [listen] and [tls] in {} (docs/configuration.md), then `systemctl restart {UNIT}`.",
            s.config.display()
        ));
    }

    // 4. The unit file.
    let unit_path = s.unit_path();
    if !f.unit_dir_exists {
        plan.blockers.push(format!(
            "the unit directory {} does not exist (is systemd installed? see --unit-dir)",
            s.unit_dir.display()
        ));
    }
    let unit_changed = f.unit_text.as_deref() != Some(s.unit_text.as_str());
    if unit_changed {
        steps.push(Step::WriteFile {
            path: unit_path.clone(),
            owner: "root".into(),
            group: "root".into(),
            mode: UNIT_FILE_MODE,
            content: s.unit_text.clone(),
            replaces: f.unit_text.is_some(),
        });
    } else {
        steps.push(Step::Unchanged(format!(
            "{} is up to date",
            unit_path.display()
        )));
    }

    // 5. systemd.
    let unit_name = format!("{UNIT}.service");
    if !f.systemd_running {
        if s.enable {
            plan.blockers.push(
                "systemd is not running on this machine (no /run/systemd/system): \
                 use --no-enable to only write the files"
                    .into(),
            );
        } else {
            plan.notes.push(format!(
                "systemd is not running here: run `systemctl daemon-reload` and \
                 `systemctl enable --now {UNIT}` on the machine that boots with this unit."
            ));
        }
    }
    if unit_changed && (f.systemd_running || s.enable) {
        steps.push(Step::Run {
            command: words(&["systemctl", "daemon-reload"]),
        });
    }
    if s.enable {
        let enabled = f.service.enabled == Some(true);
        let active = f.service.active == Some(true);
        if enabled && active {
            if unit_changed {
                steps.push(Step::Run {
                    command: words(&["systemctl", "restart", &unit_name]),
                });
            } else {
                steps.push(Step::Unchanged(format!(
                    "{unit_name} is enabled and running"
                )));
            }
        } else {
            steps.push(Step::Run {
                command: words(&["systemctl", "enable", "--now", &unit_name]),
            });
        }
    } else if f.systemd_running {
        plan.notes.push(format!(
            "Not enabled (--no-enable): start it with `systemctl enable --now {UNIT}`."
        ));
    }
    plan
}

/// What `uninstall` was asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UninstallSettings {
    pub user: String,
    pub data_dir: PathBuf,
    pub config: PathBuf,
    pub unit_dir: PathBuf,
}

/// Plans `postamt uninstall`: stop and disable the service, remove the
/// unit, reload systemd. The data dir, the config and the account are
/// never touched: the plan says where they are kept.
pub fn plan_uninstall(s: &UninstallSettings, f: &Facts) -> Plan {
    let mut plan = Plan::default();
    let unit_path = unit_path(&s.unit_dir);
    let unit_name = format!("{UNIT}.service");
    let known_off = f.service.enabled == Some(false) && f.service.active == Some(false);
    if !f.systemd_running && f.unit_text.is_some() {
        plan.blockers.push(
            "systemd is not running on this machine (no /run/systemd/system): \
             the service cannot be stopped and disabled here"
                .into(),
        );
    }
    if f.unit_text.is_some() || (f.systemd_running && !known_off) {
        if known_off {
            plan.steps.push(Step::Unchanged(format!(
                "{unit_name} is neither enabled nor running"
            )));
        } else {
            plan.steps.push(Step::Run {
                command: words(&["systemctl", "disable", "--now", &unit_name]),
            });
        }
    }
    if f.unit_text.is_some() {
        plan.steps.push(Step::RemoveFile {
            path: unit_path.clone(),
        });
        plan.steps.push(Step::Run {
            command: words(&["systemctl", "daemon-reload"]),
        });
    } else {
        plan.steps.push(Step::Unchanged(format!(
            "there is no {} (not installed as a service)",
            unit_path.display()
        )));
    }
    plan.notes.push(format!(
        "Kept (uninstall never touches mail): the data directory {} (mailboxes, queue, accounts, logs), \
         the config {} and the system account `{}`; {BACKUP_DOC} says how to back them up.",
        s.data_dir.display(),
        s.config.display(),
        s.user
    ));
    plan
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
