//! What the simulator's tests look up or change in the server's database
//! directly, behind the API: counts to check the verdict against, and the
//! loss of acknowledged sales.

use std::time::Duration;

use sqlx::PgPool;
use tillsync_loadtest::Report;
use uuid::Uuid;

/// Sale rows of the run's store, counted in the database itself, so the
/// verdict is checked against something the simulator did not compute.
pub async fn rows_in_store(db: &PgPool, report: &Report) -> i64 {
    sqlx::query_scalar("select count(*) from sales where store_id = $1")
        .bind(report.settings.store_id)
        .fetch_one(db)
        .await
        .unwrap()
}

/// Open exceptions of one kind in the run's store, counted in the database.
pub async fn open_exceptions(db: &PgPool, report: &Report, kind: &str) -> i64 {
    sqlx::query_scalar(
        "select count(*) from exceptions where store_id = $1 and kind = $2 and resolved_at is null",
    )
    .bind(report.settings.store_id)
    .bind(kind)
    .fetch_one(db)
    .await
    .unwrap()
}

/// The store of the run under way, once the server holds `count` of its
/// sales (provisioning takes longer on a busy machine). Gives up after a
/// minute.
pub async fn store_with_sales(db: &PgPool, count: i64) -> Uuid {
    for _ in 0..600 {
        let store: Option<Uuid> = sqlx::query_scalar(
            "select store_id from sales group by store_id having count(*) >= $1",
        )
        .bind(count)
        .fetch_optional(db)
        .await
        .unwrap();
        if let Some(store_id) = store {
            return store_id;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no store with {count} sales after a minute");
}

/// Forgets each till's last `count` sales with its sync state and their
/// day totals, in one transaction per till that holds the till's sync row
/// (so no batch of it commits in between): what a failover to a lagging
/// replica or a restore from an older backup would do to sales already
/// acknowledged. The run has plain sales only, so the till's day totals,
/// the store's (a negative delta, folded like any other) and the tax totals,
/// which the verdict reads, are all a lost sale leaves behind; the
/// receipt's split is worked out from its body, as the server's own day
/// check does.
pub async fn lose_latest_sales(db: &PgPool, store_id: Uuid, count: i64) -> i64 {
    // The till totals are taken back in place below: first let the fold
    // move the store's deltas written so far into them (not those pushed
    // meanwhile: the tills keep selling, and the loss must come while they
    // do).
    let written: Vec<Uuid> =
        sqlx::query_scalar("select batch_id from store_day_deltas where store_id = $1")
            .bind(store_id)
            .fetch_all(db)
            .await
            .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while sqlx::query_scalar::<_, i64>(
        "select count(*) from store_day_deltas where store_id = $1 and batch_id = any($2)",
    )
    .bind(store_id)
    .bind(&written)
    .fetch_one(db)
    .await
    .unwrap()
        > 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the store's deltas were never folded"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let tills: Vec<Uuid> =
        sqlx::query_scalar("select terminal_id from terminals where store_id = $1")
            .bind(store_id)
            .fetch_all(db)
            .await
            .unwrap();
    let mut lost = 0;
    for till in tills {
        let mut tx = db.begin().await.unwrap();
        let highest: i64 = sqlx::query_scalar(
            "select highest_seq from terminal_sync where terminal_id = $1 for update",
        )
        .bind(till)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        let cut = (highest - count).max(0);
        lost += sqlx::query_scalar::<_, i64>(
            "with gone as (
                 delete from sales where terminal_id = $1 and seq > $2
                 returning merchant_id, store_id, business_date, currency, total_minor,
                           discount_minor, tax_minor, body
             ), split as (
                 select g.*, l.items, l.gift_cards,
                        coalesce((g.body ->> 'tip_minor')::int8, 0) as tips,
                        coalesce((g.body ->> 'service_charge_minor')::int8, 0) as service,
                        coalesce((g.body ->> 'rounding_minor')::int8, 0) as rounding,
                        case when coalesce((g.body ->> 'tax_included')::boolean, true)
                             then g.tax_minor else 0 end as tax_inside
                   from gone g
                  cross join lateral (
                        select coalesce(sum((x ->> 'amount_minor')::int8)
                                        filter (where coalesce(x ->> 'kind', 'item') = 'item'), 0)
                                 as items,
                               coalesce(sum((x ->> 'amount_minor')::int8)
                                        filter (where x ->> 'kind' = 'gift_card'), 0) as gift_cards
                          from jsonb_array_elements(g.body -> 'lines') x) l
             ), per_day as (
                 select merchant_id, store_id, business_date, currency, count(*) as sales,
                        sum(total_minor) as gross, sum(discount_minor) as discounts,
                        sum(tax_minor) as tax, sum(items) as items,
                        sum(gift_cards) as gift_cards, sum(tips) as tips,
                        sum(service) as service, sum(rounding) as rounding,
                        sum(items + service - tax_inside) as net_sales
                   from split group by merchant_id, store_id, business_date, currency
             ), store_rolled_back as (
                 insert into store_day_deltas
                        (merchant_id, batch_id, store_id, business_date, currency, sales_count,
                         refunds_count, voids_count, gross_minor, refunds_minor,
                         discounts_minor, tax_minor, item_sales_minor, gift_card_sales_minor,
                         tips_minor, service_charges_minor, rounding_minor, net_sales_minor)
                 select merchant_id, gen_random_uuid(), store_id, business_date, currency,
                        -sales, 0, 0, -gross, 0, -discounts, -tax, -items, -gift_cards, -tips,
                        -service, -rounding, -net_sales
                   from per_day
                 returning 1
             ), rolled_back as (
                 update sales_day_totals t
                    set sales_count = t.sales_count - p.sales,
                        gross_minor = t.gross_minor - p.gross,
                        discounts_minor = t.discounts_minor - p.discounts,
                        tax_minor = t.tax_minor - p.tax,
                        item_sales_minor = t.item_sales_minor - p.items,
                        gift_card_sales_minor = t.gift_card_sales_minor - p.gift_cards,
                        tips_minor = t.tips_minor - p.tips,
                        service_charges_minor = t.service_charges_minor - p.service,
                        rounding_minor = t.rounding_minor - p.rounding,
                        net_sales_minor = t.net_sales_minor - p.net_sales
                   from per_day p
                  where t.terminal_id = $1 and t.business_date = p.business_date
                    and t.currency = p.currency
                 returning 1
             ), per_code as (
                 select g.business_date, g.currency, x ->> 'code' as code,
                        (x ->> 'rate_bp')::int8 as rate_bp, count(*) as sales,
                        sum((x ->> 'amount_minor')::int8) as tax
                   from gone g cross join lateral jsonb_array_elements(g.body -> 'taxes') x
                  group by 1, 2, 3, 4
             ), taxes_rolled_back as (
                 update tax_day_totals t
                    set sales_count = t.sales_count - p.sales, tax_minor = t.tax_minor - p.tax
                   from per_code p
                  where t.terminal_id = $1 and t.business_date = p.business_date
                    and t.currency = p.currency and t.tax_code = p.code
                    and t.rate_bp = p.rate_bp
                 returning 1
             )
             select count(*) from gone",
        )
        .bind(till)
        .bind(cut)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        sqlx::query(
            "update terminal_sync
                set highest_seq = $2, contiguous_through_seq = least(contiguous_through_seq, $2),
                    sales_stored = (select count(*) from sales where terminal_id = $1)
              where terminal_id = $1",
        )
        .bind(till)
        .bind(cut)
        .execute(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
    lost
}
