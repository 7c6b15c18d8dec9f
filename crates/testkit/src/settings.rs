//! Command-line settings parsed the way the binary parses them, from argv,
//! so tests and benchmarks get every default and check the binary does.

use std::ffi::OsString;

use clap::{Args, Parser};
use tillsync::config::ServeArgs;

/// One command's settings alone, as a parser of their own.
#[derive(Parser)]
struct Only<A: Args> {
    #[command(flatten)]
    args: A,
}

/// `A` (e.g. `ServeArgs`, or the simulator's `LoadtestArgs`) parsed from
/// `argv`, whose first word is the command's name; the environment is read
/// as the binary reads it. Panics on settings that do not parse.
pub fn parse<A: Args>(argv: impl IntoIterator<Item = impl Into<OsString> + Clone>) -> A {
    match Only::<A>::try_parse_from(argv) {
        Ok(only) => only.args,
        Err(e) => panic!("test settings parse: {e}"),
    }
}

/// `tillsync serve` on port 0 of loopback with this database, plus `extra`.
pub fn serve_args(database_url: &str, extra: &[&str]) -> ServeArgs {
    let mut argv = vec![
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--database-url",
        database_url,
    ];
    argv.extend_from_slice(extra);
    parse(argv)
}
