//! Slow and abusive clients cost only their own socket: bodies are read
//! before anything shared is taken, headers and idle connections have a
//! timeout, a till has few requests in flight, and the counters alerts read
//! exist from start-up. The attacks use raw TCP, as an attacker would.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use uuid::Uuid;

use tillsync_testkit::proxy::Fault;
use tillsync_testkit::sales::sale;
use tillsync_testkit::{TestApp, spawn_app_behind_proxy, spawn_app_with};

async fn connect(app: &TestApp) -> TcpStream {
    let address = app.address.trim_start_matches("http://");
    TcpStream::connect(address).await.expect("server accepts")
}

/// A push announcing a body of `length` bytes that sends only its first few.
async fn crawl(app: &TestApp, token: &str, length: usize) -> TcpStream {
    let mut stream = connect(app).await;
    stream
        .write_all(push_head(token, length).as_bytes())
        .await
        .unwrap();
    stream.write_all(b"{\"sales\": [").await.unwrap();
    stream
}

/// The head of a push whose body of `length` bytes is yet to come.
fn push_head(token: &str, length: usize) -> String {
    format!(
        "POST /v1/sales/batches HTTP/1.1\r\nHost: tillsync\r\nAuthorization: Bearer {token}\r\n\
         Idempotency-Key: {}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n",
        Uuid::new_v4()
    )
}

/// Sends `opening`, then one byte of `trickle` every `every`, until the
/// server closes the connection or `trickle` runs out.
fn trickle(mut stream: TcpStream, opening: String, trickle: &'static [u8], every: Duration) {
    tokio::spawn(async move {
        if stream.write_all(opening.as_bytes()).await.is_err() {
            return;
        }
        for byte in trickle.iter().cycle() {
            tokio::time::sleep(every).await;
            if stream.write_all(&[*byte]).await.is_err() {
                return;
            }
        }
    });
}

/// Reads until the server closes the connection; how long that took, or
/// `None` if it did not within `within`.
async fn closed_within(
    stream: &mut (impl AsyncReadExt + Unpin),
    within: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    let mut buffer = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
}

#[tokio::test]
async fn an_honest_tills_push_stays_fast_while_600_connections_trickle_bodies_and_headers() {
    let app = spawn_app_with(&["--terminal-rate", "0"]).await;
    let honest = app.create_till().await;
    let attacker = app.create_till().await;
    app.push_ok(&honest, &[sale(1)]).await;
    // The attacker's token is valid and recently looked up.
    app.push_ok(&attacker, &[sale(1)]).await;

    for _ in 0..100 {
        let stream = connect(&app).await;
        trickle(
            stream,
            push_head(&attacker.token, 100_000),
            b"{",
            Duration::from_millis(500),
        );
    }
    for _ in 0..500 {
        let stream = connect(&app).await;
        let opening = "POST /v1/sales/batches HTTP/1.1\r\nHost: tillsync\r\n".to_owned();
        trickle(
            stream,
            opening,
            b"X-Slow: 1\r\n",
            Duration::from_millis(500),
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut took = Vec::new();
    for seq in 2..12 {
        let started = Instant::now();
        let response = app.push(&honest, Uuid::new_v4(), &[sale(seq)]).await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "{:?}",
            response.text().await
        );
        took.push(started.elapsed());
    }
    took.sort();
    println!(
        "honest push under attack (100 slow bodies, 500 slow headers): p50 {:?}, max {:?}",
        took[took.len() / 2],
        took[took.len() - 1]
    );
    assert!(took[took.len() - 1] < Duration::from_secs(1), "{took:?}");
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_answered_408_with_a_problem_and_a_request_id() {
    let app = spawn_app_with(&["--body-timeout", "1s"]).await;
    let till = app.create_till().await;
    let mut stream = connect(&app).await;
    stream
        .write_all(push_head(&till.token, 1000).as_bytes())
        .await
        .unwrap();
    stream.write_all(b"{\"sales\": [").await.unwrap();
    let mut answer = String::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut answer));
    assert!(read.await.is_ok(), "no answer within 5 s");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let lowercase = answer.to_ascii_lowercase();
    assert!(
        lowercase.contains("content-type: application/problem+json"),
        "{answer}"
    );
    assert!(lowercase.contains("x-request-id: "), "{answer}");
    assert!(answer.contains("\"code\":\"request_timeout\""), "{answer}");
}

#[tokio::test]
async fn a_connection_that_never_finishes_its_headers_is_closed() {
    let app = spawn_app_with(&["--header-timeout", "1s"]).await;
    // One connection keeps sending its head a byte at a time, never ending
    // it; another sends nothing at all.
    let (mut trickling, mut writer) = connect(&app).await.into_split();
    writer
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: tillsync\r\n")
        .await
        .unwrap();
    tokio::spawn(async move {
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if writer.write_all(b"X").await.is_err() {
                return;
            }
        }
    });
    let mut silent = connect(&app).await;
    let (trickled, silent) = tokio::join!(
        closed_within(&mut trickling, Duration::from_secs(5)),
        closed_within(&mut silent, Duration::from_secs(5)),
    );
    for (what, closed) in [("trickling", trickled), ("silent", silent)] {
        let closed = closed.unwrap_or_else(|| panic!("the {what} connection is still open"));
        assert!(
            closed < Duration::from_secs(3),
            "{what}: closed after {closed:?}"
        );
    }
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let app = spawn_app_with(&["--header-timeout", "1s"]).await;
    let mut stream = connect(&app).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: tillsync\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = [0u8; 1024];
    let read = stream.read(&mut buffer).await.unwrap();
    assert!(String::from_utf8_lossy(&buffer[..read]).starts_with("HTTP/1.1 200"));
    let closed = closed_within(&mut stream, Duration::from_secs(5)).await;
    let closed = closed.expect("an idle connection is closed");
    assert!(closed < Duration::from_secs(3), "closed after {closed:?}");
}

#[tokio::test]
async fn a_till_with_too_many_requests_in_flight_is_told_to_wait() {
    let (app, proxy) =
        spawn_app_behind_proxy(&["--terminal-rate", "0", "--terminal-concurrency", "1"]).await;
    let till = app.create_till().await;
    app.push_ok(&till, &[sale(1)]).await;
    // Each push now takes a while on the database link.
    proxy.set(Fault::Latency(Duration::from_millis(100)));
    let (first_sales, second_sales) = ([sale(2)], [sale(3)]);
    let (first, second) = tokio::join!(app.push(&till, Uuid::new_v4(), &first_sales), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        app.push(&till, Uuid::new_v4(), &second_sales).await
    });
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(second.headers()["retry-after"], "1");
    let problem: Value = second.json().await.unwrap();
    assert_eq!(problem["code"], "rate_limited");
    // Answered, the slot is free again.
    proxy.set(Fault::Pass);
    app.push_ok(&till, &[sale(3)]).await;
}

#[tokio::test]
async fn counters_that_alerts_read_are_exported_at_zero_from_start_up() {
    let app = spawn_app_with(&[]).await;
    let page = app.get("/metrics", "").await.text().await.unwrap();
    for series in [
        r#"tillsync_requests_shed_total{reason="expired_in_queue",priority="admin"}"#,
        r#"tillsync_requests_shed_total{reason="database_unavailable",priority="background"}"#,
        r#"tillsync_requests_shed_total{reason="terminal_concurrency",priority="ingest"}"#,
        r#"tillsync_db_state_changes_total{to="unavailable"}"#,
        r#"tillsync_sales_total{result="rejected"}"#,
        "tillsync_db_probe_failures_total",
    ] {
        assert!(
            page.lines().any(|line| line.starts_with(series)),
            "{series} is not on the page"
        );
    }
}

/// Reads the server's answer up to the end of its head; `None` if none
/// came within `within`.
async fn answer_head(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    tokio::time::timeout(within, async {
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await
    .ok()?;
    Some(String::from_utf8_lossy(&answer).into_owned())
}

#[tokio::test]
async fn a_request_without_a_valid_token_is_answered_401_before_its_body_is_read() {
    let app = spawn_app_with(&[]).await;
    let till = app.create_till().await;
    let forged = till
        .token
        .replace(&till.token[till.token.len() - 8..], "00000000");
    for (what, authorization) in [
        ("no token", String::new()),
        (
            "not a token of ours",
            "Authorization: Bearer hello\r\n".to_owned(),
        ),
        (
            "a well-formed token nobody holds",
            format!("Authorization: Bearer {forged}\r\n"),
        ),
    ] {
        let mut stream = connect(&app).await;
        // A megabyte announced, and none of it sent.
        let head = format!(
            "POST /v1/sales/batches HTTP/1.1\r\nHost: tillsync\r\n{authorization}\
             Idempotency-Key: {}\r\nContent-Type: application/json\r\n\
             Content-Length: 1000000\r\n\r\n",
            Uuid::new_v4()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let answer = answer_head(&mut stream, Duration::from_secs(5)).await;
        let answer = answer.unwrap_or_else(|| panic!("{what}: no answer before the body"));
        assert!(answer.starts_with("HTTP/1.1 401"), "{what}: {answer}");
    }
}

#[tokio::test]
async fn bodies_beyond_the_memory_budget_wait_briefly_then_are_answered_503_overloaded() {
    const MIB: usize = 1024 * 1024;
    let app = spawn_app_with(&[
        "--body-budget-mib",
        "2",
        "--terminal-rate",
        "0",
        "--terminal-concurrency",
        "64",
    ])
    .await;
    let (slow, honest) = (app.create_till().await, app.create_till().await);
    app.push_ok(&honest, &[sale(1)]).await;
    let mut held = Vec::new();

    // Large bodies may take three quarters of the budget between them: a
    // second one waits, then hears 503, while a small push still goes in.
    held.push(crawl(&app, &slow.token, 900 * 1024).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut second = crawl(&app, &slow.token, 900 * 1024).await;
    let answer = answer_head(&mut second, Duration::from_secs(5)).await;
    let answer = answer.expect("an answer to the large body that did not fit");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after"),
        "{answer}"
    );
    app.push_ok(&honest, &[sale(2)]).await;

    // Small bodies crawling in fill the rest of it: now an honest push
    // waits briefly and is told the server is overloaded.
    for _ in 0..28 {
        held.push(crawl(&app, &slow.token, 41 * 1024).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let page = tillsync_testkit::metrics::scrape(&app.client, &app.address).await;
    let used = tillsync_testkit::metrics::sample(&page, "tillsync_body_budget_used_bytes", &[]);
    assert_eq!(used, Some(2.0 * MIB as f64), "{page}");
    let refused = app.push(&honest, Uuid::new_v4(), &[sale(3)]).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.headers().contains_key("retry-after"));
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["code"], "overloaded");

    // The crawling bodies' room comes back once they are gone.
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.push_ok(&honest, &[sale(3)]).await;
}

#[tokio::test]
async fn connections_beyond_the_cap_are_answered_503_at_once_and_closed() {
    let app = spawn_app_with(&["--max-connections", "20", "--header-timeout", "60s"]).await;
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(connect(&app).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut beyond = connect(&app).await;
    beyond
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: tillsync\r\n\r\n")
        .await
        .unwrap();
    let answer = answer_head(&mut beyond, Duration::from_secs(5)).await;
    let answer = answer.expect("a connection beyond the cap is answered");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    let closed = closed_within(&mut beyond, Duration::from_secs(5)).await;
    assert!(closed.is_some(), "the refused connection is closed");

    // Room again once some go.
    idle.truncate(10);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = connect(&app).await;
    again
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: tillsync\r\n\r\n")
        .await
        .unwrap();
    let answer = answer_head(&mut again, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let page = tillsync_testkit::metrics::scrape(&app.client, &app.address).await;
    let refused =
        tillsync_testkit::metrics::sample(&page, "tillsync_connections_refused_total", &[]);
    assert!(refused >= Some(1.0), "{page}");
}
