//! The HTTP API: the router, the shared state, and the middleware stack.
//! One file per resource below; handlers stay short and call domain, ingest
//! and db code.
//!
//! A request to a database-bound route passes, in this order: request id
//! and trace -> metrics -> body read whole -> arrival stamp -> Retry-After
//! advice -> auth -> (terminals) rate and concurrency limit -> admission
//! (the health layer's `Gate::run`: fail fast, concurrency limit, deadline)
//! -> handler -> repository -> Postgres. Operations routes (`/healthz`,
//! `/readyz`, `/v1/status`, `/metrics`, the `/status` page) skip auth and
//! admission: they must answer while the database does not.

pub mod admission;
mod arrival;
pub mod auth;
mod batches;
mod body;
mod conflicts;
mod cursor;
mod extract;
mod observe;
mod ops;
mod params;
mod ratelimit;
mod reports;
mod retry_after;
mod sales;
pub mod server;
mod status_page;
mod stores;
mod sync;
mod terminals;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::HeaderName;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::config::ServeArgs;
use crate::db::Database;
use crate::error::ApiError;
use crate::health::Gate;
use crate::ingest::{IngestOptions, Pipeline};
use auth::Authenticator;
pub use ratelimit::{TerminalConcurrency, TerminalRateLimit};

/// Largest request body accepted (a batch of 500 rich sales fits easily).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

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
    pub metrics: PrometheusHandle,
    /// Where pushes are read, planned and written in shared commits.
    pub ingest: Pipeline,
    pub stale_totals: reports::StaleCopies,
    pub body_timeout: body::BodyTimeout,
}

impl AppState {
    pub fn new(db: Database, gate: Gate, args: &ServeArgs) -> Self {
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
            metrics: crate::metrics::handle(),
            ingest: Pipeline::new(
                db.clone(),
                IngestOptions {
                    maintain_totals: args.report_totals.is_on(),
                },
            ),
            stale_totals: reports::StaleCopies::new(args.stale_report_ttl),
            body_timeout: body::BodyTimeout(args.client.body_timeout),
            db,
            gate,
        }))
    }
}

pub fn router(state: AppState) -> Router {
    // `route_layer`s run bottom-up: the last one added runs first.
    let ingest = Router::new()
        .route("/v1/sales/batches", post(batches::push))
        .route("/v1/sync", get(sync::get))
        .route_layer(from_fn_with_state(state.clone(), admission::ingest))
        .route_layer(from_fn_with_state(state.clone(), ratelimit::per_terminal))
        .route_layer(from_fn_with_state(state.clone(), auth::authenticate));

    let admin = Router::new()
        .route("/v1/stores", post(stores::create))
        .route("/v1/terminals", post(terminals::create))
        .route(
            "/v1/terminals/{terminal_id}/revoke",
            post(terminals::revoke),
        )
        .route_layer(from_fn_with_state(state.clone(), admission::admin))
        .route_layer(from_fn_with_state(state.clone(), auth::authenticate));

    let reports = Router::new()
        .route("/v1/conflicts", get(conflicts::list))
        .route("/v1/sales", get(sales::list))
        .route("/v1/terminals", get(terminals::list))
        .route_layer(from_fn_with_state(state.clone(), admission::report))
        .route_layer(from_fn_with_state(state.clone(), auth::authenticate));

    // Totals are admitted by their handler: when the database cannot be
    // used it answers from the last good copy instead of refusing.
    let totals = Router::new()
        .route("/v1/reports/totals", get(reports::totals))
        .route_layer(from_fn_with_state(state.clone(), auth::authenticate));

    let operations = Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/v1/status", get(ops::status))
        .route("/metrics", get(ops::metrics))
        .route("/status", get(status_page::page));

    let routes = Router::new()
        .merge(ingest)
        .merge(admin)
        .merge(reports)
        .merge(totals)
        .merge(operations)
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .with_state(state.clone());

    // Outermost first: each request gets an id (the client's, or a new
    // UUID) before anything logs, the trace span carries it and one line is
    // logged per answer, the id goes back to the client, every answer
    // (refusals included) is counted and timed, the body is read whole
    // before anything shared is taken (a slow upload costs only its own
    // socket), the arrival is stamped once the request is all here
    // (deadlines count from it), every database-related 503 gets its
    // Retry-After from the health layer, and a panic becomes a problem
    // document instead of a dropped connection.
    routes.layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(observe::request_span)
                    .on_response(observe::log_response)
                    // The response line already says 5xx; a second ERROR
                    // line per refused request would flood logs in an outage.
                    .on_failure(()),
            )
            .layer(PropagateRequestIdLayer::new(REQUEST_ID))
            .layer(axum::middleware::from_fn(observe::count_and_time))
            .layer(from_fn_with_state(state.clone(), body::read_whole))
            .layer(axum::middleware::from_fn(arrival::stamp))
            .layer(from_fn_with_state(state, retry_after::advise))
            .layer(CatchPanicLayer::custom(|_| {
                tracing::error!("handler panicked");
                axum::response::IntoResponse::into_response(ApiError::internal())
            }))
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES)),
    )
}
