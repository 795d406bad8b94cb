//! TLS material of the agent link.
//!
//! **Development** ([`dev_material`]): on the server's first start a private certificate
//! authority ("Alto development CA", ECDSA P-256, ten years) and a server certificate signed
//! by it are written to a directory (`<data_dir>/tls` by default):
//!
//! ```text
//! ca.pem            the CA certificate (agents trust this; it is handed to them at enrollment)
//! ca-key.pem        its private key (0600)
//! server.pem        the server certificate (SANs: the configured names, localhost, 127.0.0.1, ::1)
//! server-key.pem    its private key (0600)
//! server.names      the names and expiry the server certificate was made for
//! ```
//!
//! Later starts reuse them; the server certificate alone is re-issued (by the same CA) when
//! the configured names change or it expires within 30 days, so enrolled agents keep
//! trusting the server.
//!
//! **Production** ([`supplied_material`]): a certificate chain and key from files, plus the CA
//! bundle agents should trust (handed out at enrollment like the development CA).

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

/// Why TLS material could not be made or loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// What a TLS server needs, and the CA its clients should trust.
#[derive(Clone)]
pub struct ServerTls {
    /// PEM of the CA (bundle) agents trust.
    pub ca_pem: String,
    /// PEM of the server certificate (chain).
    pub cert_pem: String,
    /// PEM of the server's private key.
    pub key_pem: String,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("ca_pem", &format_args!("{} bytes", self.ca_pem.len()))
            .field("cert_pem", &format_args!("{} bytes", self.cert_pem.len()))
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// Makes `ring` the process's TLS crypto provider unless one is installed already (several
/// crates in one binary enable different rustls providers; rustls then refuses to guess).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl ServerTls {
    /// The tonic server configuration.
    pub fn server_config(&self) -> tonic::transport::ServerTlsConfig {
        install_crypto_provider();
        tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(&self.cert_pem, &self.key_pem))
    }
}

/// The tonic client configuration trusting exactly `ca_pem`, expecting the server to be
/// `domain` (a DNS name or IP address in its certificate).
pub fn client_config(ca_pem: &str, domain: &str) -> tonic::transport::ClientTlsConfig {
    install_crypto_provider();
    tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca_pem))
        .domain_name(domain)
}

fn read(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::Io { path: path.to_owned(), source })
}

/// Writes `data` to `path` atomically with `mode`.
fn write(path: &Path, data: &str, mode: u32) -> Result<(), TlsError> {
    let io = |source| TlsError::Io { path: path.to_owned(), source };
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(data.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

fn ca_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Alto development CA");
    dn.push(DnType::OrganizationName, "Alto");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p
}

/// The names the server certificate is valid for: `names` plus the loopback names, without
/// duplicates, in a stable order.
fn all_names(names: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in names.iter().map(|s| s.trim()).chain(["localhost", "127.0.0.1", "::1"]) {
        if !n.is_empty() && !out.iter().any(|o| o.eq_ignore_ascii_case(n)) {
            out.push(n.to_owned());
        }
    }
    out
}

fn issue_server_cert(
    ca_key: &KeyPair,
    names: &[String],
    now: OffsetDateTime,
) -> Result<(String, String, OffsetDateTime), TlsError> {
    let issuer = Issuer::new(ca_params(), ca_key);
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, names.first().cloned().unwrap_or_else(|| "localhost".into()));
    p.distinguished_name = dn;
    p.subject_alt_names = names
        .iter()
        .map(|n| match n.parse::<std::net::IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => n.clone().try_into().map(SanType::DnsName),
        })
        .collect::<Result<_, _>>()?;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.use_authority_key_identifier_extension = true;
    p.not_before = now - Duration::hours(1);
    let not_after = now + Duration::days(2 * 365);
    p.not_after = not_after;
    let key = KeyPair::generate()?;
    let cert = p.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem(), not_after))
}

/// The development CA and server certificate in `dir` (created on first use, 0700), valid for
/// `names` (host names or IP addresses the agents use) and the loopback names. `now` dates new
/// certificates and decides whether the server's is due; callers pass the real time (peers
/// judge validity by their own wall clocks), tests any time.
pub fn dev_material(
    dir: &Path,
    names: &[String],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<ServerTls, TlsError> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| TlsError::Io { path: dir.to_owned(), source })?;
    let now = OffsetDateTime::from_unix_timestamp(now.timestamp())
        .map_err(|e| TlsError::Invalid { path: dir.to_owned(), reason: format!("time: {e}") })?;
    let (ca_path, ca_key_path) = (dir.join("ca.pem"), dir.join("ca-key.pem"));
    let (cert_path, key_path, names_path) =
        (dir.join("server.pem"), dir.join("server-key.pem"), dir.join("server.names"));
    let ca_key = if ca_path.exists() && ca_key_path.exists() {
        let pem = read(&ca_key_path)?;
        KeyPair::from_pem(&pem)
            .map_err(|e| TlsError::Invalid { path: ca_key_path.clone(), reason: e.to_string() })?
    } else {
        let key = KeyPair::generate()?;
        let mut p = ca_params();
        p.not_before = now - Duration::hours(1);
        p.not_after = now + Duration::days(10 * 365);
        let ca = p.self_signed(&key)?;
        write(&ca_key_path, &key.serialize_pem(), 0o600)?;
        write(&ca_path, &ca.pem(), 0o644)?;
        // A new CA invalidates any server certificate of an old one.
        let _ = std::fs::remove_file(&names_path);
        key
    };
    let names = all_names(names);
    let wanted = names.join(",");
    let current = std::fs::read_to_string(&names_path).unwrap_or_default();
    let mut lines = current.lines();
    let same_names = lines.next() == Some(wanted.as_str());
    let fresh = lines
        .next()
        .and_then(|s| s.parse::<i64>().ok())
        .is_some_and(|exp| exp > (now + Duration::days(30)).unix_timestamp());
    if !(same_names && fresh && cert_path.exists() && key_path.exists()) {
        let (cert, key, not_after) = issue_server_cert(&ca_key, &names, now)?;
        write(&key_path, &key, 0o600)?;
        write(&cert_path, &cert, 0o644)?;
        write(&names_path, &format!("{wanted}\n{}\n", not_after.unix_timestamp()), 0o644)?;
    }
    Ok(ServerTls {
        ca_pem: read(&ca_path)?,
        cert_pem: read(&cert_path)?,
        key_pem: read(&key_path)?,
    })
}

/// Supplied certificates: the server's chain and key, and the CA bundle agents should trust.
pub fn supplied_material(cert: &Path, key: &Path, ca: &Path) -> Result<ServerTls, TlsError> {
    let check = |path: &Path, text: String, tag: &str| {
        if text.contains(&format!("-----BEGIN {tag}")) {
            Ok(text)
        } else {
            Err(TlsError::Invalid {
                path: path.to_owned(),
                reason: format!("not a PEM file with a {tag}"),
            })
        }
    };
    Ok(ServerTls {
        ca_pem: check(ca, read(ca)?, "CERTIFICATE")?,
        cert_pem: check(cert, read(cert)?, "CERTIFICATE")?,
        key_pem: check(key, read(key)?, "")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    use alto_model::clock::{Clock, SystemClock};

    fn now() -> chrono::DateTime<chrono::Utc> {
        SystemClock.now()
    }

    #[test]
    fn dev_ca_is_created_once_and_reissues_the_server_cert_on_new_names() {
        let dir = tempfile::tempdir().unwrap();
        let tls = dir.path().join("tls");
        let a = dev_material(&tls, &["alto.example".into()], now()).unwrap();
        for k in ["ca-key.pem", "server-key.pem"] {
            let mode = std::fs::metadata(tls.join(k)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{k}");
        }
        let b = dev_material(&tls, &["alto.example".into()], now()).unwrap();
        assert_eq!(a.ca_pem, b.ca_pem);
        assert_eq!(a.cert_pem, b.cert_pem, "same names: reused");
        let c = dev_material(&tls, &["other.example".into()], now()).unwrap();
        assert_eq!(a.ca_pem, c.ca_pem, "the CA stays");
        assert_ne!(a.cert_pem, c.cert_pem, "new names: re-issued");
        assert!(format!("{c:?}").contains("redacted"));
        assert!(!format!("{c:?}").contains("PRIVATE"));
    }

    #[test]
    fn dev_server_cert_is_reissued_within_30_days_of_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let tls = dir.path().join("tls");
        let t0 = chrono::DateTime::from_timestamp(1_780_000_000, 0).unwrap();
        let a = dev_material(&tls, &["alto.example".into()], t0).unwrap();
        let later = t0 + chrono::Duration::days(2 * 365 - 31);
        let b = dev_material(&tls, &["alto.example".into()], later).unwrap();
        assert_eq!(a.cert_pem, b.cert_pem, "not yet due");
        let due = t0 + chrono::Duration::days(2 * 365 - 29);
        let c = dev_material(&tls, &["alto.example".into()], due).unwrap();
        assert_eq!(a.ca_pem, c.ca_pem, "the CA stays");
        assert_ne!(a.cert_pem, c.cert_pem, "due: re-issued");
    }

    #[test]
    fn supplied_material_refuses_non_pem() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.pem");
        std::fs::write(&f, "hello").unwrap();
        let err = supplied_material(&f, &f, &f).unwrap_err();
        assert!(err.to_string().contains("not a PEM"), "{err}");
    }

    #[test]
    fn names_are_deduplicated_with_loopback() {
        assert_eq!(
            all_names(&["LOCALHOST".into(), "a".into(), " ".into()]),
            vec!["LOCALHOST", "a", "127.0.0.1", "::1"]
        );
    }
}
