//! Following a failover by URL (issue 14, finding 2): `DATABASE_URL` in
//! libpq's multi-host form with `target_session_attrs=read-write`, as the HA
//! tools hand it out. A URL naming the standby first still leads to the
//! primary; when the primary dies and the standby is promoted, the same
//! instance takes writes again within seconds, answering only 503 (never
//! 500) meanwhile, and no acknowledged sale is lost (the standby is
//! synchronous). With an asynchronous standby, sales answered 200 can be
//! lost in the failover, and the till recovers them through `/v1/sync`.
//! With `read-write`, a standby alone is never used, for reads either. Clusters are this test's own (testkit `cluster.rs`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::json;
use sqlx::Connection;
use sqlx::postgres::PgConnection;
use tokio::task::block_in_place;
use uuid::Uuid;

use tillsync_testkit::api::{create_store, create_till};
use tillsync_testkit::cluster::{Cluster, Scratch};
use tillsync_testkit::sales::sale;
use tillsync_testkit::settings::serve_args;

use crate::standby::{push, readyz, serve, wait_for_readyz, wait_for_replay};

/// The form `pg_autoctl show uri` prints, listing `first` before `second`.
fn multi_host_url(first: &Cluster<'_>, second: &Cluster<'_>) -> String {
    format!(
        "postgresql://postgres@127.0.0.1:{},127.0.0.1:{}/tillsync?target_session_attrs=read-write",
        first.port, second.port
    )
}

/// The seqs of the till's sales stored on this server.
async fn stored_seqs(url: &str, terminal_id: Uuid) -> Vec<i64> {
    let mut conn = PgConnection::connect(url).await.unwrap();
    let seqs = sqlx::query_scalar("select seq from sales where terminal_id = $1 order by seq")
        .bind(terminal_id)
        .fetch_all(&mut conn)
        .await
        .unwrap();
    let _ = conn.close().await;
    seqs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_list_naming_the_standby_first_reaches_the_primary_and_follows_its_promotion() {
    let scratch = Scratch::new();
    let primary = block_in_place(|| scratch.primary("primary"));
    let standby = block_in_place(|| primary.standby("standby"));
    primary.make_synchronous().await;
    let url = multi_host_url(&standby, &primary);
    let client = Client::new();

    // `admin` and the start's create-and-migrate find the primary too.
    let created = tillsync::admin::create_merchant(&serve_args(&url, &[]).database, "Failover")
        .await
        .expect("merchant created through the host list");
    let admin = created["admin_token"].as_str().unwrap().to_owned();
    let (base, server) = serve(&url, &[]).await;
    wait_for_readyz(&client, &base, StatusCode::OK, Duration::from_secs(5)).await;
    let store = create_store(&client, &base, &admin, "Europe/Berlin", "EUR").await;
    let till = Arc::new(create_till(&client, &base, &admin, store, "Till").await);
    wait_for_replay(&standby.url("tillsync"), &till).await;

    // A till pushing one sale after another, every answer recorded.
    let answers: Arc<Mutex<Vec<(Instant, i64, StatusCode)>>> = Arc::default();
    let pushing = {
        let (client, base, till, answers) =
            (client.clone(), base.clone(), till.clone(), answers.clone());
        tokio::spawn(async move {
            for seq in 1.. {
                let status = push(&client, &base, &till, Uuid::new_v4(), seq)
                    .await
                    .status();
                answers.lock().unwrap().push((Instant::now(), seq, status));
                // Under the per-till rate limit (20/s), which a till
                // ignoring Retry-After would otherwise hit during the outage.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;

    block_in_place(|| primary.stop());
    // An HA tool takes a while to decide; meanwhile there is no primary.
    tokio::time::sleep(Duration::from_secs(2)).await;
    block_in_place(|| standby.promote());
    let promoted = Instant::now();
    let back = loop {
        let first_ok = answers
            .lock()
            .unwrap()
            .iter()
            .find(|(at, _, status)| *at > promoted && *status == StatusCode::OK)
            .map(|(at, _, _)| *at);
        if let Some(at) = first_ok {
            break at.duration_since(promoted);
        }
        assert!(
            promoted.elapsed() < Duration::from_secs(15),
            "no push succeeded within 15 s of the promotion"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    pushing.abort();
    eprintln!(
        "pushes succeed again {} ms after the promotion",
        back.as_millis()
    );
    assert!(back < Duration::from_secs(5), "back after {back:?}");

    let answers = answers.lock().unwrap().clone();
    let odd: Vec<_> = answers
        .iter()
        .filter(|(_, _, s)| *s != StatusCode::OK && *s != StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    assert!(odd.is_empty(), "answers other than 200 or 503: {odd:?}");
    assert!(
        answers
            .iter()
            .any(|(_, _, s)| *s == StatusCode::SERVICE_UNAVAILABLE),
        "the outage was never seen: the test did not test a failover"
    );
    // Every acknowledged sale is on the new primary: none lost.
    let stored = stored_seqs(&standby.url("tillsync"), till.terminal_id).await;
    let acknowledged: Vec<i64> = answers
        .iter()
        .filter(|(_, _, s)| *s == StatusCode::OK)
        .map(|(_, seq, _)| *seq)
        .collect();
    let lost: Vec<_> = acknowledged
        .iter()
        .filter(|s| !stored.contains(s))
        .collect();
    assert!(
        lost.is_empty(),
        "acknowledged but not on the new primary: {lost:?}"
    );
    assert_eq!(readyz(&client, &base).await.0, StatusCode::OK);
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_to_a_former_primary_still_up_are_retired_when_the_pool_moves() {
    let scratch = Scratch::new();
    let primary = block_in_place(|| scratch.primary("primary"));
    let standby = block_in_place(|| primary.standby("standby"));
    let url = multi_host_url(&primary, &standby);
    let client = Client::new();
    let created = tillsync::admin::create_merchant(&serve_args(&url, &[]).database, "Moves")
        .await
        .unwrap();
    let admin = created["admin_token"].as_str().unwrap().to_owned();
    // One till stands for a fleet here: let it push many at once.
    let (base, server) = serve(
        &url,
        &["--terminal-concurrency", "16", "--terminal-rate", "0"],
    )
    .await;
    let store = create_store(&client, &base, &admin, "Europe/Berlin", "EUR").await;
    let till = create_till(&client, &base, &admin, store, "Till").await;
    // Fill the pool with connections to the first primary.
    let pushes = (1..=8).map(|seq| push(&client, &base, &till, Uuid::new_v4(), seq));
    for response in futures::future::join_all(pushes).await {
        assert_eq!(response.status(), StatusCode::OK);
    }
    wait_for_replay(&standby.url("tillsync"), &till).await;

    // The old primary stays up but takes no more writes (as a demoted one
    // would), and the standby takes over.
    primary
        .reconfigure("alter system set default_transaction_read_only = on")
        .await;
    block_in_place(|| standby.promote());

    // Within seconds every push succeeds; a pooled connection still on the
    // old server would make some of them fail with 25006 (a 503) for as
    // long as it lived (30 min by default).
    let started = Instant::now();
    let mut seq = 100;
    let mut in_a_row = 0;
    while in_a_row < 40 {
        seq += 1;
        let answers = (0..4).map(|i| push(&client, &base, &till, Uuid::new_v4(), seq * 10 + i));
        for response in futures::future::join_all(answers).await {
            match response.status() {
                StatusCode::OK => in_a_row += 1,
                StatusCode::SERVICE_UNAVAILABLE => in_a_row = 0,
                other => panic!("answered {other}"),
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "pushes still failing 10 s after the promotion"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_alone_with_read_write_is_never_used_for_reads_either() {
    let scratch = Scratch::new();
    let primary = block_in_place(|| scratch.primary("primary"));
    let standby = block_in_place(|| primary.standby("standby"));
    let client = Client::new();
    let created =
        tillsync::admin::create_merchant(&serve_args(&primary.url("tillsync"), &[]).database, "RO")
            .await
            .unwrap();
    let admin = created["admin_token"].as_str().unwrap().to_owned();
    let (on_primary, primary_server) = serve(&primary.url("tillsync"), &[]).await;
    let store = create_store(&client, &on_primary, &admin, "Europe/Berlin", "EUR").await;
    let till = create_till(&client, &on_primary, &admin, store, "Till").await;
    primary_server.abort();
    wait_for_replay(&standby.url("tillsync"), &till).await;

    let url = format!(
        "{}?target_session_attrs=read-write",
        standby.url("tillsync")
    );
    // `serve` without --no-migrate refuses to start: no server may serve it.
    let refused = tillsync::app::Application::build(serve_args(&url, &[])).await;
    let error = format!("{:#}", refused.err().expect("start refused"));
    assert!(error.contains("standby"), "{error}");

    // Without the health layer nothing else stands between a request and
    // the pool: a read (which a standby could answer) must not be served
    // from it either.
    let (bare, bare_server) = serve(&url, &["--no-migrate", "--health-layer", "off"]).await;
    let response = client
        .get(format!("{bare}/v1/terminals?store_id={store}"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);

    let (gated, gated_server) = serve(&url, &["--no-migrate"]).await;
    wait_for_readyz(
        &client,
        &gated,
        StatusCode::SERVICE_UNAVAILABLE,
        Duration::from_secs(5),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        readyz(&client, &gated).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    bare_server.abort();
    gated_server.abort();
}

/// What `GET /v1/sync` says the server holds of the till's sales.
async fn contiguous_through(client: &Client, base: &str, till: &tillsync_testkit::Till) -> i64 {
    let response = client
        .get(format!("{base}/v1/sync"))
        .bearer_auth(&till.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = response.json().await.unwrap();
    body["contiguous_through_seq"].as_i64().unwrap()
}

/// What `GET /v1/sync` says once the service answers it again after a
/// failover (503 meanwhile, nothing else).
async fn sync_once_back(client: &Client, base: &str, till: &tillsync_testkit::Till) -> i64 {
    let started = Instant::now();
    loop {
        let response = client
            .get(format!("{base}/v1/sync"))
            .bearer_auth(&till.token)
            .send()
            .await
            .unwrap();
        match response.status() {
            StatusCode::OK => {
                let body: serde_json::Value = response.json().await.unwrap();
                return body["contiguous_through_seq"].as_i64().unwrap();
            }
            StatusCode::SERVICE_UNAVAILABLE => {}
            other => panic!("GET /v1/sync answered {other} during the failover"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "GET /v1/sync still refused 15 s after the promotion"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// With an asynchronous standby a failover can lose batches already
/// answered 200 (docs/deploy.md): the till finds out through `/v1/sync`
/// and sends them again under their own keys, and each is stored once.
/// This is what the fleet simulator does (`DRILL_REPLICATION=async
/// scripts/failover-drill` drills it under load).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_asynchronous_failover_a_till_finds_its_lost_sales_through_sync_and_resends_them()
{
    let scratch = Scratch::new();
    let primary = block_in_place(|| scratch.primary("primary"));
    let standby = block_in_place(|| primary.standby("standby"));
    let url = multi_host_url(&primary, &standby);
    let client = Client::new();
    let created = tillsync::admin::create_merchant(&serve_args(&url, &[]).database, "Async")
        .await
        .unwrap();
    let admin = created["admin_token"].as_str().unwrap().to_owned();
    let (base, server) = serve(&url, &[]).await;
    let store = create_store(&client, &base, &admin, "Europe/Berlin", "EUR").await;
    let till = create_till(&client, &base, &admin, store, "Till").await;
    // The till's journal: each sale's key and exact body, sent again as is.
    let journal: Vec<(Uuid, serde_json::Value)> = (1..=10)
        .map(|seq| (Uuid::new_v4(), json!({"sales": [sale(seq)]})))
        .collect();
    let send = |seq: i64| {
        let (key, body) = &journal[seq as usize - 1];
        client
            .post(format!("{base}/v1/sales/batches"))
            .bearer_auth(&till.token)
            .header("Idempotency-Key", key.to_string())
            .json(body)
            .send()
    };

    // Seqs 1-5 reach the standby; then its WAL stream is cut and seqs 6-10
    // are committed (and answered 200) on the primary alone.
    for seq in 1..=5 {
        let response = send(seq).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    wait_for_replay(&standby.url("tillsync"), &till).await;
    let replayed = async {
        let started = Instant::now();
        while stored_seqs(&standby.url("tillsync"), till.terminal_id)
            .await
            .len()
            < 5
        {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "seqs 1-5 not replayed"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    replayed.await;
    standby.cut_off_from_primary().await;
    for seq in 6..=10 {
        let response = send(seq).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "seq {seq}");
    }
    assert_eq!(contiguous_through(&client, &base, &till).await, 10);

    block_in_place(|| primary.stop());
    block_in_place(|| standby.promote());

    // The new primary never had seqs 6-10: acknowledged, and lost.
    assert_eq!(sync_once_back(&client, &base, &till).await, 5);
    // The till sends what it holds past that point again, under the same
    // keys; each is accepted once, and a second replay changes nothing.
    for round in ["resent", "replayed"] {
        for seq in 6..=10 {
            let response = send(seq).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{round} seq {seq}");
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(
                tillsync_testkit::statuses(&body),
                ["accepted"],
                "{round} seq {seq}: a replay gets the stored answer"
            );
        }
    }
    assert_eq!(contiguous_through(&client, &base, &till).await, 10);
    assert_eq!(
        stored_seqs(&standby.url("tillsync"), till.terminal_id).await,
        (1..=10).collect::<Vec<i64>>(),
        "every sale stored once"
    );
    server.abort();
}

#[test]
fn a_session_attribute_tillsync_cannot_serve_is_a_bad_setting() {
    let argv = [
        "serve",
        "--database-url",
        "postgresql://h1:5432,h2:5432/db?target_session_attrs=standby",
    ];
    let parsed = std::panic::catch_unwind(|| {
        tillsync_testkit::settings::parse::<tillsync::config::ServeArgs>(argv)
    });
    assert!(parsed.is_err(), "standby accepted");
}
