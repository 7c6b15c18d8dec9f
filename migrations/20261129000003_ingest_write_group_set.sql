-- Group commit, set-based: a group's pushes written with one statement for
-- the whole group (each table's rows in a data-modifying CTE of its own),
-- instead of seven statements and a subtransaction per push, whose
-- start-up costs were most of the 0.56 ms of Postgres time a push cost
-- (`pg_stat_user_functions`). Measured with `scripts/bench-group-write`
-- (groups of one sale from each of n tills, one client; docs/benchmarks.md):
-- groups per second 1.1x the per-push form at n = 1, 1.3x at 4, 1.6x at 16,
-- 2.2-2.8x at 32.
--
-- Each push still succeeds or fails alone:
-- - a push whose sync row is no longer the one it was planned against
--   (the guard of `ingest_write`) is left out of the group by the CTE that
--   writes the sync rows, which every other CTE writes from; nothing of
--   it is written and it is answered 40001, as before. Of two pushes of one till in a group, one
--   is written and the other answered 40001;
-- - anything else that would fail one push (its key or a sale id stored
--   meanwhile, a total out of range) fails the whole set-based attempt,
--   which is rolled back, and the group is written again push by push as
--   before (`ingest_write` in a block of its own each), where that push
--   fails alone. Those are races and edge cases: the set-based form is the
--   common case, the per-push form the exact one.
--
-- The function's settings keep every plan an index probe per push or per
-- row, whatever the tables' statistics were when the plan was made (a
-- connection plans each statement once, and may do it while a table is
-- nearly empty: see 20261129000002): no hash or merge join, no seq scan
-- where an index serves.
--
-- Same signature as before, so a replica one migration behind calls it
-- unchanged (docs/deploy.md).
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
    expected int8;
    n int8;
    n_sales int8;
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
            insert into idempotency_keys
                   (merchant_id, terminal_id, idempotency_key, request_sha256, response_status,
                    response_body)
            select p.merchant_id, p.terminal_id, p.idempotency_key, p.request_sha256,
                   p.response_status, p.response_body
              from moved p
            on conflict do nothing
            returning 1
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
            on conflict do nothing
            returning 1
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
        select (select coalesce(array_agg(m.ordinality), '{}') from moved m),
               (select count(*) from keys),
               (select count(*) from new_sales),
               (select coalesce(sum(cardinality(m.sale_id)), 0) from moved m)
          into written, n, n_sales, expected;
        if n <> cardinality(written) or n_sales <> expected then
            raise exception 'a key or sale of the group was stored meanwhile'
                  using errcode = 'serialization_failure';
        end if;

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
