//! The group committer's writers keep their connection from one group to
//! the next (src/ingest/write.rs, `db::unit::Kept`). A kept connection the
//! server has ended must cost no more than a pooled one would: the push
//! written on it is refused as retryable and nothing of it is stored, its
//! retry is stored once, and the writer takes a new connection, so every
//! push after that goes through at the first attempt.

use std::time::Duration;

use reqwest::StatusCode;
use tillsync_testkit::app::{TestApp, Till, spawn_app_with, statuses};
use tillsync_testkit::sales::sale_of;
use uuid::Uuid;

use crate::races::day_totals;

/// Ends every other session on the test database: the service's kept and
/// pooled connections alike (and this test's own idle ones, which its pool
/// replaces).
async fn end_every_connection(app: &TestApp) {
    sqlx::query(
        "select pg_terminate_backend(pid) from pg_stat_activity
          where datname = current_database() and pid <> pg_backend_pid()",
    )
    .execute(&app.db)
    .await
    .unwrap();
}

/// Pushes one sale under one key until it is stored, and returns the
/// answers that were not 200 on the way (each must say to retry).
async fn push_until_stored(app: &TestApp, till: &Till, seq: i64) -> usize {
    let key = Uuid::new_v4();
    let sales = [sale_of(seq, 100 * seq)];
    for refused in 0..50 {
        let response = app.push(till, key, &sales).await;
        match response.status() {
            StatusCode::OK => {
                let body = response.json().await.unwrap();
                assert_eq!(statuses(&body), ["accepted"], "seq {seq}");
                return refused;
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                assert!(
                    response.headers().contains_key("retry-after"),
                    "a 503 says when to retry"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!("seq {seq}: {other} {}", response.text().await.unwrap()),
        }
    }
    panic!("seq {seq} was not stored after 50 attempts");
}

#[tokio::test]
async fn a_kept_connection_the_server_ended_costs_one_retry_at_most() {
    let app = spawn_app_with(&["--terminal-rate", "0"]).await;
    let till = app.create_till().await;
    // Both writers write a group and keep its connection.
    for seq in 1..=4 {
        assert_eq!(push_until_stored(&app, &till, seq).await, 0, "seq {seq}");
    }
    end_every_connection(&app).await;
    push_until_stored(&app, &till, 5).await;
    // Each writer has dropped its ended connection by now, or drops it at
    // its next group; after that every push is stored at the first try.
    // A writer that kept a dead connection would fail every group it takes.
    push_until_stored(&app, &till, 6).await;
    for seq in 7..=16 {
        assert_eq!(push_until_stored(&app, &till, seq).await, 0, "seq {seq}");
    }
    assert_eq!(app.stored_count(&till).await, 16);
    assert_eq!(
        day_totals(&app, till.terminal_id).await,
        (16, 100 * 16 * 17 / 2)
    );
}
