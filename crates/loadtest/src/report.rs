//! The result of a run: the figures, the verdict, and the two ways they are
//! shown (a text summary for people, the same as JSON for machines).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use serde::Serialize;
use uuid::Uuid;

use super::args::{Arrivals, LoadtestArgs};
use super::client::Api;
use super::stats::{Percentiles, TillStats};
use super::verify::{self, ExpectedTill, Verification, VerifyLimits};

#[derive(Debug, Serialize)]
pub struct Report {
    pub settings: Settings,
    pub sales: Sales,
    pub requests: Requests,
    pub latency: Latency,
    pub drain: Drain,
    pub verdict: Verdict,
    /// What verification needs to ask the server again (tokens included,
    /// so never serialized).
    #[serde(skip)]
    pub(super) target: VerifyTarget,
}

#[derive(Debug, Serialize)]
pub struct Settings {
    /// The API's URL, without any credentials it may carry.
    pub url: String,
    pub store_id: Uuid,
    pub terminals: u32,
    pub offered_per_s: f64,
    pub batch_size: u32,
    pub duration_s: f64,
    pub drain_timeout_s: f64,
    pub request_timeout_s: f64,
    pub verify_timeout_s: f64,
    pub arrivals: Arrivals,
    /// Written as a string: a 64-bit seed is beyond what JSON readers that
    /// hold numbers as doubles (jq, JavaScript) read exactly, and the point
    /// of the seed is to be passed back to `--seed` as it is.
    #[serde(serialize_with = "as_string")]
    pub seed: u64,
}

fn as_string<S: serde::Serializer>(value: &u64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

#[derive(Debug, Serialize)]
pub struct Sales {
    pub generated: u64,
    /// Arrivals per second actually scheduled during the load phase.
    pub generated_per_s: f64,
    /// Distinct sales the server acknowledged, by the end of the drain.
    pub acknowledged: u64,
    pub acknowledged_during_load: u64,
    /// Sales acknowledged per second during the load phase.
    pub achieved_per_s: f64,
    /// Sales still unacknowledged when the drain ended.
    pub undelivered: u64,
    /// Sales queued again because `/v1/sync` reported them missing.
    pub resent: u64,
    /// Sales the server rejected, by code (a clean run has none).
    pub rejected: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize)]
pub struct Requests {
    pub batches_sent: u64,
    pub retries: u64,
    /// Batch pushes by HTTP status, plus "timeout", "connection error" and
    /// "invalid response".
    pub status_counts: BTreeMap<String, u64>,
    pub sync_failures: u64,
}

#[derive(Debug, Serialize)]
pub struct Latency {
    /// Each batch push, from sending to the end of the answer or the failure.
    pub request: Percentiles,
    /// Each sale, from its arrival at the till to its first acknowledgement.
    pub sale: Percentiles,
    /// Pushes answered 200.
    pub accepted: Percentiles,
    /// Pushes answered with a refusal (429, 503, ...).
    pub refused: Percentiles,
}

#[derive(Debug, Serialize)]
pub struct Drain {
    pub seconds: f64,
    /// Every queue emptied and confirmed by `/v1/sync` before the timeout.
    pub completed: bool,
}

#[derive(Debug, Serialize)]
pub struct Verdict {
    pub passed: bool,
    /// Sales the server rejected: the simulator generated something invalid.
    pub rejected: u64,
    #[serde(flatten)]
    pub verification: Verification,
}

#[derive(Debug)]
pub(super) struct VerifyTarget {
    pub url: Url,
    pub request_timeout: Duration,
    pub limits: VerifyLimits,
    pub fleet: Arc<[ExpectedTill]>,
}

impl Verdict {
    pub fn new(rejected: u64, verification: Verification) -> Self {
        Self {
            passed: rejected == 0 && verification.passed(),
            rejected,
            verification,
        }
    }
}

/// What the load phase and the drain measured.
pub(super) struct Load {
    pub generated: u64,
    pub acknowledged_during_load: u64,
    /// Sales still unacknowledged when the drain ended.
    pub undelivered: u64,
    pub drain_elapsed: Duration,
    pub stats: TillStats,
}

/// Everything a run gathered besides its settings and verification.
pub(super) struct Run {
    pub store_id: Uuid,
    pub seed: u64,
    /// Distinct sales acknowledged by the end of the drain.
    pub acknowledged: u64,
    pub load: Load,
    pub limits: VerifyLimits,
    pub fleet: Arc<[ExpectedTill]>,
}

impl Report {
    /// The report of a run: its settings, the figures, and the verdict.
    pub(super) fn assemble(args: LoadtestArgs, run: Run, verification: Verification) -> Self {
        let Run {
            store_id,
            seed,
            acknowledged,
            load,
            limits,
            fleet,
        } = run;
        let stats = &load.stats;
        let load_s = args.duration.as_secs_f64();
        Report {
            settings: Settings {
                url: shown_url(&args.url),
                store_id,
                terminals: args.terminals,
                offered_per_s: args.rate,
                batch_size: args.batch_size,
                duration_s: load_s,
                drain_timeout_s: args.drain_timeout.as_secs_f64(),
                request_timeout_s: args.request_timeout.as_secs_f64(),
                verify_timeout_s: args.verify_timeout.as_secs_f64(),
                arrivals: args.arrivals,
                seed,
            },
            sales: Sales {
                generated: load.generated,
                generated_per_s: load.generated as f64 / load_s,
                acknowledged,
                acknowledged_during_load: load.acknowledged_during_load,
                achieved_per_s: load.acknowledged_during_load as f64 / load_s,
                undelivered: load.undelivered,
                resent: stats.resent,
                rejected: stats.rejected.clone(),
            },
            requests: Requests {
                batches_sent: stats.requests,
                retries: stats.retries,
                status_counts: stats.status_counts.clone(),
                sync_failures: stats.sync_failures,
            },
            latency: Latency {
                request: Percentiles::of(&stats.request_latency_us),
                sale: Percentiles::of(&stats.sale_latency_us),
                accepted: Percentiles::of(&stats.accepted_latency_us),
                refused: Percentiles::of(&stats.refused_latency_us),
            },
            drain: Drain {
                seconds: load.drain_elapsed.as_secs_f64(),
                completed: load.undelivered == 0 && load.drain_elapsed < args.drain_timeout,
            },
            verdict: Verdict::new(stats.rejected_total(), verification),
            target: VerifyTarget {
                url: args.url,
                request_timeout: args.request_timeout,
                limits,
                fleet,
            },
        }
    }

    /// No sale lost, duplicated or rejected, every total as generated.
    pub fn passed(&self) -> bool {
        self.verdict.passed
    }

    /// Asks the server again, e.g. after its data was changed behind its back.
    pub async fn verify_again(&self) -> anyhow::Result<Verification> {
        let target = &self.target;
        let api = Api::new(&target.url, target.request_timeout, VERIFY_POOL)?;
        Ok(verify::verify(&api, target.fleet.clone(), target.limits).await)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serializes")
    }
}

/// Connections kept for a verification on its own.
const VERIFY_POOL: usize = 8;

/// The URL as shown: a password in it is not.
pub fn shown_url(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_password(None);
    shown.to_string()
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.settings;
        writeln!(
            f,
            "tillsync loadtest against {}: {} tills, {:.0}s at {} sales/s offered ({} arrivals), batches of up to {}, seed {}",
            s.url,
            s.terminals,
            s.duration_s,
            s.offered_per_s,
            s.arrivals.as_str(),
            s.batch_size,
            s.seed
        )?;
        let sales = &self.sales;
        writeln!(
            f,
            "  sales      {} generated ({:.1}/s), {} acknowledged during the load ({:.1}/s achieved), {} in all",
            sales.generated,
            sales.generated_per_s,
            sales.acknowledged_during_load,
            sales.achieved_per_s,
            sales.acknowledged
        )?;
        let requests = &self.requests;
        writeln!(
            f,
            "  requests   {} batch pushes, {} retries, {} sales resent after /v1/sync, {} failed sync calls",
            requests.batches_sent, requests.retries, sales.resent, requests.sync_failures
        )?;
        let statuses: Vec<String> = requests
            .status_counts
            .iter()
            .map(|(status, n)| format!("{status}: {n}"))
            .collect();
        writeln!(f, "  statuses   {}", statuses.join(", "))?;
        writeln!(
            f,
            "  latency    request {}",
            percentiles(&self.latency.request)
        )?;
        writeln!(
            f,
            "             sale    {}",
            percentiles(&self.latency.sale)
        )?;
        writeln!(
            f,
            "             200     {}",
            percentiles(&self.latency.accepted)
        )?;
        if self.latency.refused.count > 0 {
            writeln!(
                f,
                "             refused {}",
                percentiles(&self.latency.refused)
            )?;
        }
        let drain = if self.drain.completed {
            "queues empty".to_owned()
        } else {
            format!("timed out with {} sales unacknowledged", sales.undelivered)
        };
        writeln!(f, "  drain      {:.1}s, {drain}", self.drain.seconds)?;
        self.verdict.fmt(f)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = &self.verification;
        writeln!(
            f,
            "verdict: {}  lost {}, duplicated {}, mismatched totals {}, rejected {}, \
             tills with sync-state mismatches {}, tills unverified {} ({} tills checked)",
            if self.passed { "PASS" } else { "FAIL" },
            v.lost,
            v.duplicated,
            v.mismatched_totals,
            self.rejected,
            v.sync_state_mismatches,
            v.unverified_tills,
            v.tills_checked
        )?;
        for d in &v.discrepancies {
            writeln!(f, "  {} till {}: {}", d.check, d.terminal_id, d.detail)?;
        }
        Ok(())
    }
}

fn percentiles(p: &Percentiles) -> String {
    if p.count == 0 {
        return "none recorded".into();
    }
    format!(
        "p50 {:.1}ms  p90 {:.1}ms  p99 {:.1}ms  p99.9 {:.1}ms  max {:.1}ms  ({} samples)",
        p.p50_ms, p.p90_ms, p.p99_ms, p.p99_9_ms, p.max_ms, p.count
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_shown_without_its_password() {
        let url = Url::parse("https://ops:secret@tills.example/api").unwrap();
        assert_eq!(shown_url(&url), "https://ops@tills.example/api");
    }

    #[test]
    fn the_verdict_fails_on_any_rejected_lost_or_duplicated_sale() {
        assert!(Verdict::new(0, Verification::default()).passed);
        assert!(!Verdict::new(1, Verification::default()).passed);
        let lost = Verification {
            lost: 1,
            ..Verification::default()
        };
        let text = Verdict::new(0, lost).to_string();
        assert!(
            text.starts_with("verdict: FAIL  lost 1, duplicated 0"),
            "{text}"
        );
    }
}
