//! Server configuration: defaults → TOML file → `ALTO_*` environment → command-line flags,
//! validated into [`Config`]. Every key is documented in `docs/configuration.md`.
//!
//! Environment variables use `__` between section and key: `ALTO_HTTP__LISTEN=0.0.0.0:8080`,
//! `ALTO_DATABASE__URL=postgres://…`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format as _, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the server keeps its state: the embedded PostgreSQL cluster, the initial admin
    /// password file.
    pub data_dir: PathBuf,
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub auth: AuthConfig,
    pub agents: AgentsConfig,
    pub ingest: IngestConfig,
    pub planner: PlannerConfig,
    pub recalls: RecallsConfig,
    pub link: LinkConfig,
    pub storage: StorageConfig,
    pub metrics: MetricsConfig,
    pub bootstrap: BootstrapConfig,
    pub log: LogConfig,
}

/// What the server itself may reach when it checks tenants' storage targets
/// (`POST …/storage-targets/{id}/test`) and which directory locations tenants may name.
/// Agents reach targets from their own hosts; this is about the server's requests.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Where `directory` targets may be. Set: an absolute location must lie under it
    /// (refused otherwise), and the server checks only such locations. Unset: absolute
    /// locations are paths on the hosts, and the server never looks at its own file system
    /// for them (their check answers `unchecked`).
    pub directory_base: Option<PathBuf>,
    /// Network endpoints the server may connect to even though they are loopback, private,
    /// link-local or otherwise non-public addresses (refused unless listed): `HOST` or
    /// `HOST:PORT`, where HOST is an IP address, a CIDR block (`10.0.0.0/8`, `[fd00::/8]:9000`)
    /// or a DNS name (`minio.internal`, `*.corp.example`).
    pub allowed_endpoints: Vec<String>,
    /// Whether endpoints at public addresses are allowed without being listed.
    pub allow_public_endpoints: bool,
}

impl StorageConfig {
    /// The outbound policy these settings describe.
    pub fn egress_policy(&self) -> Result<crate::egress::EgressPolicy, String> {
        crate::egress::EgressPolicy::new(&self.allowed_endpoints, self.allow_public_endpoints)
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self { directory_base: None, allowed_endpoints: Vec::new(), allow_public_endpoints: true }
    }
}

/// Who may read `/metrics`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// A bearer token that scrapers present (`Authorization: Bearer …`); with it, any
    /// client that has the token may scrape.
    pub token: Option<String>,
    /// Client addresses (IP or CIDR) that may scrape without the token. Default: loopback
    /// only, so a local Prometheus works with no configuration and nobody else can read it.
    pub allow_from: Vec<String>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { token: None, allow_from: vec!["127.0.0.0/8".into(), "::1".into()] }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PlannerConfig {
    /// Planner workers per server replica (queued runs: after ingest, schedules, watermarks).
    pub workers: usize,
    /// How often one replica checks rule schedules and volume watermarks.
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
}

impl Default for PlannerConfig {
    fn default() -> Self {
        Self { workers: 1, sweep_interval: Duration::from_secs(30) }
    }
}

/// Recall reports from agents: the recall-storm detector and how long the object of a
/// replaced stub is kept.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RecallsConfig {
    /// A host's process (by executable) or user that recalls more than this many files
    /// within `storm_window` raises a `recall.storm` alert (once per window per subject).
    pub storm_threshold: u64,
    /// The sliding window the storm detector counts over.
    #[serde(with = "humantime_serde")]
    pub storm_window: Duration,
    /// How long the tier-2 object of a stub that was truncated or overwritten (`replaced`)
    /// is kept before tier-2 reconciliation may collect it.
    #[serde(with = "humantime_serde")]
    pub replaced_retention: Duration,
}

impl Default for RecallsConfig {
    fn default() -> Self {
        Self {
            storm_threshold: 500,
            storm_window: Duration::from_secs(600),
            replaced_retention: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// The agent link: agents hold one gRPC stream over TLS to it and receive their jobs there.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LinkConfig {
    /// Serve the agent link (agents then take their jobs from it instead of polling REST).
    pub enabled: bool,
    /// Address of the gRPC listener.
    pub listen: SocketAddr,
    /// URL agents dial (`https://host:port`); defaults to `https://<listen>` (with the machine's
    /// host name when listening on every address). Handed to agents at enrollment.
    pub public_url: Option<String>,
    /// Supplied certificate chain, key and the CA bundle agents should trust (all three or
    /// none). None: a development CA in `tls_dir`, created on first start.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_ca: Option<PathBuf>,
    /// Where the development CA lives; default `<data_dir>/tls`.
    pub tls_dir: Option<PathBuf>,
    /// Extra names (DNS or IP) for the development server certificate.
    pub cert_names: Vec<String>,
    /// How often agents send a heartbeat on the stream.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// How long a job stays leased to an agent that stopped sending heartbeats; then it is
    /// queued again for its host.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// Jobs one agent runs at once (the agent may ask for fewer).
    pub max_jobs_per_host: u32,
    /// How often queued jobs are looked for even without a wake-up event.
    #[serde(with = "humantime_serde")]
    pub dispatch_interval: Duration,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            public_url: None,
            tls_cert: None,
            tls_key: None,
            tls_ca: None,
            tls_dir: None,
            cert_names: Vec::new(),
            heartbeat_interval: Duration::from_secs(10),
            lease: Duration::from_secs(90),
            max_jobs_per_host: 1,
            dispatch_interval: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Largest accepted scan part (one upload request), as sent (compressed).
    pub max_part_bytes: usize,
    /// Largest decompressed content of one scan part (CSV text, or Parquet column data as
    /// its footer declares it). Decompression streams and stops at this limit, so a
    /// decompression bomb costs no more memory than this (`413 payload_too_large`).
    pub max_decoded_part_bytes: usize,
    /// How long staged scan rows are kept (whole days).
    #[serde(with = "humantime_serde")]
    pub staging_retention: Duration,
    /// Parallel ingest workers per server replica.
    pub workers: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_part_bytes: 64 * 1024 * 1024,
            max_decoded_part_bytes: 256 * 1024 * 1024,
            staging_retention: Duration::from_secs(7 * 24 * 3600),
            workers: 2,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// URL printed for people and used in links; defaults to `http://<listen>`.
    pub public_url: Option<String>,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Mark session cookies `Secure` (set when serving behind TLS).
    pub secure_cookies: bool,
    /// Take the client address from `X-Forwarded-For` (only behind a trusted proxy).
    pub trust_forwarded_for: bool,
    /// Per-request time limit.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// External PostgreSQL URL with owner rights. Absent: run the embedded cluster.
    pub url: Option<String>,
    /// Password for the `alto_app` login role (external servers that require one).
    pub app_password: Option<String>,
    pub max_connections: u32,
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
    /// Directory with `initdb` and `postgres` for the embedded cluster (auto-detected).
    pub pg_bin_dir: Option<PathBuf>,
    /// TCP port of the embedded cluster on 127.0.0.1; 0 picks a free one.
    pub embedded_port: u16,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Lifetime of a login session (cookie or bearer token).
    #[serde(with = "humantime_serde")]
    pub session_ttl: Duration,
    /// Failed logins for one username from one source address (an IPv6 /64) within
    /// `failure_window` before that source is locked out of that username.
    pub max_failed_logins: u32,
    /// Failed logins for one username from all sources together within `failure_window`
    /// before the username is locked for everyone (distributed guessing only: one source
    /// alone is stopped long before).
    pub max_failed_logins_global: u32,
    #[serde(with = "humantime_serde")]
    pub failure_window: Duration,
    /// First lockout; doubles with each further failure (until a quiet `failure_window`
    /// has passed), up to 24 hours.
    #[serde(with = "humantime_serde")]
    pub lockout: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AgentsConfig {
    /// How long a host enrollment token stays valid.
    #[serde(with = "humantime_serde")]
    pub enrollment_token_ttl: Duration,
    /// After a rotation, how long the previous credential keeps working.
    #[serde(with = "humantime_serde")]
    pub credential_overlap: Duration,
    /// Heartbeat interval agents are told to use.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// A host not heard from for this long is marked offline.
    #[serde(with = "humantime_serde")]
    pub offline_after: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BootstrapConfig {
    /// Username of the platform administrator created on first start.
    pub admin_username: String,
    /// Its password; absent: a random one is generated, printed once and written to
    /// `<data_dir>/initial-admin-password` (mode 0600).
    pub admin_password: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// `tracing` filter directive, e.g. `info,alto_server=debug`. `RUST_LOG` overrides.
    pub filter: String,
}

fn default_data_dir() -> PathBuf {
    // SAFETY-free wrapper would need libc; HOME is a good enough signal for the default.
    match std::env::var_os("HOME") {
        Some(h) if h != "/root" && !h.is_empty() => Path::new(&h).join(".local/share/alto"),
        _ => PathBuf::from("/var/lib/alto"),
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: default_data_dir(),
            http: HttpConfig::default(),
            database: DatabaseConfig::default(),
            auth: AuthConfig::default(),
            agents: AgentsConfig::default(),
            ingest: IngestConfig::default(),
            planner: PlannerConfig::default(),
            recalls: RecallsConfig::default(),
            link: LinkConfig::default(),
            storage: StorageConfig::default(),
            metrics: MetricsConfig::default(),
            bootstrap: BootstrapConfig::default(),
            log: LogConfig::default(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            max_body_bytes: 1024 * 1024,
            secure_cookies: false,
            trust_forwarded_for: false,
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: None,
            app_password: None,
            max_connections: 20,
            acquire_timeout: Duration::from_secs(10),
            pg_bin_dir: None,
            embedded_port: 0,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            session_ttl: Duration::from_secs(12 * 3600),
            max_failed_logins: 5,
            max_failed_logins_global: 100,
            failure_window: Duration::from_secs(15 * 60),
            lockout: Duration::from_secs(15 * 60),
        }
    }
}

impl Default for AgentsConfig {
    fn default() -> Self {
        Self {
            enrollment_token_ttl: Duration::from_secs(24 * 3600),
            credential_overlap: Duration::from_secs(24 * 3600),
            heartbeat_interval: Duration::from_secs(30),
            offline_after: Duration::from_secs(120),
        }
    }
}

impl Default for BootstrapConfig {
    fn default() -> Self {
        Self { admin_username: "admin".into(), admin_password: None }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: LogFormat::Text, filter: "info".into() }
    }
}

/// Flags that override everything else. `None` leaves the lower layers' value.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpOverrides>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseOverrides>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<LogOverrides>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<LinkOverrides>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct LinkOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct HttpOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct DatabaseOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct LogOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<LogFormat>,
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Parse(#[from] Box<figment::Error>),
    #[error("configuration file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Loads the layers. `file` must exist if given.
    pub fn load(file: Option<&Path>, flags: &Overrides) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(f) = file {
            if !f.is_file() {
                return Err(ConfigError::MissingFile(f.to_owned()));
            }
            fig = fig.merge(Toml::file(f));
        }
        // Only variables that name a configuration key: other tools share the ALTO_ prefix
        // (ALTO_SERVER and ALTO_TOKEN for altoctl, ALTO_TEST_DATABASE_URL, …).
        let env = Env::prefixed("ALTO_").split("__").filter(|key| {
            // The key arrives already split (`http.listen`).
            let k = key.as_str().to_ascii_lowercase();
            k == "data_dir"
                || [
                    "http.",
                    "database.",
                    "auth.",
                    "agents.",
                    "ingest.",
                    "recalls.",
                    "storage.",
                    "metrics.",
                    "bootstrap.",
                    "log.",
                ]
                .iter()
                .any(|p| k.starts_with(p))
        });
        fig = fig.merge(env).merge(Serialized::defaults(flags));
        let cfg: Config = fig.extract().map_err(Box::new)?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if self.http.max_body_bytes < 1024 {
            return bad("http.max_body_bytes must be at least 1024");
        }
        if self.database.max_connections < 2 {
            return bad("database.max_connections must be at least 2");
        }
        if self.auth.max_failed_logins == 0 {
            return bad("auth.max_failed_logins must be at least 1");
        }
        if self.auth.max_failed_logins_global < self.auth.max_failed_logins {
            return bad("auth.max_failed_logins_global must be at least auth.max_failed_logins");
        }
        if self.auth.session_ttl < Duration::from_secs(60) {
            return bad("auth.session_ttl must be at least 1m");
        }
        if self.ingest.max_part_bytes < 4096 {
            return bad("ingest.max_part_bytes must be at least 4096");
        }
        if self.ingest.max_decoded_part_bytes < 4096 {
            return bad("ingest.max_decoded_part_bytes must be at least 4096");
        }
        if self.ingest.workers == 0 || self.ingest.workers > 64 {
            return bad("ingest.workers must be 1 to 64");
        }
        let r = &self.recalls;
        if r.storm_threshold == 0 || r.storm_threshold > 100_000_000 {
            return bad("recalls.storm_threshold must be 1 to 100000000");
        }
        if r.storm_window < Duration::from_secs(1) || r.storm_window > Duration::from_secs(86_400) {
            return bad("recalls.storm_window must be 1s to 1day");
        }
        if r.replaced_retention > Duration::from_secs(3650 * 86_400) {
            return bad("recalls.replaced_retention must be at most 3650days");
        }
        let l = &self.link;
        let supplied = [&l.tls_cert, &l.tls_key, &l.tls_ca].iter().filter(|p| p.is_some()).count();
        if supplied != 0 && supplied != 3 {
            return bad("link.tls_cert, link.tls_key and link.tls_ca go together");
        }
        if l.heartbeat_interval < Duration::from_millis(100) || l.lease <= l.heartbeat_interval * 2
        {
            return bad("link.lease must be more than twice link.heartbeat_interval (≥ 100ms)");
        }
        if l.max_jobs_per_host == 0 || l.max_jobs_per_host > 16 {
            return bad("link.max_jobs_per_host must be 1 to 16");
        }
        if let Some(u) = &l.public_url {
            if !u.starts_with("https://") {
                return bad("link.public_url must start with https://");
            }
        }
        if self.agents.offline_after <= self.agents.heartbeat_interval {
            return bad("agents.offline_after must be longer than agents.heartbeat_interval");
        }
        if let Some(p) = &self.bootstrap.admin_password {
            alto_model::validate::password(p)
                .map_err(|e| ConfigError::Invalid(format!("bootstrap.admin_password: {e}")))?;
        }
        alto_model::validate::username(&self.bootstrap.admin_username)
            .map_err(|e| ConfigError::Invalid(format!("bootstrap.admin_username: {e}")))?;
        if let Some(b) = &self.storage.directory_base {
            if !b.is_absolute() {
                return bad("storage.directory_base must be an absolute path");
            }
        }
        self.storage
            .egress_policy()
            .map_err(|e| ConfigError::Invalid(format!("storage.allowed_endpoints: {e}")))?;
        for a in &self.metrics.allow_from {
            crate::egress::Cidr::parse(a)
                .map_err(|e| ConfigError::Invalid(format!("metrics.allow_from: {e}")))?;
        }
        if self.metrics.token.as_deref().is_some_and(|t| t.len() < 16) {
            return bad("metrics.token must be at least 16 characters");
        }
        if let Some(u) = &self.database.url {
            if !(u.starts_with("postgres://") || u.starts_with("postgresql://")) {
                return bad("database.url must start with postgres:// or postgresql://");
            }
        }
        Ok(())
    }

    /// The URL people should open.
    pub fn public_url(&self, bound: SocketAddr) -> String {
        self.http.public_url.clone().unwrap_or_else(|| format!("http://{bound}"))
    }

    /// The URL agents dial for the link bound at `bound`.
    pub fn link_url(&self, bound: SocketAddr) -> String {
        if let Some(u) = &self.link.public_url {
            return u.trim_end_matches('/').to_owned();
        }
        if bound.ip().is_unspecified() {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "localhost".into());
            return format!("https://{host}:{}", bound.port());
        }
        format!("https://{bound}")
    }

    /// Where the development CA lives.
    pub fn tls_dir(&self) -> PathBuf {
        self.link.tls_dir.clone().unwrap_or_else(|| self.data_dir.join("tls"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("alto.toml");
        std::fs::write(
            &file,
            "[http]\nlisten = \"127.0.0.1:9000\"\nmax_body_bytes = 4096\n[auth]\nlockout = \"5m\"\n",
        )
        .unwrap();
        figment::Jail::expect_with(|jail| {
            jail.set_env("ALTO_HTTP__MAX_BODY_BYTES", "8192");
            jail.set_env("ALTO_SERVER", "http://not-a-server-key");
            jail.set_env("ALTO_DEMO_DATA", "/elsewhere");
            let flags = Overrides {
                http: Some(HttpOverrides { listen: Some("127.0.0.1:9100".parse().unwrap()) }),
                ..Default::default()
            };
            let cfg = Config::load(Some(&file), &flags).unwrap();
            assert_eq!(cfg.http.listen.port(), 9100, "flag beats file");
            assert_eq!(cfg.http.max_body_bytes, 8192, "env beats file");
            assert_eq!(cfg.auth.lockout, Duration::from_secs(300), "file beats default");
            assert_eq!(cfg.auth.max_failed_logins, 5, "default");
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("alto.toml");
        std::fs::write(&file, "[http]\nlisten_on = \"x\"\n").unwrap();
        let err = Config::load(Some(&file), &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("listen_on"), "{err}");
        std::fs::write(&file, "[database]\nurl = \"mysql://x\"\n").unwrap();
        let err = Config::load(Some(&file), &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("postgres://"), "{err}");
        let err =
            Config::load(Some(&dir.path().join("nope.toml")), &Overrides::default()).unwrap_err();
        assert!(matches!(err, ConfigError::MissingFile(_)));
    }
}
