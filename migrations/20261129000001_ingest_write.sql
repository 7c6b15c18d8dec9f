-- A pushed batch in two round trips, each one statement in its own implicit
-- transaction (src/ingest/mod.rs says why): `ingest_read` fetches what the
-- batch is checked against, the service classifies the sales, sums the
-- totals and builds the response, and `ingest_write` stores all of it or
-- nothing.
--
-- Both are plpgsql so their statements are planned once per connection:
-- `plan_cache_mode = force_generic_plan` keeps Postgres from planning the
-- collision read again on every call (its custom plans looked cheaper than
-- the generic one, so it re-planned each time: about 0.4 ms a push). The
-- setting travels with the function, not the session, so it holds behind a
-- pooler too.

-- What a push is checked against, from one snapshot: the till's sync row;
-- the response stored under this key, if any; unless there is one, every
-- stored sale the batch could collide with (these ids, or this till's sales
-- holding these seqs), each with whether a void names it; and, when the batch holds the seq right
-- after the till's contiguous prefix and gaps exist above it, the till's
-- first stored seqs above the prefix. Every row repeats the sync row and
-- the key's columns; a batch colliding with nothing is one row of those.
--
-- The collision read is written so that every plan is one index probe per
-- id and per seq, even a plan made while the table was nearly empty (a new
-- database taking its first flood before any analyze). An earlier form, one
-- `where` with an `or` and `= any`, was planned then as a scan of all the
-- merchant's sales plus a hash of all its voids, and kept (measured: 100-170
-- ms a batch at 80k rows, and growing). A lateral subquery with `limit 1`
-- cannot be flattened into a join the planner might hash, and each one is
-- an equality on a unique key. The seq arm leaves out what the id arm
-- finds, so no row comes back twice.
create function ingest_read(
    p_merchant_id uuid, p_terminal_id uuid, p_key uuid, p_sale_ids uuid[], p_seqs int8[],
    p_walk_chunk int8
) returns table (
    highest_seq int8, contiguous_through_seq int8, sales_stored int8, last_batch_at timestamptz,
    request_sha256 bytea, response_status int2, response_body bytea, seqs_above int8[],
    sale_id uuid, sale_terminal_id uuid, seq int8, kind text, currency text, total_minor int8,
    tax_minor int8, discount_minor int8, body jsonb, voided boolean
)
language plpgsql
stable
set plan_cache_mode = force_generic_plan
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
           r.discount_minor, r.body,
           exists (select 1 from sales v
                    where v.merchant_id = p_merchant_id and v.refers_to_sale_id = r.sale_id
                      and v.kind = 'void')
      from sync y
      left join stored k on true
      left join related r on true;
end
$$;

-- Every write of one pushed batch, in one call.
--
-- It guards the read: if the till's sync row is no longer what the service
-- read (another batch of this till committed meanwhile), if the key was
-- stored meanwhile, or if a sale collided with one committed meanwhile by
-- another till, it raises serialization_failure (40001): nothing is
-- written, and the service reads and classifies again. The guard compares
-- the whole row rather than a version column, so a replica one migration
-- behind, which still locks the row and rewrites it in its own transaction,
-- is noticed too (it always sets last_batch_at).
create function ingest_write(
    p_merchant_id uuid, p_terminal_id uuid, p_store_id uuid, p_batch_id uuid,
    -- the sync row as read, then as it is to be
    p_seen_highest_seq int8, p_seen_contiguous int8, p_seen_sales_stored int8,
    p_seen_last_batch_at timestamptz,
    p_highest_seq int8, p_contiguous int8, p_sales_stored int8, p_last_batch_at timestamptz,
    -- the stored response
    p_key uuid, p_request_sha256 bytea, p_response_status int2, p_response_body bytea,
    -- the new sales, column by column
    p_sale_id uuid[], p_seq int8[], p_kind text[], p_occurred_at timestamptz[],
    p_business_date date[], p_currency text[], p_total_minor int8[], p_tax_minor int8[],
    p_discount_minor int8[], p_refers_to_sale_id uuid[], p_body jsonb[],
    -- payloads rejected as sale_id_conflict
    p_conflict_id uuid[], p_conflict_sale_id uuid[], p_conflict_payload jsonb[],
    -- the report totals' deltas: per day, per hour, per tender
    p_day_date date[], p_day_currency text[], p_day_sales int8[], p_day_refunds int8[],
    p_day_voids int8[], p_day_gross int8[], p_day_refunded int8[], p_day_discounts int8[],
    p_day_tax int8[],
    p_hour_date date[], p_hour int2[], p_hour_currency text[], p_hour_sales int8[],
    p_hour_refunds int8[], p_hour_voids int8[], p_hour_gross int8[], p_hour_refunded int8[],
    p_hour_discounts int8[], p_hour_tax int8[],
    p_tender_date date[], p_tender_currency text[], p_tender_method text[], p_tender_sales int8[],
    p_tender_refunds int8[], p_tender_gross int8[], p_tender_refunded int8[]
) returns void
language plpgsql
set plan_cache_mode = force_generic_plan
as $$
declare
    inserted int8;
begin
    update terminal_sync
       set highest_seq = p_highest_seq, contiguous_through_seq = p_contiguous,
           sales_stored = p_sales_stored, last_batch_at = p_last_batch_at
     where merchant_id = p_merchant_id and terminal_id = p_terminal_id
       and highest_seq = p_seen_highest_seq and contiguous_through_seq = p_seen_contiguous
       and sales_stored = p_seen_sales_stored
       and last_batch_at is not distinct from p_seen_last_batch_at;
    if not found then
        raise exception 'terminal % stored another batch meanwhile', p_terminal_id
              using errcode = 'serialization_failure';
    end if;

    insert into idempotency_keys
           (merchant_id, terminal_id, idempotency_key, request_sha256, response_status, response_body)
    values (p_merchant_id, p_terminal_id, p_key, p_request_sha256, p_response_status, p_response_body)
    on conflict do nothing;
    if not found then
        raise exception 'idempotency key % was stored meanwhile', p_key
              using errcode = 'serialization_failure';
    end if;

    insert into sales (merchant_id, sale_id, terminal_id, store_id, seq, kind, occurred_at,
                       business_date, currency, total_minor, tax_minor, discount_minor,
                       refers_to_sale_id, body, batch_id)
    select p_merchant_id, u.sale_id, p_terminal_id, p_store_id, u.seq, u.kind, u.occurred_at,
           u.business_date, u.currency, u.total_minor, u.tax_minor, u.discount_minor,
           u.refers_to_sale_id, u.body, p_batch_id
      from unnest(p_sale_id, p_seq, p_kind, p_occurred_at, p_business_date, p_currency,
                  p_total_minor, p_tax_minor, p_discount_minor, p_refers_to_sale_id, p_body)
           as u(sale_id, seq, kind, occurred_at, business_date, currency, total_minor,
                tax_minor, discount_minor, refers_to_sale_id, body)
    on conflict do nothing;
    get diagnostics inserted = row_count;
    if inserted <> coalesce(cardinality(p_sale_id), 0) then
        raise exception 'a sale of terminal % collided with one stored meanwhile', p_terminal_id
              using errcode = 'serialization_failure';
    end if;

    if cardinality(p_conflict_id) > 0 then
        insert into sale_conflicts (merchant_id, conflict_id, terminal_id, sale_id, batch_id, payload)
        select p_merchant_id, u.conflict_id, p_terminal_id, u.sale_id, p_batch_id, u.payload
          from unnest(p_conflict_id, p_conflict_sale_id, p_conflict_payload)
               as u(conflict_id, sale_id, payload);
    end if;

    if cardinality(p_day_date) > 0 then
        insert into store_day_deltas
               (merchant_id, batch_id, store_id, business_date, currency, sales_count,
                refunds_count, voids_count, gross_minor, refunds_minor, discounts_minor, tax_minor)
        select p_merchant_id, p_batch_id, p_store_id, d.*
          from unnest(p_day_date, p_day_currency, p_day_sales, p_day_refunds, p_day_voids,
                      p_day_gross, p_day_refunded, p_day_discounts, p_day_tax) as d;

        insert into sales_day_totals as t
               (merchant_id, terminal_id, store_id, business_date, currency, sales_count,
                refunds_count, voids_count, gross_minor, refunds_minor, discounts_minor, tax_minor)
        select p_merchant_id, p_terminal_id, p_store_id, d.*
          from unnest(p_day_date, p_day_currency, p_day_sales, p_day_refunds, p_day_voids,
                      p_day_gross, p_day_refunded, p_day_discounts, p_day_tax) as d
        on conflict (merchant_id, terminal_id, business_date, currency) do update set
            sales_count = t.sales_count + excluded.sales_count,
            refunds_count = t.refunds_count + excluded.refunds_count,
            voids_count = t.voids_count + excluded.voids_count,
            gross_minor = t.gross_minor + excluded.gross_minor,
            refunds_minor = t.refunds_minor + excluded.refunds_minor,
            discounts_minor = t.discounts_minor + excluded.discounts_minor,
            tax_minor = t.tax_minor + excluded.tax_minor;
    end if;

    if cardinality(p_hour_date) > 0 then
        insert into sales_hour_totals as t
               (merchant_id, terminal_id, store_id, business_date, hour, currency, sales_count,
                refunds_count, voids_count, gross_minor, refunds_minor, discounts_minor, tax_minor)
        select p_merchant_id, p_terminal_id, p_store_id, h.*
          from unnest(p_hour_date, p_hour, p_hour_currency, p_hour_sales, p_hour_refunds,
                      p_hour_voids, p_hour_gross, p_hour_refunded, p_hour_discounts, p_hour_tax) as h
        on conflict (merchant_id, terminal_id, business_date, hour, currency) do update set
            sales_count = t.sales_count + excluded.sales_count,
            refunds_count = t.refunds_count + excluded.refunds_count,
            voids_count = t.voids_count + excluded.voids_count,
            gross_minor = t.gross_minor + excluded.gross_minor,
            refunds_minor = t.refunds_minor + excluded.refunds_minor,
            discounts_minor = t.discounts_minor + excluded.discounts_minor,
            tax_minor = t.tax_minor + excluded.tax_minor;
    end if;

    if cardinality(p_tender_date) > 0 then
        insert into tender_day_totals as t
               (merchant_id, terminal_id, store_id, business_date, currency, method, sales_count,
                refunds_count, gross_minor, refunds_minor)
        select p_merchant_id, p_terminal_id, p_store_id, m.*
          from unnest(p_tender_date, p_tender_currency, p_tender_method, p_tender_sales,
                      p_tender_refunds, p_tender_gross, p_tender_refunded) as m
        on conflict (merchant_id, terminal_id, business_date, currency, method) do update set
            sales_count = t.sales_count + excluded.sales_count,
            refunds_count = t.refunds_count + excluded.refunds_count,
            gross_minor = t.gross_minor + excluded.gross_minor,
            refunds_minor = t.refunds_minor + excluded.refunds_minor;
    end if;
end
$$;

-- Group commit: the writes of pushes from several tills, made in one
-- transaction and one round trip (src/ingest/group.rs says why). Each push
-- runs in a block of its own (a subtransaction): one that fails, whether
-- its guard found a newer sync row or a total went out of range, is rolled
-- back alone and reported by its SQLSTATE; the others commit.
create type ingest_push as (
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
    hour_date date[], hour int2[], hour_currency text[], hour_sales int8[], hour_refunds int8[],
    hour_voids int8[], hour_gross int8[], hour_refunded int8[], hour_discounts int8[],
    hour_tax int8[],
    tender_date date[], tender_currency text[], tender_method text[], tender_sales int8[],
    tender_refunds int8[], tender_gross int8[], tender_refunded int8[]
);

-- One row per push, in order: its SQLSTATE ('00000' when written) and the
-- error message otherwise.
create function ingest_write_group(p_pushes ingest_push[])
returns table (error_code text, error_message text)
language plpgsql
as $$
declare
    p ingest_push;
begin
    foreach p in array p_pushes loop
        begin
            perform ingest_write(
                p.merchant_id, p.terminal_id, p.store_id, p.batch_id,
                p.seen_highest_seq, p.seen_contiguous, p.seen_sales_stored, p.seen_last_batch_at,
                p.highest_seq, p.contiguous, p.sales_stored, p.last_batch_at,
                p.idempotency_key, p.request_sha256, p.response_status, p.response_body,
                p.sale_id, p.seq, p.kind, p.occurred_at, p.business_date, p.currency,
                p.total_minor, p.tax_minor, p.discount_minor, p.refers_to_sale_id, p.body,
                p.conflict_id, p.conflict_sale_id, p.conflict_payload,
                p.day_date, p.day_currency, p.day_sales, p.day_refunds, p.day_voids,
                p.day_gross, p.day_refunded, p.day_discounts, p.day_tax,
                p.hour_date, p.hour, p.hour_currency, p.hour_sales, p.hour_refunds,
                p.hour_voids, p.hour_gross, p.hour_refunded, p.hour_discounts, p.hour_tax,
                p.tender_date, p.tender_currency, p.tender_method, p.tender_sales,
                p.tender_refunds, p.tender_gross, p.tender_refunded);
            error_code := '00000';
            error_message := null;
        exception when others then
            -- `others` leaves out query_canceled: a statement timeout
            -- still ends the whole group, as the link's failure would.
            error_code := SQLSTATE;
            error_message := SQLERRM;
        end;
        return next;
    end loop;
end
$$;
