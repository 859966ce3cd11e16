//! Markdown to an HTML fragment: CommonMark with tables, relative links to
//! `foo.md` rewritten to `foo.html`, headings given stable `id`s (GitHub
//! style slugs) so `foo.md#section` links land.

use pulldown_cmark::{CowStr, Event, HeadingLevel, Options, Parser, Tag, TagEnd};
use std::collections::HashMap;

fn options() -> Options {
    Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH
}

/// Whether a link target points inside the guide (no scheme, no absolute
/// path, not only a fragment).
pub(crate) fn is_relative(dest: &str) -> bool {
    !(dest.is_empty()
        || dest.starts_with('#')
        || dest.starts_with('/')
        || dest.starts_with("//")
        || dest.contains("://")
        || dest.starts_with("mailto:"))
}

/// `foo.md#x` -> `foo.html#x`; other targets unchanged.
pub(crate) fn rewrite_link(dest: &str) -> String {
    if !is_relative(dest) {
        return dest.to_string();
    }
    let (path, frag) = match dest.split_once('#') {
        Some((p, f)) => (p, Some(f)),
        None => (dest, None),
    };
    let path = match path.strip_suffix(".md") {
        Some("README") => "index.html".to_string(),
        Some(stem) => format!("{stem}.html"),
        None => path.to_string(),
    };
    match frag {
        Some(f) => format!("{path}#{f}"),
        None => path,
    }
}

/// A GitHub-style heading slug: lowercase, punctuation dropped, spaces to
/// `-`.
pub(crate) fn slug(text: &str) -> String {
    text.chars()
        .filter_map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                Some(c.to_lowercase().collect::<String>())
            } else if c == ' ' {
                Some("-".into())
            } else {
                None
            }
        })
        .collect()
}

/// What a page is made of.
pub(crate) struct Rendered {
    /// The first `#` heading's text.
    pub title: Option<String>,
    /// The HTML fragment.
    pub html: String,
    /// Heading ids.
    pub anchors: Vec<String>,
    /// Every link target as written in the Markdown.
    pub links: Vec<String>,
}

/// Renders `markdown`.
pub(crate) fn render(markdown: &str) -> Rendered {
    let mut events: Vec<Event> = Parser::new_ext(markdown, options()).collect();
    let mut title = None;
    let mut anchors = Vec::new();
    let mut links = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    // Heading text, to name each heading.
    let mut i = 0;
    while i < events.len() {
        if let Event::Start(Tag::Heading { level, .. }) = &events[i] {
            let level = *level;
            let mut text = String::new();
            let mut j = i + 1;
            while j < events.len() && !matches!(events[j], Event::End(TagEnd::Heading(_))) {
                if let Event::Text(t) | Event::Code(t) = &events[j] {
                    text.push_str(t);
                }
                j += 1;
            }
            if level == HeadingLevel::H1 && title.is_none() {
                title = Some(text.clone());
            }
            let base = slug(&text);
            let n = seen.entry(base.clone()).or_insert(0);
            let id = if *n == 0 {
                base.clone()
            } else {
                format!("{base}-{n}")
            };
            *n += 1;
            anchors.push(id.clone());
            if let Event::Start(Tag::Heading { id: slot, .. }) = &mut events[i] {
                *slot = Some(CowStr::from(id));
            }
        }
        if let Some(Event::Start(Tag::Link { dest_url, .. })) = events.get_mut(i) {
            links.push(dest_url.to_string());
            *dest_url = CowStr::from(rewrite_link(dest_url));
        }
        i += 1;
    }
    let mut html = String::with_capacity(markdown.len() * 3 / 2);
    pulldown_cmark::html::push_html(&mut html, events.into_iter());
    Rendered {
        title,
        html,
        anchors,
        links,
    }
}

/// The index's list: (page name, link text) of every `*.md` link in order.
pub(crate) fn index_entries(markdown: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current: Option<(String, String)> = None;
    for e in Parser::new_ext(markdown, options()) {
        match e {
            Event::Start(Tag::Link { dest_url, .. }) => {
                let dest = dest_url.to_string();
                current = is_relative(&dest)
                    .then(|| dest.split('#').next().unwrap_or("").to_string())
                    .and_then(|p| p.strip_suffix(".md").map(str::to_string))
                    .map(|name| (name, String::new()));
            }
            Event::Text(t) | Event::Code(t) => {
                if let Some((_, text)) = &mut current {
                    text.push_str(&t);
                }
            }
            Event::End(TagEnd::Link) => {
                if let Some((name, text)) = current.take()
                    && !out.iter().any(|(n, _)| *n == name)
                {
                    out.push((name, text));
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_rewritten() {
        assert_eq!(rewrite_link("install.md"), "install.html");
        assert_eq!(
            rewrite_link("logs.md#follow-one-message"),
            "logs.html#follow-one-message"
        );
        assert_eq!(rewrite_link("README.md"), "index.html");
        assert_eq!(rewrite_link("#here"), "#here");
        assert_eq!(
            rewrite_link("https://example.org/a.md"),
            "https://example.org/a.md"
        );
        assert_eq!(rewrite_link("mailto:x@y"), "mailto:x@y");
        let r = render("# T\n\nSee [the logs](logs.md#follow) and [x](https://x.org).\n");
        assert!(
            r.html
                .contains(r#"<a href="logs.html#follow">the logs</a>"#),
            "{}",
            r.html
        );
        assert!(r.html.contains(r#"href="https://x.org""#));
        assert_eq!(r.links, vec!["logs.md#follow", "https://x.org"]);
    }

    #[test]
    fn headings_get_ids_and_the_title() {
        let r = render(
            "# Logs\n\n## Follow one message\n\n## `queue` verbs\n\n## Follow one message\n",
        );
        assert_eq!(r.title.as_deref(), Some("Logs"));
        assert_eq!(
            r.anchors,
            vec![
                "logs",
                "follow-one-message",
                "queue-verbs",
                "follow-one-message-1"
            ]
        );
        assert!(
            r.html.contains(r#"<h2 id="follow-one-message">"#),
            "{}",
            r.html
        );
    }

    #[test]
    fn text_is_escaped_and_tables_render() {
        let r = render("a < b & \"c\"\n\n| k | v |\n|---|---|\n| x | y |\n");
        assert!(r.html.contains("a &lt; b &amp; "), "{}", r.html);
        assert!(r.html.contains("<table>"));
    }

    #[test]
    fn the_index_lists_linked_pages_in_order() {
        let e = index_entries(
            "# Guide\n\n1. [Install](install.md): x\n2. [`cli`](cli.md#top)\n3. [web](https://x)\n4. [again](install.md)\n",
        );
        assert_eq!(
            e,
            vec![
                ("install".to_string(), "Install".to_string()),
                ("cli".to_string(), "cli".to_string())
            ]
        );
    }
}
