//! Just enough reading of this crate's Rust source for drift tests: the
//! arguments of calls like `.route("/path", get(handler))` or
//! `ApiError::bad_request("code", ...)`, found by name. It knows string
//! literals and nested brackets, which is all those calls contain.

use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, in a stable order.
pub fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The top-level arguments of every call that starts with `opening` (which
/// ends with the opening parenthesis), as source text, trimmed.
pub fn call_args(source: &str, opening: &str) -> Vec<Vec<String>> {
    assert!(opening.ends_with('('));
    let mut calls = Vec::new();
    let mut from = 0;
    while let Some(at) = source[from..].find(opening) {
        let start = from + at + opening.len();
        calls.push(split_args(&source[start..]));
        from = start;
    }
    calls
}

/// Splits `a, f(b, c), "d, e")...` at top-level commas up to the `)` that
/// closes the call.
fn split_args(text: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut current = String::new();
    let mut depth = 0usize;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                current.push(c);
                while let Some(s) = chars.next() {
                    current.push(s);
                    if s == '\\' {
                        current.extend(chars.next());
                    } else if s == '"' {
                        break;
                    }
                }
                continue;
            }
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' if depth == 0 => break,
            ')' | ']' | '}' => depth -= 1,
            ',' if depth == 0 => {
                args.push(current.trim().to_owned());
                current.clear();
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    if !current.trim().is_empty() {
        args.push(current.trim().to_owned());
    }
    args
}

/// The text of a plain string literal, if `arg` is one.
pub fn string_literal(arg: &str) -> Option<&str> {
    arg.strip_prefix('"')?.strip_suffix('"')
}

/// Names called at the top level of an expression: `get(a).post(b)` gives
/// `["get", "post"]` (calls nested in the arguments are not included).
pub fn called_names(expression: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut depth = 0usize;
    let mut word = String::new();
    for c in expression.chars() {
        if c.is_alphanumeric() || c == '_' {
            word.push(c);
            continue;
        }
        if c == '(' && depth == 0 && !word.is_empty() {
            names.push(word.clone());
        }
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        word.clear();
    }
    names
}

#[test]
fn call_arguments_are_split_at_top_level_commas_only() {
    let source = r#"x.route("/a/{id}", get(h::a).post(h::b)).route("/b, c", post(f(1, 2)));"#;
    let calls = call_args(source, ".route(");
    assert_eq!(calls[0], ["\"/a/{id}\"", "get(h::a).post(h::b)"]);
    assert_eq!(calls[1], ["\"/b, c\"", "post(f(1, 2))"]);
    assert_eq!(called_names(&calls[0][1]), ["get", "post"]);
    assert_eq!(called_names(&calls[1][1]), ["post"]);
    assert_eq!(string_literal(&calls[1][0]), Some("/b, c"));
}
