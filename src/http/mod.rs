//! The HTTP API: the router and the middleware stack, in the order a
//! request meets them. What every request passes lives in [`middleware`],
//! one file per layer; the resources live in [`routes`], one file per
//! resource, with short handlers that call [`crate::ingest`], the
//! repositories of [`crate::db`] and the rules of [`crate::domain`].
//!
//! A request to a database-bound route passes, in this order: request id
//! and trace -> metrics -> Retry-After advice -> auth -> (terminals) rate
//! and concurrency limit -> body read whole, from the memory budget ->
//! arrival stamp -> admission (the health layer's
//! [`Gate::run`](crate::health::Gate::run): fail fast, concurrency limit,
//! deadline) -> handler -> repository -> Postgres. Auth comes before the
//! body: a request without a valid token is answered 401 before a byte of
//! its body is read, so only tills and admins hold body memory. Operations
//! routes (`/healthz`, `/readyz`, `/v1/status`, `/metrics`, the `/status`
//! page) skip auth, the body and admission: they must answer while the
//! database does not, and read no body.

pub mod extract;
pub mod middleware;
pub mod routes;
pub mod server;
mod state;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::HeaderName;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
use middleware::{admission, arrival, auth, body, observe, rate_limit, retry_after};
pub use routes::ops::export_known_series;
use routes::{
    batches, conflicts, exceptions, ops, reports, sales, status_page, stores, sync, terminals,
};
pub use state::AppState;

/// Largest request body accepted (a batch of 500 rich sales fits easily).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub fn router(state: AppState) -> Router {
    // `route_layer`s run bottom-up: the last one added runs first.
    let ingest = Router::new()
        .route("/v1/sales/batches", post(batches::push))
        .route("/v1/sync", get(sync::get))
        .route_layer(from_fn_with_state(state.clone(), admission::ingest))
        .route_layer(axum::middleware::from_fn(arrival::stamp))
        .route_layer(from_fn_with_state(state.clone(), body::read_whole))
        .route_layer(from_fn_with_state(state.clone(), rate_limit::per_terminal))
        .route_layer(from_fn_with_state(state.clone(), auth::authenticate));

    let admin = Router::new()
        .route("/v1/stores", post(stores::create))
        .route(
            "/v1/stores/{store_id}",
            get(stores::show).patch(stores::change),
        )
        .route("/v1/terminals", post(terminals::create))
        .route(
            "/v1/terminals/{terminal_id}/revoke",
            post(terminals::revoke),
        )
        .route(
            "/v1/terminals/{terminal_id}/retire",
            post(terminals::retire),
        )
        .route(
            "/v1/exceptions/{exception_id}/resolve",
            post(exceptions::resolve),
        )
        .route_layer(from_fn_with_state(state.clone(), admission::admin))
        .route_layer(axum::middleware::from_fn(arrival::stamp))
        .route_layer(from_fn_with_state(state.clone(), body::read_whole))
        .route_layer(from_fn_with_state(state.clone(), auth::authenticate));

    let reports = Router::new()
        .route("/v1/conflicts", get(conflicts::list))
        .route("/v1/exceptions", get(exceptions::list))
        .route("/v1/sales", get(sales::list))
        .route("/v1/terminals", get(terminals::list))
        .route_layer(from_fn_with_state(state.clone(), admission::report))
        .route_layer(axum::middleware::from_fn(arrival::stamp))
        .route_layer(from_fn_with_state(state.clone(), body::read_whole))
        .route_layer(from_fn_with_state(state.clone(), auth::authenticate));

    // Totals are admitted by their handler: when the database cannot be
    // used it answers from the last good copy instead of refusing.
    let totals = Router::new()
        .route("/v1/reports/totals", get(reports::totals))
        .route_layer(axum::middleware::from_fn(arrival::stamp))
        .route_layer(from_fn_with_state(state.clone(), body::read_whole))
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
    // (refusals included) is counted and timed, every database-related 503
    // gets its Retry-After from the health layer, and a panic becomes a
    // problem document instead of a dropped connection. The body is read
    // per route group, after auth (above).
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
            .layer(from_fn_with_state(state, retry_after::advise))
            .layer(CatchPanicLayer::custom(|_| {
                tracing::error!("handler panicked");
                axum::response::IntoResponse::into_response(ApiError::internal())
            }))
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES)),
    )
}
