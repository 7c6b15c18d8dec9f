-- Report totals, kept current by ingest in the batch's own transaction so
-- GET /v1/reports/totals never scans the sales table. Keyed by terminal: a
-- till's batches are already serialised, so no two transactions ever
-- contend for the same totals row. Measures follow the report definitions:
-- a voided sale (or refund) counts nowhere, the void counts in voids_count
-- on its own business day; tax_minor is sales' tax minus refunds' tax.

create table sales_day_totals (
    merchant_id     uuid not null,
    terminal_id     uuid not null,
    business_date   date not null,
    currency        text not null,
    store_id        uuid not null,
    sales_count     bigint not null default 0,
    refunds_count   bigint not null default 0,
    voids_count     bigint not null default 0,
    gross_minor     bigint not null default 0,
    refunds_minor   bigint not null default 0,
    discounts_minor bigint not null default 0,
    tax_minor       bigint not null default 0,
    primary key (merchant_id, terminal_id, business_date, currency)
);

create index sales_day_totals_by_date on sales_day_totals (merchant_id, business_date);
create index sales_day_totals_by_store on sales_day_totals (merchant_id, store_id, business_date);

create table sales_hour_totals (
    merchant_id     uuid not null,
    terminal_id     uuid not null,
    business_date   date not null,
    hour            smallint not null check (hour between 0 and 23),
    currency        text not null,
    store_id        uuid not null,
    sales_count     bigint not null default 0,
    refunds_count   bigint not null default 0,
    voids_count     bigint not null default 0,
    gross_minor     bigint not null default 0,
    refunds_minor   bigint not null default 0,
    discounts_minor bigint not null default 0,
    tax_minor       bigint not null default 0,
    primary key (merchant_id, terminal_id, business_date, hour, currency)
);

create index sales_hour_totals_by_date on sales_hour_totals (merchant_id, business_date);

-- Money by tender method. A sale paid with two methods counts once under each.
create table tender_day_totals (
    merchant_id   uuid not null,
    terminal_id   uuid not null,
    business_date date not null,
    currency      text not null,
    method        text not null,
    store_id      uuid not null,
    sales_count   bigint not null default 0,
    refunds_count bigint not null default 0,
    gross_minor   bigint not null default 0,
    refunds_minor bigint not null default 0,
    primary key (merchant_id, terminal_id, business_date, currency, method)
);

create index tender_day_totals_by_date on tender_day_totals (merchant_id, business_date);

-- GET /v1/sales pages newest first by (occurred_at, sale_id).
create index sales_newest_first on sales (merchant_id, occurred_at desc, sale_id desc);

-- Sales stored before this migration get their totals now.
with judged as (
    select s.*,
           extract(hour from s.occurred_at at time zone st.timezone)::smallint as local_hour,
           exists (select 1 from sales v
                    where v.merchant_id = s.merchant_id
                      and v.refers_to_sale_id = s.sale_id
                      and v.kind = 'void') as voided
      from sales s
      join stores st on st.merchant_id = s.merchant_id and st.store_id = s.store_id
), hourly as (
    insert into sales_hour_totals
    select merchant_id, terminal_id, business_date, local_hour, currency, store_id,
           count(*) filter (where kind = 'sale' and not voided),
           count(*) filter (where kind = 'refund' and not voided),
           count(*) filter (where kind = 'void'),
           coalesce(sum(total_minor) filter (where kind = 'sale' and not voided), 0),
           coalesce(sum(total_minor) filter (where kind = 'refund' and not voided), 0),
           coalesce(sum(discount_minor) filter (where kind = 'sale' and not voided), 0),
           coalesce(sum(tax_minor) filter (where kind = 'sale' and not voided), 0)
             - coalesce(sum(tax_minor) filter (where kind = 'refund' and not voided), 0)
      from judged
     group by merchant_id, terminal_id, business_date, local_hour, currency, store_id
    returning *
), daily as (
    insert into sales_day_totals
    select merchant_id, terminal_id, business_date, currency, store_id,
           sum(sales_count), sum(refunds_count), sum(voids_count), sum(gross_minor),
           sum(refunds_minor), sum(discounts_minor), sum(tax_minor)
      from hourly
     group by merchant_id, terminal_id, business_date, currency, store_id
    returning 1
)
insert into tender_day_totals
select j.merchant_id, j.terminal_id, j.business_date, j.currency, t.method, j.store_id,
       count(distinct j.sale_id) filter (where j.kind = 'sale'),
       count(distinct j.sale_id) filter (where j.kind = 'refund'),
       coalesce(sum(t.amount_minor) filter (where j.kind = 'sale'), 0),
       coalesce(sum(t.amount_minor) filter (where j.kind = 'refund'), 0)
  from judged j
 cross join lateral jsonb_to_recordset(j.body -> 'tenders') as t(method text, amount_minor bigint)
 where not j.voided and j.kind in ('sale', 'refund')
 group by j.merchant_id, j.terminal_id, j.business_date, j.currency, t.method, j.store_id;
