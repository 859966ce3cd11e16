//! The classic control panel's settings (Directories, Misc, Logging) read
//! from and written back into the TOML config file with `toml_edit`, so
//! comments and key order survive. The file stays the source of truth:
//! a write is validated by parsing the result as a full configuration
//! before it replaces the file (atomically: temp file, fsync, rename).

use crate::OpsError;
use postamt_config::{Config, ConfigError};
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use toml_edit::{Array, DocumentMut, Item, TableLike, Value};

/// The settings an admin changes from the web UI. Each field's TOML key
/// is named in its doc.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// `hostname`
    pub hostname: String,
    /// `domains` ("Accept Mail For")
    pub domains: Vec<String>,
    /// `postmaster`
    pub postmaster: Option<String>,
    /// `mailbox_template` ("Mailbox Directory", `%u`)
    pub mailbox_template: Option<String>,
    /// `create_mailboxes` ("Automatically Create Mailbox")
    pub create_mailboxes: bool,
    /// `spool_dir`
    pub spool_dir: Option<String>,
    /// `[delivery] smarthost` ("SMTP Gateway Host")
    pub smarthost: Option<String>,
    /// `[delivery] copy_local_failures_to_postmaster`
    pub copy_local_failures_to_postmaster: bool,
    /// `[logging] receiver`
    pub log_receiver: bool,
    /// `[logging] delivery`
    pub log_delivery: bool,
    /// `[logging] retrieval`
    pub log_retrieval: bool,
    /// `[logging] level`
    pub log_level: String,
}

/// What a write changed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SettingsWritten {
    /// TOML keys whose value changed.
    pub changed: Vec<String>,
    /// Changed keys that take effect only after a restart (spool_dir,
    /// logging files...); the others apply on reload.
    pub restart_needed: Vec<String>,
}

/// The largest config file read (a config is a few KiB).
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// TOML keys whose change needs a restart: the spool is opened and the log
/// files are set up once at start.
pub const RESTART_KEYS: [&str; 6] = [
    "spool_dir",
    // Remote routing (the smarthost's TLS and credentials come with it) is
    // built once at start.
    "delivery.smarthost",
    "logging.receiver",
    "logging.delivery",
    "logging.retrieval",
    "logging.level",
];

/// Serialises writes within the process (the web UI and API share it).
static WRITE_LOCK: Mutex<()> = Mutex::new(());

impl Settings {
    /// The settings of a loaded configuration.
    pub fn of_config(c: &Config) -> Settings {
        Settings {
            hostname: c.hostname.clone(),
            domains: c.domains.clone(),
            postmaster: c.postmaster.clone(),
            mailbox_template: c.mailbox_template.clone(),
            create_mailboxes: c.create_mailboxes,
            spool_dir: c.spool_dir.as_ref().map(|p| p.display().to_string()),
            smarthost: c.delivery.smarthost.clone(),
            copy_local_failures_to_postmaster: c.delivery.copy_local_failures_to_postmaster,
            log_receiver: c.logging.receiver,
            log_delivery: c.logging.delivery,
            log_retrieval: c.logging.retrieval,
            log_level: c.logging.level.clone(),
        }
    }
}

/// Reads the settings from the config file at `path`.
pub fn read_settings(path: &Path) -> Result<Settings, OpsError> {
    let text = read_bounded(path)?;
    let config = postamt_config::parse(&text, path).map_err(config_error)?;
    Ok(Settings::of_config(&config))
}

/// Validates `new` and writes it into the file at `path`, keeping every
/// other key, comment and the order; refuses (Invalid) a value the config
/// loader would refuse, naming the key.
pub fn write_settings(path: &Path, new: &Settings) -> Result<SettingsWritten, OpsError> {
    check_text_fields(new)?;
    // A poisoned lock only means another write panicked; the file itself
    // is replaced atomically, so it is still whole.
    let _guard = WRITE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    // Write through a symlink to the real file, so the link stays.
    let real = fs::canonicalize(path).map_err(|e| io_error(path, "resolve", e))?;
    let text = read_bounded(&real)?;
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e| OpsError::Invalid(format!("{}: invalid TOML: {e}", path.display())))?;
    // The values in force: from the file, defaults where a key is missing.
    let old = postamt_config::parse(&text, path)
        .ok()
        .map(|c| Settings::of_config(&c));

    let changed = apply(&mut doc, old.as_ref(), new)?;
    if changed.is_empty() {
        return Ok(SettingsWritten::default());
    }
    let out = doc.to_string();
    postamt_config::parse(&out, path).map_err(config_error)?;
    write_atomically(&real, out.as_bytes())?;
    let restart_needed = changed
        .iter()
        .filter(|k| RESTART_KEYS.contains(&k.as_str()))
        .cloned()
        .collect();
    tracing::info!(file = %path.display(), changed = ?changed, "settings written");
    Ok(SettingsWritten {
        changed,
        restart_needed,
    })
}

/// Sets every changed setting in `doc`; returns the changed keys in the
/// order of [`Settings`].
fn apply(
    doc: &mut DocumentMut,
    old: Option<&Settings>,
    new: &Settings,
) -> Result<Vec<String>, OpsError> {
    let mut changed = Vec::new();
    // A field differs from what is in force (or nothing is known).
    macro_rules! differs {
        ($f:ident) => {
            old.is_none_or(|o| o.$f != new.$f)
        };
    }
    let root = doc.as_table_mut();
    if differs!(hostname) {
        set(root, "hostname", Some(Value::from(new.hostname.as_str())));
        changed.push("hostname".to_string());
    }
    if differs!(domains) {
        let array: Array = new.domains.iter().map(String::as_str).collect();
        set(root, "domains", Some(Value::Array(array)));
        changed.push("domains".to_string());
    }
    if differs!(postmaster) {
        set(
            root,
            "postmaster",
            new.postmaster.as_deref().map(Value::from),
        );
        changed.push("postmaster".to_string());
    }
    if differs!(mailbox_template) {
        let v = new.mailbox_template.as_deref().map(Value::from);
        set(root, "mailbox_template", v);
        changed.push("mailbox_template".to_string());
    }
    if differs!(create_mailboxes) {
        set(
            root,
            "create_mailboxes",
            Some(Value::from(new.create_mailboxes)),
        );
        changed.push("create_mailboxes".to_string());
    }
    if differs!(spool_dir) {
        set(root, "spool_dir", new.spool_dir.as_deref().map(Value::from));
        changed.push("spool_dir".to_string());
    }

    let delivery_changes = [
        (
            differs!(smarthost),
            "smarthost",
            new.smarthost.as_deref().map(Value::from),
        ),
        (
            differs!(copy_local_failures_to_postmaster),
            "copy_local_failures_to_postmaster",
            Some(Value::from(new.copy_local_failures_to_postmaster)),
        ),
    ];
    apply_table(doc, "delivery", delivery_changes, &mut changed)?;

    let logging_changes = [
        (
            differs!(log_receiver),
            "receiver",
            Some(Value::from(new.log_receiver)),
        ),
        (
            differs!(log_delivery),
            "delivery",
            Some(Value::from(new.log_delivery)),
        ),
        (
            differs!(log_retrieval),
            "retrieval",
            Some(Value::from(new.log_retrieval)),
        ),
        (
            differs!(log_level),
            "level",
            Some(Value::from(new.log_level.as_str())),
        ),
    ];
    apply_table(doc, "logging", logging_changes, &mut changed)?;
    Ok(changed)
}

/// Applies the changed keys of one `[table]`, creating the table at the
/// end of the file only when a key must be set in it.
fn apply_table<const N: usize>(
    doc: &mut DocumentMut,
    table: &str,
    changes: [(bool, &str, Option<Value>); N],
    changed: &mut Vec<String>,
) -> Result<(), OpsError> {
    for (differs, key, value) in changes {
        if !differs {
            continue;
        }
        changed.push(format!("{table}.{key}"));
        let root = doc.as_table_mut();
        if value.is_none() && !root.contains_key(table) {
            continue;
        }
        let item = root.entry(table).or_insert_with(toml_edit::table);
        let t = item
            .as_table_like_mut()
            .ok_or_else(|| OpsError::Invalid(format!("{table}: is not a table")))?;
        set(t, key, value);
    }
    Ok(())
}

/// Sets (`Some`) or removes (`None`) `key`, keeping the comments around an
/// existing value.
fn set(table: &mut dyn TableLike, key: &str, value: Option<Value>) {
    let Some(mut value) = value else {
        table.remove(key);
        return;
    };
    if let Some(old) = table.get(key).and_then(Item::as_value) {
        let decor = old.decor().clone();
        *value.decor_mut() = decor;
    }
    match table.get_mut(key) {
        Some(item) => *item = Item::Value(value),
        None => {
            table.insert(key, Item::Value(value));
        }
    }
}

/// Control characters would end up in headers (postmaster) or paths; the
/// config loader does not look for them, so refuse them here, by key.
fn check_text_fields(s: &Settings) -> Result<(), OpsError> {
    let mut fields: Vec<(String, &str)> = vec![
        ("hostname".into(), &s.hostname),
        ("logging.level".into(), &s.log_level),
    ];
    for (i, d) in s.domains.iter().enumerate() {
        fields.push((format!("domains[{i}]"), d));
    }
    let optional = [
        ("postmaster", &s.postmaster),
        ("mailbox_template", &s.mailbox_template),
        ("spool_dir", &s.spool_dir),
        ("delivery.smarthost", &s.smarthost),
    ];
    for (key, v) in optional {
        if let Some(v) = v {
            fields.push((key.into(), v));
        }
    }
    for (key, v) in fields {
        if v.chars().any(char::is_control) {
            return Err(invalid(
                &key,
                "contains a control character (CR, LF, tab...)",
            ));
        }
        if v.len() > 4096 {
            return Err(invalid(&key, "longer than 4096 bytes"));
        }
    }
    if s.domains.len() > 10_000 {
        return Err(OpsError::Invalid("domains: more than 10,000".into()));
    }
    Ok(())
}

/// A config error as an `Invalid` naming the settings field (see
/// [`invalid`]).
fn config_error(e: ConfigError) -> OpsError {
    match e {
        ConfigError::Key { key, message, .. } => invalid(&key, &message),
        other => OpsError::Invalid(other.to_string()),
    }
}

/// An `Invalid` for the value at TOML key `key`, in the `field: why` form
/// the admin API reads its field from: `field` is the [`Settings`] field
/// the key belongs to, and the key follows when it reads otherwise
/// (`log_level: ... (key `logging.level`)`); keys of no settings field
/// stay as they are.
fn invalid(key: &str, why: &str) -> OpsError {
    OpsError::Invalid(match field_of_key(key) {
        Some(field) if field == key => format!("{field}: {why}"),
        Some(field) => format!("{field}: {why} (key `{key}`)"),
        None => format!("{key}: {why}"),
    })
}

/// The [`Settings`] field a TOML key is written from (`logging.level` ->
/// `log_level`, `domains[2]` -> `domains`).
fn field_of_key(key: &str) -> Option<&'static str> {
    let key = key.split('[').next().unwrap_or(key);
    Some(match key {
        "hostname" => "hostname",
        "domains" => "domains",
        "postmaster" => "postmaster",
        "mailbox_template" => "mailbox_template",
        "create_mailboxes" => "create_mailboxes",
        "spool_dir" => "spool_dir",
        "delivery.smarthost" => "smarthost",
        "delivery.copy_local_failures_to_postmaster" => "copy_local_failures_to_postmaster",
        "logging.receiver" => "log_receiver",
        "logging.delivery" => "log_delivery",
        "logging.retrieval" => "log_retrieval",
        "logging.level" => "log_level",
        _ => return None,
    })
}

fn io_error(path: &Path, what: &str, e: std::io::Error) -> OpsError {
    OpsError::Io {
        what: format!("cannot {what} {}", path.display()),
        source: e,
    }
}

/// Reads the file, refusing one beyond [`MAX_CONFIG_BYTES`].
fn read_bounded(path: &Path) -> Result<String, OpsError> {
    let meta = fs::metadata(path).map_err(|e| io_error(path, "read", e))?;
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(OpsError::Invalid(format!(
            "{}: larger than {MAX_CONFIG_BYTES} bytes",
            path.display()
        )));
    }
    fs::read_to_string(path).map_err(|e| io_error(path, "read", e))
}

/// Replaces `path` with `data`: a temporary file in the same directory
/// with the old file's mode (and owner, where allowed), fsynced, renamed
/// over the file, then the directory fsynced.
fn write_atomically(path: &Path, data: &[u8]) -> Result<(), OpsError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config".into());
    let meta = fs::metadata(path).map_err(|e| io_error(path, "read", e))?;
    let mode = meta.permissions().mode() & 0o7777;
    let tmp: PathBuf = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        // Keep the owner when allowed (root editing a service's file);
        // an unprivileged writer already owns what it made.
        let _ = std::os::unix::fs::fchown(&f, Some(meta.uid()), Some(meta.gid()));
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(io_error(path, "write", e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"# Postamt test config
hostname = "mx.example.org"   # the FQDN
domains = ["example.org"]
data_dir = "/tmp/postamt-test"

# Delivery: smarthost notes
[delivery]
# the relay we use
smarthost = "relay.example.net:25" # keep this comment
remote_port = 2525

[logging]
receiver = true
"#;

    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("postamt.toml");
        fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn reads_values_and_defaults() {
        let (_d, path) = file(SAMPLE);
        let s = read_settings(&path).unwrap();
        assert_eq!(s.hostname, "mx.example.org");
        assert_eq!(s.domains, vec!["example.org"]);
        assert_eq!(s.smarthost.as_deref(), Some("relay.example.net:25"));
        assert_eq!(s.postmaster, None);
        assert!(s.create_mailboxes && s.copy_local_failures_to_postmaster);
        assert_eq!(s.log_level, "info");
    }

    #[test]
    fn write_changes_only_what_changed_and_keeps_comments() {
        let (_d, path) = file(SAMPLE);
        let mut s = read_settings(&path).unwrap();
        s.smarthost = Some("gw.example.net:587".into());
        s.domains.push("example.com".into());
        let w = write_settings(&path, &s).unwrap();
        assert_eq!(w.changed, vec!["domains", "delivery.smarthost"]);
        assert_eq!(w.restart_needed, vec!["delivery.smarthost"]);
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# Postamt test config\n"), "{text}");
        assert!(
            text.contains("hostname = \"mx.example.org\"   # the FQDN"),
            "{text}"
        );
        assert!(
            text.contains(
                "# the relay we use\nsmarthost = \"gw.example.net:587\" # keep this comment"
            ),
            "{text}"
        );
        assert!(text.contains("remote_port = 2525"), "{text}");
        assert!(
            text.contains("domains = [\"example.org\", \"example.com\"]"),
            "{text}"
        );
        // Order kept: hostname, domains, data_dir, then [delivery], [logging].
        let pos = |k: &str| text.find(k).unwrap();
        assert!(pos("hostname") < pos("domains") && pos("data_dir") < pos("[delivery]"));
        assert!(pos("[delivery]") < pos("[logging]"));
        assert_eq!(read_settings(&path).unwrap(), s);
        // Writing the same again changes nothing.
        assert_eq!(
            write_settings(&path, &s).unwrap(),
            SettingsWritten::default()
        );
    }

    #[test]
    fn unset_option_removes_the_key_and_new_keys_are_added() {
        let (_d, path) = file(SAMPLE);
        let mut s = read_settings(&path).unwrap();
        s.smarthost = None;
        s.postmaster = Some("hostmaster@example.org".into());
        s.log_level = "debug".into();
        s.spool_dir = Some("/srv/spool".into());
        s.create_mailboxes = false;
        let w = write_settings(&path, &s).unwrap();
        assert_eq!(
            w.restart_needed,
            vec!["spool_dir", "delivery.smarthost", "logging.level"]
        );
        let text = fs::read_to_string(&path).unwrap();
        assert!(!text.contains("smarthost ="), "{text}");
        assert!(text.contains("remote_port = 2525"));
        // New root keys come before the first table, so they stay root keys.
        let first_table = text.find("[delivery]").unwrap();
        assert!(
            text.find("postmaster = \"hostmaster@example.org\"")
                .unwrap()
                < first_table
        );
        assert!(text.find("create_mailboxes = false").unwrap() < first_table);
        assert!(text.contains("level = \"debug\""));
        assert_eq!(read_settings(&path).unwrap(), s);
    }

    #[test]
    fn missing_tables_are_created_only_when_needed() {
        let (_d, path) = file("hostname = \"mx.example.org\"\n");
        let mut s = read_settings(&path).unwrap();
        s.smarthost = None; // already unset: no [delivery] table appears
        s.log_retrieval = false;
        let w = write_settings(&path, &s).unwrap();
        assert_eq!(w.changed, vec!["logging.retrieval"]);
        assert_eq!(w.restart_needed, vec!["logging.retrieval"]);
        let text = fs::read_to_string(&path).unwrap();
        assert!(!text.contains("[delivery]"), "{text}");
        assert!(text.contains("[logging]\nretrieval = false"), "{text}");
    }

    #[test]
    fn invalid_values_are_refused_naming_the_key_and_the_file_is_untouched() {
        let (_d, path) = file(SAMPLE);
        let good = read_settings(&path).unwrap();
        type Change = Box<dyn Fn(&mut Settings)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|s| s.hostname = "bad host".into()), "hostname"),
            (
                Box::new(|s| s.domains = vec!["ok.org".into(), "-bad".into()]),
                "domains[1]",
            ),
            (
                Box::new(|s| s.postmaster = Some("nobody".into())),
                "postmaster",
            ),
            (
                Box::new(|s| s.mailbox_template = Some("/srv/mail".into())),
                "mailbox_template",
            ),
            (
                Box::new(|s| s.smarthost = Some("relay:notaport".into())),
                "delivery.smarthost",
            ),
            (Box::new(|s| s.log_level = "loud".into()), "logging.level"),
            (
                Box::new(|s| s.postmaster = Some("a@b.org\r\nBcc: x@y".into())),
                "postmaster",
            ),
        ];
        for (change, key) in cases {
            let mut s = good.clone();
            change(&mut s);
            match write_settings(&path, &s) {
                Err(OpsError::Invalid(m)) => {
                    // Named by settings field, with the key where it differs.
                    let field = field_of_key(key).unwrap();
                    assert!(m.starts_with(&format!("{field}:")), "{key}: {m}");
                    assert!(
                        field == key || m.contains(&format!("(key `{key}`)")),
                        "{key}: {m}"
                    );
                }
                other => panic!("{key}: {other:?}"),
            }
            assert_eq!(fs::read_to_string(&path).unwrap(), SAMPLE, "{key}");
        }
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn errors_name_the_settings_field() {
        let m = |e: OpsError| match e {
            OpsError::Invalid(m) => m,
            other => panic!("{other:?}"),
        };
        let e = m(invalid(
            "logging.level",
            "`loud` is not one of error, warn, info, debug, trace",
        ));
        assert!(
            e.starts_with("log_level: `loud`") && e.contains("logging.level"),
            "{e}"
        );
        let e = m(invalid("domains[1]", "`a b` is not a valid domain"));
        assert!(e.starts_with("domains: "), "{e}");
        assert_eq!(
            m(invalid("hostname", "`x y` is not a valid host name")),
            "hostname: `x y` is not a valid host name"
        );
        assert_eq!(m(invalid("listen.admin[0]", "no")), "listen.admin[0]: no");
    }

    #[test]
    fn mode_is_kept_and_symlinks_stay_links() {
        let (dir, real) = file(SAMPLE);
        fs::set_permissions(&real, fs::Permissions::from_mode(0o640)).unwrap();
        let link = dir.path().join("link.toml");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let mut s = read_settings(&link).unwrap();
        s.hostname = "mail.example.org".into();
        write_settings(&link, &s).unwrap();
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        let mode = fs::metadata(&real).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        assert_eq!(read_settings(&real).unwrap().hostname, "mail.example.org");
    }

    #[test]
    fn a_missing_file_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("none.toml");
        assert!(matches!(read_settings(&path), Err(OpsError::Io { .. })));
        let s = Settings::of_config(&Config::default());
        assert!(matches!(
            write_settings(&path, &s),
            Err(OpsError::Io { .. })
        ));
    }
}
