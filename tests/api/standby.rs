//! Pointed at a hot standby: never ready, and every write a `503
//! database_unavailable` with `Retry-After`, never a 500. Promoted, the
//! same instance becomes ready and takes writes on its own. The primary
//! and the standby are clusters of this test's own (never the shared
//! server), removed when it ends.

use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use sqlx::Connection;
use sqlx::postgres::PgConnection;
use tokio::task::{JoinHandle, block_in_place};
use uuid::Uuid;

use tillsync::app::Application;
use tillsync_testkit::api::{create_store, create_till};
use tillsync_testkit::cluster::Scratch;
use tillsync_testkit::sales::sale;
use tillsync_testkit::settings::serve_args;
use tillsync_testkit::{Till, assert_problem};

/// A server in this process; its address and task.
pub(crate) async fn serve(database_url: &str, extra: &[&str]) -> (String, JoinHandle<()>) {
    let app = Application::build(serve_args(database_url, extra))
        .await
        .expect("application builds");
    let address = format!("http://{}", app.local_addr());
    let task = tokio::spawn(async move {
        app.run_until(std::future::pending())
            .await
            .expect("server runs");
    });
    (address, task)
}

pub(crate) async fn readyz(client: &Client, base: &str) -> (StatusCode, Value) {
    let response = client.get(format!("{base}/readyz")).send().await.unwrap();
    (response.status(), response.json().await.unwrap())
}

/// Polls `/readyz` until it answers `wanted`; returns its last body.
pub(crate) async fn wait_for_readyz(
    client: &Client,
    base: &str,
    wanted: StatusCode,
    within: Duration,
) -> Value {
    let started = Instant::now();
    loop {
        let (status, body) = readyz(client, base).await;
        if status == wanted {
            return body;
        }
        assert!(
            started.elapsed() < within,
            "/readyz of {base} was still {status} {body} after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) async fn push(
    client: &Client,
    base: &str,
    till: &Till,
    key: Uuid,
    seq: i64,
) -> reqwest::Response {
    client
        .post(format!("{base}/v1/sales/batches"))
        .bearer_auth(&till.token)
        .header("Idempotency-Key", key.to_string())
        .json(&json!({"sales": [sale(seq)]}))
        .send()
        .await
        .expect("request sent")
}

/// Asserts a 503 `database_unavailable` with a `Retry-After`.
pub(crate) async fn assert_unavailable(response: reqwest::Response) {
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_problem(
        response,
        StatusCode::SERVICE_UNAVAILABLE,
        "database_unavailable",
    )
    .await;
    let seconds: u32 = retry_after.expect("a Retry-After").parse().unwrap();
    assert!(seconds >= 1, "Retry-After: {seconds}");
}

/// Waits until the standby has replayed the till's terminal row (and,
/// before that, the database itself).
pub(crate) async fn wait_for_replay(standby_url: &str, till: &Till) {
    let started = Instant::now();
    loop {
        let replayed = async {
            let mut conn = PgConnection::connect(standby_url).await?;
            let n: i64 =
                sqlx::query_scalar("select count(*) from terminals where terminal_id = $1")
                    .bind(till.terminal_id)
                    .fetch_one(&mut conn)
                    .await?;
            let _ = conn.close().await;
            Ok::<_, sqlx::Error>(n == 1)
        };
        match replayed.await {
            Ok(true) => return,
            Ok(false) | Err(_) if started.elapsed() < Duration::from_secs(30) => {}
            outcome => panic!("the standby never caught up: {outcome:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_is_never_ready_writes_get_503_and_promotion_brings_the_service_back() {
    let scratch = Scratch::new();
    let primary = block_in_place(|| scratch.primary("primary"));
    let standby = block_in_place(|| primary.standby("standby"));
    let client = Client::new();

    // A merchant, a store and a till, made on the primary.
    let created = tillsync::admin::create_merchant(
        &serve_args(&primary.url("tillsync"), &[]).database,
        "Standby Merchant",
    )
    .await
    .expect("merchant created on the primary");
    let admin = created["admin_token"].as_str().unwrap().to_owned();
    let (on_primary, primary_server) = serve(&primary.url("tillsync"), &[]).await;
    let store = create_store(&client, &on_primary, &admin, "Europe/Berlin", "EUR").await;
    let till = create_till(&client, &on_primary, &admin, store, "Till").await;
    primary_server.abort();
    wait_for_replay(&standby.url("tillsync"), &till).await;

    // One instance with the health layer, one without: the first must say
    // it is not ready, and both must answer writes 503, not 500.
    let (gated, gated_server) = serve(&standby.url("tillsync"), &["--no-migrate"]).await;
    let (bare, bare_server) = serve(
        &standby.url("tillsync"),
        &["--no-migrate", "--health-layer", "off"],
    )
    .await;
    // Without the health layer the write reaches the standby, which
    // refuses it (SQLSTATE 25006): that is the link, not a bug.
    let key = Uuid::new_v4();
    assert_unavailable(push(&client, &bare, &till, key, 1).await).await;
    let body = wait_for_readyz(
        &client,
        &gated,
        StatusCode::SERVICE_UNAVAILABLE,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(body["reason"], "database_unavailable", "{body}");
    assert_eq!(body["database"], "unavailable", "{body}");
    assert_unavailable(push(&client, &gated, &till, key, 1).await).await;
    // Still not ready a while later: a standby answers every probe quickly.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        readyz(&client, &gated).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );

    // Promoted: the same instances, with the connections they hold, take writes.
    block_in_place(|| standby.promote());
    let promoted = Instant::now();
    let body = wait_for_readyz(&client, &gated, StatusCode::OK, Duration::from_secs(10)).await;
    assert_eq!(body["database"], "ok", "{body}");
    for (seq, base) in [(1, &gated), (2, &bare)] {
        let key = Uuid::new_v4();
        loop {
            let response = push(&client, base, &till, key, seq).await;
            if response.status() == StatusCode::OK {
                break;
            }
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert!(
                promoted.elapsed() < Duration::from_secs(20),
                "{base} took no write within 20 s of the promotion"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    gated_server.abort();
    bare_server.abort();
}
