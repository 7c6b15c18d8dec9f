//! TLS to Postgres at connect time, as libpq does it (issue 25). What the
//! URL's TLS settings mean is [`crate::config::database_tls`]; this module
//! owns `sslmode=prefer`'s fallback to plain text.
//!
//! - **The certificate.** sqlx is built with native-tls (OpenSSL), which
//!   in `prefer` and `require` sets `SSL_VERIFY_NONE`, as libpq does: any
//!   certificate will do, a self-signed X.509 version 1 one included. Its
//!   rustls backend, used before, skipped the chain there too but still
//!   parsed the certificate with webpki to check the handshake's
//!   signature, and webpki refuses version 1 (`UnsupportedCertVersion`).
//!   `verify-ca` and `verify-full` check the certificate, with OpenSSL.
//!   A server that answers the TLS request with "no" (`ssl = off`) is
//!   talked to in plain text by sqlx itself in `prefer`, and refused in
//!   the other modes; nothing here is needed for that.
//! - **Why hand-written code at all: `prefer` when the handshake fails.**
//!   The server says yes to TLS, then no handshake succeeds (no protocol
//!   version or cipher in common, a client key that cannot be used). libpq
//!   then connects again in plain text; sqlx 0.8 fails the connection and
//!   has no setting for it. So every connection tillsync opens itself goes
//!   through [`connect`], which does what libpq does.
//! - **The pool** opens its connections inside sqlx, which has no hook to
//!   retry one differently (0.8). So the fallback is remembered per server
//!   ([`Fallback`]) and the pool's options for that server become
//!   `sslmode=disable`: once a pooled connection failed to set up TLS (the
//!   request that met it tries again at once, `Database::begin`), or once
//!   a check found so. The check (one connection as configured, at most
//!   every [`CHECK_EVERY`], driven by the prober: `Primary::check_tls`)
//!   runs after a failed probe, and every time while the current server is
//!   talked to in plain text, so TLS comes back within a minute of working
//!   again: a fallback caused by a passing fault does not last.
//!
//! Only `prefer` falls back. `require` and the verifying modes fail the
//! connection, and `disable` never tries TLS. A link that breaks during
//! the handshake (reset, refused) is not TLS that cannot be set up: it
//! fails as any broken link does. libpq also connects again in plain text
//! when a server turns a session down over TLS (an error during
//! authentication, such as `pg_hba.conf` allowing only `hostnossl`);
//! tillsync does not: TLS was set up, and the server's answer stands.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgSslMode};

use crate::config::database_url::describe;

/// How often, at most, the prober's check connects to find out whether
/// TLS can be set up with the server: it costs a connection, during an
/// outage every probe fails, and while in plain text it runs after every
/// probe.
pub const CHECK_EVERY: Duration = Duration::from_secs(60);

/// Whether connections by `options` go on in plain text when TLS cannot
/// be set up: libpq's `prefer` (also what a URL without `sslmode` means).
pub fn falls_back(options: &PgConnectOptions) -> bool {
    matches!(options.get_ssl_mode(), PgSslMode::Prefer)
}

/// Whether `err` says TLS could not be set up: the handshake failed, or
/// what it needs on the client's side could not be used. Errors of the
/// link itself are not these: refused or reset before TLS began (sqlx's
/// I/O errors), or reset during the handshake (OpenSSL's error then wraps
/// the I/O error, which a server going down mid-handshake causes).
pub fn could_not_set_up(err: &sqlx::Error) -> bool {
    let sqlx::Error::Tls(tls) = err else {
        return false;
    };
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(tls.as_ref());
    while let Some(error) = cause {
        if error.is::<std::io::Error>() {
            return false;
        }
        cause = error.source();
    }
    true
}

/// The same server and settings, in plain text.
pub fn plain(options: &PgConnectOptions) -> PgConnectOptions {
    options.clone().ssl_mode(PgSslMode::Disable)
}

/// One connection as libpq makes it: with `prefer`, TLS first, then plain
/// text if TLS could not be set up. Also says whether it fell back.
pub async fn connect(options: &PgConnectOptions) -> Result<(PgConnection, bool), sqlx::Error> {
    match options.connect().await {
        Ok(conn) => Ok((conn, false)),
        Err(e) if falls_back(options) && could_not_set_up(&e) => {
            let server = describe(options);
            tracing::warn!(
                database.server = %server,
                error = %e,
                "TLS could not be set up with {server}; going on in plain text, as \
                 sslmode=prefer does: {e}"
            );
            Ok((plain(options).connect().await?, true))
        }
        Err(e) => Err(e),
    }
}

/// Which servers of `DATABASE_URL` the pool talks to in plain text,
/// because TLS could not be set up with them, and the check that decides.
pub struct Fallback {
    /// One flag per candidate server, in the URL's order.
    plain: Vec<AtomicBool>,
    /// When the check last ran, in microseconds since the owner's epoch
    /// (0: never).
    checked_at_us: AtomicU64,
    checking: AtomicBool,
}

impl Fallback {
    pub fn new(servers: usize) -> Self {
        Self {
            plain: (0..servers).map(|_| AtomicBool::new(false)).collect(),
            checked_at_us: AtomicU64::new(0),
            checking: AtomicBool::new(false),
        }
    }

    /// The options connections to server `index` are made with now.
    pub fn options(&self, index: usize, configured: &PgConnectOptions) -> PgConnectOptions {
        if self.is_plain(index) {
            plain(configured)
        } else {
            configured.clone()
        }
    }

    /// Whether server `index` is talked to in plain text now.
    pub fn is_plain(&self, index: usize) -> bool {
        self.plain[index].load(Ordering::Acquire)
    }

    /// Records whether server `index` is talked to in plain text; true if
    /// that changed.
    pub fn set(&self, index: usize, plain: bool) -> bool {
        self.plain[index].swap(plain, Ordering::AcqRel) != plain
    }

    /// Whether a check may start now (`now_us`: microseconds since the
    /// owner's epoch): none running, none within [`CHECK_EVERY`]. If so,
    /// it is marked as running until [`Fallback::checked`].
    pub fn start_check(&self, now_us: u64) -> bool {
        let last = self.checked_at_us.load(Ordering::Acquire);
        let due = last == 0 || now_us.saturating_sub(last) >= CHECK_EVERY.as_micros() as u64;
        due && !self.checking.swap(true, Ordering::AcqRel)
    }

    pub fn checked(&self, now_us: u64) {
        self.checked_at_us.store(now_us.max(1), Ordering::Release);
        self.checking.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(query: &str) -> PgConnectOptions {
        format!("postgres://u@h/db{query}").parse().unwrap()
    }

    #[test]
    fn only_prefer_falls_back_and_no_sslmode_means_prefer() {
        assert!(falls_back(&options("")));
        assert!(falls_back(&options("?sslmode=prefer")));
        for mode in ["disable", "allow", "require", "verify-ca", "verify-full"] {
            assert!(!falls_back(&options(&format!("?sslmode={mode}"))), "{mode}");
        }
    }

    /// An error that wraps another, as OpenSSL's wraps an I/O error.
    #[derive(Debug)]
    struct Wrapping(std::io::Error);

    impl std::fmt::Display for Wrapping {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "handshake: {}", self.0)
        }
    }

    impl std::error::Error for Wrapping {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_failed_handshake_is_tls_that_cannot_be_set_up_and_a_broken_link_is_not() {
        let reset = || std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(could_not_set_up(&sqlx::Error::Tls(
            "tlsv1 alert protocol version".into()
        )));
        assert!(!could_not_set_up(&sqlx::Error::Io(reset())));
        assert!(!could_not_set_up(&sqlx::Error::Tls(Box::new(reset()))));
        assert!(!could_not_set_up(&sqlx::Error::Tls(Box::new(Wrapping(
            reset()
        )))));
        assert!(!could_not_set_up(&sqlx::Error::PoolTimedOut));
    }

    #[test]
    fn a_server_talked_to_in_plain_text_gets_disable_and_only_that_one() {
        let fallback = Fallback::new(2);
        let configured = options("?sslmode=prefer");
        assert!(fallback.set(1, true));
        assert!(!fallback.set(1, true), "no change the second time");
        let mode = |index| fallback.options(index, &configured).get_ssl_mode();
        assert!(matches!(mode(1), PgSslMode::Disable));
        assert!(matches!(mode(0), PgSslMode::Prefer));
        assert!(fallback.is_plain(1) && !fallback.is_plain(0));
        assert!(fallback.set(1, false));
        assert!(matches!(mode(1), PgSslMode::Prefer));
    }

    #[test]
    fn the_check_runs_once_at_a_time_and_at_most_every_minute() {
        let fallback = Fallback::new(1);
        let minute = CHECK_EVERY.as_micros() as u64;
        assert!(fallback.start_check(5), "never checked: due");
        assert!(!fallback.start_check(6), "one is running");
        fallback.checked(10);
        assert!(!fallback.start_check(10 + minute - 1));
        assert!(fallback.start_check(10 + minute));
    }
}
