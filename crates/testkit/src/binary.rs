//! The real `tillsync` binary as a child process: its commands, and a
//! running `serve` on a free port whose stderr is collected line by line.
//!
//! Cargo tells only the root package's tests where the binary is
//! (`env!("CARGO_BIN_EXE_tillsync")`, given to [`Binary::at`]); benchmarks
//! take the release build beside them ([`Binary::release`]).

use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::app::Merchant;

/// How long `serve` may take to answer `/healthz` (creating and migrating
/// its database included).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// What the line saying where the server listens contains, before the address.
const LISTENING: &str = "listening on http://";

/// The `tillsync` binary.
#[derive(Debug, Clone)]
pub struct Binary {
    path: PathBuf,
}

impl Binary {
    pub fn at(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// For benchmarks: `TILLSYNC_BIN` if set, else the release build in the
    /// target directory the benchmark itself runs from
    /// (`target/release/deps/<bench>` -> `target/release/tillsync`).
    pub fn release() -> Self {
        let path = match std::env::var_os("TILLSYNC_BIN") {
            Some(path) => PathBuf::from(path),
            None => std::env::current_exe()
                .ok()
                .and_then(|exe| Some(exe.parent()?.parent()?.join("tillsync")))
                .expect("the benchmark's own path has a target directory"),
        };
        assert!(
            path.is_file(),
            "no tillsync binary at {}: build it first with \
             `cargo build --release --locked --bin tillsync` (scripts/bench-* do), \
             or name one with TILLSYNC_BIN",
            path.display()
        );
        Self { path }
    }

    /// The binary as a command, without the caller's database or log
    /// settings.
    pub fn command(&self) -> Command {
        let mut command = Command::new(&self.path);
        command
            .env_remove("DATABASE_URL")
            .env_remove("RUST_LOG")
            .env_remove("TILLSYNC_LOG_FORMAT");
        command
    }

    /// `tillsync admin create-merchant` on this database (which it creates
    /// and migrates if missing).
    pub fn create_merchant(&self, database_url: &str, name: &str) -> Merchant {
        let output = self
            .command()
            .args(["admin", "create-merchant", "--name", name])
            .env("DATABASE_URL", database_url)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let printed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        Merchant {
            merchant_id: printed["merchant_id"].as_str().unwrap().parse().unwrap(),
            token: printed["admin_token"].as_str().unwrap().to_owned(),
        }
    }

    /// `tillsync serve` with these environment variables (`DATABASE_URL`
    /// and the rest), on port 0 of loopback: it waits for the line saying
    /// where the server listens, then until `/healthz` answers. Blocking;
    /// from async code, call it in `spawn_blocking` or `block_in_place`.
    pub fn serve(&self, env: &[(&str, &str)]) -> Served {
        Served::start(self, env, false)
    }

    /// As [`serve`](Self::serve), for benchmarks, whose figures must not pay
    /// for request logs: the server logs at `level` (e.g. `warn`) and above,
    /// plus the line saying where it listens (logged by `tillsync::app`), and
    /// its other lines are copied to this process's stderr as they come.
    pub fn serve_quietly(&self, level: &str, env: &[(&str, &str)]) -> Served {
        let filter = format!("{level},tillsync::app=info");
        let mut env = env.to_vec();
        env.push(("RUST_LOG", &filter));
        Served::start(self, &env, true)
    }
}

/// A running `tillsync serve`, killed when dropped.
pub struct Served {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
}

impl Served {
    fn start(binary: &Binary, env: &[(&str, &str)], echo: bool) -> Self {
        let mut child = binary
            .command()
            .args(["serve", "--listen", "127.0.0.1:0"])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stderr)
                    .lines()
                    .map_while(Result::ok)
                {
                    if echo && !line.contains(LISTENING) {
                        eprintln!("{line}");
                    }
                    lines.lock().unwrap().push(line);
                }
            })
        };
        let mut served = Self {
            child,
            address: String::new(),
            lines,
            reader: Some(reader),
        };
        let started = Instant::now();
        served.address = served.wait_for_address(started);
        served.wait_for_healthz(started);
        served
    }

    fn wait_for_address(&mut self, started: Instant) -> String {
        const MARK: &str = LISTENING;
        loop {
            let found = self.lines.lock().unwrap().iter().find_map(|line| {
                let at = line.find(MARK)? + MARK.len();
                let rest = &line[at..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == ':'))
                    .unwrap_or(rest.len());
                Some(format!("http://{}", &rest[..end]))
            });
            if let Some(address) = found {
                return address;
            }
            self.assert_starting(started, "say where it listens");
        }
    }

    fn wait_for_healthz(&mut self, started: Instant) {
        let host = self.address.trim_start_matches("http://").to_owned();
        while !answers_healthz(&host) {
            self.assert_starting(started, "answer /healthz");
        }
    }

    /// Panics if the server exited or took too long; else waits a little.
    fn assert_starting(&mut self, started: Instant, to: &str) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("serve exited with {status}: {:#?}", self.lines());
        }
        assert!(
            started.elapsed() < START_TIMEOUT,
            "serve did not {to} within {START_TIMEOUT:?}: {:#?}",
            self.lines()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every line the server wrote to stderr so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    pub fn sigterm(&self) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    /// Waits for the process to exit (killing it after `within`), then
    /// returns how it exited and everything it wrote to stderr.
    pub fn wait(mut self, within: Duration) -> (ExitStatus, Vec<String>) {
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > within {
                let _ = self.child.kill();
                panic!("still running after {within:?}: {:#?}", self.lines());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        (status, self.lines())
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        // A test that failed half way must not leave a server running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `GET /healthz` on `host` (`ip:port`) answers 200. Plain HTTP/1.1
/// over a socket, so waiting for a server needs no runtime.
fn answers_healthz(host: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(host) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut status_line = [0u8; 12];
    stream.read_exact(&mut status_line).is_ok() && status_line.ends_with(b" 200")
}
