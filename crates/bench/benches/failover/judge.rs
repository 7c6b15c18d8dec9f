//! The drill's judgement: what each replica answered around the failover
//! (the watch tills, [`crate::watch`]), what the simulator saw and its
//! exactly-once verdict, printed, then one `summary:` line of `key=value`
//! figures for collecting runs.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::Failover;
use crate::watch::{Outcome, counts};

/// The target: every replica takes writes again this soon after the promotion.
const TARGET: Duration = Duration::from_secs(5);

/// Answers a till may get during a failover: a success, or a refusal it
/// retries (503 while there is no primary, 429 if it pushed too fast).
const ACCEPTABLE: &[&str] = &["200", "429", "503"];

/// Prints the outcome of the run; whether every target was met.
pub fn judge(ha: &str, failover: &Failover, outcomes: &[Outcome], report: &Path) -> bool {
    let mut missed = Vec::new();
    let mut summary: Vec<(&str, String)> = vec![("ha", ha.to_owned())];
    summary.extend(failover.summary.iter().cloned());
    let mut backs = Vec::new();
    let mut refused = 0;
    println!("\nper replica (watch till, one push every 100 ms):");
    for outcome in outcomes {
        let back = outcome
            .back_after
            .map_or("never".into(), |d| format!("{} ms", d.as_millis()));
        println!(
            "  {}: pushes succeed again {back} after the promotion; answers from the kill until then: {}; whole run: {}",
            outcome.replica,
            counts(&outcome.meanwhile),
            counts(&outcome.all)
        );
        backs.push(
            outcome
                .back_after
                .map_or("never".into(), |d| d.as_millis().to_string()),
        );
        refused += outcome.meanwhile.get("503").copied().unwrap_or(0);
        if outcome.back_after.is_none_or(|d| d > TARGET) {
            missed.push(format!("{} back after {back}", outcome.replica));
        }
        for status in outcome.all.keys() {
            if !ACCEPTABLE.contains(&status.as_str()) {
                missed.push(format!("{} answered {status}", outcome.replica));
            }
        }
    }
    summary.push(("back_ms", backs.join("/")));
    summary.push(("watch_503", refused.to_string()));
    let report: Value = serde_json::from_slice(&std::fs::read(report).expect("loadtest report"))
        .expect("loadtest report is JSON");
    let statuses = &report["requests"]["status_counts"];
    for status in statuses.as_object().into_iter().flat_map(|o| o.keys()) {
        if !ACCEPTABLE.contains(&status.as_str()) {
            missed.push(format!("the simulator got {status}"));
        }
    }
    let verdict = &report["verdict"];
    println!(
        "simulator: statuses {statuses}, sales resent after /v1/sync {}, verdict passed={} lost={} duplicated={}",
        report["sales"]["resent"], verdict["passed"], verdict["lost"], verdict["duplicated"]
    );
    summary.push((
        "sim_503",
        statuses
            .get("503")
            .and_then(Value::as_u64)
            .unwrap_or(0)
            .to_string(),
    ));
    // Every count of the verdict that is not zero (its sizes aside), so a
    // failed verdict says which check failed.
    let nonzero: Vec<String> = verdict
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| !["tills_checked", "rounds"].contains(&k.as_str()))
        .filter(|(_, v)| v.as_u64().is_some_and(|n| n > 0))
        .map(|(k, v)| format!("{k}:{v}"))
        .collect();
    summary.push(("verdict_nonzero", nonzero.join(",")));
    summary.push(("lost", verdict["lost"].to_string()));
    summary.push(("duplicated", verdict["duplicated"].to_string()));
    if verdict["passed"] != true || verdict["lost"] != 0 || verdict["duplicated"] != 0 {
        missed.push("the exactly-once verdict failed".into());
    }
    let passed = missed.is_empty();
    if passed {
        println!(
            "drill PASSED: every replica back within {TARGET:?} of the promotion, 0 lost, 0 duplicated"
        );
    } else {
        println!("drill FAILED: {}", missed.join("; "));
    }
    summary.push(("passed", passed.to_string()));
    let summary: Vec<String> = summary.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("summary: {}", summary.join(" "));
    passed
}
