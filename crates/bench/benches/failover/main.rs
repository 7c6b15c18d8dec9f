//! The failover drill (issue 14): a primary and a synchronous standby
//! (testkit clusters of the drill's own), three `tillsync serve` replicas
//! of the release binary with `DATABASE_URL` in libpq's multi-host form
//! (`target_session_attrs=read-write`, as `pg_autoctl show uri` prints it),
//! a round-robin TCP balancer in front of them (testkit `balancer.rs`), and
//! `tillsync loadtest` running through the balancer. Mid-load the primary
//! is killed (`pg_ctl stop -m immediate`) and, after the delay an HA tool
//! would take to decide, the standby is promoted.
//!
//! It prints, per replica, the time from the promotion until its pushes
//! succeed again and the answers it gave meanwhile (a watch till per
//! replica, `watch.rs`), the simulator's statuses, and its exactly-once
//! verdict. It exits non-zero when the target is missed: a replica back
//! more than 5 s after the promotion, any answer outside 200/429/503 (a 500
//! above all), or a verdict other than 0 lost, 0 duplicated.
//!
//! `DRILL_REPLICATION=async` drills the other case: an asynchronous
//! standby whose WAL stream is cut a few seconds before the kill (its
//! `primary_conninfo` emptied), so sales acknowledged in that window are
//! not on the promoted server. The tills find them missing through
//! `GET /v1/sync` and send them again; the verdict must still be 0 lost.
//!
//! Run: `scripts/failover-drill` (or, with the release binary built,
//! `cargo bench -p tillsync-bench --bench failover`). Settings:
//! DRILL_REPLICATION (sync), DRILL_REPLICAS (3), DRILL_LOAD_S (30),
//! DRILL_KILL_AT_S (10), DRILL_PROMOTE_AFTER_MS (2000), DRILL_RATE (100
//! sales/s), DRILL_TERMINALS (30), DRILL_CUT_BEFORE_KILL_S (3, async only).

mod watch;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::Client;
use serde_json::Value;
use sqlx::Connection;
use sqlx::postgres::PgConnection;
use tokio::task::block_in_place;

use tillsync_bench::setting;
use tillsync_testkit::api::{create_store, create_till};
use tillsync_testkit::balancer::RoundRobin;
use tillsync_testkit::binary::{Binary, Served};
use tillsync_testkit::cluster::{Cluster, Scratch};

use crate::watch::{Watch, counts};

/// The target: every replica takes writes again this soon after the promotion.
const TARGET: Duration = Duration::from_secs(5);

/// Answers a till may get during a failover: a success, or a refusal it
/// retries (503 while there is no primary, 429 if it pushed too fast).
const ACCEPTABLE: &[&str] = &["200", "429", "503"];

#[tokio::main]
async fn main() {
    let synchronous = std::env::var("DRILL_REPLICATION").as_deref() != Ok("async");
    let replicas: usize = setting("DRILL_REPLICAS", 3);
    let load_s: u64 = setting("DRILL_LOAD_S", 30);
    let kill_at = Duration::from_secs(setting("DRILL_KILL_AT_S", 10));
    let promote_after = Duration::from_millis(setting("DRILL_PROMOTE_AFTER_MS", 2000));
    let cut_before = Duration::from_secs(setting("DRILL_CUT_BEFORE_KILL_S", 3));
    let rate: u64 = setting("DRILL_RATE", 100);
    let terminals: u64 = setting("DRILL_TERMINALS", 30);
    let binary = Binary::release();

    let scratch = Scratch::new();
    let primary = block_in_place(|| scratch.primary("primary"));
    let standby = block_in_place(|| primary.standby("standby"));
    if synchronous {
        primary.make_synchronous().await;
    }
    let url = format!(
        "postgresql://postgres@127.0.0.1:{},127.0.0.1:{}/tillsync?target_session_attrs=read-write",
        primary.port, standby.port
    );
    println!(
        "failover drill: {} standby, {replicas} replicas, DATABASE_URL={url}",
        if synchronous {
            "synchronous"
        } else {
            "asynchronous"
        }
    );

    let merchant = block_in_place(|| binary.create_merchant(&url, "Failover drill"));
    // Pools of 8: testkit clusters allow 40 connections, and three replicas
    // also hold a probe each and ask both servers during a search.
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
    let loadtest = binary
        .command()
        .args([
            "loadtest",
            "--url",
            &front,
            "--admin-token",
            &merchant.token,
        ])
        .args(["--terminals", &terminals.to_string()])
        .args(["--rate", &rate.to_string(), "--batch-size", "20"])
        .args(["--duration", &format!("{load_s}s"), "--sync-interval", "2s"])
        // The failover is the incident here: none of the simulator's own.
        .args(["--offline-till", "false", "--restore-rewind", "0"])
        .args(["--retire-till", "false"])
        .arg("--json")
        .arg(&report)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("loadtest starts");
    let started = Instant::now();

    let mut behind = None;
    if !synchronous {
        tokio::time::sleep(kill_at.saturating_sub(cut_before)).await;
        // The standby stops receiving WAL: what the primary acknowledges
        // from now on is not on it.
        standby.cut_off_from_primary().await;
        tokio::time::sleep(cut_before).await;
        behind = Some(sales_behind(&primary, &standby).await);
    }
    tokio::time::sleep(kill_at.saturating_sub(started.elapsed())).await;
    block_in_place(|| primary.stop());
    let killed = Instant::now();
    println!("primary killed at {:.1} s", started.elapsed().as_secs_f64());
    tokio::time::sleep(promote_after).await;
    block_in_place(|| standby.promote());
    let promoted = Instant::now();
    println!(
        "standby promoted {} ms after the kill",
        promoted.duration_since(killed).as_millis()
    );

    let finished = tokio::task::spawn_blocking(move || loadtest.wait_with_output())
        .await
        .unwrap()
        .expect("loadtest ran");
    let outcomes: Vec<_> = watches
        .into_iter()
        .map(|w| w.finish(killed, promoted))
        .collect();
    print!("{}", String::from_utf8_lossy(&finished.stdout));

    let mut missed = Vec::new();
    println!("\nper replica (watch till, one push every 100 ms):");
    for outcome in &outcomes {
        let back = outcome
            .back_after
            .map_or("never".into(), |d| format!("{} ms", d.as_millis()));
        println!(
            "  {}: pushes succeed again {back} after the promotion; answers from the kill until then: {}; whole run: {}",
            outcome.replica,
            counts(&outcome.meanwhile),
            counts(&outcome.all)
        );
        if outcome.back_after.is_none_or(|d| d > TARGET) {
            missed.push(format!("{} back after {back}", outcome.replica));
        }
        for status in outcome.all.keys() {
            if !ACCEPTABLE.contains(&status.as_str()) {
                missed.push(format!("{} answered {status}", outcome.replica));
            }
        }
    }
    let report: Value = serde_json::from_slice(&std::fs::read(&report).expect("loadtest report"))
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
    if let Some(behind) = behind {
        println!(
            "asynchronous standby: {behind} sales committed on the primary were not on the standby when it was killed"
        );
    }
    if verdict["passed"] != true || verdict["lost"] != 0 || verdict["duplicated"] != 0 {
        missed.push("the exactly-once verdict failed".into());
    }
    if missed.is_empty() {
        println!(
            "drill PASSED: every replica back within {TARGET:?} of the promotion, 0 lost, 0 duplicated"
        );
    } else {
        println!("drill FAILED: {}", missed.join("; "));
        std::process::exit(1);
    }
}

/// Sales stored on the primary that the standby lacks.
async fn sales_behind(primary: &Cluster<'_>, standby: &Cluster<'_>) -> i64 {
    let mut count = 0;
    for (cluster, sign) in [(primary, 1), (standby, -1)] {
        let mut conn = PgConnection::connect(&cluster.url("tillsync"))
            .await
            .unwrap();
        let n: i64 = sqlx::query_scalar("select count(*) from sales")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        count += sign * n;
        let _ = conn.close().await;
    }
    count
}
