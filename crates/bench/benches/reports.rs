//! Report latency at size: 5 million sales across 50 stores and 500 tills,
//! then p50/p99 over 100 calls of (1) totals for one store over 31 days
//! grouped by day, (2) the whole merchant over 31 days grouped by store and
//! (3) by tax code, end to end over HTTP against the release binary
//! (`TILLSYNC_BIN` names another: one that does not know `group_by=tax`
//! skips (3)).
//!
//! Run: `scripts/bench-reports` (or, with the release binary built,
//! `cargo bench -p tillsync-bench --bench reports`).
//! The data set is generated once into the database `tillsync_bench_reports`
//! and reused (BENCH_REGENERATE=1 makes it anew): sales are written with
//! `generate_series` (60 days, one sale in 20 a refund, one in 50 a void of
//! the sale before it, one in 3 splitting its tax by two codes), and the
//! totals are computed by the statements the latest totals migration
//! rebuilds them with (migrations/20261208000001_receipt_money.sql), which
//! the test suite checks against the totals ingest keeps. Settings: BENCH_SALES_PER_TILL (10000),
//! BENCH_CALLS (100), TILLSYNC_TEST_SERVER_URL.

use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Executor, PgPool};
use tillsync_bench::setting;
use tillsync_testkit::binary::Binary;
use tillsync_testkit::database::server_url;
use uuid::Uuid;

const DATABASE: &str = "tillsync_bench_reports";
const STORES: i64 = 50;
const TILLS_PER_STORE: i64 = 10;
const DAYS: i64 = 60;
const TIMEZONES: [&str; 5] = [
    "Europe/Berlin",
    "Europe/London",
    "America/New_York",
    "Asia/Tokyo",
    "Australia/Sydney",
];

async fn generate(pool: &PgPool, sales_per_till: i64) -> (Uuid, String) {
    let merchant_id = Uuid::now_v7();
    let (admin_token, hash) = tillsync::domain::token::generate(
        tillsync::domain::token::TokenKind::MerchantAdmin,
        merchant_id,
    );
    let mut tx = pool.begin().await.unwrap();
    tillsync::db::tenancy::insert_merchant(&mut tx, merchant_id, "Bench Retail", &hash)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    sqlx::query(
        "insert into stores (merchant_id, store_id, name, timezone, currency)
         select $1, gen_random_uuid(), 'Store ' || n, ($2::text[])[1 + n % 5], 'EUR'
           from generate_series(1, $3::int8) n",
    )
    .bind(merchant_id)
    .bind(TIMEZONES.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    .bind(STORES)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "insert into store_day_rules (merchant_id, store_id, effective_from, timezone, day_starts_at)
         select merchant_id, store_id, created_at, timezone, business_day_starts_at
           from stores where merchant_id = $1",
    )
    .bind(merchant_id)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "insert into terminals (merchant_id, terminal_id, store_id, name, token_hash)
         select $1, gen_random_uuid(), s.store_id, 'Till ' || n, sha256(gen_random_uuid()::text::bytea)
           from stores s, generate_series(1, $2::int8) n where s.merchant_id = $1",
    )
    .bind(merchant_id)
    .bind(TILLS_PER_STORE)
    .execute(pool)
    .await
    .unwrap();
    println!(
        "  generating {} sales ...",
        STORES * TILLS_PER_STORE * sales_per_till
    );
    let started = Instant::now();
    // One statement per store keeps each transaction a manageable size.
    let stores: Vec<Uuid> =
        sqlx::query_scalar("select store_id from stores where merchant_id = $1")
            .bind(merchant_id)
            .fetch_all(pool)
            .await
            .unwrap();
    for store_id in stores {
        sqlx::query(
            r#"with raw as (
                 select t.merchant_id, t.terminal_id, t.store_id, st.timezone, g.seq,
                        md5(t.terminal_id::text || ':' || g.seq)::uuid as sale_id,
                        md5(t.terminal_id::text || ':' || (g.seq - 1))::uuid as previous_id,
                        date_trunc('day', now()) - interval '1 day' * $3
                          + interval '1 second' * ((g.seq - 1) * ($3 * 86400 / $2) + (g.seq * 7919) % 600)
                          as occurred_at_base,
                        1000 + (g.seq * 37) % 9000 as total,
                        case when g.seq % 50 = 0 then 'void' when g.seq % 20 = 0 then 'refund' else 'sale' end as kind
                   from terminals t
                   join stores st on st.merchant_id = t.merchant_id and st.store_id = t.store_id
                  cross join generate_series(1, $2::int8) g(seq)
                  where t.merchant_id = $1 and t.store_id = $4
               ), shaped as (
                 select r.*,
                        -- A void mirrors the sale before it (its amounts), at its own time.
                        case when kind = 'void' then 1000 + ((seq - 1) * 37) % 9000 else total end as amount
                   from raw r
               )
               insert into sales (merchant_id, sale_id, terminal_id, store_id, seq, kind, occurred_at,
                                  business_date, currency, total_minor, tax_minor, discount_minor,
                                  refers_to_sale_id, body, batch_id)
               select merchant_id, sale_id, terminal_id, store_id, seq, kind, occurred_at_base,
                      (occurred_at_base at time zone timezone)::date, 'EUR', amount, amount / 10, 0,
                      case when kind = 'void' then previous_id end,
                      jsonb_build_object(
                        'sale_id', sale_id, 'seq', seq, 'kind', kind,
                        'occurred_at', to_char(occurred_at_base at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                        'currency', 'EUR',
                        'lines', jsonb_build_array(
                          jsonb_build_object('sku', 'SKU-' || (seq % 97), 'quantity', 1, 'amount_minor', amount - amount / 3),
                          jsonb_build_object('sku', 'SKU-' || (seq % 89), 'quantity', 2, 'amount_minor', amount / 3)),
                        'tenders', jsonb_build_array(jsonb_build_object(
                          'method', (array['card', 'cash', 'voucher'])[1 + seq % 3], 'amount_minor', amount)),
                        'total_minor', amount, 'tax_minor', amount / 10, 'discount_minor', 0)
                        || case when kind = 'void' then jsonb_build_object('refers_to_sale_id', previous_id) else '{}'::jsonb end
                        || case when kind = 'sale' and seq % 3 = 0 then jsonb_build_object('taxes', jsonb_build_array(
                             jsonb_build_object('code', 'DE-19', 'rate_bp', 1900, 'amount_minor', amount / 20),
                             jsonb_build_object('code', 'DE-7', 'rate_bp', 700, 'amount_minor', amount / 10 - amount / 20)))
                           else '{}'::jsonb end,
                      gen_random_uuid()
                 from shaped"#,
        )
        .bind(merchant_id)
        .bind(sales_per_till)
        .bind(DAYS)
        .bind(store_id)
        .execute(pool)
        .await
        .unwrap();
    }
    sqlx::query(
        "insert into terminal_sync (merchant_id, terminal_id, highest_seq, contiguous_through_seq, sales_stored, last_batch_at)
         select merchant_id, terminal_id, $2, $2, $2, now() from terminals where merchant_id = $1",
    )
    .bind(merchant_id)
    .bind(sales_per_till)
    .execute(pool)
    .await
    .unwrap();
    println!(
        "  sales written in {:.0} s; computing totals ...",
        started.elapsed().as_secs_f64()
    );
    // Each void takes out the sale before it, as the resolver would record.
    pool.execute(
        "insert into void_effects (merchant_id, target_sale_id, void_sale_id)
         select merchant_id, refers_to_sale_id, sale_id from sales where kind = 'void'",
    )
    .await
    .unwrap();
    let mut rebuild = pool.begin().await.unwrap();
    sqlx::raw_sql(&tillsync_testkit::database::rebuild_totals_sql())
        .execute(&mut *rebuild)
        .await
        .unwrap();
    rebuild.commit().await.unwrap();
    pool.execute("vacuum analyze").await.unwrap();
    println!(
        "  data set ready after {:.0} s",
        started.elapsed().as_secs_f64()
    );
    (merchant_id, admin_token)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index].as_secs_f64() * 1000.0
}

async fn measure(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    calls: i64,
) -> (f64, f64, usize) {
    for _ in 0..10 {
        client.get(url).bearer_auth(token).send().await.unwrap();
    }
    let mut latencies = Vec::new();
    let mut rows = 0;
    for _ in 0..calls {
        let started = Instant::now();
        let response = client.get(url).bearer_auth(token).send().await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
        let body: Value = response.json().await.unwrap();
        latencies.push(started.elapsed());
        rows = body["rows"].as_array().unwrap().len();
    }
    latencies.sort();
    (
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        rows,
    )
}

#[tokio::main]
async fn main() {
    let sales_per_till: i64 = setting("BENCH_SALES_PER_TILL", 10_000);
    let calls: i64 = setting("BENCH_CALLS", 100);
    let server_url = server_url();
    let binary = Binary::release();
    let database_url = format!("{server_url}/{DATABASE}");
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&format!("{server_url}/postgres"))
        .await
        .unwrap();
    let exists: bool =
        sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
            .bind(DATABASE)
            .fetch_one(&admin)
            .await
            .unwrap();
    let regenerate = std::env::var("BENCH_REGENERATE").is_ok_and(|v| v == "1");
    if regenerate && exists {
        admin
            .execute(format!("drop database {DATABASE} with (force)").as_str())
            .await
            .unwrap();
    }
    println!(
        "reports benchmark: {STORES} stores x {TILLS_PER_STORE} tills x {sales_per_till} sales, {calls} calls per query"
    );
    tillsync::db::create_and_migrate(&database_url.parse().unwrap())
        .await
        .unwrap();
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&database_url)
        .await
        .unwrap();
    // The admin token is not stored in clear: a reused data set gets a fresh one.
    let stored: i64 = sqlx::query_scalar("select count(*) from sales")
        .fetch_one(&pool)
        .await
        .unwrap();
    let (merchant_id, token) = if stored == 0 {
        generate(&pool, sales_per_till).await
    } else {
        let merchant_id: Uuid = sqlx::query_scalar("select merchant_id from merchants limit 1")
            .fetch_one(&pool)
            .await
            .unwrap();
        let (token, hash) = tillsync::domain::token::generate(
            tillsync::domain::token::TokenKind::MerchantAdmin,
            merchant_id,
        );
        sqlx::query("insert into admin_tokens (merchant_id, token_hash) values ($1, $2)")
            .bind(merchant_id)
            .bind(hash.as_bytes())
            .execute(&pool)
            .await
            .unwrap();
        println!("  reusing the data set in {DATABASE} ({stored} sales)");
        (merchant_id, token)
    };
    let store_id: Uuid = sqlx::query_scalar(
        "select store_id from stores where merchant_id = $1 order by store_id limit 1",
    )
    .bind(merchant_id)
    .fetch_one(&pool)
    .await
    .unwrap();

    let server = tokio::task::block_in_place(|| {
        binary.serve_quietly(
            "warn",
            &[
                ("DATABASE_URL", &database_url),
                ("TILLSYNC_NO_MIGRATE", "true"),
            ],
        )
    });
    let base = &server.address;
    let client = reqwest::Client::new();
    let to = chrono::Utc::now().date_naive() - chrono::Duration::days(1);
    let from = to - chrono::Duration::days(30);
    let one_store =
        format!("{base}/v1/reports/totals?from={from}&to={to}&store_id={store_id}&group_by=day");
    let by_store = format!("{base}/v1/reports/totals?from={from}&to={to}&group_by=store");
    let (p50, p99, rows) = measure(&client, &one_store, &token, calls).await;
    println!(
        "  one store, 31 days, group_by=day:     p50 {p50:6.2} ms  p99 {p99:6.2} ms  ({rows} rows)"
    );
    let (p50, p99, rows) = measure(&client, &by_store, &token, calls).await;
    println!(
        "  whole merchant, 31 days, by store:    p50 {p50:6.2} ms  p99 {p99:6.2} ms  ({rows} rows)"
    );
    let by_tax = format!("{base}/v1/reports/totals?from={from}&to={to}&group_by=tax");
    let known = client
        .get(&by_tax)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    if known.status() == 200 {
        let (p50, p99, rows) = measure(&client, &by_tax, &token, calls).await;
        println!(
            "  whole merchant, 31 days, by tax code: p50 {p50:6.2} ms  p99 {p99:6.2} ms  ({rows} rows)"
        );
    } else {
        println!(
            "  whole merchant, 31 days, by tax code: this binary answers {}",
            known.status()
        );
    }
}
