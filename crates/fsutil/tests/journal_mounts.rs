//! `journal_orders_writes` against real file systems: ext4 with and
//! without a journal, made in image files and loop-mounted. Needs root,
//! `mkfs.ext4` and loop devices; where the machine lacks them the test
//! says so and checks nothing more.

use std::path::Path;
use std::process::Command;

fn run(cmd: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Makes an ext4 image with `features`, mounts it under `dir`, returns the
/// mount point.
fn mount_ext4(dir: &Path, name: &str, features: &str) -> Result<std::path::PathBuf, String> {
    let image = dir.join(format!("{name}.img"));
    let mnt = dir.join(name);
    std::fs::create_dir(&mnt).map_err(|e| e.to_string())?;
    let file = std::fs::File::create(&image).map_err(|e| e.to_string())?;
    file.set_len(64 << 20).map_err(|e| e.to_string())?;
    let image_s = image.to_str().ok_or("path")?;
    run("mkfs.ext4", &["-q", "-F", "-O", features, image_s])?;
    run(
        "mount",
        &["-o", "loop", image_s, mnt.to_str().ok_or("path")?],
    )?;
    Ok(mnt)
}

#[test]
fn ext4_with_and_without_a_journal() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to loop-mount images");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let with = match mount_ext4(dir.path(), "journal", "has_journal") {
        Ok(m) => m,
        Err(e) => {
            eprintln!("skipped: cannot make and mount an ext4 image here: {e}");
            return;
        }
    };
    let without = mount_ext4(dir.path(), "nojournal", "^has_journal");
    let answers = without.as_ref().map(|w| {
        std::fs::create_dir(w.join("new")).unwrap();
        (
            postamt_fsutil::journal_orders_writes(&with),
            postamt_fsutil::journal_orders_writes(w),
            postamt_fsutil::journal_orders_writes(&w.join("new")),
        )
    });
    let _ = run("umount", &[with.to_str().unwrap()]);
    if let Ok(w) = &without {
        let _ = run("umount", &[w.to_str().unwrap()]);
    }
    let (with_journal, without_journal, subdir) = answers.unwrap();
    assert!(with_journal, "ext4 with a journal");
    assert!(!without_journal, "ext4 without a journal");
    assert!(!subdir, "a directory inside it");
}
