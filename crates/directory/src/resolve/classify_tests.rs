//! Tests of classification: lists and their service addresses, forwards
//! with and without a copy, lists reached through aliases and forwards,
//! forward loops; and that `resolve` is unchanged by all of it.

use crate::{
    Destination, Directory, Expansion, ListOptions, LocalDomains, MAX_ALIAS_DEPTH, ResolveError,
    Target,
};

fn dom() -> LocalDomains {
    LocalDomains::new(
        "example.org",
        ["mx.example.org", "example.net"],
        "postmaster@example.org",
    )
}

fn dir(users: &[&str]) -> Directory {
    let d = Directory::open_in_memory().expect("open");
    for u in users {
        d.add_user(u, "pw", false).expect("add user");
    }
    d
}

fn list(d: &Directory, name: &str) {
    d.create_list(
        name,
        &ListOptions {
            owner: Some("boss@example.org".into()),
            ..ListOptions::default()
        },
    )
    .expect("create list");
}

fn forward(d: &Directory, user: &str, to: &[&str], keep_copy: bool) {
    let to: Vec<String> = to.iter().map(|s| (*s).to_owned()).collect();
    d.set_forward(user, &to, keep_copy).expect("forward");
}

fn alias(d: &Directory, pattern: &str, targets: &[&str]) {
    let t: Vec<String> = targets.iter().map(|s| (*s).to_owned()).collect();
    d.add_alias(pattern, &t).expect("add alias");
}

fn local(u: &str) -> Destination {
    Destination::Local { user: u.into() }
}

fn remote(a: &str) -> Destination {
    Destination::Remote { address: a.into() }
}

fn cls(d: &Directory, address: &str) -> Result<Target, ResolveError> {
    d.classify(address, &dom())
}

fn deliver(destinations: Vec<Destination>, lists: &[&str], users: &[&str]) -> Target {
    Target::Deliver(Expansion {
        destinations,
        lists: lists.iter().map(|s| (*s).to_owned()).collect(),
        users: users.iter().map(|s| (*s).to_owned()).collect(),
    })
}

#[test]
fn lists_and_their_service_addresses() {
    let d = dir(&["bob"]);
    list(&d, "Team");
    let name = || "Team".to_owned();
    for a in [
        "team@example.org",
        "TEAM@example.net",
        "team",
        "team@mx.example.org.",
    ] {
        assert_eq!(cls(&d, a), Ok(Target::List { name: name() }), "{a}");
    }
    assert_eq!(
        cls(&d, "team-request@example.org"),
        Ok(Target::ListRequest { name: name() })
    );
    assert_eq!(
        cls(&d, "Team-Bounces@example.net"),
        Ok(Target::ListBounces { name: name() })
    );
    assert_eq!(
        cls(&d, "team-owner"),
        Ok(Target::ListOwner { name: name() })
    );
    // Suffixes of something that is not a list are ordinary (unknown) addresses.
    assert_eq!(
        cls(&d, "bob-request@example.org"),
        Err(ResolveError::Unknown)
    );
    // A list at a foreign domain is just a remote address.
    assert_eq!(
        cls(&d, "team@other.org"),
        Ok(deliver(vec![remote("team@other.org")], &[], &[]))
    );
}

#[test]
fn a_list_is_found_before_wildcards_and_postmaster_rules() {
    let d = dir(&["catchall"]);
    alias(&d, "*@example.org", &["catchall"]);
    alias(&d, "team*", &["catchall"]);
    list(&d, "team");
    assert_eq!(
        cls(&d, "team@example.org"),
        Ok(Target::List {
            name: "team".into()
        })
    );
    assert_eq!(
        cls(&d, "team-request@example.org"),
        Ok(Target::ListRequest {
            name: "team".into()
        })
    );
    assert_eq!(
        cls(&d, "other@example.org"),
        Ok(deliver(vec![local("catchall")], &[], &["catchall"]))
    );
}

#[test]
fn users_without_forward_and_remote_addresses() {
    let d = dir(&["Bob"]);
    assert_eq!(
        cls(&d, "bob@example.org"),
        Ok(deliver(vec![local("Bob")], &[], &["Bob"]))
    );
    assert_eq!(
        cls(&d, "x@remote.org"),
        Ok(deliver(vec![remote("x@remote.org")], &[], &[]))
    );
    for a in ["ghost@example.org", "", "a b@example.org", "bob\r\n"] {
        assert_eq!(cls(&d, a), Err(ResolveError::Unknown), "{a:?}");
    }
}

#[test]
fn forward_without_copy() {
    let d = dir(&["alice"]);
    forward(&d, "alice", &["a@remote.org", "b@other.net"], false);
    let expected = deliver(
        vec![remote("a@remote.org"), remote("b@other.net")],
        &[],
        &["alice"],
    );
    assert_eq!(cls(&d, "alice@example.org"), Ok(expected.clone()));
    assert_eq!(cls(&d, "ALICE@example.net"), Ok(expected));
    // resolve() ignores forwards: the mailbox (sender ownership relies on it).
    assert_eq!(
        d.resolve("alice@example.org", &dom()),
        Ok(vec![local("alice")])
    );
}

#[test]
fn forward_with_copy() {
    let d = dir(&["alice"]);
    forward(&d, "alice", &["a@remote.org"], true);
    assert_eq!(
        cls(&d, "alice@example.org"),
        Ok(deliver(
            vec![local("alice"), remote("a@remote.org")],
            &[],
            &["alice"]
        ))
    );
}

#[test]
fn forward_to_own_address_means_the_mailbox() {
    let d = dir(&["alice"]);
    forward(&d, "alice", &["Alice@example.net", "a@remote.org"], false);
    assert_eq!(
        cls(&d, "alice@example.org"),
        Ok(deliver(
            vec![local("alice"), remote("a@remote.org")],
            &[],
            &["alice"]
        ))
    );
}

#[test]
fn forward_to_local_users_follows_their_rules() {
    let d = dir(&["alice", "bob", "carol"]);
    forward(&d, "alice", &["bob@example.org"], false);
    forward(&d, "bob", &["carol@example.org", "b@remote.org"], true);
    assert_eq!(
        cls(&d, "alice@example.org"),
        Ok(deliver(
            vec![local("bob"), local("carol"), remote("b@remote.org")],
            &[],
            &["alice", "bob", "carol"]
        ))
    );
}

#[test]
fn aliases_apply_forwards_of_their_users() {
    let d = dir(&["alice", "bob"]);
    alias(&d, "info", &["alice", "bob"]);
    forward(&d, "alice", &["a@remote.org"], false);
    assert_eq!(
        cls(&d, "info@example.org"),
        Ok(deliver(
            vec![local("bob"), remote("a@remote.org")],
            &[],
            &["alice", "bob"]
        ))
    );
    // Unchanged for resolve().
    assert_eq!(
        d.resolve("info@example.org", &dom()),
        Ok(vec![local("alice"), local("bob")])
    );
}

#[test]
fn forward_loops_are_detected() {
    let d = dir(&["alice", "bob"]);
    forward(&d, "alice", &["bob@example.org"], false);
    forward(&d, "bob", &["alice@example.org"], true);
    for a in ["alice@example.org", "bob@example.org"] {
        assert!(
            matches!(cls(&d, a), Err(ResolveError::Loop(ref at)) if at.contains("forward")),
            "{a}: {:?}",
            cls(&d, a)
        );
    }
    // An alias into the loop is caught too.
    alias(&d, "both", &["alice"]);
    assert!(matches!(cls(&d, "both"), Err(ResolveError::Loop(_))));
}

#[test]
fn a_user_reached_twice_is_expanded_once() {
    let d = dir(&["alice", "bob", "carol"]);
    alias(&d, "all", &["alice", "bob"]);
    forward(&d, "alice", &["carol@example.org"], false);
    forward(&d, "bob", &["carol@example.org"], false);
    forward(&d, "carol", &["c@remote.org"], false);
    assert_eq!(
        cls(&d, "all@example.org"),
        Ok(deliver(
            vec![remote("c@remote.org")],
            &[],
            &["alice", "bob", "carol"]
        ))
    );
}

#[test]
fn stale_forward_targets_are_skipped_and_the_mailbox_is_the_last_resort() {
    let d = dir(&["alice", "bob"]);
    forward(&d, "alice", &["ghost@example.org", "a@remote.org"], false);
    assert_eq!(
        cls(&d, "alice"),
        Ok(deliver(vec![remote("a@remote.org")], &[], &["alice"]))
    );
    forward(&d, "bob", &["ghost@example.org"], false);
    assert_eq!(
        cls(&d, "bob"),
        Ok(deliver(vec![local("bob")], &[], &["bob"]))
    );
}

#[test]
fn lists_reached_through_aliases_and_forwards() {
    let d = dir(&["alice", "bob"]);
    list(&d, "team");
    alias(&d, "everyone", &["team@example.org", "bob"]);
    forward(&d, "alice", &["team@example.org"], true);
    assert_eq!(
        cls(&d, "everyone@example.org"),
        Ok(deliver(vec![local("bob")], &["team"], &["bob"]))
    );
    assert_eq!(
        cls(&d, "alice@example.org"),
        Ok(deliver(vec![local("alice")], &["team"], &["alice"]))
    );
    // Only a list: still deliverable.
    alias(&d, "crew", &["team"]);
    assert_eq!(cls(&d, "crew"), Ok(deliver(vec![], &["team"], &[])));
    // A list's service address as an alias target is skipped.
    alias(&d, "help", &["team-request@example.org"]);
    assert_eq!(cls(&d, "help"), Err(ResolveError::Unknown));
    // resolve() does not know lists: as before, the target is skipped.
    assert_eq!(
        d.resolve("everyone@example.org", &dom()),
        Ok(vec![local("bob")])
    );
    assert_eq!(
        d.resolve("team@example.org", &dom()),
        Err(ResolveError::Unknown)
    );
}

#[test]
fn postmaster_admins_forwards_apply() {
    let d = Directory::open_in_memory().expect("open");
    d.add_user("root", "pw", true).expect("admin");
    forward(&d, "root", &["ops@remote.org"], false);
    let local_pm = LocalDomains::new("example.org", ["example.org"], "postmaster");
    assert_eq!(
        d.classify("postmaster@example.org", &local_pm),
        Ok(deliver(vec![remote("ops@remote.org")], &[], &["root"]))
    );
}

#[test]
fn long_forward_chains_hit_the_depth_limit() {
    let names: Vec<String> = (0..=MAX_ALIAS_DEPTH + 1).map(|i| format!("u{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let d = dir(&refs);
    for w in names.windows(2) {
        forward(&d, &w[0], &[&format!("{}@example.org", w[1])], false);
    }
    assert_eq!(
        cls(&d, "u0@example.org"),
        Err(ResolveError::TooDeep(MAX_ALIAS_DEPTH))
    );
    // A chain within the limit is fine.
    let start = MAX_ALIAS_DEPTH - 1;
    let mut users: Vec<String> = (start..=MAX_ALIAS_DEPTH + 1)
        .map(|i| format!("u{i}"))
        .collect();
    users.sort();
    assert_eq!(
        cls(&d, &format!("u{start}@example.org")),
        Ok(Target::Deliver(Expansion {
            destinations: vec![local(&format!("u{}", MAX_ALIAS_DEPTH + 1))],
            lists: vec![],
            users,
        }))
    );
}
