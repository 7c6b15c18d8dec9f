//! `POST /v1/sales/batches`: a till pushes sales. Parsing and the checks that
//! need no database happen here; everything else is [`crate::ingest`].

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::domain::bounds::MAX_SEQ;
use crate::domain::sale::{Rejection, Sale};
use crate::domain::terminal::Terminal;
use crate::error::{ApiError, ProblemCode};
use crate::http::AppState;
use crate::http::extract::body_rejection;
use crate::http::middleware::admission;
use crate::http::middleware::arrival::Arrived;
use crate::ingest::{Counts, IngestError, Item, Push, Pushed};

#[cfg(test)]
mod tests;

pub const MAX_SALES_PER_BATCH: usize = 500;
/// Seqs a push may declare skipped, and ranges it may name them in.
pub const MAX_SKIPPED_SEQS: usize = 1000;
pub const MAX_SKIPPED_RANGES: usize = 100;

const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

pub async fn push(
    State(state): State<AppState>,
    terminal: Terminal,
    Arrived(arrived): Arrived,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let body = body.map_err(body_rejection)?;
    let now = Utc::now();
    let batch = parse_batch(&body, now)?;
    let priority = admission::admit_backlog(&state, batch.newest_sale(), now)?;
    let Batch { items, skipped } = batch;
    let request_sha256 = Sha256::digest(&body);

    let push = Push {
        terminal: &terminal,
        key,
        request_sha256: &request_sha256,
        items: &items,
        skipped: &skipped,
        arrived,
        priority,
    };
    match state.ingest.push(&push).await {
        Ok(Pushed::Fresh { body, counts }) => {
            record_batch(&counts, items.len());
            Ok(json_response(body, false))
        }
        Ok(Pushed::Replayed { body }) => Ok(json_response(body, true)),
        Err(IngestError::KeyReused) => Err(ApiError::new(
            ProblemCode::IdempotencyKeyReused,
            "this Idempotency-Key was already used with a different body",
        )),
        Err(IngestError::Db(e)) => Err(e.into()),
        Err(IngestError::Refused(refusal)) => Err(refusal.into()),
    }
}

/// Counts a committed batch. Replays are left out: their sales were
/// counted when the batch was first committed.
fn record_batch(counts: &Counts, sales: usize) {
    for (result, n) in [
        ("accepted", counts.accepted),
        ("duplicate", counts.duplicates),
        ("rejected", counts.rejected),
    ] {
        metrics::counter!("tillsync_sales_total", "result" => result).increment(n as u64);
    }
    metrics::histogram!("tillsync_batch_sales").record(sales as f64);
}

fn idempotency_key(headers: &HeaderMap) -> Result<Uuid, ApiError> {
    let raw = headers.get(IDEMPOTENCY_KEY).ok_or_else(|| {
        ApiError::new(
            ProblemCode::IdempotencyKeyMissing,
            "an Idempotency-Key header with a UUID is required",
        )
    })?;
    raw.to_str()
        .ok()
        .and_then(|s| Uuid::try_parse(s.trim()).ok())
        .ok_or_else(|| {
            ApiError::new(
                ProblemCode::IdempotencyKeyInvalid,
                "Idempotency-Key must be a UUID",
            )
        })
}

fn json_response(body: Vec<u8>, replayed: bool) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if replayed {
        headers.insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    response
}

#[derive(Deserialize)]
struct RawBatch<'a> {
    #[serde(borrow)]
    sales: Vec<&'a RawValue>,
    #[serde(default)]
    skipped_seqs: Vec<(i64, i64)>,
}

/// A parsed push: its sales, and the seqs the till declares it never used
/// (each once, ascending).
pub struct Batch {
    pub items: Vec<Item>,
    pub skipped: Vec<i64>,
}

impl Batch {
    /// When its newest valid sale occurred: how admission tells a backlog
    /// from live sales ([`admission::admit_backlog`]).
    pub fn newest_sale(&self) -> Option<DateTime<Utc>> {
        (self.items.iter())
            .filter_map(|item| item.sale.as_ref().ok())
            .map(|sale| sale.occurred_at.to_utc())
            .max()
    }
}

/// Whether a JSON text is an object. serde's derived structs also take an
/// array of their members in order, which the contract does not offer.
fn is_object(json: &[u8]) -> bool {
    json.trim_ascii_start().starts_with(b"{")
}

/// Reads the envelope strictly (a broken envelope fails the whole request)
/// and each sale leniently (a broken sale is rejected alone, with its reason).
///
/// Nesting costs no stack here: the sales are kept as raw JSON, which
/// serde_json skips without recursing, as it skips unknown members; typed
/// members refuse an array or object at once. So only the sale at fault is
/// rejected, however deep its JSON goes.
fn parse_batch(body: &[u8], now: DateTime<Utc>) -> Result<Batch, ApiError> {
    let not_a_batch = |e: &dyn std::fmt::Display| {
        ApiError::new(
            ProblemCode::InvalidBatch,
            format!("expected {{\"sales\": [...]}}: {e}"),
        )
    };
    let batch: RawBatch = serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            not_a_batch(&e)
        } else {
            ApiError::new(ProblemCode::InvalidJson, format!("malformed JSON: {e}"))
        }
    })?;
    if !is_object(body) {
        return Err(not_a_batch(&"the body is not a JSON object"));
    }
    let skipped = skipped_seqs(&batch.skipped_seqs)?;
    match batch.sales.len() {
        0 if skipped.is_empty() => Err(ApiError::new(
            ProblemCode::BatchEmpty,
            "a batch carries 1 to 500 sales, or only skipped_seqs",
        )),
        n if n > MAX_SALES_PER_BATCH => Err(ApiError::new(
            ProblemCode::BatchTooLarge,
            format!("a batch carries 1 to {MAX_SALES_PER_BATCH} sales, this one {n}"),
        )),
        _ => Ok(Batch {
            items: batch.sales.iter().map(|raw| parse_sale(raw, now)).collect(),
            skipped,
        }),
    }
}

/// The seqs of `skipped_seqs` ranges, each once, ascending; the ranges
/// within the bounds of a seq and of a push.
fn skipped_seqs(ranges: &[(i64, i64)]) -> Result<Vec<i64>, ApiError> {
    let invalid = |detail: String| ApiError::new(ProblemCode::InvalidBatch, detail);
    if ranges.len() > MAX_SKIPPED_RANGES {
        return Err(invalid(format!(
            "skipped_seqs holds at most {MAX_SKIPPED_RANGES} ranges, this one {}",
            ranges.len()
        )));
    }
    let mut seqs = std::collections::BTreeSet::new();
    for &(from, to) in ranges {
        if !(1 <= from && from <= to && to <= MAX_SEQ) {
            return Err(invalid(format!(
                "skipped_seqs: [{from}, {to}] is not a range 1 <= from <= to <= {MAX_SEQ}"
            )));
        }
        // The range alone first, so a huge one is never expanded.
        let too_many = || {
            invalid(format!(
                "skipped_seqs: at most {MAX_SKIPPED_SEQS} seqs in a push"
            ))
        };
        if to - from >= MAX_SKIPPED_SEQS as i64 {
            return Err(too_many());
        }
        seqs.extend(from..=to);
        if seqs.len() > MAX_SKIPPED_SEQS {
            return Err(too_many());
        }
    }
    Ok(seqs.into_iter().collect())
}

/// A sale that is invalid, kept as it was sent: it is refused for good.
fn invalid(raw: &RawValue, sale_id: Option<Uuid>, seq: Option<i64>, rejection: Rejection) -> Item {
    Item {
        sale_id,
        seq,
        sale: Err(rejection),
        raw: Some(raw.to_owned()),
    }
}

fn parse_sale(raw: &RawValue, now: DateTime<Utc>) -> Item {
    if !is_object(raw.get().as_bytes()) {
        let rejection = Rejection::new("invalid_sale", "a sale is a JSON object");
        return invalid(raw, None, None, rejection);
    }
    // The path names the member at fault ("lines[0].quantity: ..."), which
    // serde's own message leaves out.
    let mut reader = serde_json::Deserializer::from_str(raw.get());
    match serde_path_to_error::deserialize::<_, Sale>(&mut reader) {
        Ok(sale) => match sale.validate(now) {
            Ok(()) => Item {
                sale_id: Some(sale.sale_id),
                seq: Some(sale.seq),
                sale: Ok(sale),
                raw: None,
            },
            Err(rejection) => invalid(raw, Some(sale.sale_id), Some(sale.seq), rejection),
        },
        Err(e) => {
            // What can still be read of it: its id and its seq, each on
            // its own, so one broken member does not hide the other.
            #[derive(Deserialize)]
            struct IdProbe {
                sale_id: Option<Uuid>,
            }
            #[derive(Deserialize)]
            struct SeqProbe {
                seq: Option<i64>,
            }
            let sale_id = serde_json::from_str::<IdProbe>(raw.get())
                .ok()
                .and_then(|p| p.sale_id);
            let seq = serde_json::from_str::<SeqProbe>(raw.get())
                .ok()
                .and_then(|p| p.seq);
            let rejection = Rejection::new("invalid_sale", invalid_sale_detail(&e));
            invalid(raw, sale_id, seq, rejection)
        }
    }
}

fn invalid_sale_detail(e: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let path = e.path().to_string();
    if path == "." {
        e.inner().to_string()
    } else {
        format!("{path}: {}", e.inner())
    }
}
