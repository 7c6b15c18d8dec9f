//! The calls that take the merchant admin token: provisioning a store and
//! its tills, retiring a till, and what the verdict reads (report totals,
//! the exception list, sale ids).

use chrono::{DateTime, NaiveDate, Utc};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::{Api, Failure, call};
use crate::generator::{STORE_CURRENCY, STORE_TIMEZONE};

/// Most entries one page of a listing holds (the API's own maximum).
const PAGE_LIMIT: &str = "1000";

#[derive(Debug, Deserialize)]
pub struct CreatedStore {
    pub store_id: Uuid,
}

#[derive(Deserialize)]
pub struct CreatedTerminal {
    pub terminal_id: Uuid,
    pub token: String,
}

#[derive(Debug, Deserialize)]
pub struct Retired {
    pub retired_at: DateTime<Utc>,
}

/// One row of `GET /v1/reports/totals?group_by=day`.
#[derive(Debug, Clone, Deserialize)]
pub struct TotalsRow {
    pub group: TotalsGroup,
    pub currency: String,
    pub sales_count: i64,
    pub refunds_count: i64,
    pub voids_count: i64,
    pub gross_minor: i64,
    pub refunds_minor: i64,
    pub discounts_minor: Option<i64>,
    pub tax_minor: Option<i64>,
    pub net_minor: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TotalsGroup {
    pub business_date: NaiveDate,
}

#[derive(Debug, Deserialize)]
struct TotalsReport {
    rows: Vec<TotalsRow>,
}

/// One entry of `GET /v1/exceptions`, as much of it as the verdict reads.
#[derive(Debug, Clone, Deserialize)]
pub struct ListedException {
    pub kind: String,
    pub status: String,
    pub sale_ids: Vec<Uuid>,
    pub seq: Option<i64>,
    pub code: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ExceptionsPage {
    exceptions: Vec<ListedException>,
    next_cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SalesPage {
    sales: Vec<ListedSale>,
    next_cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ListedSale {
    sale_id: Uuid,
}

impl Api {
    pub async fn create_store(&self, admin: &str, name: &str) -> Result<CreatedStore, Failure> {
        let request = self.http.post(self.url("/v1/stores")).bearer_auth(admin).json(
            &json!({"name": name, "timezone": STORE_TIMEZONE.name(), "currency": STORE_CURRENCY}),
        );
        call(request, StatusCode::CREATED).await
    }

    pub async fn create_terminal(
        &self,
        admin: &str,
        store_id: Uuid,
        name: &str,
    ) -> Result<CreatedTerminal, Failure> {
        let request = self
            .http
            .post(self.url("/v1/terminals"))
            .bearer_auth(admin)
            .json(&json!({"store_id": store_id, "name": name}));
        call(request, StatusCode::CREATED).await
    }

    /// Takes a terminal out of service; idempotent (a second call keeps
    /// the first time).
    pub async fn retire(&self, admin: &str, terminal_id: Uuid) -> Result<Retired, Failure> {
        let request = self
            .http
            .post(self.url(&format!("/v1/terminals/{terminal_id}/retire")))
            .bearer_auth(admin);
        call(request, StatusCode::OK).await
    }

    /// One terminal's totals per business day and currency, `from` to `to`.
    pub async fn day_totals(
        &self,
        admin: &str,
        terminal_id: Uuid,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<TotalsRow>, Failure> {
        let request = self
            .http
            .get(self.url("/v1/reports/totals"))
            .bearer_auth(admin)
            .query(&[
                ("from", from.to_string()),
                ("to", to.to_string()),
                ("terminal_id", terminal_id.to_string()),
                ("group_by", "day".to_owned()),
            ]);
        let report: TotalsReport = call(request, StatusCode::OK).await?;
        Ok(report.rows)
    }

    /// One page of a store's exceptions, open and resolved.
    pub async fn exceptions_page(
        &self,
        admin: &str,
        store_id: Uuid,
        cursor: Option<&str>,
    ) -> Result<(Vec<ListedException>, Option<String>), Failure> {
        let mut query = vec![
            ("store_id", store_id.to_string()),
            ("status", "all".to_owned()),
            ("limit", PAGE_LIMIT.to_owned()),
        ];
        query.extend(cursor.map(|c| ("cursor", c.to_owned())));
        let request = self
            .http
            .get(self.url("/v1/exceptions"))
            .bearer_auth(admin)
            .query(&query);
        let page: ExceptionsPage = call(request, StatusCode::OK).await?;
        Ok((page.exceptions, page.next_cursor))
    }

    /// One page of the ids of a terminal's stored sales on `from` to `to`.
    pub async fn sale_ids_page(
        &self,
        admin: &str,
        terminal_id: Uuid,
        (from, to): (NaiveDate, NaiveDate),
        cursor: Option<&str>,
    ) -> Result<(Vec<Uuid>, Option<String>), Failure> {
        let mut query = vec![
            ("terminal_id", terminal_id.to_string()),
            ("from", from.to_string()),
            ("to", to.to_string()),
            ("limit", PAGE_LIMIT.to_owned()),
        ];
        query.extend(cursor.map(|c| ("cursor", c.to_owned())));
        let request = self
            .http
            .get(self.url("/v1/sales"))
            .bearer_auth(admin)
            .query(&query);
        let page: SalesPage = call(request, StatusCode::OK).await?;
        Ok((
            page.sales.into_iter().map(|s| s.sale_id).collect(),
            page.next_cursor,
        ))
    }
}
