//! Which server of `DATABASE_URL` the pool talks to, and moving it when a
//! failover makes another one the primary. The list and the session
//! attributes come from [`crate::config::database_url`]; this module owns
//! the choice.
//!
//! - Every new pooled connection is checked against `target_session_attrs`
//!   before use (`check_session`, the pool's `after_connect`), as libpq
//!   does: with `read-write` a standby or a read-only server is refused, so
//!   a request can never run on one, even before the probe has looked.
//! - When the health probe finds the current server read-only or
//!   unreachable, it calls [`Primary::search`]: every candidate is asked at
//!   once, with a fresh connection, under the probe's timeout, and the first
//!   suitable one in the URL's order wins (libpq's order rule). Requests are
//!   never blocked by it: they keep getting fast 503s from the health layer.
//! - Moving the pool is
//!   [`Pool::set_connect_options`](sqlx::Pool::set_connect_options) (new
//!   connections go to the new server) plus retirement: the move time is recorded, and a
//!   pooled connection opened before it is closed when next acquired
//!   ([`Primary::keeps`], for the pool's `before_acquire`). A connection
//!   whose connect began before the move but ended after it slips past
//!   that, but it passed `check_session` against its server, so it is only
//!   ever on a server that qualified at that moment.
//! - With `sslmode=prefer`, a server TLS cannot be set up with is talked to
//!   in plain text ([`super::tls`]): the options handed out here say so, per
//!   server, and the prober has it checked again ([`Primary::check_tls`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::pool::PoolConnectionMetadata;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool};
use sqlx::{ConnectOptions, Connection};
use tokio::task::JoinSet;

use super::tls;
use crate::config::database_url::{DatabaseUrl, SessionAttrs, describe};

/// How long `tillsync migrate`, the start's create-and-migrate and `admin`
/// give each candidate to answer while looking for the primary: these run
/// once, and a server slow to accept a connection at start is still one to
/// use.
const LOCATE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the pool points at, shared by the pool's hooks and the prober.
#[derive(Clone)]
pub struct Primary {
    inner: Arc<State>,
}

struct State {
    targets: DatabaseUrl,
    current: AtomicUsize,
    /// Bumped on every move; the prober drops its connection when it changes.
    generation: AtomicU64,
    /// When the pool last moved, in microseconds since `epoch` (0: never).
    moved_at_us: AtomicU64,
    epoch: Instant,
    /// The servers talked to in plain text (`sslmode=prefer` only).
    tls: tls::Fallback,
}

/// What a candidate said when asked.
#[derive(Debug)]
enum Answer {
    /// Allowed by the session attributes; `writable` says whether it also
    /// takes writes (always true where it was not asked).
    Suitable {
        writable: bool,
        /// Reached in plain text because TLS could not be set up with it.
        plain_text: bool,
    },
    Unsuitable(&'static str),
    Failed(String),
}

impl Primary {
    /// Starts at the first candidate; `targets` carry the session settings
    /// every connection is made with.
    pub fn new(targets: DatabaseUrl) -> Self {
        let servers = targets.candidates().len();
        Self {
            inner: Arc::new(State {
                targets,
                current: AtomicUsize::new(0),
                generation: AtomicU64::new(0),
                moved_at_us: AtomicU64::new(0),
                epoch: Instant::now(),
                tls: tls::Fallback::new(servers),
            }),
        }
    }

    /// The options new connections are made with now.
    pub fn current(&self) -> PgConnectOptions {
        self.options(self.inner.current.load(Ordering::Acquire))
    }

    /// The options connections to candidate `index` are made with now:
    /// as `DATABASE_URL` says, or in plain text ([`tls::Fallback`]).
    fn options(&self, index: usize) -> PgConnectOptions {
        self.inner
            .tls
            .options(index, &self.inner.targets.candidates()[index])
    }

    /// For a connection of the pool that failed with `err`: whether TLS
    /// could not be set up with the current server and `sslmode=prefer`
    /// allows plain text, in which case the pool now connects to it in
    /// plain text and the caller may try again at once.
    pub fn fall_back_after(&self, pool: &PgPool, err: &sqlx::Error) -> bool {
        let index = self.inner.current.load(Ordering::Acquire);
        if !tls::falls_back(&self.inner.targets.candidates()[index]) || !tls::could_not_set_up(err)
        {
            return false;
        }
        self.set_plain_text(pool, index, true, &err.to_string());
        true
    }

    /// Records whether candidate `index` is talked to in plain text, and
    /// points the pool at it that way if it is the current one.
    fn set_plain_text(&self, pool: &PgPool, index: usize, plain_text: bool, why: &str) {
        if !self.inner.tls.set(index, plain_text) {
            return;
        }
        if index == self.inner.current.load(Ordering::Acquire) {
            pool.set_connect_options(self.options(index));
        }
        let server = describe(&self.inner.targets.candidates()[index]);
        if plain_text {
            tracing::warn!(
                database.server = %server,
                error = %why,
                "TLS could not be set up with {server}: connections to it go on in plain \
                 text, as sslmode=prefer does ({why})"
            );
        } else {
            tracing::info!(
                database.server = %server,
                "connections to {server} try TLS first again, as sslmode=prefer does ({why})"
            );
        }
    }

    /// For the prober, after each probe (`probe_failed`: whether it
    /// failed), with `sslmode=prefer` only: while the current server is
    /// talked to in plain text, or after a failed probe, one connection as
    /// configured finds out whether TLS can be set up with it, and the pool
    /// follows. At most every [`tls::CHECK_EVERY`], in a task of its own so
    /// the prober never waits for it.
    pub fn check_tls(&self, pool: &PgPool, timeout: Duration, probe_failed: bool) {
        let index = self.inner.current.load(Ordering::Acquire);
        let configured = &self.inner.targets.candidates()[index];
        if !tls::falls_back(configured)
            || !(probe_failed || self.inner.tls.is_plain(index))
            || !self.inner.tls.start_check(self.now_us())
        {
            return;
        }
        let (primary, pool, configured) = (self.clone(), pool.clone(), configured.clone());
        crate::metrics::spawn(async move {
            match tokio::time::timeout(timeout, configured.connect()).await {
                Ok(Err(e)) if tls::could_not_set_up(&e) => {
                    primary.set_plain_text(&pool, index, true, &e.to_string());
                }
                Ok(Ok(conn)) => {
                    primary.set_plain_text(
                        &pool,
                        index,
                        false,
                        "a connection as configured succeeded",
                    );
                    let _ = tokio::time::timeout(timeout, conn.close()).await;
                }
                // Unreachable, or refused for another reason: nothing
                // learnt about TLS.
                Ok(Err(_)) | Err(_) => {}
            }
            primary.inner.tls.checked(primary.now_us());
        });
    }

    /// Microseconds since `epoch`, never 0 (which means "never").
    fn now_us(&self) -> u64 {
        u64::try_from(self.inner.epoch.elapsed().as_micros())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    pub fn session_attrs(&self) -> SessionAttrs {
        self.inner.targets.session_attrs()
    }

    /// For the pool's `before_acquire`: false for a connection opened before
    /// the pool last moved, which may lead to the old server.
    pub fn keeps(&self, meta: &PoolConnectionMetadata) -> bool {
        let opened = self.inner.epoch.elapsed().saturating_sub(meta.age);
        !self.moved_after(opened)
    }

    /// Whether the pool moved after `since`: a connection kept out of the
    /// pool since then ([`super::unit::Kept`]) may lead to the old server.
    pub fn moved_since(&self, since: Instant) -> bool {
        self.moved_after(since.saturating_duration_since(self.inner.epoch))
    }

    /// Whether the pool last moved later than `at` (time since `epoch`).
    fn moved_after(&self, at: Duration) -> bool {
        let moved_at_us = self.inner.moved_at_us.load(Ordering::Acquire);
        moved_at_us != 0 && at.as_micros() < u128::from(moved_at_us)
    }

    /// Looks for the server to use now and moves the pool there. Called by
    /// the prober after a failed probe; `current_refused` says the current
    /// server answered but is not suitable (read-only), so its connections
    /// must go even if the same address now leads somewhere suitable (a DNS
    /// name or VIP that moved). Returns whether the pool moved. Bounded by
    /// `timeout`: the candidates are asked at once.
    pub async fn search(&self, pool: &PgPool, timeout: Duration, current_refused: bool) -> bool {
        let candidates = self.inner.targets.candidates();
        if candidates.len() == 1 && !current_refused {
            // Nowhere else to go; an unreachable server's connections fail
            // on their own.
            return false;
        }
        let answers = ask_all(candidates, self.session_attrs(), timeout).await;
        let current = self.inner.current.load(Ordering::Acquire);
        let Some(chosen) = answers
            .iter()
            .position(|a| matches!(a, Answer::Suitable { .. }))
        else {
            tracing::debug!(
                answers = ?answers,
                "no server of DATABASE_URL is usable yet ({})",
                self.session_attrs().as_str()
            );
            return false;
        };
        let Answer::Suitable {
            writable: writable_now,
            plain_text,
        } = answers[chosen]
        else {
            unreachable!("chosen because suitable")
        };
        if !should_move(chosen, current, current_refused, writable_now) {
            return false;
        }
        // As the search reached it, so the pool's first connection there
        // does not fail for TLS first.
        self.inner.tls.set(chosen, plain_text);
        self.move_to(pool, chosen);
        true
    }

    fn move_to(&self, pool: &PgPool, index: usize) {
        let options = self.options(index);
        let to = describe(&options);
        pool.set_connect_options(options);
        self.inner.current.store(index, Ordering::Release);
        self.inner
            .moved_at_us
            .store(self.now_us(), Ordering::Release);
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
        metrics::counter!("tillsync_db_primary_moves_total").increment(1);
        tracing::info!(
            database.server = %to,
            "database connections now go to {to}; connections to the previous server are retired"
        );
    }
}

/// Whether the pool moves to candidate `chosen` (the first suitable one).
/// To another server: yes. To the same server again: only if it refused
/// writes a moment ago and a fresh connection now finds it writable (the
/// name behind it moved), so its old connections must go. With `any`, a
/// standby stays chosen and nothing moves (nor is retired, nor logged)
/// at every probe while it stays one.
fn should_move(chosen: usize, current: usize, current_refused: bool, writable_now: bool) -> bool {
    chosen != current || (current_refused && writable_now)
}

/// For the pool's `after_connect`: refuses a new connection to a server the
/// session attributes rule out. The error reads as "database unavailable"
/// (an I/O error), so a request that got none gets a 503.
pub async fn check_session(
    conn: &mut PgConnection,
    session_attrs: SessionAttrs,
) -> Result<(), sqlx::Error> {
    match ask(conn, session_attrs, false).await? {
        Answer::Suitable { .. } => Ok(()),
        Answer::Unsuitable(why) => Err(sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            format!("{why} (target_session_attrs={})", session_attrs.as_str()),
        ))),
        Answer::Failed(e) => Err(sqlx::Error::Io(std::io::Error::other(e))),
    }
}

/// Asks a connected server whether it may serve the session: one round
/// trip, none at all for `any` unless `always` (a search wants to know
/// whether the server takes writes in any case).
async fn ask(
    conn: &mut PgConnection,
    session_attrs: SessionAttrs,
    always: bool,
) -> Result<Answer, sqlx::Error> {
    if session_attrs == SessionAttrs::Any && !always {
        return Ok(Answer::Suitable {
            writable: true,
            plain_text: false,
        });
    }
    let (in_recovery, read_only): (bool, String) =
        sqlx::query_as("select pg_is_in_recovery(), current_setting('transaction_read_only')")
            .fetch_one(conn)
            .await?;
    let read_only = read_only == "on";
    Ok(if session_attrs.accepts(in_recovery, read_only) {
        Answer::Suitable {
            writable: !in_recovery && !read_only,
            plain_text: false,
        }
    } else if in_recovery {
        Answer::Unsuitable("the server is a standby (in recovery)")
    } else {
        Answer::Unsuitable("the server is read-only (transaction_read_only is on)")
    })
}

/// Asks every candidate at once, each with a fresh connection under
/// `timeout`; the answers come back in the candidates' order.
async fn ask_all(
    candidates: &[PgConnectOptions],
    session_attrs: SessionAttrs,
    timeout: Duration,
) -> Vec<Answer> {
    let mut asking = JoinSet::new();
    for (index, options) in candidates.iter().enumerate() {
        let options = options.clone();
        #[expect(
            clippy::disallowed_methods,
            reason = "the task is wrapped in the current metrics scope"
        )]
        asking.spawn(crate::metrics::in_current_scope(async move {
            let answer = tokio::time::timeout(timeout, async {
                let (mut conn, plain_text) = tls::connect(&options).await?;
                let answer = match ask(&mut conn, session_attrs, true).await {
                    Ok(Answer::Suitable { writable, .. }) => Ok(Answer::Suitable {
                        writable,
                        plain_text,
                    }),
                    other => other,
                };
                // Said goodbye to off the search's clock: a server that
                // answered has nothing more to tell.
                crate::metrics::spawn(async move {
                    let _ = tokio::time::timeout(timeout, conn.close()).await;
                });
                answer
            })
            .await;
            let answer = match answer {
                Ok(Ok(answer)) => answer,
                Ok(Err(e)) => Answer::Failed(e.to_string()),
                Err(_) => Answer::Failed(format!("no answer within {} ms", timeout.as_millis())),
            };
            (index, answer)
        }));
    }
    let mut answers: Vec<Answer> = candidates
        .iter()
        .map(|_| Answer::Failed("not asked".into()))
        .collect();
    while let Some(joined) = asking.join_next().await {
        if let Ok((index, answer)) = joined {
            answers[index] = answer;
        }
    }
    answers
}

/// For the commands that run once (`migrate`, the start's create and
/// migrate, `admin`): finds the server the session attributes allow and
/// returns the targets with it first, so the pool made afterwards starts
/// there. Asked through the maintenance database `postgres`, since the
/// service's own database may not exist yet. One server with `any` is
/// returned as is, without a connection, exactly as before multi-host URLs.
pub async fn locate(targets: &DatabaseUrl) -> anyhow::Result<DatabaseUrl> {
    let session_attrs = targets.session_attrs();
    if targets.candidates().len() == 1 && session_attrs == SessionAttrs::Any {
        return Ok(targets.clone());
    }
    let maintenance: Vec<PgConnectOptions> = targets
        .candidates()
        .iter()
        .map(|o| o.clone().database("postgres"))
        .collect();
    let answers = ask_all(&maintenance, session_attrs, LOCATE_TIMEOUT).await;
    let chosen = answers
        .iter()
        .position(|a| matches!(a, Answer::Suitable { .. }))
        .with_context(|| {
            let tried: Vec<String> = targets
                .candidates()
                .iter()
                .zip(&answers)
                .map(|(o, a)| format!("{}: {}", describe(o), explain(a)))
                .collect();
            format!(
                "no server in DATABASE_URL may serve tillsync (target_session_attrs={}): {}",
                session_attrs.as_str(),
                tried.join("; ")
            )
        })?;
    Ok(targets.clone().starting_with(chosen))
}

fn explain(answer: &Answer) -> String {
    match answer {
        Answer::Suitable { .. } => "suitable".into(),
        Answer::Unsuitable(why) => (*why).into(),
        Answer::Failed(e) => e.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::should_move;

    #[test]
    fn the_pool_moves_to_another_server_or_off_a_name_that_moved() {
        // (chosen, current, current_refused, writable_now)
        assert!(
            should_move(1, 0, false, true),
            "unreachable -> the next one"
        );
        assert!(should_move(1, 0, true, true), "read-only -> the next one");
        assert!(
            should_move(0, 0, true, true),
            "a VIP now leads to a primary"
        );
        assert!(
            !should_move(0, 0, true, false),
            "still the same standby (`any`): nothing to retire"
        );
        assert!(
            !should_move(0, 0, false, true),
            "a blip on a server still fine"
        );
    }
}
