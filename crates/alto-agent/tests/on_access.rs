//! Transparent recall against a real server, real file systems (ext4 and xfs on loop
//! devices) and the kernel's pre-content events: files are tiered by `tier-once`, then the
//! agent runs (`alto-agent run`, holder and all) and ordinary programs read the stubs —
//! `cat`, `sha256sum`, `cp`, Python `read()` and `mmap`, and an executable stored as a stub —
//! and see the original bytes; the registry learns of it. Failures give errors, never zeros;
//! a stub replaced with `>` is released; deny rules and rate limits refuse with their errno;
//! the agent killed with SIGKILL or stopped while a reader waits leaves the reader blocked,
//! and the next agent answers it with the right bytes.
//!
//! Root only (fanotify, loop mounts, `trusted.*` attributes).

#![allow(clippy::unwrap_used)]

use std::io::Read as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use alto_agent::config::AgentConfig;
use alto_agent::daemon;
use alto_agent::spool::Spool;
use alto_stub::StubState;
use alto_test_services::mounts::Mounts;
use alto_test_support::{api, TestApp, TestTenant};
use alto_tier2::{DirTarget, ObjectKey, Sha256Digest};
use reqwest::Method;
use serde_json::json;

fn root() -> bool {
    alto_test_services::require_root("fanotify groups, loop mounts, trusted.* attributes")
}

/// Never zero in any 4 KiB page, so zeros in what a reader got are always a stub's hole.
fn content(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 31 + usize::from(seed) * 7) % 251) as u8 + 1).collect()
}

struct Agent {
    child: Child,
    log: PathBuf,
}

/// An enrolled host whose data root is a fresh file system of `fs` kind.
struct Fx {
    app: TestApp,
    t: TestTenant,
    host_id: uuid::Uuid,
    cfg: AgentConfig,
    config_file: PathBuf,
    data: PathBuf,
    tier2: PathBuf,
    agent: Option<Agent>,
    _mounts: Mounts,
}

impl Fx {
    async fn new(fs: &str, extra_config: &str) -> Fx {
        let app = TestApp::spawn().await;
        let mut mounts = Mounts::new();
        let data = match fs {
            "xfs" => mounts.xfs_named("data"),
            _ => mounts.ext4_named("data", 128),
        };
        let state = mounts.dir().join("state");
        let tier2 = mounts.dir().join("tier2");
        std::fs::create_dir_all(&state).unwrap();
        std::fs::create_dir_all(&tier2).unwrap();
        let mut t = app.new_tenant("Acme").await;
        let created = t
            .admin
            .create_host(
                t.id,
                &alto_api_types::CreateHost { name: "fs1".into(), description: None },
            )
            .await
            .unwrap();
        daemon::enroll(&app.base_url, &created.enrollment.token, &state).await.unwrap();
        let cfg = AgentConfig {
            state_dir: state.clone(),
            roots: vec![data.clone()],
            tier2: alto_agent::config::Tier2Config { directory_base: tier2.clone() },
            tier_poll_interval: Duration::from_secs(3600),
            ..Default::default()
        };
        let config_file = state.join("agent.toml");
        std::fs::write(
            &config_file,
            format!(
                "state_dir = {state:?}\nroots = [{data:?}]\ntier_poll_interval = \"1h\"\n\
                 [tier2]\ndirectory_base = {tier2:?}\n[on_access]\ntimeout = \"30s\"\n\
                 unattended_after = \"1h\"\n{extra_config}\n"
            ),
        )
        .unwrap();
        app.tier_everything_later(&mut t, "default", "none").await;
        let host_id = created.host.id;
        Fx { app, t, host_id, cfg, config_file, data, tier2, agent: None, _mounts: mounts }
    }

    /// Writes `files`, scans, plans and tiers them; asserts each became a stub.
    async fn tier(&self, files: &[(&str, Vec<u8>, u32)]) {
        for (name, bytes, mode) in files {
            let p = self.data.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, bytes).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).unwrap();
        }
        let names: Vec<(&str, usize)> = files.iter().map(|(n, b, _)| (*n, b.len())).collect();
        self.tier_existing(&names).await;
    }

    /// Scans, plans and tiers what is on disk (`tier-once`, or the running agent when the
    /// job goes to it over the link); waits until each of `names` is a stub.
    async fn tier_existing(&self, names: &[(&str, usize)]) {
        let cfg = self.cfg.clone();
        let scan = tokio::task::spawn_blocking(move || {
            daemon::scan_into_spool(&cfg, &Spool::open(&cfg.state_dir).unwrap())
        })
        .await
        .unwrap()
        .unwrap();
        let id = alto_agent::state::Identity::load(&self.cfg.state_dir).unwrap();
        let client = daemon::host_client(&self.cfg, &id).unwrap();
        // A running agent drains the same spool (its first scan runs at start): whichever
        // uploads the scan, it must arrive complete.
        if let Err(e) = daemon::drain(&client, &Spool::open(&self.cfg.state_dir).unwrap(), 0).await
        {
            eprintln!("drain beside the agent: {e}");
        }
        assert_eq!(self.app.wait_for_scan(&self.t, scan).await.status, "completed");
        let (st, p) = api(
            &self.t.admin,
            Method::POST,
            &format!("/tenants/{}/plans", self.t.id),
            Some(json!({})),
        )
        .await;
        assert_eq!(st, 201, "{p}");
        // A running agent gets the job over the link; otherwise `tier-once` runs it (never
        // both: they would share the state directory's job journal).
        if self.agent.is_none() {
            let mut c = self.cmd(&["tier-once"]);
            let o = tokio::task::spawn_blocking(move || c.output().unwrap()).await.unwrap();
            assert!(o.status.success(), "tier-once: {}", String::from_utf8_lossy(&o.stderr));
        }
        for (name, len) in names {
            let deadline = Instant::now() + Duration::from_secs(30);
            let stubbed = |p: &Path| {
                alto_stub::read_attr(p).unwrap().is_some_and(|a| a.state == StubState::Stubbed)
            };
            while !stubbed(&self.data.join(name)) {
                assert!(Instant::now() < deadline, "{name} was not stubbed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if *len > 8192 {
                let m = std::fs::metadata(self.data.join(name)).unwrap();
                assert!(m.blocks() * 512 < *len as u64, "{name}: not punched");
            }
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_alto-agent"));
        c.args(args).arg("--config").arg(&self.config_file).env("ALTO_LOG", "info");
        c
    }

    /// Starts `alto-agent run` (with extra environment) and waits until it answers accesses.
    fn start(&mut self, env: &[(&str, &str)]) {
        let log = self.cfg.state_dir.join(format!("agent-{}.log", now_ms()));
        let mut c = self.cmd(&["run"]);
        c.envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let child = c.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("agent running") {
                assert!(text.contains("on-access mark"), "{text}");
                break;
            }
            assert!(Instant::now() < deadline, "agent did not start:\n{text}");
            std::thread::sleep(Duration::from_millis(50));
        }
        self.agent = Some(Agent { child, log });
    }

    fn kill(&mut self, signal: &str) {
        let mut a = self.agent.take().expect("agent running");
        let pid = a.child.id().to_string();
        assert!(Command::new("kill").args([signal, &pid]).status().unwrap().success());
        let deadline = Instant::now() + Duration::from_secs(30);
        while a.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "agent did not exit on {signal}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        self.agent.as_ref().map(|a| std::fs::read_to_string(&a.log).unwrap()).unwrap_or_default()
    }

    fn object_path(&self, name: &str) -> PathBuf {
        let a = alto_stub::read_attr(&self.data.join(name)).unwrap().expect("a stub");
        let key: ObjectKey = a.object_key.parse().unwrap();
        DirTarget::open(&self.tier2, alto_model::CustomerId(self.t.id)).unwrap().object_path(&key)
    }

    async fn registry_state(&self, name: &str) -> Option<String> {
        let q = alto_client::StubQuery {
            path_prefix: Some(self.data.join(name).display().to_string()),
            ..Default::default()
        };
        let page = self.t.admin.list_stubs(self.t.id, &q).await.unwrap();
        page.items.into_iter().next().map(|s| s.state)
    }

    /// Waits until the registry says `state` for `name` (reports go through the outbox).
    async fn expect_registry(&self, name: &str, state: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = self.registry_state(name).await;
            if got.as_deref() == Some(state) {
                return;
            }
            assert!(Instant::now() < deadline, "{name}: registry says {got:?}, expected {state}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Fx {
    fn drop(&mut self) {
        if let Some(mut a) = self.agent.take() {
            let _ = a.child.kill();
            let _ = a.child.wait();
        }
        // The holder keeps the group (and its marks) alive: stop it so the mounts can go.
        if let Some(h) = alto_agent::onaccess::holder::existing(&self.cfg.state_dir) {
            let _ = Command::new("kill").args(["-9", &h.pid.to_string()]).status();
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A fresh number per agent start (names its log).
fn now_ms() -> u64 {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

fn sh(script: &str) -> Output {
    Command::new("sh").arg("-c").arg(script).output().unwrap()
}

fn sha_hex(b: &[u8]) -> String {
    Sha256Digest::of(b).to_hex()
}

fn assert_whole(p: &Path, bytes: &[u8]) {
    assert_eq!(alto_stub::read_attr(p).unwrap(), None, "{}: still a stub", p.display());
    let mut got = Vec::new();
    std::fs::File::open(p).unwrap().read_to_end(&mut got).unwrap();
    assert!(got == bytes, "{}: bytes differ after recall", p.display());
}

async fn programs_read_stubs(fs: &str) {
    let mut fx = Fx::new(fs, "").await;
    let exe = std::fs::read("/usr/bin/echo").unwrap();
    let files: Vec<(&str, Vec<u8>, u32)> = vec![
        ("cat.bin", content(1, 3 << 20), 0o644),
        ("sha.bin", content(2, 1 << 20), 0o644),
        ("cp.bin", content(3, 700_000), 0o644),
        ("py.bin", content(4, 200_000), 0o644),
        ("mmap.bin", content(5, 2 << 20), 0o644),
        ("small.txt", content(6, 1000), 0o644),
        ("sub dir/echo", exe.clone(), 0o755),
    ];
    fx.tier(&files).await;
    let mtimes: Vec<i64> =
        files.iter().map(|(n, _, _)| std::fs::metadata(fx.data.join(n)).unwrap().mtime()).collect();
    fx.start(&[]);
    let d = fx.data.display().to_string();

    let o = sh(&format!("cat '{d}/cat.bin' | sha256sum"));
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).starts_with(&sha_hex(&files[0].1)), "cat");
    let o = sh(&format!("sha256sum '{d}/sha.bin'"));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with(&sha_hex(&files[1].1)), "sha256sum");
    let copy = fx.cfg.state_dir.join("copy.bin");
    let o = sh(&format!("cp '{d}/cp.bin' '{}'", copy.display()));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::read(&copy).unwrap() == files[2].1, "cp copied other bytes");
    let o = sh(&format!(
        "python3 -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],\"rb\").read()).hexdigest())' '{d}/py.bin'"
    ));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), sha_hex(&files[3].1), "python read");
    let o = sh(&format!(
        "python3 -c 'import mmap,hashlib,sys; f=open(sys.argv[1],\"rb\"); m=mmap.mmap(f.fileno(),0,access=mmap.ACCESS_READ); print(hashlib.sha256(m[:]).hexdigest())' '{d}/mmap.bin'"
    ));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), sha_hex(&files[4].1), "mmap");
    let o = sh(&format!("cat '{d}/small.txt' | sha256sum"));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with(&sha_hex(&files[5].1)), "small");
    let o = sh(&format!("'{d}/sub dir/echo' hello from a stub"));
    assert!(o.status.success(), "exec: {}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "hello from a stub\n");

    for ((name, bytes, _), mtime) in files.iter().zip(&mtimes) {
        let p = fx.data.join(name);
        assert_whole(&p, bytes);
        assert_eq!(std::fs::metadata(&p).unwrap().mtime(), *mtime, "{name}: mtime kept");
        fx.expect_registry(name, "rehydrated").await;
    }
    let log = fx.log();
    assert!(log.contains("on-access recall") && log.contains("recalled"), "{log}");
    // The host's on-access status, from the heartbeats.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let h = fx.t.admin.get_host(fx.t.id, fx.host_id).await.unwrap();
        if let Some(s) = h.on_access {
            assert_eq!(s.state, "active", "{s:?}");
            assert!(s.survives_restart);
            assert_eq!(s.filesystems.len(), 1);
            assert_eq!(s.filesystems[0].state, "marked");
            assert_eq!(s.filesystems[0].fs_type.as_deref(), Some(fs));
            break;
        }
        assert!(Instant::now() < deadline, "no on-access status in the host's heartbeats");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn programs_read_stubs_on_ext4() {
    if !root() {
        return;
    }
    programs_read_stubs("ext4").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn programs_read_stubs_on_xfs() {
    if !root() {
        return;
    }
    programs_read_stubs("xfs").await;
}

/// Errors, never zeros: a missing object gives EIO and leaves the stub; a stub replaced with
/// `>` is released; a denied program gets EPERM; a user over the rate limit gets EAGAIN; a
/// reader waiting longer than the timeout gets EIO.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_and_refusals_are_errors_never_zeros() {
    if !root() {
        return;
    }
    let mut fx = Fx::new(
        "ext4",
        "[[on_access.deny]]\nexecutable = \"/usr/bin/md5sum\"\nerrno = \"EPERM\"\n",
    )
    .await;
    let files: Vec<(&str, Vec<u8>, u32)> = vec![
        ("missing.bin", content(1, 1 << 20), 0o644),
        ("replaced.bin", content(2, 1 << 20), 0o644),
        ("denied.bin", content(3, 1 << 20), 0o644),
        ("u1.bin", content(4, 100_000), 0o644),
        ("u2.bin", content(5, 100_000), 0o644),
        ("u3.bin", content(6, 100_000), 0o644),
        ("slow.bin", content(7, 100_000), 0o644),
        ("explicit.bin", content(8, 1 << 20), 0o644),
    ];
    fx.tier(&files).await;
    let d = fx.data.display().to_string();
    fx.start(&[]);

    // `alto-agent recall` beside the running agent joins its group quietly (its own writes
    // raise no events) and takes the same per-file lock.
    let explicit = fx.data.join("explicit.bin");
    let o = fx.cmd(&["recall"]).arg(&explicit).output().unwrap();
    assert!(o.status.success(), "recall: {}", String::from_utf8_lossy(&o.stderr));
    assert_whole(&explicit, &files[7].1);
    fx.expect_registry("explicit.bin", "rehydrated").await;

    // The object is gone: the reader gets EIO and no bytes at all; the file stays a stub.
    let obj = fx.object_path("missing.bin");
    let aside = obj.with_extension("aside");
    std::fs::rename(&obj, &aside).unwrap();
    let o = sh(&format!("cat '{d}/missing.bin'"));
    assert!(!o.status.success());
    assert!(o.stdout.is_empty(), "a failed recall handed out {} bytes", o.stdout.len());
    assert!(String::from_utf8_lossy(&o.stderr).contains("Input/output error"), "{o:?}");
    assert!(alto_stub::read_attr(&fx.data.join("missing.bin")).unwrap().is_some());
    std::fs::rename(&aside, &obj).unwrap();
    let o = sh(&format!("cat '{d}/missing.bin' | sha256sum"));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with(&sha_hex(&files[0].1)));

    // Replaced with `>`: O_TRUNC raises no event; the next access finds the stub changed.
    let o = sh(&format!("echo new > '{d}/replaced.bin' && cat '{d}/replaced.bin'"));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "new\n", "{o:?}");
    assert_eq!(alto_stub::read_attr(&fx.data.join("replaced.bin")).unwrap(), None);
    assert!(fx.object_path_exists_for(&files[1].1), "the object is kept");
    fx.expect_registry("replaced.bin", "replaced").await;

    // A denied program: EPERM, the stub stays; another program recalls it.
    let o = sh(&format!("md5sum '{d}/denied.bin'"));
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("Operation not permitted"), "{o:?}");
    assert!(alto_stub::read_attr(&fx.data.join("denied.bin")).unwrap().is_some());
    assert!(fx.log().contains("on_access.deny"), "the refusal is logged with its rule");

    // The rate limit and the timeout: restart with a limit of 2 per user and a 2 s timeout.
    fx.kill("-TERM");
    fx.start(&[
        ("ALTO_AGENT_ON_ACCESS__USER_RATE_LIMIT", "2"),
        ("ALTO_AGENT_ON_ACCESS__TIMEOUT", "2s"),
    ]);
    let nobody = |f: &str| {
        sh(&format!("setpriv --reuid=65534 --regid=65534 --clear-groups cat '{d}/{f}' | sha256sum"))
    };
    for (i, f) in ["u1.bin", "u2.bin"].iter().enumerate() {
        let o = nobody(f);
        assert!(String::from_utf8_lossy(&o.stdout).starts_with(&sha_hex(&files[3 + i].1)), "{f}");
    }
    let o = sh(&format!("setpriv --reuid=65534 --regid=65534 --clear-groups cat '{d}/u3.bin'"));
    assert!(!o.status.success());
    assert!(o.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Resource temporarily unavailable"),
        "{o:?}"
    );
    assert!(alto_stub::read_attr(&fx.data.join("u3.bin")).unwrap().is_some());
    // root has a window of its own.
    let o = sh(&format!("cat '{d}/u3.bin' | sha256sum"));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with(&sha_hex(&files[5].1)));

    // A tier-2 that never answers (the object is a FIFO nobody writes): EIO after 2 s.
    let obj = fx.object_path("slow.bin");
    std::fs::rename(&obj, obj.with_extension("aside")).unwrap();
    assert!(Command::new("mkfifo").arg(&obj).status().unwrap().success());
    let started = Instant::now();
    let o = sh(&format!("cat '{d}/slow.bin'"));
    let waited = started.elapsed();
    assert!(!o.status.success());
    assert!(o.stdout.is_empty());
    assert!(String::from_utf8_lossy(&o.stderr).contains("Input/output error"), "{o:?}");
    assert!(waited >= Duration::from_secs(2) && waited < Duration::from_secs(20), "{waited:?}");
    // Unblock the hung fill so the agent can stop.
    let _ = std::fs::OpenOptions::new().write(true).open(&obj);

    fx.expect_registry("missing.bin", "rehydrated").await;
    fx.expect_registry("u1.bin", "rehydrated").await;
}

impl Fx {
    fn object_path_exists_for(&self, bytes: &[u8]) -> bool {
        let t = DirTarget::open(&self.tier2, alto_model::CustomerId(self.t.id)).unwrap();
        t.find_object(&Sha256Digest::of(bytes)).is_some()
    }
}

/// The agent dies (SIGKILL) while a reader waits on a stub whose tier-2 read hangs: the
/// reader stays blocked (the holder keeps the group), never sees zeros, and the next agent
/// answers it with the original bytes. Then the same with a deliberate stop (SIGTERM).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_wait_through_agent_crash_and_stop() {
    if !root() {
        return;
    }
    let mut fx = Fx::new("ext4", "").await;
    let files: Vec<(&str, Vec<u8>, u32)> =
        vec![("crash.bin", content(1, 1 << 20), 0o644), ("stop.bin", content(2, 1 << 20), 0o644)];
    fx.tier(&files).await;
    let mut holder_before = None::<i32>;
    for (i, (name, bytes, _)) in files.iter().enumerate() {
        fx.start(&[]);
        let holder = alto_agent::onaccess::holder::existing(&fx.cfg.state_dir).expect("a holder");
        if let Some(h) = holder_before {
            assert_eq!(holder.pid, h, "one holder across agent restarts");
        }
        holder_before = Some(holder.pid);
        let obj = fx.object_path(name);
        let aside = obj.with_extension("aside");
        std::fs::rename(&obj, &aside).unwrap();
        assert!(Command::new("mkfifo").arg(&obj).status().unwrap().success());
        let out = fx.cfg.state_dir.join(format!("{name}.out"));
        let mut reader = Command::new("cp")
            .arg(fx.data.join(name))
            .arg(&out)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        assert!(reader.try_wait().unwrap().is_none(), "the reader waits for the fill");
        fx.kill(if i == 0 { "-KILL" } else { "-TERM" });
        std::thread::sleep(Duration::from_millis(1000));
        assert!(reader.try_wait().unwrap().is_none(), "the reader stays blocked without an agent");
        // Tier-2 is back; so is the agent, which finds the access in its journal.
        let _ = std::fs::OpenOptions::new().write(true).custom_flags_nonblock().open(&obj);
        std::fs::remove_file(&obj).unwrap();
        std::fs::rename(&aside, &obj).unwrap();
        fx.start(&[]);
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = reader.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "the restarted agent did not answer the reader");
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut err = String::new();
        reader.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        assert!(status.success(), "{name}: reader failed: {err}");
        assert!(std::fs::read(&out).unwrap() == *bytes, "{name}: the reader got other bytes");
        assert_whole(&fx.data.join(name), bytes);
        assert!(
            fx.log().contains("answered accesses a previous agent left waiting"),
            "{}",
            fx.log()
        );
        fx.expect_registry(name, "rehydrated").await;
        fx.kill("-TERM");
    }
}

trait NonBlock {
    fn custom_flags_nonblock(&mut self) -> &mut Self;
}

impl NonBlock for std::fs::OpenOptions {
    fn custom_flags_nonblock(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt as _;
        self.custom_flags(libc::O_NONBLOCK)
    }
}

/// With the agent stopped for longer than `on_access.unattended_after`, the holder answers
/// accesses itself: ordinary files (even ones never seen before) go through, stubs get
/// EAGAIN, never zeros; the file server does not freeze. A new agent takes over again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_agent_never_freezes_ordinary_files() {
    if !root() {
        return;
    }
    let mut fx = Fx::new("ext4", "").await;
    let stub = content(1, 1 << 20);
    fx.tier(&[("stub.bin", stub.clone(), 0o644)]).await;
    fx.start(&[("ALTO_AGENT_ON_ACCESS__UNATTENDED_AFTER", "1s")]);
    fx.kill("-TERM");
    let d = fx.data.display().to_string();
    // Writing a new file raises events too: answered by the holder within about a second.
    let started = Instant::now();
    let o = sh(&format!("timeout 20 sh -c 'echo fresh > \"{d}/new.txt\" && cat \"{d}/new.txt\"'"));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "fresh\n", "{o:?}");
    assert!(started.elapsed() < Duration::from_secs(15));
    let o = sh(&format!("timeout 20 cat '{d}/stub.bin'"));
    assert!(!o.status.success());
    assert!(o.stdout.is_empty(), "a stub handed out {} bytes without an agent", o.stdout.len());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Resource temporarily unavailable"),
        "{o:?}"
    );
    fx.start(&[]);
    let o = sh(&format!("timeout 20 cat '{d}/stub.bin' | sha256sum"));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with(&sha_hex(&stub)), "{o:?}");
}

/// A file read while the agent runs carries an ignore mark; tiering it must remove the mark
/// (under the lease, before the punch), or the stub would read as zeros without an event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_read_before_it_was_tiered_is_recalled_after() {
    if !root() {
        return;
    }
    let mut fx = Fx::new("ext4", "").await;
    fx.start(&[]);
    let bytes = content(9, 1 << 20);
    let p = fx.data.join("warm.bin");
    std::fs::write(&p, &bytes).unwrap();
    let o = sh(&format!("cat '{}' | sha256sum", p.display()));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with(&sha_hex(&bytes)));
    fx.tier_existing(&[("warm.bin", bytes.len())]).await;
    // No cache drop here: the ignore mark, had it stayed, would still be on the inode.
    let o = sh(&format!("cat '{}' | sha256sum", p.display()));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with(&sha_hex(&bytes)), "read zeros?");
    assert_whole(&p, &bytes);
}

// ---- Range-first recall (stubs with a chunk manifest) ----

/// 64 KiB chunks for files of 1 MiB or more, so small files exercise many chunks.
const RANGE_CONFIG: &str = "range_fill_min_size = 1048576\nrange_fill_chunk_size = 65536\n";
const CHUNK: usize = 65536;

impl Fx {
    fn tier2_target(&self) -> DirTarget {
        DirTarget::open(&self.tier2, alto_model::CustomerId(self.t.id)).unwrap()
    }

    fn manifest_path(&self, bytes: &[u8]) -> PathBuf {
        let key = alto_tier2::ChunkManifest::rel_key(&Sha256Digest::of(bytes), CHUNK as u64);
        self.tier2_target().location().join(key)
    }

    /// Flips one byte of the stored object of `name` at `offset`.
    fn corrupt_object(&self, name: &str, offset: usize) -> (PathBuf, Vec<u8>) {
        let obj = self.object_path(name);
        let orig = std::fs::read(&obj).unwrap();
        let mut bad = orig.clone();
        bad[offset] ^= 0xff;
        std::fs::write(&obj, &bad).unwrap();
        (obj, orig)
    }
}

/// `len` bytes at `offset` of `path` read by `dd` (its own process, like any program).
fn dd(path: &Path, offset: usize, len: usize) -> Output {
    sh(&format!(
        "dd if='{}' bs={len} skip={offset} count=1 iflag=skip_bytes status=none",
        path.display()
    ))
}

/// A range-first recall lets its readers go chunk by chunk and verifies the whole file
/// after the last one: wait for that, then check.
async fn assert_whole_soon(p: &Path, bytes: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while alto_stub::read_attr(p).unwrap().is_some() {
        assert!(Instant::now() < deadline, "{}: still a stub", p.display());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_whole(p, bytes);
}

async fn wait_for_log(fx: &Fx, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !fx.log().contains(needle) {
        assert!(Instant::now() < deadline, "no {needle:?} in the log:\n{}", fx.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn range_first_recall(fs: &str) {
    let mut fx = Fx::new(fs, RANGE_CONFIG).await;
    let files: Vec<(&str, Vec<u8>, u32)> = vec![
        ("random.bin", content(1, 4 << 20), 0o644),
        ("bad.bin", content(2, 4 << 20), 0o644),
        ("mmap.bin", content(3, 4 << 20), 0o644),
        ("cat.bin", content(4, (6 << 20) + 123), 0o644),
        ("conc.bin", content(5, 8 << 20), 0o644),
        ("tampered.bin", content(6, 2 << 20), 0o644),
        ("forged.bin", content(7, 2 << 20), 0o644),
        ("old.bin", content(8, 2 << 20), 0o644),
        ("small.bin", content(9, 500_000), 0o644),
    ];
    fx.tier(&files).await;
    let bytes = |name: &str| &files.iter().find(|f| f.0 == name).unwrap().1;
    let data = fx.data.clone();
    let path = |name: &str| data.join(name);
    // Large files carry a chunk manifest (in tier-2, bound by its hash in the attribute).
    for (name, b, _) in &files {
        let a = alto_stub::read_attr(&path(name)).unwrap().unwrap();
        if *name == "small.bin" {
            assert_eq!(a.chunks, None, "below range_fill_min_size");
            continue;
        }
        let c = a.chunks.unwrap_or_else(|| panic!("{name}: no chunks field"));
        assert_eq!(c.chunk_size, CHUNK as u64);
        let m = std::fs::read(fx.manifest_path(b)).unwrap();
        assert_eq!(Sha256Digest::of(&m).0, c.manifest_sha256, "{name}: manifest bound");
    }
    // An old stub (attribute version 1, no chunks field) must keep recalling whole.
    {
        let p = path("old.bin");
        let mut a = alto_stub::read_attr(&p).unwrap().unwrap();
        a.chunks = None;
        rustix::fs::setxattr(
            &p,
            alto_stub::STUB_XATTR,
            &a.encode().unwrap(),
            rustix::fs::XattrFlags::REPLACE,
        )
        .unwrap();
    }
    // random.bin: a chunk far from the read is corrupt in tier-2. The reader of another
    // chunk gets its right bytes anyway: they were verified alone, before the rest (a
    // whole-file recall would have failed this reader).
    let (obj, orig) = fx.corrupt_object("random.bin", 60 * CHUNK + 5);
    // bad.bin: the reader of the corrupt chunk gets EIO, no byte.
    let (bad_obj, bad_orig) = fx.corrupt_object("bad.bin", 30 * CHUNK + 100);
    // tampered.bin: its manifest's bytes changed (one chunk hash): refused, recalled whole.
    let mp = fx.manifest_path(bytes("tampered.bin"));
    let text = std::fs::read_to_string(&mp).unwrap();
    let i = text.find("\"chunks\":\"").unwrap() + 10;
    let flipped = if &text[i..=i] == "0" { "1" } else { "0" };
    std::fs::write(&mp, format!("{}{flipped}{}", &text[..i], &text[i + 1..])).unwrap();
    // forged.bin: tier-2 rewritten consistently (a corrupt chunk and a manifest that hashes
    // it): the manifest is refused, the whole-file hash catches the chunk: EIO.
    let (_, _) = fx.corrupt_object("forged.bin", 5 * CHUNK + 1);
    {
        let obj = fx.object_path("forged.bin");
        let mut h = alto_tier2::ChunkHasher::new(std::fs::File::open(&obj).unwrap(), CHUNK as u64);
        std::io::copy(&mut h, &mut std::io::sink()).unwrap();
        let mut forged = h.finish();
        forged.sha256 = Sha256Digest::of(bytes("forged.bin"));
        std::fs::write(fx.manifest_path(bytes("forged.bin")), forged.encode()).unwrap();
    }
    fx.start(&[]);

    let off = 10 * CHUNK + 3 * 4096;
    let o = dd(&path("random.bin"), off, 4096);
    assert!(o.status.success(), "{o:?}");
    assert!(o.stdout == bytes("random.bin")[off..off + 4096], "random read: other bytes");
    wait_for_log(&fx, "chunk 60 ").await;
    let a = alto_stub::read_attr(&path("random.bin")).unwrap().expect("still a stub");
    assert_eq!(a.state, StubState::Recalling);
    // A later access retries (the chunk it needs first).
    let o = dd(&path("random.bin"), off, 4096);
    assert!(o.status.success() && o.stdout == bytes("random.bin")[off..off + 4096]);

    let o = dd(&path("bad.bin"), 30 * CHUNK, 4096);
    assert!(!o.status.success(), "a corrupt chunk was handed out");
    assert!(o.stdout.is_empty());
    assert!(String::from_utf8_lossy(&o.stderr).contains("Input/output error"), "{o:?}");
    assert!(alto_stub::read_attr(&path("bad.bin")).unwrap().is_some(), "stays a stub");

    // A copier that skips holes (cp uses SEEK_DATA on a sparse file) must not copy the
    // chunks not in place as zeros: its first read, at offset 0, waits for every chunk, and
    // here fails with the corrupt one.
    let copy = fx.cfg.state_dir.join("random.copy");
    let cp = |copy: &Path| {
        sh(&format!("cp --sparse=auto '{}' '{}'", path("random.bin").display(), copy.display()))
    };
    let o = cp(&copy);
    assert!(!o.status.success(), "cp of a partly filled stub succeeded: {o:?}");

    // Tier-2 repaired: a later access retries and completes both.
    std::fs::write(&obj, &orig).unwrap();
    std::fs::write(&bad_obj, &bad_orig).unwrap();
    let o = cp(&copy);
    assert!(o.status.success(), "{o:?}");
    assert!(std::fs::read(&copy).unwrap() == *bytes("random.bin"), "cp copied other bytes");
    for name in ["random.bin", "bad.bin"] {
        let o = sh(&format!("sha256sum '{}'", path(name).display()));
        assert!(String::from_utf8_lossy(&o.stdout).starts_with(&sha_hex(bytes(name))), "{name}");
        assert_whole_soon(&path(name), bytes(name)).await;
    }

    // mmap: a window in the middle first, then the whole file.
    let o = sh(&format!(
        "python3 -c 'import mmap,hashlib,sys; f=open(sys.argv[1],\"rb\"); m=mmap.mmap(f.fileno(),{},offset={},access=mmap.ACCESS_READ); print(hashlib.sha256(m[:]).hexdigest())' '{}'",
        4 * CHUNK,
        20 * CHUNK,
        path("mmap.bin").display()
    ));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        sha_hex(&bytes("mmap.bin")[20 * CHUNK..24 * CHUNK]),
        "mmap window"
    );
    let o = sh(&format!(
        "python3 -c 'import mmap,hashlib,sys; f=open(sys.argv[1],\"rb\"); m=mmap.mmap(f.fileno(),0,access=mmap.ACCESS_READ); print(hashlib.sha256(m[:]).hexdigest())' '{}'",
        path("mmap.bin").display()
    ));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), sha_hex(bytes("mmap.bin")), "mmap");

    // Sequential readers.
    let o = sh(&format!("cat '{}' | sha256sum", path("cat.bin").display()));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with(&sha_hex(bytes("cat.bin"))), "cat");

    // Concurrent readers of different ranges of one stub share one recall.
    let offsets: Vec<usize> = (0..8).map(|k| (k * 17 + 5) % 128 * CHUNK + k * 4096).collect();
    let readers: Vec<_> = offsets
        .iter()
        .map(|&off| {
            let p = path("conc.bin");
            std::thread::spawn(move || (off, dd(&p, off, 3 * 4096)))
        })
        .collect();
    for r in readers {
        let (off, o) = r.join().unwrap();
        assert!(o.status.success(), "{o:?}");
        assert!(o.stdout == bytes("conc.bin")[off..off + 3 * 4096], "reader at {off}");
    }

    // The tampered manifest is refused and the file recalled whole (and right).
    let o = dd(&path("tampered.bin"), 7 * CHUNK, 4096);
    assert!(o.status.success() && o.stdout == bytes("tampered.bin")[7 * CHUNK..7 * CHUNK + 4096]);
    assert!(fx.log().contains("chunk manifest refused"), "{}", fx.log());
    // The forged one: refused too, and the whole-file hash fails: EIO, still a stub.
    let o = dd(&path("forged.bin"), 5 * CHUNK, 4096);
    assert!(!o.status.success() && o.stdout.is_empty(), "forged content handed out");
    assert!(alto_stub::read_attr(&path("forged.bin")).unwrap().is_some());

    // The old stub and the small one recall whole, as before.
    for name in ["old.bin", "small.bin", "mmap.bin", "cat.bin", "conc.bin", "tampered.bin"] {
        let o = sh(&format!("sha256sum '{}'", path(name).display()));
        assert!(String::from_utf8_lossy(&o.stdout).starts_with(&sha_hex(bytes(name))), "{name}");
        assert_whole_soon(&path(name), bytes(name)).await;
    }
    for name in ["random.bin", "conc.bin", "old.bin"] {
        fx.expect_registry(name, "rehydrated").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_first_recall_on_ext4() {
    if !root() {
        return;
    }
    range_first_recall("ext4").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_first_recall_on_xfs() {
    if !root() {
        return;
    }
    range_first_recall("xfs").await;
}

/// The agent dies (SIGKILL) during range-first recalls: one stub left partly filled (a
/// later chunk failed), one whose tier-2 read hangs while a reader of a range waits. The
/// next agent answers the waiting reader with the right bytes and refills both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_first_recall_survives_agent_crash() {
    if !root() {
        return;
    }
    let mut fx = Fx::new("ext4", RANGE_CONFIG).await;
    let partial = content(1, 4 << 20);
    let hang = content(2, 4 << 20);
    fx.tier(&[("partial.bin", partial.clone(), 0o644), ("hang.bin", hang.clone(), 0o644)]).await;
    fx.start(&[]);
    let (pobj, porig) = fx.corrupt_object("partial.bin", 50 * CHUNK);
    let o = dd(&fx.data.join("partial.bin"), 2 * CHUNK, 4096);
    assert!(o.status.success() && o.stdout == partial[2 * CHUNK..2 * CHUNK + 4096]);
    wait_for_log(&fx, "chunk 50 ").await;
    // hang.bin: its object is a FIFO nobody writes: the reader blocks.
    let obj = fx.object_path("hang.bin");
    let aside = obj.with_extension("aside");
    std::fs::rename(&obj, &aside).unwrap();
    assert!(Command::new("mkfifo").arg(&obj).status().unwrap().success());
    let off = 33 * CHUNK;
    let mut reader = Command::new("dd")
        .arg(format!("if={}", fx.data.join("hang.bin").display()))
        .args(["bs=8192", &format!("skip={off}"), "count=1", "iflag=skip_bytes", "status=none"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(reader.try_wait().unwrap().is_none(), "the reader waits for its chunk");
    fx.kill("-KILL");
    std::thread::sleep(Duration::from_millis(1000));
    assert!(reader.try_wait().unwrap().is_none(), "the reader stays blocked without an agent");
    let _ = std::fs::OpenOptions::new().write(true).custom_flags_nonblock().open(&obj);
    std::fs::remove_file(&obj).unwrap();
    std::fs::rename(&aside, &obj).unwrap();
    std::fs::write(&pobj, &porig).unwrap();
    fx.start(&[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while reader.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the restarted agent did not answer the reader");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = reader.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout == hang[off..off + 8192], "the waiting reader got other bytes");
    assert_whole_soon(&fx.data.join("hang.bin"), &hang).await;
    let o = sh(&format!("sha256sum '{}'", fx.data.join("partial.bin").display()));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with(&sha_hex(&partial)));
    assert_whole_soon(&fx.data.join("partial.bin"), &partial).await;
    fx.expect_registry("hang.bin", "rehydrated").await;
}
