//! Request bodies are read whole, size-checked and time-bounded before the
//! request takes anything another request needs (a token lookup, a database
//! slot). A client that trickles its body, or never finishes it, costs only
//! its own socket and buffer: before, the body was read by the handler,
//! after admission, and ten slow uploads held every database slot.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::error::{ApiError, ProblemCode};
use crate::http::{AppState, MAX_BODY_BYTES};

/// How long a body may take to arrive, from when its headers did.
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeout(pub Duration);

pub async fn read_whole(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let limited = Limited::new(body, MAX_BODY_BYTES);
    let read = tokio::time::timeout(state.body_timeout.0, limited.collect()).await;
    let bytes = match read {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return too_large().into_response();
        }
        Ok(Err(e)) => {
            return ApiError::new(
                ProblemCode::UnreadableBody,
                format!("the body could not be read: {e}"),
            )
            .into_response();
        }
        Err(_) => {
            return ApiError::new(
                ProblemCode::RequestTimeout,
                format!(
                    "the body did not arrive within {} s",
                    state.body_timeout.0.as_secs_f64()
                ),
            )
            .into_response();
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

pub fn too_large() -> ApiError {
    ApiError::new(
        ProblemCode::PayloadTooLarge,
        format!("the body exceeds {MAX_BODY_BYTES} bytes"),
    )
}
