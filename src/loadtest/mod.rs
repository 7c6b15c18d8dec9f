//! `tillsync loadtest`, the fleet simulator: provisions a store and its
//! tills through the public API, offers an open-model load of realistic
//! sales for a while, drains the tills' queues, and verifies through the API
//! that the server holds every sale exactly once with the generated totals.
//!
//! It is a client of the public API only, so it can run from another
//! machine. The run, top to bottom: `provision` -> one `till` task per
//! till and the `arrivals` scheduler feeding their queues -> drain ->
//! [`verify`] -> [`report`]. Tests call [`run`] directly and can verify
//! again after changing the database ([`Report::verify_again`]).

mod args;
mod arrivals;
mod backoff;
mod client;
mod generator;
mod journal;
mod progress;
mod provision;
pub mod report;
mod stats;
mod till;
pub mod verify;

use std::sync::Arc;

use anyhow::{Context, anyhow};
use tokio::sync::watch;
use tokio::time::Instant;

pub use args::{AdminToken, Arrivals, LoadtestArgs};
pub use report::Report;
pub use stats::LiveCounters;
pub use verify::Verification;

use client::Api;
use progress::Progress;
use report::{Drain, Latency, Requests, Sales, Settings, Verdict, VerifyTarget};
use stats::{Percentiles, TillStats};
use till::{Phase, Till, TillSettings};
use verify::{ExpectedTill, VerifyLimits};

/// The command: run, print the summary, write the JSON report if asked, and
/// fail (non-zero exit) when the verdict is not a pass.
pub async fn command(args: LoadtestArgs) -> anyhow::Result<()> {
    let json_path = args.json.clone();
    let report = run(args).await?;
    print!("{report}");
    if let Some(path) = json_path {
        std::fs::write(&path, report.to_json())
            .with_context(|| format!("writing the JSON report to {}", path.display()))?;
    }
    if report.passed() {
        Ok(())
    } else {
        Err(anyhow!(
            "the load test failed its verdict (see the summary above)"
        ))
    }
}

/// One whole run. Errors only when the run could not take place (the API
/// refused to provision); everything that goes wrong during the load is
/// counted in the report instead.
pub async fn run(args: LoadtestArgs) -> anyhow::Result<Report> {
    run_observed(args, Arc::new(LiveCounters::default())).await
}

/// `run`, with the live counters (generated, acknowledged, queued, ...)
/// shared with the caller, which may sample them while the load runs (the
/// recovery benchmark does).
pub async fn run_observed(args: LoadtestArgs, live: Arc<LiveCounters>) -> anyhow::Result<Report> {
    let seed = args.seed.unwrap_or_else(rand::random);
    let api = Api::new(&args.url, args.request_timeout, args.terminals as usize)?;
    let provisioned = provision::provision(
        &api,
        args.admin_token.expose(),
        args.terminals,
        args.backoff_cap,
    )
    .await?;
    let tills: Vec<Arc<Till>> = provisioned
        .tills
        .into_iter()
        .enumerate()
        .map(|(number, t)| Arc::new(Till::new(t.terminal_id, t.token, till_seed(seed, number))))
        .collect();
    tracing::debug!(store.id = %provisioned.store_id, tills = tills.len(), "provisioned store {}", provisioned.store_id);

    let (phase, phase_seen) = watch::channel(Phase::Load);
    let progress = Progress::start(live.clone(), args.rate, phase_seen.clone());
    let settings = TillSettings {
        batch_size: args.batch_size as usize,
        sync_interval: args.sync_interval,
        backoff_cap: args.backoff_cap,
    };
    let till_tasks: Vec<_> = tills
        .iter()
        .map(|till| {
            let task = till.clone().run(
                api.clone(),
                settings.clone(),
                phase_seen.clone(),
                live.clone(),
            );
            tokio::spawn(task)
        })
        .collect();

    let generated =
        arrivals::drive(&tills, args.rate, args.arrivals, args.duration, seed, &live).await;
    let acknowledged_during_load = LiveCounters::get(&live.acknowledged);

    let drain_started = Instant::now();
    phase.send_replace(Phase::Drain {
        until: drain_started + args.drain_timeout,
    });
    let mut stats = TillStats::default();
    for task in till_tasks {
        stats.merge(task.await.context("a simulated till crashed")?);
    }
    let drain_elapsed = drain_started.elapsed();
    if let Some(progress) = progress {
        progress.finish().await;
    }
    let undelivered: u64 = tills.iter().map(|t| t.undelivered()).sum();

    let fleet: Arc<[ExpectedTill]> = tills.iter().map(|t| t.expected()).collect();
    let limits = VerifyLimits {
        backoff_cap: args.backoff_cap,
        timeout: args.verify_timeout,
    };
    let verification = verify::verify(&api, fleet.clone(), limits).await;

    let load_s = args.duration.as_secs_f64();
    Ok(Report {
        settings: Settings {
            url: report::shown_url(&args.url),
            store_id: provisioned.store_id,
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
            generated,
            generated_per_s: generated as f64 / load_s,
            acknowledged: LiveCounters::get(&live.acknowledged),
            acknowledged_during_load,
            achieved_per_s: acknowledged_during_load as f64 / load_s,
            undelivered,
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
            seconds: drain_elapsed.as_secs_f64(),
            completed: undelivered == 0 && drain_elapsed < args.drain_timeout,
        },
        verdict: Verdict::new(stats.rejected_total(), verification),
        target: VerifyTarget {
            url: args.url,
            request_timeout: args.request_timeout,
            limits,
            fleet,
        },
    })
}

/// Each till's own stream of sale contents, derived from the run's seed.
fn till_seed(seed: u64, number: usize) -> u64 {
    // The splitmix64 increment spreads neighbouring numbers far apart.
    seed ^ (number as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}
