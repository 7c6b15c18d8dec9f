//! A PgBouncer of the test's own, in front of a Postgres server: Debian's
//! `pgbouncer` (1.18 on bookworm), started on a free port of loopback with
//! a generated ini and user list in a temporary directory, and killed and
//! removed on drop (also when the test panicked). It never runs as the
//! system service: one instance per test, so each test chooses its pool
//! mode, pool size and the parameters it ignores.
//!
//! PgBouncer refuses to run as root, so when the test runs as root it runs
//! as the `postgres` user through `runuser`, like the clusters of
//! [`crate::cluster`]. CI installs the package (`.ci/run`); a machine
//! without it fails the test with a message saying so, never skips it.

use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cluster::free_port;

/// Where Debian installs the binary; `TILLSYNC_TEST_PGBOUNCER` overrides it.
fn binary() -> PathBuf {
    std::env::var_os("TILLSYNC_TEST_PGBOUNCER")
        .map_or_else(|| PathBuf::from("/usr/sbin/pgbouncer"), PathBuf::from)
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// PgBouncer's `pool_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    Session,
    Transaction,
}

/// How to configure the instance. The defaults are PgBouncer's own where
/// it matters to the tests: nothing in `ignore_startup_parameters`, so a
/// client sending a parameter PgBouncer does not know is refused as it
/// would be in production.
#[derive(Debug, Clone)]
pub struct Config {
    pub pool_mode: PoolMode,
    /// Server connections per (database, user): small, so clients share them.
    pub default_pool_size: u32,
    /// Startup parameters PgBouncer accepts and drops (comma separated).
    pub ignore_startup_parameters: String,
    /// Run on a server connection whenever a client releases it.
    pub server_reset_query: String,
    /// Run `server_reset_query` in transaction mode too (off by default).
    pub server_reset_query_always: bool,
    /// Seconds a client may wait for a server connection before PgBouncer
    /// gives up on it (its default: 120).
    pub query_wait_timeout_s: u32,
}

impl Config {
    pub fn new(pool_mode: PoolMode) -> Self {
        Self {
            pool_mode,
            default_pool_size: 2,
            ignore_startup_parameters: String::new(),
            server_reset_query: "DISCARD ALL".to_owned(),
            server_reset_query_always: false,
            query_wait_timeout_s: 120,
        }
    }
}

/// A running PgBouncer; killed and its directory removed on drop.
pub struct PgBouncer {
    child: Child,
    dir: PathBuf,
    pub port: u16,
}

impl PgBouncer {
    /// Starts PgBouncer in front of the Postgres server at `upstream`
    /// (`host`, `port`; user `postgres`, trust) for every database name, and
    /// waits until it accepts connections. Panics, saying why, if it cannot.
    pub fn start(upstream_host: &str, upstream_port: u16, config: &Config) -> Self {
        let binary = binary();
        assert!(
            binary.exists(),
            "{} not found: install Debian's pgbouncer (`apt-get install -y pgbouncer`, as .ci/run does) \
             or set TILLSYNC_TEST_PGBOUNCER",
            binary.display()
        );
        let dir = std::env::temp_dir().join(format!(
            "tillsync-pgbouncer-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir(&dir).expect("create the PgBouncer directory");
        let port = free_port();
        let ini = dir.join("pgbouncer.ini");
        std::fs::write(
            &ini,
            ini_text(&dir, port, upstream_host, upstream_port, config),
        )
        .expect("write pgbouncer.ini");
        // Trust still wants the user listed.
        std::fs::write(dir.join("userlist.txt"), "\"postgres\" \"\"\n")
            .expect("write userlist.txt");
        if running_as_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .expect("run chown");
            assert!(status.success(), "chown of {} failed", dir.display());
        }
        let mut command = if running_as_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&binary);
            command
        } else {
            Command::new(&binary)
        };
        command
            .arg(&ini)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {}: {e}", binary.display()));
        let bouncer = Self { child, dir, port };
        bouncer.wait_until_listening(Duration::from_secs(10));
        bouncer
    }

    /// `postgres://postgres@127.0.0.1:PORT/database`, through PgBouncer.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// PgBouncer's log so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn wait_until_listening(&self, within: Duration) {
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < within,
                "PgBouncer did not listen on port {} within {within:?}; its log:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        // Killing `runuser` alone would leave PgBouncer running: SIGTERM
        // to the process group is not ours to take, so the pid file says
        // which process is PgBouncer itself.
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("pgbouncer.pid")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("could not remove {}: {e}", self.dir.display());
        }
    }
}

fn ini_text(
    dir: &Path,
    port: u16,
    upstream_host: &str,
    upstream_port: u16,
    config: &Config,
) -> String {
    let mode = match config.pool_mode {
        PoolMode::Session => "session",
        PoolMode::Transaction => "transaction",
    };
    let mut ini = String::new();
    let dir = dir.display();
    // `*`: every database name a test makes, without listing it here.
    let _ = writeln!(ini, "[databases]");
    let _ = writeln!(
        ini,
        "* = host={upstream_host} port={upstream_port} user=postgres"
    );
    let _ = writeln!(ini, "[pgbouncer]");
    let _ = writeln!(ini, "listen_addr = 127.0.0.1");
    let _ = writeln!(ini, "listen_port = {port}");
    // No Unix socket: tests connect over TCP, and a socket in /tmp could
    // clash with another instance.
    let _ = writeln!(ini, "unix_socket_dir =");
    let _ = writeln!(ini, "auth_type = trust");
    let _ = writeln!(ini, "auth_file = {dir}/userlist.txt");
    let _ = writeln!(ini, "logfile = {dir}/pgbouncer.log");
    let _ = writeln!(ini, "pidfile = {dir}/pgbouncer.pid");
    let _ = writeln!(ini, "pool_mode = {mode}");
    let _ = writeln!(ini, "default_pool_size = {}", config.default_pool_size);
    let _ = writeln!(ini, "max_client_conn = 500");
    let _ = writeln!(
        ini,
        "ignore_startup_parameters = {}",
        config.ignore_startup_parameters
    );
    let _ = writeln!(ini, "server_reset_query = {}", config.server_reset_query);
    let _ = writeln!(
        ini,
        "server_reset_query_always = {}",
        u8::from(config.server_reset_query_always)
    );
    let _ = writeln!(ini, "query_wait_timeout = {}", config.query_wait_timeout_s);
    ini
}
