//! Building and running the service: database, state, router, listener,
//! background jobs, graceful shutdown. Tests build the same `Application`
//! on port 0.
//!
//! Everything an application runs records its metrics into the
//! application's own recorder ([`Metrics`]): building it (the committer
//! starts then) and running it happen in its scope.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::ServeArgs;
use crate::db::{self, Database};
use crate::health::Gate;
use crate::http::{self, AppState};
use crate::jobs;
use crate::jobs::fold::Fold;
use crate::jobs::open_exceptions::OpenExceptions;
use crate::jobs::purge::Purge;
use crate::jobs::resolve::Resolve;
use crate::jobs::server_settings::ServerSettings;
use crate::jobs::silent_tills::SilentTills;
use crate::metrics::Metrics;

/// How often idle per-terminal rate-limit state is forgotten.
const FORGET_IDLE_INTERVAL: Duration = Duration::from_secs(600);

/// How often the metrics exporter folds recorded histogram samples into its
/// buckets, scraped or not.
const METRICS_UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    state: AppState,
    args: ServeArgs,
    metrics: Metrics,
}

impl Application {
    /// Migrates (unless `--no-migrate`), builds the state and binds the listener.
    pub async fn build(args: ServeArgs) -> anyhow::Result<Self> {
        let metrics = Metrics::new();
        metrics.clone().scope(Self::build_in(args, metrics)).await
    }

    async fn build_in(args: ServeArgs, metrics: Metrics) -> anyhow::Result<Self> {
        // Created and migrated on the primary, where the pool then starts.
        let mut database = args.database.clone();
        if !args.no_migrate {
            database.database_url = db::primary::locate(&database.database_url)
                .await
                .context("could not find the primary (DATABASE_URL)")?;
            db::pooler::migrate(&database).await.context(
                "could not create or migrate the database \
                 (DATABASE_URL, or TILLSYNC_MIGRATE_DATABASE_URL behind a pooler)",
            )?;
        }
        http::export_known_series();
        let db = Database::connect_lazy(&database, args.health.db_release_ping_timeout);
        let gate = Gate::new(args.health.clone(), args.database.db_max_connections);
        let state = AppState::new(db.clone(), gate.clone(), metrics.handle(), &args);
        let router = http::router(state.clone());
        let listener = TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {} (TILLSYNC_LISTEN)", args.listen))?;
        Ok(Self {
            listener,
            router,
            state,
            args,
            metrics,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` completes, then stops accepting, lets in-flight
    /// requests finish (up to the grace period) and closes the pool.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let metrics = self.metrics.clone();
        metrics.scope(self.run(shutdown)).await
    }

    async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let stopping = CancellationToken::new();
        let background = self.spawn_background(&stopping);
        tracing::info!(address = %self.local_addr(), "tillsync listening on http://{}", self.local_addr());

        let signal = {
            let stopping = stopping.clone();
            async move {
                shutdown.await;
                tracing::info!("shutting down: finishing in-flight requests");
                stopping.cancel();
            }
        };
        let server = http::server::serve(
            self.listener,
            self.router,
            self.args.client.header_timeout,
            http::server::connection_cap(self.args.client.max_connections),
            signal,
        );
        let grace = self.args.shutdown_grace;
        tokio::select! {
            result = server => result.context("server failed")?,
            () = async { stopping.cancelled().await; tokio::time::sleep(grace).await } => {
                tracing::warn!(grace_ms = grace.as_millis() as u64, "in-flight requests outlived the shutdown grace period");
            }
        }
        for task in background {
            task.abort();
        }
        self.state.db.close().await;
        tracing::info!("stopped");
        Ok(())
    }

    /// The health probe, the background jobs and the rate limits' upkeep.
    fn spawn_background(&self, stopping: &CancellationToken) -> Vec<tokio::task::JoinHandle<()>> {
        let (db, gate) = (&self.state.db, &self.state.gate);
        let mut tasks = vec![
            jobs::spawn(Fold::default(), db.clone(), gate.clone(), stopping.clone()),
            jobs::spawn(
                Purge {
                    retention: self.args.idempotency_retention,
                },
                db.clone(),
                gate.clone(),
                stopping.clone(),
            ),
            jobs::spawn(
                Resolve::default(),
                db.clone(),
                gate.clone(),
                stopping.clone(),
            ),
            jobs::spawn(SilentTills, db.clone(), gate.clone(), stopping.clone()),
            jobs::spawn(OpenExceptions, db.clone(), gate.clone(), stopping.clone()),
            jobs::spawn(
                ServerSettings::new(self.args.database.db_statement_timeout),
                db.clone(),
                gate.clone(),
                stopping.clone(),
            ),
        ];
        let rate_limit = self.state.rate_limit.clone();
        tasks.push(jobs::spawn_housekeeping(
            FORGET_IDLE_INTERVAL,
            stopping.clone(),
            move || rate_limit.forget_idle(),
        ));
        // The exporter keeps every histogram sample until it is folded in:
        // without this a server nobody scrapes grows by every request it
        // serves (metrics-rs issue 467).
        let metrics = self.metrics.clone();
        tasks.push(jobs::spawn_housekeeping(
            METRICS_UPKEEP_INTERVAL,
            stopping.clone(),
            move || metrics.upkeep(),
        ));
        tasks.extend(gate.spawn_probe(db, stopping.clone()));
        tasks
    }
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        () = terminate => {}
    }
}
