//! The `tillsync` binary: parse settings, start logging, run one command.
//! Its command line is the server's commands ([`tillsync::config`]) and the
//! fleet simulator's `loadtest` (the `tillsync-loadtest` crate), which the
//! server's library knows nothing of.

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{Parser, Subcommand};
use tillsync::config::{AdminCommand, LogArgs, ServerCommand};
use tillsync::{admin, app, db, telemetry};

/// mimalloc instead of glibc's malloc: a request allocates and frees many
/// small buffers across the runtime's threads, and glibc's malloc, with its
/// consolidation of freed chunks, was 18 % of the service's CPU at 64 tills
/// (`perf`, docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code for a bad setting, as for any usage error.
const EXIT_USAGE: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "tillsync",
    version,
    about = "Cloud sync backend for fleets of point-of-sale terminals"
)]
struct Cli {
    #[command(flatten)]
    log: LogArgs,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
#[allow(
    clippy::large_enum_variant,
    reason = "parsed once at start; boxing buys nothing. `allow`, not `expect`: \
              whether it fires depends on the variants' sizes, which differ \
              between the test and non-test builds"
)]
enum Command {
    #[command(flatten)]
    Server(ServerCommand),
    /// Simulate a fleet of tills against a running API, then verify that every
    /// sale is stored exactly once (see docs/loadtest.md). Exits non-zero on a failed verdict.
    Loadtest(tillsync_loadtest::LoadtestArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) =>
        {
            e.exit()
        }
        Err(e) => {
            // One line naming the setting; clap's usage tips would bury it.
            eprintln!("tillsync: {}", one_line(&e.to_string()));
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if let Err(e) = telemetry::init(cli.log.log_format, &cli.log.log_filter) {
        eprintln!("tillsync: invalid value for RUST_LOG (--log): {e}");
        return ExitCode::from(EXIT_USAGE);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tillsync: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "tillsync failed");
            eprintln!("tillsync: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Clap's message up to its usage tips, on one line: the first line alone
/// may end in "were not provided:" with the names on the lines after it.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .take_while(|line| !line.is_empty() && !line.starts_with("Usage:"))
        .collect::<Vec<_>>()
        .join(" ")
        .trim_start_matches("error: ")
        .to_owned()
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Server(ServerCommand::Serve(args)) => {
            let application = app::Application::build(args).await?;
            application.run_until(app::shutdown_signal()).await
        }
        Command::Server(ServerCommand::Migrate(database)) => {
            let mut database = database.clone();
            database.database_url = db::primary::locate(&database.database_url).await?;
            db::pooler::migrate(&database).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Server(ServerCommand::Admin(AdminCommand::CreateMerchant { name, database })) => {
            let created = admin::create_merchant(&database, &name).await?;
            println!("{created}");
            Ok(())
        }
        Command::Loadtest(args) => tillsync_loadtest::command(args).await,
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_clap_tree_is_consistent() {
        Cli::command().debug_assert();
    }
}
