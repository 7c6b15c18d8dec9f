//! The HTTP API: the router, the shared state, and the middleware stack.
//! One file per resource below; handlers stay short and call domain, ingest
//! and db code.

pub mod auth;
mod batches;
mod conflicts;
mod extract;
mod ops;
mod stores;
mod sync;
mod terminals;

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request};
use axum::routing::{get, post};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::db::Database;
use crate::error::ApiError;
use auth::Authenticator;

/// Largest request body accepted (a batch of 500 rich sales fits easily).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

#[derive(Clone)]
pub struct AppState {
    pub db: Database,
    pub auth: Authenticator,
}

impl AppState {
    pub fn new(db: Database, auth_cache_ttl: Duration) -> Self {
        let auth = Authenticator::new(db.clone(), auth_cache_ttl);
        Self { db, auth }
    }
}

pub fn router(state: AppState) -> Router {
    let routes = Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/v1/stores", post(stores::create))
        .route("/v1/terminals", post(terminals::create))
        .route(
            "/v1/terminals/{terminal_id}/revoke",
            post(terminals::revoke),
        )
        .route("/v1/sales/batches", post(batches::push))
        .route("/v1/sync", get(sync::get))
        .route("/v1/conflicts", get(conflicts::list))
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .with_state(state);

    // Outermost first: each request gets an id before anything logs, the
    // trace span carries it, the id goes back to the client, a panic becomes
    // a problem document instead of a dropped connection, and bodies are
    // capped before any handler buffers them.
    routes.layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
            .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                let request_id = req
                    .headers()
                    .get(REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request.id = %request_id)
            }))
            .layer(PropagateRequestIdLayer::new(REQUEST_ID))
            .layer(CatchPanicLayer::custom(|_| {
                tracing::error!("handler panicked");
                axum::response::IntoResponse::into_response(ApiError::internal())
            }))
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES)),
    )
}
