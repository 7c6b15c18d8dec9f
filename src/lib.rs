//! tillsync: a cloud sync backend for fleets of point-of-sale terminals.
//!
//! The request path reads top to bottom: `http` (router, middleware, auth)
//! -> handler -> `ingest` / `domain` -> `db` -> Postgres.
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
pub mod loadtest;
pub mod metrics;
pub mod telemetry;
