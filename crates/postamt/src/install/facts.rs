//! Looking at the machine (read only, works as any user): the account,
//! the directories and files install manages, the tools it would call,
//! and what systemd says about the unit.

use super::command;
use super::plan::{AccountFact, Facts, Ownership, ServiceState, UNIT, UserAdd};
use std::ffi::CString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Longest wait for a `systemctl is-...` query.
const QUERY_LIMIT: Duration = Duration::from_secs(20);
/// Largest unit file read back.
const MAX_UNIT_BYTES: u64 = 256 * 1024;

/// What to look at.
pub struct Targets<'a> {
    pub user: &'a str,
    pub data_dir: &'a Path,
    pub config: &'a Path,
    pub unit_path: &'a Path,
}

/// Gathers the facts for `t`.
pub fn gather(t: &Targets<'_>) -> std::io::Result<Facts> {
    let systemd_running = Path::new("/run/systemd/system").is_dir();
    Ok(Facts {
        account: account(t.user)?,
        data_dir: ownership(t.data_dir)?,
        config_dir_exists: t.config.parent().is_some_and(Path::is_dir),
        config_exists: exists(t.config)?,
        unit_text: read_unit(t.unit_path)?,
        unit_dir_exists: t.unit_path.parent().is_some_and(Path::is_dir),
        systemd_running,
        service: if systemd_running {
            service_state()
        } else {
            ServiceState::default()
        },
        useradd: first_existing(&["/usr/sbin/useradd", "/sbin/useradd", "/usr/bin/useradd"])
            .map(UserAdd::Useradd)
            .or_else(|| {
                first_existing(&["/usr/sbin/adduser", "/sbin/adduser", "/usr/bin/adduser"])
                    .map(UserAdd::Adduser)
            }),
        nologin: first_existing(&["/usr/sbin/nologin", "/sbin/nologin", "/usr/bin/nologin"])
            .unwrap_or_else(|| PathBuf::from("/bin/false")),
    })
}

fn first_existing(candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().map(PathBuf::from).find(|p| p.is_file())
}

fn exists(p: &Path) -> std::io::Result<bool> {
    match std::fs::symlink_metadata(p) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Owner and mode of `p`, if it exists.
pub fn ownership(p: &Path) -> std::io::Result<Option<Ownership>> {
    match std::fs::metadata(p) {
        Ok(m) => Ok(Some(Ownership {
            uid: m.uid(),
            gid: m.gid(),
            mode: m.mode() & 0o7777,
        })),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The unit file's text, if there is one (bounded).
fn read_unit(p: &Path) -> std::io::Result<Option<String>> {
    use std::io::Read;
    match std::fs::File::open(p) {
        Ok(f) => {
            let mut buf = Vec::new();
            f.take(MAX_UNIT_BYTES).read_to_end(&mut buf)?;
            Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// `systemctl is-enabled` / `is-active` for the unit; unknown when
/// systemctl cannot be asked.
fn service_state() -> ServiceState {
    let ask = |verb: &str, yes: &[&str]| -> Option<bool> {
        let words = ["systemctl", verb, &format!("{UNIT}.service")].map(String::from);
        let out = command::run(&words, QUERY_LIMIT).ok()?;
        let answer = out.stdout.trim();
        if answer.is_empty() {
            return None;
        }
        Some(yes.contains(&answer))
    };
    ServiceState {
        enabled: ask("is-enabled", &["enabled", "enabled-runtime", "alias"]),
        active: ask("is-active", &["active", "reloading", "activating"]),
    }
}

/// The account `name` in the system's user database, if it exists.
pub fn account(name: &str) -> std::io::Result<Option<AccountFact>> {
    let cname = CString::new(name)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in user name"))?;
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: passwd is plain old data; getpwnam_r fills it and points its
    // strings into `buf`, which outlives every use below.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the given length.
    let rc = unsafe {
        libc::getpwnam_r(
            cname.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    // "Not found" may come back as 0 with no result, or as one of these.
    if rc != 0 && ![libc::ENOENT, libc::ESRCH, libc::EBADF, libc::EPERM].contains(&rc) {
        return Err(std::io::Error::from_raw_os_error(rc));
    }
    if rc != 0 || result.is_null() {
        return Ok(None);
    }
    Ok(Some(AccountFact {
        uid: pwd.pw_uid,
        gid: pwd.pw_gid,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_exists_and_a_made_up_account_does_not() {
        let root = account("root").unwrap().expect("root is in every passwd");
        assert_eq!(root.uid, 0);
        assert_eq!(account("postamt-no-such-user-x9").unwrap(), None);
    }

    #[test]
    fn files_and_directories_in_a_temp_dir() {
        let d = tempfile::tempdir().unwrap();
        let unit = d.path().join("postamt.service");
        std::fs::write(&unit, "[Unit]\n").unwrap();
        let facts = gather(&Targets {
            user: "root",
            data_dir: &d.path().join("data"),
            config: &d.path().join("conf/postamt.toml"),
            unit_path: &unit,
        })
        .unwrap();
        assert_eq!(facts.account.map(|a| a.uid), Some(0));
        assert_eq!(facts.data_dir, None);
        assert!(!facts.config_dir_exists && !facts.config_exists);
        assert_eq!(facts.unit_text.as_deref(), Some("[Unit]\n"));

        std::fs::create_dir(d.path().join("data")).unwrap();
        std::fs::create_dir(d.path().join("conf")).unwrap();
        std::fs::write(d.path().join("conf/postamt.toml"), "").unwrap();
        std::fs::remove_file(&unit).unwrap();
        let facts = gather(&Targets {
            user: "root",
            data_dir: &d.path().join("data"),
            config: &d.path().join("conf/postamt.toml"),
            unit_path: &unit,
        })
        .unwrap();
        let own = facts.data_dir.expect("the data dir exists now");
        assert_eq!(own.uid, unsafe { libc::geteuid() });
        assert!(facts.config_dir_exists && facts.config_exists);
        assert_eq!(facts.unit_text, None);
    }
}
