//! The HTTP server loop: accepts connections and serves the router on each,
//! with the timeouts that keep a slow or silent client from costing more
//! than its own socket.
//!
//! Written here rather than with `axum::serve` because that gives no way to
//! set hyper's timer, so a connection that never finishes its headers, or
//! sits idle between requests, was never closed. hyper's own
//! `header_read_timeout` starts when it begins waiting for a request head,
//! which is also the idle time between keep-alive requests: one clock bounds
//! both. Graceful shutdown is hyper-util's: stop accepting, let open
//! connections finish their requests, close the idle ones.

use std::future::Future;
use std::io;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// How long to wait before accepting again after the listener failed (out
/// of file descriptors, for example): retrying at once would spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Serves `router` on `listener` until `shutdown` completes, then waits for
/// the requests in flight on open connections.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
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
        // Small answers go out at once instead of waiting for more to send.
        let _ = stream.set_nodelay(true);
        let service = router
            .clone()
            .map_request(|request: hyper::Request<Incoming>| request.map(Body::new));
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = connections.watch(connection);
        crate::metrics::spawn(async move {
            // A client that hung up, sent garbage or took too long for its
            // headers: nothing to do but let the connection go.
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended: {e}");
            }
        });
    }
    drop(listener);
    connections.shutdown().await;
    Ok(())
}
