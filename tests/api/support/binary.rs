//! The real `tillsync` binary as a child process: its command, a running
//! `serve` whose stderr is collected line by line, and clean-up of the
//! databases it made.

use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::server_url;

/// The binary, without the caller's database or log settings.
pub fn tillsync() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tillsync"));
    command
        .env_remove("DATABASE_URL")
        .env_remove("RUST_LOG")
        .env_remove("TILLSYNC_LOG_FORMAT");
    command
}

/// Drops a database made by a test; false if it did not exist.
pub fn drop_database(name: &str) -> bool {
    Command::new("psql")
        .args([
            &format!("{}/postgres", server_url()),
            "-qXtAc",
            &format!("drop database \"{name}\" with (force)"),
        ])
        .status()
        .is_ok_and(|s| s.success())
}

/// `tillsync admin create-merchant` on this database; returns the admin token.
pub fn create_merchant(database_url: &str) -> String {
    let output = tillsync()
        .args(["admin", "create-merchant", "--name", "Corner Shop"])
        .env("DATABASE_URL", database_url)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    printed["admin_token"].as_str().unwrap().to_owned()
}

/// `tillsync serve` on a free port, its stderr collected as it comes.
pub struct Served {
    child: Child,
    pub address: String,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
}

impl Served {
    /// Starts the server with these environment variables and waits (at
    /// most 30 s) for the line that says where it listens.
    pub fn start(env: &[(&str, &str)]) -> Self {
        let mut child = tillsync()
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
                use std::io::BufRead;
                for line in std::io::BufReader::new(stderr)
                    .lines()
                    .map_while(Result::ok)
                {
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
        served.address = served.wait_for_address();
        served
    }

    fn wait_for_address(&mut self) -> String {
        const MARK: &str = "listening on http://";
        let started = Instant::now();
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
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("serve exited with {status}: {:#?}", self.lines());
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "serve did not say where it listens: {:#?}",
                self.lines()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

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
