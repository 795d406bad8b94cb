//! Building and running the server: database (embedded or external), migrations, the first
//! administrator, background services, and the HTTP listener; then graceful shutdown in
//! reverse order.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use alto_db::{Db, DbConfig};
use alto_model::Clock;
use alto_pg_embed::{Cluster, ClusterOptions, PgInstall};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::bootstrap::{self, InitialAdmin};
use crate::config::Config;
use crate::state::AppState;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("embedded PostgreSQL: {0}")]
    Embedded(#[from] alto_pg_embed::EmbedError),
    #[error(transparent)]
    Db(#[from] alto_db::DbError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("data directory {path}: {source}")]
    DataDir { path: std::path::PathBuf, source: std::io::Error },
    #[error("agent link TLS: {0}")]
    Tls(#[from] alto_link::tls::TlsError),
}

/// A built server, listening but not yet serving until [`Application::run`].
pub struct Application {
    state: AppState,
    workers: crate::services::Workers,
    listener: TcpListener,
    addr: SocketAddr,
    cancel: CancellationToken,
    embedded: Option<Cluster>,
    initial_admin: Option<InitialAdmin>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

async fn start_embedded(cfg: &Config) -> Result<(Cluster, String), StartupError> {
    let data_dir = cfg.data_dir.clone();
    let bin_dir = cfg.database.pg_bin_dir.clone();
    let port = cfg.database.embedded_port;
    let cluster = tokio::task::spawn_blocking(move || {
        let install = PgInstall::discover(bin_dir.as_deref())?;
        let mut opts = ClusterOptions::new(data_dir.join("postgres"));
        opts.port = port;
        Cluster::start(&install, &opts)
    })
    .await
    .map_err(|e| StartupError::DataDir {
        path: cfg.data_dir.clone(),
        source: std::io::Error::other(e),
    })??;
    // One database for Alto inside the private cluster.
    alto_db::ensure_database(&cluster.superuser_url("postgres"), "alto").await?;
    let url = cluster.superuser_url("alto");
    Ok((cluster, url))
}

/// The link's certificates: supplied, or the development CA under the data directory.
fn link_tls(cfg: &Config) -> Result<alto_link::tls::ServerTls, StartupError> {
    let l = &cfg.link;
    if let (Some(cert), Some(key), Some(ca)) = (&l.tls_cert, &l.tls_key, &l.tls_ca) {
        return Ok(alto_link::tls::supplied_material(cert, key, ca)?);
    }
    let mut names = l.cert_names.clone();
    if let Some(host) = l
        .public_url
        .as_deref()
        .and_then(|u| u.strip_prefix("https://"))
        .and_then(|r| r.split(['/', ':']).next())
    {
        names.insert(0, host.to_owned());
    }
    if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        names.push(h.trim().to_owned());
    }
    // Certificates are dated by the real clock, not the application's: agents check their
    // validity against their own wall clocks, whatever time a test's `FakeClock` shows.
    let now = alto_model::SystemClock.now();
    Ok(alto_link::tls::dev_material(&cfg.tls_dir(), &names, now)?)
}

fn prepare_data_dir(path: &Path) -> Result<(), StartupError> {
    use std::os::unix::fs::PermissionsExt as _;
    let err = |source| StartupError::DataDir { path: path.to_owned(), source };
    std::fs::create_dir_all(path).map_err(err)?;
    // Traversable (not readable) by others, so the `postgres` OS user can reach its cluster
    // directory below when we run as root.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o711)).map_err(err)?;
    Ok(())
}

impl Application {
    /// Starts everything up to a bound listener.
    pub async fn build(config: Config, clock: Arc<dyn Clock>) -> Result<Application, StartupError> {
        config.validate()?;
        crate::telemetry::install_metrics();
        prepare_data_dir(&config.data_dir)?;
        let (embedded, url) = match &config.database.url {
            Some(url) => {
                tracing::info!("using the external PostgreSQL server from database.url");
                (None, url.clone())
            }
            None => {
                tracing::info!(data_dir = %config.data_dir.display(), "starting embedded PostgreSQL");
                let (c, url) = start_embedded(&config).await?;
                (Some(c), url)
            }
        };
        let db_cfg = DbConfig {
            url,
            app_password: config.database.app_password.clone(),
            max_connections: config.database.max_connections,
            acquire_timeout: config.database.acquire_timeout,
        };
        tracing::info!("applying database migrations");
        let db = Db::connect_and_migrate(&db_cfg).await?;
        let initial_admin =
            bootstrap::ensure_admin(&db, &config.bootstrap, &config.data_dir, clock.as_ref())
                .await?;
        let listener = TcpListener::bind(config.http.listen)
            .await
            .map_err(|source| StartupError::Listen { addr: config.http.listen, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| StartupError::Listen { addr: config.http.listen, source })?;
        let link_listener = if config.link.enabled {
            let l = TcpListener::bind(config.link.listen)
                .await
                .map_err(|source| StartupError::Listen { addr: config.link.listen, source })?;
            let a = l
                .local_addr()
                .map_err(|source| StartupError::Listen { addr: config.link.listen, source })?;
            let tls = link_tls(&config)?;
            let info = alto_api_types::AgentLinkInfo {
                url: config.link_url(a),
                ca_pem: tls.ca_pem.clone(),
            };
            tracing::info!(addr = %a, url = %info.url, "agent link listening (gRPC over TLS)");
            Some((l, tls, Arc::new(info)))
        } else {
            None
        };
        let link_info = link_listener.as_ref().map(|(_, _, i)| i.clone());
        let (events, _) = broadcast::channel(1024);
        let dummy_hash =
            Arc::new(crate::secrets::hash_password_async(crate::secrets::new_token("dummy")).await);
        let jobs_wakeup = Arc::new(tokio::sync::Notify::new());
        let state = AppState {
            db,
            config: Arc::new(config),
            clock,
            events,
            dummy_hash,
            jobs_wakeup,
            link: Arc::new(crate::link::Registry::default()),
            link_info,
        };
        let cancel = CancellationToken::new();
        let mut tasks = vec![tokio::spawn(crate::events::run_listener(
            state.db.clone(),
            state.events.clone(),
            state.jobs_wakeup.clone(),
            cancel.child_token(),
        ))];
        let workers = crate::services::Workers::new(&state);
        tasks.extend(workers.spawn(&state, &addr.to_string(), &cancel));
        if let Some((l, tls, _)) = link_listener {
            tasks.push(tokio::spawn(crate::link::serve(
                state.clone(),
                l,
                tls,
                cancel.child_token(),
            )));
        }
        tracing::info!(%addr, "listening");
        Ok(Application { state, workers, listener, addr, cancel, embedded, initial_admin, tasks })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// This replica's background workers (tests drive them with [`crate::worker::Worker::step`]).
    pub fn workers(&self) -> &crate::services::Workers {
        &self.workers
    }

    pub fn public_url(&self) -> String {
        self.state.config.public_url(self.addr)
    }

    /// The administrator created by this start, if any (shown once).
    pub fn initial_admin(&self) -> Option<&InitialAdmin> {
        self.initial_admin.as_ref()
    }

    /// Serves until `shutdown` resolves, then drains requests, stops services, closes the
    /// pool and stops the embedded database, in that order.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let Application { state, listener, cancel, embedded, tasks, .. } = self;
        let app =
            crate::http::router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
        let stop = cancel.clone();
        let res = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                tokio::select! {
                    _ = shutdown => {},
                    _ = stop.cancelled() => {},
                }
                tracing::info!("shutting down: draining requests");
            })
            .await;
        cancel.cancel();
        for t in tasks {
            let _ = t.await;
        }
        state.db.close().await;
        if let Some(c) = embedded {
            tracing::info!("stopping embedded PostgreSQL");
            let _ = tokio::task::spawn_blocking(move || c.stop()).await;
        }
        tracing::info!("stopped");
        res
    }
}
