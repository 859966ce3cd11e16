//! Tests of lists, members, and the shared namespace of users, aliases and lists.

use crate::{
    Directory, DirectoryError, ListInfo, ListOptions, PendingAction, PostPermission, Posting,
    ReplyTo,
};

fn dir() -> Directory {
    Directory::open_in_memory().expect("open")
}

fn owned_by(owner: &str) -> ListOptions {
    ListOptions {
        owner: Some(owner.into()),
        ..ListOptions::default()
    }
}

fn team(d: &Directory) -> ListInfo {
    d.create_list("Team", &owned_by("Boss@Example.ORG"))
        .expect("create")
}

#[test]
fn create_with_defaults_and_read_back() {
    let d = dir();
    let t = team(&d);
    assert_eq!(t.name, "Team");
    assert_eq!(t.owner, "Boss@example.org", "domain lowercased");
    assert_eq!(t.posting, Posting::Members);
    assert_eq!(t.reply_to, ReplyTo::List);
    assert_eq!(t.subject_prefix, "[Team] ");
    assert_eq!(t.max_message_size, 0);
    assert!(t.created_at > 1_600_000_000);
    assert_eq!(d.get_list("team").expect("get"), Some(t.clone()));
    assert_eq!(d.get_list("TEAM").expect("get"), Some(t));
    assert_eq!(d.get_list("other").expect("get"), None);
}

#[test]
fn create_with_every_option() {
    let d = dir();
    let t = d
        .create_list(
            "announce",
            &ListOptions {
                owner: Some("boss@example.org".into()),
                posting: Some(Posting::Moderated),
                reply_to: Some(ReplyTo::Sender),
                subject_prefix: Some(String::new()),
                max_message_size: Some(1_000_000),
            },
        )
        .expect("create");
    assert_eq!(t.posting, Posting::Moderated);
    assert_eq!(t.reply_to, ReplyTo::Sender);
    assert_eq!(t.subject_prefix, "");
    assert_eq!(t.max_message_size, 1_000_000);
    assert_eq!(d.get_list("announce").expect("get"), Some(t));
}

#[test]
fn create_refuses_bad_input() {
    let d = dir();
    assert!(matches!(
        d.create_list("team", &ListOptions::default()),
        Err(DirectoryError::InvalidAddress(..))
    ));
    assert!(matches!(
        d.create_list("team", &owned_by("not-an-address")),
        Err(DirectoryError::InvalidAddress(..))
    ));
    assert!(matches!(
        d.create_list("../x", &owned_by("a@b.org")),
        Err(DirectoryError::InvalidListName(..))
    ));
    assert!(matches!(
        d.create_list("team-request", &owned_by("a@b.org")),
        Err(DirectoryError::InvalidListName(..))
    ));
    for prefix in ["[team]\r\nBcc: x@y.org", "[team]\n", "\u{0}"] {
        let opts = ListOptions {
            subject_prefix: Some(prefix.into()),
            ..owned_by("a@b.org")
        };
        assert!(
            matches!(
                d.create_list("team", &opts),
                Err(DirectoryError::InvalidText("subject prefix", _))
            ),
            "{prefix:?}"
        );
    }
    let huge = ListOptions {
        max_message_size: Some(u64::MAX),
        ..owned_by("a@b.org")
    };
    assert!(d.create_list("team", &huge).is_err());
    assert!(d.lists().expect("lists").is_empty());
    team(&d);
    assert!(matches!(
        d.create_list("TEAM", &owned_by("a@b.org")),
        Err(DirectoryError::ListExists(n)) if n == "Team"
    ));
}

#[test]
fn update_changes_only_what_is_set() {
    let d = dir();
    team(&d);
    let t = d
        .update_list(
            "team",
            &ListOptions {
                posting: Some(Posting::Anyone),
                subject_prefix: Some("(t) ".into()),
                ..ListOptions::default()
            },
        )
        .expect("update");
    assert_eq!(t.posting, Posting::Anyone);
    assert_eq!(t.subject_prefix, "(t) ");
    assert_eq!(t.owner, "Boss@example.org");
    assert_eq!(t.reply_to, ReplyTo::List);
    let t = d
        .update_list(
            "TEAM",
            &ListOptions {
                owner: Some("new@Example.org".into()),
                reply_to: Some(ReplyTo::Sender),
                max_message_size: Some(5),
                ..ListOptions::default()
            },
        )
        .expect("update");
    assert_eq!(t.owner, "new@example.org");
    assert_eq!(t.reply_to, ReplyTo::Sender);
    assert_eq!(t.max_message_size, 5);
    assert_eq!(t.posting, Posting::Anyone);
    assert_eq!(d.get_list("team").expect("get"), Some(t));

    let bad = ListOptions {
        subject_prefix: Some("a\r\nb".into()),
        ..ListOptions::default()
    };
    assert!(matches!(
        d.update_list("team", &bad),
        Err(DirectoryError::InvalidText(..))
    ));
    assert_eq!(
        d.get_list("team")
            .expect("get")
            .expect("team")
            .subject_prefix,
        "(t) "
    );
    assert!(matches!(
        d.update_list("ghost", &ListOptions::default()),
        Err(DirectoryError::NoSuchList(_))
    ));
}

#[test]
fn members() {
    let d = dir();
    team(&d);
    let m = d
        .add_list_member("team", "Bob.Smith@Example.ORG")
        .expect("add");
    assert_eq!(m.address, "Bob.Smith@example.org");
    d.add_list_member("TEAM", "carol@other.net").expect("add");
    assert!(matches!(
        d.add_list_member("team", "bob.smith@example.org"),
        Err(DirectoryError::AlreadyMember { list, address })
            if list == "Team" && address == "bob.smith@example.org"
    ));
    assert!(matches!(
        d.add_list_member("team", "bob"),
        Err(DirectoryError::InvalidAddress(..))
    ));
    assert!(matches!(
        d.add_list_member("team", "x\r\n@y.org"),
        Err(DirectoryError::InvalidAddress(..))
    ));
    assert!(matches!(
        d.add_list_member("ghost", "x@y.org"),
        Err(DirectoryError::NoSuchList(_))
    ));
    let all: Vec<String> = d
        .list_members("team")
        .expect("members")
        .into_iter()
        .map(|m| m.address)
        .collect();
    assert_eq!(all, ["Bob.Smith@example.org", "carol@other.net"]);
    assert!(
        d.is_list_member("team", "BOB.SMITH@EXAMPLE.ORG")
            .expect("is")
    );
    assert!(d.is_list_member("team", "carol@other.net.").expect("is"));
    assert!(!d.is_list_member("team", "dave@other.net").expect("is"));
    assert!(matches!(
        d.is_list_member("ghost", "x@y.org"),
        Err(DirectoryError::NoSuchList(_))
    ));

    d.remove_list_member("team", "bob.smith@EXAMPLE.org")
        .expect("remove");
    assert!(
        !d.is_list_member("team", "bob.smith@example.org")
            .expect("is")
    );
    assert!(matches!(
        d.remove_list_member("team", "bob.smith@example.org"),
        Err(DirectoryError::NotMember { .. })
    ));
    assert_eq!(d.list_members("team").expect("members").len(), 1);
    assert!(matches!(
        d.list_members("ghost"),
        Err(DirectoryError::NoSuchList(_))
    ));
}

#[test]
fn overview_counts_members() {
    let d = dir();
    team(&d);
    d.create_list("alpha", &owned_by("a@b.org"))
        .expect("create");
    d.add_list_member("team", "a@x.org").expect("add");
    d.add_list_member("team", "b@x.org").expect("add");
    let all = d.lists().expect("lists");
    let shown: Vec<(&str, u64)> = all
        .iter()
        .map(|s| (s.list.name.as_str(), s.members))
        .collect();
    assert_eq!(shown, [("alpha", 0), ("Team", 2)]);
}

#[test]
fn posting_permission() {
    let d = dir();
    team(&d);
    d.add_list_member("team", "bob@x.org").expect("add");
    assert_eq!(
        d.list_may_post("team", "BOB@x.org").expect("may"),
        PostPermission::Allowed
    );
    assert_eq!(
        d.list_may_post("team", "eve@x.org").expect("may"),
        PostPermission::NotMember
    );
    assert_eq!(
        d.list_may_post("team", "").expect("may"),
        PostPermission::NotMember
    );
    let set = |p| ListOptions {
        posting: Some(p),
        ..ListOptions::default()
    };
    d.update_list("team", &set(Posting::Anyone))
        .expect("update");
    assert_eq!(
        d.list_may_post("team", "eve@x.org").expect("may"),
        PostPermission::Allowed
    );
    d.update_list("team", &set(Posting::Moderated))
        .expect("update");
    assert_eq!(
        d.list_may_post("team", "bob@x.org").expect("may"),
        PostPermission::Moderated
    );
    assert!(matches!(
        d.list_may_post("ghost", "bob@x.org"),
        Err(DirectoryError::NoSuchList(_))
    ));
}

#[test]
fn delete_removes_members_and_returns_pending_entries() {
    let d = dir();
    team(&d);
    d.add_list_member("team", "bob@x.org").expect("add");
    let held = d
        .create_pending("team", "eve@x.org", PendingAction::Post, "QID123", 100, 60)
        .expect("pending");
    let dropped = d.delete_list("TEAM").expect("delete");
    assert_eq!(dropped, vec![held]);
    assert_eq!(d.get_list("team").expect("get"), None);
    assert!(matches!(
        d.delete_list("team"),
        Err(DirectoryError::NoSuchList(_))
    ));
    // A new list of the same name starts empty.
    team(&d);
    assert!(d.list_members("team").expect("members").is_empty());
    assert!(d.list_pending("team").expect("pending").is_empty());
}

#[test]
fn a_list_name_cannot_take_a_user_or_alias_name() {
    let d = dir();
    d.add_user("bob", "pw", false).expect("user");
    d.add_user("sales-request", "pw", false).expect("user");
    d.add_alias("info@example.org", &["bob".to_owned()])
        .expect("alias");
    d.add_alias("help-owner", &["bob".to_owned()])
        .expect("alias");
    d.add_alias("news*", &["bob".to_owned()]).expect("wildcard");
    let o = owned_by("a@b.org");
    for name in ["bob", "BOB", "sales", "info", "help"] {
        assert!(
            matches!(
                d.create_list(name, &o),
                Err(DirectoryError::NameTaken { .. })
            ),
            "{name}"
        );
    }
    let err = d.create_list("sales", &o).expect_err("taken");
    assert!(err.to_string().contains("sales-request"), "{err}");
    // Wildcards do not block a list (a list is found before any wildcard).
    d.create_list("newsletter", &o).expect("create");
    // An alias for a different local part that merely starts alike is fine.
    d.add_alias("infos@example.org", &["bob".to_owned()])
        .expect("alias");
    d.create_list("inf", &o).expect("create");
}

#[test]
fn a_user_or_alias_cannot_take_a_list_name() {
    let d = dir();
    team(&d);
    for name in ["team", "Team", "team-request", "TEAM-Bounces", "team-owner"] {
        assert!(
            matches!(
                d.add_user(name, "pw", false),
                Err(DirectoryError::NameTaken { .. })
            ),
            "{name}"
        );
        assert!(
            matches!(
                d.add_alias(name, &["x@y.org".to_owned()]),
                Err(DirectoryError::NameTaken { .. })
            ),
            "{name}"
        );
        assert!(
            matches!(
                d.add_alias(&format!("{name}@example.org"), &["x@y.org".to_owned()]),
                Err(DirectoryError::NameTaken { .. })
            ),
            "{name}@example.org"
        );
    }
    let err = d.add_user("team-request", "pw", false).expect_err("taken");
    assert!(err.to_string().contains("request address"), "{err}");
    // Names that merely look alike are fine; so are wildcards.
    d.add_user("teams", "pw", false).expect("user");
    d.add_user("team-x", "pw", false).expect("user");
    d.add_alias("team-*", &["teams".to_owned()])
        .expect("wildcard");
    assert!(d.list_users().expect("users").len() == 2);
    // Once the list is gone, the name is free again.
    d.delete_list("team").expect("delete");
    d.add_user("team", "pw", false).expect("user");
}
