//! TLS to Postgres as libpq does it (issue 25, part 4). A server whose
//! certificate is self-signed X.509 version 1, as some tools make them:
//! `psql` connected with the default `sslmode` (prefer), tillsync did not
//! (`invalid peer certificate: UnsupportedCertVersion`). Each case here is
//! run both ways, by `psql` (libpq, the reference) and through the path the
//! service connects by (create and migrate the database, then a pooled
//! connection; in some tests the whole service), and the two must agree:
//! whether they connect, and whether the session is encrypted
//! (`pg_stat_ssl` for the connection's own backend).
//!
//! Clusters are the tests' own (testkit `cluster.rs`), with certificates
//! made here by `openssl` ([`certs`]).

mod certs;

use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::json;
use tokio::task::block_in_place;

use tillsync::config::database_url::DatabaseUrl;
use tillsync::db::Database;
use tillsync_testkit::api::post_json;
use tillsync_testkit::cluster::{Cluster, Scratch, psql};
use tillsync_testkit::settings::serve_args;

use crate::standby::{serve, wait_for_readyz};
use certs::Pair;

/// Whether the session of the connection running it is encrypted.
const SESSION_SSL: &str = "select ssl from pg_stat_ssl where pid = pg_backend_pid()";

/// What a way of connecting came to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// Connected, encrypted.
    Tls,
    /// Connected, in plain text.
    Plain,
    /// Not connected; the error (empty in an expectation).
    Refused(String),
}

use Outcome::{Plain, Tls};

fn refused() -> Outcome {
    Outcome::Refused(String::new())
}

impl Outcome {
    fn connected(encrypted: bool) -> Self {
        if encrypted { Tls } else { Plain }
    }

    /// The same outcome, not counting what an error says.
    fn kind(&self) -> &'static str {
        match self {
            Tls => "connected with TLS",
            Plain => "connected in plain text",
            Self::Refused(_) => "refused",
        }
    }
}

/// A started cluster in `scratch` serving TLS with `pair`.
async fn cluster_serving<'a>(scratch: &'a Scratch, name: &str, pair: &Pair) -> Cluster<'a> {
    let cluster = block_in_place(|| scratch.primary(name));
    cluster.serve_tls(&pair.crt, &pair.key).await;
    cluster
}

/// `postgresql://postgres@HOST:PORT/tillsync` with `query` appended.
fn url(host: &str, cluster: &Cluster<'_>, query: &str) -> String {
    let url = format!("postgresql://postgres@{host}:{}/tillsync", cluster.port);
    if query.is_empty() {
        url
    } else {
        format!("{url}?{query}")
    }
}

/// `sslrootcert=PATH` for a URL's query.
fn root(pair: &Pair) -> String {
    format!("sslrootcert={}", pair.crt.display())
}

/// How libpq connects with `url`.
fn by_libpq(url: &str) -> Outcome {
    // libpq's own database is `postgres`: `tillsync` may not exist yet.
    let url = url.replacen("/tillsync", "/postgres", 1);
    match psql(&url, SESSION_SSL) {
        Ok(ssl) => Outcome::connected(ssl == "t"),
        Err(e) => Outcome::Refused(e),
    }
}

/// How tillsync connects with `url`: `DATABASE_URL` read as the service
/// reads it, the database created and migrated as `tillsync migrate` does
/// it (connections of their own), then a connection from the service's
/// pool, asked whether it is encrypted. `extra`: more settings.
async fn by_tillsync(url: &str, extra: &[&str]) -> Outcome {
    let args = serve_args(url, extra).database;
    let connected = async {
        tillsync::db::pooler::migrate(&args).await?;
        let db = Database::connect_lazy(&args, Duration::from_secs(1));
        let mut conn = db.acquire().await?;
        let ssl: bool = sqlx::query_scalar(SESSION_SSL)
            .fetch_one(&mut *conn)
            .await?;
        drop(conn);
        db.close().await;
        Ok::<_, anyhow::Error>(ssl)
    };
    match tokio::time::timeout(Duration::from_secs(30), connected).await {
        Ok(Ok(ssl)) => Outcome::connected(ssl),
        Ok(Err(e)) => Outcome::Refused(format!("{e:#}")),
        Err(_) => Outcome::Refused("no connection within 30 s".into()),
    }
}

/// Connects both ways with each `(url, expected)`; every outcome must be
/// the expected one. All cases run before any is judged, so a failure
/// shows the whole table.
async fn assert_like_libpq(cases: &[(String, Outcome)]) {
    let mut report = Vec::new();
    let mut wrong = false;
    for (url, expected) in cases {
        let libpq = block_in_place(|| by_libpq(url));
        let tillsync = by_tillsync(url, &[]).await;
        let ok = libpq.kind() == expected.kind() && tillsync.kind() == expected.kind();
        wrong |= !ok;
        report.push(format!(
            "{} {url}\n    expected {}\n    libpq:    {libpq:?}\n    tillsync: {tillsync:?}",
            if ok { "ok   " } else { "WRONG" },
            expected.kind(),
        ));
    }
    assert!(!wrong, "\n{}", report.join("\n"));
}

/// The error of the one case, for tests that look at what it says.
async fn refusal(url: &str) -> String {
    match by_tillsync(url, &[]).await {
        Outcome::Refused(e) => e,
        other => panic!("{url}: expected a refusal, got {other:?}"),
    }
}

/// The whole service on `url`: `admin create-merchant`, then `serve`,
/// ready, and a request that writes through the pool.
///
/// Timeouts longer than the defaults: the service's first connections all
/// set up TLS at once, each with some CPU (docs/configuration.md, TLS to
/// Postgres), on a machine that starts other tests' clusters meanwhile.
/// Whether it connects is what is tested here, not how fast.
async fn serve_and_write(url: &str) {
    let settings = ["--db-acquire-timeout", "5s", "--db-probe-timeout", "3s"];
    let created = tillsync::admin::create_merchant(&serve_args(url, &settings).database, "TLS")
        .await
        .expect("admin create-merchant connects");
    let admin = created["admin_token"].as_str().unwrap().to_owned();
    let client = Client::new();
    let (base, server) = serve(url, &settings).await;
    wait_for_readyz(&client, &base, StatusCode::OK, Duration::from_secs(20)).await;
    let store = json!({"name": "Store", "timezone": "Europe/Berlin", "currency": "EUR"});
    let response = post_json(&client, &format!("{base}/v1/stores"), &admin, &store).await;
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefer_and_require_connect_to_a_server_whose_certificate_is_x509_version_1() {
    let scratch = Scratch::new();
    let v1 = certs::self_signed_version_1(scratch.path(), "v1");
    let cluster = cluster_serving(&scratch, "v1", &v1).await;
    let at = |query: &str| url("localhost", &cluster, query);
    assert_like_libpq(&[
        // No sslmode: libpq's default, prefer.
        (at(""), Tls),
        (at("sslmode=prefer"), Tls),
        (at("sslmode=require"), Tls),
        (at("sslmode=allow"), Plain),
        (at("sslmode=disable"), Plain),
        // The address instead of the name: neither mode checks it.
        (url("127.0.0.1", &cluster, "sslmode=require"), Tls),
    ])
    .await;

    // Behind a pooler, `migrate` also writes role settings on a connection
    // of its own: the same TLS.
    let direct = at("sslmode=require");
    let pooled = ["--db-pooler", "transaction", "--migrate-database-url"];
    let pooled = [&pooled[..], &[direct.as_str()]].concat();
    assert_eq!(by_tillsync(&direct, &pooled).await, Tls);

    // The whole service with the default sslmode.
    serve_and_write(&at("")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefer_goes_on_in_plain_text_where_the_server_has_no_tls_and_require_refuses() {
    let scratch = Scratch::new();
    // initdb's configuration: `ssl = off`. The server answers the TLS
    // request with "no".
    let cluster = block_in_place(|| scratch.primary("plain"));
    let at = |query: &str| url("localhost", &cluster, query);
    assert_like_libpq(&[
        (at(""), Plain),
        (at("sslmode=prefer"), Plain),
        (at("sslmode=require"), refused()),
        (at("sslmode=verify-full"), refused()),
    ])
    .await;
    let said = refusal(&at("sslmode=require")).await;
    assert!(said.contains("server does not support TLS"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefer_goes_on_in_plain_text_where_no_tls_handshake_succeeds() {
    let scratch = Scratch::new();
    let v1 = certs::self_signed_version_1(scratch.path(), "old");
    let cluster = block_in_place(|| scratch.primary("old"));
    // TLS 1.0 and 1.1 only, which neither libpq nor tillsync (OpenSSL 3
    // at its default security level) will speak: the server says yes to
    // TLS, then no handshake can succeed.
    cluster
        .reconfigure("alter system set ssl_min_protocol_version = 'TLSv1'")
        .await;
    cluster
        .reconfigure("alter system set ssl_max_protocol_version = 'TLSv1.1'")
        .await;
    cluster.serve_tls(&v1.crt, &v1.key).await;
    let at = |query: &str| url("localhost", &cluster, query);
    assert_like_libpq(&[
        (at(""), Plain),
        (at("sslmode=prefer"), Plain),
        (at("sslmode=require"), refused()),
        (at(&format!("sslmode=verify-full&{}", root(&v1))), refused()),
    ])
    .await;

    // The whole service: the pool, the probe and the start's own
    // connections all go on in plain text.
    serve_and_write(&at("")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verifying_modes_refuse_a_self_signed_certificate_they_were_not_given() {
    let scratch = Scratch::new();
    let v1 = certs::self_signed_version_1(scratch.path(), "v1");
    let cluster = cluster_serving(&scratch, "v1", &v1).await;
    // Another self-signed certificate, which did not sign the server's.
    let other = certs::self_signed_version_1(scratch.path(), "other");
    let (right, wrong) = (root(&v1), root(&other));
    let at = |query: &str| url("localhost", &cluster, query);
    assert_like_libpq(&[
        // No root certificate file: libpq refuses to try; tillsync checks
        // against the system's CAs, which did not sign this one.
        (at("sslmode=verify-ca"), refused()),
        (at("sslmode=verify-full"), refused()),
        (at(&format!("sslmode=verify-ca&{wrong}")), refused()),
        (at(&format!("sslmode=verify-full&{wrong}")), refused()),
        // libpq: with a root certificate file, require checks the chain
        // as verify-ca does.
        (at(&format!("sslmode=require&{wrong}")), refused()),
        // The root file holds the certificate itself: a version 1
        // self-signed certificate is its own trust anchor.
        (at(&format!("sslmode=verify-ca&{right}")), Tls),
        (at(&format!("sslmode=verify-full&{right}")), Tls),
        (at(&format!("sslmode=require&{right}")), Tls),
        // verify-full checks the name: the certificate is for localhost.
        (
            url(
                "127.0.0.1",
                &cluster,
                &format!("sslmode=verify-full&{right}"),
            ),
            refused(),
        ),
    ])
    .await;

    // The refusal says why.
    let said = refusal(&at(&format!("sslmode=verify-ca&{wrong}"))).await;
    assert!(said.contains("certificate verify failed"), "{said}");
    let at_address = url(
        "127.0.0.1",
        &cluster,
        &format!("sslmode=verify-full&{right}"),
    );
    let said = refusal(&at_address).await;
    assert!(said.contains("certificate verify failed"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_accepts_a_version_3_certificate_signed_by_the_ca_in_sslrootcert() {
    let scratch = Scratch::new();
    let ca = certs::certificate_authority(scratch.path(), "ca");
    let server = certs::signed_version_3(scratch.path(), "server", &ca);
    let cluster = cluster_serving(&scratch, "v3", &server).await;
    let stranger = certs::self_signed_version_1(scratch.path(), "stranger");
    let (right, wrong) = (root(&ca), root(&stranger));
    let at = |query: &str| url("localhost", &cluster, query);
    assert_like_libpq(&[
        (at(&format!("sslmode=verify-full&{right}")), Tls),
        // The address is in the certificate's subjectAltName.
        (
            url(
                "127.0.0.1",
                &cluster,
                &format!("sslmode=verify-full&{right}"),
            ),
            Tls,
        ),
        (at(&format!("sslmode=verify-ca&{right}")), Tls),
        (at(&format!("sslmode=require&{right}")), Tls),
        (at(""), Tls),
        (at(&format!("sslmode=verify-full&{wrong}")), refused()),
        (at("sslmode=verify-full"), refused()),
    ])
    .await;

    // A root file of several certificates: libpq trusts them all, OpenSSL
    // through sqlx only the first; refused at start rather than failing
    // each connection for a reason it does not say.
    let bundle = scratch.path().join("bundle.crt");
    let pem = [&stranger.crt, &ca.crt].map(|p| std::fs::read_to_string(p).unwrap());
    std::fs::write(&bundle, pem.concat()).unwrap();
    let with_bundle = at(&format!(
        "sslmode=verify-full&sslrootcert={}",
        bundle.display()
    ));
    assert_eq!(block_in_place(|| by_libpq(&with_bundle)), Tls);
    let e = DatabaseUrl::parse(&with_bundle).unwrap_err();
    assert!(e.contains("holds 2 certificates"), "{e}");
}
