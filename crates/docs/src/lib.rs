//! The admin guide (`docs/*.md`, embedded at build time) as HTML pages:
//! served by the web admin at `/docs/` and written to a folder by
//! `postamt docs build DIR`. Each page has a sidebar built from the
//! guide's index (`docs/README.md`); relative links to `foo.md` point to
//! `foo.html`, so the pages work both served and as static files.

mod render;
mod template;

use std::collections::HashMap;
use std::io;
use std::path::Path;

include!(concat!(env!("OUT_DIR"), "/pages.rs"));

/// The index page's name (`docs/README.md`).
const INDEX: &str = "README";

/// The stylesheet's file name, beside the pages.
pub const CSS_NAME: &str = "style.css";

/// The names of every page (without `.md`), `README` being the index.
pub fn page_names() -> Vec<&'static str> {
    PAGES.iter().map(|(n, _)| *n).collect()
}

fn markdown(name: &str) -> Option<&'static str> {
    PAGES.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// The page a request names: `install`, `install.html` or `install.md`;
/// `""`, `index`, `index.html` and `README` are the index. `None` for
/// anything else (never a path outside the guide).
fn resolve(name: &str) -> Option<&'static str> {
    let stem = name
        .strip_suffix(".html")
        .or_else(|| name.strip_suffix(".md"))
        .unwrap_or(name);
    let stem = match stem {
        "" | "index" => INDEX,
        s => s,
    };
    PAGES.iter().find(|(n, _)| *n == stem).map(|(n, _)| *n)
}

/// The file name a page is written and linked as.
fn file_name(page: &str) -> String {
    if page == INDEX {
        "index.html".into()
    } else {
        format!("{page}.html")
    }
}

fn render_page(page: &'static str) -> Option<String> {
    let text = markdown(page)?;
    let rendered = render::render(text);
    let sidebar = render::index_entries(markdown(INDEX).unwrap_or(""));
    Some(template::page(
        rendered.title.as_deref().unwrap_or(page),
        &rendered.html,
        &sidebar,
        page,
    ))
}

/// The guide's front page (from `docs/README.md`).
pub fn index() -> String {
    render_page(INDEX).unwrap_or_else(|| template::page("Postamt admin guide", "", &[], INDEX))
}

/// The page `name` (like `install` or `install.html`), or `None`.
pub fn page(name: &str) -> Option<String> {
    render_page(resolve(name)?)
}

/// The stylesheet every page links to as `style.css`.
pub fn css() -> &'static str {
    template::CSS
}

/// Any file of the guide by its name under `/docs/`: a page (`""`,
/// `install.html`...) or the stylesheet; with its `Content-Type`.
pub fn file(name: &str) -> Option<(&'static str, String)> {
    if name == CSS_NAME {
        return Some(("text/css; charset=utf-8", css().to_string()));
    }
    page(name).map(|html| ("text/html; charset=utf-8", html))
}

/// Writes every page (`index.html`, `install.html`, ...) and `style.css`
/// into `dir` (created if needed); returns the number of files written.
pub fn build_static(dir: &Path) -> io::Result<usize> {
    std::fs::create_dir_all(dir)?;
    let mut written = 0;
    for (name, _) in PAGES {
        if let Some(html) = render_page(name) {
            std::fs::write(dir.join(file_name(name)), html)?;
            written += 1;
        }
    }
    std::fs::write(dir.join(CSS_NAME), css())?;
    Ok(written + 1)
}

/// Every relative link of the guide that names no page, or a `#fragment`
/// that is no heading of its page, as `page.md: link (why)`; empty when
/// the guide is whole.
pub fn broken_links() -> Vec<String> {
    let rendered: HashMap<&str, render::Rendered> = PAGES
        .iter()
        .map(|(n, text)| (*n, render::render(text)))
        .collect();
    let mut broken = Vec::new();
    for (name, r) in &rendered {
        for link in &r.links {
            let (path, frag) = match link.split_once('#') {
                Some((p, f)) => (p, Some(f)),
                None => (link.as_str(), None),
            };
            let target = if link.starts_with('#') {
                Some(*name)
            } else if render::is_relative(link) {
                // A relative link must name a page (`foo.md`).
                path.strip_suffix(".md").and_then(resolve)
            } else {
                continue;
            };
            let Some(target) = target else {
                broken.push(format!("{name}.md: {link} (no such page)"));
                continue;
            };
            if let Some(f) = frag
                && !rendered
                    .get(target)
                    .is_some_and(|t| t.anchors.iter().any(|a| a == f))
            {
                broken.push(format!(
                    "{name}.md: {link} (no heading #{f} in {target}.md)"
                ));
            }
        }
    }
    broken.sort();
    broken
}

#[cfg(test)]
mod tests;
