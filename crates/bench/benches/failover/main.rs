//! The failover drill (issues 14 and 25): a Postgres primary and a
//! synchronous standby, three `tillsync serve` replicas of the release
//! binary with `DATABASE_URL` in libpq's multi-host form
//! (`target_session_attrs=read-write`, as `pg_autoctl show uri` prints it),
//! a round-robin TCP balancer in front of them (testkit `balancer.rs`), and
//! `tillsync loadtest` running through the balancer. Mid-load the primary
//! dies and the standby is promoted, by one of:
//!
//! - `DRILL_HA=pg_auto_failover` (the default; `autofailover.rs`,
//!   `timeline.rs`): a pg_auto_failover monitor and two data nodes of the
//!   drill's own. The primary's node is killed outright (pg_autoctl and
//!   Postgres, SIGKILL) and pg_auto_failover promotes the standby by
//!   itself, with the monitor's and keepers' timeouts set for a fast
//!   failover (`DRILL_PAF_TIMEOUTS=defaults` keeps pg_auto_failover's own).
//! - `DRILL_HA=pg_ctl` (`pgctl.rs`): the drill plays the HA tool: the
//!   primary stopped with `pg_ctl stop -m immediate`, the standby promoted
//!   with `pg_ctl promote` after the delay an HA tool would take. Seconds
//!   faster; the only one for `DRILL_REPLICATION=async`, which cuts an
//!   asynchronous standby's WAL stream a few seconds before the kill, so
//!   sales acknowledged in that window are not on the promoted server and
//!   the tills must find them missing through `GET /v1/sync` and resend
//!   them.
//!
//! It prints, per replica, the time from the promotion (the standby taking
//! writes) until its pushes succeed again and the answers it gave
//! meanwhile (a watch till per replica, `watch.rs`), the simulator's
//! statuses and its exactly-once verdict, then one `summary:` line of
//! `key=value` figures (`judge.rs`). It exits non-zero when the target is missed: a
//! replica back more than 5 s after the promotion, any answer outside
//! 200/429/503 (a 500 above all), or a verdict other than 0 lost, 0
//! duplicated.
//!
//! Run: `scripts/failover-drill` (or, with the release binary built,
//! `cargo bench -p tillsync-bench --bench failover`). Settings: DRILL_HA
//! (pg_auto_failover), DRILL_REPLICATION (sync; async implies pg_ctl),
//! DRILL_REPLICAS (3), DRILL_LOAD_S (30 with pg_ctl, 45 with
//! pg_auto_failover, 90 with its default timeouts), DRILL_KILL_AT_S (10),
//! DRILL_RATE (100 sales/s), DRILL_TERMINALS (30); pg_ctl only:
//! DRILL_PROMOTE_AFTER_MS (2000), DRILL_CUT_BEFORE_KILL_S (3, async only);
//! pg_auto_failover only: DRILL_PAF_TIMEOUTS (fast), DRILL_PG_AUTOCTL
//! (/usr/bin/pg_autoctl).

mod autofailover;
mod judge;
mod pgctl;
mod processes;
mod timeline;
mod watch;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::Client;
use tokio::task::block_in_place;

use tillsync_bench::setting;
use tillsync_testkit::api::{create_store, create_till};
use tillsync_testkit::balancer::RoundRobin;
use tillsync_testkit::binary::{Binary, Served};
use tillsync_testkit::cluster::Scratch;

use crate::autofailover::{FAST_KEEPER_SETTINGS, FAST_MONITOR_SETTINGS, Formation};
use crate::pgctl::Pair;
use crate::watch::Watch;

/// What the failover did, for the report.
pub struct Failover {
    /// When the primary died.
    pub killed: Instant,
    /// When the standby took writes: the replicas are measured from here.
    pub promoted: Instant,
    /// What to print about it.
    pub lines: Vec<String>,
    /// Figures for the summary line.
    pub summary: Vec<(&'static str, String)>,
}

/// The servers under the replicas, and who promotes the standby.
enum Databases<'s> {
    PgCtl(Pair<'s>),
    AutoFailover(Formation<'s>),
}

#[tokio::main]
async fn main() {
    let scratch = Scratch::new();
    // Interrupted, the drill still drops what it started (the clusters
    // above all, which would otherwise keep running).
    let passed = tokio::select! {
        passed = drill(&scratch) => passed,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("interrupted: stopping what the drill started");
            false
        }
    };
    drop(scratch);
    if !passed {
        std::process::exit(1);
    }
}

/// The drill's settings, from the environment (see the module's head).
struct Settings {
    ha: String,
    synchronous: bool,
    /// pg_auto_failover with the fast timeouts, not its defaults.
    fast: bool,
    replicas: usize,
    load: Duration,
    kill_at: Duration,
    promote_after: Duration,
    cut_before: Duration,
    rate: u64,
    terminals: u64,
}

impl Settings {
    fn from_env() -> Self {
        let synchronous = std::env::var("DRILL_REPLICATION").as_deref() != Ok("async");
        let ha = std::env::var("DRILL_HA").unwrap_or_else(|_| {
            if synchronous {
                "pg_auto_failover"
            } else {
                "pg_ctl"
            }
            .into()
        });
        let fast = std::env::var("DRILL_PAF_TIMEOUTS").as_deref() != Ok("defaults");
        // Long enough for at least 15 s of load after the standby takes writes.
        let load_s = match (ha.as_str(), fast) {
            ("pg_ctl", _) => 30,
            (_, true) => 45,
            (_, false) => 90,
        };
        Self {
            synchronous,
            fast,
            replicas: setting("DRILL_REPLICAS", 3),
            load: Duration::from_secs(setting("DRILL_LOAD_S", load_s)),
            kill_at: Duration::from_secs(setting("DRILL_KILL_AT_S", 10)),
            promote_after: Duration::from_millis(setting("DRILL_PROMOTE_AFTER_MS", 2000)),
            cut_before: Duration::from_secs(setting("DRILL_CUT_BEFORE_KILL_S", 3)),
            rate: setting("DRILL_RATE", 100),
            terminals: setting("DRILL_TERMINALS", 30),
            ha,
        }
    }
}

/// The whole drill; whether every target was met.
async fn drill(scratch: &Scratch) -> bool {
    let settings = Settings::from_env();
    let Settings {
        synchronous,
        fast,
        replicas,
        ..
    } = settings;
    let binary = Binary::release();

    // Declared here, as what the pg_ctl variant's standby borrows.
    let primary;
    let (mut databases, url) = match settings.ha.as_str() {
        "pg_ctl" => {
            primary = pgctl::primary(scratch);
            let pair = Pair::start(&primary, synchronous).await;
            let url = pair.url();
            (Databases::PgCtl(pair), url)
        }
        "pg_auto_failover" => {
            assert!(synchronous, "DRILL_REPLICATION=async needs DRILL_HA=pg_ctl");
            let (monitor, keeper) = if fast {
                (FAST_MONITOR_SETTINGS, FAST_KEEPER_SETTINGS)
            } else {
                (&[][..], &[][..])
            };
            let formation = block_in_place(|| Formation::start(scratch, monitor, keeper));
            // `pg_autoctl show uri` names no user: tillsync's goes in.
            let url = formation.uri().replacen("://", "://postgres@", 1);
            println!(
                "pg_auto_failover: monitor on port {}, {} changed settings: {monitor:?}, keepers: {keeper:?}",
                formation.monitor.port,
                if fast { "fast failover" } else { "no" },
            );
            (Databases::AutoFailover(formation), url)
        }
        other => panic!("DRILL_HA: pg_auto_failover or pg_ctl, not {other:?}"),
    };
    println!(
        "failover drill ({}): {} standby, {replicas} replicas, DATABASE_URL={url}",
        settings.ha,
        if synchronous {
            "synchronous"
        } else {
            "asynchronous"
        }
    );

    let merchant = block_in_place(|| binary.create_merchant(&url, "Failover drill"));
    // Pools of 8: testkit clusters allow 40 connections, and three replicas
    // also hold a probe each and ask both servers during a search. The
    // same under pg_auto_failover (Postgres's 100), so both variants
    // drill one deployment.
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("TILLSYNC_DB_MAX_CONNECTIONS", "8"),
    ];
    let servers: Vec<Served> = (0..replicas)
        .map(|_| block_in_place(|| binary.serve_quietly("warn", &env)))
        .collect();
    let upstreams: Vec<SocketAddr> = servers
        .iter()
        .map(|s| s.address.trim_start_matches("http://").parse().unwrap())
        .collect();
    let balancer = RoundRobin::start(upstreams).await;
    let front = format!("http://{}", balancer.address());

    let client = Client::new();
    let store = create_store(&client, &front, &merchant.token, "Europe/Berlin", "EUR").await;
    let mut watches = Vec::new();
    for (i, server) in servers.iter().enumerate() {
        let name = format!("Watch {i}");
        let till = create_till(&client, &server.address, &merchant.token, store, &name).await;
        watches.push(Watch::start(client.clone(), server.address.clone(), till));
    }

    let report = scratch.path().join("loadtest.json");
    let mut loadtest = binary.command();
    loadtest
        .args([
            "loadtest",
            "--url",
            &front,
            "--admin-token",
            &merchant.token,
        ])
        .args(["--terminals", &settings.terminals.to_string()])
        .args(["--rate", &settings.rate.to_string(), "--batch-size", "20"])
        .args(["--duration", &format!("{}s", settings.load.as_secs())])
        .args(["--sync-interval", "2s"])
        // The failover is the incident here: none of the simulator's own.
        .args(["--offline-till", "false", "--restore-rewind", "0"])
        .args(["--retire-till", "false"])
        .arg("--json")
        .arg(&report)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped());
    let loadtest = tokio::process::Command::from(loadtest)
        .kill_on_drop(true)
        .spawn()
        .expect("loadtest starts");
    let started = Instant::now();

    let failover = match &mut databases {
        Databases::PgCtl(pair) => {
            pair.fail_over(
                started,
                settings.kill_at,
                settings.promote_after,
                settings.cut_before,
            )
            .await
        }
        Databases::AutoFailover(formation) => {
            timeline::fail_over(formation, started, settings.kill_at).await
        }
    };

    let finished = loadtest.wait_with_output().await.expect("loadtest ran");
    let outcomes: Vec<_> = watches
        .into_iter()
        .map(|w| w.finish(failover.killed, failover.promoted))
        .collect();
    print!("{}", String::from_utf8_lossy(&finished.stdout));
    for line in &failover.lines {
        println!("{line}");
    }

    judge::judge(&settings.ha, &failover, &outcomes, &report)
}
