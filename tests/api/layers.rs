//! The layers `src/lib.rs` describes hold: each top-level module imports
//! only modules of lower layers (`use crate::...` and paths in code, not in
//! comments). A new import that points up or sideways fails here, naming
//! the file.

use std::collections::BTreeSet;
use std::path::Path;

use crate::support::source::rust_files;

/// Each top-level module's layer, as `src/lib.rs` lists them: a module may
/// use modules of a lower layer only.
const LAYERS: &[(&str, u8)] = &[
    ("app", 6),
    ("admin", 6),
    ("jobs", 5),
    ("http", 5),
    ("ingest", 4),
    ("error", 4),
    ("health", 3),
    ("db", 2),
    ("domain", 1),
    ("telemetry", 1),
    ("config", 0),
    ("metrics", 0),
];

fn layer(module: &str) -> u8 {
    LAYERS
        .iter()
        .find(|(name, _)| *name == module)
        .unwrap_or_else(|| panic!("src/{module} is in no layer: add it to src/lib.rs and here"))
        .1
}

/// The top-level modules `file` names as `crate::<module>` outside comments.
fn uses(file: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(file).unwrap();
    text.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .flat_map(|line| {
            line.match_indices("crate::")
                .map(move |(at, _)| &line[at + 7..])
        })
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect()
        })
        .collect()
}

#[test]
fn every_module_imports_only_the_layers_below_it() {
    let mut upward = Vec::new();
    for file in rust_files(Path::new("src")) {
        let relative = file.strip_prefix("src").unwrap();
        let Some(top) = relative.components().next() else {
            continue;
        };
        let top = top.as_os_str().to_string_lossy();
        let module = top.trim_end_matches(".rs");
        if module == "lib" || module == "main" {
            continue;
        }
        for used in uses(&file) {
            if used != module && layer(&used) >= layer(module) {
                upward.push(format!("{} uses crate::{used}", file.display()));
            }
        }
    }
    assert!(upward.is_empty(), "imports against the layers: {upward:#?}");
}
