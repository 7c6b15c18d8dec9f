//! A round-robin TCP load balancer for drills with several `tillsync serve`
//! replicas: each new client connection goes to the next replica in turn
//! (one that refuses the connection is skipped, as a balancer's retry
//! would), and bytes are copied both ways until either side closes.
//!
//! It has no health checks on purpose: a replica that is up but not ready
//! still gets its share, so a drill sees every answer a till could get,
//! not only the ones a careful balancer lets through.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub struct RoundRobin {
    address: SocketAddr,
    acceptor: JoinHandle<()>,
}

impl RoundRobin {
    /// Listens on a free loopback port and spreads connections over `upstreams`.
    pub async fn start(upstreams: Vec<SocketAddr>) -> Self {
        assert!(!upstreams.is_empty(), "a balancer needs an upstream");
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("balancer binds");
        let address = listener.local_addr().expect("bound address");
        let acceptor = tokio::spawn(accept_loop(listener, Arc::new(upstreams)));
        Self { address, acceptor }
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for RoundRobin {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

async fn accept_loop(listener: TcpListener, upstreams: Arc<Vec<SocketAddr>>) {
    let next = Arc::new(AtomicUsize::new(0));
    while let Ok((client, _)) = listener.accept().await {
        let (upstreams, next) = (upstreams.clone(), next.clone());
        tokio::spawn(async move {
            let Some(mut server) = connect_next(&upstreams, &next).await else {
                // Every replica refused: the client sees its connection close.
                return;
            };
            let mut client = client;
            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        });
    }
}

/// The next replica in turn that accepts a connection.
async fn connect_next(upstreams: &[SocketAddr], next: &AtomicUsize) -> Option<TcpStream> {
    for _ in 0..upstreams.len() {
        let index = next.fetch_add(1, Ordering::Relaxed) % upstreams.len();
        if let Ok(stream) = TcpStream::connect(upstreams[index]).await {
            let _ = stream.set_nodelay(true);
            return Some(stream);
        }
    }
    None
}
