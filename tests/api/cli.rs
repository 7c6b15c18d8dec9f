//! The binary itself: settings, bootstrap, start-up and shutdown.

use std::process::{Command, Stdio};
use std::time::Duration;

use uuid::Uuid;

use tillsync_testkit::database::{drop_database, fresh_name};
use tillsync_testkit::proxy::Fault;
use tillsync_testkit::{proxy_to_postgres, server_url};

use crate::support::tillsync;

#[test]
fn a_bad_setting_is_one_line_naming_it_and_exit_code_2() {
    let output = tillsync()
        .command()
        .args(["serve", "--listen", "not-an-address"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("--listen"), "names the setting: {stderr}");

    let output = tillsync()
        .command()
        .arg("serve")
        .env("TILLSYNC_DB_ACQUIRE_TIMEOUT", "soon")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("db-acquire-timeout"));

    let output = tillsync()
        .command()
        .args(["admin", "create-merchant"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains("--name"),
        "names the missing setting: {stderr}"
    );
}

/// One bad value of each kind (address, enum, duration, bounded number,
/// URL, switch, log filter), given through the environment as a container
/// would: each is refused before anything starts.
#[test]
fn every_kind_of_bad_setting_is_one_line_naming_it_and_exit_code_2() {
    for (variable, value, named) in [
        ("TILLSYNC_LISTEN", "localhost", "--listen"),
        ("TILLSYNC_LOG_FORMAT", "xml", "--log-format"),
        ("TILLSYNC_INGEST_DEADLINE", "5 parsecs", "--ingest-deadline"),
        ("TILLSYNC_DB_MAX_CONNECTIONS", "0", "--db-max-connections"),
        ("TILLSYNC_TERMINAL_BURST", "0", "--terminal-burst"),
        ("TILLSYNC_AUTH_CACHE_TTL", "1m", "--auth-cache-ttl"),
        ("DATABASE_URL", "mysql://db/tillsync", "--database-url"),
        ("TILLSYNC_HEALTH_LAYER", "maybe", "--health-layer"),
        ("TILLSYNC_NO_MIGRATE", "perhaps", "--no-migrate"),
        ("RUST_LOG", "tillsync=loud", "RUST_LOG"),
    ] {
        let output = tillsync()
            .command()
            .arg("serve")
            .env(variable, value)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{variable}={value}: {stderr}"
        );
        assert_eq!(
            stderr.trim().lines().count(),
            1,
            "{variable}: one line: {stderr}"
        );
        assert!(
            stderr.contains(named),
            "{variable}: names {named}: {stderr}"
        );
    }
}

#[test]
fn help_documents_every_setting_with_its_environment_variable() {
    let output = tillsync()
        .command()
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for variable in [
        "DATABASE_URL",
        "TILLSYNC_LISTEN",
        "RUST_LOG",
        "TILLSYNC_LOG_FORMAT",
        "TILLSYNC_IDEMPOTENCY_RETENTION",
    ] {
        assert!(help.contains(variable), "{variable} missing from --help");
    }
    assert!(help.contains("127.0.0.1:8080"), "defaults are shown");
}

/// The binary's command line, made of the same parts as in `src/main.rs`
/// (whose own type tests cannot reach). The test below checks that the
/// binary lists exactly these commands, so the two cannot drift apart.
#[derive(clap::Parser)]
#[command(name = "tillsync")]
struct Cli {
    #[command(flatten)]
    log: tillsync::config::LogArgs,
    #[command(subcommand)]
    command: Commands,
}

#[derive(clap::Subcommand)]
#[allow(
    clippy::large_enum_variant,
    reason = "parsed once, as in src/main.rs; its size depends on the settings compiled in"
)]
enum Commands {
    #[command(flatten)]
    Server(tillsync::config::ServerCommand),
    Loadtest(tillsync_loadtest::LoadtestArgs),
}

/// The names under "Commands:" in a `--help`, `help` aside.
fn commands_in_help(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// Every command's `--help` names, for each of its settings, what it does
/// and its environment variable. The list of settings comes from the clap
/// tree, so a new setting without an env var or a description fails here.
#[test]
fn help_of_every_command_documents_every_setting_and_its_environment_variable() {
    use clap::CommandFactory;
    // Inputs of one command, not settings: no environment variable.
    const INPUTS: &[&str] = &["name"];
    let root = Cli::command();
    let output = tillsync().command().arg("--help").output().unwrap();
    let listed = commands_in_help(&String::from_utf8(output.stdout).unwrap());
    let known: Vec<String> = root
        .get_subcommands()
        .map(|c| c.get_name().to_owned())
        .collect();
    assert_eq!(listed, known, "the binary's commands are the ones checked");
    let mut commands = vec![(Vec::<String>::new(), root.clone())];
    let mut checked = 0;
    while let Some((path, command)) = commands.pop() {
        for sub in command.get_subcommands() {
            let mut sub_path = path.clone();
            sub_path.push(sub.get_name().to_owned());
            commands.push((sub_path, sub.clone()));
        }
        if command.has_subcommands() {
            continue;
        }
        let output = tillsync()
            .command()
            .args(&path)
            .arg("--help")
            .output()
            .unwrap();
        assert!(output.status.success(), "{path:?} --help");
        let help = String::from_utf8(output.stdout).unwrap();
        let settings = command.get_arguments().chain(root.get_arguments());
        for arg in settings.filter(|a| !["help", "version"].contains(&a.get_id().as_str())) {
            let id = arg.get_id().as_str();
            let flag = format!("--{}", arg.get_long().unwrap());
            assert!(help.contains(&flag), "{path:?}: {flag} missing from --help");
            assert!(
                arg.get_help().is_some(),
                "{path:?}: {flag} has no description"
            );
            if INPUTS.contains(&id) {
                continue;
            }
            let env = arg
                .get_env()
                .unwrap_or_else(|| panic!("{path:?}: {flag} has no environment variable"));
            let env = env.to_str().unwrap();
            assert!(
                help.contains(&format!("[env: {env}")),
                "{path:?}: {env} missing from --help"
            );
            checked += 1;
        }
    }
    assert!(checked > 30, "only {checked} settings were found");
}

/// Bootstraps a merchant on a database that does not exist yet: the command
/// creates it and migrates it first.
/// Postgres's notices about migrations already applied are not news to a
/// user bootstrapping a merchant: stderr stays quiet beside the token.
#[test]
fn create_merchant_on_a_migrated_database_writes_nothing_to_stderr() {
    let name = fresh_name("tillsync_test_cli");
    let url = format!("{}/{name}", server_url());
    tillsync().create_merchant(&url, "Corner Shop");
    let output = tillsync()
        .command()
        .args(["admin", "create-merchant", "--name", "Second Shop"])
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    drop_database(&name);
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.trim().is_empty(), "stderr: {stderr}");
}

#[test]
fn create_merchant_creates_the_database_and_prints_a_token() {
    let name = fresh_name("tillsync_test_cli");
    let url = format!("{}/{name}", server_url());
    let output = tillsync()
        .command()
        .args(["admin", "create-merchant", "--name", "Corner Shop"])
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("stdout is one JSON object");
    assert!(printed["admin_token"].as_str().unwrap().starts_with("tsa_"));
    assert!(
        printed["merchant_id"]
            .as_str()
            .unwrap()
            .parse::<Uuid>()
            .is_ok()
    );

    let dropped = drop_database(&name);
    assert!(dropped, "the database existed");
}

#[test]
fn serve_logs_its_address_and_stops_cleanly_on_sigterm() {
    let name = fresh_name("tillsync_test_cli");
    let mut child = tillsync()
        .command()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("DATABASE_URL", format!("{}/{name}", server_url()))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let lines = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    std::thread::sleep(Duration::from_secs(3));
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    let lines = lines.join().unwrap();
    assert!(
        status.success(),
        "exit 0 after SIGTERM: {status:?}\n{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("listening on http://127.0.0.1:")),
        "{lines:#?}"
    );
    drop_database(&name);
}

#[test]
fn migrate_creates_the_database_and_is_a_no_op_the_second_time() {
    let name = fresh_name("tillsync_test_cli");
    for _ in 0..2 {
        let output = tillsync()
            .command()
            .arg("migrate")
            .env("DATABASE_URL", format!("{}/{name}", server_url()))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let tables = Command::new("psql")
        .args([
            &format!("{}/{name}", server_url()),
            "-qXtAc",
            "select count(*) from _sqlx_migrations where success",
        ])
        .output()
        .unwrap();
    let applied: usize = String::from_utf8_lossy(&tables.stdout)
        .trim()
        .parse()
        .unwrap();
    assert_eq!(applied, std::fs::read_dir("migrations").unwrap().count());
    assert!(drop_database(&name));
}

/// The database link runs through the fault proxy with latency, so a
/// provisioning request (a transaction of four statements) takes seconds;
/// SIGTERM arrives while it runs. It must still be answered, and the process
/// must exit 0 after it. The health layer's probe is given room so the slow
/// link is not refused as unavailable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_in_flight_request_finish_and_then_exits_0() {
    let name = fresh_name("tillsync_test_cli");
    let admin_token = tillsync()
        .create_merchant(&format!("{}/{name}", server_url()), "Corner Shop")
        .token;
    let proxy = proxy_to_postgres().await;
    let through_proxy = format!("postgres://postgres@{}/{name}", proxy.address());
    let served = tokio::task::spawn_blocking(move || {
        tillsync().serve(&[
            ("DATABASE_URL", through_proxy.as_str()),
            ("TILLSYNC_DB_PROBE_TIMEOUT", "30s"),
            ("TILLSYNC_DB_DEGRADED_LATENCY", "30s"),
            ("TILLSYNC_ADMIN_DEADLINE", "60s"),
            ("TILLSYNC_SHUTDOWN_GRACE", "30s"),
        ])
    })
    .await
    .unwrap();
    let client = reqwest::Client::new();
    let store: serde_json::Value = client
        .post(format!("{}/v1/stores", served.address))
        .bearer_auth(&admin_token)
        .json(&serde_json::json!({"name": "S", "timezone": "Europe/Berlin", "currency": "EUR"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    proxy.set(Fault::Latency(Duration::from_millis(250)));
    let started = std::time::Instant::now();
    let request = tokio::spawn({
        let request = client
            .post(format!("{}/v1/terminals", served.address))
            .bearer_auth(&admin_token)
            .json(&serde_json::json!({"store_id": store["store_id"], "name": "Till"}));
        async move {
            let response = request.send().await.unwrap();
            (response.status(), started.elapsed())
        }
    });
    let sigterm_after = Duration::from_millis(600);
    tokio::time::sleep(sigterm_after).await;
    assert!(!request.is_finished(), "the request is still in flight");
    served.sigterm();

    let (status, took) = request.await.unwrap();
    assert_eq!(status, reqwest::StatusCode::CREATED);
    assert!(took > sigterm_after, "answered after SIGTERM ({took:?})");
    let (exit, lines) = tokio::task::spawn_blocking(move || served.wait(Duration::from_secs(40)))
        .await
        .unwrap();
    assert!(exit.success(), "exit 0 after SIGTERM: {exit:?}\n{lines:#?}");
    let shutting_down = lines.iter().position(|l| l.contains("shutting down"));
    let answered = lines
        .iter()
        .position(|l| l.contains("/v1/terminals") && l.contains("answered 201"));
    assert!(
        matches!((shutting_down, answered), (Some(s), Some(a)) if s < a),
        "the request was answered after shutdown began: {lines:#?}"
    );
    drop_database(&name);
}
