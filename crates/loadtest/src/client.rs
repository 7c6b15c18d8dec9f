//! A thin client of the public tillsync API, as a till or an ops script
//! would use it over the network: here what a till calls (push, sync), in
//! `client/admin.rs` what takes the merchant admin token. Every failure is
//! a value ([`Failure`]) that the caller counts and retries, never a panic:
//! a load test expects them.

use std::time::Duration;

use chrono::NaiveDate;
use reqwest::header::RETRY_AFTER;
use reqwest::{RequestBuilder, StatusCode, Url};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

mod admin;

pub use admin::{ListedException, ReportScope, TaxRow, TotalsRow};
#[cfg(test)]
pub use admin::{TaxGroup, TotalsGroup};

/// Why a request did not give the expected answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// An HTTP answer with another status than expected.
    Status {
        status: u16,
        /// The problem document's `code`, when the body had one.
        code: Option<String>,
        retry_after: Option<Duration>,
    },
    /// No complete answer within the request timeout.
    Timeout,
    /// The connection could not be made or broke (refused, reset, closed).
    Connection,
    /// A 2xx whose body was not what the API promises.
    InvalidResponse(String),
}

impl Failure {
    /// The bucket this failure is counted in, next to the status codes.
    pub fn bucket(&self) -> String {
        match self {
            Failure::Status { status, .. } => status.to_string(),
            Failure::Timeout => "timeout".into(),
            Failure::Connection => "connection error".into(),
            Failure::InvalidResponse(_) => "invalid response".into(),
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Failure::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether trying again may help: the server was busy, down or slow.
    /// Any other answer (a 401, a 422) will be the same the next time.
    pub fn is_transient(&self) -> bool {
        match self {
            Failure::Status { status, .. } => {
                *status == 409 || *status == 429 || (500..600).contains(status)
            }
            Failure::Timeout | Failure::Connection => true,
            Failure::InvalidResponse(_) => false,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Status {
                status,
                code: Some(code),
                ..
            } => write!(f, "HTTP {status} ({code})"),
            Failure::Status { status, .. } => write!(f, "HTTP {status}"),
            Failure::Timeout => f.write_str("timed out"),
            Failure::Connection => f.write_str("connection error"),
            Failure::InvalidResponse(detail) => write!(f, "invalid response: {detail}"),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct BatchResponse {
    pub results: Vec<SaleResult>,
}

#[derive(Debug, Deserialize)]
pub struct SaleResult {
    pub sale_id: Option<Uuid>,
    pub status: String,
    pub code: Option<String>,
    /// On a rejection: whether sending the same sale again can succeed.
    #[serde(default)]
    pub retryable: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SyncView {
    pub highest_seq: i64,
    pub contiguous_through_seq: i64,
    pub missing_seq_ranges: Vec<[i64; 2]>,
    pub sales_stored: i64,
    pub business_day: Option<BusinessDay>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct BusinessDay {
    pub business_date: NaiveDate,
    pub sales_count: i64,
    pub totals: Vec<CurrencyTotal>,
}

/// One currency of the day check. The members issue 24 added are
/// optional here, so a server without them shows as a mismatch of each, not
/// as an answer that cannot be read.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CurrencyTotal {
    pub currency: String,
    pub sales_count: i64,
    pub net_minor: i64,
    #[serde(flatten)]
    pub split: SplitView,
}

/// The money a back office splits receipts into, as the server answers it
/// (`None`: the member is missing or `null`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct SplitView {
    pub tax_minor: Option<i64>,
    pub item_sales_minor: Option<i64>,
    pub gift_card_sales_minor: Option<i64>,
    pub tips_minor: Option<i64>,
    pub service_charges_minor: Option<i64>,
    pub rounding_minor: Option<i64>,
    pub net_sales_minor: Option<i64>,
}

impl SplitView {
    /// Each member with its name in the API.
    pub fn columns(&self) -> [(&'static str, Option<i64>); 7] {
        [
            ("tax_minor", self.tax_minor),
            ("item_sales_minor", self.item_sales_minor),
            ("gift_card_sales_minor", self.gift_card_sales_minor),
            ("tips_minor", self.tips_minor),
            ("service_charges_minor", self.service_charges_minor),
            ("rounding_minor", self.rounding_minor),
            ("net_sales_minor", self.net_sales_minor),
        ]
    }
}

#[derive(Debug, Deserialize)]
struct Problem {
    code: Option<String>,
}

/// One connection pool to one tillsync, shared by every simulated till.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    pub fn new(base: &Url, request_timeout: Duration, tills: usize) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(request_timeout)
            .connect_timeout(request_timeout)
            // Each till holds at most one request open; keep all their
            // connections so steady load does not pay for new ones.
            .pool_max_idle_per_host(tills)
            .user_agent(concat!("tillsync-loadtest/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            base: base.as_str().trim_end_matches('/').to_owned(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Pushes one batch. `body` is sent as is, so a retry under the same
    /// key is byte for byte the first request.
    pub async fn push_batch(
        &self,
        token: &str,
        key: Uuid,
        body: Vec<u8>,
    ) -> Result<BatchResponse, Failure> {
        let request = self
            .http
            .post(self.url("/v1/sales/batches"))
            .bearer_auth(token)
            .header("Idempotency-Key", key.to_string())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        call(request, StatusCode::OK).await
    }

    pub async fn sync(
        &self,
        token: &str,
        business_date: Option<NaiveDate>,
    ) -> Result<SyncView, Failure> {
        let mut request = self.http.get(self.url("/v1/sync")).bearer_auth(token);
        if let Some(date) = business_date {
            request = request.query(&[("business_date", date.to_string())]);
        }
        call(request, StatusCode::OK).await
    }
}

async fn call<T: DeserializeOwned>(
    request: RequestBuilder,
    expected: StatusCode,
) -> Result<T, Failure> {
    let response = request.send().await.map_err(transport_failure)?;
    let status = response.status();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    // The whole body is read before the request counts as answered: a
    // connection that breaks mid-body is a failure, not a success.
    let body = response.bytes().await.map_err(transport_failure)?;
    if status != expected {
        let code = serde_json::from_slice::<Problem>(&body)
            .ok()
            .and_then(|p| p.code);
        return Err(Failure::Status {
            status: status.as_u16(),
            code,
            retry_after,
        });
    }
    serde_json::from_slice(&body).map_err(|e| Failure::InvalidResponse(e.to_string()))
}

fn transport_failure(e: reqwest::Error) -> Failure {
    if e.is_timeout() {
        Failure::Timeout
    } else {
        Failure::Connection
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16) -> Failure {
        Failure::Status {
            status,
            code: None,
            retry_after: None,
        }
    }

    #[test]
    fn busy_down_and_slow_servers_are_worth_retrying_client_errors_are_not() {
        for transient in [status(409), status(429), status(503), status(500)] {
            assert!(transient.is_transient(), "{transient}");
        }
        assert!(Failure::Timeout.is_transient());
        assert!(Failure::Connection.is_transient());
        for permanent in [status(401), status(404), status(422)] {
            assert!(!permanent.is_transient(), "{permanent}");
        }
    }

    #[test]
    fn transport_failures_have_their_own_buckets() {
        assert_eq!(status(503).bucket(), "503");
        assert_eq!(Failure::Timeout.bucket(), "timeout");
        assert_eq!(Failure::Connection.bucket(), "connection error");
    }
}
