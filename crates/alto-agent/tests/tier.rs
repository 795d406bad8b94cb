//! Tiering against a real server and real files: plan, `alto-agent tier-once`, stubs whose
//! tier-2 objects hash right, `alto-agent recall`; changed files and corrupt objects; and the
//! agent killed with SIGKILL at random instants while it works.
//!
//! Needs root (`trusted.*` attributes, leases) and a file system with holes and extended
//! attributes under /tmp (ext4 on the lab and CI machines); prints SKIPPED otherwise.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Read as _;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use alto_agent::config::AgentConfig;
use alto_agent::daemon;
use alto_agent::spool::Spool;
use alto_stub::StubState;
use alto_test_support::{api, TestApp, TestTenant};
use alto_tier2::{DirTarget, ObjectKey, Sha256Digest, Target};
use rand::{Rng as _, SeedableRng as _};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

const MIB: usize = 1 << 20;

fn root() -> bool {
    alto_test_services::require_root("trusted.* attributes, leases")
}

/// One original file: where, what it hashes to, its mtime.
#[derive(Debug, Clone)]
struct Orig {
    path: PathBuf,
    size: u64,
    sha256: Sha256Digest,
    mtime: (i64, i64),
}

fn sha_file(p: &Path) -> Sha256Digest {
    let mut f = std::fs::File::open(p).unwrap();
    let mut v = Vec::new();
    f.read_to_end(&mut v).unwrap();
    Sha256Digest::of(&v)
}

fn content(rng: &mut rand::rngs::StdRng, size: usize) -> Vec<u8> {
    let mut v = vec![0u8; size];
    if rng.random_bool(0.5) {
        rng.fill(&mut v[..]);
    } else {
        // Compressible, but unique per file.
        let tag =
            format!("{:016x} the quick brown fox jumps over the lazy dog\n", rng.random::<u64>());
        for (i, b) in v.iter_mut().enumerate() {
            *b = tag.as_bytes()[i % tag.len()];
        }
    }
    v
}

/// Writes `n` files below `dir` (nested directories), sizes from `size_of`; returns them.
fn make_tree(
    dir: &Path,
    n: usize,
    seed: u64,
    mut size_of: impl FnMut(usize, &mut rand::rngs::StdRng) -> usize,
) -> Vec<Orig> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut out = Vec::new();
    for i in 0..n {
        let d = dir.join(format!("d{}", i % 7)).join(format!("e{}", i % 3));
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join(format!("f{i:04}.dat"));
        let size = size_of(i, &mut rng);
        let bytes = content(&mut rng, size);
        std::fs::write(&p, &bytes).unwrap();
        out.push(orig(&p, &bytes));
    }
    out
}

fn orig(p: &Path, bytes: &[u8]) -> Orig {
    let m = std::fs::symlink_metadata(p).unwrap();
    Orig {
        path: p.to_owned(),
        size: bytes.len() as u64,
        sha256: Sha256Digest::of(bytes),
        mtime: (m.mtime(), m.mtime_nsec()),
    }
}

/// An enrolled host with its state directory, data tree, tier-2 base and config file.
struct Host {
    t: TestTenant,
    host_id: Uuid,
    cfg: AgentConfig,
    config_file: PathBuf,
    data: PathBuf,
    tier2: PathBuf,
    _dirs: Vec<tempfile::TempDir>,
}

impl Host {
    async fn new(app: &TestApp) -> Host {
        let t = app.new_tenant("Acme").await;
        let created = app.new_host(&t, "fs1").await;
        let state = tempfile::tempdir_in("/tmp").unwrap();
        let data = tempfile::tempdir_in("/tmp").unwrap();
        let tier2 = tempfile::tempdir_in("/tmp").unwrap();
        daemon::enroll(&app.base_url, &created.enrollment.token, state.path()).await.unwrap();
        let data_path = data.path().canonicalize().unwrap();
        let cfg = AgentConfig {
            state_dir: state.path().to_owned(),
            roots: vec![data_path.clone()],
            tier2: alto_agent::config::Tier2Config { directory_base: tier2.path().to_owned() },
            tier_poll_interval: Duration::from_secs(1),
            ..Default::default()
        };
        let config_file = state.path().join("agent.toml");
        std::fs::write(
            &config_file,
            format!(
                "state_dir = {:?}\nroots = [{:?}]\n[tier2]\ndirectory_base = {:?}\n",
                cfg.state_dir, data_path, cfg.tier2.directory_base
            ),
        )
        .unwrap();
        Host {
            t,
            host_id: created.host.id,
            cfg,
            config_file,
            data: data_path,
            tier2: tier2.path().to_owned(),
            _dirs: vec![state, data, tier2],
        }
    }

    /// Safety window 0, no planning after ingest, one rule tiering everything; the clock
    /// ten years on (files made now are in the fake clock's future).
    async fn rules(&mut self, app: &TestApp, compression: &str) {
        self.rules_to(app, compression, "default").await;
    }

    /// [`Host::rules`] with the rule tiering to `target`.
    async fn rules_to(&mut self, app: &TestApp, compression: &str, target: &str) {
        app.tier_everything_later(&mut self.t, target, compression).await;
    }

    async fn scan_and_upload(&self, app: &TestApp) {
        let cfg = self.cfg.clone();
        let scan = tokio::task::spawn_blocking(move || {
            daemon::scan_into_spool(&cfg, &Spool::open(&cfg.state_dir).unwrap())
        })
        .await
        .unwrap()
        .unwrap();
        let id = alto_agent::state::Identity::load(&self.cfg.state_dir).unwrap();
        let client = daemon::host_client(&self.cfg, &id).unwrap();
        daemon::drain(&client, &Spool::open(&self.cfg.state_dir).unwrap(), 0).await.unwrap();
        assert_eq!(app.wait_for_scan(&self.t, scan).await.status, "completed");
    }

    async fn plan(&self) -> Value {
        let (st, p) = api(
            &self.t.admin,
            Method::POST,
            &format!("/tenants/{}/plans", self.t.id),
            Some(json!({})),
        )
        .await;
        assert_eq!(st, 201, "{p}");
        p
    }

    async fn jobs(&self) -> Vec<Value> {
        let (st, v) =
            api(&self.t.admin, Method::GET, &format!("/tenants/{}/jobs", self.t.id), None).await;
        assert_eq!(st, 200, "{v}");
        v["items"].as_array().cloned().unwrap_or_default()
    }

    async fn job_files(&self, job: &str) -> Vec<Value> {
        let (st, v) = api(
            &self.t.admin,
            Method::GET,
            &format!("/tenants/{}/jobs/{job}/files", self.t.id),
            None,
        )
        .await;
        assert_eq!(st, 200, "{v}");
        assert!(v["next_cursor"].is_null(), "one page holds every file of a job: {v}");
        v["items"].as_array().cloned().expect("a page of files")
    }

    fn agent(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_alto-agent"));
        c.args(args).arg("--config").arg(&self.config_file);
        c.env("ALTO_LOG", "info");
        // The trees live on the machine's root file system, which these tests must not mark;
        // on-access recall has its own tests on loop devices (on_access.rs).
        c.env("ALTO_AGENT_ON_ACCESS__ENABLED", "false");
        c
    }

    /// `alto-agent tier-once` on a blocking thread (the server runs on this runtime).
    async fn tier_once(&self) -> Output {
        let mut c = self.agent(&["tier-once"]);
        let o = tokio::task::spawn_blocking(move || c.output().unwrap()).await.unwrap();
        eprintln!(
            "tier-once: {}\n{}\n{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            tail(&String::from_utf8_lossy(&o.stderr), 3000)
        );
        o
    }

    async fn recall(&self, paths: &[PathBuf]) -> Output {
        let mut c = self.agent(&["recall"]);
        c.args(paths);
        tokio::task::spawn_blocking(move || c.output().unwrap()).await.unwrap()
    }

    fn target(&self) -> Target {
        Target::from(DirTarget::open(&self.tier2, alto_model::CustomerId(self.t.id)).unwrap())
    }

    fn journal_files(&self) -> Vec<PathBuf> {
        alto_agent::journal::Journal::list(&alto_agent::journal::journal_dir(&self.cfg.state_dir))
            .unwrap()
    }
}

fn tail(s: &str, n: usize) -> &str {
    let mut start = s.len().saturating_sub(n);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// What a file is now, checked against its original.
#[derive(Debug, PartialEq, Eq)]
enum Now {
    Original,
    Stub(ObjectKey),
}

/// Asserts that `o` is either byte-identical to the original (no attribute) or a stub whose
/// tier-2 object holds exactly the original (size and mtime kept, blocks given back).
fn check(target: &Target, o: &Orig) -> Now {
    let p = &o.path;
    let m = std::fs::symlink_metadata(p).unwrap();
    assert_eq!(m.size(), o.size, "{}: size", p.display());
    assert_eq!((m.mtime(), m.mtime_nsec()), o.mtime, "{}: mtime", p.display());
    match alto_stub::read_attr(p).unwrap() {
        None => {
            assert_eq!(sha_file(p), o.sha256, "{}: an unstubbed file must be intact", p.display());
            Now::Original
        }
        Some(a) => {
            assert_eq!(a.state, StubState::Stubbed, "{}: {a:?}", p.display());
            assert_eq!(a.sha256, o.sha256.0, "{}: stub hash", p.display());
            assert_eq!((a.size, a.mtime_ns), (o.size, o.mtime.0 * 1_000_000_000 + o.mtime.1));
            // The kept head, the attribute block, and the partial last block: alto-stub
            // punches [4096, size) exactly, and ext4 keeps a block that straddles the end
            // allocated (so `is_sparse_stub_layout` is false for sizes that are not a
            // multiple of the block size).
            assert!(
                m.blocks() * 512 <= 4096 + 2 * m.blksize(),
                "{}: {} bytes, {} blocks of 512, blksize {}",
                p.display(),
                m.size(),
                m.blocks(),
                m.blksize()
            );
            if o.size > 3 * 4096 {
                assert!(m.blocks() * 512 < o.size, "{}: blocks did not shrink", p.display());
            }
            let key: ObjectKey = a.object_key.parse().unwrap();
            assert_eq!(key.sha256, o.sha256);
            let mut got = Vec::new();
            target.get(&key, &mut got).unwrap();
            assert_eq!(Sha256Digest::of(&got), o.sha256, "{}: tier-2 object", p.display());
            Now::Stub(key)
        }
    }
}

fn assert_recalled(o: &Orig) {
    assert_eq!(alto_stub::read_attr(&o.path).unwrap(), None, "{}", o.path.display());
    assert_eq!(sha_file(&o.path), o.sha256, "{}: recalled bytes", o.path.display());
    let m = std::fs::symlink_metadata(&o.path).unwrap();
    assert_eq!((m.mtime(), m.mtime_nsec()), o.mtime);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_tier_once_stub_verify_and_recall_end_to_end() {
    if !root() {
        return;
    }
    let app = TestApp::spawn().await;
    let mut h = Host::new(&app).await;
    h.rules(&app, "zstd").await;
    let mut files = make_tree(&h.data, 200, 7, |i, rng| match i % 10 {
        0 => 0,
        1..=4 => rng.random_range(1..4096),
        5..=7 => rng.random_range(4097..200_000),
        8 => rng.random_range(200_000..MIB),
        _ => rng.random_range(MIB..3 * MIB),
    });
    // Names the batch must escape, and two files with the same content (one object).
    for name in [&b"bad\xff\xfename.bin"[..], b"back\\slash\\x41.txt", b"dup-a", b"dup-b"] {
        let p = h.data.join(OsStr::from_bytes(name));
        let bytes = if name.starts_with(b"dup") { vec![7u8; 300_000] } else { name.repeat(5000) };
        std::fs::write(&p, &bytes).unwrap();
        files.push(orig(&p, &bytes));
    }
    h.scan_and_upload(&app).await;
    let plan = h.plan().await;
    assert_eq!(plan["stats"]["files"], files.len() as u64, "{plan}");

    // Changed after planning: appended to. It must never become a stub.
    let changed = files[15].clone();
    {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new().append(true).open(&changed.path).unwrap();
        f.write_all(b"one more line\n").unwrap();
    }
    let changed_sha = sha_file(&changed.path);

    let o = h.tier_once().await;
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(&format!("stubbed      {}", files.len() - 1)), "{out}");
    assert!(out.contains("skipped      1"), "{out}");

    let target = h.target();
    let mut stubs = BTreeMap::new();
    for f in &files {
        if f.path == changed.path {
            continue;
        }
        match check(&target, f) {
            Now::Stub(k) => {
                stubs.insert(f.path.clone(), k);
            }
            Now::Original => panic!("{} was not stubbed", f.path.display()),
        }
    }
    assert_eq!(alto_stub::read_attr(&changed.path).unwrap(), None);
    assert_eq!(sha_file(&changed.path), changed_sha, "the changed file is untouched");
    // Identical content is stored once; compressible content is stored compressed.
    let dup_a = &stubs[&h.data.join("dup-a")];
    assert_eq!(dup_a, &stubs[&h.data.join("dup-b")]);
    assert!(std::fs::metadata(target.as_dir().unwrap().object_path(dup_a)).unwrap().len() < 10_000);
    assert!(h.journal_files().is_empty(), "the journal is gone once the job completed");

    // The server's view.
    let jobs = h.jobs().await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["state"], "succeeded", "{}", jobs[0]);
    let jf = h.job_files(jobs[0]["id"].as_str().unwrap()).await;
    let by_state = |s: &str| jf.iter().filter(|f| f["state"] == s).count();
    assert_eq!(by_state("succeeded"), files.len() - 1, "{jf:?}");
    assert_eq!(by_state("skipped"), 1);
    let skipped = jf.iter().find(|f| f["state"] == "skipped").unwrap();
    assert_eq!(skipped["error"], "changed", "{skipped}");
    let (_, sum) =
        api(&h.t.admin, Method::GET, &format!("/tenants/{}/stubs/summary", h.t.id), None).await;
    assert_eq!(sum["stubs"], files.len() as u64 - 1, "{sum}");
    assert_eq!(sum["per_host"][0]["host_id"], h.host_id.to_string(), "{sum}");

    // A corrupted tier-2 object is caught by the recall; the stub stays a stub.
    let victim = files.iter().find(|f| f.size > MIB as u64).unwrap();
    let key = &stubs[&victim.path];
    let obj = target.as_dir().unwrap().object_path(key);
    let good = std::fs::read(&obj).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x40;
    std::fs::write(&obj, &bad).unwrap();
    let r = h.recall(std::slice::from_ref(&victim.path)).await;
    eprintln!("{}", String::from_utf8_lossy(&r.stderr));
    assert!(!r.status.success(), "a corrupt object must fail the recall");
    assert_eq!(check_stub_only(&target, victim), *key);
    std::fs::write(&obj, &good).unwrap();

    // Server unreachable: the recall still happens, with a warning.
    let offline = h.data.join("dup-b");
    let dead = h.config_file.with_file_name("dead-server.toml");
    let cfg_text = std::fs::read_to_string(&h.config_file).unwrap();
    std::fs::write(&dead, format!("server_url = \"http://127.0.0.1:9\"\n{cfg_text}")).unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_alto-agent"));
    c.arg("recall").arg("--config").arg(&dead).arg(&offline);
    let r = tokio::task::spawn_blocking(move || c.output().unwrap()).await.unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(String::from_utf8_lossy(&r.stderr).contains("the server was not told"));
    assert_recalled(files.iter().find(|f| f.path == offline).unwrap());
    stubs.remove(&offline);

    // Recall everything else: exact bytes and times back, the server told.
    let paths: Vec<PathBuf> = stubs.keys().cloned().collect();
    let r = h.recall(&paths).await;
    let stdout = String::from_utf8_lossy(&r.stdout);
    assert!(r.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&r.stderr));
    assert!(stdout.contains(&format!("recalled {} file(s)", paths.len())), "{stdout}");
    assert!(stdout.contains("0 not reported to the server"), "{stdout}");
    for f in &files {
        if f.path != changed.path {
            assert_recalled(f);
        }
    }
    let (_, sum) =
        api(&h.t.admin, Method::GET, &format!("/tenants/{}/stubs/summary", h.t.id), None).await;
    // The offline recall was never reported: the registry still counts that one stub.
    assert_eq!(sum["stubs"], 1, "{sum}");
    assert_eq!(sum["per_host"][0]["rehydrated"], files.len() as u64 - 2, "{sum}");
    // Not a stub (any more): refused, nothing changes.
    let r = h.recall(std::slice::from_ref(&files[0].path)).await;
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("not a stub"));
    assert_recalled(&files[0]);
}

/// A stub's attribute and layout, without reading its object (which may be corrupt).
fn check_stub_only(target: &Target, o: &Orig) -> ObjectKey {
    let a = alto_stub::read_attr(&o.path).unwrap().expect("still a stub");
    assert_eq!(a.state, StubState::Stubbed);
    assert_eq!(a.sha256, o.sha256.0);
    let m = std::fs::symlink_metadata(&o.path).unwrap();
    assert!(m.blocks() * 512 <= 4096 + 2 * m.blksize());
    assert_eq!((m.size(), m.mtime(), m.mtime_nsec()), (o.size, o.mtime.0, o.mtime.1));
    let key: ObjectKey = a.object_key.parse().unwrap();
    assert!(target.as_dir().unwrap().object_path(&key).is_file());
    key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_storage_hands_the_job_back_and_touches_nothing() {
    if !root() {
        return;
    }
    let app = TestApp::spawn().await;
    let mut h = Host::new(&app).await;
    h.rules(&app, "none").await;
    let files = make_tree(&h.data, 20, 3, |_, rng| rng.random_range(5000..50_000));
    h.scan_and_upload(&app).await;
    h.plan().await;
    // The tier-2 mount is gone.
    std::fs::remove_dir(&h.tier2).unwrap();
    let o = h.tier_once().await;
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("storage unavailable"));
    for f in &files {
        assert_eq!(alto_stub::read_attr(&f.path).unwrap(), None);
        assert_eq!(sha_file(&f.path), f.sha256);
    }
    let jobs = h.jobs().await;
    assert_eq!(jobs[0]["state"], "queued", "re-queued with backoff: {}", jobs[0]);
    assert!(h.journal_files().is_empty());
    // The mount is back and the backoff over: the job runs.
    std::fs::create_dir(&h.tier2).unwrap();
    app.clock.advance(chrono::Duration::hours(1));
    let o = h.tier_once().await;
    assert!(o.status.success());
    let target = h.target();
    for f in &files {
        assert!(matches!(check(&target, f), Now::Stub(_)));
    }
    assert_eq!(h.jobs().await[0]["state"], "succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_tiers_queued_jobs() {
    if !root() {
        return;
    }
    let app = TestApp::spawn().await;
    let mut h = Host::new(&app).await;
    h.rules(&app, "zstd").await;
    let files = make_tree(&h.data, 30, 5, |_, rng| rng.random_range(0..100_000));
    h.scan_and_upload(&app).await;
    h.plan().await;
    let cancel = tokio_util::sync::CancellationToken::new();
    // No roots: this daemon only heartbeats and tiers.
    let cfg = AgentConfig { roots: vec![], ..h.cfg.clone() };
    let task = tokio::spawn(daemon::run(cfg, cancel.clone()));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut online = false;
    loop {
        online |= app.state.link.is_online(h.host_id);
        let jobs = h.jobs().await;
        if jobs.iter().all(|j| j["state"] == "succeeded") {
            break;
        }
        assert!(Instant::now() < deadline, "the daemon did not finish the job: {jobs:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(online, "the daemon took its job over the agent link");
    let id = alto_agent::state::Identity::load(&h.cfg.state_dir).unwrap();
    assert!(id.link.is_some_and(|l| l.url.starts_with("https://")), "enrollment named the link");
    cancel.cancel();
    task.await.unwrap().unwrap();
    let target = h.target();
    for f in &files {
        assert!(matches!(check(&target, f), Now::Stub(_)), "{}", f.path.display());
    }
}

/// The key test: the agent is SIGKILLed at ≥ 50 random instants while it tiers ≥ 1,000
/// files, restarted each time, then run cleanly; half the runs take their jobs over the
/// agent link (`run`), half over REST (`tier-once`), and the server replica they talk to is
/// killed (all tasks and connections dropped at once) and restarted at some of those instants
/// while the agent works. Every file must end either byte-identical or a stub whose tier-2
/// object has the original's SHA-256, and recall must restore it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_instants_never_loses_a_byte() {
    if !root() {
        return;
    }
    let app = TestApp::spawn().await;
    let mut h = Host::new(&app).await;
    h.rules(&app, "none").await;
    let size_of = |i: usize, rng: &mut rand::rngs::StdRng| {
        if i.is_multiple_of(25) {
            rng.random_range(MIB..8 * MIB)
        } else if i.is_multiple_of(5) {
            rng.random_range(4097..256 * 1024)
        } else {
            rng.random_range(0..4097)
        }
    };
    let mut files = make_tree(&h.data, 1100, 11, size_of);
    let total: u64 = files.iter().map(|f| f.size).sum();
    eprintln!("{} files, {} MiB", files.len(), total >> 20);
    h.scan_and_upload(&app).await;
    // The work is planned in parts, so that there is always some left while the agent and
    // the server are being killed: the next part is planned when a run found nothing to do.
    let plan_part = || async {
        let (st, p) = api(
            &h.t.admin,
            Method::POST,
            &format!("/tenants/{}/plans", h.t.id),
            Some(json!({ "max_files": 400 })),
        )
        .await;
        assert_eq!(st, 201, "{p}");
        p["stats"]["files"].as_u64().unwrap()
    };
    let mut planned = plan_part().await;
    assert_eq!(planned, 400);

    // The agent talks to a second replica that can be killed; the first one (the test's API)
    // keeps running.
    let (http, link) = (alto_test_support::free_port(), alto_test_support::free_port());
    let mut replica = Some(tokio::task::block_in_place(|| app.start_replica(http, link)));
    let r = replica.as_ref().unwrap();
    std::fs::write(
        &h.config_file,
        format!(
            "server_url = {:?}\nstate_dir = {:?}\n[tier2]\ndirectory_base = {:?}\n\
             [link]\nurl = {:?}\nca_file = {:?}\n",
            r.url(),
            h.cfg.state_dir,
            h.cfg.tier2.directory_base,
            r.link_url(),
            app.data_dir.path().join("tls/ca.pem"),
        ),
    )
    .unwrap();

    let started = Instant::now();
    let mut rng = rand::rngs::StdRng::seed_from_u64(rand::random());
    let (mut kills, mut exited, mut server_kills, mut round) = (0, 0, 0, 0u32);
    let mut more = 0u64;
    // Bounded by rounds, not by time: a fast machine that finishes the work early gets more
    // work (below), a slow one simply takes longer; neither changes what is proven.
    while (kills < 50 || server_kills < 5) && round < 2_000 {
        round += 1;
        let daemon = round % 2 == 0;
        let mode = if daemon { "run" } else { "tier-once" };
        let mut child =
            h.agent(&[mode]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        // The daemon connects over TLS and waits for an offer first: give it longer.
        let wait = Duration::from_millis(if daemon {
            rng.random_range(100..=1200)
        } else {
            rng.random_range(5..=400)
        });
        if round % 5 == 3 {
            // Kill the server under the working agent, then bring it back.
            tokio::time::sleep(wait / 2).await;
            if let Some(r) = replica.take() {
                r.kill();
            }
            server_kills += 1;
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..=300))).await;
            replica = Some(tokio::task::block_in_place(|| app.start_replica(http, link)));
        }
        let (k, e) = tokio::task::spawn_blocking(move || {
            std::thread::sleep(wait);
            let done = child.try_wait().unwrap().is_some();
            if !done {
                child.kill().unwrap(); // SIGKILL
            }
            child.wait().unwrap();
            (u32::from(!done), u32::from(done))
        })
        .await
        .unwrap();
        kills += k;
        exited += e;
        if e == 1 && !daemon {
            // A run that ends on its own took back every job a killed run had claimed, even
            // one it had not journaled yet (`resume` on its first claim): nothing is left.
            let jobs = h.jobs().await;
            assert!(jobs.iter().all(|j| j["state"] == "succeeded"), "{jobs:?}");
            if planned < files.len() as u64 {
                planned += plan_part().await;
            } else if kills >= 50 && server_kills >= 5 {
                break;
            } else {
                // Every planned file is done but the kills are not: this machine is faster
                // than the work. Make more files (new names, same size mix), scan them in and
                // plan again; the zero-loss checks below cover them like the first ones.
                more += 1;
                assert!(more <= 40, "{more} extra batches and still only {kills} kills");
                let extra =
                    make_tree(&h.data.join(format!("more{more:02}")), 300, 11 + more, size_of);
                eprintln!(
                    "all {planned} files done after {kills} agent and {server_kills} server kills: \
                     {} more files",
                    extra.len()
                );
                files.extend(extra);
                h.scan_and_upload(&app).await;
                planned += plan_part().await;
            }
        }
    }
    eprintln!(
        "{kills} agent kills, {server_kills} server kills, {exited} runs ended on their own, \
         {more} extra batches, {} files, {round} rounds, {:?}",
        files.len(),
        started.elapsed()
    );
    assert!(kills >= 50, "only {kills} runs were killed while working");
    assert!(server_kills >= 5, "only {server_kills} server kills");
    let stubbed_by_killed_runs =
        files.iter().filter(|f| alto_stub::read_attr(&f.path).unwrap().is_some()).count();
    eprintln!("{stubbed_by_killed_runs} files carry a stub attribute after the killed runs");

    // One clean run finishes (or rolls back) everything, including a job a run killed
    // between the server's claim and its journal had left leased: no lease has to expire.
    while planned < files.len() as u64 {
        planned += plan_part().await;
    }
    let o = h.tier_once().await;
    assert!(o.status.success());
    let jobs = h.jobs().await;
    assert!(
        jobs.iter().all(|j| j["state"] == "succeeded"),
        "jobs not done after a clean run, without waiting for any lease: {jobs:?}"
    );
    assert!(h.journal_files().is_empty());

    let target = h.target();
    let mut stubs = Vec::new();
    let mut originals = 0;
    for f in &files {
        match check(&target, f) {
            Now::Stub(_) => stubs.push(f.clone()),
            Now::Original => originals += 1,
        }
    }
    eprintln!("{} stubs, {originals} intact originals", stubs.len());
    // The server agrees with the files.
    let mut server_stubbed = 0;
    for j in h.jobs().await {
        let jf = h.job_files(j["id"].as_str().unwrap()).await;
        server_stubbed += jf.iter().filter(|f| f["state"] == "succeeded").count();
    }
    assert_eq!(server_stubbed, stubs.len(), "server's stubbed files vs stubs on disk");
    assert_eq!(originals, 0, "every file was resumed and stubbed");

    // Reconciliation: garbage in tier-2 (an object and sidecar the registry never heard of,
    // as a copy whose `staged` report was lost would leave) goes; everything the registry
    // holds stays.
    let orphan = {
        let data = b"an orphaned copy: never staged, never stubbed".repeat(100);
        let meta = alto_tier2::PutMeta {
            host_id: alto_model::HostId(h.host_id),
            path: h.data.join("gone/orphan.bin").display().to_string(),
            path_escaped: false,
            size: data.len() as u64,
            mtime_ns: 0,
            atime_ns: 0,
            expected_sha256: None,
            compression: alto_tier2::Compression::None,
            created_at: alto_model::Clock::now(&alto_model::SystemClock)
                - chrono::Duration::hours(2),
        };
        target.put(&data[..], &meta).unwrap().key()
    };
    let o = h.agent(&["reconcile-tier2", "--grace", "0s", "--output", "json"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rep: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rep["refs"], files.len() as u64 + 1, "{rep}");
    assert_eq!(rep["live"], files.len() as u64, "every stub's sidecar is live: {rep}");
    assert_eq!(
        (rep["refs_deleted"].as_u64(), rep["objects_deleted"].as_u64()),
        (Some(1), Some(1)),
        "{rep}"
    );
    assert!(matches!(target.verify(&orphan), Err(alto_tier2::Tier2Error::NotFound(_))));
    for f in stubs.iter().step_by(50) {
        assert!(matches!(check(&target, f), Now::Stub(_)), "a live object survived");
    }

    // Recall a sample and every file over 1 MiB.
    let mut sample: Vec<Orig> = stubs.iter().filter(|f| f.size > MIB as u64).cloned().collect();
    let big = sample.len();
    sample.extend(stubs.iter().filter(|f| f.size <= MIB as u64).step_by(15).cloned());
    assert!(sample.len() >= 50 + big.min(1));
    let paths: Vec<PathBuf> = sample.iter().map(|f| f.path.clone()).collect();
    let r = h.recall(&paths).await;
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    for f in &sample {
        assert_recalled(f);
    }
    eprintln!("recalled {} files ({big} over 1 MiB); total {:?}", sample.len(), started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_job_stops_after_the_files_in_flight() {
    if !root() {
        return;
    }
    let app = TestApp::spawn().await;
    let mut h = Host::new(&app).await;
    h.rules(&app, "none").await;
    let files = make_tree(&h.data, 40, 9, |_, rng| rng.random_range(10_000..300_000));
    h.scan_and_upload(&app).await;
    h.plan().await;
    let id = alto_agent::state::Identity::load(&h.cfg.state_dir).unwrap();
    let server = alto_agent::api::ServerApi::new(daemon::host_client(&h.cfg, &id).unwrap());
    let mut opts = alto_agent::tier::TierOptions::new(h.tier2.clone(), &h.cfg.state_dir);
    opts.parallel = 1;
    opts.batch_files = 2;
    opts.progress_interval = Duration::from_millis(30);
    let exec = alto_agent::tier::TierExecutor::new(
        std::sync::Arc::new(server.clone()),
        opts,
        id.host_id,
        id.tenant_id,
        tokio_util::sync::CancellationToken::new(),
    );
    let (jobs, bad) = server.claim(1, false).await.unwrap();
    assert!(bad.is_empty());
    let doc = jobs.into_iter().next().unwrap();
    assert_eq!(doc.file_count(), 40);
    let (st, j) = api(
        &h.t.admin,
        Method::POST,
        &format!("/tenants/{}/jobs/{}/cancel", h.t.id, doc.job_id),
        None,
    )
    .await;
    assert_eq!(st, 200, "{j}");
    let job = doc.job_id;
    let report = exec.execute(doc).await.unwrap();
    assert_eq!(report.end, Some(alto_agent::job::JobEnd::Cancelled), "{report:?}");
    assert!(report.stubbed < 40, "{report:?}");
    let target = h.target();
    let stubs = files.iter().filter(|f| matches!(check(&target, f), Now::Stub(_))).count();
    assert_eq!(stubs as u64, report.stubbed);
    let jf = h.job_files(&job.to_string()).await;
    assert_eq!(jf.iter().filter(|f| f["state"] == "succeeded").count(), stubs);
    assert_eq!(jf.iter().filter(|f| f["state"] == "cancelled").count(), 40 - stubs, "{jf:?}");
    assert_eq!(h.jobs().await[0]["state"], "cancelled");
    assert!(h.journal_files().is_empty());
}

/// The main flow to every remote kind of tier-2 target, each a real server on 127.0.0.1: a
/// storage target and a rule created through the API, a plan, the daemon (jobs over the agent
/// link), then every file a stub whose object the target returns with the original's hash,
/// and `alto-agent recall` (with the settings the agent remembered) restores the bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_tiers_to_s3_azure_and_smb_targets() {
    if !root() {
        return;
    }
    use alto_test_services as ts;
    let moto = ts::Moto::start();
    let azurite = ts::Azurite::start();
    let samba = ts::Samba::start();
    let mut specs: Vec<(&str, Value)> = Vec::new();
    if let Some(m) = &moto {
        m.create_bucket("tier");
        specs.push(("s3", m.spec("s3://tier/site-a")));
    }
    if let Some(a) = &azurite {
        a.create_container("tier");
        specs.push(("azure", a.spec("azure://tier/site-a", ts::AZURITE_KEY)));
    }
    if let Some(s) = &samba {
        specs.push(("smb", s.spec("share", ts::SMB_PASSWORD)));
    }
    for (kind, spec) in specs {
        let app = TestApp::spawn().await;
        let mut h = Host::new(&app).await;
        let body = json!({ "name": format!("{kind}-tier"), "kind": spec["kind"],
            "location": spec["location"], "config": spec["config"] });
        let (st, v) = api(
            &h.t.admin,
            Method::POST,
            &format!("/tenants/{}/storage-targets", h.t.id),
            Some(body),
        )
        .await;
        assert_eq!(st, 201, "{kind}: {v}");
        h.rules_to(&app, if kind == "azure" { "zstd" } else { "none" }, &format!("{kind}-tier"))
            .await;
        let files = make_tree(&h.data, 24, 4, |i, rng| {
            if i % 8 == 0 {
                rng.random_range(MIB..3 * MIB)
            } else {
                rng.random_range(5_000..200_000)
            }
        });
        h.scan_and_upload(&app).await;
        h.plan().await;
        let cancel = tokio_util::sync::CancellationToken::new();
        let cfg = AgentConfig { roots: vec![], ..h.cfg.clone() };
        let task = tokio::spawn(daemon::run(cfg, cancel.clone()));
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let jobs = h.jobs().await;
            if !jobs.is_empty() && jobs.iter().all(|j| j["state"] == "succeeded") {
                break;
            }
            assert!(Instant::now() < deadline, "{kind}: the daemon did not finish: {jobs:?}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        cancel.cancel();
        task.await.unwrap().unwrap();
        let spec: alto_tier2::TargetSpec = serde_json::from_value(spec.clone()).unwrap();
        let target = tokio::task::spawn_blocking({
            let c = alto_model::CustomerId(h.t.id);
            move || Target::open(&spec, c, &alto_tier2::OpenOptions::default()).unwrap()
        })
        .await
        .unwrap();
        let (target, stubs) = tokio::task::spawn_blocking(move || {
            let n = files.iter().filter(|f| matches!(check(&target, f), Now::Stub(_))).count();
            let refs = target.list_refs().unwrap();
            assert_eq!(refs.refs.len(), files.len(), "one sidecar per tiered file");
            (n, files)
        })
        .await
        .unwrap();
        assert_eq!(target, stubs.len(), "{kind}: every file is a stub of a verified object");
        let paths: Vec<PathBuf> = stubs.iter().step_by(3).map(|f| f.path.clone()).collect();
        let r = h.recall(&paths).await;
        assert!(r.status.success(), "{kind}: {}", String::from_utf8_lossy(&r.stderr));
        for f in stubs.iter().step_by(3) {
            assert_recalled(f);
        }
        eprintln!("{kind}: {} files tiered, {} recalled", stubs.len(), paths.len());
    }
}

/// Over the agent link with the host's bandwidth limit: the copies are throttled to it, and
/// an operator's cancel reaches the running job at once (not at its next progress call, 30 s
/// away): the job ends `cancelled`, files not started stay whole, every stub is good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_link_throttles_to_the_host_limit_and_pushes_cancels() {
    if !root() {
        return;
    }
    let app = TestApp::spawn().await;
    let mut h = Host::new(&app).await;
    h.rules(&app, "none").await;
    let limit: u64 = 2 << 20;
    let (st, v) = api(
        &h.t.admin,
        Method::PATCH,
        &format!("/tenants/{}/hosts/{}", h.t.id, h.host_id),
        Some(json!({ "bandwidth_limit_bytes_per_second": limit })),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["bandwidth_limit_bytes_per_second"], limit);
    let files = make_tree(&h.data, 60, 6, |_, rng| rng.random_range(200_000..400_000));
    h.scan_and_upload(&app).await;
    h.plan().await;
    let jid = h.jobs().await[0]["id"].as_str().unwrap().to_owned();
    let cancel = tokio_util::sync::CancellationToken::new();
    let cfg = AgentConfig { roots: vec![], tier_parallel_files: 4, ..h.cfg.clone() };
    let started = Instant::now();
    let task = tokio::spawn(daemon::run(cfg, cancel.clone()));
    // Wait until some files are stubbed, then cancel.
    let deadline = Instant::now() + Duration::from_secs(60);
    let stubbed_before = loop {
        let n = h.job_files(&jid).await.iter().filter(|f| f["state"] == "succeeded").count();
        if n >= 4 {
            break n;
        }
        assert!(Instant::now() < deadline, "nothing stubbed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let elapsed = started.elapsed();
    let (st, _) =
        api(&h.t.admin, Method::POST, &format!("/tenants/{}/jobs/{jid}/cancel", h.t.id), None)
            .await;
    assert_eq!(st, 200);
    let cancelled_at = Instant::now();
    loop {
        let j = &h.jobs().await[0];
        if j["state"] == "cancelled" {
            break;
        }
        assert!(
            cancelled_at.elapsed() < Duration::from_secs(15),
            "cancel did not reach the agent: {j}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = cancelled_at.elapsed();
    cancel.cancel();
    task.await.unwrap().unwrap();
    let target = h.target();
    let (mut stubs, mut whole, mut bytes) = (0, 0, 0u64);
    for f in &files {
        match check(&target, f) {
            Now::Stub(_) => {
                stubs += 1;
                bytes += f.size;
            }
            Now::Original => whole += 1,
        }
    }
    eprintln!("{stubbed_before} stubbed after {elapsed:?}; cancel took {took:?}; {stubs} stubs ({bytes} bytes), {whole} whole");
    assert!(whole > 0, "the cancel stopped the job before its end");
    assert!(took < Duration::from_secs(10), "pushed, not polled: {took:?}");
    // Throttled: what was copied before the cancel took at least its time at the limit, less
    // the one second of burst.
    let min = Duration::from_secs_f64((bytes as f64 / limit as f64 - 1.0).max(0.0));
    assert!(started.elapsed() >= min, "{bytes} bytes in {:?} at {limit} B/s", started.elapsed());
}

/// Recall as a managed operation, end to end: the daemon tiers a tree; an operator recalls
/// one directory of it through the API (its host recall limit set); the daemon takes the
/// recall job over the link and brings exactly that tree back (bytes, times), the rest stays
/// stubbed, the registry says `rehydrated`, and `alto-agent recall DIR` recalls a whole tree
/// on the host itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recall_request_brings_a_tree_back_through_the_daemon() {
    if !root() {
        return;
    }
    let app = TestApp::spawn().await;
    let mut h = Host::new(&app).await;
    h.rules(&app, "none").await;
    let files = make_tree(&h.data, 28, 11, |_, rng| rng.random_range(1..200_000));
    h.scan_and_upload(&app).await;
    h.plan().await;
    let cancel = tokio_util::sync::CancellationToken::new();
    let cfg = AgentConfig { roots: vec![], ..h.cfg.clone() };
    let task = tokio::spawn(daemon::run(cfg, cancel.clone()));
    let wait_jobs = |kind: &'static str| {
        let h = &h;
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let (_, v) = api(
                    &h.t.admin,
                    Method::GET,
                    &format!("/tenants/{}/jobs?kind={kind}", h.t.id),
                    None,
                )
                .await;
                let jobs = v["items"].as_array().cloned().unwrap_or_default();
                if !jobs.is_empty() && jobs.iter().all(|j| j["state"] == "succeeded") {
                    return jobs;
                }
                assert!(Instant::now() < deadline, "{kind} jobs did not finish: {jobs:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    wait_jobs("tier").await;
    let target = h.target();
    for f in &files {
        assert!(matches!(check(&target, f), Now::Stub(_)), "{}", f.path.display());
    }
    // A host recall limit travels with the offer (generous: the test must not be slow).
    let (st, v) = api(
        &h.t.admin,
        Method::PATCH,
        &format!("/tenants/{}/hosts/{}", h.t.id, h.host_id),
        Some(json!({ "recall_bandwidth_limit_bytes_per_second": 50_000_000 })),
    )
    .await;
    assert_eq!((st, &v["recall_bandwidth_limit_bytes_per_second"]), (200, &json!(50_000_000)));
    let dir = h.data.join("d3");
    let (st, made) = api(
        &h.t.admin,
        Method::POST,
        &format!("/tenants/{}/recalls", h.t.id),
        Some(json!({ "host_id": h.host_id, "paths": [dir.to_str().unwrap()] })),
    )
    .await;
    let inside: Vec<&Orig> = files.iter().filter(|f| f.path.starts_with(&dir)).collect();
    assert_eq!((st, made["files"].as_u64()), (202, Some(inside.len() as u64)), "{made}");
    let jobs = wait_jobs("recall").await;
    assert_eq!(jobs.len(), 1);
    for f in &files {
        if f.path.starts_with(&dir) {
            assert_recalled(f);
        } else {
            assert!(matches!(check(&target, f), Now::Stub(_)), "{}", f.path.display());
        }
    }
    let (_, stubs) =
        api(&h.t.admin, Method::GET, &format!("/tenants/{}/stubs?state=rehydrated", h.t.id), None)
            .await;
    assert_eq!(stubs["items"].as_array().map(Vec::len), Some(inside.len()), "{stubs}");
    cancel.cancel();
    task.await.unwrap().unwrap();
    // On the host: a directory argument recalls every stub of its tree.
    let other = h.data.join("d4");
    let o = h.recall(std::slice::from_ref(&other)).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for f in files.iter().filter(|f| f.path.starts_with(&other)) {
        assert_recalled(f);
    }
}
