//! A TCP fault proxy for tests and benchmarks: it sits between a client and
//! a server (the service and Postgres, or a till and the service) and can
//! pass traffic, stall it (bytes are held both ways, nothing is reset, as
//! when a router drops packets), reset every connection, or add latency.
//!
//! It breaks the real TCP link; nothing in the service knows it is there.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Bytes flow as they come.
    Pass,
    /// Bytes are held in both directions until the fault changes; new
    /// connections are accepted but not connected onwards.
    Stall,
    /// Every open connection is reset (RST), and so is every new one.
    Reset,
    /// Each chunk of bytes is delayed this long.
    Latency(Duration),
}

pub struct FaultProxy {
    address: SocketAddr,
    fault: Arc<watch::Sender<Fault>>,
    acceptor: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy binds");
        let address = listener.local_addr().unwrap();
        let fault = Arc::new(watch::Sender::new(Fault::Pass));
        let acceptor = tokio::spawn(accept_loop(listener, upstream, fault.clone()));
        Self {
            address,
            fault,
            acceptor,
        }
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.acceptor.abort();
        // Open connections end when their pumps see the sender gone.
        self.fault.send_replace(Fault::Reset);
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    fault: Arc<watch::Sender<Fault>>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(connect(client, upstream, fault.subscribe()));
    }
}

async fn connect(client: TcpStream, upstream: SocketAddr, mut fault: watch::Receiver<Fault>) {
    // Resets are aborts: linger 0 makes close() send RST instead of FIN.
    let _ = client.set_zero_linger();
    // A stalled link does not connect onwards until the stall ends.
    loop {
        match *fault.borrow_and_update() {
            Fault::Reset => return,
            Fault::Stall => {}
            _ => break,
        }
        if fault.changed().await.is_err() {
            return;
        }
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = server.set_zero_linger();
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    // When either direction ends, both sockets are dropped together.
    tokio::select! {
        () = pump(client_read, server_write, fault.clone()) => {}
        () = pump(server_read, client_write, fault) => {}
    }
}

async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut fault: watch::Receiver<Fault>) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            () = until_reset(&mut fault) => return,
        };
        let n = match read {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if !deliverable(&mut fault).await {
            return;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

/// Waits until the bytes read may be passed on; false if the link is reset.
async fn deliverable(fault: &mut watch::Receiver<Fault>) -> bool {
    loop {
        let current = *fault.borrow_and_update();
        match current {
            Fault::Pass => return true,
            Fault::Latency(delay) => {
                tokio::time::sleep(delay).await;
                return true;
            }
            Fault::Reset => return false,
            Fault::Stall => {
                if fault.changed().await.is_err() {
                    return false;
                }
            }
        }
    }
}

async fn until_reset(fault: &mut watch::Receiver<Fault>) {
    loop {
        if *fault.borrow_and_update() == Fault::Reset {
            return;
        }
        if fault.changed().await.is_err() {
            return;
        }
    }
}
