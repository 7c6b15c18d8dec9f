//! Logging: one `tracing` subscriber, text for people or JSON for log
//! pipelines, always on stderr so stdout stays clean for command output.
//! What is logged per request (and what never is) is decided in
//! [`crate::http::middleware::observe`].

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. Fails on a filter that does not parse.
pub fn init(format: LogFormat, filter: &str) -> Result<(), String> {
    let filter = EnvFilter::try_new(filter).map_err(|e| e.to_string())?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours for a person at a terminal, not escape codes in log files.
        .with_ansi(std::io::stderr().is_terminal());
    let result = match format {
        LogFormat::Text => builder.try_init(),
        // Event fields go at the top level; each line also carries, under
        // `span`, the fields of the span it was logged in (the request id,
        // method and route). The list of outer spans adds nothing here.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    result.map_err(|e| e.to_string())
}
