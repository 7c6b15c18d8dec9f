//! openapi.yaml as a contract the tests hold live responses to: the
//! operations it lists, the response it documents for a status, the
//! headers and media types of that response, and JSON Schema validation of
//! bodies and examples (OpenAPI 3.1 schemas are JSON Schema 2020-12).
//!
//! `$ref`s between schemas are resolved by the validator itself: each schema
//! is validated inside a document that also carries the `components` of
//! openapi.yaml, so `#/components/schemas/...` points where it always did.
//! `$ref`s to responses and headers are followed here.

use std::collections::BTreeSet;

use reqwest::header::HeaderMap;
use serde_json::{Value, json};

pub const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Headers whose presence in a response must match what the document says.
const TRACKED_HEADERS: &[&str] = &[
    "x-request-id",
    "retry-after",
    "idempotent-replayed",
    "cache-control",
    "warning",
    "age",
];

pub struct Contract {
    pub doc: Value,
}

/// A response as the tests saw it.
pub struct Seen {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Seen {
    pub async fn from(response: reqwest::Response) -> Self {
        Self {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.bytes().await.unwrap().to_vec(),
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

impl Contract {
    pub fn load() -> Self {
        let text = std::fs::read_to_string("openapi.yaml").expect("openapi.yaml is readable");
        let doc: Value = serde_norway::from_str(&text).expect("openapi.yaml is YAML");
        assert!(
            doc["openapi"]
                .as_str()
                .is_some_and(|v| v.starts_with("3.1")),
            "schemas are read as JSON Schema 2020-12, which is OpenAPI 3.1"
        );
        Self { doc }
    }

    /// Every (METHOD, path) the document lists.
    pub fn operations(&self) -> BTreeSet<(String, String)> {
        let mut operations = BTreeSet::new();
        for (path, item) in self.doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                if METHODS.contains(&method.as_str()) {
                    operations.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        operations
    }

    /// Follows a `$ref` to another part of the document.
    pub fn deref<'a>(&'a self, node: &'a Value) -> &'a Value {
        match node.get("$ref").and_then(Value::as_str) {
            Some(pointer) => {
                let target = self
                    .doc
                    .pointer(pointer.trim_start_matches('#'))
                    .unwrap_or_else(|| panic!("dangling $ref {pointer}"));
                self.deref(target)
            }
            None => node,
        }
    }

    /// A validator for `schema`, with the document's components beside it.
    pub fn validator(&self, schema: &Value) -> jsonschema::Validator {
        let wrapped = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "allOf": [schema],
            "components": self.doc["components"],
        });
        jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&wrapped)
            .unwrap_or_else(|e| panic!("schema does not compile ({e}): {schema}"))
    }

    /// The errors of `instance` against `schema`, as text (empty: valid).
    pub fn errors(&self, schema: &Value, instance: &Value) -> Vec<String> {
        self.validator(schema)
            .iter_errors(instance)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect()
    }

    /// Checks a live response to `method path` (the path as documented,
    /// with `{...}` templates) against the response documented for its status.
    pub fn check(&self, method: &str, path: &str, seen: &Seen) {
        let operation = &self.doc["paths"][path][method.to_lowercase()];
        assert!(
            operation.is_object(),
            "{method} {path} is not in openapi.yaml"
        );
        let status = seen.status.to_string();
        let documented = operation["responses"].get(&status).unwrap_or_else(|| {
            panic!(
                "{method} {path} answered {status}, which is not documented: {}",
                String::from_utf8_lossy(&seen.body)
            )
        });
        self.check_response(&format!("{method} {path} {status}"), documented, seen);
    }

    /// Checks a live response against a response object (or a `$ref` to one).
    pub fn check_response(&self, what: &str, documented: &Value, seen: &Seen) {
        let documented = self.deref(documented);
        self.check_headers(what, documented, &seen.headers);
        let content_type = seen
            .headers
            .get("content-type")
            .map_or("", |v| v.to_str().unwrap());
        let content = documented["content"]
            .as_object()
            .unwrap_or_else(|| panic!("{what}: no content documented"));
        let base = |media: &str| media.split(';').next().unwrap().trim().to_owned();
        let media = content
            .get(content_type)
            .or_else(|| {
                content
                    .iter()
                    .find(|(k, _)| base(k) == base(content_type))
                    .map(|(_, v)| v)
            })
            .unwrap_or_else(|| panic!("{what}: content type {content_type:?} is not documented"));
        if base(content_type).ends_with("json") {
            let body: Value = serde_json::from_slice(&seen.body)
                .unwrap_or_else(|e| panic!("{what}: body is not JSON ({e})"));
            let errors = self.errors(&media["schema"], &body);
            assert!(
                errors.is_empty(),
                "{what}: body does not match openapi.yaml: {errors:#?}\n{body:#}"
            );
        }
    }

    fn check_headers(&self, what: &str, documented: &Value, headers: &HeaderMap) {
        let listed: Vec<(String, &Value)> = documented["headers"]
            .as_object()
            .map(|h| {
                h.iter()
                    .map(|(k, v)| (k.to_lowercase(), self.deref(v)))
                    .collect()
            })
            .unwrap_or_default();
        for name in TRACKED_HEADERS {
            let header = listed.iter().find(|(k, _)| k == name);
            match (headers.get(*name), header) {
                (Some(value), None) => panic!("{what}: sends {name}: {value:?}, not documented"),
                (None, Some((_, h))) if h["required"] == true => {
                    panic!("{what}: {name} is documented as required but was not sent")
                }
                (Some(value), Some((_, h))) => {
                    let raw = value.to_str().unwrap();
                    // Header values are text; a documented integer is compared as one.
                    let schema = self.deref(&h["schema"]);
                    let as_json = match (schema["type"].as_str(), raw.parse::<i64>()) {
                        (Some("integer"), Ok(n)) => json!(n),
                        _ => json!(raw),
                    };
                    let errors = self.errors(&h["schema"], &as_json);
                    assert!(
                        errors.is_empty(),
                        "{what}: {name}: {raw} does not match: {errors:?}"
                    );
                }
                (None, _) => {}
            }
        }
    }
}
