//! tillsync: a cloud sync backend for fleets of point-of-sale terminals.
//!
//! The layers, top to bottom; each imports only the layers below it:
//!
//! | layer | what it holds |
//! |---|---|
//! | [`app`], [`admin`] | building and running the service; the bootstrap command |
//! | [`jobs`], [`http`], [`error`] | background work; the router, middleware and routes, and the API's problem documents |
//! | [`ingest`] | a push: read, decide, write, remember |
//! | [`health`] | the one door to the database: link state, admission, deadlines |
//! | [`db`] | the pool and the repositories, plain functions over a connection |
//! | [`domain`] | parsed types and pure rules, no I/O |
//! | [`config`], [`metrics`], [`telemetry`] | every setting; each app's own metrics recorder; logging |
//!
//! The request path reads top to bottom: `main` -> [`app`] (listener,
//! state, background work) -> [`http`] (router; middleware: request id, body
//! read whole, auth, per-terminal limits, admission) -> handler ->
//! [`ingest`] or reports -> [`db`] (repositories) -> Postgres. Every
//! database-bound step, the token lookup and background work included, runs
//! through the health layer's one API, [`health::Gate::run`], which refuses
//! work while the link is down, admits what the database can take, bounds
//! it by its deadline and learns from how it ended.
#![forbid(unsafe_code)]
// The docs are for the people who work on tillsync (CI builds them with
// private items): a link from a public item's doc to a private one is fine.
#![allow(rustdoc::private_intra_doc_links)]

pub mod admin;
pub mod app;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod health;
pub mod http;
pub mod ingest;
pub mod jobs;
pub mod metrics;
pub mod telemetry;
