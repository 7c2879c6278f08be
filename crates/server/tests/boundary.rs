//! The engine/HTTP boundary (ARCHITECTURE.md, invariant 7): outside `src/http/`, no file of
//! the server crate names the HTTP stack (`axum`, `hyper`, `tower_http`, `tower`), and no
//! engine module reaches into the HTTP layer; only `server.rs`, which assembles the engine
//! and its front end, may.

use std::path::{Path, PathBuf};

const HTTP_STACK: [&str; 4] = ["axum", "hyper", "tower_http", "tower"];
/// The composition root: it starts the listener with the router.
const ASSEMBLY: &str = "server.rs";

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// Whether `line` names `word` as a path segment (`word::…` or `use word`).
fn names(line: &str, word: &str) -> bool {
    let code = line.split("//").next().unwrap_or_default();
    code.match_indices(word).any(|(at, _)| {
        let before = code[..at].chars().next_back();
        let after = &code[at + word.len()..];
        let starts = before.is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        starts
            && (after.starts_with("::")
                || (code.trim_start().starts_with("use ") && after.starts_with([';', ','])))
    })
}

/// `(file, line number, line)` for every line outside `src/http/` that breaks the boundary.
fn crossings(src: &Path) -> Vec<(String, usize, String)> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut found = Vec::new();
    for file in files {
        let relative = file
            .strip_prefix(src)
            .expect("under src")
            .to_string_lossy()
            .into_owned();
        if relative.starts_with("http/") {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("readable");
        for (number, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            let stack = HTTP_STACK.iter().any(|w| names(line, w));
            let reaches_in = relative != ASSEMBLY
                && (code.contains("crate::http")
                    || names(code, "http") && code.contains("use crate"));
            if stack || reaches_in {
                found.push((relative.clone(), number + 1, line.trim().to_owned()));
            }
        }
    }
    found
}

#[test]
fn the_engine_names_no_http_stack_and_never_reaches_into_the_http_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = crossings(&src);
    assert!(
        found.is_empty(),
        "the engine must stay free of HTTP (move this into src/http/):\n{}",
        found
            .iter()
            .map(|(f, n, l)| format!("  src/{f}:{n}: {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        src.join("http/mod.rs").is_file(),
        "the HTTP layer lives in src/http/"
    );
}

#[test]
fn the_boundary_check_sees_what_it_must() {
    assert!(names("use axum::Json;", "axum"));
    assert!(names(
        "    let x = tower_http::trace::TraceLayer::new();",
        "tower_http"
    ));
    assert!(names("use hyper;", "hyper"));
    assert!(!names("// axum::Json in a comment", "axum"));
    assert!(!names("let taxum = 1;", "axum"));
    assert!(!names("use tower_http_like::X;", "tower"));
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("http")).expect("http");
    std::fs::write(dir.path().join("http/mod.rs"), "use axum::Router;\n").expect("write");
    std::fs::create_dir_all(dir.path().join("engine")).expect("engine");
    std::fs::write(
        dir.path().join("engine/vend.rs"),
        "//! Called by `crate::http` (a comment may name it).\nuse crate::http::RequestOrigin;\nuse hyper::Body;\n",
    )
    .expect("write");
    let found = crossings(dir.path());
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found.iter().all(|(file, _, _)| file == "engine/vend.rs"));
}
