//! Building and running the service: database, state, router, listener,
//! background maintenance, graceful shutdown. Tests build the same
//! `Application` on port 0.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::ServeArgs;
use crate::db::{self, Database, idempotency};
use crate::fold::{self, Quarantine};
use crate::health::{Gate, Priority};
use crate::http::{self, AppState};
use crate::silence;

/// How often store deltas are folded into store totals: reports add the
/// deltas not folded yet, so this bounds how many they read, not accuracy.
const FOLD_INTERVAL: Duration = Duration::from_secs(1);

/// How often housekeeping runs (idempotency purge, rate-limit state).
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(600);

pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    state: AppState,
    args: ServeArgs,
}

impl Application {
    /// Migrates (unless `--no-migrate`), builds the state and binds the listener.
    pub async fn build(args: ServeArgs) -> anyhow::Result<Self> {
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
        let db = Database::connect_lazy(&database, args.health.db_release_ping_timeout);
        let gate = Gate::new(args.health.clone(), args.database.db_max_connections);
        let state = AppState::new(db.clone(), gate.clone(), &args);
        let router = http::router(state.clone());
        let listener = TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {} (TILLSYNC_LISTEN)", args.listen))?;
        Ok(Self {
            listener,
            router,
            state,
            args,
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
        let stopping = CancellationToken::new();
        let probe = self
            .state
            .gate
            .spawn_probe(&self.state.db, stopping.clone());
        let folding = tokio::spawn(fold_store_totals(self.state.clone(), stopping.clone()));
        let maintenance = tokio::spawn(maintain(
            self.state.clone(),
            self.args.idempotency_retention,
            stopping.clone(),
        ));
        let silence = tokio::spawn(silence::watch(self.state.clone(), stopping.clone()));
        let timeouts = tokio::spawn(db::pooler::watch_server_settings(
            self.state.db.clone(),
            self.state.gate.clone(),
            self.args.database.db_statement_timeout,
            stopping.clone(),
        ));
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
            signal,
        );
        let grace = self.args.shutdown_grace;
        tokio::select! {
            result = server => result.context("server failed")?,
            () = async { stopping.cancelled().await; tokio::time::sleep(grace).await } => {
                tracing::warn!(grace_ms = grace.as_millis() as u64, "in-flight requests outlived the shutdown grace period");
            }
        }
        maintenance.abort();
        folding.abort();
        silence.abort();
        timeouts.abort();
        if let Some(probe) = probe {
            probe.abort();
        }
        self.state.db.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Housekeeping: purges stored responses past retention and forgets idle
/// rate-limit state. The purge goes through the health layer at background
/// priority: a sick or busy database only delays it, and the limit does not
/// learn from it (see `Priority::Background`). It deletes in chunks, and
/// only on the replica that leads it (`db::leader`).
async fn maintain(state: AppState, retention: Duration, stopping: CancellationToken) {
    let mut every = tokio::time::interval(MAINTENANCE_INTERVAL);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = stopping.cancelled() => return,
        }
        state.rate_limit.forget_idle();
        let purge = async {
            let mut conn = state.db.acquire().await?;
            idempotency::purge_older_than(&mut conn, retention).await
        };
        match state
            .gate
            .run(Priority::Background, Instant::now(), purge)
            .await
        {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(
                purged = n,
                "purged {n} stored batch responses past retention"
            ),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not purge stored batch responses; will retry")
            }
            Err(refusal) => {
                tracing::debug!(?refusal, "purge of stored batch responses put off")
            }
        }
    }
}

/// Folds store deltas into store totals every second, through the health
/// layer at background priority (a sick database only delays the fold, and
/// the limit does not learn from it). A store whose deltas cannot be folded
/// is skipped for a while and the others are folded (`fold`). Every replica
/// ticks; one folds at a time (`db::leader`).
async fn fold_store_totals(state: AppState, stopping: CancellationToken) {
    let mut every = tokio::time::interval(FOLD_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut quarantine = Quarantine::default();
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = stopping.cancelled() => return,
        }
        let tick = async {
            let mut conn = state.db.acquire().await?;
            fold::tick(&mut conn, &mut quarantine, Instant::now()).await
        };
        match state
            .gate
            .run(Priority::Background, Instant::now(), tick)
            .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not fold store totals; will retry"),
            Err(refusal) => tracing::debug!(?refusal, "store totals fold put off"),
        }
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
