-- The group write of migration 20261129000003 without `on conflict do
-- nothing` on the stored responses and the sales: plain inserts.
--
-- `on conflict do nothing` made Postgres pre-check every unique index of
-- each row (the sales have three: the key, the till's seq, one void per
-- sale) before inserting it, insert it speculatively, and write a second
-- WAL record to confirm it: per sale, three more index descents, a lock
-- taken and released, and a record. The set-based form never wants a row
-- skipped: the service planned every push against what is stored, and a
-- key or sale stored meanwhile already failed the whole attempt (its row
-- was skipped, the counts did not add up, and the group was written push
-- by push). A plain insert fails the attempt the same way, with the
-- unique violation itself, which the block below catches like any other
-- error; the per-push form (`ingest_write`, unchanged) then answers that
-- push alone, as before.
--
-- Measured with the groups of `scripts/bench-group-write` (one pgbench
-- client, groups/s, the old form against this one in one sequence,
-- docs/benchmarks.md): pushes of one sale, groups of 1 / 4 / 10: 947 /
-- 635 / 416 -> 1 001 / 649 / 459; pushes of 100 sales: 364 / 106 / 57 ->
-- 393 / 122 / 80.
--
-- Same signature as before, so a replica one migration behind calls it
-- unchanged (docs/deploy.md). The function's settings and everything else
-- are as in 20261129000003, whose comments say why.
create or replace function ingest_write_group(p_pushes ingest_push[])
returns table (error_code text, error_message text)
language plpgsql
set plan_cache_mode = force_generic_plan
set enable_hashjoin = off
set enable_mergejoin = off
set enable_seqscan = off
as $$
#variable_conflict use_column
declare
    written int8[];
    q ingest_push;
begin
    begin
        -- The sync rows, each guarded as in `ingest_write`: the pushes whose
        -- guard holds are the ones written, by every CTE below. One push
        -- per till is written, so no two rows of a totals upsert name the
        -- same total (if they did, the statement would fail and the group
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
            -- A key or sale id stored meanwhile fails this statement with a
            -- unique violation: the group is then written push by push.
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
                    refunds_count, voids_count, gross_minor, refunds_minor, discounts_minor, tax_minor)
            select p.merchant_id, p.batch_id, p.store_id, d.*
              from moved p
             cross join lateral unnest(p.day_date, p.day_currency, p.day_sales, p.day_refunds,
                                       p.day_voids, p.day_gross, p.day_refunded, p.day_discounts,
                                       p.day_tax) as d
        ), days as (
            insert into sales_day_totals as t
                   (merchant_id, terminal_id, store_id, business_date, currency, sales_count,
                    refunds_count, voids_count, gross_minor, refunds_minor, discounts_minor, tax_minor)
            select p.merchant_id, p.terminal_id, p.store_id, d.*
              from moved p
             cross join lateral unnest(p.day_date, p.day_currency, p.day_sales, p.day_refunds,
                                       p.day_voids, p.day_gross, p.day_refunded, p.day_discounts,
                                       p.day_tax) as d
            on conflict (merchant_id, terminal_id, business_date, currency) do update set
                sales_count = t.sales_count + excluded.sales_count,
                refunds_count = t.refunds_count + excluded.refunds_count,
                voids_count = t.voids_count + excluded.voids_count,
                gross_minor = t.gross_minor + excluded.gross_minor,
                refunds_minor = t.refunds_minor + excluded.refunds_minor,
                discounts_minor = t.discounts_minor + excluded.discounts_minor,
                tax_minor = t.tax_minor + excluded.tax_minor
        ), hours as (
            insert into sales_hour_totals as t
                   (merchant_id, terminal_id, store_id, business_date, hour, currency, sales_count,
                    refunds_count, voids_count, gross_minor, refunds_minor, discounts_minor, tax_minor)
            select p.merchant_id, p.terminal_id, p.store_id, h.*
              from moved p
             cross join lateral unnest(p.hour_date, p.hour, p.hour_currency, p.hour_sales,
                                       p.hour_refunds, p.hour_voids, p.hour_gross, p.hour_refunded,
                                       p.hour_discounts, p.hour_tax) as h
            on conflict (merchant_id, terminal_id, business_date, hour, currency) do update set
                sales_count = t.sales_count + excluded.sales_count,
                refunds_count = t.refunds_count + excluded.refunds_count,
                voids_count = t.voids_count + excluded.voids_count,
                gross_minor = t.gross_minor + excluded.gross_minor,
                refunds_minor = t.refunds_minor + excluded.refunds_minor,
                discounts_minor = t.discounts_minor + excluded.discounts_minor,
                tax_minor = t.tax_minor + excluded.tax_minor
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
        )
        -- The CTEs this does not read still run to the end before it
        -- returns (a data-modifying CTE always does).
        select coalesce(array_agg(m.ordinality), '{}') from moved m into written;

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
            perform ingest_write(
                q.merchant_id, q.terminal_id, q.store_id, q.batch_id,
                q.seen_highest_seq, q.seen_contiguous, q.seen_sales_stored, q.seen_last_batch_at,
                q.highest_seq, q.contiguous, q.sales_stored, q.last_batch_at,
                q.idempotency_key, q.request_sha256, q.response_status, q.response_body,
                q.sale_id, q.seq, q.kind, q.occurred_at, q.business_date, q.currency,
                q.total_minor, q.tax_minor, q.discount_minor, q.refers_to_sale_id, q.body,
                q.conflict_id, q.conflict_sale_id, q.conflict_payload,
                q.day_date, q.day_currency, q.day_sales, q.day_refunds, q.day_voids,
                q.day_gross, q.day_refunded, q.day_discounts, q.day_tax,
                q.hour_date, q.hour, q.hour_currency, q.hour_sales, q.hour_refunds,
                q.hour_voids, q.hour_gross, q.hour_refunded, q.hour_discounts, q.hour_tax,
                q.tender_date, q.tender_currency, q.tender_method, q.tender_sales,
                q.tender_refunds, q.tender_gross, q.tender_refunded);
            error_code := '00000';
            error_message := null;
        exception when others then
            -- `others` leaves out query_canceled, as above.
            error_code := SQLSTATE;
            error_message := SQLERRM;
        end;
        return next;
    end loop;
end
$$;
