//! Agent configuration: defaults → TOML file → `ALTO_AGENT_*` environment → flags.
//! Environment variables are the keys in upper case with the prefix, nested keys joined by
//! `__`, e.g. `ALTO_AGENT_SERVER_URL`, `ALTO_AGENT_STATE_DIR`,
//! `ALTO_AGENT_TIER2__DIRECTORY_BASE`.

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
    /// Globs of paths not to scan, in the rules' dialect (docs/rules.md, "Path globs").
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
    /// Tier-2 storage as this agent reaches it.
    pub tier2: Tier2Config,
    /// How often `run` asks the server for tiering jobs while it has none.
    #[serde(with = "humantime_serde")]
    pub tier_poll_interval: Duration,
    /// Files of a tiering job copied and converted at the same time.
    pub tier_parallel_files: usize,
    /// The agent link (gRPC over TLS) the server pushes jobs on.
    pub link: LinkSettings,
    /// How often `run` rotates the host credential (counted from when the current one was
    /// issued); `0s` never. The old credential keeps working for the server's
    /// `agents.credential_overlap`.
    #[serde(with = "humantime_serde")]
    pub credential_rotation_interval: Duration,
    /// Transparent recall: stubs come back when a program reads them (Linux 6.14+, ext4,
    /// xfs, btrfs). See docs/recall.md.
    pub on_access: OnAccessConfig,
}

/// How the agent reaches the server's agent link.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LinkSettings {
    /// Take jobs from the link (false: poll the REST API every `tier_poll_interval`).
    pub enabled: bool,
    /// Override of the URL announced at enrollment (`https://host:port`).
    pub url: Option<String>,
    /// Override of the CA announced at enrollment (a PEM file).
    pub ca_file: Option<PathBuf>,
    /// Jobs run at once (the server may allow fewer).
    pub max_jobs: u32,
}

impl Default for LinkSettings {
    fn default() -> Self {
        Self { enabled: true, url: None, ca_file: None, max_jobs: 1 }
    }
}

/// `[on_access]`: transparent recall of stubs when programs read, write or map them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OnAccessConfig {
    /// Mark the managed file systems and recall on access (`false`: explicit recall only).
    pub enabled: bool,
    /// Longest a reader waits for its stub before it gets `error` (tier-2 down, slow).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// The error a reader gets when the content cannot be brought back: `EIO`, `EAGAIN`,
    /// `EBUSY`, `ENOSPC`, `EDQUOT`, `EPERM` or `ETXTBSY` (the kernel accepts no others).
    pub error: String,
    /// Stubs recalled at once.
    pub fill_threads: usize,
    /// Keep the kernel's event group in a separate holder process, so readers that wait
    /// while the agent restarts, crashes or is upgraded stay blocked (and are answered by the
    /// next agent) instead of reading zeros.
    pub holder: bool,
    /// How long the holder waits for an agent (restart, upgrade) before it answers accesses
    /// itself: ordinary files go through, stubs get `EAGAIN` (never zeros) until an agent
    /// runs again. Until then accesses to files not yet seen wait.
    #[serde(with = "humantime_serde")]
    pub unattended_after: Duration,
    /// Programs whose accesses never recall (backup, antivirus, indexers): the first rule
    /// whose `executable` glob matches the program's path decides.
    pub deny: Vec<DenyRule>,
    /// Stubs one user may recall on access per `user_rate_window` (0: no limit); beyond it
    /// the reader gets `EAGAIN`.
    pub user_rate_limit: u32,
    #[serde(with = "humantime_serde")]
    pub user_rate_window: Duration,
    /// Files of at least this many bytes, tiered uncompressed, are recalled range-first: the
    /// chunks a reader asks for come first (verified one by one), the rest follows in the
    /// background. Needs a chunk manifest written when the file is tiered, so it applies to
    /// files tiered from then on. 0: never.
    pub range_fill_min_size: u64,
    /// The chunk size of new chunk manifests (a power of two, 64 KiB to 1 GiB; larger for
    /// files of more than 16,384 chunks). Recorded in each manifest and stub.
    pub range_fill_chunk_size: u64,
    /// Also fill range-first for accesses at offset 0 (`false`: they wait for every chunk).
    /// Programs that read a header first (VM images, databases) then get their first byte
    /// sooner, but a copier that skips holes (`SEEK_DATA`: `cp`, `tar --sparse`) running
    /// during a partial fill copies the chunks not yet in place as zeros.
    pub range_fill_offset_zero: bool,
}

/// Default of `on_access.range_fill_min_size`: 64 MiB.
pub const DEFAULT_RANGE_FILL_MIN_SIZE: u64 = 64 << 20;
/// Default of `on_access.range_fill_chunk_size`: 1 MiB.
pub const DEFAULT_RANGE_FILL_CHUNK_SIZE: u64 = 1 << 20;

/// One `[[on_access.deny]]` rule.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DenyRule {
    /// A glob over the executable's absolute path (`/usr/bin/clamscan`, `/opt/backup/**`).
    pub executable: String,
    /// The error the program gets (default `EPERM`).
    #[serde(default = "default_deny_errno")]
    pub errno: String,
}

fn default_deny_errno() -> String {
    "EPERM".into()
}

impl Default for OnAccessConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            timeout: Duration::from_secs(60),
            error: "EIO".into(),
            fill_threads: 4,
            holder: true,
            unattended_after: Duration::from_secs(30),
            deny: Vec::new(),
            user_rate_limit: 0,
            user_rate_window: Duration::from_secs(3600),
            range_fill_min_size: DEFAULT_RANGE_FILL_MIN_SIZE,
            range_fill_chunk_size: DEFAULT_RANGE_FILL_CHUNK_SIZE,
            range_fill_offset_zero: false,
        }
    }
}

/// The errno named `name` if a denied access may fail with it.
pub fn deny_errno(name: &str) -> Option<alto_hsm::DenyErrno> {
    use alto_hsm::DenyErrno as D;
    Some(match name.to_ascii_uppercase().as_str() {
        "EPERM" => D::Perm,
        "EIO" => D::Io,
        "EAGAIN" => D::Again,
        "EBUSY" => D::Busy,
        "ETXTBSY" => D::TxtBsy,
        "ENOSPC" => D::NoSpc,
        "EDQUOT" => D::DQuot,
        _ => return None,
    })
}

/// Where the agent finds tier-2 storage targets.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Tier2Config {
    /// The base directory of `directory` targets (a local directory or a mount point; never
    /// created by the agent). Each customer's objects live in
    /// `<directory_base>/customer-<customer id>-tiered/`.
    pub directory_base: PathBuf,
}

impl Default for Tier2Config {
    fn default() -> Self {
        Self { directory_base: PathBuf::from("/var/lib/alto/tier2") }
    }
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
            tier2: Tier2Config::default(),
            tier_poll_interval: Duration::from_secs(60),
            tier_parallel_files: 4,
            link: LinkSettings::default(),
            credential_rotation_interval: Duration::from_secs(30 * 24 * 3600),
            on_access: OnAccessConfig::default(),
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
        // Only variables that name a key (ALTO_AGENT_ENROLL_TOKEN belongs to `enroll`).
        const KEYS: [&str; 28] = [
            "on_access__range_fill_offset_zero",
            "on_access__range_fill_min_size",
            "on_access__range_fill_chunk_size",
            "on_access__unattended_after",
            "on_access__enabled",
            "on_access__timeout",
            "on_access__error",
            "on_access__fill_threads",
            "on_access__holder",
            "on_access__user_rate_limit",
            "on_access__user_rate_window",
            "credential_rotation_interval",
            "link__enabled",
            "link__url",
            "link__ca_file",
            "link__max_jobs",
            "server_url",
            "state_dir",
            "roots",
            "excludes",
            "cross_filesystems",
            "scan_interval",
            "heartbeat_interval",
            "bandwidth_limit",
            "part_rows",
            "tier2__directory_base",
            "tier_poll_interval",
            "tier_parallel_files",
        ];
        let env = Env::prefixed("ALTO_AGENT_")
            .filter(|key| KEYS.contains(&key.as_str().to_ascii_lowercase().as_str()))
            .split("__");
        fig = fig.merge(env).merge(Serialized::defaults(flags));
        let cfg: AgentConfig = fig.extract().map_err(Box::new)?;
        if cfg.part_rows == 0 || cfg.part_rows > 10_000_000 {
            return Err(ConfigError::Invalid("part_rows must be 1 to 10000000".into()));
        }
        if cfg.tier_parallel_files == 0 || cfg.tier_parallel_files > 64 {
            return Err(ConfigError::Invalid("tier_parallel_files must be 1 to 64".into()));
        }
        if cfg.tier_poll_interval < Duration::from_secs(1) {
            return Err(ConfigError::Invalid("tier_poll_interval must be at least 1s".into()));
        }
        if cfg.link.max_jobs == 0 || cfg.link.max_jobs > 16 {
            return Err(ConfigError::Invalid("link.max_jobs must be 1 to 16".into()));
        }
        if cfg.link.url.as_deref().is_some_and(|u| !u.starts_with("https://")) {
            return Err(ConfigError::Invalid("link.url must start with https://".into()));
        }
        if !cfg.credential_rotation_interval.is_zero()
            && cfg.credential_rotation_interval < Duration::from_secs(1)
        {
            return Err(ConfigError::Invalid(
                "credential_rotation_interval must be 0s (never) or at least 1s".into(),
            ));
        }
        if cfg.scan_interval < Duration::from_secs(60) {
            return Err(ConfigError::Invalid("scan_interval must be at least 1m".into()));
        }
        let oa = &cfg.on_access;
        if deny_errno(&oa.error).is_none() {
            return Err(ConfigError::Invalid(format!(
                "on_access.error {:?} is not one of EIO, EAGAIN, EBUSY, ENOSPC, EDQUOT, EPERM, ETXTBSY",
                oa.error
            )));
        }
        if oa.fill_threads == 0 || oa.fill_threads > 64 {
            return Err(ConfigError::Invalid("on_access.fill_threads must be 1 to 64".into()));
        }
        let c = oa.range_fill_chunk_size;
        if !c.is_power_of_two() || !(64 << 10..=1 << 30).contains(&c) {
            return Err(ConfigError::Invalid(
                "on_access.range_fill_chunk_size must be a power of two from 64 KiB to 1 GiB"
                    .into(),
            ));
        }
        if oa.timeout < Duration::from_secs(1) || oa.timeout > Duration::from_secs(3600) {
            return Err(ConfigError::Invalid("on_access.timeout must be 1s to 1h".into()));
        }
        if oa.user_rate_window < Duration::from_secs(1) {
            return Err(ConfigError::Invalid(
                "on_access.user_rate_window must be at least 1s".into(),
            ));
        }
        for r in &oa.deny {
            if deny_errno(&r.errno).is_none() {
                return Err(ConfigError::Invalid(format!(
                    "on_access.deny: errno {:?} of {:?} is not one the kernel accepts",
                    r.errno, r.executable
                )));
            }
            alto_rules::pattern::Pattern::glob(&r.executable).map_err(|e| {
                ConfigError::Invalid(format!("on_access.deny: executable {:?}: {e}", r.executable))
            })?;
        }
        // Refused at start rather than at the first scheduled scan.
        crate::scanner::Excludes::new(&cfg.excludes)
            .map_err(|e| ConfigError::Invalid(format!("excludes: {e}")))?;
        Ok(cfg)
    }
}

/// A path as one word of a systemd list setting (`ReadWritePaths=`): quoted, with `\\` and
/// `"` escaped and `%` (a unit specifier) doubled.
fn systemd_word(prefix: &str, p: &Path) -> String {
    let s = p.display().to_string();
    let escaped = s.replace('\\', "\\\\").replace('"', "\\\"").replace('%', "%%");
    format!("\"{prefix}{escaped}\"")
}

impl AgentConfig {
    /// The paths `run` writes below: the state directory, every scanned root (stubbing and
    /// recall rewrite the scanned files in place) and the tier-2 base of `directory` targets.
    pub fn writable_paths(&self) -> Vec<PathBuf> {
        let mut v = vec![self.state_dir.clone()];
        v.extend(self.roots.iter().cloned());
        v.push(self.tier2.directory_base.clone());
        v
    }

    /// A systemd drop-in for `alto-agent.service` (which has `ProtectSystem=strict`) that
    /// makes [`AgentConfig::writable_paths`] writable. Roots and the tier-2 base are optional
    /// (`-`): a missing one does not stop the unit, the agent reports it.
    pub fn systemd_drop_in(&self, source: &str) -> String {
        let mut out = format!(
            "# alto-agent.service drop-in: the paths the agent writes, from {source}.\n\
             # Made by `alto-agent unit-paths`; make it again after changing roots, state_dir\n\
             # or tier2.directory_base, then `systemctl daemon-reload` and restart the agent.\n\
             [Service]\n"
        );
        out.push_str(&format!("ReadWritePaths={}\n", systemd_word("", &self.state_dir)));
        for r in &self.roots {
            out.push_str(&format!("ReadWritePaths={}\n", systemd_word("-", r)));
        }
        out.push_str(&format!(
            "ReadWritePaths={}\n",
            systemd_word("-", &self.tier2.directory_base)
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API
    fn layers_and_foreign_variables() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("agent.toml", "roots = [\"/srv\"]\npart_rows = 500\n")?;
            jail.set_env("ALTO_AGENT_PART_ROWS", "700");
            jail.set_env("ALTO_AGENT_ENROLL_TOKEN", "alto_e_belongs_to_enroll");
            let flags = serde_json::json!({ "state_dir": "/tmp/state" });
            let cfg = AgentConfig::load(Some(Path::new("agent.toml")), &flags).expect("loads");
            assert_eq!(cfg.roots, vec![PathBuf::from("/srv")], "file");
            assert_eq!(cfg.part_rows, 700, "env beats file");
            assert_eq!(cfg.state_dir, PathBuf::from("/tmp/state"), "flag");
            assert_eq!(cfg.tier2.directory_base, PathBuf::from("/var/lib/alto/tier2"), "default");
            jail.set_env("ALTO_AGENT_TIER2__DIRECTORY_BASE", "/mnt/tier2");
            let cfg = AgentConfig::load(Some(Path::new("agent.toml")), &flags).expect("loads");
            assert_eq!(cfg.tier2.directory_base, PathBuf::from("/mnt/tier2"), "nested env");
            jail.create_file("t.toml", "[tier2]\ndirectory_base = \"/srv/t2\"\n")?;
            std::env::remove_var("ALTO_AGENT_TIER2__DIRECTORY_BASE");
            let cfg = AgentConfig::load(Some(Path::new("t.toml")), &flags).expect("loads");
            assert_eq!(cfg.tier2.directory_base, PathBuf::from("/srv/t2"), "nested file");
            jail.set_env("ALTO_AGENT_PART_ROWS", "0");
            assert!(AgentConfig::load(None, &serde_json::json!({})).is_err());
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API
    fn on_access_settings_are_checked_at_load() {
        figment::Jail::expect_with(|jail| {
            let none = serde_json::json!({});
            let load = |jail: &mut figment::Jail, text: &str| {
                jail.create_file("oa.toml", text).unwrap();
                AgentConfig::load(Some(Path::new("oa.toml")), &none)
            };
            let ok = load(
                jail,
                "[on_access]\nerror = \"eagain\"\n[[on_access.deny]]\nexecutable = \"/opt/backup/**\"\n",
            )
            .unwrap();
            assert_eq!(deny_errno(&ok.on_access.error), Some(alto_hsm::DenyErrno::Again));
            assert_eq!(ok.on_access.deny[0].errno, "EPERM", "the default errno of a rule");
            for (text, names) in [
                ("[on_access]\nerror = \"ENOENT\"\n", "on_access.error"),
                ("[on_access]\nfill_threads = 0\n", "fill_threads"),
                ("[on_access]\ntimeout = \"0s\"\n", "timeout"),
                ("[[on_access.deny]]\nexecutable = \"/x\"\nerrno = \"ETIMEDOUT\"\n", "ETIMEDOUT"),
                ("[[on_access.deny]]\nexecutable = \"rel/*\"\n", "executable"),
            ] {
                let err = load(jail, text).unwrap_err();
                assert!(err.to_string().contains(names), "{text}: {err}");
            }
            jail.set_env("ALTO_AGENT_ON_ACCESS__USER_RATE_LIMIT", "5");
            assert_eq!(load(jail, "").unwrap().on_access.user_rate_limit, 5);
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API
    fn excludes_are_checked_at_load() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("ok.toml", "excludes = [\"**/.snapshot\", \"*.tmp\"]\n")?;
            let none = serde_json::json!({});
            assert!(AgentConfig::load(Some(Path::new("ok.toml")), &none).is_ok());
            // Relative with `/`: refused in the rules' dialect.
            jail.create_file("bad.toml", "excludes = [\"cache/*.tmp\"]\n")?;
            let err = AgentConfig::load(Some(Path::new("bad.toml")), &none).unwrap_err();
            assert!(err.to_string().contains("excludes"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn the_drop_in_names_every_written_path_quoted() {
        let cfg = AgentConfig {
            state_dir: PathBuf::from("/var/lib/alto-agent"),
            roots: vec![PathBuf::from("/srv/share one"), PathBuf::from("/data/50%\"q\"")],
            tier2: Tier2Config { directory_base: PathBuf::from("/mnt/tier2") },
            ..Default::default()
        };
        let d = cfg.systemd_drop_in("/etc/alto/agent.toml");
        let lines: Vec<&str> = d.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            [
                "[Service]",
                "ReadWritePaths=\"/var/lib/alto-agent\"",
                "ReadWritePaths=\"-/srv/share one\"",
                "ReadWritePaths=\"-/data/50%%\\\"q\\\"\"",
                "ReadWritePaths=\"-/mnt/tier2\"",
            ]
        );
    }
}
