//! Integration tests: the real binary's router over HTTP against the real
//! Postgres. Every test gets its own database, so they run in parallel.

mod alerts;
mod bounds;
mod cli;
mod clients;
mod committer;
mod deploy;
mod failover;
mod fault_proxy;
mod fuzz;
mod group_write;
mod guessed;
mod health;
mod idempotency;
mod ingest;
mod loadtest;
mod logging;
mod openapi;
mod ops;
mod overflow;
mod plans;
mod pooler;
mod provisioning;
mod races;
mod replicas;
mod reports;
mod standby;
mod startup;
mod support;
mod sync;
