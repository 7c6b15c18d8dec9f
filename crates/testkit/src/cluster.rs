//! Throwaway Postgres clusters of the test's own, for what the shared
//! server must never be used for: standbys, promotion, failover. A
//! [`Scratch`] is a temporary directory holding clusters made with the
//! server's own tools (`initdb`, `pg_basebackup -R`, `pg_ctl`), each on a
//! free port of loopback; dropping it stops every cluster started in it
//! (immediate shutdown) and removes the directory, also when the test
//! panicked.
//!
//! The tools come from `TILLSYNC_TEST_PG_BIN` or
//! `/usr/lib/postgresql/15/bin`. `initdb` refuses to run as root, so when
//! the test runs as root every tool runs as the `postgres` user through
//! `runuser`. The calls block (they wait for the server): from an async
//! test on the multi-thread runtime, wrap them in
//! `tokio::task::block_in_place`.
//!
//! A cluster can also serve TLS with a certificate the test made
//! ([`Cluster::serve_tls`]), and [`psql`] says what libpq makes of a
//! connection string, for tests that hold tillsync to libpq's behaviour.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

/// Where the Postgres server tools are.
fn pg_bin() -> PathBuf {
    std::env::var_os("TILLSYNC_TEST_PG_BIN").map_or_else(
        || PathBuf::from("/usr/lib/postgresql/15/bin"),
        PathBuf::from,
    )
}

/// Whether this process runs as root (then server tools run as `postgres`:
/// `initdb` and `pg_autoctl` refuse root).
pub fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// `program` as the `postgres` user when this process runs as root.
pub fn as_postgres(program: &Path) -> Command {
    if running_as_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// A server tool, run as `postgres` when the test runs as root.
fn tool(name: &str) -> Command {
    as_postgres(&pg_bin().join(name))
}

/// Runs a command to completion; panics with its output if it failed.
pub fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("could not run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    output
}

/// Runs `sql` with `psql` (libpq) at `url`: its output, or its error. The
/// reference for what a libpq client makes of a connection string.
pub fn psql(url: &str, sql: &str) -> Result<String, String> {
    let output = Command::new(pg_bin().join("psql"))
        .args(["-X", "-A", "-t", "-q", "-c", sql, url])
        .output()
        .unwrap_or_else(|e| panic!("could not run psql: {e}"));
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}

/// A port of loopback nothing listens on right now.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0 on loopback");
    listener.local_addr().expect("bound address").port()
}

/// A temporary directory for clusters; everything in it is stopped and
/// removed on drop.
pub struct Scratch {
    dir: PathBuf,
    /// Data directories of clusters that may be running.
    started: Mutex<Vec<PathBuf>>,
}

/// One cluster in a [`Scratch`]: its data directory and port.
pub struct Cluster<'a> {
    scratch: &'a Scratch,
    data: PathBuf,
    pub port: u16,
}

impl Scratch {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "tillsync-clusters-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir(&dir).expect("create the scratch directory");
        if running_as_root() {
            let mut chown = Command::new("chown");
            chown.arg("postgres:postgres").arg(&dir);
            run(&mut chown);
        }
        Self {
            dir,
            started: Mutex::new(Vec::new()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// A new primary (`initdb`, trust auth, superuser `postgres`), started.
    pub fn primary(&self, name: &str) -> Cluster<'_> {
        let data = self.dir.join(name);
        let mut initdb = tool("initdb");
        initdb.arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
        ]);
        run(&mut initdb);
        let cluster = Cluster {
            scratch: self,
            data,
            port: free_port(),
        };
        cluster.start();
        cluster
    }

    fn started(&self, data: &Path) {
        self.started.lock().unwrap().push(data.to_owned());
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for data in self
            .started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            // Immediate: nothing in a throwaway cluster needs a checkpoint.
            // A cluster already stopped makes pg_ctl fail: that is fine.
            let _ = tool("pg_ctl")
                .arg("-D")
                .arg(data)
                .args(["-m", "immediate", "-w", "stop"])
                .output();
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("could not remove {}: {e}", self.dir.display());
        }
    }
}

impl Cluster<'_> {
    /// `postgres://postgres@127.0.0.1:PORT/database`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// A hot standby of this cluster (`pg_basebackup -R`, streaming), started.
    pub fn standby(&self, name: &str) -> Cluster<'_> {
        let data = self.scratch.dir.join(name);
        let port = self.port.to_string();
        let mut basebackup = tool("pg_basebackup");
        basebackup.args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-D"]);
        basebackup
            .arg(&data)
            .args(["-R", "-X", "stream", "--checkpoint=fast", "--no-sync"]);
        run(&mut basebackup);
        let standby = Cluster {
            scratch: self.scratch,
            data,
            port: free_port(),
        };
        standby.start();
        standby
    }

    /// Starts the cluster on its port and waits until it accepts connections.
    pub fn start(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories='{}' \
             -c fsync=off -c shared_buffers=16MB -c max_connections=40",
            self.port,
            self.scratch.dir.display()
        );
        let log = self.data.with_extension("log");
        let mut start = tool("pg_ctl");
        start
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&log)
            .args(["-o", &options, "-w", "-t", "60", "start"]);
        // Registered first: a start that fails half-way is still stopped.
        self.scratch.started(&self.data);
        run(&mut start);
    }

    /// Serves TLS with this certificate and key (PEM files) from the next
    /// connection on: the files are copied into the data directory, where
    /// Postgres looks for them by default, readable by the server only
    /// (it refuses a key others may read), then `ssl` is turned on with a
    /// reload.
    pub async fn serve_tls(&self, certificate: &Path, key: &Path) {
        for (from, to) in [(certificate, "server.crt"), (key, "server.key")] {
            let to = self.data.join(to);
            std::fs::copy(from, &to).unwrap_or_else(|e| panic!("copy {from:?} to {to:?}: {e}"));
            std::fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .expect("make the file private");
            if running_as_root() {
                let mut chown = Command::new("chown");
                chown.arg("postgres:postgres").arg(&to);
                run(&mut chown);
            }
        }
        self.reconfigure("alter system set ssl = on").await;
    }

    /// Promotes a standby to a primary and waits until it is one.
    pub fn promote(&self) {
        let mut promote = tool("pg_ctl");
        promote
            .arg("-D")
            .arg(&self.data)
            .args(["-w", "-t", "60", "promote"]);
        run(&mut promote);
    }

    /// Stops the cluster at once (no checkpoint, connections cut).
    pub fn stop(&self) {
        let mut stop = tool("pg_ctl");
        stop.arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"]);
        run(&mut stop);
    }
    /// Runs `statement` (an `alter system`) on the `postgres` database,
    /// then reloads the configuration so it takes effect.
    pub async fn reconfigure(&self, statement: &str) {
        let mut conn = self.connect().await;
        sqlx::query(statement).execute(&mut conn).await.unwrap();
        sqlx::query("select pg_reload_conf()")
            .execute(&mut conn)
            .await
            .unwrap();
        let _ = conn.close().await;
    }

    /// On a primary: makes every commit wait for a standby to have it (a
    /// 200 already sent survives a failover), and waits until its standby
    /// counts as synchronous.
    pub async fn make_synchronous(&self) {
        self.reconfigure("alter system set synchronous_standby_names = '*'")
            .await;
        self.wait_until(
            "select count(*) from pg_stat_replication where sync_state = 'sync'",
            1,
            "no synchronous standby",
        )
        .await;
    }

    /// On a standby: stops receiving WAL from its primary, and waits until
    /// it has: what the primary commits from then on is not on it.
    pub async fn cut_off_from_primary(&self) {
        self.reconfigure("alter system set primary_conninfo = ''")
            .await;
        self.wait_until(
            "select count(*) from pg_stat_wal_receiver",
            0,
            "the standby still receives WAL",
        )
        .await;
    }

    async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url("postgres")).await.unwrap()
    }

    /// Polls `count` (a `select count(*)`) until it gives `wanted`, for up
    /// to 30 s.
    async fn wait_until(&self, count: &str, wanted: i64, failure: &str) {
        let started = Instant::now();
        let mut conn = self.connect().await;
        loop {
            let found: i64 = sqlx::query_scalar(count)
                .fetch_one(&mut conn)
                .await
                .unwrap();
            if found == wanted {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "{failure}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = conn.close().await;
    }
}
