//! The list, auto-reply and forward operations on a real directory and
//! spool in a temporary data directory.

use chrono::NaiveDate;
use postamt_config::Config;
use postamt_directory::{DirectoryError, PendingAction};
use postamt_ops::{
    Admin, AutoreplyState, ListOption, ListOptions, OpsError, Posting, ReplyTo, autoreply_window,
};
use postamt_spool::NewMessage;
use std::sync::Arc;

struct Fixture {
    _dir: tempfile::TempDir,
    admin: Admin,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config {
        hostname: "mx.example.org".into(),
        domains: vec!["example.org".into(), "example.net".into()],
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    let admin = Admin::open(Arc::new(config)).expect("open");
    admin.add_user("alice", "pw-alice", false).expect("alice");
    admin.add_user("bob", "pw-bob", false).expect("bob");
    Fixture { _dir: dir, admin }
}

fn invalid(r: Result<impl std::fmt::Debug, OpsError>) -> String {
    match r {
        Err(OpsError::Invalid(m)) => m,
        other => panic!("expected OpsError::Invalid, got {other:?}"),
    }
}

#[test]
fn create_defaults_owner_to_postmaster_and_qualifies_bare_names() {
    let f = fixture();
    let t = f
        .admin
        .list_create("team", &ListOptions::default())
        .expect("create");
    assert_eq!(t.owner, "postmaster@example.org");
    assert_eq!(t.posting, Posting::Members);
    assert_eq!(t.subject_prefix, "[team] ");

    let opts = ListOptions {
        owner: Some("alice".into()),
        posting: Some(Posting::Moderated),
        ..ListOptions::default()
    };
    let n = f.admin.list_create("news", &opts).expect("create");
    assert_eq!(n.owner, "alice@example.org");
    assert_eq!(n.posting, Posting::Moderated);

    let bad_owner = ListOptions {
        owner: Some("ghost".into()),
        ..ListOptions::default()
    };
    let m = invalid(f.admin.list_create("other", &bad_owner));
    assert!(m.contains("ghost@example.org"), "{m}");
    assert!(f.admin.list_show("other").is_err());
}

#[test]
fn members_subscribe_unsubscribe_and_show() {
    let f = fixture();
    f.admin
        .list_create("team", &ListOptions::default())
        .expect("create");
    let m = f.admin.list_subscribe("team", "bob").expect("bob");
    assert_eq!(m.address, "bob@example.org");
    f.admin
        .list_subscribe("team", "Carol@Remote.ORG")
        .expect("carol");
    // A local address that leads nowhere is refused.
    let msg = invalid(f.admin.list_subscribe("team", "ghost@example.net"));
    assert!(msg.contains("ghost@example.net"), "{msg}");
    // The list itself is refused.
    let msg = invalid(f.admin.list_subscribe("team", "team@example.net"));
    assert!(msg.contains("own member"), "{msg}");
    assert!(matches!(
        f.admin.list_subscribe("team", "bob@EXAMPLE.org"),
        Err(OpsError::Directory(DirectoryError::AlreadyMember { .. }))
    ));
    let members: Vec<String> = f
        .admin
        .list_members("team")
        .expect("members")
        .into_iter()
        .map(|m| m.address)
        .collect();
    assert_eq!(members, ["bob@example.org", "Carol@remote.org"]);
    let shown = f.admin.list_show("TEAM").expect("show");
    assert_eq!(shown.members, 2);
    assert_eq!(shown.list.name, "team");

    f.admin.list_unsubscribe("team", "bob").expect("unsub");
    assert!(matches!(
        f.admin.list_unsubscribe("team", "bob"),
        Err(OpsError::Directory(DirectoryError::NotMember { .. }))
    ));
    let all = f.admin.lists().expect("lists");
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].members, 1);
}

#[test]
fn options_can_be_changed_one_or_several_at_a_time() {
    let f = fixture();
    f.admin
        .list_create("team", &ListOptions::default())
        .expect("create");
    let t = f
        .admin
        .list_set_option("team", ListOption::ReplyTo(ReplyTo::Sender))
        .expect("set");
    assert_eq!(t.reply_to, ReplyTo::Sender);
    let t = f
        .admin
        .list_set_options(
            "team",
            &ListOptions {
                owner: Some("bob".into()),
                subject_prefix: Some(String::new()),
                max_message_size: Some(2048),
                posting: Some(Posting::Anyone),
                ..ListOptions::default()
            },
        )
        .expect("set");
    assert_eq!(t.owner, "bob@example.org");
    assert_eq!(t.subject_prefix, "");
    assert_eq!(t.max_message_size, 2048);
    assert_eq!(t.posting, Posting::Anyone);
    assert_eq!(t.reply_to, ReplyTo::Sender, "unchanged");
    invalid(f.admin.list_set_options("team", &ListOptions::default()));
    assert!(matches!(
        f.admin
            .list_set_option("team", ListOption::SubjectPrefix("[x]\r\nBcc: y".into())),
        Err(OpsError::Directory(DirectoryError::InvalidText(..)))
    ));
}

#[test]
fn delete_discards_held_posts_from_the_queue() {
    let f = fixture();
    f.admin
        .list_create("team", &ListOptions::default())
        .expect("create");
    f.admin.list_subscribe("team", "alice").expect("alice");
    let id = f
        .admin
        .spool
        .enqueue_blocking(
            NewMessage {
                mail_from: "eve@remote.org".into(),
                recipients: vec!["team@example.org".into()],
                ..NewMessage::default()
            },
            b"Subject: hi\r\n\r\nheld\r\n".to_vec(),
        )
        .expect("enqueue");
    let now = chrono::Utc::now().timestamp();
    f.admin
        .directory
        .create_pending(
            "team",
            "eve@remote.org",
            PendingAction::Post,
            &id.to_string(),
            now,
            3600,
        )
        .expect("held");
    f.admin
        .directory
        .create_pending(
            "team",
            "dan@remote.org",
            PendingAction::Subscribe,
            "",
            now,
            3600,
        )
        .expect("confirmation");
    let gone = f.admin.list_delete("team").expect("delete");
    assert_eq!(gone.name, "team");
    assert_eq!(gone.members, 1);
    assert_eq!(gone.held_posts_discarded, 1);
    assert_eq!(gone.confirmations_dropped, 1);
    assert!(f.admin.spool.get(&id).is_err(), "the held post is gone");
    assert!(matches!(
        f.admin.list_delete("team"),
        Err(OpsError::Directory(DirectoryError::NoSuchList(_)))
    ));
}

#[test]
fn list_names_collide_with_users_and_back() {
    let f = fixture();
    assert!(matches!(
        f.admin.list_create("alice", &ListOptions::default()),
        Err(OpsError::Directory(DirectoryError::NameTaken { .. }))
    ));
    f.admin
        .list_create("team", &ListOptions::default())
        .expect("create");
    assert!(matches!(
        f.admin.add_user("team-owner", "pw", false),
        Err(OpsError::Directory(DirectoryError::NameTaken { .. }))
    ));
    assert!(matches!(
        f.admin.add_alias("team", &["bob".to_owned()]),
        Err(OpsError::Directory(DirectoryError::NameTaken { .. }))
    ));
}

fn day(s: &str) -> NaiveDate {
    s.parse().expect("date")
}

#[test]
fn autoreply_dates_are_whole_utc_days() {
    let now = day("2026-01-01")
        .and_hms_opt(12, 0, 0)
        .expect("time")
        .and_utc()
        .timestamp();
    let (s, e) =
        autoreply_window(Some(day("2026-03-01")), Some(day("2026-03-01")), now).expect("window");
    assert_eq!(s, Some(1_772_323_200)); // 2026-03-01T00:00:00Z
    assert_eq!(e, Some(1_772_323_200 + 86_400)); // until includes that day
    assert_eq!(
        autoreply_window(None, None, now).expect("open"),
        (None, None)
    );
    let m = invalid(autoreply_window(
        Some(day("2026-03-02")),
        Some(day("2026-03-01")),
        now,
    ));
    assert!(m.contains("after"), "{m}");
    let m = invalid(autoreply_window(None, Some(day("2025-12-31")), now));
    assert!(m.contains("passed"), "{m}");
    // Ending today is still fine: the rest of the day counts.
    autoreply_window(None, Some(day("2026-01-01")), now).expect("today");
}

#[test]
fn autoreply_set_show_off() {
    let f = fixture();
    let a = f
        .admin
        .autoreply_set(
            "Alice",
            "Out of office",
            "Back soon.\r\nAlice",
            None,
            Some(day("2999-12-31")),
        )
        .expect("set");
    assert_eq!(a.user, "alice");
    assert_eq!(a.body, "Back soon.\nAlice");
    let now = chrono::Utc::now().timestamp();
    assert_eq!(AutoreplyState::of(&a, now), AutoreplyState::Active);
    assert_eq!(f.admin.autoreply_show("alice").expect("show"), Some(a));

    let later = f
        .admin
        .autoreply_set("alice", "Away", "x", Some(day("2999-01-01")), None)
        .expect("set");
    assert_eq!(AutoreplyState::of(&later, now), AutoreplyState::Scheduled);
    assert_eq!(
        AutoreplyState::of(&later, i64::MAX - 1),
        AutoreplyState::Active
    );

    assert!(matches!(
        f.admin.autoreply_set("alice", "a\nb", "x", None, None),
        Err(OpsError::Directory(DirectoryError::InvalidText(
            "subject",
            _
        )))
    ));
    assert!(matches!(
        f.admin.autoreply_set("ghost", "a", "x", None, None),
        Err(OpsError::Directory(DirectoryError::NoSuchUser(_)))
    ));
    f.admin.autoreply_off("alice").expect("off");
    assert_eq!(f.admin.autoreply_show("alice").expect("show"), None);
    assert!(matches!(
        f.admin.autoreply_off("alice"),
        Err(OpsError::Directory(DirectoryError::NoAutoreply(_)))
    ));
}

#[test]
fn forward_set_show_off() {
    let f = fixture();
    let fw = f
        .admin
        .forward_set(
            "alice",
            &["x@remote.org".to_owned(), "bob".to_owned()],
            true,
        )
        .expect("set");
    assert_eq!(fw.addresses, ["x@remote.org", "bob@example.org"]);
    assert!(fw.keep_copy);
    assert_eq!(f.admin.forward_show("ALICE").expect("show"), Some(fw));
    f.admin.forward_off("alice").expect("off");
    assert_eq!(f.admin.forward_show("alice").expect("show"), None);
    assert!(matches!(
        f.admin.forward_off("alice"),
        Err(OpsError::Directory(DirectoryError::NoForward(_)))
    ));
}

#[test]
fn forward_refusals() {
    let f = fixture();
    let m = invalid(
        f.admin
            .forward_set("alice", &["alice@example.net".into()], false),
    );
    assert!(m.contains("--keep-copy"), "{m}");
    let m = invalid(f.admin.forward_set("alice", &["ghost".into()], false));
    assert!(m.contains("ghost@example.org"), "{m}");
    invalid(f.admin.forward_set("alice", &[], false));
    assert!(matches!(
        f.admin
            .forward_set("ghost", &["x@remote.org".into()], false),
        Err(OpsError::Directory(DirectoryError::NoSuchUser(_)))
    ));
    // A loop is refused and the previous setting kept.
    f.admin
        .forward_set("alice", &["bob".into()], false)
        .expect("alice -> bob");
    f.admin
        .forward_set("bob", &["x@remote.org".into()], false)
        .expect("bob -> remote");
    let m = invalid(f.admin.forward_set("bob", &["alice".into()], false));
    assert!(m.contains("loop"), "{m}");
    let kept = f.admin.forward_show("bob").expect("show").expect("kept");
    assert_eq!(kept.addresses, ["x@remote.org"]);
    // With no previous forward, a refused loop leaves none.
    f.admin.forward_off("bob").expect("off");
    invalid(f.admin.forward_set("bob", &["alice".into()], true));
    assert_eq!(f.admin.forward_show("bob").expect("show"), None);
}
