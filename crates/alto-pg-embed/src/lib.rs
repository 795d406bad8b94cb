//! A private PostgreSQL cluster, started from the PostgreSQL binaries installed on the machine.
//!
//! `alto-server` uses it when no database URL is configured, and the test harness uses it for
//! throwaway clusters. The postmaster runs as a child of this process (as the `postgres` OS
//! user when we are root, because PostgreSQL refuses to run as root), listens on 127.0.0.1
//! only, and is told to die with us (`PR_SET_PDEATHSIG`), so a killed server never leaves an
//! orphaned database behind.
//!
//! **Must never:** touch the machine's system clusters or `/etc/postgresql`, listen on a
//! non-loopback address, or know anything about Alto's schema.

use std::fs;
use std::io::{self, Read as _};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// What can go wrong starting or stopping a cluster.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error(
        "PostgreSQL server binaries (initdb, postgres) were not found in {searched}; install the \
         Debian package `postgresql` (apt-get install postgresql) or configure an external \
         database URL"
    )]
    BinariesNotFound { searched: String },
    #[error(
        "running as root, but there is no `postgres` OS user to run the embedded PostgreSQL \
         as; install the Debian package `postgresql` (it creates the user) or run as a \
         non-root user"
    )]
    NoPostgresUser,
    #[error("{what} failed: {detail}")]
    Command { what: String, detail: String },
    #[error("PostgreSQL did not become ready within {0:?}; see {1}")]
    NotReady(Duration, PathBuf),
    #[error("PostgreSQL exited during start-up ({status}); last log lines:\n{log}")]
    ExitedEarly { status: String, log: String },
    #[error("I/O error on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> EmbedError + '_ {
    move |source| EmbedError::Io { path: path.to_owned(), source }
}

/// A PostgreSQL installation: the directory holding `initdb`, `postgres` and friends.
#[derive(Debug, Clone)]
pub struct PgInstall {
    pub bin_dir: PathBuf,
}

impl PgInstall {
    /// Finds the binaries: `explicit` if given, else the newest `/usr/lib/postgresql/*/bin`,
    /// else the directory of `initdb` on `PATH`.
    pub fn discover(explicit: Option<&Path>) -> Result<Self, EmbedError> {
        let mut searched = Vec::new();
        let ok = |d: &Path| d.join("initdb").is_file() && d.join("postgres").is_file();
        if let Some(d) = explicit {
            if ok(d) {
                return Ok(Self { bin_dir: d.to_owned() });
            }
            return Err(EmbedError::BinariesNotFound { searched: d.display().to_string() });
        }
        let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let v = e.file_name().to_str()?.parse::<u32>().ok()?;
                Some((v, e.path().join("bin")))
            })
            .collect();
        versions.sort();
        searched.push("/usr/lib/postgresql/*/bin".to_owned());
        if let Some((_, d)) = versions.into_iter().rev().find(|(_, d)| ok(d)) {
            return Ok(Self { bin_dir: d });
        }
        if let Some(path) = std::env::var_os("PATH") {
            for d in std::env::split_paths(&path) {
                if ok(&d) {
                    let real = fs::canonicalize(d.join("initdb")).ok();
                    let dir = real.and_then(|p| p.parent().map(Path::to_owned)).unwrap_or(d);
                    return Ok(Self { bin_dir: dir });
                }
            }
            searched.push("PATH".to_owned());
        }
        Err(EmbedError::BinariesNotFound { searched: searched.join(", ") })
    }

    fn bin(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }
}

/// Durability settings for the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// PostgreSQL defaults: every commit is durable. For the product.
    Safe,
    /// `fsync=off` and friends: fast, loses data on power failure. For tests only.
    Throwaway,
}

/// How to run a cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// The cluster's own directory (`PGDATA`). Created and initialised if missing or empty.
    pub data_dir: PathBuf,
    /// TCP port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    pub durability: Durability,
    /// Extra `-c name=value` settings.
    pub settings: Vec<(String, String)>,
    /// How long to wait for the server to accept connections.
    pub start_timeout: Duration,
}

impl ClusterOptions {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            port: 0,
            durability: Durability::Safe,
            settings: Vec::new(),
            start_timeout: Duration::from_secs(60),
        }
    }
}

/// The OS account the postmaster runs as.
#[derive(Debug, Clone, Copy)]
struct RunAs {
    uid: u32,
    gid: u32,
}

fn run_as() -> Result<Option<RunAs>, EmbedError> {
    // SAFETY-free: geteuid has no preconditions; wrapped by libc as unsafe only nominally.
    #[allow(unsafe_code)]
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Ok(None);
    }
    let passwd = fs::read_to_string("/etc/passwd").map_err(io_err(Path::new("/etc/passwd")))?;
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() > 3 && f[0] == "postgres" {
            let uid = f[2].parse().map_err(|_| EmbedError::NoPostgresUser)?;
            let gid = f[3].parse().map_err(|_| EmbedError::NoPostgresUser)?;
            return Ok(Some(RunAs { uid, gid }));
        }
    }
    Err(EmbedError::NoPostgresUser)
}

fn chown_tree(path: &Path, who: RunAs) -> Result<(), EmbedError> {
    std::os::unix::fs::lchown(path, Some(who.uid), Some(who.gid)).map_err(io_err(path))?;
    if path.is_dir() && !path.is_symlink() {
        for e in fs::read_dir(path).map_err(io_err(path))? {
            let e = e.map_err(io_err(path))?;
            chown_tree(&e.path(), who)?;
        }
    }
    Ok(())
}

fn command(install: &PgInstall, name: &str, who: Option<RunAs>) -> Command {
    let mut c = Command::new(install.bin(name));
    if let Some(w) = who {
        // std drops supplementary groups when changing uid from root.
        c.uid(w.uid).gid(w.gid);
    }
    c.env_remove("PGDATA").env("LC_ALL", "C.UTF-8");
    c
}

fn free_port() -> Result<u16, EmbedError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(io_err(Path::new("127.0.0.1:0")))?;
    let port = l.local_addr().map_err(io_err(Path::new("127.0.0.1:0")))?.port();
    Ok(port)
}

/// Initialises `data_dir` with `initdb` unless it already holds a cluster.
/// Returns true if it created one.
pub fn init_if_needed(install: &PgInstall, data_dir: &Path) -> Result<bool, EmbedError> {
    if data_dir.join("PG_VERSION").is_file() {
        return Ok(false);
    }
    let who = run_as()?;
    fs::create_dir_all(data_dir).map_err(io_err(data_dir))?;
    fs::set_permissions(data_dir, fs::Permissions::from_mode(0o700)).map_err(io_err(data_dir))?;
    if let Some(w) = who {
        chown_tree(data_dir, w)?;
    }
    let out = command(install, "initdb", who)
        .arg("-D")
        .arg(data_dir)
        .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8"])
        .args(["--no-sync", "--no-instructions"])
        .current_dir("/")
        .output()
        .map_err(io_err(&install.bin("initdb")))?;
    if !out.status.success() {
        let mut detail = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        if who.is_some() {
            detail.push_str(&format!(
                " (the `postgres` OS user must be able to traverse every parent of {})",
                data_dir.display()
            ));
        }
        return Err(EmbedError::Command { what: "initdb".into(), detail });
    }
    Ok(true)
}

/// Copies an initialised cluster directory (fast per-test clusters from one `initdb`).
pub fn copy_cluster(from: &Path, to: &Path) -> Result<(), EmbedError> {
    let out =
        Command::new("cp").arg("-a").arg(from).arg(to).output().map_err(io_err(Path::new("cp")))?;
    if !out.status.success() {
        return Err(EmbedError::Command {
            what: "cp -a".into(),
            detail: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    let _ = fs::remove_file(to.join("postmaster.pid"));
    Ok(())
}

/// Stops a postmaster left running by an earlier process on the same data directory.
fn stop_stale(data_dir: &Path) {
    let Ok(pidfile) = fs::read_to_string(data_dir.join("postmaster.pid")) else { return };
    let Some(pid) = pidfile.lines().next().and_then(|l| l.trim().parse::<i32>().ok()) else {
        return;
    };
    let cmdline = fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if !cmdline.contains("postgres") {
        return;
    }
    tracing::warn!(pid, "stopping a PostgreSQL left running on this data directory");
    signal(pid, libc::SIGINT);
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline && Path::new(&format!("/proc/{pid}")).exists() {
        thread::sleep(Duration::from_millis(50));
    }
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) with a pid we read and a valid signal number has no memory effects.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(pid, sig);
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let mut s = String::new();
    if let Ok(mut f) = fs::File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// A running cluster. Dropping it (or [`Cluster::stop`]) shuts the server down ("fast" mode:
/// open transactions roll back, committed data is safe).
#[derive(Debug)]
pub struct Cluster {
    pid: i32,
    port: u16,
    data_dir: PathBuf,
    log_path: PathBuf,
    /// Receives the postmaster's exit status from the keeper thread.
    exited: std::sync::Mutex<mpsc::Receiver<String>>,
    stopped: bool,
}

impl Cluster {
    /// Initialises (if needed) and starts a cluster, waiting until it accepts connections.
    pub fn start(install: &PgInstall, opts: &ClusterOptions) -> Result<Cluster, EmbedError> {
        init_if_needed(install, &opts.data_dir)?;
        stop_stale(&opts.data_dir);
        let who = run_as()?;
        let log_path = opts.data_dir.with_extension("log");
        let mut last_err = None;
        for _ in 0..3 {
            let port = if opts.port == 0 { free_port()? } else { opts.port };
            match Self::spawn(install, opts, who, port, &log_path) {
                Ok(c) => return Ok(c),
                Err(e @ EmbedError::ExitedEarly { .. }) if opts.port == 0 => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or(EmbedError::NotReady(opts.start_timeout, log_path)))
    }

    fn spawn(
        install: &PgInstall,
        opts: &ClusterOptions,
        who: Option<RunAs>,
        port: u16,
        log_path: &Path,
    ) -> Result<Cluster, EmbedError> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .map_err(io_err(log_path))?;
        let log2 = log.try_clone().map_err(io_err(log_path))?;
        let mut cmd = command(install, "postgres", who);
        cmd.arg("-D").arg(&opts.data_dir).arg("-p").arg(port.to_string());
        let mut settings: Vec<(String, String)> = vec![
            ("listen_addresses".into(), "127.0.0.1".into()),
            ("unix_socket_directories".into(), String::new()),
            ("logging_collector".into(), "off".into()),
        ];
        if opts.durability == Durability::Throwaway {
            for (k, v) in [
                ("fsync", "off"),
                ("synchronous_commit", "off"),
                ("full_page_writes", "off"),
                ("max_connections", "400"),
                ("shared_buffers", "128MB"),
            ] {
                settings.push((k.into(), v.into()));
            }
        }
        settings.extend(opts.settings.iter().cloned());
        for (k, v) in &settings {
            cmd.arg("-c").arg(format!("{k}={v}"));
        }
        cmd.stdin(Stdio::null()).stdout(log).stderr(log2).current_dir("/");
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of ours.
        // It runs after std has switched uid, so the setting survives into the postmaster.
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT as libc::c_ulong) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        // The thread that forks must outlive the child: PR_SET_PDEATHSIG fires when the
        // *thread* that created the child exits. A dedicated keeper thread waits on it.
        let (pid_tx, pid_rx) = mpsc::channel::<io::Result<i32>>();
        let (exit_tx, exit_rx) = mpsc::channel::<String>();
        thread::Builder::new()
            .name(format!("pg-keeper-{port}"))
            .spawn(move || match cmd.spawn() {
                Ok(mut child) => {
                    let _ = pid_tx.send(Ok(child.id() as i32));
                    let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                    let _ = exit_tx.send(status);
                }
                Err(e) => {
                    let _ = pid_tx.send(Err(e));
                }
            })
            .map_err(io_err(log_path))?;
        let pid = pid_rx
            .recv()
            .map_err(|_| EmbedError::NotReady(opts.start_timeout, log_path.to_owned()))?
            .map_err(io_err(&install.bin("postgres")))?;
        let cluster = Cluster {
            pid,
            port,
            data_dir: opts.data_dir.clone(),
            log_path: log_path.to_owned(),
            exited: std::sync::Mutex::new(exit_rx),
            stopped: false,
        };
        cluster.wait_ready(install, who, opts.start_timeout)?;
        tracing::info!(port, data_dir = %opts.data_dir.display(), "embedded PostgreSQL ready");
        Ok(cluster)
    }

    fn wait_ready(
        &self,
        install: &PgInstall,
        who: Option<RunAs>,
        timeout: Duration,
    ) -> Result<(), EmbedError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(status) =
                self.exited.lock().map_err(|_| ()).and_then(|r| r.try_recv().map_err(|_| ()))
            {
                return Err(EmbedError::ExitedEarly { status, log: tail(&self.log_path, 15) });
            }
            let ok = command(install, "pg_isready", who)
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(EmbedError::NotReady(timeout, self.log_path.clone()));
            }
            thread::sleep(Duration::from_millis(40));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// A connection URL for `database` as the `postgres` superuser.
    pub fn superuser_url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Fast shutdown; waits up to 30 s for the postmaster to exit.
    pub fn stop(mut self) -> Result<(), EmbedError> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Result<(), EmbedError> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        signal(self.pid, libc::SIGINT);
        let rx = self.exited.lock().unwrap_or_else(|e| e.into_inner());
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(status) => {
                tracing::info!(%status, "embedded PostgreSQL stopped");
                Ok(())
            }
            Err(_) => {
                signal(self.pid, libc::SIGQUIT);
                Err(EmbedError::Command {
                    what: "stopping PostgreSQL".into(),
                    detail: "did not exit within 30 s; sent SIGQUIT".into(),
                })
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binaries_name_the_package() {
        let err = PgInstall::discover(Some(Path::new("/nonexistent"))).unwrap_err();
        assert!(err.to_string().contains("apt-get install postgresql"), "{err}");
    }

    #[test]
    fn starts_and_stops_a_private_cluster() {
        let Ok(install) = PgInstall::discover(None) else {
            panic!("PostgreSQL binaries are required for tests (run scripts/setup.sh)");
        };
        let dir = tempfile::Builder::new().prefix("alto-pg-").tempdir_in("/tmp").unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let mut opts = ClusterOptions::new(dir.path().join("data"));
        opts.durability = Durability::Throwaway;
        let c = Cluster::start(&install, &opts).unwrap();
        let port = c.port();
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        c.stop().unwrap();
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
        // A second start reuses the initialised directory.
        let c = Cluster::start(&install, &opts).unwrap();
        assert!(std::net::TcpStream::connect(("127.0.0.1", c.port())).is_ok());
    }
}
