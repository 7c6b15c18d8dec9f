//! What `DATABASE_URL`'s TLS settings mean: what libpq makes of `sslmode`
//! and of the root certificate file, applied to the options sqlx parsed
//! from the URL, so a URL that works with `psql` means the same here.
//! Connecting by these options, and `prefer`'s plain-text fallback, is
//! [`crate::db::tls`].
//!
//! - **The root certificate file** is `sslrootcert`, else `PGSSLROOTCERT`
//!   (both read by sqlx), else libpq's default `~/.postgresql/root.crt`
//!   when it exists (which sqlx does not look for: it is added here).
//! - **`require` with a root file is `verify-ca`**, as libpq documents:
//!   libpq then checks the server's certificate against that file, and
//!   sqlx would not.
//! - **A root file named but missing** stops the start, with what libpq
//!   would say. libpq checks no certificate in `prefer` and `require`
//!   when the file is missing; sqlx instead fails every connection trying
//!   to read it, so telling the operator now beats an error per connect.
//! - **A root file of several certificates** stops the start in a mode
//!   that checks the certificate: sqlx's native-tls backend reads only the
//!   first certificate of the file (`native_tls::Certificate::from_pem`),
//!   where libpq trusts them all; the certificates the server's may chain
//!   to would be ignored without a word, and verification would fail with
//!   an error that does not say why.
//!
//! Known differences that remain (docs/configuration.md): with `prefer`
//! and a root file, libpq checks the certificate and goes on in plain text
//! when it does not check out, tillsync goes on encrypted without checking;
//! `verify-ca`/`verify-full` without any root file check against the
//! system's CAs (libpq 15 refuses to connect; libpq 16 calls that
//! `sslrootcert=system`); `verify-full` to an IP address needs the address
//! in the certificate's subjectAltName (libpq also accepts it as the CN).

use std::path::{Path, PathBuf};

use sqlx::postgres::{PgConnectOptions, PgSslMode};

/// What libpq reads from the environment about the root certificate file.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    /// `PGSSLROOTCERT`.
    pub root_cert: Option<String>,
    /// The home directory, for libpq's default `~/.postgresql/root.crt`.
    pub home: Option<PathBuf>,
}

impl Environment {
    pub fn of_process() -> Self {
        Self {
            root_cert: std::env::var("PGSSLROOTCERT").ok(),
            home: std::env::var_os("HOME").map(PathBuf::from),
        }
    }
}

/// The query keys sqlx reads the root certificate file from.
pub const ROOT_CERT_PARAMS: [&str; 3] = ["sslrootcert", "ssl-root-cert", "ssl-ca"];

/// Where a root certificate file came from, to say so in an error.
enum Root {
    /// Named by the URL or `PGSSLROOTCERT`: sqlx has it already.
    Named(String),
    /// libpq's default in the home directory, which exists.
    Default(PathBuf),
}

/// `options` (parsed by sqlx from the URL; `named_root` is the URL's
/// `sslrootcert`, if any) with libpq's meaning of the root certificate file.
pub fn as_libpq(
    options: PgConnectOptions,
    named_root: Option<String>,
    env: &Environment,
) -> Result<PgConnectOptions, String> {
    let mode = options.get_ssl_mode();
    if matches!(mode, PgSslMode::Disable | PgSslMode::Allow) {
        // sqlx never tries TLS (it treats `allow` as `disable`).
        return Ok(options);
    }
    let root = match named_root.or_else(|| env.root_cert.clone()) {
        Some(named) => Some(Root::Named(named)),
        None => env
            .home
            .as_deref()
            .map(|home| home.join(".postgresql/root.crt"))
            .filter(|path| path.is_file())
            .map(Root::Default),
    };
    let Some(root) = root else {
        return Ok(options);
    };
    let (options, pem) = match root {
        Root::Default(path) => {
            let pem = std::fs::read_to_string(&path).ok();
            (options.ssl_root_cert(&path), pem)
        }
        Root::Named(named) if is_inline_pem(&named) => (options, Some(named)),
        Root::Named(named) => {
            let path = Path::new(&named);
            if !path.exists() {
                return Err(missing(&named, mode));
            }
            (options, std::fs::read_to_string(path).ok())
        }
    };
    let options = match mode {
        PgSslMode::Require => options.ssl_mode(PgSslMode::VerifyCa),
        _ => options,
    };
    let verifies = matches!(
        options.get_ssl_mode(),
        PgSslMode::VerifyCa | PgSslMode::VerifyFull
    );
    let certificates = pem.as_deref().map_or(0, count_certificates);
    if verifies && certificates > 1 {
        return Err(format!(
            "the root certificate file (sslrootcert) holds {certificates} certificates, and \
             tillsync's TLS (OpenSSL through sqlx) trusts only the first certificate of that \
             file: name a file holding only the CA that signed the server's certificate, or \
             leave sslrootcert out and give the bundle as OpenSSL's CA file (SSL_CERT_FILE)"
        ));
    }
    Ok(options)
}

/// What to say about a root certificate file that is not there.
fn missing(named: &str, mode: PgSslMode) -> String {
    match mode {
        PgSslMode::VerifyCa | PgSslMode::VerifyFull => format!(
            "root certificate file \"{named}\" does not exist (sslrootcert or PGSSLROOTCERT): \
             provide the file, or change sslmode to one that does not check the certificate"
        ),
        _ => format!(
            "root certificate file \"{named}\" does not exist (sslrootcert or PGSSLROOTCERT): \
             libpq would go on without checking the certificate in this sslmode, but sqlx \
             fails every connection reading it; provide the file or leave sslrootcert out"
        ),
    }
}

/// sqlx's rule: a value that looks like PEM is the certificate itself.
fn is_inline_pem(value: &str) -> bool {
    let trimmed = value.trim();
    trimmed.starts_with("-----BEGIN") && trimmed.ends_with("-----")
}

fn count_certificates(pem: &str) -> usize {
    pem.matches("-----BEGIN CERTIFICATE-----").count()
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    fn options(query: &str) -> PgConnectOptions {
        format!("postgres://u@h/db?{query}").parse().unwrap()
    }

    fn nowhere() -> Environment {
        Environment {
            root_cert: None,
            home: Some(PathBuf::from("/nonexistent-home")),
        }
    }

    /// A file in a fresh temporary directory; the directory, for a home.
    fn file(relative: &str, text: &str) -> (PathBuf, PathBuf) {
        let dir = std::env::temp_dir().join(format!("tillsync-tls-{}", uuid::Uuid::new_v4()));
        let path = dir.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::File::create(&path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        (path, dir)
    }

    /// The sslmode of the result, by name (`PgSslMode` has no `PartialEq`).
    fn mode(options: &Result<PgConnectOptions, String>) -> String {
        format!("{:?}", options.as_ref().unwrap().get_ssl_mode())
    }

    #[test]
    fn without_a_root_file_the_modes_mean_what_they_say() {
        for (query, expected) in [
            ("sslmode=prefer", PgSslMode::Prefer),
            ("sslmode=require", PgSslMode::Require),
            ("sslmode=verify-ca", PgSslMode::VerifyCa),
            ("sslmode=verify-full", PgSslMode::VerifyFull),
            ("sslmode=disable", PgSslMode::Disable),
        ] {
            let checked = as_libpq(options(query), None, &nowhere());
            assert_eq!(mode(&checked), format!("{expected:?}"));
        }
    }

    #[test]
    fn require_with_a_root_file_checks_the_chain_as_libpq_does() {
        let (root, dir) = file("root.crt", CERT);
        let named = root.display().to_string();
        let query = format!("sslmode=require&sslrootcert={named}");
        let checked = as_libpq(options(&query), Some(named.clone()), &nowhere());
        assert_eq!(mode(&checked), format!("{:?}", PgSslMode::VerifyCa));
        // Named by PGSSLROOTCERT instead.
        let env = Environment {
            root_cert: Some(named),
            ..nowhere()
        };
        let checked = as_libpq(options("sslmode=require"), None, &env);
        assert_eq!(mode(&checked), format!("{:?}", PgSslMode::VerifyCa));
        // Prefer stays unchecked (a documented difference: libpq would
        // check, then go on in plain text if it does not check out).
        let query = format!("sslmode=prefer&sslrootcert={}", root.display());
        let prefer = as_libpq(
            options(&query),
            Some(root.display().to_string()),
            &nowhere(),
        );
        assert_eq!(mode(&prefer), format!("{:?}", PgSslMode::Prefer));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn libpqs_default_root_file_in_the_home_directory_counts_too() {
        let (_, home) = file(".postgresql/root.crt", CERT);
        let env = Environment {
            root_cert: None,
            home: Some(home.clone()),
        };
        let checked = as_libpq(options("sslmode=require"), None, &env);
        assert_eq!(mode(&checked), format!("{:?}", PgSslMode::VerifyCa));
        std::fs::remove_dir_all(home).unwrap();
    }

    #[test]
    fn a_missing_root_file_is_refused_at_start_in_every_mode_that_tries_tls() {
        let named = "/nonexistent/root.crt".to_owned();
        for query in ["sslmode=prefer", "sslmode=require", "sslmode=verify-full"] {
            let query = format!("{query}&sslrootcert={named}");
            let e = as_libpq(options(&query), Some(named.clone()), &nowhere()).unwrap_err();
            assert!(e.contains("does not exist"), "{e}");
        }
        // Without TLS the file is never read.
        let query = format!("sslmode=disable&sslrootcert={named}");
        assert!(as_libpq(options(&query), Some(named), &nowhere()).is_ok());
    }

    #[test]
    fn a_bundle_is_refused_where_only_its_first_certificate_would_count() {
        let (root, dir) = file("bundle.crt", &CERT.repeat(3));
        let named = root.display().to_string();
        for query in ["sslmode=verify-full", "sslmode=require"] {
            let query = format!("{query}&sslrootcert={named}");
            let e = as_libpq(options(&query), Some(named.clone()), &nowhere()).unwrap_err();
            assert!(e.contains("holds 3 certificates"), "{e}");
        }
        // Prefer does not check the certificate: the bundle is not used.
        let query = format!("sslmode=prefer&sslrootcert={named}");
        assert!(as_libpq(options(&query), Some(named), &nowhere()).is_ok());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
