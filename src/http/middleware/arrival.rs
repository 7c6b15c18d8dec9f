//! When a request arrived, for its deadlines: the steps of one request
//! (the token lookup, then its own work) share one deadline instead of each
//! starting a new one. Stamped once the request is all here, right after
//! its body was read whole ([`super::body`]) and before anything shared can
//! make it wait: the time a client takes to send its body is bounded on its
//! own (`TILLSYNC_BODY_TIMEOUT`) and is not taken from its deadline.

use std::convert::Infallible;
use std::time::Instant;

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;

/// When the request arrived.
#[derive(Debug, Clone, Copy)]
pub struct Arrived(pub Instant);

impl Arrived {
    /// The request's arrival; now, for a request the stamp did not see
    /// (only possible in a router built without it).
    pub fn of<B>(request: &axum::http::Request<B>) -> Instant {
        request
            .extensions()
            .get::<Arrived>()
            .map_or_else(Instant::now, |a| a.0)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Arrived {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Infallible> {
        Ok(parts
            .extensions
            .get::<Arrived>()
            .copied()
            .unwrap_or_else(|| Arrived(Instant::now())))
    }
}

/// Middleware: stamps the request with the time it arrived.
pub async fn stamp(mut request: Request, next: Next) -> Response {
    request.extensions_mut().insert(Arrived(Instant::now()));
    next.run(request).await
}
