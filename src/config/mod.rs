//! Every setting of the server, as one clap tree (the binary adds the fleet
//! simulator's). Each flag also reads an environment variable, so `--help`
//! is the complete list of settings with their defaults. Values are checked
//! here, at start, never later.

pub mod database;
pub mod database_tls;
pub mod database_url;

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

pub use database::{DatabaseArgs, Pooler};

/// The settings every command shares: how it logs. Global, so they may be
/// given before or after the command's name.
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log filter, in `tracing` EnvFilter syntax (e.g. `info,tillsync=debug`).
    #[arg(long = "log", env = "RUST_LOG", default_value = "info", global = true)]
    pub log_filter: String,

    /// Log line format.
    #[arg(long, env = "TILLSYNC_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The server's commands. The binary (`src/main.rs`) puts them at the top
/// of its command line, beside `loadtest`, the fleet simulator, which is not
/// part of the server.
#[derive(Debug, Subcommand)]
#[expect(
    clippy::large_enum_variant,
    reason = "parsed once at start; boxing buys nothing"
)]
pub enum ServerCommand {
    /// Run the HTTP API (creates the database and applies migrations first, unless --no-migrate).
    Serve(ServeArgs),
    /// Create the database if missing, apply migrations, and exit.
    Migrate(DatabaseArgs),
    /// Administrative commands that talk to the database directly.
    #[command(subcommand)]
    Admin(AdminCommand),
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create a merchant and print `{"merchant_id", "admin_token"}` as JSON on stdout.
    CreateMerchant {
        /// The merchant's display name.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address the HTTP API listens on.
    #[arg(long, env = "TILLSYNC_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Do not create the database or apply migrations at start.
    #[arg(long, env = "TILLSYNC_NO_MIGRATE")]
    pub no_migrate: bool,

    /// How long stored batch responses are kept for Idempotency-Key replays.
    #[arg(long, env = "TILLSYNC_IDEMPOTENCY_RETENTION", default_value = "7d", value_parser = parse_duration)]
    pub idempotency_retention: Duration,

    /// How long a looked-up token is trusted before it is checked again
    /// (bounds how long a revoked terminal token keeps working; at most 5s).
    #[arg(long, env = "TILLSYNC_AUTH_CACHE_TTL", default_value = "2s", value_parser = parse_auth_cache_ttl)]
    pub auth_cache_ttl: Duration,

    /// How long graceful shutdown waits for in-flight requests before giving up.
    #[arg(long, env = "TILLSYNC_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// Keep report totals current at ingest. `off` only to measure what
    /// they cost: reports are wrong while it is off.
    #[arg(long, env = "TILLSYNC_REPORT_TOTALS", value_enum, default_value_t = Switch::On)]
    pub report_totals: Switch,

    /// How long the last good copy of a totals report may be served (marked
    /// stale) while the database is unavailable.
    #[arg(long, env = "TILLSYNC_STALE_REPORT_TTL", default_value = "24h", value_parser = parse_duration)]
    pub stale_report_ttl: Duration,

    #[command(flatten)]
    pub client: ClientArgs,

    #[command(flatten)]
    pub database: DatabaseArgs,

    #[command(flatten)]
    pub health: HealthArgs,
}

/// What one client connection may cost: slow clients hold only their own
/// socket, never anything another request needs.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// How long a client has to send a request's headers, counted from the
    /// connection opening or the previous response; the same clock closes
    /// idle keep-alive connections (hyper times both with one timer).
    #[arg(long, env = "TILLSYNC_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_positive_duration)]
    pub header_timeout: Duration,

    /// How long a client has to send a request's body, counted from its
    /// headers; beyond, 408 `request_timeout`. Bodies are read whole before
    /// the request takes a database slot.
    #[arg(long, env = "TILLSYNC_BODY_TIMEOUT", default_value = "30s", value_parser = parse_positive_duration)]
    pub body_timeout: Duration,

    /// Memory, in MiB, that the request bodies being read and handled may
    /// take together. A body waits briefly for room, then is answered 503
    /// `overloaded` with Retry-After. At least 2 (a body may be 1 MiB).
    #[arg(long, env = "TILLSYNC_BODY_BUDGET_MIB", default_value_t = 64, value_parser = clap::value_parser!(u32).range(2..=1_048_576))]
    pub body_budget_mib: u32,

    /// Most client connections open at once; one more is answered 503
    /// `overloaded` at once and closed. Lowered at start, with a warning, to
    /// stay well under the process's open-file limit.
    #[arg(long, env = "TILLSYNC_MAX_CONNECTIONS", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
}

/// The database health layer: deadlines, probing, admission, rate limits.
#[derive(Debug, Clone, Args)]
pub struct HealthArgs {
    /// Switch the health layer off (no fail-fast, no admission control, no
    /// deadlines): only for measuring what it is worth.
    #[arg(long, env = "TILLSYNC_HEALTH_LAYER", value_enum, default_value_t = Switch::On)]
    pub health_layer: Switch,

    /// Deadline of ingest requests (push, sync), queueing included.
    #[arg(long, env = "TILLSYNC_INGEST_DEADLINE", default_value = "5s", value_parser = parse_duration)]
    pub ingest_deadline: Duration,

    /// Deadline of provisioning requests.
    #[arg(long, env = "TILLSYNC_ADMIN_DEADLINE", default_value = "10s", value_parser = parse_duration)]
    pub admin_deadline: Duration,

    /// Deadline of report requests.
    #[arg(long, env = "TILLSYNC_REPORT_DEADLINE", default_value = "10s", value_parser = parse_duration)]
    pub report_deadline: Duration,

    /// How often the link to Postgres is probed.
    #[arg(long, env = "TILLSYNC_DB_PROBE_INTERVAL", default_value = "500ms", value_parser = parse_duration)]
    pub db_probe_interval: Duration,

    /// How long a probe (connect included) may take before it counts as failed.
    #[arg(long, env = "TILLSYNC_DB_PROBE_TIMEOUT", default_value = "800ms", value_parser = parse_duration)]
    pub db_probe_timeout: Duration,

    /// Failed probes in a row after which the link is `unavailable`.
    #[arg(long, env = "TILLSYNC_DB_PROBE_FAILURES", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub db_probe_failures: u32,

    /// Probe latency above which the link is `degraded`.
    #[arg(long, env = "TILLSYNC_DB_DEGRADED_LATENCY", default_value = "250ms", value_parser = parse_duration)]
    pub db_degraded_latency: Duration,

    /// How long a connection returned to the pool may take to answer its
    /// check; one that does not is closed instead of held by a hung ping.
    #[arg(long, env = "TILLSYNC_DB_RELEASE_PING_TIMEOUT", default_value = "1s", value_parser = parse_duration)]
    pub db_release_ping_timeout: Duration,

    /// Lowest concurrency limit, and where admission restarts after an
    /// outage [default: half the highest limit].
    #[arg(long, env = "TILLSYNC_ADMISSION_MIN_LIMIT")]
    pub admission_min_limit: Option<usize>,

    /// Highest concurrency limit [default: 16 x the pool size].
    #[arg(long, env = "TILLSYNC_ADMISSION_MAX_LIMIT")]
    pub admission_max_limit: Option<usize>,

    /// Longest expected wait for a slot a request may queue with (judged
    /// from how fast requests are finishing); beyond, 503 `overloaded` at once.
    #[arg(long, env = "TILLSYNC_ADMISSION_QUEUE_WAIT", default_value = "75ms", value_parser = parse_duration)]
    pub admission_queue_wait: Duration,

    /// Longest expected wait for its group's write a push may be admitted
    /// with (judged from the pushes queued for a group and how fast groups
    /// are being written; backlogs get half); beyond, 503 `overloaded` at once. A push's
    /// answer also waits for its read and its group's own write, so this is
    /// about half the latency an admitted push should stay under (250 ms at
    /// p99, docs/benchmarks.md).
    #[arg(long, env = "TILLSYNC_ADMISSION_GROUP_WAIT", default_value = "120ms", value_parser = parse_duration)]
    pub admission_group_wait: Duration,

    /// Most requests that may wait for a slot at once, whatever their wait.
    #[arg(long, env = "TILLSYNC_ADMISSION_QUEUE", default_value_t = 1024)]
    pub admission_queue: usize,

    /// Largest Retry-After while the database is unavailable (answers are
    /// spread over 1-2 s at first, growing with the outage up to this).
    #[arg(long, env = "TILLSYNC_RETRY_AFTER_MAX", default_value = "10s", value_parser = parse_duration)]
    pub retry_after_max: Duration,

    /// Requests per second each terminal may make (0: no limit).
    #[arg(long, env = "TILLSYNC_TERMINAL_RATE", default_value_t = 20)]
    pub terminal_rate: u32,

    /// Requests one terminal may have in flight at once (a till pushes its
    /// batches one at a time); beyond, 429 `rate_limited`.
    #[arg(long, env = "TILLSYNC_TERMINAL_CONCURRENCY", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub terminal_concurrency: u32,

    /// Requests a terminal may make in a burst above its rate.
    #[arg(long, env = "TILLSYNC_TERMINAL_BURST", default_value_t = 40, value_parser = clap::value_parser!(u32).range(1..))]
    pub terminal_burst: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    On,
    Off,
}

impl Switch {
    pub fn is_on(self) -> bool {
        self == Switch::On
    }
}

pub(crate) fn parse_duration(raw: &str) -> Result<Duration, String> {
    humantime::parse_duration(raw).map_err(|e| format!("{e} (examples: 500ms, 5s, 7d)"))
}

fn parse_positive_duration(raw: &str) -> Result<Duration, String> {
    let duration = parse_duration(raw)?;
    if duration.is_zero() {
        return Err("must be more than 0".into());
    }
    Ok(duration)
}

fn parse_auth_cache_ttl(raw: &str) -> Result<Duration, String> {
    let ttl = parse_duration(raw)?;
    if ttl > Duration::from_secs(5) {
        return Err("must be at most 5s: revoked tokens must stop working within 5 seconds".into());
    }
    Ok(ttl)
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    /// The server's part of the binary's command line.
    #[derive(Debug, Parser)]
    #[command(name = "tillsync")]
    struct Cli {
        #[command(flatten)]
        log: LogArgs,
        #[command(subcommand)]
        command: ServerCommand,
    }

    #[test]
    fn the_clap_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    /// The declared defaults (read from clap, so the caller's environment
    /// does not leak into the test) are the ones the contract names.
    #[test]
    fn defaults_need_no_settings() {
        let cli = Cli::command();
        let serve = cli.find_subcommand("serve").unwrap();
        let default = |id: &str| {
            // Global settings live on the root command, the rest on `serve`.
            let arg = serve
                .get_arguments()
                .chain(cli.get_arguments())
                .find(|a| a.get_id() == id)
                .unwrap();
            arg.get_default_values()[0].to_string_lossy().into_owned()
        };
        assert_eq!(
            default("database_url"),
            "postgres://postgres@127.0.0.1:5432/tillsync"
        );
        assert_eq!(default("listen"), "127.0.0.1:8080");
        assert_eq!(default("idempotency_retention"), "7d");
        assert_eq!(default("log_format"), "text");
        assert_eq!(default("log_filter"), "info");
    }

    #[test]
    fn an_auth_cache_longer_than_revocation_allows_is_refused() {
        assert!(Cli::try_parse_from(["tillsync", "serve", "--auth-cache-ttl", "6s"]).is_err());
    }
}
