-- A sale's body is stored as `json`, the text the service wrote from the
-- parsed sale, where it was `jsonb` (issue 26). Postgres parsed every
-- sale into a `jsonb` tree on the way in: about a sixth of its time a
-- stored sale at batch 100, for a tree no write reads. `json` only checks
-- the text (docs/benchmarks.md, "Issue 26, fourth pass"); the few readers
-- that look inside a body (the till's day check) cast it to `jsonb` there.
--
-- Changing the column's type rewrites `sales` and its indexes under an
-- exclusive lock: pushes and reports wait as long as writing every stored
-- sale once takes (docs/deploy.md).
--
-- An older binary beside it keeps working: its writes insert `jsonb`
-- bodies, which Postgres casts to `json` on assignment, and its reads are
-- replaced below to return the `jsonb` they returned.

alter table sales alter column body type json using body::json;

-- `ingest_read` and `ingest_read_v2` with the same signatures and results:
-- a related sale's body is cast back to `jsonb` (few rows a read).

create or replace function ingest_read(p_merchant_id uuid, p_terminal_id uuid, p_key uuid, p_sale_ids uuid[], p_seqs bigint[], p_walk_chunk bigint) RETURNS TABLE(highest_seq bigint, contiguous_through_seq bigint, sales_stored bigint, last_batch_at timestamp with time zone, request_sha256 bytea, response_status smallint, response_body bytea, seqs_above bigint[], sale_id uuid, sale_terminal_id uuid, seq bigint, kind text, currency text, total_minor bigint, tax_minor bigint, discount_minor bigint, body jsonb, voided boolean)
language plpgsql stable
set plan_cache_mode to 'force_generic_plan'
as $$
#variable_conflict use_column
begin
    return query
    with sync as (
        select t.highest_seq, t.contiguous_through_seq, t.sales_stored, t.last_batch_at
          from terminal_sync t
         where t.merchant_id = p_merchant_id and t.terminal_id = p_terminal_id
    ), stored as (
        select k.request_sha256, k.response_status, k.response_body
          from idempotency_keys k
         where k.merchant_id = p_merchant_id and k.terminal_id = p_terminal_id
           and k.idempotency_key = p_key
    ), related as (
        select s.* from unnest(p_sale_ids) as wanted(sale_id)
         cross join lateral (
               select * from sales s
                where s.merchant_id = p_merchant_id and s.sale_id = wanted.sale_id
                limit 1) s
         where not exists (select 1 from stored)
        union all
        select s.* from unnest(p_seqs) as wanted(seq)
         cross join lateral (
               select * from sales s
                where s.merchant_id = p_merchant_id and s.terminal_id = p_terminal_id
                  and s.seq = wanted.seq
                limit 1) s
         where s.sale_id <> all(p_sale_ids) and not exists (select 1 from stored)
           -- nothing of this till is stored above its highest seq: a till
           -- pushing new sales costs no seq probe at all
           and wanted.seq <= (select y.highest_seq from sync y)
    )
    select y.highest_seq, y.contiguous_through_seq, y.sales_stored, y.last_batch_at,
           k.request_sha256, k.response_status, k.response_body,
           -- seqs are at least 1, so `x - 1` cannot overflow where
           -- `contiguous_through_seq + 1` could
           case when k.request_sha256 is null
                     and y.highest_seq > y.contiguous_through_seq
                     and exists (select 1 from unnest(p_seqs) x where x - 1 = y.contiguous_through_seq)
                then array(select a.seq from sales a
                            where a.merchant_id = p_merchant_id and a.terminal_id = p_terminal_id
                              and a.seq > y.contiguous_through_seq
                            order by a.seq
                            limit p_walk_chunk)
           end,
           r.sale_id, r.terminal_id, r.seq, r.kind, r.currency, r.total_minor, r.tax_minor,
           r.discount_minor, r.body::jsonb,
           -- a scalar subquery, not `exists`: Postgres may turn an `exists`
           -- into a hashed subplan that reads every void of the merchant
           -- once per call, and a generic plan made while `sales` was empty
           -- did (see above); a scalar subquery is always one probe per row
           coalesce((select true from sales v
                      where v.merchant_id = p_merchant_id and v.refers_to_sale_id = r.sale_id
                        and v.kind = 'void'
                      limit 1), false)
      from sync y
      left join stored k on true
      left join related r on true;
end
$$;

create or replace function ingest_read_v2(p_merchant_id uuid, p_terminal_id uuid, p_key uuid, p_sale_ids uuid[], p_seqs bigint[], p_settling bigint[], p_walk_chunk bigint) RETURNS TABLE(highest_seq bigint, contiguous_through_seq bigint, sales_stored bigint, last_batch_at timestamp with time zone, request_sha256 bytea, response_status smallint, response_body bytea, seqs_above bigint[], sale_id uuid, sale_terminal_id uuid, seq bigint, body jsonb)
language plpgsql stable
set plan_cache_mode to 'force_generic_plan'
as $$
#variable_conflict use_column
begin
    return query
    with sync as (
        select t.highest_seq, t.contiguous_through_seq, t.sales_stored, t.last_batch_at
          from terminal_sync t
         where t.merchant_id = p_merchant_id and t.terminal_id = p_terminal_id
    ), stored as (
        select k.request_sha256, k.response_status, k.response_body
          from idempotency_keys k
         where k.merchant_id = p_merchant_id and k.terminal_id = p_terminal_id
           and k.idempotency_key = p_key
    ), related as (
        select s.sale_id, s.terminal_id, s.seq, s.body
          from unnest(p_sale_ids) as wanted(sale_id)
         cross join lateral (
               select * from sales s
                where s.merchant_id = p_merchant_id and s.sale_id = wanted.sale_id
                limit 1) s
         where not exists (select 1 from stored)
        union all
        select s.sale_id, s.terminal_id, s.seq, s.body
          from unnest(p_seqs) as wanted(seq)
         cross join lateral (
               select * from sales s
                where s.merchant_id = p_merchant_id and s.terminal_id = p_terminal_id
                  and s.seq = wanted.seq and s.sale_id <> all(p_sale_ids)
                limit 1) s
         where not exists (select 1 from stored)
           -- nothing of this till is stored above its highest seq: a till
           -- pushing new sales costs no seq probe at all
           and wanted.seq <= (select y.highest_seq from sync y)
    )
    select y.highest_seq, y.contiguous_through_seq, y.sales_stored, y.last_batch_at,
           k.request_sha256, k.response_status, k.response_body,
           -- seqs are at least 1, so `x - 1` cannot overflow where
           -- `contiguous_through_seq + 1` could
           case when k.request_sha256 is null
                     and y.highest_seq > y.contiguous_through_seq
                     and exists (select 1 from unnest(p_seqs || p_settling) x
                                  where x - 1 = y.contiguous_through_seq)
                then array(select u.seq from (
                               (select a.seq from sales a
                                 where a.merchant_id = p_merchant_id
                                   and a.terminal_id = p_terminal_id
                                   and a.seq > y.contiguous_through_seq
                                 order by a.seq limit p_walk_chunk)
                               union
                               (select z.seq from settled_seqs z
                                 where z.merchant_id = p_merchant_id
                                   and z.terminal_id = p_terminal_id
                                   and z.seq > y.contiguous_through_seq
                                 order by z.seq limit p_walk_chunk)) u
                            order by u.seq limit p_walk_chunk)
           end,
           r.sale_id, r.terminal_id, r.seq, r.body::jsonb
      from sync y
      left join stored k on true
      left join related r on true;
end
$$;

-- `ingest_push_v3` with each sale's body as JSON text (cast to `json` by the
-- write): a `jsonb[]` parameter is parsed into trees as it is received.
create type ingest_push_v4 as (
    merchant_id uuid,
    terminal_id uuid,
    store_id uuid,
    batch_id uuid,
    seen_highest_seq bigint,
    seen_contiguous bigint,
    seen_sales_stored bigint,
    seen_last_batch_at timestamp with time zone,
    highest_seq bigint,
    contiguous bigint,
    sales_stored bigint,
    last_batch_at timestamp with time zone,
    idempotency_key uuid,
    request_sha256 bytea,
    response_status smallint,
    response_body bytea,
    sale_id uuid[],
    seq bigint[],
    kind text[],
    occurred_at timestamp with time zone[],
    business_date date[],
    currency text[],
    total_minor bigint[],
    tax_minor bigint[],
    discount_minor bigint[],
    refers_to_sale_id uuid[],
    body text[],
    conflict_id uuid[],
    conflict_sale_id uuid[],
    conflict_payload jsonb[],
    day_date date[],
    day_currency text[],
    day_sales bigint[],
    day_refunds bigint[],
    day_voids bigint[],
    day_gross bigint[],
    day_refunded bigint[],
    day_discounts bigint[],
    day_tax bigint[],
    day_item_sales bigint[],
    day_gift_card_sales bigint[],
    day_tips bigint[],
    day_service_charges bigint[],
    day_rounding bigint[],
    day_net_sales bigint[],
    hour_date date[],
    hour smallint[],
    hour_currency text[],
    hour_sales bigint[],
    hour_refunds bigint[],
    hour_voids bigint[],
    hour_gross bigint[],
    hour_refunded bigint[],
    hour_discounts bigint[],
    hour_tax bigint[],
    hour_item_sales bigint[],
    hour_gift_card_sales bigint[],
    hour_tips bigint[],
    hour_service_charges bigint[],
    hour_rounding bigint[],
    hour_net_sales bigint[],
    tender_date date[],
    tender_currency text[],
    tender_method text[],
    tender_sales bigint[],
    tender_refunds bigint[],
    tender_gross bigint[],
    tender_refunded bigint[],
    tax_date date[],
    tax_currency text[],
    tax_code text[],
    tax_rate_bp bigint[],
    tax_sales bigint[],
    tax_refunds bigint[],
    tax_amount bigint[],
    exception_kind text[],
    exception_subject text[],
    exception_sale_ids text[],
    exception_seq bigint[],
    exception_code text[],
    exception_detail text[],
    exception_payload text[],
    settled_seq bigint[],
    settled_reason text[]
);

-- `ingest_write_set_v4` over `ingest_push_v4`: each sale's JSON text is
-- checked by its cast to `json`, not parsed into `jsonb`.
create function ingest_write_set_v5(p_pushes ingest_push_v4[])
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
               s.refers_to_sale_id, s.body::json, p.batch_id
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

-- `ingest_write_group_v4` over `ingest_write_set_v5`.
create function ingest_write_group_v5(p_pushes ingest_push_v4[])
returns table(error_code text, error_message text)
language plpgsql
as $$
declare
    written int8[];
    q ingest_push_v4;
begin
    begin
        written := ingest_write_set_v5(p_pushes);
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
            written := ingest_write_set_v5(array[q]);
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
