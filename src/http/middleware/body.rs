//! Request bodies are read whole, size-checked, time-bounded and paid for
//! from a memory budget before the request takes anything another request
//! needs (a database slot). A client that trickles its body, or never
//! finishes it, costs only its own socket and buffer: before, the body was
//! read by the handler, after admission, and ten slow uploads held every
//! database slot.
//!
//! This layer runs after auth (see [`crate::http`]): a request without a
//! token of ours, or with one that is not valid, is answered 401 before a
//! byte of its body is read, so only tills and merchant admins ever hold
//! body memory. And all of them together hold at most the budget
//! (`TILLSYNC_BODY_BUDGET_MIB`): a body reserves its `Content-Length` (or
//! the largest body, when it is sent in chunks) before it is read, and
//! keeps it until its answer is made; one that finds no room within
//! `BUDGET_WAIT` is answered 503 `overloaded`. Before, 2 000 connections
//! each sending most of a 1 MB body took the server from 26 MB to 3.4 GB.
//!
//! Bodies above `LARGE_BODY_BYTES` may take at most three quarters of the
//! budget between them. A till's push is a few kilobytes (a batch of 100
//! sales is about 60 KB): however many large bodies crawl in at once (tills
//! whose tokens were stolen, each with its few requests in flight), the
//! last quarter stays for ordinary pushes.
//!
//! Written here: tower's and tower-http's limits count requests or cap one
//! body, none a sum of bytes; a semaphore of bytes is the whole of it.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{ApiError, ProblemCode};
use crate::http::{AppState, MAX_BODY_BYTES};

/// How long a body may take to arrive, from when its headers did.
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeout(pub Duration);

/// How long a body waits for room in the budget before it is refused: long
/// enough for a few bodies in flight to be answered, short enough that the
/// till hears "overloaded" well within its own timeout.
const BUDGET_WAIT: Duration = Duration::from_millis(250);

/// Bodies larger than this are large: together they may take at most
/// three quarters of the budget.
const LARGE_BODY_BYTES: usize = 64 * 1024;

/// The memory the bodies in flight may take together, in bytes.
#[derive(Clone)]
pub struct BodyBudget {
    room: Arc<Semaphore>,
    /// The part of the room large bodies may take.
    large_room: Arc<Semaphore>,
}

impl BodyBudget {
    pub fn new(bytes: usize) -> Self {
        Self {
            room: Arc::new(Semaphore::new(bytes)),
            large_room: Arc::new(Semaphore::new(bytes / 4 * 3)),
        }
    }

    /// Room for `bytes` (at most the largest body), held until the
    /// reservation is dropped; `None` if none came free within
    /// `BUDGET_WAIT`.
    async fn reserve(&self, bytes: usize) -> Option<Reserved> {
        let wanted = u32::try_from(bytes).unwrap_or(u32::MAX);
        let acquire = async {
            let large = if bytes > LARGE_BODY_BYTES {
                Some(
                    Arc::clone(&self.large_room)
                        .acquire_many_owned(wanted)
                        .await,
                )
            } else {
                None
            };
            let permit = Arc::clone(&self.room).acquire_many_owned(wanted).await;
            (large.transpose(), permit)
        };
        let (Ok(large), Ok(permit)) = tokio::time::timeout(BUDGET_WAIT, acquire).await.ok()? else {
            return None;
        };
        metrics::gauge!("tillsync_body_budget_used_bytes").increment(f64::from(wanted));
        Some(Reserved {
            _permits: (permit, large),
            bytes: wanted,
        })
    }
}

/// A body's share of the budget.
struct Reserved {
    _permits: (OwnedSemaphorePermit, Option<OwnedSemaphorePermit>),
    bytes: u32,
}

impl Drop for Reserved {
    fn drop(&mut self) {
        metrics::gauge!("tillsync_body_budget_used_bytes").decrement(f64::from(self.bytes));
    }
}

/// How many bytes the body of a request with these headers may take: its
/// `Content-Length` (hyper holds the body to it), the largest body when it
/// comes in chunks, none when it has neither. `Err` when it announces more
/// than the largest body.
fn announced(headers: &HeaderMap) -> Result<usize, ApiError> {
    if let Some(length) = headers.get(header::CONTENT_LENGTH) {
        let length = (length.to_str().ok())
            .and_then(|l| l.parse::<u64>().ok())
            .ok_or_else(|| {
                ApiError::new(
                    ProblemCode::UnreadableBody,
                    "Content-Length is not a number",
                )
            })?;
        return match usize::try_from(length) {
            Ok(length) if length <= MAX_BODY_BYTES => Ok(length),
            _ => Err(too_large()),
        };
    }
    if headers.contains_key(header::TRANSFER_ENCODING) {
        return Ok(MAX_BODY_BYTES);
    }
    Ok(0)
}

pub async fn read_whole(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = match announced(&parts.headers) {
        Ok(bytes) => bytes,
        Err(refused) => return refused.into_response(),
    };
    let reserved = match bytes {
        0 => None,
        bytes => match state.body_budget.reserve(bytes).await {
            Some(reserved) => Some(reserved),
            None => {
                metrics::counter!("tillsync_body_budget_refusals_total").increment(1);
                return ApiError::new(
                    ProblemCode::Overloaded,
                    "the server holds as many request bodies as its memory budget allows \
                     (TILLSYNC_BODY_BUDGET_MIB); try again shortly",
                )
                .into_response();
            }
        },
    };
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
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    // The body (and what the handler made of it) is gone once the answer
    // is made: its room goes back.
    drop(reserved);
    response
}

pub fn too_large() -> ApiError {
    ApiError::new(
        ProblemCode::PayloadTooLarge,
        format!("the body exceeds {MAX_BODY_BYTES} bytes"),
    )
}
