//! tillsync: a cloud sync backend for fleets of point-of-sale terminals.
//!
//! The request path reads top to bottom: `main` -> `app` (listener, state,
//! background work) -> `http` (router; middleware: request id, body read
//! whole, auth, per-terminal limits, admission) -> handler -> `ingest` or
//! reports -> `db` (repositories) -> Postgres. Every database-bound step, the
//! token lookup and background work included, runs through the health layer's
//! one API, `health::Gate::run`, which refuses work while the link is down,
//! admits what the database can take, bounds it by its deadline and learns
//! from how it ended. `domain` (parsed types and pure rules) sits below
//! everything; nothing in `db` imports from `ingest` or `http`.
#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod fold;
pub mod health;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod silence;
pub mod telemetry;
