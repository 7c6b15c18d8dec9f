//! Provisioning through the API: one new store (Europe/Berlin, EUR, its
//! business days starting at `--business-day-starts-at`) and its terminals,
//! with the merchant admin token, a few at a time.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use chrono::Utc;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use uuid::Uuid;

use super::backoff::retrying;
use super::client::{Api, Failure};
use super::generator::StoreDay;
use super::verify::TerminalToken;

/// Terminals created at the same time.
const PROVISION_CONCURRENCY: usize = 8;

pub struct ProvisionedTill {
    pub terminal_id: Uuid,
    pub token: TerminalToken,
}

pub struct Provisioned {
    pub store_id: Uuid,
    pub tills: Vec<ProvisionedTill>,
}

/// Creates the store and `terminals` tills. A transient failure is retried a
/// few times (a retried create may leave one unused terminal behind, which
/// is harmless); anything else ends the run before load starts.
pub async fn provision(
    api: &Api,
    admin_token: &str,
    terminals: u32,
    day: &StoreDay,
    backoff_cap: Duration,
) -> anyhow::Result<Provisioned> {
    let store_name = format!("loadtest {}", Utc::now().format("%Y-%m-%d %H:%M:%S"));
    let store = retrying(backoff_cap, || {
        api.create_store(admin_token, &store_name, day)
    })
    .await
    .map_err(|f| refused("creating the store", &f))?;
    // Every expected business date follows the cutoff: a store without it
    // would fail the verdict on thousands of figures instead of here.
    let wanted = day.starts_at_text();
    if store.business_day_starts_at.as_deref() != Some(wanted.as_str()) {
        anyhow::bail!(
            "creating the store: asked for business_day_starts_at {wanted}, the server answered {:?} \
             (a server from before issue 24?)",
            store.business_day_starts_at
        );
    }
    tracing::debug!(store.id = %store.store_id, "created store {}", store.store_id);

    let admin_token: Arc<str> = admin_token.into();
    let permits = Arc::new(Semaphore::new(PROVISION_CONCURRENCY));
    let mut creates = JoinSet::new();
    for number in 1..=terminals {
        let (api, admin_token, permits) = (api.clone(), admin_token.clone(), permits.clone());
        let store_id = store.store_id;
        creates.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let name = format!("loadtest till {number:05}");
            let created = retrying(backoff_cap, || {
                api.create_terminal(&admin_token, store_id, &name)
            })
            .await;
            (number, created)
        });
    }
    let mut tills = Vec::with_capacity(terminals as usize);
    while let Some(joined) = creates.join_next().await {
        let (number, created) = joined.context("a provisioning task failed")?;
        let created = created.map_err(|f| refused(&format!("creating till {number}"), &f))?;
        tills.push((
            number,
            ProvisionedTill {
                terminal_id: created.terminal_id,
                token: TerminalToken::new(created.token),
            },
        ));
    }
    // In creation order, so till numbers (and their seeds) are stable.
    tills.sort_by_key(|(number, _)| *number);
    Ok(Provisioned {
        store_id: store.store_id,
        tills: tills.into_iter().map(|(_, till)| till).collect(),
    })
}

fn refused(what: &str, failure: &Failure) -> anyhow::Error {
    match failure {
        Failure::Status { status: 401, .. } => {
            anyhow!("{what}: the admin token was refused (401); use a merchant admin token")
        }
        Failure::Status { status: 403, .. } => {
            anyhow!("{what}: 403, the token is not a merchant admin token")
        }
        other => anyhow!("{what}: {other}"),
    }
}
