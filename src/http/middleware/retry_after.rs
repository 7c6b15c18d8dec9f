//! Every 503 the database causes carries a `Retry-After` chosen by the
//! health layer, whichever step produced it: a refusal at admission, work
//! cut short, a token lookup or a query that failed on a sick link. Handlers
//! and repositories only say what went wrong (the problem code); how long a
//! fleet should wait is the health layer's call, from one source.
//!
//! Every such refusal is also timed here, from the request's arrival
//! ([`super::arrival`]) to its 503, into `tillsync_refusal_seconds` by code:
//! a refusal is only cheap for a fleet if it comes fast, and this is the
//! service's own view of that, free of the client's scheduling.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

use super::arrival::Arrived;
use crate::error::ProblemCode;
use crate::http::AppState;

pub async fn advise(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let arrived = Arrived::of(&request);
    let mut response = next.run(request).await;
    let code = response.extensions().get::<ProblemCode>().copied();
    let refusal = code.and_then(|code| code.refusal().map(|refusal| (code, refusal)));
    if let Some((code, refusal)) = refusal {
        metrics::histogram!("tillsync_refusal_seconds", "code" => code.as_str())
            .record(arrived.elapsed().as_secs_f64());
        if !response.headers().contains_key(header::RETRY_AFTER) {
            let seconds = state.gate.retry_after(refusal);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
    }
    response
}
