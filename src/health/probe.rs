//! The background probe: one dedicated connection, one `select 1` at a time
//! under a short timeout, every interval or at once when a real query saw
//! link trouble. One prober per instance means no probe herd when the
//! database comes back; it decides alone when the link is usable again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::Gate;
use super::link::{LinkState, ProbeResult};

pub struct Prober {
    pub options: PgConnectOptions,
    pub interval: Duration,
    pub timeout: Duration,
    pub wake: Arc<Notify>,
}

impl Prober {
    pub async fn run(self, gate: Gate, stopping: CancellationToken) {
        let mut connection: Option<PgConnection> = None;
        loop {
            let result = self.probe_once(&mut connection).await;
            gate.observe_probe(&result);
            tokio::select! {
                () = tokio::time::sleep(self.interval) => {}
                () = self.wake.notified() => {}
                () = stopping.cancelled() => break,
            }
        }
        if let Some(connection) = connection {
            let _ = tokio::time::timeout(self.timeout, connection.close()).await;
        }
    }

    /// Connects if needed and runs `select 1`, all under the probe timeout.
    /// Any failure drops the connection (its socket closes at once): a
    /// connection that hung once is not trusted again.
    async fn probe_once(&self, connection: &mut Option<PgConnection>) -> ProbeResult {
        let started = Instant::now();
        let attempt = tokio::time::timeout(self.timeout, async {
            if connection.is_none() {
                *connection = Some(self.options.connect().await?);
            }
            let conn = connection.as_mut().expect("connected above");
            sqlx::query("select 1").execute(conn).await?;
            Ok::<_, sqlx::Error>(())
        })
        .await;
        match attempt {
            Ok(Ok(())) => ProbeResult::Answered(started.elapsed()),
            Ok(Err(e)) => {
                *connection = None;
                ProbeResult::Failed(e.to_string())
            }
            Err(_) => {
                *connection = None;
                ProbeResult::Failed(format!("no answer within {} ms", self.timeout.as_millis()))
            }
        }
    }
}

/// Whether a change of state is a recovery from an outage.
pub fn is_recovery(from: LinkState, to: LinkState) -> bool {
    from == LinkState::Unavailable && to != LinkState::Unavailable
}
