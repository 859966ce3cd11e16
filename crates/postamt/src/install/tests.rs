//! Tests of install/uninstall as a whole, as dry runs in temporary
//! directories (nothing on the machine is changed).

use super::*;

fn args(dir: &Path) -> InstallArgs {
    InstallArgs {
        dry_run: true,
        user: "postamt-test-nobody".into(),
        data_dir: Some(dir.join("data")),
        unit_dir: dir.join("units"),
        no_enable: false,
        binary: Some("/bin/sh".into()),
        domain: Some("example.org".into()),
    }
}

fn dry_install(config: &Path, a: &InstallArgs) -> String {
    let mut out = Vec::new();
    install_to(config, a, false, &mut out).expect("a dry run works as any user");
    String::from_utf8(out).unwrap()
}

/// The text between `----- begin PATH` and `----- end PATH`.
fn file_in(out: &str, path: &Path) -> String {
    let begin = format!("----- begin {}\n", path.display());
    let end = format!("----- end {}\n", path.display());
    let start = out.find(&begin).expect("file shown") + begin.len();
    let stop = out[start..].find(&end).expect("file ends") + start;
    out[start..stop].to_string()
}

#[test]
fn a_dry_run_shows_every_step_with_the_files_and_changes_nothing() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("units")).unwrap();
    let config = d.path().join("conf/postamt.toml");
    let out = dry_install(&config, &args(d.path()));
    assert!(
        out.starts_with("postamt install --dry-run: nothing is changed"),
        "{out}"
    );
    assert!(
        out.contains("create the system account `postamt-test-nobody`"),
        "{out}"
    );
    assert!(out.contains("--system"), "{out}");
    let data = d.path().join("data");
    assert!(
        out.contains(&format!(
            "create directory {} (owner postamt-test-nobody:postamt-test-nobody, mode 0750)",
            data.display()
        )),
        "{out}"
    );
    let unit = file_in(&out, &d.path().join("units/postamt.service"));
    assert!(unit.contains("User=postamt-test-nobody\n"), "{unit}");
    assert!(unit.contains(&format!(
        "ExecStart=/bin/sh serve --config {}\n",
        config.display()
    )));
    assert!(unit.contains(&format!("ReadWritePaths={}\n", data.display())));
    let conf = file_in(&out, &config);
    let parsed = postamt_config::parse(&conf, &config).expect("the shown config is valid");
    assert_eq!(parsed.data_dir, data);
    assert!(
        out.contains("run: systemctl enable --now postamt.service"),
        "{out}"
    );
    // Nothing was made.
    assert!(!data.exists() && !config.exists());
    assert_eq!(
        std::fs::read_dir(d.path().join("units")).unwrap().count(),
        0
    );
}

#[test]
fn a_real_run_needs_root() {
    let d = tempfile::tempdir().unwrap();
    let mut a = args(d.path());
    a.dry_run = false;
    let err = install_to(&d.path().join("c/postamt.toml"), &a, false, &mut Vec::new())
        .expect_err("not root");
    assert!(matches!(err, InstallError::NotRoot("install")));
    assert!(err.to_string().contains("--dry-run"), "{err}");
    let u = UninstallArgs {
        dry_run: false,
        user: "postamt".into(),
        data_dir: None,
        unit_dir: d.path().into(),
    };
    let err = uninstall_to(&d.path().join("c/postamt.toml"), &u, false, &mut Vec::new())
        .expect_err("not root");
    assert!(matches!(err, InstallError::NotRoot("uninstall")));
    assert!(!d.path().join("data").exists());
}

#[test]
fn bad_names_and_places_are_refused_before_anything() {
    let d = tempfile::tempdir().unwrap();
    let config = d.path().join("c/postamt.toml");
    let mut a = args(d.path());
    a.user = "Root Kit".into();
    assert!(matches!(
        install_to(&config, &a, false, &mut Vec::new()),
        Err(InstallError::BadUser(_))
    ));
    let mut a = args(d.path());
    a.domain = Some("exa mple.org\"".into());
    assert!(matches!(
        install_to(&config, &a, false, &mut Vec::new()),
        Err(InstallError::BadDomain(_))
    ));
    let mut a = args(d.path());
    a.data_dir = Some(d.path().join("my data"));
    assert!(matches!(
        install_to(&config, &a, false, &mut Vec::new()),
        Err(InstallError::UnsafePath(_))
    ));
    assert!(matches!(
        install_to(
            Path::new("/postamt.toml"),
            &args(d.path()),
            false,
            &mut Vec::new()
        ),
        Err(InstallError::Refused(_))
    ));
}

#[test]
fn unsafe_data_dirs_and_hidden_binaries_block_a_real_run() {
    let d = tempfile::tempdir().unwrap();
    let config = d.path().join("c/postamt.toml");
    // A directory with someone else's files.
    let other = d.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("precious.txt"), "x").unwrap();
    let mut a = args(d.path());
    a.data_dir = Some(other.clone());
    let out = dry_install(&config, &a);
    assert!(out.contains("A real run would refuse"), "{out}");
    assert!(
        out.contains("does not look like a Postamt data directory"),
        "{out}"
    );
    // A binary the unit would hide from the service.
    let mut a = args(d.path());
    a.binary = Some("/root/postamt".into());
    let out = dry_install(&config, &a);
    assert!(out.contains("ProtectHome"), "{out}");
    assert!(
        data_dir_problem(Path::new("/var")).is_some(),
        "too close to /"
    );
    assert!(data_dir_problem(&d.path().join("new")).is_none());
}

#[test]
fn an_existing_config_gives_the_data_dir_and_a_conflict_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    let config = d.path().join("c/postamt.toml");
    std::fs::create_dir(d.path().join("c")).unwrap();
    let data = d.path().join("elsewhere");
    std::fs::write(
        &config,
        format!(
            "hostname = \"mx.example.org\"\ndata_dir = \"{}\"\n[logging]\ndir = \"/var/log/postamt\"\n",
            data.display()
        ),
    )
    .unwrap();
    let mut a = args(d.path());
    a.data_dir = None;
    let out = dry_install(&config, &a);
    let unit = file_in(&out, &d.path().join("units/postamt.service"));
    assert!(
        unit.contains(&format!("ReadWritePaths={}\n", data.display())),
        "{unit}"
    );
    assert!(unit.contains("ReadWritePaths=/var/log/postamt\n"), "{unit}");
    assert!(out.contains("never overwrites a config"), "{out}");
    assert!(!out.contains(&format!("----- begin {}", config.display())));

    let a = args(d.path()); // --data-dir <tmp>/data, the config says elsewhere
    assert!(matches!(
        install_to(&config, &a, false, &mut Vec::new()),
        Err(InstallError::DataDirConflict { .. })
    ));
}

#[test]
fn uninstall_dry_run_keeps_the_data_and_says_where() {
    let d = tempfile::tempdir().unwrap();
    let units = d.path().join("units");
    std::fs::create_dir(&units).unwrap();
    std::fs::write(units.join("postamt.service"), "[Service]\n").unwrap();
    let u = UninstallArgs {
        dry_run: true,
        user: "postamt".into(),
        data_dir: Some(d.path().join("data")),
        unit_dir: units.clone(),
    };
    let mut out = Vec::new();
    uninstall_to(&d.path().join("c/postamt.toml"), &u, false, &mut out).unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.contains(&format!(
            "remove {}",
            units.join("postamt.service").display()
        )),
        "{out}"
    );
    assert!(
        out.contains("systemctl disable --now postamt.service"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "Kept (uninstall never touches mail): the data directory {}",
            d.path().join("data").display()
        )),
        "{out}"
    );
    assert!(
        units.join("postamt.service").exists(),
        "a dry run removes nothing"
    );
}

#[test]
fn account_names() {
    for ok in ["postamt", "_mail", "mail-2", "a"] {
        assert!(valid_user(ok), "{ok}");
    }
    for bad in ["", "Postamt", "2mail", "a b", "a:b", &"x".repeat(33)] {
        assert!(!valid_user(bad), "{bad}");
    }
}
