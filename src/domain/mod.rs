//! Parsed, validated types of the product and their pure rules: the bounds
//! of every number and text, sales, tokens, store settings, the terminal
//! making a request, what a batch adds to the report totals.
//! Nothing here does I/O; handlers parse requests into these types and the
//! repositories store them.

pub mod bounds;
pub mod calendar;
pub mod exception;
pub mod references;
pub mod sale;
pub mod store;
pub mod terminal;
pub mod token;
pub mod totals;
