//! Behind PgBouncer (Debian's 1.18, one instance per test on a free port,
//! in front of the shared server): what issue 14 found with sqlx's and
//! tillsync's old defaults (`protocol`), and what `TILLSYNC_DB_POOLER`
//! makes work (`service`). Each test has its own database; migrations go
//! to Postgres directly. The helpers they share are here.

mod protocol;
mod service;

use sqlx::postgres::PgConnectOptions;
use tillsync::config::DatabaseArgs;
use tillsync_testkit::database::{drop_database, fresh_name, server_url};
use tillsync_testkit::pgbouncer::{Config, PgBouncer};
use tillsync_testkit::settings::serve_args;

/// A fresh database on the shared server (dropped on drop) and a
/// PgBouncer in front of that server.
pub struct Setup {
    pub bouncer: PgBouncer,
    pub name: String,
    pub direct: String,
}

impl Setup {
    pub fn new(config: &Config) -> Self {
        let server: PgConnectOptions = server_url().parse().unwrap();
        let bouncer = PgBouncer::start(server.get_host(), server.get_port(), config);
        let name = fresh_name("tillsync_pooler");
        let direct = format!("{}/{name}", server_url());
        Self {
            bouncer,
            name,
            direct,
        }
    }

    pub fn pooled(&self) -> String {
        self.bouncer.url(&self.name)
    }

    /// The database settings of a server at `url` with this pooler mode.
    pub fn database_args(&self, url: &str, mode: &str, timeout: &str) -> DatabaseArgs {
        let extra = [
            "--db-pooler",
            mode,
            "--migrate-database-url",
            &self.direct,
            "--db-statement-timeout",
            timeout,
        ];
        serve_args(url, &extra).database
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        drop_database(&self.name);
    }
}
