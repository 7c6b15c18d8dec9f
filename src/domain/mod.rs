//! Parsed, validated types of the product: sales, tokens, store settings.
//! Nothing here does I/O; handlers parse requests into these types and the
//! repositories store them.

pub mod sale;
pub mod store;
pub mod token;
