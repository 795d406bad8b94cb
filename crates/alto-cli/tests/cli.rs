//! End-to-end tests of the `altoctl` binary: the real executable, run as a child process,
//! against a real server (`TestApp`) on real PostgreSQL. Each test has its own configuration
//! directory, so stored logins never leak between tests or into the developer's home.
//!
//! Set `ALTOCTL_TEST_SHOW=1` (with `-- --nocapture`) to see every command and its output.

use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::process::Stdio;

use alto_api_types::EnrollRequest;
use alto_model::Role;
use alto_test_support::{TestApp, ADMIN_PASSWORD, ADMIN_USER};
use serde_json::Value;
use tokio::io::AsyncWriteExt as _;
use uuid::Uuid;

/// What a run of `altoctl` produced.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    #[track_caller]
    fn ok(self) -> Run {
        assert_eq!(self.code, 0, "expected success: {self:#?}");
        self
    }

    #[track_caller]
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:#?}"))
    }

    #[track_caller]
    fn no_panic(&self) {
        assert!(!self.stderr.contains("panicked"), "altoctl panicked: {self:#?}");
    }
}

/// `altoctl` with a private configuration directory and a clean environment.
struct Altoctl {
    config: tempfile::TempDir,
}

impl Altoctl {
    fn new() -> Altoctl {
        Altoctl { config: tempfile::tempdir().expect("tempdir") }
    }

    fn credentials(&self) -> PathBuf {
        self.config.path().join("alto").join("credentials.json")
    }

    async fn run_with(&self, args: &[&str], stdin: Option<&str>) -> Run {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_altoctl"));
        cmd.args(args)
            // A directory that does not exist yet, to check that it is created 0700.
            .env("ALTO_CONFIG_DIR", self.config.path().join("alto"))
            .env_remove("ALTO_SERVER")
            .env_remove("ALTO_TOKEN")
            .env_remove("ALTO_PASSWORD")
            .env_remove("ALTO_USERNAME")
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn altoctl");
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("stdin");
            pipe.write_all(input.as_bytes()).await.expect("write stdin");
            drop(pipe);
        }
        let out =
            tokio::time::timeout(std::time::Duration::from_secs(120), child.wait_with_output())
                .await
                .expect("altoctl finished in time")
                .expect("altoctl ran");
        let run = Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        run.no_panic();
        if std::env::var_os("ALTOCTL_TEST_SHOW").is_some() {
            eprintln!("$ altoctl {}\n[{}]\n{}{}", args.join(" "), run.code, run.stdout, run.stderr);
        }
        run
    }

    async fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, None).await
    }

    /// Logs in to `app` with the password on stdin.
    async fn login(&self, app: &TestApp, user: &str, password: &str) -> Run {
        self.run_with(
            &["--server", &app.base_url, "login", "--username", user, "--password-stdin"],
            Some(&format!("{password}\n")),
        )
        .await
    }

    async fn login_admin(&self, app: &TestApp) {
        self.login(app, ADMIN_USER, ADMIN_PASSWORD).await.ok();
    }
}

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

fn uuid_of(v: &Value) -> Uuid {
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("not a UUID: {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_stores_private_credentials_and_whoami_logout_work() {
    let app = TestApp::spawn().await;
    let cli = Altoctl::new();

    let login = cli.login(&app, ADMIN_USER, ADMIN_PASSWORD).await.ok();
    assert!(login.stdout.contains("Logged in"), "{login:#?}");
    assert!(!login.stdout.contains(app.admin.token().expect("token")), "no token on stdout");

    let path = cli.credentials();
    assert_eq!(mode(&path), 0o600, "credentials file must be private");
    assert_eq!(mode(path.parent().expect("dir")), 0o700, "config dir must be private");
    let stored: Value =
        serde_json::from_slice(&std::fs::read(&path).expect("read credentials")).expect("json");
    assert_eq!(stored["server"], app.base_url.as_str());
    assert_eq!(stored["username"], ADMIN_USER);
    let token = stored["token"].as_str().expect("token").to_owned();
    assert!(!token.is_empty());

    // Later commands use the stored server and token.
    let who = cli.run(&["whoami"]).await.ok();
    assert!(who.stdout.contains(ADMIN_USER) && who.stdout.contains("platform_admin"), "{who:#?}");
    let who = cli.run(&["whoami", "--output", "json"]).await.ok().json();
    assert_eq!(who["username"], ADMIN_USER);
    assert!(who["tenant_id"].is_null());

    // A wrong password is refused with the API's code, and the stored login survives.
    let bad = cli.login(&app, ADMIN_USER, "wrong-password-123").await;
    assert_eq!(bad.code, 1, "{bad:#?}");
    assert!(
        bad.stderr.starts_with("error: ") && bad.stderr.contains("(invalid_credentials)"),
        "{bad:#?}"
    );
    assert!(path.exists());

    // Logout ends the session on the server and deletes the file.
    let out = cli.run(&["logout"]).await.ok();
    assert!(out.stdout.contains("Logged out"), "{out:#?}");
    assert!(!path.exists(), "credentials file removed");
    let err = app.client().with_token(token).me().await.expect_err("session ended");
    assert_eq!(err.code(), Some("unauthenticated"));

    let who = cli.run(&["whoami"]).await;
    assert_eq!(who.code, 1, "{who:#?}");
    assert!(who.stderr.contains("not logged in") && who.stderr.contains("(unauthenticated)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_output_parses_and_contains_the_created_tenant() {
    let app = TestApp::spawn().await;
    let cli = Altoctl::new();
    cli.login_admin(&app).await;

    let created = cli.run(&["tenants", "create", "--name", "Acme Corp", "-o", "json"]).await.ok();
    let created = created.json();
    assert_eq!(created["tenant"]["name"], "Acme Corp");
    assert_eq!(created["tenant"]["status"], "active");
    let id = uuid_of(&created["tenant"]["id"]);

    let list = cli.run(&["--output", "json", "tenants", "list"]).await.ok().json();
    let items = list["items"].as_array().expect("items");
    assert!(items.iter().any(|t| t["id"] == id.to_string() && t["name"] == "Acme Corp"), "{list}");

    let got = cli.run(&["tenants", "get", &id.to_string(), "--output", "json"]).await.ok().json();
    assert_eq!(got["id"], id.to_string());

    // Tables for people: the tenant's name and an RFC 3339 timestamp.
    let table = cli.run(&["tenants", "list"]).await.ok();
    assert!(table.stdout.contains("Acme Corp"), "{table:#?}");
    assert!(table.stdout.contains("2026-06-01T12:00:00Z"), "{table:#?}");

    let upd = cli
        .run(&["tenants", "update", &id.to_string(), "--status", "suspended", "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(upd["status"], "suspended");

    // Paging: one item per page, and --all follows the cursor.
    cli.run(&["tenants", "create", "--name", "Second"]).await.ok();
    let one = cli.run(&["tenants", "list", "--limit", "1", "-o", "json"]).await.ok().json();
    assert_eq!(one["items"].as_array().map(Vec::len), Some(1));
    assert!(one["next_cursor"].is_string(), "{one}");
    let all =
        cli.run(&["tenants", "list", "--limit", "1", "--all", "-o", "json"]).await.ok().json();
    assert_eq!(all["items"].as_array().map(Vec::len), Some(2), "{all}");
    assert!(all.get("next_cursor").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_and_host_creation_prints_a_working_enrollment_token() {
    let app = TestApp::spawn().await;
    let cli = Altoctl::new();
    cli.login_admin(&app).await;

    let created = cli
        .run(&[
            "tenants",
            "create",
            "--name",
            "Globex",
            "--admin-username",
            "globex-admin",
            "--admin-password",
            ADMIN_PASSWORD,
            "-o",
            "json",
        ])
        .await
        .ok()
        .json();
    let tenant = created["tenant"]["id"].as_str().expect("id").to_owned();
    assert_eq!(created["admin"]["username"], "globex-admin");
    assert_eq!(created["admin"]["roles"], serde_json::json!(["tenant_admin"]));

    let host = cli
        .run(&["hosts", "create", "--tenant", &tenant, "--name", "fs-01", "--description", "files"])
        .await
        .ok();
    assert!(host.stdout.contains("Enrollment token"), "{host:#?}");
    // The token is printed on a line of its own, indented.
    let token = host
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("Enrollment token"))
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("Enrollment token"))
        .expect("token line")
        .to_owned();
    let issued = app
        .client()
        .enroll(&EnrollRequest {
            token,
            hostname: "fs-01.example".into(),
            agent_version: "0.1.0".into(),
            os: Some("linux".into()),
        })
        .await
        .expect("the printed token enrolls the host");

    // Platform staff name the tenant; the tenant's own admin does not have to.
    let hosts = cli.run(&["hosts", "list", "--tenant", &tenant, "-o", "json"]).await.ok().json();
    assert_eq!(hosts["items"][0]["name"], "fs-01");
    let missing = cli.run(&["hosts", "list"]).await;
    assert_eq!(missing.code, 1, "{missing:#?}");
    assert!(missing.stderr.contains("--tenant"), "{missing:#?}");

    let tenant_cli = Altoctl::new();
    tenant_cli.login(&app, "globex-admin", ADMIN_PASSWORD).await.ok();
    let table = tenant_cli.run(&["hosts", "list"]).await.ok();
    assert!(table.stdout.contains("fs-01"), "{table:#?}");

    let host_id = issued.host_id.to_string();
    let got = tenant_cli.run(&["hosts", "get", &host_id, "-o", "json"]).await.ok().json();
    assert_eq!(got["description"], "files");

    let creds = tenant_cli.run(&["credentials", "list", &host_id, "-o", "json"]).await.ok().json();
    let creds = creds.as_array().expect("array");
    assert_eq!(creds.len(), 1);
    assert_eq!(creds[0]["state"], "active");
    let cred = issued.credential_id.to_string();
    let revoked =
        tenant_cli.run(&["credentials", "revoke", &host_id, &cred, "-o", "json"]).await.ok().json();
    assert_eq!(revoked["state"], "revoked");

    let again = tenant_cli.run(&["hosts", "enrollment-token", &host_id]).await.ok();
    assert!(again.stdout.contains("Enrollment token"), "{again:#?}");
    let gone = tenant_cli.run(&["hosts", "decommission", &host_id, "-o", "json"]).await.ok().json();
    assert_eq!(gone["status"], "decommissioned");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_and_roles_are_managed_in_the_callers_tenant() {
    let app = TestApp::spawn().await;
    let tenant = app.new_tenant("Initech").await;
    let cli = Altoctl::new();
    cli.login(&app, "initech-admin", ADMIN_PASSWORD).await.ok();

    let user = cli
        .run(&[
            "users",
            "create",
            "--username",
            "peter",
            "--password",
            "a-long-password-1",
            "--role",
            "operator",
            "--display-name",
            "Peter G",
            "-o",
            "json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(user["tenant_id"], tenant.id.to_string(), "defaults to the caller's tenant");
    let id = user["id"].as_str().expect("id").to_owned();

    let roles = cli
        .run(&["roles", "set", &id, "--role", "auditor", "--role", "support", "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(roles["roles"], serde_json::json!(["auditor", "support"]));

    cli.run(&["users", "disable", &id]).await.ok();
    let got = cli.run(&["users", "get", &id, "-o", "json"]).await.ok().json();
    assert_eq!(got["disabled"], true);
    cli.run(&["users", "enable", &id]).await.ok();
    cli.run(&["users", "set-password", &id, "--password", "another-password-2"]).await.ok();
    let peter = Altoctl::new();
    peter.login(&app, "peter", "another-password-2").await.ok();

    let list = cli.run(&["users", "list"]).await.ok();
    assert!(list.stdout.contains("peter") && list.stdout.contains("initech-admin"), "{list:#?}");

    // The tenant's audit trail shows the changes; --all pages through it.
    let audit = cli.run(&["audit", "list", "--action", "user.", "-o", "json"]).await.ok().json();
    assert!(!audit["items"].as_array().expect("items").is_empty(), "{audit}");
    let all = cli.run(&["audit", "list", "--limit", "1", "--all", "-o", "json"]).await.ok().json();
    let seqs: Vec<i64> =
        all["items"].as_array().expect("items").iter().filter_map(|e| e["seq"].as_i64()).collect();
    assert!(seqs.len() > 3, "{all}");
    assert_eq!(seqs.last(), Some(&1), "pages down to the first entry");
    let ok = cli.run(&["audit", "verify"]).await.ok();
    assert!(ok.stdout.contains(&format!("tenant {}: OK", tenant.id)), "{ok:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_denied_action_exits_1_with_forbidden() {
    let app = TestApp::spawn().await;
    let tenant = app.new_tenant("Umbrella").await;
    app.user_with(&tenant, "umbrella-auditor", &[Role::Auditor]).await;

    let cli = Altoctl::new();
    cli.login(&app, "umbrella-auditor", ADMIN_PASSWORD).await.ok();
    let denied = cli.run(&["hosts", "create", "--name", "fs-9"]).await;
    assert_eq!(denied.code, 1, "{denied:#?}");
    assert!(denied.stderr.starts_with("error: "), "{denied:#?}");
    assert!(denied.stderr.contains("(forbidden)"), "{denied:#?}");
    assert!(denied.stdout.is_empty(), "{denied:#?}");

    // What the role does allow still works.
    cli.run(&["hosts", "list"]).await.ok();
    cli.run(&["audit", "verify"]).await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_exits_3_and_names_the_seq_after_tampering() {
    let app = TestApp::spawn().await;
    let cli = Altoctl::new();
    cli.login_admin(&app).await;
    cli.run(&["tenants", "create", "--name", "Hooli"]).await.ok();

    let ok = cli.run(&["audit", "verify", "--platform"]).await.ok();
    assert!(ok.stdout.contains("platform: OK:"), "{ok:#?}");
    let list = cli.run(&["audit", "list", "--platform"]).await.ok();
    assert!(list.stdout.contains("tenant.create"), "{list:#?}");

    {
        let pool = app.db.owner_pool().await;
        let mut c = pool.acquire().await.expect("connection");
        sqlx::query("SET session_replication_role = replica").execute(&mut *c).await.expect("set");
        let n = sqlx::query(
            "UPDATE audit_log SET action = 'forged' WHERE customer_id IS NULL AND seq = 1",
        )
        .execute(&mut *c)
        .await
        .expect("tamper")
        .rows_affected();
        assert_eq!(n, 1);
    }

    let bad = cli.run(&["audit", "verify", "--platform"]).await;
    assert_eq!(bad.code, 3, "{bad:#?}");
    let line = bad.stdout.lines().find(|l| l.starts_with("platform:")).expect("platform line");
    assert!(line.contains("BROKEN") && line.contains("seq 1"), "{bad:#?}");
    assert!(bad.stdout.contains(": OK:"), "the untouched tenant chain still verifies: {bad:#?}");

    let json = cli.run(&["audit", "verify", "--platform", "-o", "json"]).await;
    assert_eq!(json.code, 3, "{json:#?}");
    let report = json.json();
    assert_eq!(report["ok"], false);
    let platform = report["chains"]
        .as_array()
        .expect("chains")
        .iter()
        .find(|c| c["tenant_id"].is_null())
        .expect("platform chain")
        .clone();
    assert_eq!(platform["ok"], false);
    assert_eq!(platform["fault"]["seq"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gives_clear_errors_not_panics() {
    let cli = Altoctl::new();

    let bad_url = cli.run(&["--server", "not-a-url", "--token", "x", "whoami"]).await;
    assert_eq!(bad_url.code, 1, "{bad_url:#?}");
    assert!(bad_url.stderr.contains("invalid server URL") && bad_url.stderr.contains("(bad_url)"));

    // Port 1 on loopback: nothing listens there.
    let down =
        cli.run(&["--server", "http://127.0.0.1:1", "--token", "x", "tenants", "list"]).await;
    assert_eq!(down.code, 1, "{down:#?}");
    assert!(down.stderr.contains("cannot reach the server at http://127.0.0.1:1"), "{down:#?}");
    assert!(down.stderr.contains("(unreachable)"), "{down:#?}");

    let login = cli
        .run_with(
            &["--server", "http://127.0.0.1:1", "login", "--username", "u", "--password-stdin"],
            Some("pw\n"),
        )
        .await;
    assert_eq!(login.code, 1, "{login:#?}");
    assert!(!cli.credentials().exists());

    let no_password = cli.run(&["login", "--username", "u"]).await;
    assert_eq!(no_password.code, 1, "{no_password:#?}");
    assert!(no_password.stderr.contains("no password given"), "{no_password:#?}");

    // Usage errors are clap's: exit 2.
    let bad_id = cli.run(&["--token", "x", "tenants", "get", "not-a-uuid"]).await;
    assert_eq!(bad_id.code, 2, "{bad_id:#?}");
    let bad_role = cli
        .run(&[
            "--token",
            "x",
            "users",
            "create",
            "--username",
            "a",
            "--password",
            "b",
            "--role",
            "root",
        ])
        .await;
    assert_eq!(bad_role.code, 2, "{bad_role:#?}");
    assert!(bad_role.stderr.contains("platform_admin"), "lists the valid roles: {bad_role:#?}");

    // A corrupt credentials file is reported, not a panic.
    std::fs::create_dir_all(cli.credentials().parent().expect("dir")).expect("mkdir");
    std::fs::write(cli.credentials(), b"{not json").expect("write");
    let corrupt = cli.run(&["whoami"]).await;
    assert_eq!(corrupt.code, 1, "{corrupt:#?}");
    assert!(corrupt.stderr.contains("not a valid credentials file"), "{corrupt:#?}");
    cli.run(&["logout"]).await.ok();
    assert!(!cli.credentials().exists());

    let help = cli.run(&["audit", "verify", "--help"]).await.ok();
    assert!(help.stdout.contains("exits 3"), "{help:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_and_scans_show_an_ingested_scan() {
    use alto_model::Clock as _;

    let app = TestApp::spawn().await;
    let tenant = app.new_tenant("Wayne").await;
    let (host_id, host) = app.enrolled_host(&tenant, "fs-inv").await;

    // 20 files: 19 recent ones (one with a name that is not UTF-8) and one untouched for
    // 1000 days.
    let fake_now = app.clock_now();
    let now_us = fake_now.timestamp_micros();
    let mut records: Vec<_> = (0..18)
        .map(|i| {
            alto_test_support::file_record(
                format!("/data/docs/report-{i:02}.pdf").as_bytes(),
                1000 + i,
                now_us,
                i64::try_from(i).expect("small"),
            )
        })
        .collect();
    records.push(alto_test_support::file_record(b"/data/caf\xe9.txt", 77, now_us, 1));
    records.push(alto_test_support::file_record(b"/data/archive/old.iso", 5_000_000, now_us, 1000));
    let body = alto_test_support::batch_bytes(alto_batch::Format::Parquet, &records);
    let scan_id = Uuid::new_v4();
    host.upload_scan_part(scan_id, 0, true, "full", "application/vnd.apache.parquet", body)
        .await
        .expect("upload");
    let scan = app.wait_for_scan(&tenant, scan_id).await;
    assert_eq!(scan.status, "completed", "{scan:?}");

    let cli = Altoctl::new();
    cli.login(&app, "wayne-admin", ADMIN_PASSWORD).await.ok();

    // Summary: table and JSON.
    let summary = cli.run(&["inventory", "summary"]).await.ok();
    for want in ["files", "20", ".pdf", "By last access", "Largest directories", "/data/docs"] {
        assert!(summary.stdout.contains(want), "missing {want:?}: {summary:#?}");
    }
    let json = cli
        .run(&["inventory", "summary", "--host", &host_id.to_string(), "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(json["files"], 20, "{json}");
    assert!(json["by_extension"].as_array().is_some_and(|b| !b.is_empty()), "{json}");

    // Files: all of them, paged; an escaped path is marked; the old one alone by age.
    let all =
        cli.run(&["inventory", "files", "--limit", "7", "--all", "-o", "json"]).await.ok().json();
    assert_eq!(all["items"].as_array().map(Vec::len), Some(20), "{all}");
    let table = cli.run(&["inventory", "files", "--path-prefix", "/data/caf"]).await.ok();
    assert!(table.stdout.contains("(escaped)"), "{table:#?}");
    let short = &host_id.simple().to_string()[24..];
    assert!(table.stdout.contains(short), "the host's short id: {table:#?}");

    // The CLI counts days from the real clock; the server's is fake, so aim between them.
    let gap = (alto_model::SystemClock.now() - fake_now).num_days().max(0);
    let days = (gap + 100).to_string();
    let old = cli
        .run(&["inventory", "files", "--accessed-older-than", &days, "-o", "json"])
        .await
        .ok()
        .json();
    let items = old["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{old}");
    assert_eq!(items[0]["file_path"], "/data/archive/old.iso");
    let old_table = cli.run(&["inventory", "files", "--modified-older-than", &days]).await.ok();
    assert!(old_table.stdout.contains("/data/archive/old.iso"), "{old_table:#?}");
    assert!(!old_table.stdout.contains("report-01"), "{old_table:#?}");
    let pdfs = cli
        .run(&["inventory", "files", "--extension", "PDF", "--min-size", "1010", "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(pdfs["items"].as_array().map(Vec::len), Some(8), "{pdfs}");

    // Scans.
    let list = cli.run(&["scans", "list"]).await.ok();
    assert!(list.stdout.contains(&scan_id.to_string()), "{list:#?}");
    assert!(list.stdout.contains("completed") && list.stdout.contains("inserted 20"), "{list:#?}");
    let list = cli.run(&["scans", "list", "--host", &host_id.to_string(), "-o", "json"]).await;
    assert_eq!(list.ok().json()["items"][0]["id"], scan_id.to_string());
    let got = cli.run(&["scans", "get", &scan_id.to_string()]).await.ok();
    for want in ["completed", "full", "inserted", "unchanged", "deleted"] {
        assert!(got.stdout.contains(want), "missing {want:?}: {got:#?}");
    }
    let got = cli.run(&["scans", "get", &scan_id.to_string(), "-o", "json"]).await.ok().json();
    assert_eq!(got["status"], "completed");
    assert_eq!(got["stats"]["inserted"], 20, "{got}");
    let missing = cli.run(&["scans", "get", &Uuid::new_v4().to_string()]).await;
    assert_eq!(missing.code, 1, "{missing:#?}");
    assert!(missing.stderr.starts_with("error: "), "{missing:#?}");

    // Bad input: usage errors (2) from the parser, with what was wrong.
    let neg = cli.run(&["inventory", "files", "--min-size", "-5"]).await;
    assert_eq!(neg.code, 2, "{neg:#?}");
    assert!(neg.stderr.contains("not a size"), "{neg:#?}");
    let date = cli.run(&["inventory", "files", "--accessed-before", "2025-13-01"]).await;
    assert_eq!(date.code, 2, "{date:#?}");
    assert!(date.stderr.contains("RFC 3339"), "{date:#?}");
    let both = cli
        .run(&[
            "inventory",
            "files",
            "--modified-before",
            "2025-01-01T00:00:00Z",
            "--modified-older-than",
            "5",
        ])
        .await;
    assert_eq!(both.code, 2, "{both:#?}");
    let range = cli.run(&["inventory", "files", "--min-size", "10", "--max-size", "5"]).await;
    assert_eq!(range.code, 1, "{range:#?}");
    assert!(range.stderr.contains("--min-size"), "{range:#?}");
    let cursor = cli.run(&["inventory", "files", "--cursor", "garbage!"]).await;
    assert_eq!(cursor.code, 1, "{cursor:#?}");
    assert!(cursor.stderr.contains("invalid"), "{cursor:#?}");
}

#[path = "cli/tiering.rs"]
mod tiering;

#[path = "cli/storage.rs"]
mod storage;

/// `hosts get` shows the on-access recall status the host's agent last reported, per file
/// system, and `planner-settings` the retention after recall.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_get_shows_the_on_access_status_and_settings_the_recall_retention() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("Acme").await;
    let (host, agent) = app.enrolled_host(&t, "fs1").await;
    let status: alto_api_types::OnAccessStatus = serde_json::from_value(serde_json::json!({
        "state": "partial", "reason": "/scratch is tmpfs", "survives_restart": true,
        "filesystems": [
            { "path": "/srv", "fs_type": "ext4", "state": "marked" },
            { "path": "/scratch", "fs_type": "tmpfs", "state": "unsupported_filesystem" }] }))
    .expect("status");
    agent
        .heartbeat(&alto_api_types::HeartbeatRequest {
            agent_version: "0.2.0".into(),
            os: None,
            hostname: None,
            volumes: vec![],
            on_access: Some(status),
        })
        .await
        .expect("heartbeat");
    let cli = Altoctl::new();
    cli.login(&app, "acme-admin", ADMIN_PASSWORD).await.ok();
    let id = host.to_string();
    let shown = cli.run(&["hosts", "get", &id]).await.ok();
    assert!(shown.stdout.contains("on-access recall"), "{shown:#?}");
    assert!(
        shown.stdout.contains("partial (/scratch is tmpfs), survives agent restarts"),
        "{shown:#?}"
    );
    assert!(shown.stdout.contains("/srv [ext4]: marked"), "{shown:#?}");
    assert!(shown.stdout.contains("/scratch [tmpfs]: unsupported_filesystem"), "{shown:#?}");
    let json = cli.run(&["hosts", "get", &id, "-o", "json"]).await.ok().json();
    assert_eq!(json["on_access"]["filesystems"][1]["fs_type"], "tmpfs");

    let set = cli.run(&["planner-settings", "set", "--recall-retention-days", "7"]).await.ok();
    assert!(set.stdout.contains("7 days"), "{set:#?}");
    let bad = cli.run(&["planner-settings", "set", "--recall-retention-days", "5000"]).await;
    assert_ne!(bad.code, 0, "{bad:#?}");
    assert!(bad.stderr.contains("recall_retention_days must be 0 to 3650"), "{bad:#?}");
    let got = cli.run(&["planner-settings", "get", "-o", "json"]).await.ok().json();
    assert_eq!(got["recall_retention_days"], 7, "a refused change changes nothing");
}
