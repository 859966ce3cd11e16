//! The page shell around a rendered guide page: head, sidebar from the
//! guide's index, the content; and the one small stylesheet.

/// Escapes text for HTML element content and attribute values.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A whole page: `title` and the sidebar entries are escaped here;
/// `content` is HTML already.
pub(crate) fn page(
    title: &str,
    content: &str,
    sidebar: &[(String, String)],
    current: &str,
) -> String {
    let mut nav = String::new();
    let home_class = if current == "README" {
        " class=\"current\""
    } else {
        ""
    };
    nav.push_str(&format!(
        "<li><a href=\"index.html\"{home_class}>Overview</a></li>\n"
    ));
    for (name, text) in sidebar {
        let class = if name == current {
            " class=\"current\""
        } else {
            ""
        };
        nav.push_str(&format!(
            "<li><a href=\"{}.html\"{class}>{}</a></li>\n",
            escape(name),
            escape(text)
        ));
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
<title>{title} · Postamt admin guide</title>\n\
<link rel=\"stylesheet\" href=\"style.css\">\n</head>\n<body>\n\
<nav class=\"sidebar\">\n<p class=\"brand\"><a href=\"index.html\">Postamt admin guide</a></p>\n<ul>\n{nav}</ul>\n</nav>\n\
<main>\n{content}</main>\n</body>\n</html>\n",
        title = escape(title),
    )
}

/// The stylesheet: readable type, a fixed sidebar, tables and code.
pub(crate) const CSS: &str = r#"*{box-sizing:border-box}
body{margin:0;font:16px/1.55 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2430;background:#fff;display:flex;min-height:100vh}
.sidebar{width:17rem;flex:none;background:#f3f5f8;border-right:1px solid #dde2ea;padding:1.2rem 1rem;position:sticky;top:0;height:100vh;overflow-y:auto}
.sidebar .brand{font-weight:700;margin:0 0 1rem}
.sidebar .brand a{color:#1d2430;text-decoration:none}
.sidebar ul{list-style:none;margin:0;padding:0}
.sidebar li a{display:block;padding:.3rem .5rem;border-radius:4px;color:#2b4a7a;text-decoration:none;font-size:.95rem}
.sidebar li a:hover{background:#e4e9f1}
.sidebar li a.current{background:#2b4a7a;color:#fff}
main{flex:1;max-width:52rem;padding:1.5rem 2.5rem 4rem}
h1,h2,h3{line-height:1.25;color:#111827}
h1{font-size:2rem;margin-top:.5rem}
h2{margin-top:2.2rem;border-bottom:1px solid #e5e7eb;padding-bottom:.25rem}
a{color:#2457a6}
code{font:.9em ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:#f1f3f6;padding:.1em .3em;border-radius:3px}
pre{background:#f6f8fa;border:1px solid #e1e4e8;border-radius:6px;padding:.8rem 1rem;overflow-x:auto}
pre code{background:none;padding:0}
table{border-collapse:collapse;margin:1rem 0;display:block;overflow-x:auto}
th,td{border:1px solid #d8dde5;padding:.35rem .7rem;text-align:left;vertical-align:top}
th{background:#f3f5f8}
blockquote{margin:1rem 0;padding:.2rem 1rem;border-left:4px solid #c9d3e3;color:#4b5563}
@media (max-width:50rem){body{display:block}.sidebar{position:static;width:auto;height:auto}main{padding:1rem}}
"#;
