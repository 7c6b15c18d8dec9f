//! The resources of the API, one file per resource, each with its
//! handlers and its request and response types; [`params`] and [`cursor`]
//! are the query parameters and keyset cursors the listings share.

pub mod batches;
pub mod conflicts;
pub mod cursor;
pub mod exceptions;
pub mod ops;
pub mod params;
pub mod reports;
pub mod sales;
pub mod status_page;
pub mod stores;
pub mod sync;
pub mod terminals;
