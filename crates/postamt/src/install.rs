//! `postamt install` and `postamt uninstall` (the classic `-install`):
//! set Postamt up as a hardened systemd service, or take the service away
//! again while keeping every mail.
//!
//! Each verb looks at the machine (`facts`), plans the steps from what it
//! found (`plan`, pure and unit-tested), then prints the plan
//! (`--dry-run`) or carries it out (`execute`). The unit is the shipped
//! `packaging/postamt.service` with the paths put in (`unit`); a new
//! config is quickstart's with the standard ports (`config_file`).

mod command;
mod config_file;
mod execute;
mod facts;
mod plan;
mod unit;

use clap::Args;
use plan::{Facts, Plan, Settings, Step, UninstallSettings};
use std::io::Write;
use std::path::{Component, Path, PathBuf};

/// `postamt install`'s options (the config path is the global `--config`).
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Print every step (commands, and files with their content) and change
    /// nothing; works as any user.
    #[arg(long)]
    pub dry_run: bool,
    /// The service account: a system account without a login shell,
    /// created if missing.
    #[arg(long, default_value = "postamt", value_name = "NAME")]
    pub user: String,
    /// Where mail, queue, accounts and logs live (default: the existing
    /// config's `data_dir`, else /var/lib/postamt).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Where the unit file goes.
    #[arg(long, default_value = "/etc/systemd/system", value_name = "DIR")]
    pub unit_dir: PathBuf,
    /// Only write the account, directories and files: no `systemctl enable --now`.
    #[arg(long)]
    pub no_enable: bool,
    /// The binary the service runs (default: this one).
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
    /// The mail domain of a new config (default: localhost only).
    #[arg(long)]
    pub domain: Option<String>,
}

/// `postamt uninstall`'s options.
#[derive(Debug, Args)]
pub struct UninstallArgs {
    /// Print every step and change nothing; works as any user.
    #[arg(long)]
    pub dry_run: bool,
    /// The service account (kept; named in the summary).
    #[arg(long, default_value = "postamt", value_name = "NAME")]
    pub user: String,
    /// The data directory (kept; default: the config's `data_dir`).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Where the unit file is.
    #[arg(long, default_value = "/etc/systemd/system", value_name = "DIR")]
    pub unit_dir: PathBuf,
}

/// The data directory when neither the option nor a config names one.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/postamt";
/// Directories a binary may not be in: the unit hides them from the
/// service (`ProtectHome=yes`, `PrivateTmp=yes`).
const HIDDEN_FROM_SERVICE: [&str; 5] = ["/home", "/root", "/run/user", "/tmp", "/var/tmp"];

/// Why install or uninstall stopped.
#[derive(Debug)]
pub enum InstallError {
    /// A real run needs root.
    NotRoot(&'static str),
    /// A path that cannot go into a unit file unquoted.
    UnsafePath(PathBuf),
    /// The embedded unit lacks a line the service relies on.
    Template(String),
    /// Not a valid account name.
    BadUser(String),
    /// Not a domain name.
    BadDomain(String),
    /// `--data-dir` says one thing, the existing config another.
    DataDirConflict { given: PathBuf, configured: PathBuf },
    /// The plan has reasons not to start; nothing was changed.
    Refused(Vec<String>),
    /// A step failed (the steps before it are done).
    Step { step: String, reason: String },
    /// Looking at the machine failed.
    Io {
        what: String,
        source: std::io::Error,
    },
}

impl std::fmt::Display for InstallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InstallError::NotRoot(verb) => write!(
                f,
                "`postamt {verb}` changes system accounts, directories and systemd units: run it as root \
                 (or see what it would do with `postamt {verb} --dry-run`)"
            ),
            InstallError::UnsafePath(p) => write!(
                f,
                "the path {p:?} cannot go into a systemd unit as it is: use an absolute path of letters, \
                 digits and / . _ - + @ only"
            ),
            InstallError::Template(line) => write!(
                f,
                "the built-in unit file lacks `{line}`: this build is broken, the unit is not written"
            ),
            InstallError::BadUser(u) => write!(
                f,
                "--user `{u}` is not a valid account name (lowercase letters, digits, _ and -, \
                 starting with a letter or _, at most 32)"
            ),
            InstallError::BadDomain(d) => write!(f, "--domain `{d}` is not a domain name"),
            InstallError::DataDirConflict { given, configured } => write!(
                f,
                "--data-dir {} differs from data_dir = {} in the existing config: change the config \
                 or leave --data-dir out",
                given.display(),
                configured.display()
            ),
            InstallError::Refused(reasons) => {
                write!(f, "refusing to start, nothing was changed:")?;
                for r in reasons {
                    write!(f, "\n  - {r}")?;
                }
                Ok(())
            }
            InstallError::Step { step, reason } => write!(
                f,
                "step failed: {step}: {reason} (the steps before it are done; run it again once fixed)"
            ),
            InstallError::Io { what, source } => write!(f, "{what}: {source}"),
        }
    }
}

impl std::error::Error for InstallError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            InstallError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> InstallError {
    let what = what.into();
    move |source| InstallError::Io { what, source }
}

/// Whether `name` is a portable system account name.
fn valid_user(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 32
        && (b[0].is_ascii_lowercase() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
}

fn valid_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-')
        })
}

/// `p` made absolute against the working directory, without `.`.
fn absolute(p: &Path) -> Result<PathBuf, InstallError> {
    std::path::absolute(p).map_err(io(format!("cannot make {} absolute", p.display())))
}

/// What an existing config says, as far as this user can read it.
enum ExistingConfig {
    Missing,
    Loaded(Box<postamt_config::Config>),
    /// It exists but does not load (unreadable, or invalid).
    Unusable(String),
}

fn existing_config(path: &Path) -> ExistingConfig {
    if !path.exists() {
        return ExistingConfig::Missing;
    }
    match postamt_config::load(path) {
        Ok(c) => ExistingConfig::Loaded(Box::new(c)),
        Err(e) => ExistingConfig::Unusable(e.to_string()),
    }
}

/// Directories the configured server writes outside its data dir (each
/// needs its own `ReadWritePaths=`).
fn extra_write_paths(cfg: &postamt_config::Config, data_dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    let candidates = [
        cfg.spool_dir(),
        cfg.log_dir(),
        cfg.dkim_key_dir(),
        postamt_ops::stats::mailbox_root(&cfg.mailbox_template()),
    ];
    for c in candidates {
        if c.is_absolute() && !c.starts_with(data_dir) && !out.iter().any(|o| c.starts_with(o)) {
            out.retain(|o| !o.starts_with(&c));
            out.push(c);
        }
    }
    out
}

/// Reasons a path cannot be the data directory install hands to the
/// service account (recursively).
fn data_dir_problem(p: &Path) -> Option<String> {
    let normal = p
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count();
    if normal < 2 {
        return Some(format!(
            "the data directory {} is too close to / to be handed to the service account: \
             use a directory of its own such as {DEFAULT_DATA_DIR}",
            p.display()
        ));
    }
    let meta = match std::fs::metadata(p) {
        Ok(m) => m,
        Err(_) => return None,
    };
    if !meta.is_dir() {
        return Some(format!("{} exists and is not a directory", p.display()));
    }
    // Only an empty directory or one Postamt made is handed over: never a
    // shared directory like /var/lib by mistake.
    let Ok(entries) = std::fs::read_dir(p) else {
        return None; // not readable by this user (a dry run): it is someone's own already
    };
    let names: Vec<String> = entries
        .flatten()
        .take(10_000)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let postamt_marks = [
        "directory.sqlite",
        "spool",
        "mailboxes",
        "postamt.toml",
        "run",
    ];
    if names.is_empty() || names.iter().any(|n| postamt_marks.contains(&n.as_str())) {
        None
    } else {
        Some(format!(
            "{} holds other files and does not look like a Postamt data directory \
             (no directory.sqlite, spool or mailboxes): refusing to hand it to the service account",
            p.display()
        ))
    }
}

/// Reasons the binary cannot be run by the unit.
fn binary_problem(p: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(hidden) = HIDDEN_FROM_SERVICE.iter().find(|h| p.starts_with(h)) {
        return Some(format!(
            "the binary {} is below {hidden}, which the unit hides from the service \
             (ProtectHome/PrivateTmp): copy it to /usr/local/bin and pass --binary /usr/local/bin/postamt",
            p.display()
        ));
    }
    match std::fs::metadata(p) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => None,
        Ok(_) => Some(format!(
            "the binary {} is not an executable file",
            p.display()
        )),
        Err(e) => Some(format!("the binary {}: {e}", p.display())),
    }
}

fn is_root() -> bool {
    crate::privilege::is_root()
}

/// `postamt install`.
pub fn install(config: &Path, args: &InstallArgs) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    install_to(config, args, is_root(), &mut stdout)?;
    Ok(())
}

/// Resolves `install`'s settings and the plan (reading the machine only).
fn plan_install(config: &Path, args: &InstallArgs) -> Result<(Plan, Settings), InstallError> {
    if !valid_user(&args.user) {
        return Err(InstallError::BadUser(args.user.clone()));
    }
    if let Some(d) = &args.domain
        && !valid_domain(d)
    {
        return Err(InstallError::BadDomain(d.clone()));
    }
    let config = absolute(config)?;
    let unit_dir = absolute(&args.unit_dir)?;
    let binary = match &args.binary {
        Some(b) => absolute(b)?,
        None => std::env::current_exe()
            .and_then(std::fs::canonicalize)
            .map_err(io("cannot find this program's own path (pass --binary)"))?,
    };
    let given = args.data_dir.as_deref().map(absolute).transpose()?;
    let mut notes = Vec::new();
    let mut blockers = Vec::new();
    let existing = existing_config(&config);
    let (data_dir, extra) = match &existing {
        ExistingConfig::Loaded(cfg) => {
            let configured = absolute(&cfg.data_dir)?;
            if let Some(g) = &given
                && *g != configured
            {
                return Err(InstallError::DataDirConflict {
                    given: g.clone(),
                    configured,
                });
            }
            if cfg.user.is_some() {
                notes.push(format!(
                    "{} sets `user`: the unit starts the server as `{}` already, so that key is ignored \
                     (leave it unset).",
                    config.display(),
                    args.user
                ));
            }
            let extra = extra_write_paths(cfg, &configured);
            (configured, extra)
        }
        ExistingConfig::Unusable(why) => {
            notes.push(format!(
                "The existing config does not load ({why}); the data directory is taken as {} \
                 and the service will not start until the config is fixed.",
                given
                    .as_deref()
                    .unwrap_or(Path::new(DEFAULT_DATA_DIR))
                    .display()
            ));
            (
                given.clone().unwrap_or_else(|| DEFAULT_DATA_DIR.into()),
                Vec::new(),
            )
        }
        ExistingConfig::Missing => (
            given.clone().unwrap_or_else(|| DEFAULT_DATA_DIR.into()),
            Vec::new(),
        ),
    };
    match config.parent() {
        Some(dir) if dir.components().count() > 2 => {}
        _ => {
            return Err(InstallError::Refused(vec![format!(
                "the config {} must be in a directory of its own (e.g. /etc/postamt/postamt.toml): \
                 the service may write to that directory",
                config.display()
            )]));
        }
    }
    blockers.extend(data_dir_problem(&data_dir));
    blockers.extend(binary_problem(&binary));
    let unit_text = unit::render(
        unit::TEMPLATE,
        &unit::UnitParams {
            user: args.user.clone(),
            binary,
            config: config.clone(),
            data_dir: data_dir.clone(),
            extra_write_paths: extra,
        },
    )?;
    let settings = Settings {
        user: args.user.clone(),
        config_text: config_file::text(&data_dir, args.domain.as_deref()),
        data_dir,
        config,
        unit_dir,
        enable: !args.no_enable,
        unit_text,
    };
    let facts = gather(
        &settings.user,
        &settings.data_dir,
        &settings.config,
        &settings.unit_path(),
    )?;
    let mut plan = plan::plan_install(&settings, &facts);
    plan.blockers.extend(blockers);
    plan.notes.extend(notes);
    Ok((plan, settings))
}

fn gather(user: &str, data_dir: &Path, config: &Path, unit: &Path) -> Result<Facts, InstallError> {
    facts::gather(&facts::Targets {
        user,
        data_dir,
        config,
        unit_path: unit,
    })
    .map_err(io("cannot look at the machine"))
}

/// `install` with its output going to `out` (the tests' entry).
fn install_to(
    config: &Path,
    args: &InstallArgs,
    root: bool,
    out: &mut dyn Write,
) -> Result<(), InstallError> {
    if !args.dry_run && !root {
        return Err(InstallError::NotRoot("install"));
    }
    let (plan, _) = plan_install(config, args)?;
    finish("install", plan, args.dry_run, out)
}

/// `postamt uninstall`.
pub fn uninstall(config: &Path, args: &UninstallArgs) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    uninstall_to(config, args, is_root(), &mut stdout)?;
    Ok(())
}

fn plan_uninstall(config: &Path, args: &UninstallArgs) -> Result<Plan, InstallError> {
    let config = absolute(config)?;
    let data_dir = match (&args.data_dir, existing_config(&config)) {
        (Some(d), _) => absolute(d)?,
        (None, ExistingConfig::Loaded(cfg)) => absolute(&cfg.data_dir)?,
        (None, _) => PathBuf::from(DEFAULT_DATA_DIR),
    };
    let settings = UninstallSettings {
        user: args.user.clone(),
        data_dir,
        config,
        unit_dir: absolute(&args.unit_dir)?,
    };
    let facts = gather(
        &settings.user,
        &settings.data_dir,
        &settings.config,
        &plan::unit_path(&settings.unit_dir),
    )?;
    Ok(plan::plan_uninstall(&settings, &facts))
}

fn uninstall_to(
    config: &Path,
    args: &UninstallArgs,
    root: bool,
    out: &mut dyn Write,
) -> Result<(), InstallError> {
    if !args.dry_run && !root {
        return Err(InstallError::NotRoot("uninstall"));
    }
    let plan = plan_uninstall(config, args)?;
    finish("uninstall", plan, args.dry_run, out)
}

/// Prints the plan (dry run) or carries it out, then the notes.
fn finish(
    verb: &'static str,
    plan: Plan,
    dry_run: bool,
    out: &mut dyn Write,
) -> Result<(), InstallError> {
    if dry_run {
        print_plan(verb, &plan, out);
    } else {
        if !plan.blockers.is_empty() {
            return Err(InstallError::Refused(plan.blockers));
        }
        let changed = execute::execute(&plan, out)?;
        let _ = if changed == 0 {
            writeln!(
                out,
                "postamt {verb}: nothing changed, everything was already in place."
            )
        } else {
            writeln!(out, "postamt {verb}: done, {changed} change(s) made.")
        };
    }
    for n in &plan.notes {
        let _ = writeln!(out, "Note: {n}");
    }
    Ok(())
}

/// The dry run's output: every step, every file's full content between
/// marker lines, what would stop a real run.
fn print_plan(verb: &str, plan: &Plan, out: &mut dyn Write) {
    let _ = writeln!(
        out,
        "postamt {verb} --dry-run: nothing is changed. Run as root, `postamt {verb}` would:"
    );
    let total = plan.steps.len();
    for (i, step) in plan.steps.iter().enumerate() {
        let _ = writeln!(out, "[{}/{total}] {}", i + 1, step.describe());
        if let Step::WriteFile { path, content, .. } = step {
            let _ = writeln!(out, "----- begin {}", path.display());
            let _ = write!(out, "{content}");
            if !content.ends_with('\n') {
                let _ = writeln!(out);
            }
            let _ = writeln!(out, "----- end {}", path.display());
        }
    }
    if plan.changes() == 0 {
        let _ = writeln!(out, "Nothing to change: everything is already in place.");
    }
    if !plan.blockers.is_empty() {
        let _ = writeln!(out, "A real run would refuse to start here:");
        for b in &plan.blockers {
            let _ = writeln!(out, "  - {b}");
        }
    }
}

#[cfg(test)]
mod tests;
