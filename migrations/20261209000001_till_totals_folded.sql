-- Till totals folded in the background (issue 26): a push no longer
-- upserts its till's day, hour, tender and tax totals. It appends one row
-- a business day and currency to store_day_deltas, as it did for its
-- store, now carrying its till and that day's hour, tender and tax deltas;
-- the fold (src/jobs/fold.rs) moves each row into the store's totals and
-- the till's in one statement, and reports read the folded totals plus the
-- rows not folded yet. A push writes four rows (sale, stored response,
-- sync row, delta) where it wrote seven, and the till-total rows have one
-- writer, the fold: the resolver's reversals append deltas too and no
-- longer wait on a push's row locks, nor a push on theirs.
--
-- Rows written before this migration (and by an older binary during a
-- rolling deploy) have no till: their till totals were written at push
-- time, and the fold adds them to the store's totals only.

create type till_hour_delta as (
    hour int2, sales_count int8, refunds_count int8, voids_count int8, gross_minor int8,
    refunds_minor int8, discounts_minor int8, tax_minor int8, item_sales_minor int8,
    gift_card_sales_minor int8, tips_minor int8, service_charges_minor int8,
    rounding_minor int8, net_sales_minor int8
);
create type till_tender_delta as (
    method text, sales_count int8, refunds_count int8, gross_minor int8, refunds_minor int8
);
create type till_tax_delta as (
    tax_code text, rate_bp int8, sales_count int8, refunds_count int8, tax_minor int8
);

alter table store_day_deltas
    add column terminal_id uuid,
    add column hours till_hour_delta[],
    add column tenders till_tender_delta[],
    add column taxes till_tax_delta[];

-- `ingest_write_set_v3` without the till-total upserts: the store delta
-- carries them.
create function ingest_write_set_v4(p_pushes ingest_push_v3[])
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
        -- The push's only totals row a day and currency: the fold adds it
        -- to the store's totals and to the till's day, hour, tender and tax
        -- totals, each kept to the day and currency of its row.
        insert into store_day_deltas
               (merchant_id, batch_id, store_id, business_date, currency, sales_count,
                refunds_count, voids_count, gross_minor, refunds_minor, discounts_minor, tax_minor,
                item_sales_minor, gift_card_sales_minor, tips_minor, service_charges_minor,
                rounding_minor, net_sales_minor, terminal_id, hours, tenders, taxes)
        select p.merchant_id, p.batch_id, p.store_id, d.*, p.terminal_id,
               array(select row(h.hour, h.sales, h.refunds, h.voids, h.gross, h.refunded,
                                h.discounts, h.tax, h.item_sales, h.gift_card_sales, h.tips,
                                h.service_charges, h.rounding, h.net_sales)::till_hour_delta
                       from unnest(p.hour_date, p.hour, p.hour_currency, p.hour_sales,
                                   p.hour_refunds, p.hour_voids, p.hour_gross, p.hour_refunded,
                                   p.hour_discounts, p.hour_tax, p.hour_item_sales,
                                   p.hour_gift_card_sales, p.hour_tips, p.hour_service_charges,
                                   p.hour_rounding, p.hour_net_sales)
                            as h(business_date, hour, currency, sales, refunds, voids, gross,
                                 refunded, discounts, tax, item_sales, gift_card_sales, tips,
                                 service_charges, rounding, net_sales)
                      where h.business_date = d.business_date and h.currency = d.currency),
               array(select row(m.method, m.sales, m.refunds, m.gross, m.refunded)::till_tender_delta
                       from unnest(p.tender_date, p.tender_currency, p.tender_method,
                                   p.tender_sales, p.tender_refunds, p.tender_gross,
                                   p.tender_refunded)
                            as m(business_date, currency, method, sales, refunds, gross, refunded)
                      where m.business_date = d.business_date and m.currency = d.currency),
               array(select row(x.code, x.rate_bp, x.sales, x.refunds, x.amount)::till_tax_delta
                       from unnest(p.tax_date, p.tax_currency, p.tax_code, p.tax_rate_bp,
                                   p.tax_sales, p.tax_refunds, p.tax_amount)
                            as x(business_date, currency, code, rate_bp, sales, refunds, amount)
                      where x.business_date = d.business_date and x.currency = d.currency)
          from moved p
         cross join lateral unnest(p.day_date, p.day_currency, p.day_sales, p.day_refunds,
                                   p.day_voids, p.day_gross, p.day_refunded, p.day_discounts,
                                   p.day_tax, p.day_item_sales, p.day_gift_card_sales, p.day_tips,
                                   p.day_service_charges, p.day_rounding, p.day_net_sales)
               as d(business_date, currency, sales, refunds, voids, gross, refunded, discounts,
                    tax, item_sales, gift_card_sales, tips, service_charges, rounding, net_sales)
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
        -- here: the resolver looks at them at once. Only postponed ones: a
        -- due one may be locked by the resolver's transaction, and a push
        -- must not wait for it (`refs::postpone` covers a due one read as
        -- missing just before this sale came).
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

-- `ingest_write_group_v3` over `ingest_write_set_v4`.
create function ingest_write_group_v4(p_pushes ingest_push_v3[])
returns table(error_code text, error_message text)
language plpgsql
as $$
declare
    written int8[];
    q ingest_push_v3;
begin
    begin
        written := ingest_write_set_v4(p_pushes);
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
            written := ingest_write_set_v4(array[q]);
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
