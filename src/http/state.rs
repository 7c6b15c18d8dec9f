//! What every handler and layer of the request path shares: the database,
//! the health layer's gate, the token cache, the per-terminal limits, the
//! ingest pipeline, the last good copies of reports, and the application's
//! metrics page.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;

use super::middleware::auth::Authenticator;
use super::middleware::body::{BodyBudget, BodyTimeout};
use super::middleware::rate_limit::{TerminalConcurrency, TerminalRateLimit};
use super::routes::reports::StaleCopies;
use crate::config::ServeArgs;
use crate::db::Database;
use crate::health::Gate;
use crate::ingest::{IngestOptions, Pipeline};

/// What every handler and middleware shares. Each of them takes it by
/// value (axum's `State`), about ten times a request: behind one `Arc` a
/// clone is one atomic increment, not one per field (measured: the clones
/// and drops of the fields were 5 % of the service's CPU at 64 tills).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub struct Shared {
    pub db: Database,
    pub gate: Gate,
    pub auth: Authenticator,
    pub rate_limit: TerminalRateLimit,
    pub terminal_concurrency: TerminalConcurrency,
    /// The application's own recorder, rendered by `/metrics`.
    pub metrics: PrometheusHandle,
    /// Where pushes are read, planned and written in shared commits.
    pub ingest: Pipeline,
    pub stale_totals: StaleCopies,
    pub body_timeout: BodyTimeout,
    /// The memory the request bodies in flight may take together.
    pub body_budget: BodyBudget,
}

impl AppState {
    pub fn new(db: Database, gate: Gate, metrics: PrometheusHandle, args: &ServeArgs) -> Self {
        Self(Arc::new(Shared {
            auth: Authenticator::new(
                db.clone(),
                gate.clone(),
                args.auth_cache_ttl,
                args.stale_report_ttl,
            ),
            rate_limit: TerminalRateLimit::new(
                args.health.terminal_rate,
                args.health.terminal_burst,
            ),
            terminal_concurrency: TerminalConcurrency::new(args.health.terminal_concurrency),
            metrics,
            ingest: Pipeline::new(
                db.clone(),
                gate.clone(),
                IngestOptions {
                    maintain_totals: args.report_totals.is_on(),
                },
            ),
            stale_totals: StaleCopies::new(args.stale_report_ttl),
            body_timeout: BodyTimeout(args.client.body_timeout),
            body_budget: BodyBudget::new(args.client.body_budget_mib as usize * 1024 * 1024),
            db,
            gate,
        }))
    }
}
