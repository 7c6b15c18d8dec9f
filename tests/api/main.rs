//! Integration tests: the real binary's router over HTTP against the real
//! Postgres. Every test gets its own database, so they run in parallel.
//! Each app records its metrics into its own recorder (`tillsync::metrics`),
//! so a test reads only its own app's figures.
#![expect(
    clippy::disallowed_methods,
    reason = "the tests' own tasks (clients, proxies) run no application: \
              tokio::spawn is theirs to use"
)]

mod alerts;
mod bounds;
mod cli;
mod clients;
mod committer;
mod deploy;
mod facts;
mod failover;
mod fault_proxy;
mod fuzz;
mod group_write;
mod health;
mod idempotency;
mod ingest;
mod layers;
mod loadtest;
mod logging;
mod memory;
mod money;
mod openapi;
mod ops;
mod order;
mod overflow;
mod plans;
mod pooler;
mod provisioning;
mod races;
mod read_skip;
mod replicas;
mod reports;
mod schema;
mod standby;
mod startup;
mod support;
mod sync;
mod tls;
