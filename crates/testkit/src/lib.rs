//! The test kit: what tillsync's API tests, the simulator's tests and the
//! benchmarks share, so each exists once.
//!
//! - [`app`]: a server in this process on port 0 with a fresh database and
//!   a merchant ([`spawn_app`]), optionally with its database link through
//!   the fault proxy.
//! - [`binary`]: the real `tillsync` binary as a child process: its
//!   commands, `serve` on a free port waited for until `/healthz` answers.
//! - [`api`]: the few calls of the public API tests and benchmarks make
//!   over and over (a JSON post, a store, a till).
//! - [`proxy`]: a TCP fault proxy that passes, stalls, resets or delays a
//!   link.
//! - [`sales`]: builders for valid sales.
//! - [`settings`]: command-line settings parsed as the binary parses them.
//! - [`database`]: the Postgres server tests make their databases on.
//! - [`metrics`]: a server's `/metrics` page, and one sample of it.
//! - [`pgbouncer`]: a PgBouncer of the test's own in front of a server,
//!   in the pool mode the test asks for.
//! - [`balancer`]: a round-robin TCP balancer in front of several replicas.
//! - [`cluster`]: throwaway clusters of a test's own (primary, standby,
//!   promotion), in a temporary directory removed on drop.
//! - [`hostile`]: clients that crawl and hold bodies, and a process's
//!   resident memory.
#![forbid(unsafe_code)]

pub mod api;
pub mod app;
pub mod balancer;
pub mod binary;
pub mod cluster;
pub mod database;
pub mod hostile;
pub mod metrics;
pub mod pgbouncer;
pub mod proxy;
pub mod sales;
pub mod settings;

pub use app::{
    Merchant, TestApp, Till, assert_problem, proxy_to_postgres, spawn_app, spawn_app_behind_proxy,
    spawn_app_for_load, spawn_app_with, statuses,
};
pub use database::server_url;
