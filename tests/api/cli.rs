//! The binary itself: settings, bootstrap, start-up and shutdown.

use std::process::{Command, Stdio};
use std::time::Duration;

use uuid::Uuid;

use crate::support::server_url;

fn tillsync() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tillsync"));
    command.env_remove("DATABASE_URL").env_remove("RUST_LOG");
    command
}

#[test]
fn a_bad_setting_is_one_line_naming_it_and_exit_code_2() {
    let output = tillsync()
        .args(["serve", "--listen", "not-an-address"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("--listen"), "names the setting: {stderr}");

    let output = tillsync()
        .arg("serve")
        .env("TILLSYNC_DB_ACQUIRE_TIMEOUT", "soon")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("db-acquire-timeout"));

    let output = tillsync()
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

#[test]
fn help_documents_every_setting_with_its_environment_variable() {
    let output = tillsync().args(["serve", "--help"]).output().unwrap();
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

/// Bootstraps a merchant on a database that does not exist yet: the command
/// creates it and migrates it first.
#[test]
fn create_merchant_creates_the_database_and_prints_a_token() {
    let name = format!("tillsync_test_cli_{}", Uuid::new_v4().simple());
    let url = format!("{}/{name}", server_url());
    let output = tillsync()
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

    let dropped = tillsync_drop_database(&name);
    assert!(dropped, "the database existed");
}

fn tillsync_drop_database(name: &str) -> bool {
    Command::new("psql")
        .args([
            &format!("{}/postgres", server_url()),
            "-qXtAc",
            &format!("drop database \"{name}\" with (force)"),
        ])
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn serve_logs_its_address_and_stops_cleanly_on_sigterm() {
    let name = format!("tillsync_test_cli_{}", Uuid::new_v4().simple());
    let mut child = tillsync()
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
    tillsync_drop_database(&name);
}

#[test]
fn migrate_creates_the_database_and_is_a_no_op_the_second_time() {
    let name = format!("tillsync_test_cli_{}", Uuid::new_v4().simple());
    for _ in 0..2 {
        let output = tillsync()
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
    assert!(tillsync_drop_database(&name));
}
