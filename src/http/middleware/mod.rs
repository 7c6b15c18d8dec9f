//! The layers every request passes before its handler, each in a file of
//! its own; [`crate::http`] assembles them in order: the body read whole
//! ([`body`]), the arrival stamp ([`arrival`]), Retry-After advice
//! ([`retry_after`]), who is calling ([`auth`]), the per-terminal limits
//! ([`rate_limit`]), and the step through the health layer
//! ([`admission`]); [`observe`] logs and counts every answer.

pub mod admission;
pub mod arrival;
pub mod auth;
pub mod body;
pub mod observe;
pub mod rate_limit;
pub mod retry_after;
