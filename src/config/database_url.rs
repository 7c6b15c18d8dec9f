//! `DATABASE_URL` as libpq reads it: one host or several
//! (`postgresql://h1:p1,h2:p2/db?target_session_attrs=read-write`, what
//! `pg_autoctl show uri` hands out and what Patroni's docs tell clients to
//! use), and which kind of server a session needs. The result is a list of
//! candidate servers, each a complete sqlx `PgConnectOptions`, in the order
//! the URL names them; [`crate::db::primary`] picks the one to use and moves the pool
//! when it changes.
//!
//! Why a parser of our own: sqlx 0.8's `PgConnectOptions` holds one host and
//! rejects a host list (`invalid port number`), and it drops
//! `target_session_attrs` with a warning printed before logging starts.
//! `tokio_postgres::Config` parses the multi-host form, but it would bring a
//! second Postgres driver into the build only to read a string, and its
//! result does not convert into `PgConnectOptions` (sqlx's own parameters
//! such as `statement-cache-capacity`, `options[...]` and `.pgpass` lookup
//! would be lost). So this module only splits the host list off the URL and
//! hands sqlx's parser one single-host URL per host: everything else in the
//! URL (credentials, database, TLS settings) means exactly what it meant
//! before.

use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;

use super::database_tls;

/// The query parameter (and libpq environment variable) naming the kind of
/// server a session needs.
const SESSION_ATTRS_PARAM: &str = "target_session_attrs";
const SESSION_ATTRS_ENV: &str = "PGTARGETSESSIONATTRS";

/// Which server of the list a session may use. tillsync writes on every
/// path that matters, so only the libpq values that can lead to a primary
/// are accepted; `read-only`, `standby` and `prefer-standby` are refused
/// at start instead of producing a service that can never take a sale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionAttrs {
    /// The first server that accepts a connection (libpq's default).
    Any,
    /// A server that takes writes: not in recovery, `transaction_read_only`
    /// off. What the HA tools hand out.
    ReadWrite,
    /// A server not in recovery (it may still be set read-only).
    Primary,
}

impl SessionAttrs {
    fn parse(raw: &str) -> Result<Self, String> {
        match raw {
            "any" => Ok(Self::Any),
            "read-write" => Ok(Self::ReadWrite),
            "primary" => Ok(Self::Primary),
            "read-only" | "standby" | "prefer-standby" => Err(format!(
                "{SESSION_ATTRS_PARAM}={raw} is not supported: tillsync writes, so it needs \
                 a primary (use read-write, primary or any)"
            )),
            other => Err(format!(
                "unknown {SESSION_ATTRS_PARAM} `{other}` (supported: read-write, primary, any)"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Any => "any",
            Self::ReadWrite => "read-write",
            Self::Primary => "primary",
        }
    }

    /// Whether a server that says this about itself may serve the session.
    pub fn accepts(self, in_recovery: bool, read_only: bool) -> bool {
        match self {
            Self::Any => true,
            Self::ReadWrite => !in_recovery && !read_only,
            Self::Primary => !in_recovery,
        }
    }
}

/// The servers `DATABASE_URL` names, in its order, and what a session needs.
#[derive(Debug, Clone)]
pub struct DatabaseUrl {
    candidates: Vec<PgConnectOptions>,
    session_attrs: SessionAttrs,
}

impl DatabaseUrl {
    /// Parses a `postgres://` or `postgresql://` URL with one host or a
    /// comma-separated list; `PGTARGETSESSIONATTRS` applies when the URL
    /// does not say, as with libpq, and so do libpq's TLS rules
    /// ([`database_tls`]).
    pub fn parse(raw: &str) -> Result<Self, String> {
        parse(raw, &Environment::of_process())
    }

    pub fn candidates(&self) -> &[PgConnectOptions] {
        &self.candidates
    }

    /// The first server named: the one a pool starts with.
    pub fn first(&self) -> &PgConnectOptions {
        &self.candidates[0]
    }

    pub fn session_attrs(&self) -> SessionAttrs {
        self.session_attrs
    }

    /// The same list with every candidate changed by `f` (e.g. the
    /// session settings every connection is made with).
    pub fn map(self, f: impl Fn(PgConnectOptions) -> PgConnectOptions) -> Self {
        Self {
            candidates: self.candidates.into_iter().map(f).collect(),
            session_attrs: self.session_attrs,
        }
    }

    /// The same list with candidate `index` moved to the front, for a pool
    /// to start where a primary was just found. Later searches then prefer
    /// it too, which is what a client that found a primary wants.
    pub fn starting_with(mut self, index: usize) -> Self {
        let chosen = self.candidates.remove(index);
        self.candidates.insert(0, chosen);
        self
    }
}

impl FromStr for DatabaseUrl {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        Self::parse(raw)
    }
}

/// `host:port` of a candidate, for logs and error messages (never the
/// credentials).
pub fn describe(options: &PgConnectOptions) -> String {
    format!("{}:{}", options.get_host(), options.get_port())
}

/// What libpq reads from the environment besides the URL, passed to the
/// parser so tests do not depend on the caller's environment.
#[derive(Debug, Default)]
struct Environment {
    /// `PGTARGETSESSIONATTRS`.
    session_attrs: Option<String>,
    tls: database_tls::Environment,
}

impl Environment {
    fn of_process() -> Self {
        Self {
            session_attrs: std::env::var(SESSION_ATTRS_ENV).ok(),
            tls: database_tls::Environment::of_process(),
        }
    }
}

fn parse(raw: &str, env: &Environment) -> Result<DatabaseUrl, String> {
    // sqlx reads any scheme as Postgres; another database's URL would only
    // fail later, as a connection error instead of a bad setting.
    let Some((scheme, rest)) = ["postgresql://", "postgres://"]
        .iter()
        .find_map(|s| raw.strip_prefix(s).map(|rest| (*s, rest)))
    else {
        return Err("not a Postgres URL: must start with postgres:// or postgresql://".into());
    };
    // The authority ends where the path, the query or a fragment begins.
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (userinfo, host_list) = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => (Some(userinfo), hosts),
        None => (None, authority),
    };
    let (tail, session_attrs) = take_session_attrs(tail)?;
    let session_attrs = match session_attrs.as_deref().or(env.session_attrs.as_deref()) {
        Some(value) => SessionAttrs::parse(value)?,
        None => SessionAttrs::Any,
    };
    let named_root = last_value(&tail, &database_tls::ROOT_CERT_PARAMS)?;
    let hosts: Vec<&str> = host_list.split(',').collect();
    let mut candidates = Vec::with_capacity(hosts.len());
    for (position, entry) in hosts.iter().enumerate() {
        let (host, port) = split_host_port(entry)
            .map_err(|e| format!("not a Postgres URL: host {} of the list: {e}", position + 1))?;
        if host.is_empty() && hosts.len() > 1 {
            return Err(format!(
                "not a Postgres URL: host {} of the list is empty",
                position + 1
            ));
        }
        let mut single = String::from(scheme);
        if let Some(userinfo) = userinfo {
            single.push_str(userinfo);
            single.push('@');
        }
        single.push_str(host);
        if let Some(port) = port {
            single.push_str(&format!(":{port}"));
        }
        single.push_str(&tail);
        let mut options = single
            .parse::<PgConnectOptions>()
            .map_err(|e| format!("not a Postgres URL: {e}"))?;
        if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            // sqlx keeps the brackets, which no resolver takes.
            options = options.host(v6);
        }
        let options = database_tls::as_libpq(options, named_root.clone(), &env.tls)?;
        candidates.push(options);
    }
    Ok(DatabaseUrl {
        candidates,
        session_attrs,
    })
}

/// One entry of the host list: `host`, `host:port`, `[v6]` or `[v6]:port`.
/// The port is checked here, because the URL parser would name the whole
/// list in its error rather than the entry at fault.
fn split_host_port(entry: &str) -> Result<(&str, Option<u16>), String> {
    let (host, port) = if entry.starts_with('[') {
        let close = entry
            .find(']')
            .ok_or_else(|| format!("`{entry}`: an IPv6 address needs its closing `]`"))?;
        let (host, after) = entry.split_at(close + 1);
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(format!("`{entry}`: expected `:port` after `]`")),
            },
        }
    } else {
        match entry.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (entry, None),
        }
    };
    let port = match port {
        None => None,
        Some(digits) => match digits.parse::<u16>() {
            Ok(port) if port > 0 && digits.bytes().all(|b| b.is_ascii_digit()) => Some(port),
            _ => return Err(format!("`{entry}`: invalid port number `{digits}`")),
        },
    };
    Ok((host, port))
}

/// Removes `target_session_attrs` from the query (sqlx would only warn
/// about it and drop it) and returns its value. Also refuses what sqlx would
/// misread: a host or port list given as a query parameter.
fn take_session_attrs(tail: &str) -> Result<(String, Option<String>), String> {
    let (path, query) = match tail.split_once('?') {
        Some((path, query)) => (path, query),
        None => return Ok((tail.to_owned(), None)),
    };
    let (query, fragment) = match query.split_once('#') {
        Some((query, fragment)) => (query, Some(fragment)),
        None => (query, None),
    };
    let mut kept = Vec::new();
    let mut session_attrs = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = decode(value)?;
        match decode(key)?.as_str() {
            SESSION_ATTRS_PARAM => session_attrs = Some(value),
            "host" | "hostaddr" | "port" if value.contains(',') => {
                return Err(format!(
                    "not a Postgres URL: `{}` with a list is not supported here; \
                     list the servers as postgresql://host1:port1,host2:port2/db",
                    decode(key)?
                ));
            }
            "load_balance_hosts" if value != "disable" => {
                return Err(format!(
                    "load_balance_hosts={value} is not supported: tillsync uses the first \
                     suitable server in the list"
                ));
            }
            "load_balance_hosts" => {}
            _ => kept.push(pair),
        }
    }
    let mut rebuilt = path.to_owned();
    if !kept.is_empty() {
        rebuilt.push('?');
        rebuilt.push_str(&kept.join("&"));
    }
    if let Some(fragment) = fragment {
        rebuilt.push('#');
        rebuilt.push_str(fragment);
    }
    Ok((rebuilt, session_attrs))
}

/// The value of the last of `keys` in the query of `tail` (sqlx reads the
/// pairs in order, so the last one counts), percent-decoded.
fn last_value(tail: &str, keys: &[&str]) -> Result<Option<String>, String> {
    let Some((_, query)) = tail.split_once('?') else {
        return Ok(None);
    };
    let query = query.split_once('#').map_or(query, |(query, _)| query);
    let mut found = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if keys.contains(&decode(key)?.as_str()) {
            found = Some(decode(value)?);
        }
    }
    Ok(found)
}

/// A query key or value, percent-decoded (`+` is a space in a query).
fn decode(raw: &str) -> Result<String, String> {
    let spaced = raw.replace('+', " ");
    let mut bytes = Vec::with_capacity(spaced.len());
    let mut input = spaced.bytes();
    while let Some(b) = input.next() {
        if b != b'%' {
            bytes.push(b);
            continue;
        }
        let hex: Vec<u8> = input.by_ref().take(2).collect();
        let digit = std::str::from_utf8(&hex)
            .ok()
            .filter(|h| h.len() == 2)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .ok_or_else(|| format!("not a Postgres URL: bad percent-encoding in `{raw}`"))?;
        bytes.push(digit);
    }
    String::from_utf8(bytes).map_err(|_| format!("not a Postgres URL: `{raw}` is not UTF-8"))
}

#[cfg(test)]
mod tests;
