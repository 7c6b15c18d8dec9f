-- `ingest_read` again, with the one change that keeps its plans probes at
-- any size: whether a void names a stored sale is asked with a scalar
-- subquery instead of `exists`.
--
-- Found in the recovery benchmark's drains (issue 13): a connection that
-- planned `ingest_read` while `sales` was empty (every connection of a fresh
-- database; plans are generic and kept for the connection's life) turned
-- the `exists` into a hashed subplan: each call read every void of the
-- merchant through `sales_one_void_per_sale`, with a heap fetch each.
-- Pushes got slower as voids piled up: a drain of 800k sales ran at 2k
-- sales/s instead of 8k, and the 5x and 10x overload runs could not finish
-- their drain in 300 s. `tests/api/plans.rs` holds the plan to one probe.
--
-- Same signature and results: a replica one migration behind calls it
-- unchanged (docs/deploy.md, rolling deploys).

create or replace function ingest_read(
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
