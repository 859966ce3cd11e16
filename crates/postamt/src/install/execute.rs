//! Carrying a plan out, step by step, saying each as it goes. A failed
//! step stops the run; every step is idempotent, so running install
//! again after fixing the cause finishes the job.

use super::InstallError;
use super::command;
use super::plan::{Plan, Step, shell_words};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

/// Longest a command may take (`systemctl enable --now` waits for the
/// start, `restart` for the stop first: up to the unit's 90 s).
const COMMAND_LIMIT: Duration = Duration::from_secs(180);

/// Runs every step of `plan`, writing one line per step to `out`.
/// Returns how many steps changed something.
pub fn execute(plan: &Plan, out: &mut dyn Write) -> Result<usize, InstallError> {
    let total = plan.steps.len();
    let mut changed = 0;
    for (i, step) in plan.steps.iter().enumerate() {
        let _ = writeln!(out, "[{}/{total}] {}", i + 1, step.describe());
        run_step(step).map_err(|reason| InstallError::Step {
            step: step.describe(),
            reason,
        })?;
        if step.changes() {
            changed += 1;
        }
    }
    Ok(changed)
}

fn run_step(step: &Step) -> Result<(), String> {
    match step {
        Step::Unchanged(_) => Ok(()),
        Step::CreateUser { command, .. } | Step::Run { command } => run_command(command),
        Step::CreateDir {
            path,
            owner,
            group,
            mode,
        } => {
            let (uid, gid) = ids(owner, group)?;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(*mode)
                .create(path)
                .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            set_owner_mode(path, uid, gid, *mode)
        }
        Step::OwnDir { path, user, mode } => {
            let account = crate::privilege::lookup(user).map_err(|e| format!("{e:#}"))?;
            crate::privilege::chown_tree(path, account).map_err(|e| format!("{e:#}"))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(*mode))
                .map_err(|e| format!("cannot set the mode of {}: {e}", path.display()))
        }
        Step::WriteFile {
            path,
            owner,
            group,
            mode,
            content,
            ..
        } => {
            let (uid, gid) = ids(owner, group)?;
            write_atomically(path, content.as_bytes(), uid, gid, *mode)
        }
        Step::RemoveFile { path } => match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("cannot remove {}: {e}", path.display())),
        },
    }
}

fn run_command(words: &[String]) -> Result<(), String> {
    let out = command::run(words, COMMAND_LIMIT).map_err(|e| e.to_string())?;
    if out.success() {
        return Ok(());
    }
    let said = [out.stderr.trim(), out.stdout.trim()]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    Err(format!(
        "`{}` exited with {}{}",
        shell_words(words),
        out.code
            .map(|c| c.to_string())
            .unwrap_or_else(|| "a signal".into()),
        if said.is_empty() {
            String::new()
        } else {
            format!(": {said}")
        }
    ))
}

/// Numeric ids of a user and a group named like a user (`root`, or the
/// service account whose primary group has its name).
fn ids(owner: &str, group: &str) -> Result<(u32, u32), String> {
    let uid = crate::privilege::lookup(owner)
        .map_err(|e| format!("{e:#}"))?
        .uid;
    let gid = crate::privilege::lookup(group)
        .map_err(|e| format!("{e:#}"))?
        .gid;
    Ok((uid, gid))
}

fn set_owner_mode(path: &Path, uid: u32, gid: u32, mode: u32) -> Result<(), String> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .map_err(|e| format!("cannot set the owner of {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot set the mode of {}: {e}", path.display()))
}

/// Writes `path` through a temporary file in the same directory: owner and
/// mode set and data fsynced before the rename, so readers see the old or
/// the new file, never a part.
pub fn write_atomically(
    path: &Path,
    data: &[u8],
    uid: u32,
    gid: u32,
    mode: u32,
) -> Result<(), String> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.postamt-install.{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
        f.write_all(data)
            .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        std::os::unix::fs::fchown(&f, Some(uid), Some(gid))
            .map_err(|e| format!("cannot set the owner of {}: {e}", tmp.display()))?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("cannot set the mode of {}: {e}", tmp.display()))?;
        f.sync_all()
            .map_err(|e| format!("cannot sync {}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, path)
            .map_err(|e| format!("cannot move the new file to {}: {e}", path.display()))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn me() -> (u32, u32) {
        // SAFETY: no preconditions, cannot fail.
        unsafe { (libc::geteuid(), libc::getegid()) }
    }

    #[test]
    fn atomic_write_sets_content_and_mode_and_replaces() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("postamt.service");
        let (uid, gid) = me();
        write_atomically(&p, b"one\n", uid, gid, 0o644).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "one\n");
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o7777, 0o644);
        write_atomically(&p, b"two\n", uid, gid, 0o640).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "two\n");
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o7777, 0o640);
        // No temporary file left behind.
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn steps_run_in_order_and_a_failing_command_stops_the_run() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("f");
        let plan = Plan {
            steps: vec![
                Step::Unchanged("already there".into()),
                Step::WriteFile {
                    path: file.clone(),
                    owner: "root".into(),
                    group: "root".into(),
                    mode: 0o644,
                    content: "x".into(),
                    replaces: false,
                },
                Step::Run {
                    command: vec!["false".into()],
                },
                Step::RemoveFile { path: file.clone() },
            ],
            ..Plan::default()
        };
        let mut out = Vec::new();
        let r = execute(&plan, &mut out);
        let text = String::from_utf8(out).unwrap();
        if me().0 != 0 {
            // chown to root needs root: the write step fails and says so.
            assert!(matches!(r, Err(InstallError::Step { .. })), "{r:?}");
            return;
        }
        match r {
            Err(InstallError::Step { step, reason }) => {
                assert_eq!(step, "run: false");
                assert!(reason.contains("exited with 1"), "{reason}");
            }
            other => panic!("expected the command to fail the run: {other:?}"),
        }
        assert!(file.exists(), "steps after the failure must not run");
        assert!(text.contains("[1/4] unchanged: already there"), "{text}");
        assert!(text.contains("[3/4] run: false"), "{text}");
        assert!(!text.contains("[4/4]"), "{text}");
    }

    #[test]
    fn removing_a_missing_file_is_done_already() {
        let d = tempfile::tempdir().unwrap();
        let plan = Plan {
            steps: vec![Step::RemoveFile {
                path: d.path().join("gone"),
            }],
            ..Plan::default()
        };
        assert_eq!(execute(&plan, &mut Vec::new()).unwrap(), 1);
    }
}
