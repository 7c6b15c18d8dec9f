//! docker-compose.yml and the Dockerfile, read as files: the compose stack
//! names what it must (Postgres with a healthcheck and a volume, tillsync
//! built from this directory, started once Postgres is healthy, healthy
//! itself by `/readyz`), and the image is a small multi-stage build that
//! runs as a user other than root and can build from the files it copies
//! (the whole workspace).
//! (No Docker here: these tests read the files, they do not run them.)

use std::time::Duration;

use serde_json::Value;

fn compose() -> Value {
    let text = std::fs::read_to_string("docker-compose.yml").unwrap();
    serde_norway::from_str(&text).expect("docker-compose.yml is YAML")
}

fn dockerfile() -> Vec<String> {
    std::fs::read_to_string("Dockerfile")
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// A healthcheck's command as one string ("CMD", "curl", ... joined).
fn healthcheck(service: &Value) -> String {
    match &service["healthcheck"]["test"] {
        Value::Array(parts) => parts
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect::<Vec<_>>()
            .join(" "),
        Value::String(command) => command.clone(),
        other => panic!("no healthcheck: {other}"),
    }
}

fn duration(value: &Value) -> Duration {
    humantime::parse_duration(value.as_str().unwrap()).unwrap()
}

#[test]
fn compose_runs_postgres_with_a_healthcheck_and_a_volume() {
    let compose = compose();
    let postgres = &compose["services"]["postgres"];
    assert!(postgres["image"].as_str().unwrap().starts_with("postgres:"));
    assert!(healthcheck(postgres).contains("pg_isready"));
    let volume = postgres["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .find_map(|v| v.strip_suffix(":/var/lib/postgresql/data"))
        .expect("the data directory is on a volume");
    assert!(
        compose["volumes"].get(volume).is_some(),
        "{volume} is a named volume"
    );
}

#[test]
fn compose_starts_tillsync_when_postgres_is_healthy_and_checks_it_by_readyz() {
    let compose = compose();
    let tillsync = &compose["services"]["tillsync"];
    let context = tillsync["build"]
        .as_str()
        .or_else(|| tillsync["build"]["context"].as_str());
    assert_eq!(context, Some("."), "built from this directory");
    assert_eq!(
        tillsync["depends_on"]["postgres"]["condition"],
        "service_healthy"
    );

    let environment = tillsync["environment"]
        .as_object()
        .expect("environment as a map");
    let database_url = environment["DATABASE_URL"].as_str().unwrap();
    let host = database_url
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split(['/', ':']).next());
    assert_eq!(host, Some("postgres"), "{database_url} names the service");
    let listen = environment["TILLSYNC_LISTEN"].as_str().unwrap();
    let port = listen.rsplit(':').next().unwrap();
    assert!(
        listen.starts_with("0.0.0.0:"),
        "reachable from outside the container"
    );

    let check = healthcheck(tillsync);
    assert!(
        check.contains(&format!("http://127.0.0.1:{port}/readyz")),
        "{check}"
    );
    assert!(
        tillsync["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_str().unwrap().ends_with(&format!(":{port}"))),
        "the API port is published"
    );
    // Docker's SIGKILL must not cut the graceful shutdown short.
    assert!(duration(&tillsync["stop_grace_period"]) > Duration::from_secs(10));

    let tool = check
        .split_whitespace()
        .find(|w| *w != "CMD" && *w != "CMD-SHELL")
        .unwrap()
        .to_owned();
    let lines = dockerfile();
    let last_from = lines.iter().rposition(|l| l.starts_with("FROM ")).unwrap();
    assert!(
        lines[last_from..]
            .iter()
            .any(|l| l.contains("install") && l.split_whitespace().any(|w| w == tool)),
        "the healthcheck's {tool} is installed in the final image"
    );
}

#[test]
fn the_dockerfile_is_multi_stage_and_runs_as_a_user_other_than_root() {
    let lines = dockerfile();
    let stages: Vec<&String> = lines.iter().filter(|l| l.starts_with("FROM ")).collect();
    assert!(stages.len() >= 2, "multi-stage: {stages:?}");
    let builder = stages[0]
        .split_whitespace()
        .last()
        .expect("the first stage is named");
    let last_from = lines.iter().rposition(|l| l.starts_with("FROM ")).unwrap();
    let last_stage = &lines[last_from..];
    assert!(
        last_stage
            .iter()
            .any(|l| l.starts_with(&format!("COPY --from={builder} "))),
        "the final stage takes only the binary from the build stage"
    );
    let user = last_stage
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("the final stage sets a user");
    assert!(
        !["root", "0", "0:0"].contains(&user.trim()),
        "runs as {user}"
    );
    assert!(
        last_stage
            .iter()
            .any(|l| l.starts_with("ENTRYPOINT") && l.contains("tillsync"))
    );
}

/// The workspace's members, as the root manifest names them (`crates/*`
/// expanded to the folders that hold a Cargo.toml).
fn workspace_members() -> Vec<String> {
    let manifest = std::fs::read_to_string("Cargo.toml").unwrap();
    let line = manifest
        .lines()
        .find(|l| l.trim_start().starts_with("members = ["))
        .expect("the root manifest names its workspace members");
    let mut members = Vec::new();
    for pattern in line.split('"').skip(1).step_by(2) {
        match pattern.strip_suffix("/*") {
            Some(folder) => {
                for entry in std::fs::read_dir(folder).unwrap() {
                    let path = entry.unwrap().path();
                    if path.join("Cargo.toml").is_file() {
                        members.push(path.display().to_string());
                    }
                }
            }
            None => members.push(pattern.to_owned()),
        }
    }
    members.sort();
    members
}

/// Every file the build copies exists and is not left out by
/// .dockerignore, and everything cargo reads is copied before it first
/// runs: the manifest and lock, its settings (.cargo: offline query
/// checks), the query metadata, the migrations compiled in, the sources,
/// and every workspace member whole (cargo reads each member's manifest and
/// refuses one whose target files are missing).
#[test]
fn the_docker_build_has_every_file_cargo_needs() {
    let lines = dockerfile();
    let ignored = std::fs::read_to_string(".dockerignore").unwrap_or_default();
    for line in lines
        .iter()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from="))
    {
        let words: Vec<&str> = line.split_whitespace().collect();
        for source in &words[1..words.len() - 1] {
            assert!(
                std::path::Path::new(source).exists(),
                "{line}: {source} is missing"
            );
            assert!(
                !ignored.lines().any(|i| i.trim() == *source),
                "{source} is in .dockerignore"
            );
        }
    }

    let first_build = lines
        .iter()
        .position(|l| l.contains("cargo build"))
        .unwrap();
    let copied: Vec<&str> = lines[..first_build]
        .iter()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from="))
        .flat_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            words[1..words.len() - 1].to_vec()
        })
        .map(|source| source.trim_end_matches('/'))
        .collect();
    let members = workspace_members();
    assert!(members.len() >= 3, "members: {members:?}");
    let needed = [
        "Cargo.toml",
        "Cargo.lock",
        ".cargo",
        ".sqlx",
        "migrations",
        "src",
    ]
    .into_iter()
    .map(str::to_owned)
    .chain(members);
    for path in needed {
        assert!(
            copied
                .iter()
                .any(|source| path == *source || path.starts_with(&format!("{source}/"))),
            "{path} is not copied before the Dockerfile first runs cargo (copied: {copied:?})"
        );
    }
}
