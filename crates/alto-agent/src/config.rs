//! Agent configuration: defaults → TOML file → `ALTO_AGENT_*` environment → flags.
//! Environment variables use `__` between section and key is not needed: keys are flat,
//! e.g. `ALTO_AGENT_SERVER_URL`, `ALTO_AGENT_STATE_DIR`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format as _, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// The management server, e.g. `https://alto.example:8080`. Taken from the enrollment
    /// when unset.
    pub server_url: Option<String>,
    /// Credential, spool and state: `<state_dir>/credential.json` (0600), `<state_dir>/spool`.
    pub state_dir: PathBuf,
    /// Directories to scan.
    pub roots: Vec<PathBuf>,
    /// Glob patterns of paths not to scan.
    pub excludes: Vec<String>,
    /// Descend into other file systems below a root.
    pub cross_filesystems: bool,
    /// Time between full scans.
    #[serde(with = "humantime_serde")]
    pub scan_interval: Duration,
    /// Heartbeat interval (the server's answer overrides it).
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// Upload bandwidth limit in bytes per second (0: unlimited).
    pub bandwidth_limit: u64,
    /// Rows per uploaded part.
    pub part_rows: usize,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            server_url: None,
            state_dir: PathBuf::from("/var/lib/alto-agent"),
            roots: Vec::new(),
            excludes: Vec::new(),
            cross_filesystems: false,
            scan_interval: Duration::from_secs(24 * 3600),
            heartbeat_interval: Duration::from_secs(30),
            bandwidth_limit: 0,
            part_rows: 100_000,
        }
    }
}

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Parse(#[from] Box<figment::Error>),
    #[error("configuration file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("configuration: {0}")]
    Invalid(String),
}

impl AgentConfig {
    /// Loads the layers; `flags` is a partial configuration that wins over the rest.
    pub fn load(
        file: Option<&Path>,
        flags: &serde_json::Value,
    ) -> Result<AgentConfig, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(AgentConfig::default()));
        if let Some(f) = file {
            if !f.is_file() {
                return Err(ConfigError::MissingFile(f.to_owned()));
            }
            fig = fig.merge(Toml::file(f));
        }
        fig = fig.merge(Env::prefixed("ALTO_AGENT_")).merge(Serialized::defaults(flags));
        let cfg: AgentConfig = fig.extract().map_err(Box::new)?;
        if cfg.part_rows == 0 || cfg.part_rows > 10_000_000 {
            return Err(ConfigError::Invalid("part_rows must be 1 to 10000000".into()));
        }
        if cfg.scan_interval < Duration::from_secs(60) {
            return Err(ConfigError::Invalid("scan_interval must be at least 1m".into()));
        }
        Ok(cfg)
    }
}
