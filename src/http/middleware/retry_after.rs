//! Every 503 the database causes carries a `Retry-After` chosen by the
//! health layer, whichever step produced it: a refusal at admission, work
//! cut short, a token lookup or a query that failed on a sick link. Handlers
//! and repositories only say what went wrong (the problem code); how long a
//! fleet should wait is the health layer's call, from one source.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::error::ProblemCode;
use crate::http::AppState;

pub async fn advise(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let refusal = response
        .extensions()
        .get::<ProblemCode>()
        .and_then(|code| code.refusal());
    if let Some(refusal) = refusal {
        if !response.headers().contains_key(header::RETRY_AFTER) {
            let seconds = state.gate.retry_after(refusal);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
    }
    response
}
