//! Enrollment and the long-running agent: heartbeats, scheduled full scans into the spool,
//! the uploader that drains the spool whenever the server is reachable, and the tier worker
//! ([`crate::tier::worker`]) as a task beside them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use alto_api_types::{EnrollRequest, HeartbeatRequest, Volume};
use alto_client::Client;
use alto_model::Clock as _;
use tokio_util::sync::CancellationToken;

use crate::api::ServerApi;
use crate::config::AgentConfig;
use crate::spool::{Spool, SpoolError};
use crate::state::Identity;
use crate::tier::{TierExecutor, TierOptions};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    Client(#[from] alto_client::ClientError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Spool(#[from] SpoolError),
    #[error("scan: {0}")]
    Scan(#[from] crate::scanner::ScanError),
    #[error("no server URL: pass --server or set server_url")]
    NoServer,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

fn os_name() -> Option<String> {
    let text = std::fs::read_to_string("/etc/os-release").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').chars().take(100).collect())
}

/// Trades a one-time enrollment token for the host credential and stores it (0600).
pub async fn enroll(server: &str, token: &str, state_dir: &Path) -> Result<Identity, AgentError> {
    let client = Client::new(server)?;
    let issued = client
        .enroll(&EnrollRequest {
            token: token.trim().to_owned(),
            hostname: hostname(),
            agent_version: VERSION.into(),
            os: os_name(),
        })
        .await?;
    let id = Identity {
        server_url: server.trim_end_matches('/').to_owned(),
        host_id: issued.host_id,
        tenant_id: issued.tenant_id,
        credential_id: issued.credential_id,
        credential: issued.credential,
        link: issued.link,
        issued_at: Some(alto_model::SystemClock.now()),
    };
    id.save(state_dir)?;
    Ok(id)
}

/// Free and total space of each root's file system.
pub fn volumes(roots: &[PathBuf]) -> Vec<Volume> {
    let mut out: Vec<Volume> = Vec::new();
    for r in roots {
        if let Ok(st) = rustix::fs::statvfs(r) {
            let total = st.f_blocks.saturating_mul(st.f_frsize);
            let free = st.f_bavail.saturating_mul(st.f_frsize).min(total);
            out.push(Volume {
                mount_point: r.display().to_string(),
                fs_type: None,
                total_bytes: total,
                free_bytes: free,
            });
        }
    }
    out
}

/// The configured paths the agent must write (roots, tier-2 base, state directory) that are
/// on a read-only mount: under `alto-agent.service` (`ProtectSystem=strict`) that means the
/// drop-in from `alto-agent unit-paths` is missing or out of date.
pub fn read_only_paths(cfg: &AgentConfig) -> Vec<PathBuf> {
    cfg.writable_paths()
        .into_iter()
        .filter(|p| {
            rustix::fs::statvfs(p)
                .is_ok_and(|st| st.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY))
        })
        .collect()
}

/// Scans the configured roots into the spool as one full scan. Blocking.
pub fn scan_into_spool(cfg: &AgentConfig, spool: &Spool) -> Result<uuid::Uuid, AgentError> {
    let tmp_dir = cfg.state_dir.join("scans");
    std::fs::create_dir_all(&tmp_dir)?;
    let tmp = tmp_dir.join(format!("{}.parquet", uuid::Uuid::now_v7()));
    let opts = crate::scanner::ScanOptions {
        roots: cfg.roots.clone(),
        excludes: cfg.excludes.clone(),
        cross_filesystems: cfg.cross_filesystems,
        threads: 0,
    };
    let summary = crate::scanner::Scanner::new(&opts)?
        .run_to_file(&tmp, &crate::scanner::Progress::default())?;
    tracing::info!(
        files = summary.files,
        bytes = summary.bytes,
        errors = summary.error_count(),
        "scan finished"
    );
    let scan = spool.add_batch(&tmp, "full", cfg.part_rows);
    let _ = std::fs::remove_file(&tmp);
    Ok(scan?)
}

/// Uploads every spooled scan; stops at the first one the server cannot take now.
pub async fn drain(client: &Client, spool: &Spool, bandwidth: u64) -> Result<usize, AgentError> {
    let mut n = 0;
    for (scan, m) in spool.pending()? {
        match spool.upload(client, scan, &m, bandwidth).await {
            Ok(()) => {
                tracing::info!(%scan, rows = m.rows, parts = m.parts, "scan uploaded");
                n += 1;
            }
            Err(SpoolError::Rejected { scan, source }) => {
                tracing::error!(%scan, error = %source, "the server refused a scan; kept in spool/rejected");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(n)
}

/// The client for the configured (or enrolled) server with the host credential.
pub fn host_client(cfg: &AgentConfig, id: &Identity) -> Result<Client, AgentError> {
    let server = cfg.server_url.clone().unwrap_or_else(|| id.server_url.clone());
    Ok(Client::new(&server)?.with_token(id.credential.clone()))
}

/// The tiering executor of this host and the API it reports to.
pub fn tier_executor(
    cfg: &AgentConfig,
    id: &Identity,
    shutdown: CancellationToken,
) -> Result<(TierExecutor, ServerApi), AgentError> {
    let api = ServerApi::new(host_client(cfg, id)?);
    let mut opts = TierOptions::new(cfg.tier2.directory_base.clone(), &cfg.state_dir);
    opts.parallel = cfg.tier_parallel_files;
    opts.range_fill_min_size = cfg.on_access.range_fill_min_size;
    opts.range_fill_chunk_size = cfg.on_access.range_fill_chunk_size;
    let exec = TierExecutor::new(
        std::sync::Arc::new(api.clone()),
        opts,
        id.host_id,
        id.tenant_id,
        shutdown,
    );
    Ok((exec, api))
}

/// What this agent can do, as told to the server at Hello.
pub const CAPABILITIES: &[&str] =
    &["tier", "recall", "target:directory", "target:s3", "target:azure", "target:smb"];

/// Where the agent link is: configuration overrides, else what the server announced at
/// enrollment, else asked now (`GET /agent/link`, then remembered). `None`: no link (disabled,
/// or the server has none or cannot say): the agent polls REST.
pub async fn link_params(
    cfg: &AgentConfig,
    id: &mut Identity,
    client: &Client,
    credential: &crate::state::SharedCredential,
) -> Option<crate::link::LinkParams> {
    if !cfg.link.enabled {
        return None;
    }
    if id.link.is_none() {
        match client
            .request(reqwest::Method::GET, "/api/v1/agent/link")
            .send()
            .await
            .and_then(|r| r.error_for_status())
        {
            Ok(r) => match r.json::<alto_api_types::AgentLinkInfo>().await {
                Ok(info) => {
                    id.link = Some(info);
                    if let Err(e) = id.save(&cfg.state_dir) {
                        tracing::warn!(error = %e, "could not remember the agent link");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "unreadable agent link info"),
            },
            Err(e) => tracing::warn!(error = %e, "the server announces no agent link"),
        }
    }
    let url = cfg.link.url.clone().or_else(|| id.link.as_ref().map(|l| l.url.clone()))?;
    let ca_pem = match &cfg.link.ca_file {
        Some(f) => match std::fs::read_to_string(f) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(file = %f.display(), error = %e, "link.ca_file unreadable");
                return None;
            }
        },
        None => id.link.as_ref()?.ca_pem.clone(),
    };
    Some(crate::link::LinkParams {
        url,
        ca_pem,
        credential: credential.clone(),
        agent_version: VERSION.into(),
        capabilities: CAPABILITIES.iter().map(|s| (*s).to_owned()).collect(),
        max_jobs: cfg.link.max_jobs,
    })
}

/// Job ids this agent has journals of (they are resumed, never offered again).
fn journaled_jobs(state_dir: &Path) -> Vec<uuid::Uuid> {
    crate::journal::Journal::list(&crate::journal::journal_dir(state_dir))
        .unwrap_or_default()
        .iter()
        .filter_map(|p| p.file_stem()?.to_str()?.parse().ok())
        .collect()
}

/// Runs until cancelled: heartbeats, a full scan every `scan_interval` (the first at once),
/// spool uploads with backoff while the server is unreachable, scheduled credential rotation
/// ([`crate::rotation`]), and the tier worker: jobs pushed over the agent link, or (no link)
/// claimed from the REST API every `tier_poll_interval` while there are none.
///
/// Heartbeats run in a task of their own: a scan (hours on a large tree) or a slow upload
/// never delays them, so the server does not take a busy host for an offline one.
pub async fn run(cfg: AgentConfig, cancel: CancellationToken) -> Result<(), AgentError> {
    run_with(cfg, cancel, None).await
}

/// [`run`], with on-access recall as [`crate::onaccess::prepare`] set it up (which must run
/// before the runtime starts any thread). `None`: no on-access recall.
pub async fn run_with(
    cfg: AgentConfig,
    cancel: CancellationToken,
    on_access: Option<crate::onaccess::Prepared>,
) -> Result<(), AgentError> {
    let server = match &cfg.server_url {
        Some(s) => s.clone(),
        None => Identity::load(&cfg.state_dir)?.server_url,
    };
    let base = Client::new(&server)?;
    for p in read_only_paths(&cfg) {
        tracing::error!(path = %p.display(),
            "read-only to the agent: tiering and recall cannot write here (under systemd, \
             install the drop-in `alto-agent unit-paths` prints; see docs/deployment.md)");
    }
    // A rotation a crash interrupted is finished (or forgotten) before anything else.
    match crate::rotation::resolve_pending(&cfg.state_dir, &base).await {
        Ok(crate::rotation::Pending::Undecided) => {
            tracing::warn!(
                "a credential rotation is pending and the server is unreachable; retrying later"
            )
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "pending credential rotation not resolved"),
    }
    let mut id = Identity::load(&cfg.state_dir)?;
    let credential = crate::state::SharedCredential::new(id.credential.clone());
    let host = crate::state::HostClient::shared(base.clone(), credential.clone());
    let spool = Spool::open(&cfg.state_dir)?;
    // The executor, reporting through whichever transport runs the jobs.
    let (host_id, tenant_id) = (id.host_id, id.tenant_id);
    let executor = |reporter: std::sync::Arc<dyn crate::job::Reporter>| {
        let mut opts = TierOptions::new(cfg.tier2.directory_base.clone(), &cfg.state_dir);
        opts.parallel = cfg.tier_parallel_files;
        opts.range_fill_min_size = cfg.on_access.range_fill_min_size;
        opts.range_fill_chunk_size = cfg.on_access.range_fill_chunk_size;
        TierExecutor::new(reporter, opts, host_id, tenant_id, cancel.clone())
    };
    let tier = match link_params(&cfg, &mut id, &host.get(), &credential).await {
        Some(params) => {
            tracing::info!(url = %params.url, "tiering jobs come over the agent link");
            let (tx, rx) = tokio::sync::mpsc::channel(64);
            let link = crate::link::Link::start(
                params,
                journaled_jobs(&cfg.state_dir),
                tx,
                cancel.clone(),
            );
            let exec = executor(std::sync::Arc::new(link.clone()));
            tokio::spawn(crate::link::worker(exec, link, rx, cancel.clone()))
        }
        None => {
            tracing::info!("no agent link: polling the REST API for tiering jobs");
            let api = ServerApi::shared(host.clone());
            let exec = executor(std::sync::Arc::new(api.clone()));
            tokio::spawn(crate::tier::worker(exec, api, cfg.tier_poll_interval, cancel.clone()))
        }
    };
    // On-access recall: the event handler (plain threads) and the outbox of its reports.
    let on_access_status = on_access.as_ref().map(|p| p.status.clone());
    let mut service = None;
    let mut agent_lock = None;
    if let Some(mut p) = on_access {
        // Held until the handler stopped: while it is, the holder stays out.
        agent_lock = p.agent_lock.take();
        if let (Some(group), "active" | "partial") = (p.group.clone(), p.status.state.as_str()) {
            let settings = crate::onaccess::handler::Settings {
                cfg: cfg.on_access.clone(),
                state_dir: cfg.state_dir.clone(),
                base: cfg.tier2.directory_base.clone(),
                customer: alto_model::CustomerId(tenant_id),
            };
            match crate::onaccess::handler::Service::start(group, &p.mount_fds, settings) {
                Ok(s) => service = Some(s),
                Err(e) => tracing::error!(error = %e, "on-access recall did not start"),
            }
        }
    }
    let outbox = tokio::spawn(crate::onaccess::outbox::run(
        crate::onaccess::outbox::Outbox::new(&cfg.state_dir),
        ServerApi::shared(host.clone()),
        cancel.clone(),
    ));
    let heartbeats =
        tokio::spawn(heartbeat_loop(cfg.clone(), host.clone(), on_access_status, cancel.clone()));
    let rotation = tokio::spawn(crate::rotation::run(
        cfg.state_dir.clone(),
        cfg.credential_rotation_interval,
        base,
        credential,
        cancel.clone(),
    ));
    tracing::info!(host = %id.host_id, %server, "agent running");
    let result = scan_loop(&cfg, &host, &spool, &cancel).await;
    cancel.cancel();
    let _ = tier.await;
    let _ = heartbeats.await;
    let _ = rotation.await;
    if let Some(s) = service {
        let holder = cfg.on_access.holder;
        let _ = tokio::task::spawn_blocking(move || s.stop(holder)).await;
    }
    drop(agent_lock);
    let _ = outbox.await;
    result
}

/// Sends a heartbeat every interval (the server's answer sets it) until cancelled.
async fn heartbeat_loop(
    cfg: AgentConfig,
    host: crate::state::HostClient,
    on_access: Option<alto_api_types::OnAccessStatus>,
    cancel: CancellationToken,
) {
    let mut every = cfg.heartbeat_interval;
    let mut last_volumes: Vec<Volume> = Vec::new();
    loop {
        // statvfs of a hung mount blocks: measured on a blocking thread, bounded.
        let roots = cfg.roots.clone();
        if let Ok(Ok(v)) = tokio::time::timeout(
            every.max(Duration::from_secs(1)),
            tokio::task::spawn_blocking(move || volumes(&roots)),
        )
        .await
        {
            last_volumes = v;
        }
        let req = HeartbeatRequest {
            agent_version: VERSION.into(),
            os: os_name(),
            hostname: Some(hostname()),
            volumes: last_volumes.clone(),
            on_access: on_access.clone(),
        };
        match host.get().heartbeat(&req).await {
            Ok(r) => every = Duration::from_secs(r.heartbeat_interval_seconds.clamp(1, 3600)),
            Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// Scheduled scans and spool uploads until cancelled.
async fn scan_loop(
    cfg: &AgentConfig,
    host: &crate::state::HostClient,
    spool: &Spool,
    cancel: &CancellationToken,
) -> Result<(), AgentError> {
    let mut next_scan = tokio::time::Instant::now();
    let mut next_drain = tokio::time::Instant::now();
    // While the server is unreachable: 1 s, doubling, at most 5 min between attempts.
    let mut backoff = crate::retry::Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
    loop {
        let now = tokio::time::Instant::now();
        if now >= next_scan && !cfg.roots.is_empty() {
            if crate::fault::active("scan-stall") {
                cancel.cancelled().await;
                return Ok(());
            }
            let c = cfg.clone();
            let dir = cfg.state_dir.clone();
            let scan = tokio::task::spawn_blocking(move || {
                let spool = Spool::open(&dir)?;
                scan_into_spool(&c, &spool)
            });
            let res = tokio::select! {
                r = scan => r.map_err(|e| AgentError::Io(std::io::Error::other(e)))?,
                // The walk cannot be interrupted; its result is abandoned (nothing was spooled).
                _ = cancel.cancelled() => return Ok(()),
            };
            if let Err(e) = res {
                tracing::error!(error = %e, "scheduled scan failed");
            }
            next_scan = now + cfg.scan_interval;
            next_drain = now;
        }
        if tokio::time::Instant::now() >= next_drain {
            match drain(&host.get(), spool, cfg.bandwidth_limit).await {
                Ok(_) => {
                    backoff.reset();
                    next_drain = tokio::time::Instant::now() + Duration::from_secs(60);
                }
                Err(e) => {
                    let retry_in = backoff.failed();
                    tracing::warn!(error = %e, ?retry_in, "spool upload deferred");
                    next_drain = tokio::time::Instant::now() + retry_in;
                }
            }
        }
        let wake = next_scan.min(next_drain);
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
}
