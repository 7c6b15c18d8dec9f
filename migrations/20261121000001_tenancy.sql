-- Merchants own stores; stores own terminals. Every tenant table leads its
-- primary key with merchant_id so the schema can be distributed by merchant.

create table merchants (
    merchant_id uuid primary key,
    name        text not null,
    created_at  timestamptz not null default now()
);

-- Merchant admin tokens. Only the SHA-256 of the token is stored; the token
-- itself carries the merchant id so a lookup is routed by merchant.
create table admin_tokens (
    merchant_id uuid not null references merchants (merchant_id),
    token_hash  bytea not null,
    created_at  timestamptz not null default now(),
    primary key (merchant_id, token_hash)
);

create table stores (
    merchant_id uuid not null references merchants (merchant_id),
    store_id    uuid not null,
    name        text not null,
    timezone    text not null,
    currency    text not null,
    created_at  timestamptz not null default now(),
    primary key (merchant_id, store_id)
);

create table terminals (
    merchant_id uuid not null,
    terminal_id uuid not null,
    store_id    uuid not null,
    name        text not null,
    token_hash  bytea not null,
    created_at  timestamptz not null default now(),
    revoked_at  timestamptz,
    primary key (merchant_id, terminal_id),
    foreign key (merchant_id, store_id) references stores (merchant_id, store_id)
);

create unique index terminals_token_hash on terminals (merchant_id, token_hash);
create index terminals_store on terminals (merchant_id, store_id);
