//! The HTTP server loop: accepts connections and serves the router on each,
//! with the bounds that keep a slow, silent or greedy client from costing
//! more than its own socket.
//!
//! Written here rather than with `axum::serve` because that gives no way to
//! set hyper's timer, so a connection that never finishes its headers, or
//! sits idle between requests, was never closed. hyper's own
//! `header_read_timeout` starts when it begins waiting for a request head,
//! which is also the idle time between keep-alive requests: one clock bounds
//! both. Graceful shutdown is hyper-util's: stop accepting, let open
//! connections finish their requests, close the idle ones.
//!
//! The connections open at once are capped (`TILLSYNC_MAX_CONNECTIONS`),
//! under the process's open-file limit: one beyond the cap is told 503
//! `overloaded` at once and closed, instead of waiting unanswered in the
//! kernel's queue or taking the last file the database pool needs. Each
//! connection's read buffer is small (`READ_BUFFER_BYTES`), so thousands of
//! connections sending large heads cost a bounded amount of memory.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// How long to wait before accepting again after the listener failed (out
/// of file descriptors, for example): retrying at once would spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// hyper's read buffer per connection, the most a request head may take:
/// ours are well under 2 KiB. hyper's default (about 400 KiB) let 4 096
/// connections sending large heads hold 1.6 GB.
const READ_BUFFER_BYTES: usize = 16 * 1024;

/// Connections beyond the cap being told so at once; beyond these, one is
/// closed without a word (a flood of connections must not make a second
/// flood of answers).
const REFUSALS_AT_ONCE: usize = 256;

/// How long a refused connection is given to read its answer.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// Files the process keeps for itself beside client connections: the
/// database pool, the listener, logs.
const RESERVED_FILES: u64 = 256;

/// The answer to a connection beyond the cap.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/problem+json\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 194\r\n\
\r\n\
{\"type\":\"about:blank\",\"title\":\"Service Unavailable\",\"status\":503,\"code\":\"overloaded\",\
\"detail\":\"the server has as many connections open as it takes (TILLSYNC_MAX_CONNECTIONS); \
try again shortly\"}";

/// The cap on open connections: `wanted`, lowered (with a warning) to
/// leave `RESERVED_FILES` of the process's open-file limit free.
pub fn connection_cap(wanted: u32) -> usize {
    let wanted = u64::from(wanted);
    let Some(limit) = open_file_limit() else {
        return wanted as usize;
    };
    let room = limit.saturating_sub(RESERVED_FILES).max(1);
    if wanted > room {
        tracing::warn!(
            wanted,
            open_file_limit = limit,
            "TILLSYNC_MAX_CONNECTIONS is {wanted} but the process may open {limit} files: \
             capping connections at {room}"
        );
        return room as usize;
    }
    wanted as usize
}

/// The process's soft limit on open files, from `/proc/self/limits`
/// (Linux); `None` where it cannot be read or is unlimited.
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Serves `router` on `listener` until `shutdown` completes, then waits for
/// the requests in flight on open connections. At most `max_connections`
/// are open at once.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    header_timeout: Duration,
    max_connections: usize,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(READ_BUFFER_BYTES);
    let open = Arc::new(Semaphore::new(max_connections));
    let refusing = Arc::new(Semaphore::new(REFUSALS_AT_ONCE));
    let connections = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "could not accept a connection: {e}");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = Arc::clone(&open).try_acquire_owned() else {
            metrics::counter!("tillsync_connections_refused_total").increment(1);
            if let Ok(refusal) = Arc::clone(&refusing).try_acquire_owned() {
                crate::metrics::spawn(async move {
                    refuse(stream).await;
                    drop(refusal);
                });
            }
            continue;
        };
        // Small answers go out at once instead of waiting for more to send.
        let _ = stream.set_nodelay(true);
        let service = router
            .clone()
            .map_request(|request: hyper::Request<Incoming>| request.map(Body::new));
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = connections.watch(connection);
        metrics::gauge!("tillsync_connections_open").increment(1.0);
        crate::metrics::spawn(async move {
            // A client that hung up, sent garbage or took too long for its
            // headers: nothing to do but let the connection go.
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended: {e}");
            }
            metrics::gauge!("tillsync_connections_open").decrement(1.0);
            drop(slot);
        });
    }
    drop(listener);
    connections.shutdown().await;
    Ok(())
}

/// Tells a connection beyond the cap to come back later, and closes it. The
/// answer goes out before the request is read (HTTP allows it); what the
/// client sends meanwhile is read and dropped for a moment, so that closing
/// does not reset the connection under the answer.
async fn refuse(mut stream: TcpStream) {
    let linger = async {
        stream.write_all(REFUSAL).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<(), io::Error>(())
    };
    let _ = tokio::time::timeout(REFUSAL_LINGER, linger).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_a_whole_problem_document_of_its_announced_length() {
        let text = std::str::from_utf8(REFUSAL).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let length: usize = (head.lines())
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(body.len(), length);
        let problem: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(problem["code"], "overloaded");
        assert_eq!(problem["status"], 503);
    }
}
