//! Tests of the resolution rules, on a real (in-memory or file) database.

use crate::{Destination, Directory, LocalDomains, MAX_ALIAS_DEPTH, ResolveError};

fn domains(postmaster: &str) -> LocalDomains {
    LocalDomains::new(
        "example.org",
        ["mx.example.org", "Example.NET."],
        postmaster,
    )
}

fn dom() -> LocalDomains {
    domains("postmaster@example.org")
}

fn dir(users: &[&str]) -> Directory {
    let d = Directory::open_in_memory().expect("open");
    for u in users {
        d.add_user(u, "pw", false).expect("add user");
    }
    d
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

fn res(d: &Directory, address: &str) -> Result<Vec<Destination>, ResolveError> {
    d.resolve(address, &dom())
}

#[test]
fn local_domains_normalised() {
    let l = dom();
    assert_eq!(l.domains, ["example.org", "mx.example.org", "example.net"]);
    assert_eq!(l.primary(), Some("example.org"));
    assert!(l.contains("EXAMPLE.net."));
    assert!(!l.contains("other.org"));
}

#[test]
fn users_resolve_in_every_local_domain_any_case() {
    let d = dir(&["Bob"]);
    for a in [
        "bob@example.org",
        "BOB@EXAMPLE.ORG",
        "bob",
        "bob@example.net",
        "bob@mx.example.org",
        "bob@example.org.",
    ] {
        assert_eq!(res(&d, a), Ok(vec![local("Bob")]), "{a}");
    }
}

#[test]
fn remote_addresses_resolve_to_themselves() {
    let d = dir(&["bob"]);
    assert_eq!(res(&d, "Bob@Other.ORG"), Ok(vec![remote("Bob@Other.ORG")]));
}

#[test]
fn unknown_and_malformed() {
    let d = dir(&["bob"]);
    for a in [
        "ghost@example.org",
        "",
        "@example.org",
        "bob@",
        "bo b@example.org",
        "../bob@example.org",
        "bob/../x",
        "bob\0",
    ] {
        assert_eq!(res(&d, a), Err(ResolveError::Unknown), "{a:?}");
    }
}

#[test]
fn classic_examples() {
    let d = dir(&["rusdoil", "bob", "catchall"]);
    alias(&d, "carsten.doil", &["rusdoil"]);
    alias(&d, "sales-*", &["bob"]);
    alias(&d, "*@example.org", &["catchall"]);
    assert_eq!(
        res(&d, "Carsten.Doil@example.org"),
        Ok(vec![local("rusdoil")])
    );
    assert_eq!(
        res(&d, "carsten.doil@example.net"),
        Ok(vec![local("rusdoil")])
    );
    // sales-* is more specific than the catch-all for its addresses.
    assert_eq!(res(&d, "sales-eu@example.org"), Ok(vec![local("bob")]));
    assert_eq!(res(&d, "sales-@example.net"), Ok(vec![local("bob")]));
    assert_eq!(res(&d, "anything@example.org"), Ok(vec![local("catchall")]));
    assert_eq!(res(&d, "anything"), Ok(vec![local("catchall")]));
    // The catch-all is for example.org only.
    assert_eq!(res(&d, "anything@example.net"), Err(ResolveError::Unknown));
    // A user still gets their own mail.
    assert_eq!(res(&d, "bob@example.org"), Ok(vec![local("bob")]));
}

#[test]
fn precedence_exact_full_then_local_then_user_then_wildcard() {
    let d = dir(&["bob", "alice", "carol", "dave", "erin"]);
    alias(&d, "b*", &["erin"]);
    assert_eq!(
        res(&d, "bob"),
        Ok(vec![local("bob")]),
        "user beats wildcard"
    );
    alias(&d, "bob", &["alice"]);
    assert_eq!(
        res(&d, "bob"),
        Ok(vec![local("alice")]),
        "local alias beats user"
    );
    assert_eq!(res(&d, "bob@example.net"), Ok(vec![local("alice")]));
    alias(&d, "bob@example.net", &["carol"]);
    assert_eq!(
        res(&d, "bob@example.net"),
        Ok(vec![local("carol")]),
        "full-address alias beats local alias"
    );
    assert_eq!(res(&d, "bob@example.org"), Ok(vec![local("alice")]));
    assert_eq!(res(&d, "bill"), Ok(vec![local("erin")]));
}

#[test]
fn wildcard_specificity() {
    let d = dir(&["c1", "c2", "bob", "alice", "dave", "frank"]);
    alias(&d, "*", &["c1"]);
    alias(&d, "*@example.org", &["c2"]);
    alias(&d, "sales-*", &["bob"]);
    alias(&d, "sales-eu-*", &["alice"]);
    alias(&d, "sales-*@example.org", &["dave"]);
    alias(&d, "*-support@*", &["frank"]);
    assert_eq!(res(&d, "x@example.net"), Ok(vec![local("c1")]));
    assert_eq!(res(&d, "x@example.org"), Ok(vec![local("c2")]));
    assert_eq!(res(&d, "sales-x@example.net"), Ok(vec![local("bob")]));
    assert_eq!(res(&d, "sales-x@example.org"), Ok(vec![local("dave")]));
    assert_eq!(res(&d, "sales-eu-1@example.org"), Ok(vec![local("alice")]));
    assert_eq!(res(&d, "it-support@example.net"), Ok(vec![local("frank")]));
    assert_eq!(res(&d, "SALES-X@EXAMPLE.ORG"), Ok(vec![local("dave")]));
}

#[test]
fn several_targets_sorted_and_deduplicated() {
    let d = dir(&["alice", "bob"]);
    alias(
        &d,
        "team",
        &["bob", "x@other.org", "alice", "Bob@Example.org", "ALICE"],
    );
    assert_eq!(
        res(&d, "team@example.org"),
        Ok(vec![local("alice"), local("bob"), remote("x@other.org")])
    );
}

#[test]
fn chains_and_diamonds() {
    let d = dir(&["bob", "carol"]);
    alias(&d, "info", &["sales@example.org"]);
    alias(&d, "sales", &["office"]);
    alias(&d, "office", &["bob"]);
    assert_eq!(res(&d, "info"), Ok(vec![local("bob")]));
    // One address reached by two paths is not a loop.
    alias(&d, "all", &["left", "right"]);
    alias(&d, "left", &["shared", "carol"]);
    alias(&d, "right", &["shared@example.net"]);
    alias(&d, "shared", &["bob", "z@other.org"]);
    assert_eq!(
        res(&d, "all"),
        Ok(vec![local("bob"), local("carol"), remote("z@other.org")])
    );
}

#[test]
fn keep_a_copy_with_bare_user_target() {
    let d = dir(&["bob"]);
    alias(&d, "bob", &["bob", "bob@remote.org"]);
    let want = Ok(vec![local("bob"), remote("bob@remote.org")]);
    assert_eq!(res(&d, "bob@example.org"), want);
    assert_eq!(res(&d, "bob@example.net"), want);
    // Another alias pointing at bob by bare name reaches the mailbox directly.
    alias(&d, "boss", &["bob"]);
    assert_eq!(res(&d, "boss"), Ok(vec![local("bob")]));
    // Pointing at bob's full address goes through bob's alias.
    alias(&d, "chief", &["bob@example.org"]);
    assert_eq!(res(&d, "chief"), want);
}

#[test]
fn keep_a_copy_with_full_address_self_reference() {
    let d = dir(&["bob"]);
    alias(
        &d,
        "bob@example.org",
        &["bob@example.org", "bob@remote.org"],
    );
    let want = Ok(vec![local("bob"), remote("bob@remote.org")]);
    assert_eq!(res(&d, "bob@example.org"), want);
    // A local-part alias writing the full address: self-reference in the
    // primary domain, and through the primary from another local domain.
    let d = dir(&["bob"]);
    alias(&d, "bob", &["bob@example.org", "bob@remote.org"]);
    assert_eq!(res(&d, "bob@example.org"), want);
    assert_eq!(res(&d, "bob@example.net"), want);
}

#[test]
fn loops_are_detected() {
    let d = dir(&["bob"]);
    alias(&d, "a", &["b"]);
    alias(&d, "b", &["a@example.org"]);
    assert_eq!(
        res(&d, "a"),
        Err(ResolveError::Loop("a@example.org".into()))
    );
    // A self-reference without a user behind it is a loop too.
    alias(&d, "x", &["x", "bob"]);
    assert_eq!(
        res(&d, "x"),
        Err(ResolveError::Loop("x@example.org".into()))
    );
    // Through a wildcard.
    let d = dir(&[]);
    alias(&d, "*@example.org", &["catchall@example.org"]);
    assert!(matches!(
        res(&d, "q@example.org"),
        Err(ResolveError::Loop(_))
    ));
}

fn chain(d: &Directory, aliases: usize) {
    for i in 0..aliases {
        alias(d, &format!("a{i}"), &[&format!("a{}", i + 1)]);
    }
}

#[test]
fn depth_limit() {
    let d = dir(&[&format!("a{MAX_ALIAS_DEPTH}")]);
    chain(&d, MAX_ALIAS_DEPTH);
    assert_eq!(
        res(&d, "a0"),
        Ok(vec![local(&format!("a{MAX_ALIAS_DEPTH}"))]),
        "exactly MAX_ALIAS_DEPTH expansions are allowed"
    );
    let d = dir(&[&format!("a{}", MAX_ALIAS_DEPTH + 1)]);
    chain(&d, MAX_ALIAS_DEPTH + 1);
    assert_eq!(res(&d, "a0"), Err(ResolveError::TooDeep(MAX_ALIAS_DEPTH)));
    assert!(res(&d, "a1").is_ok());
}

#[test]
fn postmaster_fallback() {
    let d = dir(&["admin"]);
    let l = domains("admin@example.org");
    for a in [
        "postmaster",
        "PostMaster@example.net",
        "postmaster@mx.example.org",
    ] {
        assert_eq!(d.resolve(a, &l), Ok(vec![local("admin")]), "{a}");
    }
    // A remote postmaster.
    let l = domains("hostmaster@isp.example");
    assert_eq!(
        d.resolve("postmaster", &l),
        Ok(vec![remote("hostmaster@isp.example")])
    );
    // The default postmaster@primary would only lead back: with no admin
    // account, a `postmaster` mailbox keeps the mail (RFC 5321 4.5.1).
    assert_eq!(
        d.resolve("postmaster", &dom()),
        Ok(vec![local("postmaster")])
    );
    assert_eq!(
        d.resolve("postmaster", &domains("Postmaster@Example.NET")),
        Ok(vec![local("postmaster")])
    );
    // With admin accounts, they get it.
    d.add_user("root", "pw", true).expect("add");
    d.add_user("chief", "pw", true).expect("add");
    assert_eq!(
        d.resolve("postmaster", &dom()),
        Ok(vec![local("chief"), local("root")])
    );
    d.delete_user("root").expect("del");
    d.delete_user("chief").expect("del");
    // An alias or a user named postmaster wins over the fallback.
    let l = domains("admin@example.org");
    d.add_user("bob", "pw", false).expect("add");
    alias(&d, "postmaster", &["bob"]);
    assert_eq!(d.resolve("postmaster", &l), Ok(vec![local("bob")]));
    assert_eq!(d.resolve("postmaster", &dom()), Ok(vec![local("bob")]));
    d.delete_alias("postmaster").expect("del");
    d.add_user("postmaster", "pw", false).expect("add");
    assert_eq!(d.resolve("postmaster", &l), Ok(vec![local("postmaster")]));
}

#[test]
fn postmaster_fallback_loop_is_detected() {
    let d = dir(&[]);
    alias(&d, "admin", &["postmaster"]);
    assert!(matches!(
        d.resolve("postmaster", &domains("admin@example.org")),
        Err(ResolveError::Loop(_))
    ));
}

#[test]
fn remote_targets_and_full_local_targets() {
    let d = dir(&["bob"]);
    alias(&d, "fwd", &["Someone@Elsewhere.example"]);
    assert_eq!(
        res(&d, "fwd"),
        Ok(vec![remote("Someone@Elsewhere.example")])
    );
    alias(&d, "x", &["bob@example.net"]);
    assert_eq!(res(&d, "x"), Ok(vec![local("bob")]));
}

#[test]
fn stale_targets_are_skipped_but_not_all() {
    let d = dir(&["bob", "rusdoil"]);
    alias(&d, "team", &["bob", "ghost"]);
    assert_eq!(res(&d, "team"), Ok(vec![local("bob")]));
    alias(&d, "carsten.doil", &["rusdoil"]);
    d.delete_user("rusdoil").expect("delete");
    assert_eq!(res(&d, "carsten.doil"), Err(ResolveError::Unknown));
}

#[test]
fn no_local_domains() {
    let d = dir(&["bob"]);
    let l = LocalDomains {
        domains: vec![],
        postmaster: "postmaster@example.org".into(),
    };
    assert_eq!(d.resolve("bob", &l), Err(ResolveError::Unknown));
    assert_eq!(
        d.resolve("bob@example.org", &l),
        Ok(vec![remote("bob@example.org")])
    );
}

#[test]
fn two_handles_on_one_file_see_each_others_writes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("directory.db");
    let server = Directory::open(&path).expect("server");
    let cli = Directory::open(&path).expect("cli");
    assert_eq!(server.resolve("bob", &dom()), Err(ResolveError::Unknown));
    cli.add_user("bob", "pw", false).expect("add");
    assert_eq!(server.resolve("bob", &dom()), Ok(vec![local("bob")]));
    assert!(
        server
            .verify_password("bob", "pw")
            .expect("verify")
            .is_some()
    );
    server
        .add_alias("sales-*", &["bob".to_owned()])
        .expect("alias");
    assert_eq!(cli.resolve("sales-1", &dom()), Ok(vec![local("bob")]));
    assert_eq!(cli.list_aliases().expect("list").len(), 1);
    assert!(matches!(
        server.add_user("BOB", "x", false),
        Err(crate::DirectoryError::UserExists(_))
    ));
    cli.delete_user("bob").expect("delete");
    assert_eq!(server.get_user("bob").expect("get"), None);
}

#[test]
fn concurrent_writers_from_two_handles_do_not_fail() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("directory.db");
    let a = std::sync::Arc::new(Directory::open(&path).expect("a"));
    let b = std::sync::Arc::new(Directory::open(&path).expect("b"));
    let writer = |d: std::sync::Arc<Directory>, prefix: &'static str| {
        std::thread::spawn(move || {
            for i in 0..50 {
                d.add_alias(&format!("{prefix}{i}"), &[format!("t{i}")])
                    .expect("write under contention");
                d.resolve(&format!("{prefix}{i}"), &dom()).ok();
            }
        })
    };
    let ta = writer(a.clone(), "a");
    let tb = writer(b.clone(), "b");
    ta.join().expect("thread a");
    tb.join().expect("thread b");
    assert_eq!(a.list_aliases().expect("list").len(), 100);
}
