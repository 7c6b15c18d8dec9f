//! Hostile clients and the memory they would take: what the memory test
//! (`tests/api/memory.rs`) and the attack benchmark
//! (`crates/bench/benches/attack.rs`) both run against the real binary.

use std::time::Instant;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use uuid::Uuid;

/// Resident memory of a process, in bytes, from `/proc/<pid>/status`.
pub fn resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// The head of a push announcing a body of `length` bytes; `authorization`
/// is a whole header line (`Authorization: Bearer ...\r\n`) or empty.
pub fn push_head(authorization: &str, length: usize) -> String {
    format!(
        "POST /v1/sales/batches HTTP/1.1\r\nHost: tillsync\r\n{authorization}\
         Idempotency-Key: {}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n",
        Uuid::new_v4()
    )
}

/// A connection to `address` (`host:port`) that sends `opening`, then
/// `then` bytes of its body in 64 KiB pieces as fast as the server takes
/// them, then holds on, sending nothing more, until `until`.
pub fn hostile(address: String, opening: String, then: usize, until: Instant) {
    tokio::spawn(async move {
        let Ok(mut stream) = TcpStream::connect(&address).await else {
            return;
        };
        if stream.write_all(opening.as_bytes()).await.is_err() {
            return;
        }
        let piece = vec![b' '; 64 * 1024];
        let mut sent = 0;
        while sent < then {
            if stream.write_all(&piece).await.is_err() {
                return;
            }
            sent += piece.len();
        }
        tokio::time::sleep_until(until.into()).await;
    });
}
