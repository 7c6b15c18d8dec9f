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
/// the store's and the tax totals, which the verdict reads, are all a lost
/// sale leaves behind: taken back as a negative delta of the till, which
/// the fold adds to its totals and the store's like any other (the till's
/// row of a day may not be folded yet). The receipt's split is worked out
/// from its body, as the server's own day check does.
pub async fn lose_latest_sales(db: &PgPool, store_id: Uuid, count: i64) -> i64 {
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
                           discount_minor, tax_minor, body::jsonb as body
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
             ), per_code as (
                 select g.business_date, g.currency, x ->> 'code' as code,
                        (x ->> 'rate_bp')::int8 as rate_bp, count(*) as sales,
                        sum((x ->> 'amount_minor')::int8) as tax
                   from gone g cross join lateral jsonb_array_elements(g.body -> 'taxes') x
                  group by 1, 2, 3, 4
             ), rolled_back as (
                 insert into store_day_deltas
                        (merchant_id, batch_id, store_id, business_date, currency, sales_count,
                         refunds_count, voids_count, gross_minor, refunds_minor,
                         discounts_minor, tax_minor, item_sales_minor, gift_card_sales_minor,
                         tips_minor, service_charges_minor, rounding_minor, net_sales_minor,
                         terminal_id, hours, tenders, taxes)
                 select d.merchant_id, gen_random_uuid(), d.store_id, d.business_date,
                        d.currency, -d.sales, 0, 0, -d.gross, 0, -d.discounts, -d.tax, -d.items,
                        -d.gift_cards, -d.tips, -d.service, -d.rounding, -d.net_sales, $1,
                        '{}', '{}',
                        array(select row(c.code, c.rate_bp, -c.sales, 0, -c.tax)::till_tax_delta
                                from per_code c
                               where (c.business_date, c.currency)
                                   = (d.business_date, d.currency))
                   from per_day d
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
