-- Sales are append-only: ingest inserts, never updates. A void or a refund is
-- its own row that refers to the sale it concerns.

create table sales (
    merchant_id       uuid not null,
    sale_id           uuid not null,
    terminal_id       uuid not null,
    store_id          uuid not null,
    seq               bigint not null check (seq >= 1),
    kind              text not null check (kind in ('sale', 'refund', 'void')),
    occurred_at       timestamptz not null,
    -- The calendar date in the store's time zone; reports group by it.
    business_date     date not null,
    currency          text not null,
    total_minor       bigint not null,
    tax_minor         bigint not null,
    discount_minor    bigint not null,
    refers_to_sale_id uuid,
    -- The parsed sale as the till sent it, for content comparison and review.
    body              jsonb not null,
    batch_id          uuid not null,
    received_at       timestamptz not null default now(),
    primary key (merchant_id, sale_id),
    foreign key (merchant_id, terminal_id) references terminals (merchant_id, terminal_id)
);

-- A till's counter is unique per till: a second sale with the same seq is a conflict.
create unique index sales_terminal_seq on sales (merchant_id, terminal_id, seq);
-- A sale can be voided once.
create unique index sales_one_void_per_sale on sales (merchant_id, refers_to_sale_id) where kind = 'void';

-- What the server holds from each till, kept current by ingest so /v1/sync
-- never has to count the sales table.
create table terminal_sync (
    merchant_id            uuid not null,
    terminal_id            uuid not null,
    highest_seq            bigint not null default 0,
    contiguous_through_seq bigint not null default 0,
    sales_stored           bigint not null default 0,
    last_batch_at          timestamptz,
    primary key (merchant_id, terminal_id),
    foreign key (merchant_id, terminal_id) references terminals (merchant_id, terminal_id)
);

-- Payloads rejected as sale_id_conflict, kept for review.
create table sale_conflicts (
    merchant_id  uuid not null,
    conflict_id  uuid not null,
    terminal_id  uuid not null,
    sale_id      uuid not null,
    batch_id     uuid not null,
    payload      jsonb not null,
    received_at  timestamptz not null default now(),
    primary key (merchant_id, conflict_id)
);

create index sale_conflicts_recent on sale_conflicts (merchant_id, received_at desc, conflict_id desc);

-- Stored responses of POST /v1/sales/batches, replayed byte for byte.
create table idempotency_keys (
    merchant_id     uuid not null,
    terminal_id     uuid not null,
    idempotency_key uuid not null,
    request_sha256  bytea not null,
    response_status smallint not null,
    response_body   bytea not null,
    created_at      timestamptz not null default now(),
    primary key (merchant_id, terminal_id, idempotency_key)
);

create index idempotency_keys_age on idempotency_keys (created_at);
