//! `tillsync loadtest`, the fleet simulator: provisions a store and its
//! tills through the public API, offers an open-model load of sales as a
//! real store rings them up (voids and refunds on any till, a till that
//! loses its link, one restored from a backup, one retired with a queue
//! left), drains the tills' queues, and verifies through the API that the
//! server holds every acknowledged sale exactly once, with the totals, sync
//! state and exceptions the tills' journals call for.
//!
//! It is a client of the public API only, so it can run from another
//! machine, and it depends on nothing of the server: the `tillsync` binary
//! links it for its `loadtest` command, the recovery benchmark drives it
//! through [`run_observed`]. The run, top to bottom: `provision` -> one
//! `till` task per till, and the `arrivals` scheduler ringing up what the
//! store floor (`plan`) decides -> drain -> [`verify`] -> the [`report`],
//! assembled from what they measured. Tests call [`run`] directly and can
//! verify again after changing the database ([`Report::verify_again`]).
#![forbid(unsafe_code)]

mod args;
mod arrivals;
mod backoff;
mod client;
mod generator;
mod journal;
mod plan;
mod progress;
mod provision;
pub mod report;
mod stats;
mod till;
pub mod verify;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep};

pub use args::{AdminToken, Arrivals, LoadtestArgs};
pub use report::Report;
pub use stats::LiveCounters;
pub use verify::Verification;

use arrivals::Offered;
use backoff::retrying;
use client::Api;
use plan::Planner;
use progress::Progress;
use report::{Load, Run};
use stats::TillStats;
use till::{Phase, Till, TillSettings};
use uuid::Uuid;
use verify::{Fleet, VerifyLimits};

/// Between a retiring till's last sale and its retirement: its sales all
/// occurred before the server's `retired_at` even if the two clocks differ
/// a little.
const RETIRE_GRACE: Duration = Duration::from_millis(500);

/// The command: run, print the summary, write the JSON report if asked, and
/// fail (non-zero exit) when the verdict is not a pass. Sales still queued
/// on tills when the drain gave up do not fail it (see [`Verification`]).
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

/// One whole run. Errors only when the run could not take place (a bad
/// combination of settings, the API refused to provision); everything that
/// goes wrong during the load is counted in the report instead.
pub async fn run(args: LoadtestArgs) -> anyhow::Result<Report> {
    run_observed(args, Arc::new(LiveCounters::default())).await
}

/// `run`, with the live counters (generated, acknowledged, queued, ...)
/// shared with the caller, which may sample them while the load runs (the
/// recovery benchmark does).
pub async fn run_observed(args: LoadtestArgs, live: Arc<LiveCounters>) -> anyhow::Result<Report> {
    args.check()?;
    let seed = args.seed.unwrap_or_else(rand::random);
    let api = Api::new(&args.url, args.request_timeout, args.terminals as usize)?;
    let (store_id, tills) = provision_fleet(&api, &args).await?;
    let load = load_and_drain(&api, &args, &tills, seed, &live).await?;
    let fleet = Arc::new(Fleet {
        store_id,
        admin: args.admin_token.clone(),
        tills: tills.iter().map(|t| t.expected()).collect(),
    });
    // The journals are not needed past here; a long run's are gigabytes.
    drop(tills);
    let limits = VerifyLimits {
        backoff_cap: args.backoff_cap,
        settle: args.settle_timeout,
        timeout: args.verify_timeout,
        concurrency: usize::from(args.verify_concurrency),
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

/// Creates the run's store and its tills.
async fn provision_fleet(api: &Api, args: &LoadtestArgs) -> anyhow::Result<(Uuid, Vec<Arc<Till>>)> {
    let shop = args.shop();
    let provisioned = provision::provision(
        api,
        args.admin_token.expose(),
        args.terminals,
        &shop.day,
        args.backoff_cap,
    )
    .await?;
    let tills: Vec<Arc<Till>> = provisioned
        .tills
        .into_iter()
        .enumerate()
        .map(|(number, t)| {
            let till = Till::new(number, t.terminal_id, t.token, args.voids_ahead, shop);
            Arc::new(till)
        })
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

    let mut planner = Planner::new(seed, tills.len(), args.behaviour(), args.duration);
    let offered = Offered {
        rate: args.rate,
        arrivals: args.arrivals,
        duration: args.duration,
        seed,
    };
    let mut retiring: Vec<JoinHandle<()>> = Vec::new();
    // An admin retiring a till during an outage keeps trying: as long as
    // the till may still push (up to the end of the drain).
    let give_up_at = Instant::now() + args.duration + args.drain_timeout;
    let mut retire = |till: Arc<Till>| {
        let admin = args.admin_token.clone();
        let retirement = retire_till(api.clone(), admin, args.backoff_cap, give_up_at, till);
        retiring.push(tokio::spawn(retirement));
    };
    let generated = arrivals::drive(tills, &mut planner, offered, live, &mut retire).await;
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
    for task in retiring {
        task.await.context("retiring a till crashed")?;
    }
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

/// Retires `till` through the API, a moment after its last sale, and
/// brings its link back so it pushes what it holds. Transient failures are
/// retried until `give_up_at`; a retirement the API refuses, or that never
/// gets through, is recorded and fails the verdict.
async fn retire_till(
    api: Api,
    admin: AdminToken,
    backoff_cap: Duration,
    give_up_at: Instant,
    till: Arc<Till>,
) {
    sleep(RETIRE_GRACE).await;
    let retired = loop {
        let answer = retrying(backoff_cap, || api.retire(admin.expose(), till.terminal_id)).await;
        match answer {
            Err(failure) if failure.is_transient() && Instant::now() < give_up_at => {
                sleep(backoff_cap).await;
            }
            answer => break answer,
        }
    };
    let retired_at = match retired {
        Ok(retired) => {
            tracing::info!(terminal.id = %till.terminal_id, retired_at = %retired.retired_at, "retired till {} holding {} unsent sales", till.terminal_id, till.undelivered());
            Ok(retired.retired_at)
        }
        Err(failure) => {
            tracing::warn!(terminal.id = %till.terminal_id, "retiring till {} failed: {failure}", till.terminal_id);
            Err(failure.to_string())
        }
    };
    till.record_retirement(retired_at);
    till.set_link(true);
}
