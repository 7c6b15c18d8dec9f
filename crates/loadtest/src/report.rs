//! The result of a run: the figures, what the store floor did, the verdict,
//! and the two ways they are shown (a text summary for people, in
//! `report/text.rs`; the same as JSON for machines).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use serde::Serialize;
use uuid::Uuid;

use super::args::{Arrivals, LoadtestArgs};
use super::client::Api;
use super::generator::ReceiptMix;
use super::stats::{Percentiles, TillStats};
use super::verify::{self, Fate, Fleet, Verification, VerifyLimits};

mod incidents;
mod receipts;
mod text;

pub use incidents::{Incidents, RestoredTill, RetiredTill};
pub use receipts::Receipts;

#[derive(Debug, Serialize)]
pub struct Report {
    pub settings: Settings,
    pub sales: Sales,
    pub requests: Requests,
    pub latency: Latency,
    pub drain: Drain,
    /// What the store floor did: voids and refunds across tills, and the
    /// incidents (a till offline, restored, retired).
    pub incidents: Incidents,
    /// What kinds of receipts the tills rang up.
    pub receipts: Receipts,
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
    pub settle_timeout_s: f64,
    pub arrivals: Arrivals,
    pub void_share: f64,
    pub refund_share: f64,
    pub cross_till_share: f64,
    pub voids_ahead: bool,
    pub offline_till: bool,
    pub restore_rewind: u32,
    pub retire_till: bool,
    /// The store's time zone and when its business day starts (`HH:MM`).
    pub timezone: &'static str,
    pub business_day_starts_at: String,
    /// How often each kind of receipt is rung up.
    #[serde(flatten)]
    pub receipt_mix: ReceiptMix,
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
    /// Sales neither acknowledged nor refused for good when the drain
    /// ended: `never_sent` plus `sent_unanswered`.
    pub undelivered: u64,
    pub never_sent: u64,
    /// Sent at least once, never answered with a 200 (refused for load,
    /// timed out, or in flight when the drain gave up).
    pub sent_unanswered: u64,
    /// Sales queued again because `/v1/sync` reported them missing.
    pub resent: u64,
    /// Sales refused for now (`retryable`) and queued again.
    pub retried_later: u64,
    /// Sales the server refused for good, by code (a run without a retired
    /// till's late sales has none).
    pub rejected: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize)]
pub struct Requests {
    pub batches_sent: u64,
    pub retries: u64,
    /// Batch pushes by HTTP status, plus "timeout", "connection error" and
    /// "invalid response".
    pub status_counts: BTreeMap<String, u64>,
    /// Failed `GET /v1/sync` calls of the tills, bucketed the same way.
    pub sync_failures: BTreeMap<String, u64>,
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
    /// Nothing lost, duplicated or mismatched, every till verified.
    pub passed: bool,
    /// Every sale verified: none still queued on a till when the drain
    /// gave up. An incomplete run can pass: the server never had those.
    pub complete: bool,
    #[serde(flatten)]
    pub verification: Verification,
}

#[derive(Debug)]
pub(super) struct VerifyTarget {
    pub url: Url,
    pub request_timeout: Duration,
    pub limits: VerifyLimits,
    pub fleet: Arc<Fleet>,
}

impl Verdict {
    pub fn new(verification: Verification) -> Self {
        Self {
            passed: verification.passed(),
            complete: verification.still_queued == 0,
            verification,
        }
    }
}

/// What the load phase and the drain measured.
pub(super) struct Load {
    pub generated: u64,
    pub acknowledged_during_load: u64,
    /// Sales neither acknowledged nor refused for good when the drain ended.
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
    pub fleet: Arc<Fleet>,
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
        let fates = fleet.tills.iter().flat_map(|t| &t.sales).map(|s| &s.fate);
        let never_sent = fates.clone().filter(|f| **f == Fate::NeverSent).count() as u64;
        let sent_unanswered = fates.filter(|f| **f == Fate::SentUnanswered).count() as u64;
        Report {
            settings: settings(&args, store_id, seed),
            sales: Sales {
                generated: load.generated,
                generated_per_s: load.generated as f64 / load_s,
                acknowledged,
                acknowledged_during_load: load.acknowledged_during_load,
                achieved_per_s: load.acknowledged_during_load as f64 / load_s,
                undelivered: load.undelivered,
                never_sent,
                sent_unanswered,
                resent: stats.resent,
                retried_later: stats.retried_later,
                rejected: stats.rejected.clone(),
            },
            requests: Requests {
                batches_sent: stats.requests,
                retries: stats.retries,
                status_counts: stats.status_counts.clone(),
                sync_failures: stats.sync_failures.clone(),
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
            incidents: Incidents::of(&fleet),
            receipts: Receipts::of(&fleet, &args.shop().day),
            verdict: Verdict::new(verification),
            target: VerifyTarget {
                url: args.url,
                request_timeout: args.request_timeout,
                limits,
                fleet,
            },
        }
    }

    /// Nothing lost, duplicated or mismatched, every till verified (sales
    /// still queued on tills when the drain gave up do not fail it).
    pub fn passed(&self) -> bool {
        self.verdict.passed
    }

    /// Asks the server again, e.g. after its data was changed behind its
    /// back: one round, since the run's own verdict already waited for the
    /// figures to settle, and a change made since does not settle.
    pub async fn verify_again(&self) -> anyhow::Result<Verification> {
        let target = &self.target;
        let api = Api::new(&target.url, target.request_timeout, VERIFY_POOL)?;
        let one_round = VerifyLimits {
            settle: Duration::ZERO,
            ..target.limits
        };
        Ok(verify::verify(&api, target.fleet.clone(), one_round).await)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serializes")
    }
}

fn settings(args: &LoadtestArgs, store_id: Uuid, seed: u64) -> Settings {
    let shop = args.shop();
    Settings {
        url: shown_url(&args.url),
        store_id,
        terminals: args.terminals,
        offered_per_s: args.rate,
        batch_size: args.batch_size,
        duration_s: args.duration.as_secs_f64(),
        drain_timeout_s: args.drain_timeout.as_secs_f64(),
        request_timeout_s: args.request_timeout.as_secs_f64(),
        verify_timeout_s: args.verify_timeout.as_secs_f64(),
        settle_timeout_s: args.settle_timeout.as_secs_f64(),
        arrivals: args.arrivals,
        void_share: args.void_share,
        refund_share: args.refund_share,
        cross_till_share: args.cross_till_share,
        voids_ahead: args.voids_ahead,
        offline_till: args.offline_till,
        restore_rewind: args.restore_rewind,
        retire_till: args.retire_till,
        timezone: shop.day.timezone.name(),
        business_day_starts_at: shop.day.starts_at_text(),
        receipt_mix: shop.mix,
        seed,
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
