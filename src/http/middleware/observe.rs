//! What every request leaves behind: one log line when it is answered (in a
//! span that carries its id, method and route) and its metrics (counted by
//! route, method and status, and timed into a histogram), refusals and
//! errors included.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Span;

use crate::http::REQUEST_ID;

/// Label and field value for requests that matched no route.
const UNMATCHED: &str = "unmatched";

/// The route template, not the path: ids in paths would explode the label
/// set, and the template is what a reader searches logs for.
fn route<B>(request: &http::Request<B>) -> &str {
    request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED, |p| p.as_str())
}

/// The span all log lines of a request are in. It names the request id,
/// method, route and path, never headers, the query string or the body:
/// those carry tokens and payloads.
pub fn request_span<B>(request: &http::Request<B>) -> Span {
    let request_id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!(
        "request",
        request.id = %request_id,
        method = %request.method(),
        route = %route(request),
        path = %request.uri().path(),
    )
}

/// The one INFO line per request, when it is answered. Refusals are logged
/// here like any answer; their causes are logged once where they arise.
pub fn log_response<B>(response: &http::Response<B>, latency: Duration, _span: &Span) {
    let status = response.status().as_u16();
    let duration_ms = latency.as_millis() as u64;
    tracing::info!(status, duration_ms, "answered {status} in {duration_ms} ms");
}

pub async fn count_and_time(request: Request, next: Next) -> Response {
    let route = route(&request).to_owned();
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("tillsync_http_requests_total", "route" => route.clone(), "method" => method.clone(), "status" => status).increment(1);
    metrics::histogram!("tillsync_http_request_duration_seconds", "route" => route, "method" => method)
        .record(started.elapsed().as_secs_f64());
    response
}
