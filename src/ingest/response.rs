//! The body of a batch's 200 answer: one result per sale in input order and
//! the counts. It is built once, stored with the idempotency key and sent
//! byte for byte again to a retry, so its shape is part of the contract.

use serde::Serialize;
use uuid::Uuid;

use super::Item;
use super::classify::Verdict;

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Counts {
    pub accepted: usize,
    pub duplicates: usize,
    pub rejected: usize,
}

#[derive(Serialize)]
struct BatchResponse<'a> {
    batch_id: Uuid,
    results: Vec<SaleResult<'a>>,
    #[serde(flatten)]
    counts: Counts,
    contiguous_through_seq: i64,
}

#[derive(Serialize)]
struct SaleResult<'a> {
    sale_id: Option<Uuid>,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
    /// On a rejected sale: whether sending it again can ever succeed.
    #[serde(skip_serializing_if = "Option::is_none")]
    retryable: Option<bool>,
}

/// The serialized response and its counts (for the metrics).
pub(super) fn body(
    batch_id: Uuid,
    items: &[Item],
    verdicts: &[Verdict],
    contiguous_through_seq: i64,
) -> (Vec<u8>, Counts) {
    let mut counts = Counts::default();
    let results = items
        .iter()
        .zip(verdicts)
        .map(|(item, verdict)| {
            let (status, rejection) = match verdict {
                Verdict::Accept => {
                    counts.accepted += 1;
                    ("accepted", None)
                }
                Verdict::Duplicate => {
                    counts.duplicates += 1;
                    ("duplicate", None)
                }
                Verdict::Reject(r) => {
                    counts.rejected += 1;
                    ("rejected", Some(r))
                }
            };
            SaleResult {
                sale_id: item.sale_id,
                status,
                code: rejection.map(|r| r.code),
                detail: rejection.map(|r| r.detail.as_str()),
                retryable: rejection.map(|r| r.retryable()),
            }
        })
        .collect();
    let response = BatchResponse {
        batch_id,
        results,
        counts,
        contiguous_through_seq,
    };
    let body = serde_json::to_vec(&response).expect("a batch response always serializes");
    (body, counts)
}
