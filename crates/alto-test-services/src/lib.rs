//! Real test servers on 127.0.0.1: s3s-fs (S3), Azurite (Azure Blob) and Samba (SMB), each
//! started in its own temporary directory on a free port and killed on drop.
//!
//! Binaries are looked up in `<workspace>/.tools` (where `scripts/test-services.sh install`
//! puts them) and then on `PATH`. A missing one skips the test with a message, or fails it
//! when `ALTO_REQUIRE_TEST_SERVICES=1`.

//!
//! Specs are returned as the JSON of a storage target (`{"kind", "location", "config"}`, as
//! `alto_tier2::TargetSpec` and the REST API read it), so this crate depends on no Alto crate
//! and every crate's tests can use it.
//!
//! **Must never:** bind anything but 127.0.0.1, or leave a server running after its handle
//! is dropped.

pub mod mounts;

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

pub const S3_ACCESS_KEY: &str = "AKALTOTEST";
pub const S3_SECRET_KEY: &str = "SKaltoTestSecret0123456789";
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
pub const SMB_PASSWORD: &str = "SmbTestPassw0rd!";

/// A storage target spec as JSON (`alto_tier2::TargetSpec`'s and the API's shape).
pub type Spec = serde_json::Value;

#[allow(clippy::needless_pass_by_value)] // `json!` serialises it by reference
fn spec_of(kind: &str, location: impl Into<String>, config: serde_json::Value) -> Spec {
    json!({ "kind": kind, "location": location.into(), "config": config })
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `name` under `.tools/<rel>` or on `PATH` (plus the sbin directories).
fn find_bin(name: &str, rel: &[&str]) -> Option<PathBuf> {
    let tools = workspace_root().join(".tools");
    for r in rel {
        let p = tools.join(r).join(name);
        if p.is_file() {
            return Some(p);
        }
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.extend(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from));
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// The binary, or `None` after printing why the test is skipped (panics instead when
/// `ALTO_REQUIRE_TEST_SERVICES=1`).
pub fn require(name: &str, rel: &[&str]) -> Option<PathBuf> {
    if let Some(p) = find_bin(name, rel) {
        return Some(p);
    }
    let msg = format!("{name} not installed (run scripts/test-services.sh install)");
    if std::env::var("ALTO_REQUIRE_TEST_SERVICES").as_deref() == Ok("1") {
        panic!("ALTO_REQUIRE_TEST_SERVICES=1 but {msg}");
    }
    eprintln!("skipped: {msg}");
    None
}

/// Skips (prints why, returns `false`) or, when `ALTO_REQUIRE_ROOT=1` (the test command sets
/// it), fails the calling test if this process is not root. A green run of the test command
/// therefore means every root-only test ran.
pub fn require_root(why: &str) -> bool {
    // The effective uid from /proc (no libc call: this crate has no unsafe and no libc).
    if effective_uid() == Some(0) {
        return true;
    }
    skip_or_fail("ALTO_REQUIRE_ROOT", &format!("needs root ({why})"));
    false
}

/// Prints `skipped: {msg}` or panics when the environment variable `strict` is `1`.
pub fn skip_or_fail(strict: &str, msg: &str) {
    if std::env::var(strict).as_deref() == Ok("1") {
        panic!("{strict}=1 but {msg}");
    }
    eprintln!("SKIPPED: {msg}");
}

fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn wait_port(port: u16, child: &mut Child, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let out = fs::read_to_string(log).unwrap_or_default();
            panic!("{what} exited with {status} before listening:\n{out}");
        }
        assert!(Instant::now() < deadline, "{what} did not listen on 127.0.0.1:{port}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A server process, stopped (SIGTERM, then SIGKILL) on drop.
pub struct Server {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Server {
    fn spawn(mut cmd: Command, port: u16, dir: tempfile::TempDir, what: &str) -> Server {
        let log = dir.path().join("server.log");
        let out = fs::File::create(&log).expect("log");
        let err = out.try_clone().expect("log");
        // Its own process group: smbd signals its whole group when it stops, which must not
        // include the test process; and drop stops the group (servers' children too).
        let mut child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {what}: {e}"));
        wait_port(port, &mut child, what, &log);
        Server { child, port, dir }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- server log (last lines) ---");
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir_in("/tmp").expect("tempdir")
}

// ---- S3: s3s-fs ----

pub struct S3 {
    pub server: Server,
    pub root: PathBuf,
}

impl S3 {
    pub fn start() -> Option<S3> {
        let bin = require("s3s-fs", &["bin"])?;
        let dir = tmp();
        let root = dir.path().join("root");
        fs::create_dir(&root).expect("root");
        let port = free_port();
        let mut cmd = Command::new(bin);
        cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", S3_ACCESS_KEY, "--secret-key", S3_SECRET_KEY])
            .arg(&root);
        Some(S3 { server: Server::spawn(cmd, port, dir, "s3s-fs"), root })
    }

    /// A bucket is a directory of the server's root.
    pub fn create_bucket(&self, name: &str) {
        fs::create_dir(self.root.join(name)).expect("bucket");
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port)
    }

    pub fn spec(&self, location: &str, secret: &str) -> Spec {
        s3_spec(&self.endpoint(), location, secret)
    }
}

// ---- S3: moto (keeps data in memory and accepts any credentials, but stores long keys,
// which s3s-fs 0.14.1 cannot: it names a metadata file after the base64 of the key, and
// sidecar keys of ~180 bytes exceed NAME_MAX there) ----

pub struct Moto {
    pub server: Server,
}

impl Moto {
    pub fn start() -> Option<Moto> {
        let bin = require("moto_server", &["moto/bin"])?;
        let dir = tmp();
        let port = free_port();
        let mut cmd = Command::new(bin);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        Some(Moto { server: Server::spawn(cmd, port, dir, "moto_server") })
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port)
    }

    pub fn create_bucket(&self, name: &str) {
        let req = format!(
            "PUT /{name} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.server.port
        );
        // moto listens a moment before it answers.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut s = TcpStream::connect(("127.0.0.1", self.server.port)).expect("connect");
            s.write_all(req.as_bytes()).expect("send");
            let mut resp = String::new();
            let _ = s.read_to_string(&mut resp);
            let status = resp.lines().next().unwrap_or_default().to_owned();
            if status.contains(" 200 ") {
                return;
            }
            assert!(Instant::now() < deadline, "create bucket {name}: {status:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn spec(&self, location: &str) -> Spec {
        s3_spec(&self.endpoint(), location, S3_SECRET_KEY)
    }
}

pub fn s3_spec(endpoint: &str, location: &str, secret: &str) -> Spec {
    spec_of(
        "s3",
        location,
        json!({
            "endpoint": endpoint,
            "region": "us-east-1",
            "access_key_id": S3_ACCESS_KEY,
            "secret_access_key": secret,
            "allow_http": true,
            "path_style": true,
        }),
    )
}

// ---- Azure Blob: Azurite ----

pub struct Azurite {
    pub server: Server,
}

impl Azurite {
    pub fn start() -> Option<Azurite> {
        let bin = require("azurite-blob", &["node/node_modules/.bin"])?;
        let dir = tmp();
        let data = dir.path().join("data");
        fs::create_dir(&data).expect("data");
        let port = free_port();
        let mut cmd = Command::new(bin);
        cmd.args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .arg("--location")
            .arg(&data)
            .args(["--disableTelemetry", "--skipApiVersionCheck", "--silent"]);
        Some(Azurite { server: Server::spawn(cmd, port, dir, "azurite-blob") })
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{AZURITE_ACCOUNT}", self.server.port)
    }

    /// `PUT /<account>/<container>?restype=container`, signed with the account's shared key
    /// (object_store cannot create containers).
    pub fn create_container(&self, name: &str) {
        // The shared-key signature's `x-ms-date` must be the real time (Azurite compares it
        // with its own clock); this crate depends on no Alto crate, so no `Clock` here.
        #[allow(clippy::disallowed_methods)]
        let date = chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now())
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let version = "2021-08-06";
        let to_sign = format!(
            "PUT\n{}x-ms-date:{date}\nx-ms-version:{version}\n/{a}/{a}/{name}\nrestype:container",
            "\n".repeat(11),
            a = AZURITE_ACCOUNT
        );
        let key = base64::engine::general_purpose::STANDARD.decode(AZURITE_KEY).expect("key");
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("hmac");
        mac.update(to_sign.as_bytes());
        let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        let req = format!(
            "PUT /{a}/{name}?restype=container HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
             x-ms-date: {date}\r\nx-ms-version: {version}\r\n\
             Authorization: SharedKey {a}:{sig}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            a = AZURITE_ACCOUNT,
            port = self.server.port
        );
        let mut s = TcpStream::connect(("127.0.0.1", self.server.port)).expect("connect");
        s.write_all(req.as_bytes()).expect("send");
        let mut resp = String::new();
        let _ = s.read_to_string(&mut resp);
        let status = resp.lines().next().unwrap_or_default();
        assert!(status.contains(" 201 "), "create container {name}: {status}");
    }

    pub fn spec(&self, location: &str, key: &str) -> Spec {
        spec_of(
            "azure",
            location,
            json!({
                "account": AZURITE_ACCOUNT,
                "access_key": key,
                "endpoint": self.endpoint(),
                "allow_http": true,
            }),
        )
    }
}

// ---- SMB: Samba ----

pub struct Samba {
    pub server: Server,
    /// The directory the share `[share]` exports.
    pub share: PathBuf,
}

impl Samba {
    pub fn start() -> Option<Samba> {
        let smbd = require("smbd", &[])?;
        let smbpasswd = require("smbpasswd", &[])?;
        let dir = tmp();
        let d = dir.path();
        for sub in ["share", "private", "lock", "state", "cache", "pid", "log", "ncalrpc"] {
            fs::create_dir(d.join(sub)).expect("samba dir");
        }
        let share = d.join("share");
        Command::new("chmod").arg("777").arg(&share).status().expect("chmod");
        let port = free_port();
        let p = |s: &str| d.join(s).display().to_string();
        let conf = format!(
            "[global]
   server role = standalone server
   workgroup = WORKGROUP
   netbios name = ALTOTEST
   interfaces = 127.0.0.1
   bind interfaces only = yes
   smb ports = {port}
   disable netbios = yes
   server min protocol = SMB2_10
   private dir = {private}
   lock directory = {lock}
   state directory = {state}
   cache directory = {cache}
   pid directory = {pid}
   ncalrpc dir = {ncalrpc}
   log file = {log}/log.%m
   max log size = 1000
   passdb backend = tdbsam:{private}/passdb.tdb
   load printers = no
   printing = bsd
   printcap name = /dev/null
   disable spoolss = yes
   map to guest = never
   usershare path =

[share]
   path = {share}
   read only = no
   browseable = yes
   valid users = root
",
            private = p("private"),
            lock = p("lock"),
            state = p("state"),
            cache = p("cache"),
            pid = p("pid"),
            ncalrpc = p("ncalrpc"),
            log = p("log"),
            share = share.display(),
        );
        let conf_path = d.join("smb.conf");
        fs::write(&conf_path, conf).expect("smb.conf");
        let mut pw = Command::new(smbpasswd)
            .arg("-c")
            .arg(&conf_path)
            .args(["-a", "-s", "root"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("smbpasswd");
        pw.stdin
            .take()
            .expect("stdin")
            .write_all(format!("{SMB_PASSWORD}\n{SMB_PASSWORD}\n").as_bytes())
            .expect("password");
        assert!(pw.wait().expect("smbpasswd").success(), "smbpasswd failed");
        let mut cmd = Command::new(smbd);
        cmd.args(["--foreground", "--no-process-group", "--debug-stdout", "-d", "1", "-s"])
            .arg(&conf_path);
        Some(Samba { server: Server::spawn(cmd, port, dir, "smbd"), share })
    }

    pub fn spec(&self, location_tail: &str, password: &str) -> Spec {
        spec_of(
            "smb",
            format!("smb://127.0.0.1:{}/{location_tail}", self.server.port),
            json!({ "username": "root", "password": password, "workgroup": "WORKGROUP" }),
        )
    }
}
