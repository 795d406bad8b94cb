//! Test harness: real PostgreSQL and a real server over HTTP.
//!
//! * [`TestDb::new`] gives each test its own database, created from a migrated template, on
//!   a private throwaway cluster started once per test process (or on the server named by
//!   `ALTO_TEST_DATABASE_URL`, an owner/superuser URL).
//! * [`TestApp::spawn`] runs `alto-server` in-process on 127.0.0.1 with a [`FakeClock`] and
//!   returns a logged-in platform-admin client.
//!
//! * The arrange steps tests share: [`TestApp::scan_files`] (a full scan of a host, ingested),
//!   [`TestApp::tier_everything`] (the "all → default" rule), [`TestApp::plan_now`], through the
//!   typed client; [`api`] for the raw requests tests assert statuses and bodies of.
//! * [`systemd`] rebuilds a systemd unit's sandbox from its file, to run a binary under it.
//!
//! **Must never:** be a dependency of production code, or talk to anything but loopback.

pub mod systemd;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use alto_client::Client;
use alto_model::FakeClock;
use alto_pg_embed::{Cluster, ClusterOptions, Durability, PgInstall};
use alto_server::{Application, Config};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use tokio::sync::Mutex;
use uuid::Uuid;

/// Platform admin credentials of every [`TestApp`].
pub const ADMIN_USER: &str = "admin";
pub const ADMIN_PASSWORD: &str = "test-admin-password-1";

/// A per-process PostgreSQL: either a private cluster or an external server.
struct Server {
    /// Superuser/owner URL of the maintenance database (`postgres`).
    admin_url: String,
    _cluster: Option<Cluster>,
}

static SERVER: OnceLock<Server> = OnceLock::new();
static TEMPLATE: Mutex<Option<String>> = Mutex::const_new(None);

fn root() -> PathBuf {
    PathBuf::from("/tmp/alto-test-pg")
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes clusters of test processes that no longer exist.
fn sweep_stale() {
    let Ok(rd) = std::fs::read_dir(root()) else { return };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(pid) =
            name.strip_prefix("p").and_then(|s| s.split('-').next()).and_then(|p| p.parse().ok())
        {
            if !pid_alive(pid) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

fn start_server() -> Server {
    if let Ok(url) = std::env::var("ALTO_TEST_DATABASE_URL") {
        return Server { admin_url: url, _cluster: None };
    }
    let install = PgInstall::discover(None)
        .expect("PostgreSQL binaries are required for tests: run scripts/setup.sh (apt-get install postgresql)");
    let base = root();
    std::fs::create_dir_all(&base).expect("create /tmp/alto-test-pg");
    set_mode(&base, 0o755);
    sweep_stale();
    // initdb once per machine into a template directory, then copy it per process.
    let template =
        base.join(format!("template-{}", install.bin_dir.display().to_string().replace('/', "_")));
    if !template.join("PG_VERSION").is_file() {
        let tmp = base.join(format!("p{}-initdb", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        alto_pg_embed::init_if_needed(&install, &tmp).expect("initdb");
        if std::fs::rename(&tmp, &template).is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
    }
    let mine = base.join(format!("p{}-{}", std::process::id(), Uuid::new_v4().simple()));
    std::fs::create_dir_all(&mine).expect("create cluster dir");
    set_mode(&mine, 0o755);
    let data = mine.join("data");
    alto_pg_embed::copy_cluster(&template, &data).expect("copy template cluster");
    let mut opts = ClusterOptions::new(&data);
    opts.durability = Durability::Throwaway;
    let cluster = Cluster::start(&install, &opts).expect("start test cluster");
    Server { admin_url: cluster.superuser_url("postgres"), _cluster: Some(cluster) }
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode));
}

fn server() -> &'static Server {
    SERVER.get_or_init(start_server)
}

fn with_db(url: &str, db: &str) -> PgConnectOptions {
    let opts: PgConnectOptions = url.parse().expect("valid database URL");
    opts.database(db)
}

/// A fresh database for one test, migrated (from a template database).
#[derive(Debug, Clone)]
pub struct TestDb {
    /// Owner (superuser) URL of this database.
    pub url: String,
    pub name: String,
}

impl TestDb {
    pub async fn new() -> TestDb {
        let admin_url =
            tokio::task::spawn_blocking(|| server().admin_url.clone()).await.expect("server start");
        let template = template_db(&admin_url).await;
        let name = format!("alto_t_{}_{}", std::process::id(), Uuid::new_v4().simple());
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(with_db(&admin_url, "postgres"))
            .await
            .expect("connect to test server");
        sqlx::query(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
            .execute(&admin)
            .await
            .expect("create test database");
        admin.close().await;
        let opts = with_db(&admin_url, &name);
        let url = format!(
            "postgres://{}@{}:{}/{}",
            opts.get_username(),
            opts.get_host(),
            opts.get_port(),
            name
        );
        TestDb { url, name }
    }

    /// The server's own view: an `alto_app` pool, subject to row-level security.
    pub async fn app_db(&self) -> alto_db::Db {
        alto_db::Db::connect_app(&alto_db::DbConfig {
            url: self.url.clone(),
            app_password: None,
            max_connections: 2,
            acquire_timeout: Duration::from_secs(10),
        })
        .await
        .expect("app pool")
    }

    /// An owner connection (bypasses RLS; for assertions and tampering).
    pub async fn owner_pool(&self) -> PgPool {
        PgPoolOptions::new().max_connections(2).connect(&self.url).await.expect("owner pool")
    }
}

async fn template_db(admin_url: &str) -> String {
    let mut guard = TEMPLATE.lock().await;
    if let Some(t) = guard.as_ref() {
        return t.clone();
    }
    let hash = {
        use std::hash::{Hash as _, Hasher as _};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for m in alto_db::MIGRATOR.iter() {
            m.version.hash(&mut h);
            m.checksum.hash(&mut h);
        }
        h.finish()
    };
    let name = format!("alto_tpl_{hash:016x}");
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(with_db(admin_url, "postgres"))
        .await
        .expect("connect to test server");
    let mut conn = admin.acquire().await.expect("conn");
    sqlx::query("SELECT pg_advisory_lock(73010099)").execute(&mut *conn).await.expect("lock");
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut *conn)
            .await
            .expect("query");
    if !exists {
        let building = format!("{name}_build");
        sqlx::query(&format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"))
            .execute(&mut *conn)
            .await
            .expect("drop");
        sqlx::query(&format!("CREATE DATABASE {building}"))
            .execute(&mut *conn)
            .await
            .expect("create template");
        alto_db::migrate(&with_db(admin_url, &building), None).await.expect("migrate template");
        sqlx::query(&format!("ALTER DATABASE {building} RENAME TO {name}"))
            .execute(&mut *conn)
            .await
            .expect("rename");
    }
    // Drop databases left by test processes that died.
    let stale: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'alto\\_t\\_%'")
            .fetch_all(&mut *conn)
            .await
            .unwrap_or_default();
    for db in stale {
        let pid = db.split('_').nth(2).and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|p| !pid_alive(p)) {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                .execute(&mut *conn)
                .await;
        }
    }
    sqlx::query("SELECT pg_advisory_unlock(73010099)").execute(&mut *conn).await.expect("unlock");
    drop(conn);
    admin.close().await;
    *guard = Some(name.clone());
    name
}

/// A running server on its own database.
pub struct TestApp {
    pub addr: std::net::SocketAddr,
    pub base_url: String,
    pub clock: FakeClock,
    pub db: TestDb,
    /// Logged in as the platform administrator.
    pub admin: Client,
    pub data_dir: tempfile::TempDir,
    /// The server's state, for driving background services (sweeps, workers) directly.
    pub state: alto_server::state::AppState,
    /// The server's background workers: tests drive them (`app.workers.ingest.step(&app.state)`)
    /// instead of sleeping until they have run.
    pub workers: alto_server::services::Workers,
    stop: Arc<tokio::sync::Notify>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

/// A tenant with an administrator, made through the API.
#[derive(Debug, Clone)]
pub struct TestTenant {
    pub id: Uuid,
    pub name: String,
    pub admin: Client,
    pub admin_id: Uuid,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    /// Spawns with a configuration tweak applied to the test defaults.
    pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
        init_logging();
        let db = TestDb::new().await;
        let data_dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config { data_dir: data_dir.path().to_owned(), ..Default::default() };
        config.http.listen = "127.0.0.1:0".parse().expect("addr");
        config.link.listen = "127.0.0.1:0".parse().expect("addr");
        config.database.url = Some(db.url.clone());
        config.database.max_connections = 10;
        config.bootstrap.admin_password = Some(ADMIN_PASSWORD.into());
        config.storage.allowed_endpoints = loopback_endpoints();
        tweak(&mut config);
        let start = chrono::DateTime::parse_from_rfc3339("2026-06-01T12:00:00Z")
            .expect("time")
            .with_timezone(&chrono::Utc);
        let clock = FakeClock::new(start);
        let app = Application::build(config, Arc::new(clock.clone())).await.expect("server starts");
        let addr = app.local_addr();
        let state = app.state().clone();
        let workers = app.workers().clone();
        let stop = Arc::new(tokio::sync::Notify::new());
        let s2 = stop.clone();
        let handle = tokio::spawn(async move {
            let _ = app.run(async move { s2.notified().await }).await;
        });
        let base_url = format!("http://{addr}");
        let mut admin = Client::new(&base_url).expect("client");
        admin.login(ADMIN_USER, ADMIN_PASSWORD).await.expect("admin login");
        TestApp {
            addr,
            base_url,
            clock,
            db,
            admin,
            data_dir,
            state,
            workers,
            stop,
            handle: Some(handle),
        }
    }

    /// The server's current (fake) time.
    pub fn clock_now(&self) -> chrono::DateTime<chrono::Utc> {
        use alto_model::Clock as _;
        self.clock.now()
    }

    /// An anonymous client.
    pub fn client(&self) -> Client {
        Client::new(&self.base_url).expect("client")
    }

    /// Logs in and returns the client.
    pub async fn login(&self, username: &str, password: &str) -> Client {
        let mut c = self.client();
        c.login(username, password).await.unwrap_or_else(|e| panic!("login {username}: {e}"));
        c
    }

    /// Creates a tenant with an administrator `<name>-admin` (password [`ADMIN_PASSWORD`]).
    pub async fn new_tenant(&self, name: &str) -> TestTenant {
        let username = format!("{}-admin", name.to_lowercase());
        let created = self
            .admin
            .create_tenant(&alto_api_types::CreateTenant {
                name: name.into(),
                admin: Some(alto_api_types::CreateUser {
                    username: username.clone(),
                    password: ADMIN_PASSWORD.into(),
                    display_name: None,
                    roles: vec![alto_model::Role::TenantAdmin],
                }),
            })
            .await
            .expect("create tenant");
        let admin = self.login(&username, ADMIN_PASSWORD).await;
        TestTenant {
            id: created.tenant.id,
            name: name.into(),
            admin,
            admin_id: created.admin.expect("admin").id,
        }
    }

    /// Creates a user with `roles` in `tenant` and logs in as them.
    pub async fn user_with(
        &self,
        tenant: &TestTenant,
        username: &str,
        roles: &[alto_model::Role],
    ) -> Client {
        tenant
            .admin
            .create_user(
                alto_client::Scope::Tenant(tenant.id),
                &alto_api_types::CreateUser {
                    username: username.into(),
                    password: ADMIN_PASSWORD.into(),
                    display_name: None,
                    roles: roles.to_vec(),
                },
            )
            .await
            .expect("create user");
        self.login(username, ADMIN_PASSWORD).await
    }

    /// Registers a host (not enrolled): the host and its one-time enrollment token, for a
    /// test that enrolls a real agent with it.
    pub async fn new_host(&self, tenant: &TestTenant, name: &str) -> alto_api_types::CreatedHost {
        tenant
            .admin
            .create_host(
                tenant.id,
                &alto_api_types::CreateHost { name: name.into(), description: None },
            )
            .await
            .expect("create host")
    }

    /// Registers and enrolls a host; returns (host id, client holding the host credential).
    pub async fn enrolled_host(&self, tenant: &TestTenant, name: &str) -> (Uuid, Client) {
        let created = self.new_host(tenant, name).await;
        let issued = self
            .client()
            .enroll(&alto_api_types::EnrollRequest {
                token: created.enrollment.token,
                hostname: name.into(),
                agent_version: "0.1.0".into(),
                os: Some("linux".into()),
            })
            .await
            .expect("enroll");
        (created.host.id, self.client().with_token(issued.credential))
    }

    /// Runs the ingest worker until the scan is ingested or failed; returns it. The worker is
    /// driven here (every queued scan is merged before this looks); only a scan this replica
    /// cannot merge now (another replica holds it) is waited for, up to 30 s.
    pub async fn wait_for_scan(&self, tenant: &TestTenant, scan: Uuid) -> alto_api_types::Scan {
        let ingest = &self.workers.ingest;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Err(e) = ingest.run_until_idle(&self.state).await {
                tracing::warn!(error = %e, "driven ingest step failed");
            }
            let seen = ingest.steps();
            let s = tenant.admin.get_scan(tenant.id, scan).await.expect("scan");
            if matches!(s.status.as_str(), "completed" | "failed") {
                return s;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "scan {scan} was not ingested within 30 s"
            );
            ingest.wait_step_after(seen, Duration::from_millis(100)).await;
        }
    }

    /// Runs the planner worker until no planning run is queued; returns how many it ran.
    pub async fn run_planner(&self) -> usize {
        self.workers.planner.run_until_idle(&self.state).await.expect("planner step")
    }

    /// Uploads `records` as the host's complete full scan (one Parquet part) and waits until
    /// it is ingested; returns the scan (its status `completed` or `failed`).
    pub async fn scan_files(
        &self,
        tenant: &TestTenant,
        agent: &Client,
        records: &[alto_batch::ScanRecord],
    ) -> alto_api_types::Scan {
        let scan = Uuid::now_v7();
        let format = alto_batch::Format::Parquet;
        agent
            .upload_scan_part(
                scan,
                0,
                true,
                "full",
                format.content_type(),
                batch_bytes(format, records),
            )
            .await
            .expect("upload scan");
        self.wait_for_scan(tenant, scan).await
    }

    /// Creates the rule `all` (priority 10) that tiers every file to the storage target
    /// `target`, with `compression` (`none` or `zstd`) when given.
    /// Turns planning after ingest off for `tenant`, so that a test's manual run is the one
    /// that plans what it scanned (otherwise the run after ingest may take the files first,
    /// once the test's rule exists).
    pub async fn plan_manually_only(&self, tenant: &TestTenant) {
        let mut s = tenant.admin.get_planner_settings(tenant.id).await.expect("settings");
        s.plan_after_ingest = false;
        tenant.admin.put_planner_settings(tenant.id, &s).await.expect("put settings");
    }

    pub async fn tier_everything(
        &self,
        tenant: &TestTenant,
        target: &str,
        compression: Option<&str>,
    ) -> alto_api_types::Rule {
        let mut action = serde_json::json!({ "type": "tier", "target": target });
        if let Some(c) = compression {
            action["compression"] = c.into();
        }
        let spec: alto_api_types::RuleSpec = serde_json::from_value(
            serde_json::json!({ "name": "all", "priority": 10, "action": action }),
        )
        .expect("rule spec");
        tenant.admin.create_rule(tenant.id, &spec).await.expect("create rule")
    }

    /// The arrange step of the end-to-end tiering tests: safety window 0, no planning after
    /// ingest, the rule `all` tiering everything to `target` with `compression`, and the clock
    /// ten years on (so files made now are old enough for any rule). The jump ends the
    /// tenant administrator's session, so it logs in again.
    pub async fn tier_everything_later(
        &self,
        tenant: &mut TestTenant,
        target: &str,
        compression: &str,
    ) {
        let mut s = tenant.admin.get_planner_settings(tenant.id).await.expect("settings");
        s.safety_window_seconds = 0;
        s.plan_after_ingest = false;
        tenant.admin.put_planner_settings(tenant.id, &s).await.expect("put settings");
        self.tier_everything(tenant, target, Some(compression)).await;
        self.clock.advance(chrono::Duration::days(3650));
        let username = format!("{}-admin", tenant.name.to_lowercase());
        tenant.admin = self.login(&username, ADMIN_PASSWORD).await;
    }

    /// Runs the planner for the tenant now (a manual run, every host).
    pub async fn plan_now(&self, tenant: &TestTenant) -> alto_api_types::Plan {
        let req: alto_api_types::RunPlan =
            serde_json::from_value(serde_json::json!({})).expect("run plan");
        tenant.admin.run_plan(tenant.id, &req).await.expect("plan")
    }

    /// Stops the server gracefully and waits for it.
    pub async fn shutdown(mut self) {
        self.stop.notify_one();
        if let Some(h) = self.handle.take() {
            let _ = tokio::time::timeout(Duration::from_secs(30), h).await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop.notify_one();
    }
}

/// A second server replica on the same database and (fake) clock, on fixed ports, in a
/// runtime of its own so that [`Replica::kill`] stops it the way SIGKILL would: every task and
/// connection dropped at once, no drain, transactions in flight rolled back by PostgreSQL.
/// It shares the first replica's development CA, so agents trust either.
pub struct Replica {
    rt: Option<tokio::runtime::Runtime>,
    pub http: std::net::SocketAddr,
    pub link: std::net::SocketAddr,
}

impl Replica {
    /// The REST base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.http)
    }

    /// The agent link URL.
    pub fn link_url(&self) -> String {
        format!("https://{}", self.link)
    }

    /// Stops it at once.
    pub fn kill(mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// The test servers (moto, s3s-fs, Azurite, Samba) listen on loopback, which the server's
/// outbound policy refuses unless it is allow-listed: test servers allow it explicitly.
pub fn loopback_endpoints() -> Vec<String> {
    vec!["127.0.0.0/8".into(), "::1".into()]
}

/// A free loopback port (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl TestApp {
    /// Starts a replica on `http` and `link` (retrying while a killed one's sockets close).
    /// Blocking: call it from `spawn_blocking`.
    pub fn start_replica(&self, http: u16, link: u16) -> Replica {
        let mut config =
            Config { data_dir: self.data_dir.path().join("replica"), ..Default::default() };
        config.http.listen = std::net::SocketAddr::from(([127, 0, 0, 1], http));
        config.link.listen = std::net::SocketAddr::from(([127, 0, 0, 1], link));
        config.link.tls_dir = Some(self.data_dir.path().join("tls"));
        config.database.url = Some(self.db.url.clone());
        config.database.max_connections = 6;
        config.bootstrap.admin_password = Some(ADMIN_PASSWORD.into());
        config.storage.allowed_endpoints = loopback_endpoints();
        let started = std::time::Instant::now();
        loop {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            let clock = self.clock.clone();
            let cfg = config.clone();
            let res = rt.block_on(async move {
                let app = Application::build(cfg, Arc::new(clock)).await?;
                tokio::spawn(async move {
                    let _ = app.run(std::future::pending()).await;
                });
                Ok::<_, alto_server::StartupError>(())
            });
            match res {
                Ok(()) => {
                    return Replica {
                        rt: Some(rt),
                        http: config.http.listen,
                        link: config.link.listen,
                    }
                }
                Err(e) if started.elapsed() < std::time::Duration::from_secs(20) => {
                    rt.shutdown_background();
                    tracing::debug!(error = %e, "replica not started yet; retrying");
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                Err(e) => panic!("replica does not start: {e}"),
            }
        }
    }
}

fn init_logging() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("info,sqlx=warn")
            .with_test_writer()
            .try_init();
    }
}

/// Sends a raw JSON request under `/api/v1` with the client's credentials and returns the
/// status and the body (`null` when it is not JSON). For tests that assert on statuses and
/// error bodies; arrange steps use the typed client.
pub async fn api(
    c: &Client,
    m: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut rb = c.request(m, &format!("/api/v1{path}"));
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.expect("request");
    let st = r.status().as_u16();
    (st, r.json().await.unwrap_or(serde_json::Value::Null))
}

/// Encodes records as one batch file in `format`.
pub fn batch_bytes(format: alto_batch::Format, records: &[alto_batch::ScanRecord]) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("part");
    let mut w = alto_batch::BatchWriter::new(std::fs::File::create(&path).expect("create"), format)
        .expect("writer");
    for r in records {
        w.write(r).expect("write");
    }
    w.finish().expect("finish");
    std::fs::read(&path).expect("read back")
}

/// A plausible scanned file at `path` (bytes) with `size`, modified `age_days` before
/// `now_us`.
pub fn file_record(path: &[u8], size: u64, now_us: i64, age_days: i64) -> alto_batch::ScanRecord {
    let t = now_us - age_days * 86_400_000_000;
    alto_batch::ScanRecord {
        path: path.to_vec(),
        size,
        mtime_us: t,
        atime_us: t,
        ctime_us: t,
        mode: 0o100644,
        uid: 1000,
        gid: 1000,
        inode: u64::from(
            path.iter().fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(*b))),
        ),
        device: 2049,
        nlink: 1,
        owner: "alice".into(),
        hash: String::new(),
        stub: None,
    }
}
