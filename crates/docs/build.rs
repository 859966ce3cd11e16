//! Embeds the admin guide: every `docs/*.md` of the repository becomes an
//! entry `(name, text)` in `$OUT_DIR/pages.rs` (included by `src/lib.rs`),
//! so the binary serves the guide it was built with.

use std::fmt::Write;
use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let docs = manifest.join("../../docs");
    // A directory: cargo re-runs this script when any file in it changes.
    println!("cargo:rerun-if-changed={}", docs.display());
    let mut names: Vec<(String, PathBuf)> = match std::fs::read_dir(&docs) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "md"))
            .filter_map(|p| {
                let stem = p.file_stem()?.to_str()?.to_string();
                valid(&stem).then_some((stem, p))
            })
            .collect(),
        Err(e) => panic!("cannot read {}: {e}", docs.display()),
    };
    names.sort();
    let mut out = String::from("/// Every page: (name without `.md`, Markdown text).\n");
    out.push_str("pub(crate) static PAGES: &[(&str, &str)] = &[\n");
    for (name, path) in &names {
        let abs = canonical(path);
        println!("cargo:rerun-if-changed={}", abs.display());
        writeln!(
            out,
            "    ({name:?}, include_str!({:?})),",
            abs.display().to_string()
        )
        .expect("writing to a String");
    }
    out.push_str("];\n");
    let dest = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo")).join("pages.rs");
    std::fs::write(&dest, out).unwrap_or_else(|e| panic!("cannot write {}: {e}", dest.display()));
}

/// Page names are plain: letters, digits, `-` and `_`.
fn valid(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn canonical(p: &Path) -> PathBuf {
    p.canonicalize().unwrap_or_else(|_| p.to_path_buf())
}
