//! The Prometheus alerting rules shipped in `deploy/prometheus/`: valid,
//! passing their own unit tests (Debian's `promtool`, which `.ci/run`
//! installs), and naming only metrics the server really exports.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use tillsync_testkit::spawn_app;

const RULES_DIR: &str = "deploy/prometheus";

fn promtool(args: &[&str]) {
    let output = Command::new("promtool")
        .args(args)
        .current_dir(RULES_DIR)
        .output()
        .unwrap_or_else(|e| {
            panic!("promtool not found ({e}): install Debian's `prometheus` package (.ci/run does)")
        });
    assert!(
        output.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_alert_rules_are_valid_and_pass_their_unit_tests() {
    promtool(&["check", "rules", "alerts.yml"]);
    promtool(&["test", "rules", "alerts.test.yml"]);
}

fn yaml(file: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(Path::new(RULES_DIR).join(file)).unwrap();
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{file} is not YAML: {e}"))
}

/// Every alert has a unit test in which it fires: a rule no test makes
/// fire could never fire at all and still pass `promtool test rules`.
#[test]
fn every_alert_rule_has_a_unit_test_in_which_it_fires() {
    let rules = yaml("alerts.yml");
    let alerts: BTreeSet<String> = rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|group| group["rules"].as_array().unwrap())
        .filter_map(|rule| rule["alert"].as_str().map(str::to_owned))
        .collect();
    assert!(alerts.len() >= 8, "too few alerts found: {alerts:?}");

    let tests = yaml("alerts.test.yml");
    let fired: BTreeSet<String> = tests["tests"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|test| {
            test["alert_rule_test"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter(|case| case["exp_alerts"].as_array().is_some_and(|a| !a.is_empty()))
        .filter_map(|case| case["alertname"].as_str().map(str::to_owned))
        .collect();
    let untested: Vec<_> = alerts.difference(&fired).collect();
    assert!(
        untested.is_empty(),
        "alerts no unit test makes fire: {untested:?}"
    );
}

/// Every `tillsync_...` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("tillsync_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        names.insert(name);
    }
    names
}

#[tokio::test]
async fn every_metric_the_alert_rules_name_is_exported_by_the_server() {
    let rules = std::fs::read_to_string(Path::new(RULES_DIR).join("alerts.yml")).unwrap();
    let named = metric_names(&rules);
    assert!(
        named.len() >= 6,
        "the rules name too few metrics: {named:?}"
    );

    let app = spawn_app().await;
    // The first scrape is counted once it is answered: scrape twice.
    app.get("/metrics", "").await;
    let page = app.get("/metrics", "").await.text().await.unwrap();
    let exported: BTreeSet<String> = page
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect();
    let missing: Vec<_> = named.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "named by the rules, not exported: {missing:?}"
    );
}
