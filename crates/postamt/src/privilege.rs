//! Dropping root: when started as root with `user` set, the server binds its
//! ports first, hands the data directory to that account, then switches to
//! it (groups, gid, uid — in that order, so nothing of root's remains).

use anyhow::{Context, Result, bail};
use std::ffi::CString;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The account to run as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Account {
    pub uid: u32,
    pub gid: u32,
}

/// Whether the process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Looks `name` up in the system's user database.
pub fn lookup(name: &str) -> Result<Account> {
    let cname = CString::new(name).context("the user name contains a NUL byte")?;
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: passwd is plain old data; getpwnam_r fills it and points its
    // strings into `buf`, which outlives every use below.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the given lengths.
    let rc = unsafe {
        libc::getpwnam_r(
            cname.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 {
        bail!(
            "cannot look up user `{name}`: {}",
            std::io::Error::from_raw_os_error(rc)
        );
    }
    if result.is_null() {
        bail!("key `user`: no such system account `{name}`");
    }
    Ok(Account {
        uid: pwd.pw_uid,
        gid: pwd.pw_gid,
    })
}

/// Gives `dir` and everything below it to `account` (skipping what it owns
/// already); symlinks are changed themselves, never followed.
pub fn chown_tree(dir: &Path, account: Account) -> Result<usize> {
    let mut changed = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = match std::fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot inspect {}", p.display())),
        };
        if meta.uid() != account.uid || meta.gid() != account.gid {
            std::os::unix::fs::lchown(&p, Some(account.uid), Some(account.gid))
                .with_context(|| format!("cannot hand {} to the service user", p.display()))?;
            changed += 1;
        }
        if meta.is_dir() {
            for entry in
                std::fs::read_dir(&p).with_context(|| format!("cannot read {}", p.display()))?
            {
                stack.push(entry?.path());
            }
        }
    }
    Ok(changed)
}

/// Switches the process to `account` for good.
pub fn switch_to(account: Account) -> Result<()> {
    // SAFETY: plain system calls on integers; errors are checked.
    unsafe {
        if libc::setgroups(1, &account.gid) != 0 {
            return Err(std::io::Error::last_os_error()).context("setgroups");
        }
        if libc::setgid(account.gid) != 0 {
            return Err(std::io::Error::last_os_error()).context("setgid");
        }
        if libc::setuid(account.uid) != 0 {
            return Err(std::io::Error::last_os_error()).context("setuid");
        }
        // Regaining root must be impossible now.
        if libc::setuid(0) == 0 {
            bail!("could still regain root after dropping privileges");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_account_is_found_and_unknown_is_an_error() {
        let root = lookup("root").expect("root exists on every Unix");
        assert_eq!(root.uid, 0);
        let e = lookup("no-such-user-postamt-test").unwrap_err().to_string();
        assert!(e.contains("no such system account"), "{e}");
    }

    #[test]
    fn chown_tree_to_current_owner_changes_nothing() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("a/b")).unwrap();
        std::fs::write(d.path().join("a/b/f"), b"x").unwrap();
        let m = std::fs::metadata(d.path()).unwrap();
        let me = Account {
            uid: m.uid(),
            gid: m.gid(),
        };
        assert_eq!(chown_tree(d.path(), me).unwrap(), 0);
    }
}
