//! openapi.yaml must describe the server as it is. These tests fail when
//! the two drift apart: a route registered in `src/` but not documented (or
//! the reverse), an error code sent at a status the document does not give
//! it, an example that does not match its own schema, or a documented
//! response schema that would let a member come or go unnoticed. The live
//! half (`live.rs`) holds real responses to the document.

mod live;

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{Value, json};
use tillsync::error::ProblemCode;

use crate::support::contract::{Contract, METHODS};
use crate::support::source::{call_args, called_names, rust_files, string_literal};

fn source_files() -> Vec<(String, String)> {
    rust_files(Path::new("src"))
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            (path.display().to_string(), text)
        })
        .collect()
}

/// (METHOD, path) of every `.route(...)` call in `src/`.
fn routes_in_source() -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for (file, text) in source_files() {
        for other in [".nest(", ".nest_service(", ".route_service("] {
            assert!(
                !text.contains(other),
                "{file} registers routes with {other}, which this test does not read yet"
            );
        }
        for args in call_args(&text, ".route(") {
            let path = string_literal(&args[0])
                .unwrap_or_else(|| panic!("{file}: a route path that is not a literal: {args:?}"));
            let names = called_names(&args[1]);
            assert!(
                !names.is_empty() && names.iter().all(|n| METHODS.contains(&n.as_str())),
                "{file}: cannot tell the methods of {path} from `{}`",
                args[1]
            );
            for method in names {
                routes.insert((method.to_uppercase(), path.to_owned()));
            }
        }
    }
    routes
}

#[test]
fn every_route_the_router_registers_is_documented_and_nothing_else_is() {
    let in_source = routes_in_source();
    assert!(
        in_source.len() >= 11,
        "the parser found too few routes: {in_source:?}"
    );
    let documented = Contract::load().operations();
    let undocumented: Vec<_> = in_source.difference(&documented).collect();
    let not_served: Vec<_> = documented.difference(&in_source).collect();
    assert!(
        undocumented.is_empty() && not_served.is_empty(),
        "routes not in openapi.yaml: {undocumented:?}; documented but not routed: {not_served:?}"
    );
}

/// (status, code) of every problem the server can send.
fn problems_sent() -> BTreeSet<(u16, String)> {
    ProblemCode::ALL
        .iter()
        .map(|code| (code.status().as_u16(), code.as_str().to_owned()))
        .collect()
}

/// (status, code) pairs the document gives problem schemas: every schema
/// with `properties: {status: {const}, code: {const | enum}}`.
fn problems_documented(node: &Value, found: &mut BTreeSet<(u16, String)>) {
    match node {
        Value::Object(map) => {
            let properties = &node["properties"];
            if let Some(status) = properties["status"]["const"].as_u64() {
                let code = &properties["code"];
                let codes = code["enum"]
                    .as_array()
                    .cloned()
                    .unwrap_or_else(|| vec![code["const"].clone()]);
                for code in codes {
                    found.insert((status as u16, code.as_str().unwrap().to_owned()));
                }
            }
            map.values().for_each(|v| problems_documented(v, found));
        }
        Value::Array(items) => items.iter().for_each(|v| problems_documented(v, found)),
        _ => {}
    }
}

#[test]
fn every_error_code_is_documented_at_the_status_the_server_sends_it_with() {
    let in_source = problems_sent();
    let contract = Contract::load();
    let mut documented = BTreeSet::new();
    problems_documented(&contract.doc["paths"], &mut documented);
    problems_documented(&contract.doc["components"]["responses"], &mut documented);
    let undocumented: Vec<_> = in_source.difference(&documented).collect();
    let never_sent: Vec<_> = documented.difference(&in_source).collect();
    assert!(
        undocumented.is_empty() && never_sent.is_empty(),
        "sent but not documented: {undocumented:?}; documented but never sent: {never_sent:?}"
    );

    let listed: BTreeSet<String> =
        contract.doc["components"]["schemas"]["Problem"]["properties"]["code"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect();
    let sent: BTreeSet<String> = in_source.into_iter().map(|(_, code)| code).collect();
    assert_eq!(listed, sent, "Problem.code lists exactly the codes sent");
}

/// Validates every example below `node` against its schema; returns how
/// many were checked and the failures.
fn check_examples(contract: &Contract, node: &Value, at: &str, checked: &mut usize) -> Vec<String> {
    let mut failures = Vec::new();
    let mut check = |schema: &Value, example: &Value, at: String| {
        *checked += 1;
        for error in contract.errors(schema, example) {
            failures.push(format!("{at}: {error}"));
        }
    };
    match node {
        Value::Object(map) => {
            // A parameter, header or media type: examples of its `schema`.
            // Anything else with `example` is a schema itself.
            let schema = map.get("schema").unwrap_or(node);
            if let Some(example) = map.get("example") {
                check(schema, example, format!("{at}/example"));
            }
            match map.get("examples") {
                Some(Value::Object(named)) => {
                    for (name, example) in named {
                        let example = contract.deref(example);
                        check(schema, &example["value"], format!("{at}/examples/{name}"));
                    }
                }
                Some(Value::Array(list)) => {
                    for (i, example) in list.iter().enumerate() {
                        check(schema, example, format!("{at}/examples/{i}"));
                    }
                }
                _ => {}
            }
            for (key, child) in map {
                // Examples are data, not more of the document.
                if key != "example" && key != "examples" {
                    let at = format!("{at}/{}", key.replace('~', "~0").replace('/', "~1"));
                    failures.extend(check_examples(contract, child, &at, checked));
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                failures.extend(check_examples(
                    contract,
                    item,
                    &format!("{at}/{i}"),
                    checked,
                ));
            }
        }
        _ => {}
    }
    failures
}

#[test]
fn every_example_in_openapi_yaml_matches_its_schema() {
    let contract = Contract::load();
    let mut checked = 0;
    let failures = check_examples(&contract, &contract.doc, "#", &mut checked);
    assert!(checked >= 50, "only {checked} examples were found");
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The members a schema requires at its top level (through `$ref` and `allOf`).
fn required(contract: &Contract, schema: &Value) -> BTreeSet<String> {
    let schema = contract.deref(schema);
    let mut members: BTreeSet<String> = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| m.as_str().unwrap().to_owned())
        .collect();
    for part in schema["allOf"].as_array().into_iter().flatten() {
        members.extend(required(contract, part));
    }
    members
}

/// Every documented JSON response with an example is closed: the example
/// passes, and fails once it gains a member or loses a required one. So a
/// server that adds or drops a field fails the live test.
#[test]
fn a_documented_response_that_gains_or_loses_a_member_no_longer_matches() {
    let contract = Contract::load();
    let mut checked = 0;
    for (path, item) in contract.doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for (status, response) in operation["responses"].as_object().unwrap() {
                let response = contract.deref(response);
                let Some(content) = response["content"].as_object() else {
                    continue;
                };
                for (media, body) in content {
                    let example = match (&body["example"], body["examples"].as_object()) {
                        (Value::Null, Some(named)) => {
                            contract.deref(named.values().next().unwrap())["value"].clone()
                        }
                        (example, _) => example.clone(),
                    };
                    if !media.contains("json") || !example.is_object() {
                        continue;
                    }
                    let what = format!("{method} {path} {status} {media}");
                    let schema = &body["schema"];
                    assert!(contract.errors(schema, &example).is_empty(), "{what}");
                    let mut gained = example.clone();
                    gained["unexpected_member"] = json!(1);
                    assert!(
                        !contract.errors(schema, &gained).is_empty(),
                        "{what}: an extra member passes; add additionalProperties: false"
                    );
                    for member in required(&contract, schema) {
                        let mut lost = example.clone();
                        lost.as_object_mut().unwrap().remove(&member);
                        assert!(
                            !contract.errors(schema, &lost).is_empty(),
                            "{what}: passes without the required {member}"
                        );
                    }
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 20, "only {checked} responses were checked");
}

/// (status, code) of every code the README's error table lists: the rows
/// `| 404 | `not_found`, ... |`.
fn problems_in_readme() -> BTreeSet<(u16, String)> {
    let readme = std::fs::read_to_string("README.md").unwrap();
    let mut listed = BTreeSet::new();
    for line in readme.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let [_, status, codes, ..] = cells.as_slice() else {
            continue;
        };
        let Ok(status) = status.parse::<u16>() else {
            continue;
        };
        // Backticked words that are codes, not the headers named beside them.
        let is_code = |word: &&str| word.chars().all(|c| c.is_ascii_lowercase() || c == '_');
        for code in codes.split('`').skip(1).step_by(2).filter(is_code) {
            listed.insert((status, code.to_owned()));
        }
    }
    listed
}

#[test]
fn the_readme_lists_every_error_code_at_the_status_the_server_sends_it_with() {
    let sent = problems_sent();
    let listed = problems_in_readme();
    let unlisted: Vec<_> = sent.difference(&listed).collect();
    let never_sent: Vec<_> = listed.difference(&sent).collect();
    assert!(
        unlisted.is_empty() && never_sent.is_empty(),
        "sent but not in the README: {unlisted:?}; in the README but never sent: {never_sent:?}"
    );
}
