//! Certificates for the TLS tests, made by `openssl` in a test's own
//! directory: a self-signed X.509 version 1 one, as some tools generate,
//! and a version 3 one signed by a CA of the test's own.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A certificate and its key, PEM files.
pub struct Pair {
    pub crt: PathBuf,
    pub key: PathBuf,
}

/// Runs `openssl` with `args` in `dir`; panics with its output if it failed.
fn openssl(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(
        output.status.success(),
        "openssl {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A new key and a signing request for `CN=localhost`: `NAME.key`, `NAME.csr`.
fn request(dir: &Path, name: &str) -> (String, String) {
    let (key, csr) = (format!("{name}.key"), format!("{name}.csr"));
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            &key,
            "-out",
            &csr,
        ],
    );
    (key, csr)
}

/// The certificate's X.509 version, as `openssl x509 -text` prints it.
fn version(dir: &Path, crt: &str) -> String {
    let text = openssl(dir, &["x509", "-noout", "-text", "-in", crt]);
    let line = text.lines().find(|l| l.trim().starts_with("Version:"));
    line.expect("a Version line").trim().to_owned()
}

/// A self-signed X.509 version 1 certificate for `localhost`, as
/// `NAME.crt` and `NAME.key` in `dir`. `openssl req -x509` would make a
/// version 3 one; signing a request with `x509 -req` and no extensions
/// makes version 1.
pub fn self_signed_version_1(dir: &Path, name: &str) -> Pair {
    let (key, csr) = request(dir, name);
    let crt = format!("{name}.crt");
    openssl(
        dir,
        &[
            "x509", "-req", "-days", "2", "-in", &csr, "-signkey", &key, "-out", &crt,
        ],
    );
    assert_eq!(version(dir, &crt), "Version: 1 (0x0)");
    Pair {
        crt: dir.join(crt),
        key: dir.join(key),
    }
}

/// A CA of the test's own (version 3, `CA:TRUE`), as `NAME.crt` and
/// `NAME.key` in `dir`.
pub fn certificate_authority(dir: &Path, name: &str) -> Pair {
    let (crt, key) = (format!("{name}.crt"), format!("{name}.key"));
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=tillsync test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            &key,
            "-out",
            &crt,
        ],
    );
    Pair {
        crt: dir.join(crt),
        key: dir.join(key),
    }
}

/// A version 3 server certificate for `localhost` and `127.0.0.1` (both in
/// subjectAltName), signed by `ca`, as `NAME.crt` and `NAME.key` in `dir`.
pub fn signed_version_3(dir: &Path, name: &str, ca: &Pair) -> Pair {
    let (key, csr) = request(dir, name);
    let (crt, extensions) = (format!("{name}.crt"), format!("{name}.ext"));
    std::fs::write(
        dir.join(&extensions),
        "basicConstraints = CA:FALSE\n\
         keyUsage = digitalSignature, keyEncipherment\n\
         extendedKeyUsage = serverAuth\n\
         subjectAltName = DNS:localhost, IP:127.0.0.1\n",
    )
    .expect("write the extensions");
    let (ca_crt, ca_key) = (ca.crt.display().to_string(), ca.key.display().to_string());
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            &csr,
            "-CA",
            &ca_crt,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-extfile",
            &extensions,
            "-out",
            &crt,
        ],
    );
    assert_eq!(version(dir, &crt), "Version: 3 (0x2)");
    Pair {
        crt: dir.join(crt),
        key: dir.join(key),
    }
}
