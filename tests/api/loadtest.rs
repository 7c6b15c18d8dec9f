//! The `tillsync loadtest` command of the binary: its help, its output, its
//! JSON report and its exit codes. The simulator's runs and verdicts are
//! tested in its own crate (`crates/loadtest/tests`).

use tillsync_testkit::spawn_app_for_load;
use uuid::Uuid;

fn tillsync() -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_tillsync"));
    command.env("RUST_LOG", "warn");
    for (name, _) in std::env::vars() {
        if name.starts_with("TILLSYNC_LOADTEST_") {
            command.env_remove(name);
        }
    }
    command
}

#[tokio::test]
async fn the_command_prints_the_verdict_writes_json_and_exits_zero_on_a_pass() {
    let app = spawn_app_for_load().await;
    let json_path = std::env::temp_dir().join(format!("tillsync-loadtest-{}.json", Uuid::new_v4()));
    let output = tillsync()
        .args([
            "loadtest",
            "--terminals",
            "2",
            "--rate",
            "50",
            "--duration",
            "1s",
            // Above 2^53: a reader of JSON numbers as doubles (jq) rounds it.
            "--seed",
            "18446744073709551557",
        ])
        .arg("--json")
        .arg(&json_path)
        .env("TILLSYNC_LOADTEST_URL", &app.address)
        .env("TILLSYNC_LOADTEST_ADMIN_TOKEN", &app.merchant.token)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("verdict: PASS"), "{stdout}");
    assert!(stdout.contains("p99.9"), "{stdout}");
    assert!(
        output.stderr.is_empty(),
        "no progress line when not a terminal"
    );

    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    let _ = std::fs::remove_file(&json_path);
    assert_eq!(json["verdict"]["passed"], true);
    assert_eq!(json["verdict"]["lost"], 0);
    // The receipt's money is verified too, per till and for the store.
    assert_eq!(json["verdict"]["mismatched_tax_rows"], 0);
    assert_eq!(json["verdict"]["store_rows_unverified"], false);
    assert_eq!(json["settings"]["business_day_starts_at"], "04:00");
    assert!(json["receipts"]["tax_on_top"].is_u64(), "{json}");
    assert!(json["latency"]["sale"]["p99_9_ms"].is_number());
    // Written as a string, so it survives any JSON reader and can be passed
    // back to --seed as it is.
    assert_eq!(json["settings"]["seed"], "18446744073709551557");
    assert!(
        !json.to_string().contains(&app.merchant.token),
        "no secrets in the report"
    );
}

#[tokio::test]
async fn the_command_stops_before_any_load_when_the_admin_token_is_refused() {
    let app = spawn_app_for_load().await;
    let output = tillsync()
        .args([
            "loadtest",
            "--url",
            &app.address,
            "--admin-token",
            "tsa_not_a_token",
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("admin token was refused"), "{stderr}");
}

#[test]
fn help_documents_every_loadtest_setting_with_its_variable_and_default() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tillsync"))
        .args(["loadtest", "--help"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for setting in [
        "URL",
        "ADMIN_TOKEN",
        "TERMINALS",
        "RATE",
        "BATCH_SIZE",
        "DURATION",
        "DRAIN_TIMEOUT",
        "REQUEST_TIMEOUT",
        "SYNC_INTERVAL",
        "VERIFY_TIMEOUT",
        "VERIFY_CONCURRENCY",
        "BACKOFF_CAP",
        "ARRIVALS",
        "BUSINESS_DAY_STARTS_AT",
        "LATE_NIGHT_SHARE",
        "TAX_ON_TOP_SHARE",
        "TIP_SHARE",
        "SERVICE_CHARGE_SHARE",
        "GIFT_CARD_SHARE",
        "CASH_ROUNDING_SHARE",
        "JSON",
        "SEED",
    ] {
        assert!(
            help.contains(&format!("TILLSYNC_LOADTEST_{setting}")),
            "{setting} missing"
        );
    }
    for default in [
        "[default: 50]",
        "[default: 200]",
        "[default: 100]",
        "[default: 60s]",
        "[default: 04:00]",
    ] {
        assert!(help.contains(default), "{default} missing:\n{help}");
    }
}
