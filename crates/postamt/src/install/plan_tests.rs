//! Tests of the pure planning of install and uninstall.

use super::*;

fn settings() -> Settings {
    Settings {
        user: "postamt".into(),
        data_dir: "/var/lib/postamt".into(),
        config: "/etc/postamt/postamt.toml".into(),
        unit_dir: "/etc/systemd/system".into(),
        enable: true,
        config_text: "hostname = \"localhost\"\n".into(),
        unit_text: "[Service]\nUser=postamt\n".into(),
    }
}

/// A fresh machine with systemd.
fn fresh() -> Facts {
    Facts {
        systemd_running: true,
        service: ServiceState {
            enabled: Some(false),
            active: Some(false),
        },
        useradd: Some(UserAdd::Useradd("/usr/sbin/useradd".into())),
        nologin: "/usr/sbin/nologin".into(),
        unit_dir_exists: true,
        ..Facts::default()
    }
}

/// The machine after a complete install of `settings()`.
fn installed() -> Facts {
    Facts {
        account: Some(AccountFact { uid: 998, gid: 997 }),
        data_dir: Some(Ownership {
            uid: 998,
            gid: 997,
            mode: 0o750,
        }),
        config_dir_exists: true,
        config_exists: true,
        unit_text: Some(settings().unit_text),
        service: ServiceState {
            enabled: Some(true),
            active: Some(true),
        },
        ..fresh()
    }
}

fn runs(plan: &Plan) -> Vec<String> {
    plan.steps
        .iter()
        .filter_map(|s| match s {
            Step::Run { command } => Some(command.join(" ")),
            _ => None,
        })
        .collect()
}

#[test]
fn a_fresh_install_does_every_step_in_order() {
    let plan = plan_install(&settings(), &fresh());
    assert!(plan.blockers.is_empty(), "{:?}", plan.blockers);
    let s = &plan.steps;
    assert_eq!(s.len(), 7, "{s:#?}");
    assert_eq!(
        s[0],
        Step::CreateUser {
            name: "postamt".into(),
            command: [
                "/usr/sbin/useradd",
                "--system",
                "--user-group",
                "--home-dir",
                "/var/lib/postamt",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                "postamt"
            ]
            .map(String::from)
            .to_vec(),
        }
    );
    assert_eq!(
        s[1],
        Step::CreateDir {
            path: "/var/lib/postamt".into(),
            owner: "postamt".into(),
            group: "postamt".into(),
            mode: 0o750
        }
    );
    assert_eq!(
        s[2],
        Step::CreateDir {
            path: "/etc/postamt".into(),
            owner: "root".into(),
            group: "postamt".into(),
            mode: 0o770
        }
    );
    assert!(
        matches!(&s[3], Step::WriteFile { path, content, mode: 0o660, replaces: false, .. }
        if path == Path::new("/etc/postamt/postamt.toml") && content.contains("localhost"))
    );
    assert!(
        matches!(&s[4], Step::WriteFile { path, content, mode: 0o644, owner, .. }
        if path == Path::new("/etc/systemd/system/postamt.service")
            && content.contains("User=postamt") && owner == "root")
    );
    assert_eq!(
        runs(&plan),
        [
            "systemctl daemon-reload",
            "systemctl enable --now postamt.service"
        ]
    );
    assert_eq!(plan.changes(), 7);
}

#[test]
fn a_second_install_changes_nothing_and_says_so() {
    let plan = plan_install(&settings(), &installed());
    assert_eq!(plan.changes(), 0, "{:#?}", plan.steps);
    assert!(plan.blockers.is_empty());
    let text: Vec<String> = plan.steps.iter().map(Step::describe).collect();
    assert!(
        text.iter().all(|t| t.starts_with("unchanged: ")),
        "{text:?}"
    );
    assert!(text.iter().any(|t| t.contains("account `postamt` exists")));
    assert!(text.iter().any(|t| t.contains("never overwrites")));
    assert!(text.iter().any(|t| t.contains("is enabled and running")));
}

#[test]
fn a_changed_unit_is_replaced_reloaded_and_restarted() {
    let mut f = installed();
    f.unit_text = Some("[Service]\nUser=old\n".into());
    let plan = plan_install(&settings(), &f);
    assert!(plan.steps.iter().any(
        |s| matches!(s, Step::WriteFile { replaces: true, path, .. } if path.ends_with("postamt.service"))
    ));
    assert_eq!(
        runs(&plan),
        [
            "systemctl daemon-reload",
            "systemctl restart postamt.service"
        ]
    );
}

#[test]
fn a_data_dir_owned_by_someone_else_is_handed_over() {
    let mut f = installed();
    f.data_dir = Some(Ownership {
        uid: 0,
        gid: 0,
        mode: 0o755,
    });
    let plan = plan_install(&settings(), &f);
    assert_eq!(
        plan.steps
            .iter()
            .filter(|s| s.changes())
            .cloned()
            .collect::<Vec<_>>(),
        [Step::OwnDir {
            path: "/var/lib/postamt".into(),
            user: "postamt".into(),
            mode: 0o750
        }]
    );
    // Only the mode wrong: handed over all the same (chown skips what is right).
    f.data_dir = Some(Ownership {
        uid: 998,
        gid: 997,
        mode: 0o777,
    });
    assert_eq!(plan_install(&settings(), &f).changes(), 1);
}

#[test]
fn an_existing_config_is_never_overwritten() {
    let mut f = fresh();
    f.config_dir_exists = true;
    f.config_exists = true;
    let plan = plan_install(&settings(), &f);
    assert!(
        !plan
            .steps
            .iter()
            .any(|s| matches!(s, Step::WriteFile { path, .. } if path.ends_with("postamt.toml")))
    );
    assert!(!plan.notes.iter().any(|n| n.contains("127.0.0.1 only")));
}

#[test]
fn a_missing_unit_directory_blocks() {
    let mut f = fresh();
    f.unit_dir_exists = false;
    let plan = plan_install(&settings(), &f);
    assert!(
        plan.blockers
            .iter()
            .any(|b| b.contains("/etc/systemd/system does not exist")),
        "{:?}",
        plan.blockers
    );
}

#[test]
fn no_enable_only_writes_files() {
    let mut s = settings();
    s.enable = false;
    let plan = plan_install(&s, &fresh());
    assert_eq!(runs(&plan), ["systemctl daemon-reload"]);
    assert!(plan.notes.iter().any(|n| n.contains("--no-enable")));
}

#[test]
fn without_systemd_enabling_is_refused_but_no_enable_works() {
    let mut f = fresh();
    f.systemd_running = false;
    f.service = ServiceState::default();
    let plan = plan_install(&settings(), &f);
    assert_eq!(plan.blockers.len(), 1, "{:?}", plan.blockers);
    assert!(plan.blockers[0].contains("--no-enable"));
    // The dry run still shows the whole procedure.
    assert_eq!(
        runs(&plan),
        [
            "systemctl daemon-reload",
            "systemctl enable --now postamt.service"
        ]
    );

    let mut s = settings();
    s.enable = false;
    let plan = plan_install(&s, &f);
    assert!(plan.blockers.is_empty());
    assert!(runs(&plan).is_empty());
    assert!(plan.notes.iter().any(|n| n.contains("daemon-reload")));
}

#[test]
fn adduser_is_used_when_useradd_is_missing_and_neither_blocks() {
    let mut f = fresh();
    f.useradd = Some(UserAdd::Adduser("/usr/sbin/adduser".into()));
    let plan = plan_install(&settings(), &f);
    assert!(matches!(&plan.steps[0], Step::CreateUser { command, .. }
        if command[0] == "/usr/sbin/adduser" && command.contains(&"--system".to_string())
            && command.contains(&"/usr/sbin/nologin".to_string())));
    f.useradd = None;
    let plan = plan_install(&settings(), &f);
    assert!(plan.blockers.iter().any(|b| b.contains("useradd")));
}

fn uninstall_settings() -> UninstallSettings {
    UninstallSettings {
        user: "postamt".into(),
        data_dir: "/var/lib/postamt".into(),
        config: "/etc/postamt/postamt.toml".into(),
        unit_dir: "/etc/systemd/system".into(),
    }
}

#[test]
fn uninstall_stops_removes_the_unit_and_keeps_the_data() {
    let plan = plan_uninstall(&uninstall_settings(), &installed());
    assert!(plan.blockers.is_empty());
    assert_eq!(
        plan.steps,
        [
            Step::Run {
                command: ["systemctl", "disable", "--now", "postamt.service"]
                    .map(String::from)
                    .to_vec()
            },
            Step::RemoveFile {
                path: "/etc/systemd/system/postamt.service".into()
            },
            Step::Run {
                command: ["systemctl", "daemon-reload"].map(String::from).to_vec()
            },
        ]
    );
    // Nothing under the data dir or the config is ever removed.
    for s in &plan.steps {
        if let Step::RemoveFile { path } = s {
            assert!(!path.starts_with("/var/lib/postamt") && !path.starts_with("/etc/postamt"));
        }
    }
    let note = plan.notes.join("\n");
    assert!(note.contains("/var/lib/postamt") && note.contains("/etc/postamt/postamt.toml"));
    assert!(note.starts_with("Kept"), "{note}");
}

#[test]
fn uninstall_twice_changes_nothing() {
    let mut f = installed();
    f.unit_text = None;
    f.service = ServiceState {
        enabled: Some(false),
        active: Some(false),
    };
    let plan = plan_uninstall(&uninstall_settings(), &f);
    assert_eq!(plan.changes(), 0, "{:#?}", plan.steps);
}

#[test]
fn shell_words_quotes_only_what_needs_it() {
    let w = ["systemctl", "enable", "--now", "a b", "it's", ""].map(String::from);
    assert_eq!(
        shell_words(&w),
        "systemctl enable --now 'a b' 'it'\\''s' ''"
    );
}
