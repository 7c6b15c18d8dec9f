//! The fault proxy itself, against a local echo server: the fault tests
//! are only as good as the faults it makes.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use tillsync_testkit::proxy::{Fault, FaultProxy};

async fn echo_server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = [0u8; 1024];
                while let Ok(n) = socket.read(&mut buffer).await {
                    if n == 0 || socket.write_all(&buffer[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    address
}

async fn round_trip(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    stream.write_all(b"ping").await.ok()?;
    let mut reply = [0u8; 4];
    match tokio::time::timeout(within, stream.read_exact(&mut reply)).await {
        Ok(Ok(_)) if &reply == b"ping" => Some(started.elapsed()),
        _ => None,
    }
}

#[tokio::test]
async fn the_proxy_passes_delays_stalls_and_resets_a_live_connection() {
    let proxy = FaultProxy::start(echo_server().await).await;
    let mut stream = TcpStream::connect(proxy.address()).await.unwrap();
    assert!(
        round_trip(&mut stream, Duration::from_secs(1))
            .await
            .is_some()
    );

    proxy.set(Fault::Latency(Duration::from_millis(100)));
    let slow = round_trip(&mut stream, Duration::from_secs(2))
        .await
        .unwrap();
    assert!(
        slow >= Duration::from_millis(200),
        "one delay each way: {slow:?}"
    );

    proxy.set(Fault::Stall);
    assert!(
        round_trip(&mut stream, Duration::from_millis(300))
            .await
            .is_none(),
        "held"
    );
    proxy.set(Fault::Pass);
    // The held bytes arrive once the stall ends, and the link works again.
    let mut held = [0u8; 4];
    stream.read_exact(&mut held).await.unwrap();
    assert_eq!(&held, b"ping");
    assert!(
        round_trip(&mut stream, Duration::from_secs(1))
            .await
            .is_some()
    );

    proxy.set(Fault::Reset);
    let mut buffer = [0u8; 4];
    let after_reset = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buffer)).await;
    assert!(
        matches!(after_reset, Ok(Err(_)) | Ok(Ok(0))),
        "the connection is torn down: {after_reset:?}"
    );
    let mut fresh = TcpStream::connect(proxy.address()).await.unwrap();
    assert!(
        round_trip(&mut fresh, Duration::from_millis(500))
            .await
            .is_none(),
        "new connections too"
    );

    proxy.set(Fault::Pass);
    let mut fresh = TcpStream::connect(proxy.address()).await.unwrap();
    assert!(
        round_trip(&mut fresh, Duration::from_secs(1))
            .await
            .is_some()
    );
}
