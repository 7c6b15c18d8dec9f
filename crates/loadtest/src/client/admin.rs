//! The calls that take the merchant admin token: provisioning a store and
//! its tills, retiring a till, and what the verdict reads (report totals by
//! day and by tax code, of a till or of the whole store; the exception
//! list; sale ids).

use chrono::{DateTime, NaiveDate, Utc};
use reqwest::StatusCode;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use uuid::Uuid;

use super::{Api, Failure, SplitView, call};
use crate::generator::{STORE_CURRENCY, StoreDay};

/// Most entries one page of a listing holds (the API's own maximum).
const PAGE_LIMIT: &str = "1000";

#[derive(Debug, Deserialize)]
pub struct CreatedStore {
    pub store_id: Uuid,
    /// `HH:MM`; `None` from a server that does not know it.
    pub business_day_starts_at: Option<String>,
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

/// One row of `GET /v1/reports/totals?group_by=day`. Money members may be
/// `null` (as in other groupings) or, from an older server, missing: each
/// is compared as it is.
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
    pub net_minor: i64,
    #[serde(flatten)]
    pub split: SplitView,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TotalsGroup {
    pub business_date: NaiveDate,
}

/// One row of `GET /v1/reports/totals?group_by=tax`: the facts naming a tax
/// code, and its tax. `voids_count` is 0 and every other money member
/// `null` there (tax rows are not split by code otherwise).
#[derive(Debug, Clone, Deserialize)]
pub struct TaxRow {
    pub group: TaxGroup,
    pub currency: String,
    pub sales_count: i64,
    pub refunds_count: i64,
    pub voids_count: i64,
    pub tax_minor: Option<i64>,
    pub gross_minor: Option<i64>,
    pub refunds_minor: Option<i64>,
    pub discounts_minor: Option<i64>,
    pub net_minor: Option<i64>,
    pub item_sales_minor: Option<i64>,
    pub gift_card_sales_minor: Option<i64>,
    pub tips_minor: Option<i64>,
    pub service_charges_minor: Option<i64>,
    pub rounding_minor: Option<i64>,
    pub net_sales_minor: Option<i64>,
}

impl TaxRow {
    /// The money members a tax row must leave `null`, with their values.
    pub fn not_split_by_code(&self) -> [(&'static str, Option<i64>); 10] {
        [
            ("gross_minor", self.gross_minor),
            ("refunds_minor", self.refunds_minor),
            ("discounts_minor", self.discounts_minor),
            ("net_minor", self.net_minor),
            ("item_sales_minor", self.item_sales_minor),
            ("gift_card_sales_minor", self.gift_card_sales_minor),
            ("tips_minor", self.tips_minor),
            ("service_charges_minor", self.service_charges_minor),
            ("rounding_minor", self.rounding_minor),
            ("net_sales_minor", self.net_sales_minor),
        ]
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct TaxGroup {
    pub tax_code: String,
    pub rate_bp: i64,
}

#[derive(Debug, Deserialize)]
struct TotalsReport<Row> {
    rows: Vec<Row>,
}

/// Whose totals a report adds up: one till's (`terminal_id=`), or the
/// whole store's (`store_id=`), which the server answers from other tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportScope {
    Till(Uuid),
    Store(Uuid),
}

impl ReportScope {
    fn query(self) -> (&'static str, String) {
        match self {
            ReportScope::Till(terminal_id) => ("terminal_id", terminal_id.to_string()),
            ReportScope::Store(store_id) => ("store_id", store_id.to_string()),
        }
    }
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
    /// Opens a store in `day`'s time zone, its business days starting at
    /// `day`'s time.
    pub async fn create_store(
        &self,
        admin: &str,
        name: &str,
        day: &StoreDay,
    ) -> Result<CreatedStore, Failure> {
        let store = json!({
            "name": name,
            "timezone": day.timezone.name(),
            "currency": STORE_CURRENCY,
            "business_day_starts_at": day.starts_at_text(),
        });
        let request = self
            .http
            .post(self.url("/v1/stores"))
            .bearer_auth(admin)
            .json(&store);
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

    /// Totals per business day and currency, `from` to `to`.
    pub async fn day_totals(
        &self,
        admin: &str,
        scope: ReportScope,
        (from, to): (NaiveDate, NaiveDate),
    ) -> Result<Vec<TotalsRow>, Failure> {
        self.totals(admin, scope, (from, to), "day").await
    }

    /// Tax per currency and tax code on one business day.
    pub async fn tax_totals(
        &self,
        admin: &str,
        scope: ReportScope,
        date: NaiveDate,
    ) -> Result<Vec<TaxRow>, Failure> {
        self.totals(admin, scope, (date, date), "tax").await
    }

    async fn totals<Row: DeserializeOwned>(
        &self,
        admin: &str,
        scope: ReportScope,
        (from, to): (NaiveDate, NaiveDate),
        group_by: &str,
    ) -> Result<Vec<Row>, Failure> {
        let (scope_name, scope_id) = scope.query();
        let request = self
            .http
            .get(self.url("/v1/reports/totals"))
            .bearer_auth(admin)
            .query(&[
                ("from", from.to_string()),
                ("to", to.to_string()),
                (scope_name, scope_id),
                ("group_by", group_by.to_owned()),
            ]);
        let report: TotalsReport<Row> = call(request, StatusCode::OK).await?;
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
