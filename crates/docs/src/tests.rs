//! The whole guide renders, and no internal link points nowhere.

use super::*;

#[test]
fn every_markdown_file_renders_as_a_page() {
    let names = page_names();
    assert!(names.contains(&"README"), "{names:?}");
    assert!(names.contains(&"install"), "{names:?}");
    for name in names {
        let html = page(name).unwrap_or_else(|| panic!("{name} does not render"));
        assert!(html.starts_with("<!DOCTYPE html>"), "{name}");
        assert!(
            html.contains("<main>") && html.contains("href=\"style.css\""),
            "{name}"
        );
        assert!(html.contains("<h1"), "{name} has no title heading");
    }
}

#[test]
fn page_names_resolve_in_every_spelling_and_nothing_else() {
    let plain = page("install").unwrap();
    assert_eq!(page("install.html").as_deref(), Some(plain.as_str()));
    assert_eq!(page("install.md").as_deref(), Some(plain.as_str()));
    let index = index();
    for n in ["", "index", "index.html", "README", "README.md"] {
        assert_eq!(page(n).as_deref(), Some(index.as_str()), "{n:?}");
    }
    for bad in [
        "../Cargo",
        "/etc/passwd",
        "install/",
        "nope",
        "install.htm",
        "..%2fx",
    ] {
        assert!(page(bad).is_none(), "{bad}");
    }
    assert_eq!(file("style.css").unwrap().0, "text/css; charset=utf-8");
    assert_eq!(file("install.html").unwrap().0, "text/html; charset=utf-8");
    assert!(file("secret.txt").is_none());
}

#[test]
fn the_sidebar_lists_the_index_and_marks_the_current_page() {
    let html = page("install").unwrap();
    assert!(
        html.contains("<a href=\"install.html\" class=\"current\">"),
        "current page not marked"
    );
    assert!(html.contains("<a href=\"configuration.html\">"));
    assert!(index().contains("<a href=\"index.html\" class=\"current\">Overview</a>"));
}

#[test]
fn every_internal_link_resolves() {
    let broken = broken_links();
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn every_page_is_in_the_index() {
    let listed: Vec<String> = render::index_entries(markdown(INDEX).unwrap())
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let missing: Vec<&str> = page_names()
        .into_iter()
        .filter(|n| *n != INDEX && !listed.iter().any(|l| l == n))
        .collect();
    assert!(
        missing.is_empty(),
        "pages not linked from docs/README.md: {missing:?}"
    );
}

#[test]
fn titles_are_escaped() {
    let html = template::page(
        "<script>x</script>",
        "",
        &[("a\"b".into(), "<i>".into())],
        "x",
    );
    assert!(html.contains("<title>&lt;script&gt;x&lt;/script&gt; · Postamt admin guide</title>"));
    assert!(html.contains("href=\"a&quot;b.html\">&lt;i&gt;</a>"));
    assert!(!html.contains("<script>"));
}

#[test]
fn build_static_writes_every_page_and_the_css() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("site");
    let n = build_static(&out).unwrap();
    assert_eq!(n, PAGES.len() + 1);
    assert!(out.join("index.html").is_file());
    assert!(out.join("install.html").is_file());
    assert!(out.join("style.css").is_file());
    assert!(!out.join("README.html").exists());
    // Links between the written files resolve on disk.
    let index = std::fs::read_to_string(out.join("index.html")).unwrap();
    for part in index.split("href=\"").skip(1) {
        let target = part.split('"').next().unwrap().split('#').next().unwrap();
        if target.contains("://") || target.is_empty() {
            continue;
        }
        assert!(
            out.join(target).is_file(),
            "index links to missing {target}"
        );
    }
}
