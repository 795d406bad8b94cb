//! The agent daemon against a real server: heartbeats that a scan cannot hold up, link
//! heartbeats that keep a host online, and scheduled credential rotation that survives a
//! crash between the server's answer and the agent's save.
//!
//! The agent runs as the real binary (`alto-agent run`) where a fault is injected
//! (`ALTO_AGENT_FAULT`, set for that child only). The server's clock is a `FakeClock`: tests
//! move it past `agents.offline_after` and the credential overlap instead of waiting.

#![allow(clippy::unwrap_used)]

use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alto_agent::state::Identity;
use alto_test_support::{TestApp, TestTenant};
use uuid::Uuid;

/// A server whose host monitor sweeps every second and tells agents to heartbeat every
/// second; the link heartbeats every 200 ms.
async fn app() -> TestApp {
    TestApp::spawn_with(|c| {
        c.agents.heartbeat_interval = Duration::from_secs(1);
        c.agents.offline_after = Duration::from_secs(120);
        c.link.heartbeat_interval = Duration::from_millis(200);
        c.link.lease = Duration::from_secs(2);
    })
    .await
}

struct Enrolled {
    t: TestTenant,
    host_id: Uuid,
    state: tempfile::TempDir,
}

async fn enroll(app: &TestApp) -> Enrolled {
    let t = app.new_tenant("Acme").await;
    let created = app.new_host(&t, "fs1").await;
    let state = tempfile::tempdir().unwrap();
    alto_agent::daemon::enroll(&app.base_url, &created.enrollment.token, state.path())
        .await
        .unwrap();
    Enrolled { t, host_id: created.host.id, state }
}

impl Enrolled {
    fn state_dir(&self) -> &Path {
        self.state.path()
    }

    fn identity(&self) -> Identity {
        Identity::load(self.state_dir()).unwrap()
    }

    /// Writes a configuration file and starts `alto-agent run` with it.
    fn agent(&self, extra: &str, fault: Option<&str>) -> Agent {
        let file = self.state_dir().join("agent.toml");
        std::fs::write(&file, format!("state_dir = {:?}\n{extra}\n", self.state_dir())).unwrap();
        let mut c = Command::new(env!("CARGO_BIN_EXE_alto-agent"));
        c.arg("run").arg("--config").arg(&file).env("ALTO_LOG", "info").stdout(Stdio::null());
        c.env_remove(alto_agent::fault::ENV);
        // These state directories live on the machine's root file system, which these tests
        // must not mark; on-access recall has its own tests on loop devices (on_access.rs).
        c.env("ALTO_AGENT_ON_ACCESS__ENABLED", "false");
        if let Some(f) = fault {
            c.env(alto_agent::fault::ENV, f);
        }
        let log = self.state_dir().join(format!("agent-{}.log", Uuid::new_v4()));
        c.stderr(std::fs::File::create(&log).unwrap());
        Agent { child: c.spawn().unwrap(), log }
    }

    async fn host(&self) -> alto_api_types::Host {
        self.t.admin.get_host(self.t.id, self.host_id).await.unwrap()
    }

    async fn credentials(&self) -> Vec<alto_api_types::Credential> {
        self.t.admin.list_credentials(self.t.id, self.host_id).await.unwrap()
    }
}

struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then waits for the exit.
    async fn stop(mut self) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "agent did not stop:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` every 50 ms until it is true; panics with `what` after `secs` seconds.
async fn until<F, Fut>(secs: u64, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Moves the server's clock by 90 s three times (in total well past `offline_after`, 120 s)
/// and waits after each step until the host's `last_seen_at` caught up with the new time:
/// something kept reporting the host alive.
async fn advance_and_expect_seen(app: &TestApp, h: &Enrolled, what: &str) {
    for _ in 0..3 {
        app.clock.advance(chrono::Duration::seconds(90));
        let now = app.clock_now();
        until(15, what, || async { h.host().await.last_seen_at == Some(now) }).await;
    }
    // Sweeps run every second; 270 s of server time have passed since the first beat.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(h.host().await.status, "online", "{what}");
}

/// Stops whatever reported the host alive and shows that the monitor then does mark it offline
/// (so the test above is not vacuous).
async fn expect_offline_after_silence(app: &TestApp, h: &Enrolled) {
    app.clock.advance(chrono::Duration::seconds(150));
    until(15, "host marked offline after silence", || async { h.host().await.status == "offline" })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_go_on_while_a_scan_runs() {
    let app = app().await;
    let h = enroll(&app).await;
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("a.txt"), b"a").unwrap();
    // The scan never ends (as on a tree that takes hours); link off: REST heartbeats only.
    let agent = h.agent(
        &format!("roots = [{:?}]\n[link]\nenabled = false\n", data.path()),
        Some("scan-stall"),
    );
    until(30, "first heartbeat", || async { h.host().await.status == "online" }).await;
    advance_and_expect_seen(&app, &h, "REST heartbeats during a scan").await;
    let log = agent.log();
    assert!(log.contains("scan-stall"), "the scan was running: {log}");
    let scans = h.t.admin.list_scans(h.t.id, Some(h.host_id), None, None).await.unwrap().items;
    assert!(scans.is_empty(), "the scan never finished: {scans:?}");
    agent.stop().await;
    expect_offline_after_silence(&app, &h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_heartbeats_keep_a_host_online() {
    let app = app().await;
    let h = enroll(&app).await;
    let mut id = h.identity();
    let cfg = alto_agent::config::AgentConfig {
        state_dir: h.state_dir().to_owned(),
        ..Default::default()
    };
    let credential = alto_agent::state::SharedCredential::new(id.credential.clone());
    let client = alto_agent::daemon::host_client(&cfg, &id).unwrap();
    let params =
        alto_agent::daemon::link_params(&cfg, &mut id, &client, &credential).await.unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    let (tx, _rx) = tokio::sync::mpsc::channel(8);
    // Only the link: no REST heartbeat is ever sent.
    let link = alto_agent::link::Link::start(params, vec![], tx, cancel.clone());
    assert!(link.wait_connected(&cancel).await);
    until(15, "online through the link", || async { h.host().await.status == "online" }).await;
    advance_and_expect_seen(&app, &h, "link heartbeats").await;
    cancel.cancel();
    until(15, "link closed", || async { !link.is_connected() }).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    expect_offline_after_silence(&app, &h).await;
}

/// The credential states the server shows, by id.
fn states(creds: &[alto_api_types::Credential]) -> Vec<(Uuid, String)> {
    creds.iter().map(|c| (c.id, c.state.clone())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_rotate_on_schedule() {
    let app = app().await;
    let h = enroll(&app).await;
    let first = h.identity();
    let agent = h.agent("credential_rotation_interval = \"2s\"\n", None);
    until(30, "online", || async { h.host().await.status == "online" }).await;
    // Two rotations on schedule.
    let mut seen = vec![first.credential_id];
    until(30, "two rotations", || {
        let id = h.identity().credential_id;
        if !seen.contains(&id) {
            seen.push(id);
        }
        let n = seen.len();
        async move { n >= 3 }
    })
    .await;
    // The old credentials expire (the server's overlap window passes): every task of the
    // running agent uses the current one, so it stays online.
    app.clock.advance(chrono::Duration::hours(25));
    let now = app.clock_now();
    let mut t = h.t.clone();
    t.admin = app.login("acme-admin", alto_test_support::ADMIN_PASSWORD).await;
    let h = Enrolled { t, ..h };
    until(15, "heartbeats with the rotated credential", || async {
        h.host().await.last_seen_at.is_some_and(|s| s >= now)
    })
    .await;
    agent.stop().await;
    let id = h.identity();
    let creds = h.credentials().await;
    let active: Vec<_> = creds.iter().filter(|c| c.state == "active").collect();
    assert_eq!(active.len(), 1, "{:?}", states(&creds));
    assert_eq!(active[0].id, id.credential_id, "{:?}", states(&creds));
    assert!(creds.len() >= 3, "{:?}", states(&creds));
    assert!(creds.iter().filter(|c| c.created_via == "rotation").count() >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_the_rotation_answer_and_the_save_is_recovered() {
    let app = app().await;
    let h = enroll(&app).await;
    let old = h.identity();
    let pending = h.state_dir().join("credential.pending.json");
    // The agent dies right after the server issued the new credential.
    let mut agent =
        h.agent("credential_rotation_interval = \"1s\"\n", Some("rotate-crash-after-answer"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = agent.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "no crash:\n{}", agent.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.signal(), Some(libc::SIGABRT), "{status:?}\n{}", agent.log());
    assert_eq!(h.identity(), old, "the crash came before the save");
    let next: Identity = serde_json::from_slice(
        &std::fs::read(&pending)
            .expect("the new credential was stored before the server was asked"),
    )
    .unwrap();
    assert_ne!(next.credential_id, old.credential_id);
    let creds = h.credentials().await;
    let state_of = |id: Uuid| creds.iter().find(|c| c.id == id).map(|c| c.state.as_str());
    assert_eq!(creds.len(), 2, "{:?}", states(&creds));
    assert_eq!(state_of(old.credential_id), Some("expiring"), "{:?}", states(&creds));
    assert_eq!(state_of(next.credential_id), Some("active"), "the server switched to it");
    drop(agent);

    // Restart: the pending credential is tried, accepted and promoted.
    let agent = h.agent("credential_rotation_interval = \"1h\"\n", None);
    until(30, "pending credential promoted", || async {
        !pending.exists() && h.identity().credential_id == next.credential_id
    })
    .await;
    assert_eq!(h.identity(), next);
    // Past the overlap window the old credential is dead; the agent still authenticates.
    app.clock.advance(chrono::Duration::hours(25));
    let now = app.clock_now();
    let mut t = h.t.clone();
    t.admin = app.login("acme-admin", alto_test_support::ADMIN_PASSWORD).await;
    let h = Enrolled { t, ..h };
    until(15, "heartbeats after the overlap window", || async {
        h.host().await.last_seen_at.is_some_and(|s| s >= now)
    })
    .await;
    agent.stop().await;
    let creds = h.credentials().await;
    let live: Vec<_> =
        creds.iter().filter(|c| c.state == "active" || c.state == "expiring").collect();
    assert_eq!(live.len(), 1, "a single current credential: {:?}", states(&creds));
    assert_eq!(live[0].id, next.credential_id);
    // It is the current one: it may rotate again.
    let base = alto_client::Client::new(&app.base_url).unwrap();
    let again = alto_agent::rotation::rotate(h.state_dir(), &base, &h.identity(), app.clock_now())
        .await
        .unwrap();
    assert_eq!(h.identity(), again);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_secret_the_server_never_saw_is_dropped() {
    let app = app().await;
    let h = enroll(&app).await;
    let old = h.identity();
    // A crash before the server stored the proposal leaves a pending secret it never saw.
    let never = Identity {
        credential_id: Uuid::now_v7(),
        credential: alto_agent::rotation::new_secret().unwrap(),
        ..old.clone()
    };
    never.save_pending(h.state_dir()).unwrap();
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(h.state_dir().join("credential.pending.json")).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let base = alto_client::Client::new(&app.base_url).unwrap();
    let r = alto_agent::rotation::resolve_pending(h.state_dir(), &base).await.unwrap();
    assert_eq!(r, alto_agent::rotation::Pending::Dropped);
    assert!(!h.state_dir().join("credential.pending.json").exists());
    assert_eq!(h.identity(), old);
    // Unreachable server: undecided, kept.
    never.save_pending(h.state_dir()).unwrap();
    let dead = alto_client::Client::new("http://127.0.0.1:9").unwrap();
    let r = alto_agent::rotation::resolve_pending(h.state_dir(), &dead).await.unwrap();
    assert_eq!(r, alto_agent::rotation::Pending::Undecided);
    assert!(h.state_dir().join("credential.pending.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_proposals_are_checked() {
    let app = app().await;
    let h = enroll(&app).await;
    let id = h.identity();
    let client = alto_client::Client::new(&app.base_url).unwrap().with_token(id.credential.clone());
    let post = |body: serde_json::Value| {
        let c = client.clone();
        async move {
            let r = c
                .request(reqwest::Method::POST, "/api/v1/agent/credentials/rotate")
                .json(&body)
                .send()
                .await
                .unwrap();
            let st = r.status().as_u16();
            (st, r.json::<serde_json::Value>().await.unwrap_or_default())
        }
    };
    let good = alto_agent::rotation::new_secret().unwrap();
    for (body, want) in [
        (serde_json::json!({ "credential_id": Uuid::now_v7(), "credential": "alto_h_short" }), 400),
        (
            serde_json::json!({ "credential_id": Uuid::now_v7(), "credential": good.replace("alto_h_", "alto_s_") }),
            400,
        ),
        (serde_json::json!({ "credential_id": Uuid::nil(), "credential": good }), 400),
        (
            serde_json::json!({ "credential_id": Uuid::now_v7(), "credential": good, "host_id": Uuid::now_v7() }),
            400,
        ),
        // The id of the credential in use.
        (serde_json::json!({ "credential_id": id.credential_id, "credential": good }), 409),
    ] {
        let (st, v) = post(body.clone()).await;
        assert_eq!(st, want, "{body}: {v}");
    }
    // Nothing changed: one credential, the enrolled one.
    assert_eq!(states(&h.credentials().await), vec![(id.credential_id, "active".to_owned())]);
    // A valid proposal is what the server stores.
    let new_id = Uuid::now_v7();
    let (st, v) = post(serde_json::json!({ "credential_id": new_id, "credential": good })).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["credential_id"], serde_json::json!(new_id));
    assert_eq!(v["credential"], serde_json::json!(good));
    let hb = alto_client::Client::new(&app.base_url).unwrap().with_token(good);
    let req = alto_api_types::HeartbeatRequest {
        agent_version: "t".into(),
        os: None,
        hostname: None,
        volumes: vec![],
        on_access: None,
    };
    hb.heartbeat(&req).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shot_commands_finish_a_pending_rotation_too() {
    let app = app().await;
    let h = enroll(&app).await;
    let old = h.identity();
    let pending = h.state_dir().join("credential.pending.json");
    let mut agent =
        h.agent("credential_rotation_interval = \"1s\"\n", Some("rotate-crash-after-answer"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while agent.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "no crash:\n{}", agent.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let next: Identity = serde_json::from_slice(&std::fs::read(&pending).unwrap()).unwrap();
    assert_eq!(h.identity(), old);
    // `recall` of a file that is no stub: it fails, but first it finishes the rotation.
    let plain = h.state_dir().join("plain.txt");
    std::fs::write(&plain, b"x").unwrap();
    let config = h.state_dir().join("agent.toml");
    let o = Command::new(env!("CARGO_BIN_EXE_alto-agent"))
        .arg("recall")
        .arg("--config")
        .arg(&config)
        .arg(&plain)
        .output()
        .unwrap();
    assert!(!pending.exists(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(h.identity(), next);
}
