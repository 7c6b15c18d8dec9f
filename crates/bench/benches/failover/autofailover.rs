//! A pg_auto_failover formation of the drill's own: a monitor and two data
//! nodes (`pg_autoctl create monitor`, `pg_autoctl create postgres`, then
//! `pg_autoctl run` for each), in the drill's temporary directory, on free
//! ports of loopback, run as the `postgres` user (through `runuser` when
//! the drill runs as root). The standby is synchronous: pg_auto_failover's
//! defaults (`number_sync_standbys` 0, `replication-quorum` true) give the
//! primary `synchronous_standby_names = 'ANY 1 (pgautofailover_standby_2)'`
//! while the standby is `secondary`, which the drill checks before the kill.
//!
//! The failover is pg_auto_failover's own: the primary's node is killed
//! as a machine dies (every process of it, keeper included, SIGKILL, so
//! nothing restarts it), and the monitor detects it and has the standby
//! promoted. The drill only watches ([`crate::timeline`]).
//!
//! Everything runs with `HOME` and the `XDG_*` directories inside the
//! temporary directory, so pg_autoctl's configuration, state and pid files
//! go away with it; dropping the [`Formation`] kills every process it
//! started, also when the drill panicked.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use sqlx::postgres::PgConnection;
use sqlx::{Connection, Row};

use tillsync_testkit::cluster::{Scratch, free_port};

use tillsync_testkit::cluster::{as_postgres, run};

use crate::processes::{chown_to_postgres, kill_tree};

/// The monitor's settings for a fast failover (`alter system`, then a
/// reload), with pg_auto_failover's defaults in the comments. Detection:
/// the monitor fails a node when its keeper has not reported for
/// `node_considered_unhealthy_timeout` and its health checks (a connection
/// attempt every `health_check_period`, retried `health_check_max_retries`
/// times `health_check_retry_delay` apart, each given
/// `health_check_timeout`) have failed. Promotion: the standby is promoted
/// read-only at once, and made writable `primary_demote_timeout` later,
/// the time the old primary is given to shut itself down.
pub const FAST_MONITOR_SETTINGS: &[(&str, &str)] = &[
    ("pgautofailover.health_check_period", "1s"),     // 5s
    ("pgautofailover.health_check_timeout", "1s"),    // 5s
    ("pgautofailover.health_check_max_retries", "2"), // 2
    ("pgautofailover.health_check_retry_delay", "500ms"), // 2s
    ("pgautofailover.node_considered_unhealthy_timeout", "3s"), // 20s
    ("pgautofailover.primary_demote_timeout", "6s"),  // 30s
];

/// The keepers' settings (`pg_autoctl config set`, before `run`). A primary
/// that has heard neither the monitor nor its standby for
/// `network_partition_timeout` seconds shuts Postgres down, so that it
/// takes no write the promoted standby will not have: it must do so within
/// the monitor's `primary_demote_timeout`, with a margin for the keeper's
/// one-second loop and whole-second clock (2 + 2 < 6 here; 20 and 30 by
/// default).
pub const FAST_KEEPER_SETTINGS: &[(&str, &str)] = &[
    ("timeout.network_partition_timeout", "2"), // 20
];

/// Postgres settings of the drill's own, appended to each cluster's
/// `postgresql.conf` before its first `run`: pg_autoctl sizes
/// `shared_buffers` to a quarter of the machine's memory, and here three
/// clusters share one machine with everything else.
const DRILL_CONF: &str =
    "\n# failover drill: three clusters on one machine\nshared_buffers = '128MB'\n";

/// How long the formation may take to reach primary + secondary.
const SETUP_TIMEOUT: Duration = Duration::from_secs(180);

/// The monitor and the two data nodes, running.
pub struct Formation<'s> {
    dir: &'s Path,
    pub monitor: Node,
    pub nodes: [Node; 2],
}

/// One `pg_autoctl` node: its data directory, port and running service.
pub struct Node {
    pub name: &'static str,
    pub data: PathBuf,
    pub port: u16,
    run: Option<Child>,
}

impl Node {
    fn new(dir: &Path, name: &'static str) -> Self {
        Self {
            name,
            data: dir.join(name),
            port: free_port(),
            run: None,
        }
    }

    /// `postgres://postgres@127.0.0.1:PORT/database`: the superuser over
    /// loopback (trust, as `--auth trust` sets it up).
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

impl<'s> Formation<'s> {
    /// Creates and runs the monitor (with `monitor_settings`), then the two
    /// nodes (with `keeper_settings`), and waits until the first is
    /// `primary` and the second `secondary`. Blocking.
    pub fn start(
        scratch: &'s Scratch,
        monitor_settings: &[(&str, &str)],
        keeper_settings: &[(&str, &str)],
    ) -> Self {
        let dir = scratch.path();
        let run = dir.join("xdg-run");
        std::fs::create_dir(&run).expect("create XDG_RUNTIME_DIR");
        std::fs::set_permissions(&run, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .expect("make XDG_RUNTIME_DIR private");
        chown_to_postgres(&run);
        let mut formation = Self {
            dir,
            monitor: Node::new(dir, "monitor"),
            nodes: [Node::new(dir, "node1"), Node::new(dir, "node2")],
        };
        formation.create_monitor(monitor_settings);
        let monitor_uri = format!(
            "postgres://autoctl_node@127.0.0.1:{}/pg_auto_failover?sslmode=disable",
            formation.monitor.port
        );
        for i in 0..2 {
            formation.create_node(i, &monitor_uri, keeper_settings);
            if i == 0 {
                formation.wait_for_states(&["single"]);
            }
        }
        formation.wait_for_states(&["primary", "secondary"]);
        formation
    }

    fn create_monitor(&mut self, settings: &[(&str, &str)]) {
        let (data, port) = (self.monitor.data.clone(), self.monitor.port.to_string());
        autoctl_done(
            self.autoctl(&["create", "monitor", "--pgdata"])
                .arg(&data)
                .args(["--pgport", &port, "--pgctl"])
                .arg(pg_bin().join("pg_ctl"))
                .args(["--hostname", "127.0.0.1", "--auth", "trust", "--no-ssl"]),
        );
        // `create monitor` has no --listen: it would listen on every address.
        autoctl_done(
            self.autoctl(&["config", "set", "--pgdata"])
                .arg(&data)
                .args(["postgresql.listen_addresses", "127.0.0.1"]),
        );
        append_drill_conf(&data);
        self.monitor.run = Some(self.spawn_run(&data, "monitor"));
        let statements: Vec<String> = settings
            .iter()
            .map(|(name, value)| format!("alter system set {name} = '{value}'"))
            .collect();
        block_on(async {
            let mut conn = connect_when_up(&self.monitor.url("pg_auto_failover")).await;
            for statement in &statements {
                sqlx::query(statement).execute(&mut conn).await.unwrap();
            }
            sqlx::query("select pg_reload_conf()")
                .execute(&mut conn)
                .await
                .unwrap();
        });
    }

    fn create_node(&mut self, i: usize, monitor_uri: &str, settings: &[(&str, &str)]) {
        let (name, data, port) = {
            let node = &self.nodes[i];
            (node.name, node.data.clone(), node.port.to_string())
        };
        autoctl_done(
            self.autoctl(&["create", "postgres", "--pgdata"])
                .arg(&data)
                .args(["--pgport", &port, "--pgctl"])
                .arg(pg_bin().join("pg_ctl"))
                .args(["--hostname", "127.0.0.1", "--listen", "127.0.0.1"])
                .args(["--name", name, "--monitor", monitor_uri])
                .args(["--auth", "trust", "--no-ssl", "--dbname", "tillsync"])
                .args(["--replication-quorum", "true", "--candidate-priority", "50"]),
        );
        for (key, value) in settings {
            autoctl_done(
                self.autoctl(&["config", "set", "--pgdata"])
                    .arg(&data)
                    .args([key, value]),
            );
        }
        append_drill_conf(&data);
        self.nodes[i].run = Some(self.spawn_run(&data, name));
    }

    /// `pg_autoctl` as the `postgres` user, with nothing of the caller's
    /// environment (no `PG*` variable may point it at another server).
    fn autoctl(&self, args: &[&str]) -> Command {
        let mut command = as_postgres(&pg_autoctl());
        command
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .env("LANG", "C.UTF-8")
            .env("HOME", self.dir)
            .env("XDG_CONFIG_HOME", self.dir.join("xdg-config"))
            .env("XDG_DATA_HOME", self.dir.join("xdg-data"))
            .env("XDG_RUNTIME_DIR", self.dir.join("xdg-run"))
            .args(args);
        command
    }

    /// `pg_autoctl run` for this node, its output in `<name>.log`.
    fn spawn_run(&self, data: &Path, name: &str) -> Child {
        let log = File::create(self.dir.join(format!("{name}.log"))).expect("create the log");
        self.autoctl(&["run", "--pgdata"])
            .arg(data)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log file"))
            .stderr(log)
            .spawn()
            .expect("pg_autoctl run starts")
    }

    /// The URL pg_auto_failover hands out (`pg_autoctl show uri`).
    pub fn uri(&self) -> String {
        autoctl_done(
            self.autoctl(&["show", "uri", "--formation", "default", "--pgdata"])
                .arg(&self.monitor.data),
        )
    }

    /// Waits until the monitor reports the nodes in these states (node 1
    /// first), both as reported and as assigned.
    fn wait_for_states(&self, states: &[&str]) {
        let wanted = states.join(",");
        let started = Instant::now();
        block_on(async {
            let mut conn = connect_when_up(&self.monitor.url("pg_auto_failover")).await;
            loop {
                let found: Option<String> = sqlx::query_scalar(
                    "select string_agg(reportedstate::text || '/' || goalstate::text, ',' order by nodeid)
                     from pgautofailover.node",
                )
                .fetch_one(&mut conn)
                .await
                .unwrap();
                let found = found.unwrap_or_default();
                let settled: Vec<&str> = found
                    .split(',')
                    .filter_map(|s| s.split_once('/').filter(|(r, g)| r == g).map(|(r, _)| r))
                    .collect();
                if settled.join(",") == wanted {
                    break;
                }
                assert!(
                    started.elapsed() < SETUP_TIMEOUT,
                    "the formation did not reach {wanted} within {SETUP_TIMEOUT:?} (now {found}); logs in {}",
                    self.dir.display()
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
    }

    /// The node the monitor has as primary, and the other one.
    pub async fn primary_and_standby(&self) -> (&Node, &Node) {
        let mut conn = PgConnection::connect(&self.monitor.url("pg_auto_failover"))
            .await
            .unwrap();
        let primary: String = sqlx::query_scalar(
            "select nodename from pgautofailover.node where reportedstate = 'primary'",
        )
        .fetch_one(&mut conn)
        .await
        .expect("the monitor has a primary");
        let _ = conn.close().await;
        let [a, b] = &self.nodes;
        if a.name == primary { (a, b) } else { (b, a) }
    }

    /// The primary's `synchronous_standby_names` and its standby's
    /// `sync_state`, which must be `quorum` (or `sync`) for a 200 to mean
    /// committed on both.
    pub async fn replication(&self, primary: &Node) -> (String, String) {
        let mut conn = PgConnection::connect(&primary.url("postgres"))
            .await
            .unwrap();
        let row = sqlx::query(
            "select current_setting('synchronous_standby_names'),
                    coalesce((select string_agg(sync_state, ',') from pg_stat_replication), '')",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        let _ = conn.close().await;
        (row.get(0), row.get(1))
    }

    /// Kills every process of this node at once, as when its machine
    /// dies: frozen first (SIGSTOP), so that no supervisor restarts a
    /// child between two kills, then SIGKILL. Returns when it happened.
    pub fn kill(&mut self, node: &str) -> (Instant, SystemTime) {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.name == node)
            .expect("a node of the formation");
        let mut child = node.run.take().expect("the node runs");
        kill_tree(child.id());
        let at = (Instant::now(), SystemTime::now());
        let _ = child.wait();
        at
    }
}

impl Drop for Formation<'_> {
    fn drop(&mut self) {
        // Nodes first: a keeper whose monitor is gone only retries.
        for node in self.nodes.iter_mut().chain([&mut self.monitor]) {
            if let Some(mut child) = node.run.take() {
                kill_tree(child.id());
                let _ = child.wait();
            }
        }
    }
}

/// Where the Postgres server tools are (as the test kit finds them).
fn pg_bin() -> PathBuf {
    std::env::var_os("TILLSYNC_TEST_PG_BIN").map_or_else(
        || PathBuf::from("/usr/lib/postgresql/15/bin"),
        PathBuf::from,
    )
}

/// `pg_autoctl`: `DRILL_PG_AUTOCTL`, else the Debian package's.
fn pg_autoctl() -> PathBuf {
    let path = std::env::var_os("DRILL_PG_AUTOCTL")
        .map_or_else(|| PathBuf::from("/usr/bin/pg_autoctl"), PathBuf::from);
    assert!(
        path.is_file(),
        "no pg_autoctl at {}: install Debian's postgresql-15-auto-failover \
         (`scripts/test --setup` does), name it with DRILL_PG_AUTOCTL, or drill \
         the pg_ctl variant with DRILL_HA=pg_ctl",
        path.display()
    );
    path
}

/// Appends [`DRILL_CONF`] to the cluster's `postgresql.conf` (as the
/// `postgres` user, who owns it). `postgresql.conf` includes
/// pg_autoctl's own file first, so these lines win.
fn append_drill_conf(data: &Path) {
    let conf = data.join("postgresql.conf");
    let mut text = std::fs::read_to_string(&conf).expect("read postgresql.conf");
    if !text.contains(DRILL_CONF) {
        text.push_str(DRILL_CONF);
        std::fs::write(&conf, text).expect("write postgresql.conf");
    }
}

/// Runs a future to completion from blocking code on the drill's runtime.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(future))
}

/// Connects to `url`, retrying for up to 60 s while the server starts.
async fn connect_when_up(url: &str) -> PgConnection {
    let started = Instant::now();
    loop {
        match PgConnection::connect(url).await {
            Ok(conn) => return conn,
            Err(e) if started.elapsed() > Duration::from_secs(60) => {
                panic!("{url} did not accept connections: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Runs a `pg_autoctl` command to completion; its standard output.
fn autoctl_done(command: &mut Command) -> String {
    String::from_utf8_lossy(&run(command).stdout)
        .trim()
        .to_owned()
}
