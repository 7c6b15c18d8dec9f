//! The `tillsync` binary: parse settings, start logging, run one command.

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use tillsync::config::{AdminCommand, Cli, Command};
use tillsync::{admin, app, db, loadtest, telemetry};

/// Exit code for a bad setting, as for any usage error.
const EXIT_USAGE: u8 = 2;

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
    if let Err(e) = telemetry::init(cli.log_format, &cli.log_filter) {
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
        Command::Serve(args) => {
            let application = app::Application::build(args).await?;
            application.run_until(app::shutdown_signal()).await
        }
        Command::Migrate(database) => {
            db::create_and_migrate(&database.database_url).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Admin(AdminCommand::CreateMerchant { name, database }) => {
            let created = admin::create_merchant(&database, &name).await?;
            println!("{created}");
            Ok(())
        }
        Command::Loadtest(args) => loadtest::command(args).await,
    }
}
