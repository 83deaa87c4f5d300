//! The crate's import boundaries, read from the sources: the store reads and writes data and
//! never diagnoses (`src/store/` uses nothing of `diagnose`, `audit`, `render`, `slack` or
//! `check`), and the domain is plain data without IO (`src/domain/` uses no `std::fs`,
//! `std::net`, `tokio`, `redis` or `reqwest`).

use std::path::{Path, PathBuf};

/// Modules of this crate that `src/store/` must not use.
const NOT_IN_STORE: &[&str] = &["diagnose", "audit", "render", "slack", "check"];
/// `std` modules and crates that do IO, which `src/domain/` must not use.
const NOT_IN_DOMAIN_STD: &[&str] = &["fs", "net"];
const NOT_IN_DOMAIN_CRATES: &[&str] = &["tokio", "redis", "reqwest"];

/// The code of a source file without its comments (line comments, doc comments).
fn code(source: &str) -> String {
    source
        .lines()
        .map(|line| match line.find("//") {
            // A `//` inside a string (a URL) ends the line early: at worst a use after it on
            // the same line goes unseen, never a false alarm.
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The first segment of every path that starts with `root::` in `code`: `crate::audit::X`
/// gives `audit`, `crate::{audit, diagnose::Y}` gives `audit` and `diagnose`.
fn segments_after(code: &str, root: &str) -> Vec<String> {
    let needle = format!("{root}::");
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = code[from..].find(&needle) {
        let start = from + at;
        from = start + needle.len();
        let before = code[..start].chars().next_back();
        if before.is_some_and(|c| is_ident(c) || c == ':') {
            continue;
        }
        let rest = &code[from..];
        if let Some(group) = rest.strip_prefix('{') {
            // Items at the top level of the group, split at its commas.
            let (mut depth, mut item, mut items) = (0, String::new(), Vec::new());
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        items.push(std::mem::take(&mut item));
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            items.push(item);
            found.extend(
                items
                    .iter()
                    .map(|item| item.trim().chars().take_while(|&c| is_ident(c)).collect()),
            );
        } else {
            found.push(rest.chars().take_while(|&c| is_ident(c)).collect());
        }
    }
    found
}

/// Whether `code` names the crate `name` (`tokio::spawn`, `use tokio;`, `redis::cmd`).
fn uses_crate(code: &str, name: &str) -> bool {
    code.match_indices(name).any(|(at, _)| {
        let before = code[..at].chars().next_back();
        let after = &code[at + name.len()..];
        !before.is_some_and(|c| is_ident(c) || c == ':')
            && (after.starts_with("::") || (after.starts_with(';') && code[..at].ends_with("use ")))
    })
}

/// What a file of `src/store/` must not use, as found in its source.
fn store_violations(source: &str) -> Vec<String> {
    let code = code(source);
    let mut used: Vec<String> = segments_after(&code, "crate")
        .into_iter()
        .filter(|m| NOT_IN_STORE.contains(&m.as_str()))
        .map(|m| format!("crate::{m}"))
        .collect();
    used.dedup();
    used
}

/// What a file of `src/domain/` must not use, as found in its source.
fn domain_violations(source: &str) -> Vec<String> {
    let code = code(source);
    let mut used: Vec<String> = segments_after(&code, "std")
        .into_iter()
        .filter(|m| NOT_IN_DOMAIN_STD.contains(&m.as_str()))
        .map(|m| format!("std::{m}"))
        .collect();
    used.extend(
        NOT_IN_DOMAIN_CRATES
            .iter()
            .filter(|c| uses_crate(&code, c))
            .map(|c| c.to_string()),
    );
    used.dedup();
    used
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

fn violations_under(dir: &str, check: fn(&str) -> Vec<String>) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let files = rust_files(&root);
    assert!(files.len() > 3, "{dir} holds {} files", files.len());
    files
        .iter()
        .flat_map(|path| {
            let source = std::fs::read_to_string(path).unwrap();
            check(&source)
                .into_iter()
                .map(move |v| format!("{}: {v}", path.display()))
        })
        .collect()
}

#[test]
fn the_checks_catch_every_forbidden_use_and_nothing_else() {
    for (source, want) in [
        ("use crate::diagnose::diagnose;", vec!["crate::diagnose"]),
        (
            "use crate::{audit::Scope, domain::Org};",
            vec!["crate::audit"],
        ),
        (
            "use crate::{\n    domain::{Org, Query},\n    render,\n    slack::AppState,\n};",
            vec!["crate::render", "crate::slack"],
        ),
        (
            "let d = crate::check::check(&store, &q, now);",
            vec!["crate::check"],
        ),
        (
            "use crate::domain::Org;\nuse crate::suggest::Directory;",
            vec![],
        ),
        ("// crate::diagnose is not used here", vec![]),
        ("use crate::store::records::audit_subjects;", vec![]),
    ] {
        assert_eq!(store_violations(source), want, "{source}");
    }
    for (source, want) in [
        (
            "let text = std::fs::read_to_string(path)?;",
            vec!["std::fs"],
        ),
        (
            "use std::{collections::HashMap, net::TcpStream};",
            vec!["std::net"],
        ),
        ("tokio::spawn(async {});", vec!["tokio"]),
        ("use redis::AsyncCommands;", vec!["redis"]),
        ("let c = reqwest::Client::new();", vec!["reqwest"]),
        ("use tokio;", vec!["tokio"]),
        ("use std::io::Error;\nuse crate::suggest::UserKeys;", vec![]),
        ("use crate::store::redis_store;", vec![]),
        (
            "/// Read with std::fs by the caller (`snapshot_file`).",
            vec![],
        ),
    ] {
        assert_eq!(domain_violations(source), want, "{source}");
    }
}

#[test]
fn the_store_never_diagnoses() {
    let found = violations_under("src/store", store_violations);
    assert!(found.is_empty(), "src/store uses {found:#?}");
}

#[test]
fn the_domain_does_no_io() {
    let found = violations_under("src/domain", domain_violations);
    assert!(found.is_empty(), "src/domain uses {found:#?}");
}
