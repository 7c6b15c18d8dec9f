//! A server per test, in the test's own process: a fresh database, the
//! service on port 0 of loopback, a merchant to act as, and the calls tests
//! make of it. The database is dropped when the test ends.

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tillsync::app::Application;
use tillsync::config::ServeArgs;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::api;
use crate::database::{drop_database, fresh_name, server_url};
use crate::proxy::FaultProxy;
use crate::settings::serve_args;

pub struct Merchant {
    pub merchant_id: Uuid,
    pub token: String,
}

pub struct Till {
    pub terminal_id: Uuid,
    pub store_id: Uuid,
    pub token: String,
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    /// A direct pool to the test database, for assertions the API cannot make.
    pub db: PgPool,
    pub database_url: String,
    pub merchant: Merchant,
    database_name: String,
    servers: Vec<JoinHandle<()>>,
}

async fn start(args: ServeArgs) -> (String, JoinHandle<()>) {
    let app = Application::build(args).await.expect("application builds");
    let address = format!("http://{}", app.local_addr());
    let handle = tokio::spawn(async move {
        app.run_until(std::future::pending())
            .await
            .expect("server runs");
    });
    (address, handle)
}

/// A server on a fresh database, with one merchant created through the CLI path.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

pub async fn spawn_app_with(extra: &[&str]) -> TestApp {
    spawn(extra, None).await
}

/// A server for load from the fleet simulator: a handful of simulated tills
/// push many times a second each (a real till pushes far less often), so
/// the per-till rate limit is off; it has its own test in the API tests.
pub async fn spawn_app_for_load() -> TestApp {
    spawn_app_with(&["--terminal-rate", "0"]).await
}

/// A server whose link to Postgres runs through a fault proxy the test
/// controls. The test's own pool (`app.db`) connects directly.
pub async fn spawn_app_behind_proxy(extra: &[&str]) -> (TestApp, FaultProxy) {
    let proxy = proxy_to_postgres().await;
    let app = spawn(extra, Some(proxy.address())).await;
    (app, proxy)
}

/// A fault proxy in front of the test Postgres server.
pub async fn proxy_to_postgres() -> FaultProxy {
    let server: PgConnectOptions = server_url().parse().expect("server URL parses");
    let upstream = tokio::net::lookup_host((server.get_host(), server.get_port()))
        .await
        .expect("Postgres host resolves")
        .next()
        .expect("Postgres host has an address");
    FaultProxy::start(upstream).await
}

async fn spawn(extra: &[&str], proxy: Option<std::net::SocketAddr>) -> TestApp {
    let database_name = fresh_name("tillsync_test");
    let database_url = format!("{}/{database_name}", server_url());
    let service_url = match proxy {
        Some(proxy) => format!("postgres://postgres@{proxy}/{database_name}"),
        None => database_url.clone(),
    };
    let args = serve_args(&service_url, extra);
    let (address, server) = start(args).await;
    let created =
        tillsync::admin::create_merchant(&serve_args(&database_url, &[]).database, "Test Merchant")
            .await
            .expect("merchant created");
    let db = PgPoolOptions::new()
        .max_connections(4)
        .connect(&database_url)
        .await
        .expect("test pool connects");
    TestApp {
        address,
        client: reqwest::Client::new(),
        db,
        database_url,
        merchant: merchant_from(&created),
        database_name,
        servers: vec![server],
    }
}

fn merchant_from(created: &Value) -> Merchant {
    Merchant {
        merchant_id: created["merchant_id"].as_str().unwrap().parse().unwrap(),
        token: created["admin_token"].as_str().unwrap().to_owned(),
    }
}

impl TestApp {
    /// Another instance of the service on the same database.
    pub async fn spawn_second_instance(&mut self) -> String {
        let (address, server) = start(serve_args(&self.database_url, &["--no-migrate"])).await;
        self.servers.push(server);
        address
    }

    /// A second tenant on the same database.
    pub async fn create_merchant(&self, name: &str) -> Merchant {
        let args = serve_args(&self.database_url, &[]);
        merchant_from(
            &tillsync::admin::create_merchant(&args.database, name)
                .await
                .unwrap(),
        )
    }

    pub async fn post_json(&self, path: &str, token: &str, body: &Value) -> Response {
        let url = format!("{}{path}", self.address);
        api::post_json(&self.client, &url, token, body).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Response {
        self.client
            .get(format!("{}{path}", self.address))
            .bearer_auth(token)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn create_store_as(
        &self,
        merchant: &Merchant,
        timezone: &str,
        currency: &str,
    ) -> Uuid {
        api::create_store(
            &self.client,
            &self.address,
            &merchant.token,
            timezone,
            currency,
        )
        .await
    }

    pub async fn create_till_in(&self, merchant: &Merchant, store_id: Uuid) -> Till {
        api::create_till(
            &self.client,
            &self.address,
            &merchant.token,
            store_id,
            "Till",
        )
        .await
    }

    /// A till in a new Europe/Berlin EUR store of the test merchant.
    pub async fn create_till(&self) -> Till {
        let store = self
            .create_store_as(&self.merchant, "Europe/Berlin", "EUR")
            .await;
        self.create_till_in(&self.merchant, store).await
    }

    pub async fn push_raw(
        &self,
        till: &Till,
        key: &str,
        body: impl Into<reqwest::Body>,
    ) -> Response {
        self.client
            .post(format!("{}/v1/sales/batches", self.address))
            .bearer_auth(&till.token)
            .header("Idempotency-Key", key)
            .body(body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn push(&self, till: &Till, key: Uuid, sales: &[Value]) -> Response {
        let body = serde_json::to_vec(&json!({"sales": sales})).unwrap();
        self.push_raw(till, &key.to_string(), body).await
    }

    /// Pushes under a new key, expects 200, returns the body.
    pub async fn push_ok(&self, till: &Till, sales: &[Value]) -> Value {
        let response = self.push(till, Uuid::new_v4(), sales).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    /// How many sale rows the database holds for a till.
    pub async fn stored_count(&self, till: &Till) -> i64 {
        sqlx::query_scalar("select count(*) from sales where terminal_id = $1")
            .bind(till.terminal_id)
            .fetch_one(&self.db)
            .await
            .unwrap()
    }

    /// Every exception `GET /v1/exceptions?{query}` lists for the merchant
    /// of `token`, all pages.
    pub async fn exceptions(&self, token: &str, query: &str) -> Vec<Value> {
        let mut listed = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/v1/exceptions?limit=50&{query}");
            if let Some(cursor) = &cursor {
                path.push_str(&format!("&cursor={cursor}"));
            }
            let response = self.get(&path, token).await;
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            let page: Value = response.json().await.unwrap();
            listed.extend(page["exceptions"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return listed,
            }
        }
    }

    /// Waits until the fold has moved every delta into the totals tables
    /// (within about a second of a push), for a test that reads or plants
    /// rows of those tables. Panics after 15 s (a store whose totals cannot
    /// take its deltas keeps them: such a test waits for something else).
    pub async fn folded(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            let pending: i64 = sqlx::query_scalar("select count(*) from store_day_deltas")
                .fetch_one(&self.db)
                .await
                .unwrap();
            if pending == 0 {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{pending} deltas still not folded after 15 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Waits until the resolver has seen every stored void and refund whose
    /// sale is here (it applies voids to the totals and lists exceptions
    /// within about a second of a push), and the exceptions it lists for
    /// those still waiting. Panics after 15 s.
    pub async fn settled(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            let waiting: i64 = sqlx::query_scalar(
                "select count(*) from pending_refs q
                  where exists (select 1 from sales t
                                 where t.merchant_id = q.merchant_id
                                   and t.sale_id = q.target_sale_id)
                     or not exists (select 1 from exceptions e
                                     where e.merchant_id = q.merchant_id
                                       and e.kind = 'unmatched_reference'
                                       and e.subject = q.sale_id::text)",
            )
            .fetch_one(&self.db)
            .await
            .unwrap();
            if waiting == 0 {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{waiting} voids and refunds still unresolved after 15 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

/// The `status` of each result, in order.
pub fn statuses(body: &Value) -> Vec<String> {
    body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| match r["code"].as_str() {
            Some(code) => format!("{}:{code}", r["status"].as_str().unwrap()),
            None => r["status"].as_str().unwrap().to_owned(),
        })
        .collect()
}

/// Asserts a problem document with this status and code; returns it.
pub async fn assert_problem(response: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], code, "problem: {body}");
    assert_eq!(body["status"], status.as_u16());
    body
}

impl Drop for TestApp {
    fn drop(&mut self) {
        for server in &self.servers {
            server.abort();
        }
        // The servers may still hold connections: they are forced off.
        drop_database(&self.database_name);
    }
}
