//! What every scenario starts from: a fresh database, the service on it in
//! one mode (health layer on or off) behind a fault proxy passing traffic,
//! a merchant, and the fleet simulator's settings for a run.

use tillsync_loadtest::LoadtestArgs;
use tillsync_testkit::binary::{Binary, Served};
use tillsync_testkit::database::{drop_database, fresh_name, server_url};
use tillsync_testkit::proxy::FaultProxy;
use tillsync_testkit::{api, proxy_to_postgres, settings};

/// A fresh database for one scenario, the service on it in one mode
/// (health layer on or off) behind a fault proxy passing traffic, and a
/// merchant admin token. Every scenario starts from the same state, so
/// runs compare with each other whatever ran before them.
pub struct Setup {
    pub proxy: FaultProxy,
    pub service: Served,
    pub admin: String,
    database: String,
}

impl Setup {
    pub async fn start(scenario: &str, mode: &str) -> Self {
        let database = fresh_name(&format!("tillsync_bench_recovery_{scenario}_{mode}"));
        let proxy = proxy_to_postgres().await;
        let through_proxy = format!("postgres://postgres@{}/{database}", proxy.address());
        let binary = Binary::release();
        // The service creates its database and migrates it (through the proxy).
        // Warnings are the point of this run (pool timeouts, stalls): keep
        // the figures readable, unless BENCH_SERVICE_LOG asks for more (a
        // soak's background jobs warn when they fail).
        let level = std::env::var("BENCH_SERVICE_LOG").unwrap_or_else(|_| "error".into());
        let service = tokio::task::block_in_place(|| {
            binary.serve_quietly(
                &level,
                &[
                    ("DATABASE_URL", &through_proxy),
                    ("TILLSYNC_HEALTH_LAYER", mode),
                    // Simulated tills push far more often than real ones.
                    ("TILLSYNC_TERMINAL_RATE", "0"),
                ],
            )
        });
        let admin = binary
            .create_merchant(&format!("{}/{database}", server_url()), "Bench")
            .token;
        Self {
            proxy,
            service,
            admin,
            database,
        }
    }

    /// A direct URL to the scenario's database (not through the proxy),
    /// for figures the API does not give.
    pub fn database_url(&self) -> String {
        format!("{}/{}", server_url(), self.database)
    }

    /// Stops the service and drops its database.
    pub async fn finish(self) {
        let Self {
            proxy,
            service,
            database,
            ..
        } = self;
        drop(service);
        drop(proxy);
        drop_database(&database);
    }

    /// Provisions `n` tills in a new store; returns their tokens.
    pub async fn tills(&self, n: usize) -> Vec<String> {
        let client = reqwest::Client::new();
        let tills = api::create_tills(&client, &self.service.address, &self.admin, "UTC", n).await;
        tills.into_iter().map(|till| till.token).collect()
    }
}

/// One simulator run's fleet and load.
pub struct Fleet {
    pub terminals: u32,
    pub rate: f64,
    pub batch: u32,
    pub seconds: u64,
    pub drain_s: u64,
    pub seed: u64,
}

/// The simulator's settings for one run, as `tillsync loadtest` parses them.
pub fn simulator(url: &str, token: &str, fleet: Fleet) -> LoadtestArgs {
    let Fleet {
        terminals,
        rate,
        batch,
        seconds,
        drain_s,
        seed,
    } = fleet;
    let argv = [
        "loadtest".to_owned(),
        "--url".into(),
        url.into(),
        "--admin-token".into(),
        token.into(),
        "--terminals".into(),
        terminals.to_string(),
        "--rate".into(),
        format!("{rate:.0}"),
        "--batch-size".into(),
        batch.to_string(),
        "--duration".into(),
        format!("{seconds}s"),
        "--drain-timeout".into(),
        format!("{drain_s}s"),
        "--seed".into(),
        seed.to_string(),
        // The store's incidents (a till offline, one restored from a
        // backup, one retired) are the simulator's own test of the server;
        // here they would only blur what the run measures.
        "--offline-till".into(),
        "false".into(),
        "--restore-rewind".into(),
        "0".into(),
        "--retire-till".into(),
        "false".into(),
    ];
    settings::parse(argv)
}
