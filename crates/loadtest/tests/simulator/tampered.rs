//! The verifier against a server whose data was changed behind its back
//! after a clean run: a sale deleted, a copy of one added, and one figure of
//! a receipt's money made wrong by a minor unit (a till's tips, the store's
//! rounding, a tax code's tax). Each must fail the verdict, on exactly what
//! was changed.

use tillsync_testkit::spawn_app_for_load;
use uuid::Uuid;

use super::clean_run;

#[tokio::test]
async fn the_verifier_finds_a_sale_deleted_behind_the_servers_back() {
    let app = spawn_app_for_load().await;
    let report = clean_run(&app).await;
    assert!(report.passed(), "{report}");

    // A plain sale nobody voided or refunded, so exactly one row and its
    // total go.
    let deleted: Uuid = sqlx::query_scalar(
        "delete from sales where sale_id = (
             select s.sale_id from sales s
              where s.store_id = $1 and s.kind = 'sale'
                and not exists (select 1 from sales v where v.refers_to_sale_id = s.sale_id)
              limit 1)
         returning sale_id",
    )
    .bind(report.settings.store_id)
    .fetch_one(&app.db)
    .await
    .unwrap();

    let verification = report.verify_again().await.unwrap();
    assert!(!verification.passed(), "sale {deleted} was deleted");
    assert_eq!(verification.lost, 1, "{verification:?}");
    assert_eq!(verification.duplicated, 0);
    assert_eq!(verification.mismatched_totals, 1);
    // The sync counters and the report totals are maintained by ingest and
    // do not see a row deleted behind its back; only the day figures (from
    // the rows) do.
    assert_eq!(verification.sync_state_mismatches, 0);
    assert_eq!(verification.mismatched_report_rows, 0);
}

#[tokio::test]
async fn the_verifier_finds_an_extra_copy_of_a_stored_sale() {
    let app = spawn_app_for_load().await;
    let report = clean_run(&app).await;
    assert!(report.passed(), "{report}");

    // Same content under a new sale_id and an unused seq: one row too many.
    sqlx::query(
        "insert into sales (merchant_id, sale_id, terminal_id, store_id, seq, kind, occurred_at,
                            business_date, currency, total_minor, tax_minor, discount_minor,
                            refers_to_sale_id, body, batch_id)
         select merchant_id, gen_random_uuid(), terminal_id, store_id, seq + 1000000, kind,
                occurred_at, business_date, currency, total_minor, tax_minor, discount_minor,
                refers_to_sale_id, body, batch_id
           from sales where store_id = $1 and kind = 'sale' limit 1",
    )
    .bind(report.settings.store_id)
    .execute(&app.db)
    .await
    .unwrap();

    let verification = report.verify_again().await.unwrap();
    assert!(!verification.passed());
    assert_eq!(verification.duplicated, 1, "{verification:?}");
    assert_eq!(verification.lost, 0);
}

/// Every figure of the run is right, then one new column of each kind of
/// row is off by one: a till's tips in its day row (the till totals), the
/// store's rounding (a store delta, as ingest writes them), and one code's
/// tax on one till's day (which the till's and the store's tax rows both
/// read). The day check, counted from the stored sales, stays right.
#[tokio::test]
async fn the_verifier_finds_a_figure_of_the_receipts_money_off_by_one() {
    let app = spawn_app_for_load().await;
    let report = clean_run(&app).await;
    assert!(report.passed(), "{report}");
    let store_id = report.settings.store_id;
    // The till rows below are tampered with in place: folded first.
    app.folded().await;

    let (terminal_id, tips): (Uuid, i64) = sqlx::query_as(
        "update sales_day_totals t set tips_minor = t.tips_minor + 1
           from (select terminal_id, business_date, currency from sales_day_totals
                  where store_id = $1 and currency = 'EUR' and tips_minor > 0
                  order by sales_count desc limit 1) one
          where (t.terminal_id, t.business_date, t.currency)
              = (one.terminal_id, one.business_date, one.currency)
         returning t.terminal_id, t.tips_minor - 1",
    )
    .bind(store_id)
    .fetch_one(&app.db)
    .await
    .unwrap();
    sqlx::query(
        "insert into store_day_deltas
                (merchant_id, batch_id, store_id, business_date, currency, sales_count,
                 refunds_count, voids_count, gross_minor, refunds_minor, discounts_minor,
                 tax_minor, rounding_minor)
         select merchant_id, gen_random_uuid(), store_id, max(business_date), 'EUR', 0,
                0, 0, 0, 0, 0, 0, 1
           from sales where store_id = $1 group by merchant_id, store_id",
    )
    .bind(store_id)
    .execute(&app.db)
    .await
    .unwrap();
    let taxed = sqlx::query(
        "update tax_day_totals set tax_minor = tax_minor + 1
          where ctid = (select ctid from tax_day_totals
                         where store_id = $1 and tax_code = 'DE-7'
                         order by sales_count desc limit 1)",
    )
    .bind(store_id)
    .execute(&app.db)
    .await
    .unwrap();
    assert_eq!(taxed.rows_affected(), 1);

    let verification = report.verify_again().await.unwrap();
    assert!(!verification.passed(), "{verification:?}");
    let rows = (
        verification.mismatched_report_rows,
        verification.mismatched_tax_rows,
    );
    assert_eq!(rows, (2, 2), "{:#?}", verification.discrepancies);
    let held = (
        verification.lost,
        verification.duplicated,
        verification.mismatched_totals,
    );
    assert_eq!(held, (0, 0, 0), "{verification:?}");
    let listed = |check: &str, till: Option<Uuid>, what: &str| {
        verification
            .discrepancies
            .iter()
            .any(|d| d.check == check && d.terminal_id == till && d.detail.contains(what))
    };
    let tips_wrong = format!("tips_minor expected {tips}, server {}", tips + 1);
    assert!(listed("report_totals", Some(terminal_id), &tips_wrong));
    assert!(listed("report_totals", None, "rounding_minor expected"));
    assert!(listed(
        "tax_totals",
        None,
        "DE-7 at 700 bp: tax_minor expected"
    ));
}
