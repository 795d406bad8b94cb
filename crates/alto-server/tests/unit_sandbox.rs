//! `deploy/systemd/alto-server.service` lets the server do its work: verified with
//! `systemd-analyze`, then the real binary runs inside the unit's sandbox (rebuilt from the
//! unit file by `alto_test_support::systemd`, since systemd is not PID 1 where tests run) with
//! the drop-in docs/deployment.md describes: it starts its embedded PostgreSQL as `postgres`,
//! creates the link's development CA in its data directory, and checks a directory storage
//! target under `storage.directory_base`, while the rest of the system stays read-only to it.
//!
//! Needs root (mount namespaces; the embedded cluster runs as `postgres`), `unshare`,
//! `setpriv` and `systemd-analyze` (`scripts/setup.sh` installs them).

#![allow(clippy::unwrap_used)]

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use alto_test_support::api;
use alto_test_support::systemd::{can_sandbox, sandbox_script, sandboxed, service_settings};
use reqwest::Method;
use serde_json::json;

const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/systemd/alto-server.service");
const SERVER: &str = env!("CARGO_BIN_EXE_alto-server");

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM first so that the embedded cluster shuts down with it.
        let pid = self.0.id().to_string();
        let _ = std::process::Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline && matches!(self.0.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_runs_inside_its_units_sandbox() {
    if !can_sandbox("mount namespaces, the embedded cluster as postgres") {
        return;
    }
    // Not below /tmp (PrivateTmp hides it); reachable by the postgres user.
    let base = alto_test_support::systemd::scratch_dir(env!("CARGO_TARGET_TMPDIR"));
    let b = base.path().canonicalize().unwrap();
    let server = alto_test_support::systemd::visible_binary(SERVER, &b);
    std::fs::set_permissions(&b, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (data, tier2, outside) = (b.join("data"), b.join("tier2"), b.join("outside"));
    for d in [&data, &tier2, &outside] {
        std::fs::create_dir(d).unwrap();
    }
    let (http, link) = (alto_test_support::free_port(), alto_test_support::free_port());
    let config = b.join("alto-server.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\nlisten = \"127.0.0.1:{http}\"\n[link]\nlisten = \"127.0.0.1:{link}\"\n\
             [storage]\ndirectory_base = {tier2:?}\n\
             [bootstrap]\nadmin_password = {pw:?}\n",
            pw = alto_test_support::ADMIN_PASSWORD
        ),
    )
    .unwrap();
    // The drop-in of docs/deployment.md: the data directory is not /var/lib/alto here, and
    // storage.directory_base is set.
    let drop_in = format!("[Service]\nReadWritePaths={data:?}\nReadWritePaths={tier2:?}\n");
    let unit = std::fs::read_to_string(UNIT).unwrap();
    let config_s = config.display().to_string();
    let data_s = data.display().to_string();
    alto_test_support::systemd::verify(
        "alto-server.service",
        &unit,
        &[&drop_in],
        &[
            ("/usr/local/bin/alto-server", &server),
            ("/etc/alto/alto-server.toml", &config_s),
            ("/var/lib/alto ", &format!("{data_s} ")),
        ],
    );
    let script = sandbox_script(&service_settings(&[&unit, &drop_in]));
    eprintln!("sandbox:\n{script}");

    let log = outside.join("server.log");
    let mut c = sandboxed(
        &script,
        &server,
        &["--config", &config_s, "--data-dir", &data_s, "--log-format", "json"],
    );
    c.stdout(Stdio::null()).stderr(std::fs::File::create(&log).unwrap());
    let _server = Server(c.spawn().unwrap());
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    let url = format!("http://127.0.0.1:{http}");
    let anon = alto_client::Client::new(&url).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let ready = anon.request(Method::GET, "/readyz").send().await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        assert!(Instant::now() < deadline, "the sandboxed server never got ready:\n{}", logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(data.join("tls").join("ca.pem").is_file(), "the link's CA in the data directory");
    // Its PostgreSQL runs as postgres in the data directory.
    let pg_files = std::fs::read_dir(&data).unwrap().count();
    assert!(pg_files >= 2, "{:?}", std::fs::read_dir(&data).unwrap().collect::<Vec<_>>());

    // A directory target under storage.directory_base is checked: the server writes there.
    let mut admin = alto_client::Client::new(&url).unwrap();
    admin.login("admin", alto_test_support::ADMIN_PASSWORD).await.unwrap();
    let created = admin
        .create_tenant(&alto_api_types::CreateTenant {
            name: "Acme".into(),
            admin: Some(alto_api_types::CreateUser {
                username: "acme-admin".into(),
                password: alto_test_support::ADMIN_PASSWORD.into(),
                display_name: None,
                roles: vec![alto_model::Role::TenantAdmin],
            }),
        })
        .await
        .unwrap();
    let tid = created.tenant.id;
    let mut ta = alto_client::Client::new(&url).unwrap();
    ta.login("acme-admin", alto_test_support::ADMIN_PASSWORD).await.unwrap();
    let (st, v) = api(
        &ta,
        Method::POST,
        &format!("/tenants/{tid}/storage-targets"),
        Some(json!({ "name": "local", "kind": "directory", "location": tier2 })),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    let id = v["id"].as_str().unwrap();
    let (st, r) =
        api(&ta, Method::POST, &format!("/tenants/{tid}/storage-targets/{id}/test"), None).await;
    assert_eq!((st, r["status"].as_str()), (200, Some("ok")), "{r}\n{}", logs());
    assert!(tier2.join(format!("customer-{tid}-tiered")).is_dir());

    // Outside its paths the sandbox is read-only (the same script, another command).
    let probe = format!(
        "if touch {o}/x 2>/dev/null; then exit 1; fi; if touch /usr/.alto-probe 2>/dev/null; \
         then exit 1; fi; touch {d}/.probe && rm {d}/.probe",
        o = alto_test_support::systemd::sh_quote(&outside.display().to_string()),
        d = alto_test_support::systemd::sh_quote(&data_s),
    );
    let o = sandboxed(&script, "sh", &["-c", &probe]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!outside.join("x").exists());
}
