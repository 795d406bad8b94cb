//! `deploy/systemd/alto-agent.service` lets the agent do its work, and no more.
//!
//! The unit and the drop-in `alto-agent unit-paths` makes are checked by `systemd-analyze
//! verify`, then the real agent runs inside the unit's sandbox and tiers and recalls files of
//! another owner (one setuid) against a real server. systemd is not PID 1 where the tests run
//! (no `systemd-run`), so the sandbox is rebuilt from the unit's own settings the way systemd
//! builds it (`alto_test_support::systemd`: a private mount namespace with everything
//! read-only but the `ReadWritePaths=`, private `/tmp`, the capability bounding set and
//! no-new-privileges). A setting of the unit it does not know fails the test, so the test and
//! the unit cannot drift apart.
//!
//! Needs root (mount namespaces, `trusted.*` attributes, leases), `unshare` and `setpriv`
//! (util-linux) and `systemd-analyze` (the `systemd` package; `scripts/setup.sh`).

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use alto_test_support::systemd::{
    can_sandbox, sandbox_script, sandboxed, service_settings, sh_quote,
};
use alto_test_support::{api, TestApp};
use reqwest::Method;
use serde_json::json;

const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/systemd/alto-agent.service");
const AGENT: &str = env!("CARGO_BIN_EXE_alto-agent");

fn output(mut c: Command) -> Output {
    let o = c.output().unwrap();
    eprintln!(
        "{:?}: {}\n{}{}",
        c.get_args().last(),
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

struct Dirs {
    _base: tempfile::TempDir,
    state: PathBuf,
    data: PathBuf,
    tier2: PathBuf,
    outside: PathBuf,
    /// The agent binary, where the sandbox can see it.
    agent: String,
}

fn dirs() -> Dirs {
    // Not below /tmp: the unit's PrivateTmp hides it.
    let base = alto_test_support::systemd::scratch_dir(env!("CARGO_TARGET_TMPDIR"));
    let b = base.path().canonicalize().unwrap();
    let d = Dirs {
        state: b.join("state"),
        data: b.join("data"),
        tier2: b.join("tier2"),
        outside: b.join("outside"),
        agent: alto_test_support::systemd::visible_binary(AGENT, &b),
        _base: base,
    };
    for p in [&d.state, &d.data, &d.tier2, &d.outside] {
        std::fs::create_dir_all(p).unwrap();
    }
    d
}

struct Orig {
    path: PathBuf,
    bytes: Vec<u8>,
    mode: u32,
    mtime: (i64, i64),
}

/// Files of another owner (65534), mode 0640, one of them setuid (04755).
fn make_files(dir: &Path, n: usize) -> Vec<Orig> {
    let mut out = Vec::new();
    for i in 0..n {
        let p = dir.join(format!("sub{}", i % 2)).join(format!("f{i}.dat"));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let bytes: Vec<u8> =
            (0..(40_000 + i * 7_919)).map(|j| ((j * 31 + i * 17) % 251) as u8).collect();
        std::fs::write(&p, &bytes).unwrap();
        std::os::unix::fs::chown(&p, Some(65534), Some(65534)).unwrap();
        let mode = if i == 0 { 0o4755 } else { 0o640 };
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        let m = std::fs::symlink_metadata(&p).unwrap();
        out.push(Orig { path: p, bytes, mode, mtime: (m.mtime(), m.mtime_nsec()) });
    }
    out
}

fn assert_kept(o: &Orig) {
    let m = std::fs::symlink_metadata(&o.path).unwrap();
    assert_eq!((m.uid(), m.gid()), (65534, 65534), "{}: owner", o.path.display());
    assert_eq!(m.mode() & 0o7777, o.mode, "{}: mode (setuid kept)", o.path.display());
    assert_eq!((m.mtime(), m.mtime_nsec()), o.mtime, "{}: mtime", o.path.display());
    assert_eq!(m.size(), o.bytes.len() as u64);
}

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_tiers_and_recalls_inside_its_units_sandbox() {
    if !can_sandbox("mount namespaces, trusted.* attributes, leases") {
        return;
    }
    let d = dirs();
    let config = d.state.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = {:?}\nroots = [{:?}]\n[tier2]\ndirectory_base = {:?}\n\
             [on_access]\nenabled = false # the data lives on the root file system\n",
            d.state, d.data, d.tier2
        ),
    )
    .unwrap();

    // The drop-in from the configuration, and both verified as systemd reads them.
    let o = output({
        let mut c = Command::new(AGENT);
        c.args(["unit-paths", "--config"]).arg(&config);
        c
    });
    assert!(o.status.success());
    let drop_in = String::from_utf8(o.stdout).unwrap();
    let unit = std::fs::read_to_string(UNIT).unwrap();
    let config_s = config.display().to_string();
    let holder =
        std::fs::read_to_string(UNIT.replace("alto-agent.service", "alto-agent-hsm.service"))
            .unwrap();
    let replace =
        [("/usr/local/bin/alto-agent", d.agent.as_str()), ("/etc/alto/agent.toml", &config_s)];
    alto_test_support::systemd::verify_beside(
        "alto-agent.service",
        &unit,
        &[&drop_in],
        &replace,
        &[("alto-agent-hsm.service", &holder)],
    );
    alto_test_support::systemd::verify("alto-agent-hsm.service", &holder, &[], &replace);
    let unit_only = sandbox_script(&service_settings(&[&unit]));
    let script = sandbox_script(&service_settings(&[&unit, &drop_in]));
    eprintln!("sandbox:\n{script}");

    // Inside: the configured paths are writable, the rest of the system is not.
    let probe = format!(
        "touch {data}/.probe && rm {data}/.probe && touch {t2}/.probe && rm {t2}/.probe && \
         if touch {out}/x 2>/dev/null; then echo outside-writable; exit 1; fi && \
         if touch /usr/.alto-probe 2>/dev/null; then echo usr-writable; exit 1; fi && \
         if touch /etc/.alto-probe 2>/dev/null; then echo etc-writable; exit 1; fi && \
         grep CapBnd /proc/self/status",
        data = sh_quote(&d.data.display().to_string()),
        t2 = sh_quote(&d.tier2.display().to_string()),
        out = sh_quote(&d.outside.display().to_string()),
    );
    let o = output(sandboxed(&script, "sh", &["-c", &probe]));
    assert!(o.status.success(), "sandbox probe");
    // CAP_DAC_OVERRIDE(1) DAC_READ_SEARCH(2) FOWNER(3) FSETID(4) SYS_PTRACE(19)
    // SYS_ADMIN(21) LEASE(28), nothing else.
    let bnd: u64 = (1 << 1) | (1 << 2) | (1 << 3) | (1 << 4) | (1 << 19) | (1 << 21) | (1 << 28);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&format!("{bnd:016x}")),
        "bounding set: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(!d.outside.join("x").exists());

    // A server, a tenant, an enrolled host, one rule tiering everything.
    let app = TestApp::spawn().await;
    let mut t = app.new_tenant("Acme").await;
    let created = app.new_host(&t, "fs1").await;
    alto_agent::daemon::enroll(&app.base_url, &created.enrollment.token, &d.state).await.unwrap();
    let files = make_files(&d.data, 12);
    app.tier_everything_later(&mut t, "default", "zstd").await;

    // The daemon in the sandbox: it scans, uploads, takes the job over the link, tiers.
    let log = d.outside.join("agent.log");
    let mut c = sandboxed(&script, &d.agent, &["run", "--config", &config.display().to_string()]);
    c.env("ALTO_LOG", "info").stdout(Stdio::null()).stderr(std::fs::File::create(&log).unwrap());
    let agent = Agent(c.spawn().unwrap());
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let scans =
            t.admin.list_scans(t.id, Some(created.host.id), None, None).await.unwrap().items;
        if scans.iter().any(|s| s.status == "completed") {
            break;
        }
        assert!(Instant::now() < deadline, "no scan from the sandboxed agent:\n{}", logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (st, p) =
        api(&t.admin, Method::POST, &format!("/tenants/{}/plans", t.id), Some(json!({}))).await;
    assert_eq!(st, 201, "{p}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (st, v) = api(&t.admin, Method::GET, &format!("/tenants/{}/jobs", t.id), None).await;
        assert_eq!(st, 200, "{v}");
        let items = v["items"].as_array().unwrap();
        if !items.is_empty() && items.iter().all(|j| j["state"] == "succeeded") {
            break;
        }
        assert!(Instant::now() < deadline, "job not done: {v}\n{}", logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(agent);
    assert!(!logs().contains("read-only to the agent"), "{}", logs());
    for f in &files {
        let a = alto_stub::read_attr(&f.path).unwrap();
        assert!(
            a.as_ref().is_some_and(|a| a.state == alto_stub::StubState::Stubbed),
            "{}: {a:?}\n{}",
            f.path.display(),
            logs()
        );
        assert_kept(f);
    }

    // The unit without the drop-in (the defect this test guards against): the scanned tree is
    // read-only, so a recall cannot write and the stub stays as it was.
    let first = files[1].path.display().to_string();
    let o = output(sandboxed(
        &unit_only,
        &d.agent,
        &["recall", "--config", &config.display().to_string(), &first],
    ));
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("Read-only file system"));
    assert!(alto_stub::read_attr(&files[1].path).unwrap().is_some());

    // The daemon says so at start, naming the path.
    let log2 = d.outside.join("agent-unit-only.log");
    let mut c =
        sandboxed(&unit_only, &d.agent, &["run", "--config", &config.display().to_string()]);
    c.stdout(Stdio::null()).stderr(std::fs::File::create(&log2).unwrap());
    let agent = Agent(c.spawn().unwrap());
    let want = d.data.display().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let l = std::fs::read_to_string(&log2).unwrap_or_default();
        if l.lines().any(|l| l.contains("read-only to the agent") && l.trim_end().ends_with(&want))
        {
            break;
        }
        assert!(Instant::now() < deadline, "no warning about {want}:\n{l}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(agent);

    // With it: every file comes back whole, owner, mode (setuid) and times kept.
    let mut args = vec!["recall".to_owned(), "--config".into(), config.display().to_string()];
    args.extend(files.iter().map(|f| f.path.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = output(sandboxed(&script, &d.agent, &args));
    assert!(o.status.success());
    for f in &files {
        assert_eq!(alto_stub::read_attr(&f.path).unwrap(), None, "{}", f.path.display());
        assert_eq!(std::fs::read(&f.path).unwrap(), f.bytes, "{}", f.path.display());
        assert_kept(f);
    }
}
