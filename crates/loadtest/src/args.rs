//! The settings of `tillsync loadtest`, as one clap struct. Every flag also
//! reads a `TILLSYNC_LOADTEST_*` environment variable, so `--help` is the
//! complete list with defaults. Values are checked here, at start.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use chrono::NaiveTime;
use clap::{ArgAction, Args, ValueEnum};
use reqwest::Url;

use super::generator::{ReceiptMix, STORE_TIMEZONE, Shop, StoreDay, parse_day_start};
use super::plan::StoreBehaviour;

#[derive(Debug, Clone, Args)]
pub struct LoadtestArgs {
    /// Base URL of the tillsync API under test (http or https; nothing else is contacted).
    #[arg(long, env = "TILLSYNC_LOADTEST_URL", value_parser = parse_base_url)]
    pub url: Url,

    /// A merchant admin token (`tillsync admin create-merchant`): the run provisions
    /// one new store and its terminals under this merchant.
    #[arg(long, env = "TILLSYNC_LOADTEST_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: AdminToken,

    /// Number of simulated tills.
    #[arg(long, env = "TILLSYNC_LOADTEST_TERMINALS", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub terminals: u32,

    /// Offered load: sales arriving per second over the whole fleet, whatever
    /// the server's latency (open model).
    #[arg(long, env = "TILLSYNC_LOADTEST_RATE", default_value_t = 200.0, value_parser = parse_rate)]
    pub rate: f64,

    /// Most sales one till puts in one batch (the API takes 1 to 500).
    #[arg(long, env = "TILLSYNC_LOADTEST_BATCH_SIZE", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..=500))]
    pub batch_size: u32,

    /// How long sales arrive (the load phase), e.g. 60s or 10m.
    #[arg(long, env = "TILLSYNC_LOADTEST_DURATION", default_value = "60s", value_parser = parse_positive_duration)]
    pub duration: Duration,

    /// After the load phase, how long the tills may take to empty their
    /// queues. Sales still on a till then (never sent, or sent without an
    /// answer and not stored) are reported as still queued: not verified,
    /// and not counted as lost.
    #[arg(long, env = "TILLSYNC_LOADTEST_DRAIN_TIMEOUT", default_value = "60s", value_parser = parse_positive_duration)]
    pub drain_timeout: Duration,

    /// Deadline of one HTTP request; a request that takes longer is a timeout
    /// and is retried, as a real till would.
    #[arg(long, env = "TILLSYNC_LOADTEST_REQUEST_TIMEOUT", default_value = "10s", value_parser = parse_positive_duration)]
    pub request_timeout: Duration,

    /// How long verification may take in all; tills not verified by then
    /// count as unverified, which fails the verdict.
    #[arg(long, env = "TILLSYNC_LOADTEST_VERIFY_TIMEOUT", default_value = "60s", value_parser = parse_positive_duration)]
    pub verify_timeout: Duration,

    /// Tills verification asks about at the same time. Each till's day
    /// check adds its day's sales up on the server; when days are large (a
    /// soak's tills sell 60 000 sales a day in 30 minutes), more at once
    /// than the database has cores only makes each slower, until they pass
    /// the server's statement timeout and are asked again.
    #[arg(long, env = "TILLSYNC_LOADTEST_VERIFY_CONCURRENCY", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub verify_concurrency: u16,

    /// After the drain, how long verification keeps asking until the
    /// figures settle (the server applies voids that came before their
    /// sale in the background, within about a second); the last answer
    /// is the verdict.
    #[arg(long, env = "TILLSYNC_LOADTEST_SETTLE_TIMEOUT", default_value = "30s", value_parser = parse_positive_duration)]
    pub settle_timeout: Duration,

    /// How often each till asks `GET /v1/sync` what is missing, to resend it.
    #[arg(long, env = "TILLSYNC_LOADTEST_SYNC_INTERVAL", default_value = "5s", value_parser = parse_positive_duration)]
    pub sync_interval: Duration,

    /// Longest wait between two retries when the server gives no Retry-After
    /// (capped exponential backoff with full jitter, starting at 100ms).
    #[arg(long, env = "TILLSYNC_LOADTEST_BACKOFF_CAP", default_value = "5s", value_parser = parse_positive_duration)]
    pub backoff_cap: Duration,

    /// How inter-arrival times are drawn.
    #[arg(long, env = "TILLSYNC_LOADTEST_ARRIVALS", value_enum, default_value_t = Arrivals::Poisson)]
    pub arrivals: Arrivals,

    /// Share of customers whose ticket is a void of a recent sale (of this
    /// till or, see --cross-till-share, another).
    #[arg(long, env = "TILLSYNC_LOADTEST_VOID_SHARE", default_value_t = 0.02, value_parser = parse_share)]
    pub void_share: f64,

    /// Share of customers bringing something back: most with the receipt
    /// of a recent sale (one line refunded, naming it), the rest without.
    #[arg(long, env = "TILLSYNC_LOADTEST_REFUND_SHARE", default_value_t = 0.05, value_parser = parse_share)]
    pub refund_share: f64,

    /// Share of voids and refunds with a receipt rung up on another till
    /// of the store than the sale they name (any till, sent or not yet).
    #[arg(long, env = "TILLSYNC_LOADTEST_CROSS_TILL_SHARE", default_value_t = 0.3, value_parser = parse_share)]
    pub cross_till_share: f64,

    /// A till's void of a sale still on its queue is pushed first, in a
    /// push of its own (as when a till's concurrent pushes commit out of
    /// order): the void reaches the server before its sale.
    #[arg(long, env = "TILLSYNC_LOADTEST_VOIDS_AHEAD", default_value_t = true,
          action = ArgAction::Set, value_name = "BOOL")]
    pub voids_ahead: bool,

    /// The first till loses its link from 30% to 60% of the load: it goes
    /// on ringing sales up into its queue, other tills void and refund
    /// some of them before they are sent, and it pushes its backlog when
    /// the link is back.
    #[arg(long, env = "TILLSYNC_LOADTEST_OFFLINE_TILL", default_value_t = true,
          action = ArgAction::Set, value_name = "BOOL")]
    pub offline_till: bool,

    /// At half-time the second till is restored from a backup: its seq
    /// counter goes back this far, and it rings new, different sales with
    /// seqs it already used (the server stores them and flags each reused
    /// seq `seq_reused`). 0: no restore.
    #[arg(long, env = "TILLSYNC_LOADTEST_RESTORE_REWIND", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub restore_rewind: u32,

    /// The last till (of two or more) loses its link at 55% of the load and
    /// is retired at 75% (`POST /v1/terminals/{id}/retire`) while it holds
    /// unsent sales; it rings nothing more, and pushes its queue once the
    /// retirement is done (those sales occurred before it, so they count).
    #[arg(long, env = "TILLSYNC_LOADTEST_RETIRE_TILL", default_value_t = true,
          action = ArgAction::Set, value_name = "BOOL")]
    pub retire_till: bool,

    /// When the store's business day starts, local time (Europe/Berlin), as
    /// the run's store is created with it (`business_day_starts_at`): a sale
    /// before it belongs to the previous business day.
    #[arg(long, env = "TILLSYNC_LOADTEST_BUSINESS_DAY_STARTS_AT", default_value = "04:00",
          value_name = "HH:MM", value_parser = parse_day_start)]
    pub business_day_starts_at: NaiveTime,

    /// Share of plain sales that occurred late at night, from two hours
    /// before the business day's start to an hour after it (sent when rung
    /// up): most fall on the previous business day, whatever the time of
    /// the run.
    #[arg(long, env = "TILLSYNC_LOADTEST_LATE_NIGHT_SHARE", default_value_t = 0.05, value_parser = parse_share)]
    pub late_night_share: f64,

    /// Share of receipts in the US style: `tax_included: false`, the tax
    /// (US-STD 10.25 %, US-FOOD 2.25 %) added on top of the lines. The rest
    /// are European, the tax (DE-19, DE-7) inside the prices.
    #[arg(long, env = "TILLSYNC_LOADTEST_TAX_ON_TOP_SHARE", default_value_t = 0.3, value_parser = parse_share)]
    pub tax_on_top_share: f64,

    /// Share of card payments of tax-on-top receipts that add a tip (15,
    /// 18 or 20 % of the items).
    #[arg(long, env = "TILLSYNC_LOADTEST_TIP_SHARE", default_value_t = 0.5, value_parser = parse_share)]
    pub tip_share: f64,

    /// Share of sales with a service charge (10 % of the items on a
    /// European receipt, 18 % on a US one; taxed at the standard rate).
    #[arg(long, env = "TILLSYNC_LOADTEST_SERVICE_CHARGE_SHARE", default_value_t = 0.1, value_parser = parse_share)]
    pub service_charge_share: f64,

    /// Share of sales that also load a gift card (a line of kind
    /// `gift_card`, no tax: a liability, not a sale).
    #[arg(long, env = "TILLSYNC_LOADTEST_GIFT_CARD_SHARE", default_value_t = 0.03, value_parser = parse_share)]
    pub gift_card_share: f64,

    /// Share of cash payments (and cash refunds) of European receipts
    /// rounded to 5 cents (`rounding_minor`, -2 to 2; a refund never
    /// returns more than was paid).
    #[arg(long, env = "TILLSYNC_LOADTEST_CASH_ROUNDING_SHARE", default_value_t = 0.5, value_parser = parse_share)]
    pub cash_rounding_share: f64,

    /// Write the report as JSON to this file too.
    #[arg(long, env = "TILLSYNC_LOADTEST_JSON", value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Seed of the random choices (arrival times, till choice, sale contents);
    /// a fresh one is drawn and reported when not given. Sale ids and
    /// timestamps are always new, so reruns never collide with stored sales.
    #[arg(long, env = "TILLSYNC_LOADTEST_SEED")]
    pub seed: Option<u64>,
}

impl LoadtestArgs {
    /// What the store does besides selling.
    pub(crate) fn behaviour(&self) -> StoreBehaviour {
        StoreBehaviour {
            void_share: self.void_share,
            refund_share: self.refund_share,
            cross_till_share: self.cross_till_share,
            offline_till: self.offline_till,
            restore_rewind: self.restore_rewind,
            retire_till: self.retire_till,
        }
    }

    /// The store the run provisions, and how its receipts are made up.
    pub(crate) fn shop(&self) -> Shop {
        Shop {
            mix: ReceiptMix {
                tax_on_top_share: self.tax_on_top_share,
                tip_share: self.tip_share,
                service_charge_share: self.service_charge_share,
                gift_card_share: self.gift_card_share,
                cash_rounding_share: self.cash_rounding_share,
                late_night_share: self.late_night_share,
            },
            day: StoreDay {
                timezone: STORE_TIMEZONE,
                starts_at: self.business_day_starts_at,
            },
        }
    }

    /// Settings that are fine one by one but not together.
    pub(crate) fn check(&self) -> anyhow::Result<()> {
        if self.void_share + self.refund_share > 1.0 {
            anyhow::bail!("--void-share and --refund-share add up to more than 1");
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Arrivals {
    /// Exponential gaps: customers arrive independently, as at real tills.
    Poisson,
    /// Evenly spaced arrivals.
    Fixed,
}

impl Arrivals {
    pub fn as_str(self) -> &'static str {
        match self {
            Arrivals::Poisson => "poisson",
            Arrivals::Fixed => "fixed",
        }
    }
}

/// The merchant admin token. Its `Debug` never shows it, so settings can be
/// logged or printed in an error without leaking the secret.
#[derive(Clone)]
pub struct AdminToken(String);

impl AdminToken {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

impl FromStr for AdminToken {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let token = raw.trim();
        if token.is_empty() {
            return Err("must not be empty".into());
        }
        Ok(Self(token.to_owned()))
    }
}

fn parse_base_url(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("must be http or https, not {}", url.scheme()));
    }
    if url.host().is_none() {
        return Err("needs a host".into());
    }
    Ok(url)
}

fn parse_rate(raw: &str) -> Result<f64, String> {
    let rate: f64 = raw.parse().map_err(|_| "must be a number".to_owned())?;
    // Above this one scheduler cannot keep up on any machine we know of; it
    // is a typo, not a load test.
    if !(rate > 0.0 && rate <= 1_000_000.0) {
        return Err("must be above 0 and at most 1000000 sales per second".into());
    }
    Ok(rate)
}

fn parse_share(raw: &str) -> Result<f64, String> {
    let share: f64 = raw.parse().map_err(|_| "must be a number".to_owned())?;
    if !(0.0..=1.0).contains(&share) {
        return Err("must be from 0 to 1".into());
    }
    Ok(share)
}

fn parse_positive_duration(raw: &str) -> Result<Duration, String> {
    let duration =
        humantime::parse_duration(raw).map_err(|e| format!("{e} (examples: 500ms, 5s, 10m)"))?;
    if duration.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(duration)
}

#[cfg(test)]
mod tests;
