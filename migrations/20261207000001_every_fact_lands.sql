-- Issue 23, every fact lands. A till's record is a fact that already
-- happened: a void or refund names its sale by id on any till of the
-- merchant and is stored whether or not that sale is here yet; a seq
-- serves gap detection, never identity; what the back office must look at
-- is listed as an exception instead of being refused and lost.
--
-- Additive for an older binary beside it (docs/deploy.md): the functions
-- and type it calls stay as they are; the new ones carry a `_v2` name.

-- A till restored from a backup reuses seqs: several sales of a till may
-- hold one (each such seq is flagged). Gaps are still found through this
-- index.
drop index sales_terminal_seq;
create index sales_by_terminal_seq on sales (merchant_id, terminal_id, seq);

-- A sale may have several voids stored (two tills voided it); the resolver
-- (src/jobs/resolve.rs) decides which one counts. Voids and refunds are
-- found by the sale they name.
drop index sales_one_void_per_sale;
create index sales_references on sales (merchant_id, refers_to_sale_id)
    where refers_to_sale_id is not null;

-- A till out of service: sales it made before are still accepted.
alter table terminals add column retired_at timestamptz;

-- Every void and refund waits here from its push until the resolver has
-- seen it with its sale: then its effects are applied (a void takes its
-- sale out of the totals) and its exceptions listed. One that names a sale
-- not stored yet stays, looked at again later (`next_check_at`), or at once
-- when a push stores that sale.
create table pending_refs (
    merchant_id uuid not null,
    sale_id uuid not null,
    target_sale_id uuid not null,
    terminal_id uuid not null,
    store_id uuid not null,
    stored_at timestamptz not null default now(),
    next_check_at timestamptz not null default now(),
    checks int4 not null default 0,
    primary key (merchant_id, sale_id)
);
create index pending_refs_by_target on pending_refs (merchant_id, target_sale_id);
create index pending_refs_due on pending_refs (next_check_at);

-- Which void of a sale takes it out of the totals, as the resolver applied
-- it (the first by occurred_at, then sale_id, of the voids stored).
create table void_effects (
    merchant_id uuid not null,
    target_sale_id uuid not null,
    void_sale_id uuid not null,
    primary key (merchant_id, target_sale_id)
);

-- A void stored so far names a sale of its own till that was here, and no
-- sale has two: each takes its sale out. The resolver starts from these.
insert into void_effects (merchant_id, target_sale_id, void_sale_id)
select merchant_id, refers_to_sale_id, sale_id
  from sales
 where kind = 'void' and refers_to_sale_id is not null;

-- What the back office must look at. One row per (kind, subject): the
-- subject says what it is about (a sale id, a till's seq), so listing the
-- same thing again changes nothing, and a resolution note stays with it.
create table exceptions (
    merchant_id uuid not null,
    exception_id uuid not null,
    kind text not null check (kind in (
        'unmatched_reference', 'over_refund', 'refund_of_voided_sale', 'void_of_refunded_sale',
        'void_mismatch', 'duplicate_void', 'void_of_void', 'line_over_returned', 'seq_reused',
        'refused')),
    subject text not null,
    store_id uuid not null,
    terminal_id uuid,
    -- The sale whose voids and refunds the resolver listed it for.
    target_sale_id uuid,
    sale_ids uuid[] not null default '{}',
    seq int8,
    code text,
    detail text not null,
    -- A payload refused for good, as the till sent it: JSON text, not
    -- jsonb, which cannot hold every string JSON can (`\u0000`).
    payload text,
    opened_at timestamptz not null default now(),
    resolved_at timestamptz,
    note text,
    primary key (merchant_id, exception_id)
);
create unique index exceptions_subject on exceptions (merchant_id, kind, subject);
create index exceptions_newest_first on exceptions (merchant_id, opened_at desc, exception_id desc);
create index exceptions_by_target on exceptions (merchant_id, target_sale_id)
    where target_sale_id is not null;
create index exceptions_open_since on exceptions (opened_at) where resolved_at is null;

-- Seqs that will never hold a stored sale: that of a sale refused for
-- good, and those a till declares it never used. The contiguous prefix
-- walks over them and they are never reported missing.
create table settled_seqs (
    merchant_id uuid not null,
    terminal_id uuid not null,
    seq int8 not null,
    reason text not null check (reason in ('refused', 'skipped')),
    primary key (merchant_id, terminal_id, seq)
);

-- Everything one push stores: `ingest_push` and the exceptions and settled
-- seqs it adds. Fields in this order are `PushRow` (src/db/push.rs).
create type ingest_push_v2 as (
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
    tender_refunds int8[], tender_gross int8[], tender_refunded int8[],
    -- `exception_sale_ids`: each exception's sale ids, comma-separated (a
    -- composite holds no ragged array)
    exception_kind text[], exception_subject text[], exception_sale_ids text[],
    exception_seq int8[], exception_code text[], exception_detail text[],
    exception_payload text[],
    settled_seq int8[], settled_reason text[]
);

-- What a push is checked against, in one snapshot: the till's sync row,
-- the response stored under the key, the stored sales with one of the
-- push's sale ids (on any till of the merchant) or holding one of its seqs
-- (on this till), and, when the push holds the seq right after the till's
-- contiguous prefix (`p_seqs` stored, `p_settling` refused or skipped), the
-- first chunk of the till's stored or settled seqs above it.
create function ingest_read_v2(p_merchant_id uuid, p_terminal_id uuid, p_key uuid,
                               p_sale_ids uuid[], p_seqs int8[], p_settling int8[],
                               p_walk_chunk int8)
returns table(highest_seq int8, contiguous_through_seq int8, sales_stored int8,
              last_batch_at timestamptz, request_sha256 bytea, response_status int2,
              response_body bytea, seqs_above int8[], sale_id uuid, sale_terminal_id uuid,
              seq int8, body jsonb)
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
           r.sale_id, r.terminal_id, r.seq, r.body
      from sync y
      left join stored k on true
      left join related r on true;
end
$$;

-- Writes pushes set-based, one statement for what every push carries, and
-- returns the ordinals of those written: a push is written when its till's
-- sync row is still the one it was planned against (the guard of
-- `ingest_write`), and then whole. A key or sale id stored meanwhile fails the statement with a
-- unique violation; `ingest_write_group_v2` then writes push by push.
create function ingest_write_set_v2(p_pushes ingest_push_v2[])
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

-- A group of pushes in one transaction and one round trip, each answered
-- on its own (`00000` written, `40001` planned against a sync row, key or
-- sale id that changed meanwhile: read it again). Set-based for the whole
-- group when every push can be written; push by push, each in a block of
-- its own, only when one of them cannot.
create function ingest_write_group_v2(p_pushes ingest_push_v2[])
returns table(error_code text, error_message text)
language plpgsql
as $$
declare
    written int8[];
    q ingest_push_v2;
begin
    begin
        written := ingest_write_set_v2(p_pushes);
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
            written := ingest_write_set_v2(array[q]);
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

-- The totals, rebuilt by today's rule (src/domain/totals.rs): a void takes
-- its sale out on the void's own business day, hour and till, no longer on
-- the sale's; a closed day's totals change only through facts that occurred
-- on it. tests/api/reports/kept_totals.rs runs the statements between the
-- markers again and compares them with the totals kept at ingest. Pushes
-- wait for this migration (the truncate locks the tables).
truncate sales_day_totals, sales_hour_totals, tender_day_totals, store_day_totals,
         store_day_deltas;
-- rebuild totals: begin
with facts as (
    -- Every fact on its own day, hour and till: sales and refunds counted,
    -- voids in voids_count.
    select s.merchant_id, s.terminal_id, s.store_id, s.business_date,
           extract(hour from s.occurred_at at time zone st.timezone)::int2 as local_hour,
           s.currency, 1 as sign, s.kind as counted, s.kind, s.sale_id, s.body,
           s.total_minor, s.tax_minor, s.discount_minor
      from sales s
      join stores st on st.merchant_id = s.merchant_id and st.store_id = s.store_id
    union all
    -- Each counting void's reversal: its sale's amounts and tenders, taken
    -- out on the void's day, hour and till.
    select v.merchant_id, v.terminal_id, v.store_id, v.business_date,
           extract(hour from v.occurred_at at time zone st.timezone)::int2,
           t.currency, -1, t.kind, 'reversal', t.sale_id, t.body,
           t.total_minor, t.tax_minor, t.discount_minor
      from void_effects e
      join sales v on v.merchant_id = e.merchant_id and v.sale_id = e.void_sale_id
      join sales t on t.merchant_id = e.merchant_id and t.sale_id = e.target_sale_id
      join stores st on st.merchant_id = v.merchant_id and st.store_id = v.store_id
     where t.kind in ('sale', 'refund')
), hourly as (
    insert into sales_hour_totals
    select merchant_id, terminal_id, business_date, local_hour, currency, store_id,
           coalesce(sum(sign) filter (where counted = 'sale'), 0),
           coalesce(sum(sign) filter (where counted = 'refund'), 0),
           count(*) filter (where kind = 'void'),
           coalesce(sum(sign * total_minor) filter (where counted = 'sale'), 0),
           coalesce(sum(sign * total_minor) filter (where counted = 'refund'), 0),
           coalesce(sum(sign * discount_minor) filter (where counted = 'sale'), 0),
           coalesce(sum(sign * tax_minor) filter (where counted = 'sale'), 0)
             - coalesce(sum(sign * tax_minor) filter (where counted = 'refund'), 0)
      from facts
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
select merchant_id, terminal_id, business_date, currency, method, store_id,
       coalesce(sum(sign) filter (where counted = 'sale'), 0),
       coalesce(sum(sign) filter (where counted = 'refund'), 0),
       coalesce(sum(sign * amount) filter (where counted = 'sale'), 0),
       coalesce(sum(sign * amount) filter (where counted = 'refund'), 0)
  from (
    -- A fact counts once per method it was paid with, whatever its splits.
    select f.merchant_id, f.terminal_id, f.business_date, f.currency, f.store_id, f.sign,
           f.counted, f.kind, f.sale_id, t.method, sum(t.amount_minor) as amount
      from facts f
     cross join lateral jsonb_to_recordset(f.body -> 'tenders') as t(method text, amount_minor int8)
     where f.counted in ('sale', 'refund')
     group by f.merchant_id, f.terminal_id, f.business_date, f.currency, f.store_id, f.sign,
              f.counted, f.kind, f.sale_id, t.method
  ) per_fact
 group by merchant_id, terminal_id, business_date, currency, method, store_id;

insert into store_day_totals
select merchant_id, store_id, business_date, currency,
       sum(sales_count), sum(refunds_count), sum(voids_count), sum(gross_minor),
       sum(refunds_minor), sum(discounts_minor), sum(tax_minor)
  from sales_day_totals
 group by merchant_id, store_id, business_date, currency;
-- rebuild totals: end
