//! `tillsync loadtest`, the fleet simulator: provisions a store and its
//! tills through the public API, offers an open-model load of realistic
//! sales for a while, drains the tills' queues, and verifies through the API
//! that the server holds every sale exactly once with the generated totals.
//!
//! It is a client of the public API only, so it can run from another
//! machine, and it depends on nothing of the server: the `tillsync` binary
//! links it for its `loadtest` command, the recovery benchmark drives it
//! through [`run_observed`]. The run, top to bottom: `provision` -> one
//! `till` task per till and the `arrivals` scheduler feeding their queues
//! -> drain -> [`verify`] -> the [`report`], assembled from what they measured. Tests call [`run`] directly and
//! can verify again after changing the database ([`Report::verify_again`]).
#![forbid(unsafe_code)]

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
use report::{Load, Run};
use stats::TillStats;
use till::{Phase, Till, TillSettings};
use uuid::Uuid;
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
    let (store_id, tills) = provision_fleet(&api, &args, seed).await?;
    let load = load_and_drain(&api, &args, &tills, seed, &live).await?;
    let fleet: Arc<[ExpectedTill]> = tills.iter().map(|t| t.expected()).collect();
    let limits = VerifyLimits {
        backoff_cap: args.backoff_cap,
        timeout: args.verify_timeout,
    };
    let verification = verify::verify(&api, fleet.clone(), limits).await;
    let run = Run {
        store_id,
        seed,
        acknowledged: LiveCounters::get(&live.acknowledged),
        load,
        limits,
        fleet,
    };
    Ok(Report::assemble(args, run, verification))
}

/// Creates the run's store and its tills, each with its own seed.
async fn provision_fleet(
    api: &Api,
    args: &LoadtestArgs,
    seed: u64,
) -> anyhow::Result<(Uuid, Vec<Arc<Till>>)> {
    let provisioned = provision::provision(
        api,
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
    Ok((provisioned.store_id, tills))
}

/// The load phase (arrivals for `args.duration`) and then the drain, until
/// every till has stopped: what the tills did, merged.
async fn load_and_drain(
    api: &Api,
    args: &LoadtestArgs,
    tills: &[Arc<Till>],
    seed: u64,
    live: &Arc<LiveCounters>,
) -> anyhow::Result<Load> {
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
        arrivals::drive(tills, args.rate, args.arrivals, args.duration, seed, live).await;
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
    Ok(Load {
        generated,
        acknowledged_during_load,
        undelivered: tills.iter().map(|t| t.undelivered()).sum(),
        drain_elapsed,
        stats,
    })
}

/// Each till's own stream of sale contents, derived from the run's seed.
fn till_seed(seed: u64, number: usize) -> u64 {
    // The splitmix64 increment spreads neighbouring numbers far apart.
    seed ^ (number as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}
