-- Issue 24, a receipt's money as a back office counts it: the totals split
-- a receipt as Square's sales summary does (item sales, gift cards sold,
-- tips, service charges, cash rounding, net sales) and by tax code (German
-- fiscal reports by VAT rate), and a store's business day may start after
-- midnight (Toast's closeout hour), by settings dated so that every sale
-- falls by the settings in force when it occurred.
--
-- Additive for an older binary beside it (docs/deploy.md): the `_v2` type
-- and functions stay; the new ones carry a `_v3` name.

-- A store's settings as the API shows them: the latest, possibly not in
-- force yet (store_day_rules says from when).
alter table stores add column business_day_starts_at time not null default '00:00';

-- How a store dates its sales, over time: each row is in force from
-- `effective_from` until the next one; a moment before the first row falls
-- by the first (src/domain/calendar.rs). Rows are only ever added, dated at
-- least CHANGE_DELAY after their PATCH, so a sale stored keeps its date.
create table store_day_rules (
    merchant_id    uuid not null,
    store_id       uuid not null,
    effective_from timestamptz not null,
    timezone       text not null,
    day_starts_at  time not null,
    primary key (merchant_id, store_id, effective_from),
    foreign key (merchant_id, store_id) references stores (merchant_id, store_id)
);

insert into store_day_rules (merchant_id, store_id, effective_from, timezone, day_starts_at)
select merchant_id, store_id, created_at, timezone, business_day_starts_at
  from stores;

-- A sale in a currency other than its store's: stored, counted in its
-- currency's rows, and listed.
alter table exceptions drop constraint exceptions_kind_check;
alter table exceptions add constraint exceptions_kind_check check (kind in (
    'unmatched_reference', 'over_refund', 'refund_of_voided_sale', 'void_of_refunded_sale',
    'void_mismatch', 'duplicate_void', 'void_of_void', 'line_over_returned', 'seq_reused',
    'refused', 'currency_mismatch'));

-- The receipt's split, counted like tax_minor: what sales add, less what
-- refunds take back (src/domain/totals/share.rs).
alter table sales_day_totals
    add column item_sales_minor bigint not null default 0,
    add column gift_card_sales_minor bigint not null default 0,
    add column tips_minor bigint not null default 0,
    add column service_charges_minor bigint not null default 0,
    add column rounding_minor bigint not null default 0,
    add column net_sales_minor bigint not null default 0;
alter table sales_hour_totals
    add column item_sales_minor bigint not null default 0,
    add column gift_card_sales_minor bigint not null default 0,
    add column tips_minor bigint not null default 0,
    add column service_charges_minor bigint not null default 0,
    add column rounding_minor bigint not null default 0,
    add column net_sales_minor bigint not null default 0;
alter table store_day_totals
    add column item_sales_minor bigint not null default 0,
    add column gift_card_sales_minor bigint not null default 0,
    add column tips_minor bigint not null default 0,
    add column service_charges_minor bigint not null default 0,
    add column rounding_minor bigint not null default 0,
    add column net_sales_minor bigint not null default 0;
-- (defaults here too: an older binary's pushes append deltas without them)
alter table store_day_deltas
    add column item_sales_minor bigint not null default 0,
    add column gift_card_sales_minor bigint not null default 0,
    add column tips_minor bigint not null default 0,
    add column service_charges_minor bigint not null default 0,
    add column rounding_minor bigint not null default 0,
    add column net_sales_minor bigint not null default 0;

-- Tax per till, business day, currency and tax code with its rate; a sale
-- that does not split its tax counts all of it under code '' and rate 0.
create table tax_day_totals (
    merchant_id   uuid not null,
    terminal_id   uuid not null,
    business_date date not null,
    currency      text not null,
    tax_code      text not null,
    rate_bp       int8 not null,
    store_id      uuid not null,
    sales_count   bigint not null default 0,
    refunds_count bigint not null default 0,
    tax_minor     bigint not null default 0,
    primary key (merchant_id, terminal_id, business_date, currency, tax_code, rate_bp)
) with (fillfactor = 70);

create index tax_day_totals_by_date on tax_day_totals (merchant_id, business_date);

-- Everything one push stores: `ingest_push_v2` with the receipt's split in
-- the day and hour deltas and the tax deltas. Fields in this order are
-- `PushRow` (src/db/push.rs).
create type ingest_push_v3 as (
    merchant_id uuid, terminal_id uuid, store_id uuid, batch_id uuid,
    seen_highest_seq int8, seen_contiguous int8, seen_sales_stored int8,
    seen_last_batch_at timestamptz,
    highest_seq int8, contiguous int8, sales_stored int8, last_batch_at timestamptz,
    idempotency_key uuid, request_sha256 bytea, response_status int2, response_body bytea,
    sale_id uuid[], seq int8[], kind text[], occurred_at timestamptz[], business_date date[],
    currency text[], total_minor int8[], tax_minor int8[], discount_minor int8[],
    refers_to_sale_id uuid[], body jsonb[],
    conflict_id uuid[], conflict_sale_id uuid[], conflict_payload jsonb[],
    day_date date[], day_currency text[], day_sales int8[], day_refunds int8[], day_voids int8[],
    day_gross int8[], day_refunded int8[], day_discounts int8[], day_tax int8[],
    day_item_sales int8[], day_gift_card_sales int8[], day_tips int8[],
    day_service_charges int8[], day_rounding int8[], day_net_sales int8[],
    hour_date date[], hour int2[], hour_currency text[], hour_sales int8[], hour_refunds int8[],
    hour_voids int8[], hour_gross int8[], hour_refunded int8[], hour_discounts int8[],
    hour_tax int8[], hour_item_sales int8[], hour_gift_card_sales int8[], hour_tips int8[],
    hour_service_charges int8[], hour_rounding int8[], hour_net_sales int8[],
    tender_date date[], tender_currency text[], tender_method text[], tender_sales int8[],
    tender_refunds int8[], tender_gross int8[], tender_refunded int8[],
    tax_date date[], tax_currency text[], tax_code text[], tax_rate_bp int8[], tax_sales int8[],
    tax_refunds int8[], tax_amount int8[],
    -- `exception_sale_ids`: each exception's sale ids, comma-separated (a
    -- composite holds no ragged array)
    exception_kind text[], exception_subject text[], exception_sale_ids text[],
    exception_seq int8[], exception_code text[], exception_detail text[],
    exception_payload text[],
    settled_seq int8[], settled_reason text[]
);

-- `ingest_write_set_v2` with the receipt's split in the day, hour and store
-- deltas and the tax deltas in tax_day_totals.
create function ingest_write_set_v3(p_pushes ingest_push_v3[])
returns int8[]
language plpgsql
set plan_cache_mode to 'force_generic_plan'
set enable_hashjoin to 'off'
set enable_mergejoin to 'off'
set enable_seqscan to 'off'
as $$
#variable_conflict use_column
declare
    written int8[];
    has_refs boolean;
    has_flags boolean;
    has_settled boolean;
begin
    -- One push per till is written, so no two rows of a totals upsert name
    -- the same total (if they did, the statement would fail and the group
    -- be written push by push).
    with moved as (
        update terminal_sync t
           set highest_seq = p.highest_seq, contiguous_through_seq = p.contiguous,
               sales_stored = p.sales_stored, last_batch_at = p.last_batch_at
          from unnest(p_pushes) with ordinality as p
         where t.merchant_id = p.merchant_id and t.terminal_id = p.terminal_id
           and t.highest_seq = p.seen_highest_seq
           and t.contiguous_through_seq = p.seen_contiguous
           and t.sales_stored = p.seen_sales_stored
           and t.last_batch_at is not distinct from p.seen_last_batch_at
        returning p.*
    ), keys as (
        insert into idempotency_keys
               (merchant_id, terminal_id, idempotency_key, request_sha256, response_status,
                response_body)
        select p.merchant_id, p.terminal_id, p.idempotency_key, p.request_sha256,
               p.response_status, p.response_body
          from moved p
    ), new_sales as (
        insert into sales (merchant_id, sale_id, terminal_id, store_id, seq, kind, occurred_at,
                           business_date, currency, total_minor, tax_minor, discount_minor,
                           refers_to_sale_id, body, batch_id)
        select p.merchant_id, s.sale_id, p.terminal_id, p.store_id, s.seq, s.kind, s.occurred_at,
               s.business_date, s.currency, s.total_minor, s.tax_minor, s.discount_minor,
               s.refers_to_sale_id, s.body, p.batch_id
          from moved p
         cross join lateral unnest(p.sale_id, p.seq, p.kind, p.occurred_at, p.business_date,
                                   p.currency, p.total_minor, p.tax_minor, p.discount_minor,
                                   p.refers_to_sale_id, p.body)
               as s(sale_id, seq, kind, occurred_at, business_date, currency, total_minor,
                    tax_minor, discount_minor, refers_to_sale_id, body)
    ), conflicts as (
        insert into sale_conflicts (merchant_id, conflict_id, terminal_id, sale_id, batch_id, payload)
        select p.merchant_id, c.conflict_id, p.terminal_id, c.sale_id, p.batch_id, c.payload
          from moved p
         cross join lateral unnest(p.conflict_id, p.conflict_sale_id, p.conflict_payload)
               as c(conflict_id, sale_id, payload)
    ), deltas as (
        insert into store_day_deltas
               (merchant_id, batch_id, store_id, business_date, currency, sales_count,
                refunds_count, voids_count, gross_minor, refunds_minor, discounts_minor, tax_minor,
                item_sales_minor, gift_card_sales_minor, tips_minor, service_charges_minor,
                rounding_minor, net_sales_minor)
        select p.merchant_id, p.batch_id, p.store_id, d.*
          from moved p
         cross join lateral unnest(p.day_date, p.day_currency, p.day_sales, p.day_refunds,
                                   p.day_voids, p.day_gross, p.day_refunded, p.day_discounts,
                                   p.day_tax, p.day_item_sales, p.day_gift_card_sales, p.day_tips,
                                   p.day_service_charges, p.day_rounding, p.day_net_sales) as d
    ), days as (
        insert into sales_day_totals as t
               (merchant_id, terminal_id, store_id, business_date, currency, sales_count,
                refunds_count, voids_count, gross_minor, refunds_minor, discounts_minor, tax_minor,
                item_sales_minor, gift_card_sales_minor, tips_minor, service_charges_minor,
                rounding_minor, net_sales_minor)
        select p.merchant_id, p.terminal_id, p.store_id, d.*
          from moved p
         cross join lateral unnest(p.day_date, p.day_currency, p.day_sales, p.day_refunds,
                                   p.day_voids, p.day_gross, p.day_refunded, p.day_discounts,
                                   p.day_tax, p.day_item_sales, p.day_gift_card_sales, p.day_tips,
                                   p.day_service_charges, p.day_rounding, p.day_net_sales) as d
        on conflict (merchant_id, terminal_id, business_date, currency) do update set
            sales_count = t.sales_count + excluded.sales_count,
            refunds_count = t.refunds_count + excluded.refunds_count,
            voids_count = t.voids_count + excluded.voids_count,
            gross_minor = t.gross_minor + excluded.gross_minor,
            refunds_minor = t.refunds_minor + excluded.refunds_minor,
            discounts_minor = t.discounts_minor + excluded.discounts_minor,
            tax_minor = t.tax_minor + excluded.tax_minor,
            item_sales_minor = t.item_sales_minor + excluded.item_sales_minor,
            gift_card_sales_minor = t.gift_card_sales_minor + excluded.gift_card_sales_minor,
            tips_minor = t.tips_minor + excluded.tips_minor,
            service_charges_minor = t.service_charges_minor + excluded.service_charges_minor,
            rounding_minor = t.rounding_minor + excluded.rounding_minor,
            net_sales_minor = t.net_sales_minor + excluded.net_sales_minor
    ), hours as (
        insert into sales_hour_totals as t
               (merchant_id, terminal_id, store_id, business_date, hour, currency, sales_count,
                refunds_count, voids_count, gross_minor, refunds_minor, discounts_minor, tax_minor,
                item_sales_minor, gift_card_sales_minor, tips_minor, service_charges_minor,
                rounding_minor, net_sales_minor)
        select p.merchant_id, p.terminal_id, p.store_id, h.*
          from moved p
         cross join lateral unnest(p.hour_date, p.hour, p.hour_currency, p.hour_sales,
                                   p.hour_refunds, p.hour_voids, p.hour_gross, p.hour_refunded,
                                   p.hour_discounts, p.hour_tax, p.hour_item_sales,
                                   p.hour_gift_card_sales, p.hour_tips, p.hour_service_charges,
                                   p.hour_rounding, p.hour_net_sales) as h
        on conflict (merchant_id, terminal_id, business_date, hour, currency) do update set
            sales_count = t.sales_count + excluded.sales_count,
            refunds_count = t.refunds_count + excluded.refunds_count,
            voids_count = t.voids_count + excluded.voids_count,
            gross_minor = t.gross_minor + excluded.gross_minor,
            refunds_minor = t.refunds_minor + excluded.refunds_minor,
            discounts_minor = t.discounts_minor + excluded.discounts_minor,
            tax_minor = t.tax_minor + excluded.tax_minor,
            item_sales_minor = t.item_sales_minor + excluded.item_sales_minor,
            gift_card_sales_minor = t.gift_card_sales_minor + excluded.gift_card_sales_minor,
            tips_minor = t.tips_minor + excluded.tips_minor,
            service_charges_minor = t.service_charges_minor + excluded.service_charges_minor,
            rounding_minor = t.rounding_minor + excluded.rounding_minor,
            net_sales_minor = t.net_sales_minor + excluded.net_sales_minor
    ), tenders as (
        insert into tender_day_totals as t
               (merchant_id, terminal_id, store_id, business_date, currency, method, sales_count,
                refunds_count, gross_minor, refunds_minor)
        select p.merchant_id, p.terminal_id, p.store_id, m.*
          from moved p
         cross join lateral unnest(p.tender_date, p.tender_currency, p.tender_method,
                                   p.tender_sales, p.tender_refunds, p.tender_gross,
                                   p.tender_refunded) as m
        on conflict (merchant_id, terminal_id, business_date, currency, method) do update set
            sales_count = t.sales_count + excluded.sales_count,
            refunds_count = t.refunds_count + excluded.refunds_count,
            gross_minor = t.gross_minor + excluded.gross_minor,
            refunds_minor = t.refunds_minor + excluded.refunds_minor
    ), taxes as (
        insert into tax_day_totals as t
               (merchant_id, terminal_id, store_id, business_date, currency, tax_code, rate_bp,
                sales_count, refunds_count, tax_minor)
        select p.merchant_id, p.terminal_id, p.store_id, x.*
          from moved p
         cross join lateral unnest(p.tax_date, p.tax_currency, p.tax_code, p.tax_rate_bp,
                                   p.tax_sales, p.tax_refunds, p.tax_amount) as x
        on conflict (merchant_id, terminal_id, business_date, currency, tax_code, rate_bp)
        do update set
            sales_count = t.sales_count + excluded.sales_count,
            refunds_count = t.refunds_count + excluded.refunds_count,
            tax_minor = t.tax_minor + excluded.tax_minor
    )
    -- The CTEs this does not read still run to the end before it returns
    -- (a data-modifying CTE always does).
    select coalesce(array_agg(m.ordinality), '{}'),
           coalesce(bool_or(exists (select 1 from unnest(m.refers_to_sale_id) r
                                     where r is not null)), false),
           coalesce(bool_or(cardinality(m.exception_kind) > 0), false),
           coalesce(bool_or(cardinality(m.settled_seq) > 0), false)
      from moved m into written, has_refs, has_flags, has_settled;

    -- What only some pushes carry, each in a statement of its own that a
    -- group without it skips: an empty CTE still opens its table and every
    -- index of it, on every group.
    if has_refs then
        -- Every void and refund waits for the resolver.
        insert into pending_refs (merchant_id, sale_id, target_sale_id, terminal_id, store_id)
        select p.merchant_id, s.sale_id, s.refers_to_sale_id, p.terminal_id, p.store_id
          from unnest(p_pushes) with ordinality as p
         cross join lateral unnest(p.sale_id, p.refers_to_sale_id) as s(sale_id, refers_to_sale_id)
         where p.ordinality = any(written) and s.refers_to_sale_id is not null;
    end if;
    if exists (select 1 from pending_refs) then
        -- Voids and refunds that named one of these sales before it was
        -- here: the resolver looks at them at once.
        update pending_refs q set next_check_at = now()
          from unnest(p_pushes) with ordinality as p
         where p.ordinality = any(written)
           and q.merchant_id = p.merchant_id and q.target_sale_id = any(p.sale_id)
           and q.next_check_at > now();
    end if;
    if has_flags then
        insert into exceptions as e
               (merchant_id, exception_id, kind, subject, store_id, terminal_id, sale_ids, seq,
                code, detail, payload)
        select p.merchant_id, gen_random_uuid(), x.kind, x.subject, p.store_id, p.terminal_id,
               coalesce(string_to_array(nullif(x.sale_ids, ''), ',')::uuid[], '{}'), x.seq,
               x.code, x.detail, x.payload
          from unnest(p_pushes) with ordinality as p
         cross join lateral unnest(p.exception_kind, p.exception_subject, p.exception_sale_ids,
                                   p.exception_seq, p.exception_code, p.exception_detail,
                                   p.exception_payload)
               as x(kind, subject, sale_ids, seq, code, detail, payload)
         where p.ordinality = any(written)
        on conflict (merchant_id, kind, subject) do update
           set sale_ids = array(select distinct u from unnest(e.sale_ids || excluded.sale_ids) u
                                 order by u),
               -- one more sale holding the seq: open again
               resolved_at = case when excluded.sale_ids <@ e.sale_ids then e.resolved_at end;
    end if;
    if has_settled then
        insert into settled_seqs (merchant_id, terminal_id, seq, reason)
        select p.merchant_id, p.terminal_id, z.seq, z.reason
          from unnest(p_pushes) with ordinality as p
         cross join lateral unnest(p.settled_seq, p.settled_reason) as z(seq, reason)
         where p.ordinality = any(written)
        on conflict do nothing;
    end if;
    return written;
end
$$;

-- `ingest_write_group_v2` over `ingest_write_set_v3`.
create function ingest_write_group_v3(p_pushes ingest_push_v3[])
returns table(error_code text, error_message text)
language plpgsql
as $$
declare
    written int8[];
    q ingest_push_v3;
begin
    begin
        written := ingest_write_set_v3(p_pushes);
        for i in 1 .. coalesce(cardinality(p_pushes), 0) loop
            if i = any(written) then
                error_code := '00000';
                error_message := null;
            else
                error_code := '40001';
                error_message := format('terminal %s stored another batch meanwhile',
                                        p_pushes[i].terminal_id);
            end if;
            return next;
        end loop;
        return;
    exception when others then
        -- `others` leaves out query_canceled: a statement timeout still
        -- ends the whole group. Anything else: written push by push below.
        null;
    end;

    foreach q in array p_pushes loop
        begin
            written := ingest_write_set_v3(array[q]);
            if cardinality(written) = 1 then
                error_code := '00000';
                error_message := null;
            else
                error_code := '40001';
                error_message := format('terminal %s stored another batch meanwhile',
                                        q.terminal_id);
            end if;
        exception
            when unique_violation then
                -- Its key or a sale id was stored meanwhile: read it again.
                error_code := '40001';
                error_message := SQLERRM;
            when others then
                -- `others` leaves out query_canceled, as above.
                error_code := SQLSTATE;
                error_message := SQLERRM;
        end;
        return next;
    end loop;
end
$$;

-- The totals, rebuilt from the stored sales with the receipt's split and
-- the tax rows (the rule of src/domain/totals/share.rs; a body stored so
-- far has none of the new members, so its item sales are its lines and
-- its net sales its lines less their tax). tests/api/reports/kept_totals.rs
-- runs the statements between the markers again and compares them with
-- the totals kept at ingest. Pushes wait for this migration (the truncate
-- locks the tables).
truncate sales_day_totals, sales_hour_totals, tender_day_totals, tax_day_totals,
         store_day_totals, store_day_deltas;
-- rebuild totals: begin
create temporary table counted_facts as
with facts as (
    -- Every fact on its own day, hour and till: sales and refunds counted,
    -- voids in voids_count.
    select s.merchant_id, s.terminal_id, s.store_id, s.business_date, s.occurred_at,
           s.currency, 1 as sign, s.kind as counted, s.kind, s.sale_id, s.body,
           s.total_minor, s.tax_minor, s.discount_minor
      from sales s
    union all
    -- Each counting void's reversal: its sale's amounts, tenders and taxes,
    -- taken out on the void's day, hour and till.
    select v.merchant_id, v.terminal_id, v.store_id, v.business_date, v.occurred_at,
           t.currency, -1, t.kind, 'reversal', t.sale_id, t.body,
           t.total_minor, t.tax_minor, t.discount_minor
      from void_effects e
      join sales v on v.merchant_id = e.merchant_id and v.sale_id = e.void_sale_id
      join sales t on t.merchant_id = e.merchant_id and t.sale_id = e.target_sale_id
     where t.kind in ('sale', 'refund')
)
select f.*,
       -- the local clock hour, by the store's rule in force when the fact
       -- occurred (the first rule for a moment before every rule)
       extract(hour from f.occurred_at at time zone (
           select r.timezone from store_day_rules r
            where r.merchant_id = f.merchant_id and r.store_id = f.store_id
            order by r.effective_from <= f.occurred_at desc,
                     case when r.effective_from <= f.occurred_at then r.effective_from end
                         desc nulls last,
                     r.effective_from
            limit 1))::int2 as local_hour,
       -- sales add their split, refunds take it back
       case f.counted when 'sale' then f.sign when 'refund' then -f.sign else 0 end
           as direction,
       l.items, l.gift_cards,
       coalesce((f.body ->> 'tip_minor')::int8, 0) as tips,
       coalesce((f.body ->> 'service_charge_minor')::int8, 0) as service_charges,
       coalesce((f.body ->> 'rounding_minor')::int8, 0) as rounding,
       l.items + coalesce((f.body ->> 'service_charge_minor')::int8, 0)
         - case when coalesce((f.body ->> 'tax_included')::boolean, true)
                then f.tax_minor else 0 end as net_sales
  from facts f
 cross join lateral (
    select coalesce(sum((x ->> 'amount_minor')::int8)
                        filter (where coalesce(x ->> 'kind', 'item') = 'item'), 0) as items,
           coalesce(sum((x ->> 'amount_minor')::int8)
                        filter (where x ->> 'kind' = 'gift_card'), 0) as gift_cards
      from jsonb_array_elements(f.body -> 'lines') x
 ) l;

with hourly as (
    insert into sales_hour_totals
           (merchant_id, terminal_id, business_date, hour, currency, store_id, sales_count,
            refunds_count, voids_count, gross_minor, refunds_minor, discounts_minor, tax_minor,
            item_sales_minor, gift_card_sales_minor, tips_minor, service_charges_minor,
            rounding_minor, net_sales_minor)
    select merchant_id, terminal_id, business_date, local_hour, currency, store_id,
           coalesce(sum(sign) filter (where counted = 'sale'), 0),
           coalesce(sum(sign) filter (where counted = 'refund'), 0),
           count(*) filter (where kind = 'void'),
           coalesce(sum(sign * total_minor) filter (where counted = 'sale'), 0),
           coalesce(sum(sign * total_minor) filter (where counted = 'refund'), 0),
           coalesce(sum(sign * discount_minor) filter (where counted = 'sale'), 0),
           sum(direction * tax_minor), sum(direction * items), sum(direction * gift_cards),
           sum(direction * tips), sum(direction * service_charges), sum(direction * rounding),
           sum(direction * net_sales)
      from counted_facts
     group by merchant_id, terminal_id, business_date, local_hour, currency, store_id
    returning *
)
insert into sales_day_totals
       (merchant_id, terminal_id, business_date, currency, store_id, sales_count, refunds_count,
        voids_count, gross_minor, refunds_minor, discounts_minor, tax_minor, item_sales_minor,
        gift_card_sales_minor, tips_minor, service_charges_minor, rounding_minor,
        net_sales_minor)
select merchant_id, terminal_id, business_date, currency, store_id,
       sum(sales_count), sum(refunds_count), sum(voids_count), sum(gross_minor),
       sum(refunds_minor), sum(discounts_minor), sum(tax_minor), sum(item_sales_minor),
       sum(gift_card_sales_minor), sum(tips_minor), sum(service_charges_minor),
       sum(rounding_minor), sum(net_sales_minor)
  from hourly
 group by merchant_id, terminal_id, business_date, currency, store_id;

insert into tender_day_totals
       (merchant_id, terminal_id, business_date, currency, method, store_id, sales_count,
        refunds_count, gross_minor, refunds_minor)
select merchant_id, terminal_id, business_date, currency, method, store_id,
       coalesce(sum(sign) filter (where counted = 'sale'), 0),
       coalesce(sum(sign) filter (where counted = 'refund'), 0),
       coalesce(sum(sign * amount) filter (where counted = 'sale'), 0),
       coalesce(sum(sign * amount) filter (where counted = 'refund'), 0)
  from (
    -- A fact counts once per method it was paid with, whatever its splits.
    select f.merchant_id, f.terminal_id, f.business_date, f.currency, f.store_id, f.sign,
           f.counted, f.kind, f.sale_id, t.method, sum(t.amount_minor) as amount
      from counted_facts f
     cross join lateral jsonb_to_recordset(f.body -> 'tenders') as t(method text, amount_minor int8)
     where f.counted in ('sale', 'refund')
     group by f.merchant_id, f.terminal_id, f.business_date, f.currency, f.store_id, f.sign,
              f.counted, f.kind, f.sale_id, t.method
  ) per_fact
 group by merchant_id, terminal_id, business_date, currency, method, store_id;

insert into tax_day_totals
       (merchant_id, terminal_id, business_date, currency, tax_code, rate_bp, store_id,
        sales_count, refunds_count, tax_minor)
select merchant_id, terminal_id, business_date, currency, code, rate_bp, store_id,
       coalesce(sum(sign) filter (where counted = 'sale'), 0),
       coalesce(sum(sign) filter (where counted = 'refund'), 0),
       sum(direction * amount)
  from (
    -- A fact counts once per tax code it names; one that names none, all
    -- of its tax under code ''.
    select f.merchant_id, f.terminal_id, f.business_date, f.currency, f.store_id, f.sign,
           f.counted, f.direction, x.code, x.rate_bp, x.amount
      from counted_facts f
     cross join lateral (
        select t.code, t.rate_bp, t.amount_minor as amount
          from jsonb_to_recordset(f.body -> 'taxes') as t(code text, rate_bp int8, amount_minor int8)
        union all
        select '', 0, f.tax_minor
         where coalesce(jsonb_array_length(f.body -> 'taxes'), 0) = 0
     ) x
     where f.counted in ('sale', 'refund')
  ) per_code
 group by merchant_id, terminal_id, business_date, currency, code, rate_bp, store_id;

insert into store_day_totals
       (merchant_id, store_id, business_date, currency, sales_count, refunds_count, voids_count,
        gross_minor, refunds_minor, discounts_minor, tax_minor, item_sales_minor,
        gift_card_sales_minor, tips_minor, service_charges_minor, rounding_minor,
        net_sales_minor)
select merchant_id, store_id, business_date, currency,
       sum(sales_count), sum(refunds_count), sum(voids_count), sum(gross_minor),
       sum(refunds_minor), sum(discounts_minor), sum(tax_minor), sum(item_sales_minor),
       sum(gift_card_sales_minor), sum(tips_minor), sum(service_charges_minor),
       sum(rounding_minor), sum(net_sales_minor)
  from sales_day_totals
 group by merchant_id, store_id, business_date, currency;
drop table counted_facts;
-- rebuild totals: end
