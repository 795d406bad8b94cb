//! Storage targets of every kind: validation with field-named errors, secrets redacted in
//! every response and audit entry (and kept across updates), updates and deletion refused
//! while rules or live stubs depend on them, tenant isolation, and `POST …/test` against
//! real servers (moto and s3s-fs for S3, Azurite, Samba, and directories). A missing test
//! server binary skips its part (or fails with `ALTO_REQUIRE_TEST_SERVICES=1`).

use alto_test_services as ts;
use alto_test_support::{api, TestApp, TestTenant};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

const S3_SECRET: &str = "S3-secret-never-shown-1";
const AZ_SECRET: &str = "QXp1cmUtc2VjcmV0LW5ldmVyLXNob3du";
const SMB_SECRET: &str = "smb-secret-never-shown-3";

fn no_secrets(v: &Value, secrets: &[&str]) {
    let text = v.to_string();
    for s in secrets {
        assert!(!text.contains(s), "secret {s:?} leaked: {text}");
    }
}

async fn create(t: &TestTenant, name: &str, spec: &Value) -> (u16, Value) {
    let mut body = spec.clone();
    body["name"] = json!(name);
    api(&t.admin, Method::POST, &format!("/tenants/{}/storage-targets", t.id), Some(body)).await
}

async fn stored_config(app: &TestApp, id: &str) -> Value {
    let pool = app.db.owner_pool().await;
    let id: Uuid = id.parse().unwrap();
    sqlx::query_scalar("SELECT config FROM storage_targets WHERE id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap()
}

fn s3_spec(location: &str) -> Value {
    json!({"kind": "s3", "location": location, "config": {
        "endpoint": "http://127.0.0.1:9", "region": "eu-west-1", "access_key_id": "AKID",
        "secret_access_key": S3_SECRET, "allow_http": true, "path_style": true}})
}

#[tokio::test]
async fn every_kind_is_validated_redacted_updated_and_deleted() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("Acme").await;
    let base = format!("/tenants/{}/storage-targets", t.id);
    let secrets = [S3_SECRET, AZ_SECRET, SMB_SECRET];

    // Refused precisely, naming the field; nothing is created.
    let bad = [
        (json!({"kind": "tape", "location": "x"}), "kind"),
        (json!({"kind": "s3", "location": "s3://", "config": {}}), "location"),
        (json!({"kind": "s3", "location": "gs://bucket", "config": {}}), "location"),
        (
            json!({"kind": "s3", "location": "s3://b", "config": {"access_key_id": "a",
                   "secret_access_key": "s", "colour": "blue"}}),
            "config.colour: unknown field",
        ),
        (
            json!({"kind": "s3", "location": "s3://b", "config": {"access_key_id": "a"}}),
            "config.secret_access_key is required",
        ),
        (
            json!({"kind": "smb", "location": "smb://fs1/share", "config": {"username": "u"}}),
            "config.password is required",
        ),
        (
            json!({"kind": "smb", "location": "smb://fs1", "config": {"username": "u",
                   "password": SMB_SECRET}}),
            "location",
        ),
        (
            json!({"kind": "azure", "location": "azure://c", "config": {"account": "acme"}}),
            "config.access_key is required",
        ),
        (
            json!({"kind": "azure", "location": "azure://c", "config": {"account": "acme",
                   "access_key": 42}}),
            "config.access_key must be a non-empty string",
        ),
        (json!({"kind": "directory", "location": "/mnt/x", "config": {"a": 1}}), "config.a"),
        (json!({"kind": "directory", "location": ""}), "location"),
    ];
    for (i, (spec, want)) in bad.iter().enumerate() {
        let (st, v) = create(&t, &format!("bad-{i}"), spec).await;
        assert_eq!(st, 400, "{spec} -> {v}");
        assert_eq!(v["error"]["code"], "validation_failed", "{v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(want), "{spec}: {msg:?} should name {want:?}");
        no_secrets(&v, &secrets);
    }
    // Unknown top-level fields are a malformed body.
    let (st, v) =
        create(&t, "x", &json!({"kind": "directory", "location": "/m", "tenant_id": t.id})).await;
    assert_eq!((st, v["error"]["code"].as_str()), (400, Some("invalid_json")), "{v}");

    // One of each kind; secrets come back as "***", everywhere.
    let specs = [
        ("dir", json!({"kind": "directory", "location": "/mnt/tier2"})),
        ("s3", s3_spec("s3://tier/site-a")),
        (
            "az",
            json!({"kind": "azure", "location": "azure://tier/p", "config": {"account": "acme",
                   "access_key": AZ_SECRET}}),
        ),
        (
            "nas",
            json!({"kind": "smb", "location": "smb://fs1.example.com:445/tier2/alto",
                   "config": {"username": "alto", "password": SMB_SECRET}}),
        ),
    ];
    let mut ids = std::collections::BTreeMap::new();
    for (name, spec) in &specs {
        let (st, v) = create(&t, name, spec).await;
        assert_eq!(st, 201, "{v}");
        no_secrets(&v, &secrets);
        assert_eq!(v["kind"], spec["kind"]);
        assert_eq!(v["location"], spec["location"]);
        assert!(v["health"].is_null(), "never checked: {v}");
        ids.insert(*name, v["id"].as_str().unwrap().to_owned());
    }
    let (_, s3) = api(&t.admin, Method::GET, &format!("{base}/{}", ids["s3"]), None).await;
    assert_eq!(s3["config"]["secret_access_key"], "***");
    assert_eq!(s3["config"]["access_key_id"], "AKID");
    assert_eq!(s3["config"]["region"], "eu-west-1");
    let (_, az) = api(&t.admin, Method::GET, &format!("{base}/{}", ids["az"]), None).await;
    assert_eq!(az["config"]["access_key"], "***");
    let (_, nas) = api(&t.admin, Method::GET, &format!("{base}/{}", ids["nas"]), None).await;
    assert_eq!(nas["config"], json!({"username": "alto", "password": "***"}));
    let (st, list) = api(&t.admin, Method::GET, &base, None).await;
    assert_eq!(st, 200);
    no_secrets(&list, &secrets);
    let names: Vec<&str> =
        list.as_array().unwrap().iter().filter_map(|x| x["name"].as_str()).collect();
    assert_eq!(names, ["az", "default", "dir", "nas", "s3"]);
    // A duplicate name conflicts.
    let (st, v) = create(&t, "s3", &specs[1].1).await;
    assert_eq!((st, v["error"]["code"].as_str()), (409, Some("conflict")), "{v}");

    // PATCH: only what is given changes; the secret stays (stored as it was).
    let s3_path = format!("{base}/{}", ids["s3"]);
    let (st, v) =
        api(&t.admin, Method::PATCH, &s3_path, Some(json!({"config": {"region": "us-west-2"}})))
            .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["config"]["region"], "us-west-2");
    assert_eq!(v["config"]["secret_access_key"], "***");
    assert_eq!(stored_config(&app, &ids["s3"]).await["secret_access_key"], S3_SECRET);
    // PUT with the placeholder, or without the secret, keeps it; a new one replaces it.
    let mut put = s3_spec("s3://tier/site-b");
    put["config"]["secret_access_key"] = json!("***");
    let (st, v) = api(&t.admin, Method::PUT, &s3_path, Some(put.clone())).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["location"], "s3://tier/site-b");
    assert_eq!(v["config"]["region"], "eu-west-1", "PUT replaces the whole config");
    assert_eq!(stored_config(&app, &ids["s3"]).await["secret_access_key"], S3_SECRET);
    put["config"].as_object_mut().unwrap().remove("secret_access_key");
    let (st, _) = api(&t.admin, Method::PUT, &s3_path, Some(put.clone())).await;
    assert_eq!(st, 200);
    assert_eq!(stored_config(&app, &ids["s3"]).await["secret_access_key"], S3_SECRET);
    put["config"]["secret_access_key"] = json!("S3-rotated-secret-4");
    let (st, v) = api(&t.admin, Method::PUT, &s3_path, Some(put)).await;
    assert_eq!(st, 200);
    no_secrets(&v, &["S3-rotated-secret-4"]);
    assert_eq!(stored_config(&app, &ids["s3"]).await["secret_access_key"], "S3-rotated-secret-4");
    // Updates are validated like creates; PATCH null removes a field.
    let (st, v) =
        api(&t.admin, Method::PATCH, &s3_path, Some(json!({"config": {"access_key_id": null}})))
            .await;
    assert_eq!(st, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("config.access_key_id is required"));
    let (st, v) = api(&t.admin, Method::PATCH, &s3_path, Some(json!({"name": "renamed"}))).await;
    assert_eq!((st, v["error"]["code"].as_str()), (400, Some("invalid_json")), "{v}");
    // Another kind starts from an empty config: a placeholder secret cannot be carried over.
    let nas_path = format!("{base}/{}", ids["nas"]);
    let (st, v) = api(
        &t.admin,
        Method::PATCH,
        &nas_path,
        Some(json!({"kind": "s3",
        "location": "s3://x", "config": {"access_key_id": "a", "secret_access_key": "***"}})),
    )
    .await;
    assert_eq!(st, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("config.secret_access_key"), "{v}");

    // A rule uses `s3`: its kind cannot change and it cannot be deleted.
    let (st, rule) = api(
        &t.admin,
        Method::POST,
        &format!("/tenants/{}/rules", t.id),
        Some(json!({"name": "to-s3", "priority": 1, "action": {"type": "tier", "target": "s3"}})),
    )
    .await;
    assert_eq!(st, 201, "{rule}");
    let (st, v) = api(&t.admin, Method::DELETE, &s3_path, None).await;
    assert_eq!((st, v["error"]["code"].as_str()), (409, Some("conflict")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("to-s3"), "{v}");
    let (st, v) = api(
        &t.admin,
        Method::PUT,
        &s3_path,
        Some(json!({"kind": "directory", "location": "/mnt/x"})),
    )
    .await;
    assert_eq!((st, v["error"]["code"].as_str()), (409, Some("conflict")), "{v}");
    // ... but its location and credentials can.
    let (st, v) =
        api(&t.admin, Method::PATCH, &s3_path, Some(json!({"location": "s3://tier/c"}))).await;
    assert_eq!(st, 200, "{v}");

    // A live stub on `nas` blocks deletion and location changes, not credential changes.
    let (host, _) = app.enrolled_host(&t, "fs1").await;
    let pool = app.db.owner_pool().await;
    sqlx::query(
        "INSERT INTO stub_registry (id, customer_id, host_id, file_path, file_size, sha256,
            object_key, tiered_location, state, target_name, created_at, updated_at)
         VALUES ($1, $2, $3, '/srv/a', 1, repeat('a', 64), repeat('a', 64), 'x', 'stubbed',
            'nas', now(), now())",
    )
    .bind(Uuid::now_v7())
    .bind(t.id)
    .bind(host)
    .execute(&pool)
    .await
    .unwrap();
    let (st, v) = api(&t.admin, Method::DELETE, &nas_path, None).await;
    assert_eq!(st, 409, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("1 live stub"), "{v}");
    let (st, v) =
        api(&t.admin, Method::PATCH, &nas_path, Some(json!({"location": "smb://fs2/tier2"}))).await;
    assert_eq!(st, 409, "{v}");
    let (st, v) = api(
        &t.admin,
        Method::PATCH,
        &nas_path,
        Some(json!({"config": {"password": "smb-rotated-5"}})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["config"]["password"], "***");

    // Unused targets go; a kind change of an unused one is allowed.
    let dir_path = format!("{base}/{}", ids["dir"]);
    let (st, v) = api(&t.admin, Method::PUT, &dir_path, Some(s3_spec("s3://other"))).await;
    assert_eq!((st, v["kind"].as_str()), (200, Some("s3")), "{v}");
    let (st, v) = api(&t.admin, Method::DELETE, &dir_path, None).await;
    assert_eq!(st, 200, "{v}");
    no_secrets(&v, &secrets);
    let (st, _) = api(&t.admin, Method::GET, &dir_path, None).await;
    assert_eq!(st, 404);
    let rule_id = rule["id"].as_str().unwrap();
    let (st, _) =
        api(&t.admin, Method::DELETE, &format!("/tenants/{}/rules/{rule_id}", t.id), None).await;
    assert_eq!(st, 200);
    let (st, v) = api(&t.admin, Method::DELETE, &s3_path, None).await;
    assert_eq!(st, 200, "{v}");

    // Every change is audited, with secrets redacted and which ones changed.
    let (st, log) =
        api(&t.admin, Method::GET, &format!("/tenants/{}/audit?limit=500", t.id), None).await;
    assert_eq!(st, 200);
    no_secrets(&log, &[S3_SECRET, AZ_SECRET, SMB_SECRET, "S3-rotated-secret-4", "smb-rotated-5"]);
    let items = log["items"].as_array().unwrap();
    let count = |a: &str| items.iter().filter(|e| e["action"] == a).count();
    assert_eq!(count("storage_target.create"), 4);
    assert_eq!(count("storage_target.delete"), 2);
    assert!(count("storage_target.update") >= 6);
    let rotated = items
        .iter()
        .find(|e| {
            e["action"] == "storage_target.update"
                && e["details"]["secrets_changed"] == json!(["password"])
        })
        .expect("the password rotation is audited");
    assert_eq!(rotated["details"]["after"]["config"]["password"], "***");
}

#[tokio::test]
async fn other_tenants_cannot_see_change_test_or_delete_a_target() {
    let app = TestApp::spawn().await;
    let a = app.new_tenant("Acme").await;
    let b = app.new_tenant("Bolt").await;
    let (st, v) = create(&a, "s3", &s3_spec("s3://tier")).await;
    assert_eq!(st, 201, "{v}");
    let id = v["id"].as_str().unwrap();
    for tenant in [a.id, b.id] {
        let p = format!("/tenants/{tenant}/storage-targets/{id}");
        for (m, body) in [
            (Method::GET, None),
            (Method::PATCH, Some(json!({"location": "s3://stolen"}))),
            (Method::PUT, Some(s3_spec("s3://stolen"))),
            (Method::POST, None),
            (Method::DELETE, None),
        ] {
            let path = if m == Method::POST { format!("{p}/test") } else { p.clone() };
            let (st, v) = api(&b.admin, m.clone(), &path, body).await;
            assert_eq!(
                (st, v["error"]["code"].as_str()),
                (404, Some("not_found")),
                "{m} {path}: {v}"
            );
        }
    }
    let (_, list) =
        api(&b.admin, Method::GET, &format!("/tenants/{}/storage-targets", b.id), None).await;
    assert!(list.as_array().unwrap().iter().all(|t| t["id"] != id), "{list}");
    let (st, v) =
        api(&a.admin, Method::GET, &format!("/tenants/{}/storage-targets/{id}", a.id), None).await;
    assert_eq!((st, v["location"].as_str()), (200, Some("s3://tier")), "{v}");
}

/// Creates `name` from `spec`, tests it, and returns the test answer (after checking that it
/// was stored as `health` and that no secret is in it).
async fn test_target(t: &TestTenant, name: &str, spec: &Value, secrets: &[&str]) -> Value {
    let (st, v) = create(t, name, spec).await;
    assert_eq!(st, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let path = format!("/tenants/{}/storage-targets/{id}", t.id);
    let (st, r) = api(&t.admin, Method::POST, &format!("{path}/test"), None).await;
    assert_eq!(st, 200, "{r}");
    eprintln!("test {name}: {r}");
    no_secrets(&r, secrets);
    assert_eq!(r["target_id"], id.as_str());
    assert_eq!(r["recorded"], true, "{r}");
    assert_eq!(r["ok"], r["status"] == "ok", "{r}");
    let (_, got) = api(&t.admin, Method::GET, &path, None).await;
    assert_eq!(got["health"]["status"], r["status"], "{got}");
    assert_eq!(got["health"]["checked_at"], r["checked_at"], "{got}");
    assert_eq!(got["health"]["error"], r["error"], "{got}");
    r
}

#[track_caller]
fn assert_ok(r: &Value) {
    assert_eq!(r["status"], "ok", "{r}");
    assert!(r["error"].is_null(), "{r}");
    assert!(r["latency_ms"].as_i64().is_some(), "{r}");
    assert_eq!(r["usage"]["objects"], 0, "{r}");
    assert_eq!(r["usage"]["bytes"], 0, "{r}");
}

#[track_caller]
fn assert_failed(r: &Value, code: &str) {
    assert_eq!(r["status"], "failed", "{r}");
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(r["error"]["code"], code, "{r}");
    assert!(!r["error"]["message"].as_str().unwrap_or_default().is_empty(), "{r}");
    assert!(r["usage"].is_null(), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_endpoint_checks_s3_targets() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("Acme").await;
    // moto accepts any credentials: a working target, and a missing bucket.
    if let Some(moto) = ts::Moto::start() {
        moto.create_bucket("tier");
        let r = test_target(&t, "moto", &moto.spec("s3://tier/site-a"), &[ts::S3_SECRET_KEY]).await;
        assert_ok(&r);
        let r = test_target(
            &t,
            "moto-nobucket",
            &moto.spec("s3://missing-bucket"),
            &[ts::S3_SECRET_KEY],
        )
        .await;
        assert_failed(&r, "not_found");
    }
    let Some(s3) = ts::S3::start() else { return };
    s3.create_bucket("tier");
    // s3s-fs checks signatures: wrong credentials are refused.
    let r =
        test_target(&t, "wrong-key", &s3.spec("s3://tier", "not-the-secret"), &["not-the-secret"])
            .await;
    assert_failed(&r, "access_denied");
    let endpoint = s3.endpoint();
    drop(s3);
    let r = test_target(
        &t,
        "gone",
        &ts::s3_spec(&endpoint, "s3://tier", ts::S3_SECRET_KEY),
        &[ts::S3_SECRET_KEY],
    )
    .await;
    assert_failed(&r, "unreachable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_endpoint_checks_azure_targets() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("Acme").await;
    let Some(az) = ts::Azurite::start() else { return };
    az.create_container("tier");
    let r =
        test_target(&t, "az", &az.spec("azure://tier/site-a", ts::AZURITE_KEY), &[ts::AZURITE_KEY])
            .await;
    assert_ok(&r);
    let wrong = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXk=";
    let r = test_target(&t, "az-wrong", &az.spec("azure://tier", wrong), &[wrong]).await;
    assert_failed(&r, "access_denied");
    let r = test_target(
        &t,
        "az-nocontainer",
        &az.spec("azure://nothere", ts::AZURITE_KEY),
        &[ts::AZURITE_KEY],
    )
    .await;
    assert_failed(&r, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_endpoint_checks_smb_targets() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("Acme").await;
    let Some(smb) = ts::Samba::start() else { return };
    std::fs::create_dir(smb.share.join("alto")).unwrap();
    let r = test_target(&t, "nas", &smb.spec("share/alto", ts::SMB_PASSWORD), &[ts::SMB_PASSWORD])
        .await;
    assert_ok(&r);
    let r = test_target(&t, "nas-wrong", &smb.spec("share", "Wrong-Passw0rd"), &["Wrong-Passw0rd"])
        .await;
    assert_failed(&r, "access_denied");
    let r =
        test_target(&t, "nas-noshare", &smb.spec("noshare", ts::SMB_PASSWORD), &[ts::SMB_PASSWORD])
            .await;
    assert_failed(&r, "not_found");
    let r = test_target(
        &t,
        "nas-nobase",
        &smb.spec("share/not/there", ts::SMB_PASSWORD),
        &[ts::SMB_PASSWORD],
    )
    .await;
    assert_failed(&r, "not_found");
}

#[tokio::test]
async fn test_endpoint_checks_directories_the_server_sees() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_owned();
    let app = TestApp::spawn_with(|c| c.storage.directory_base = Some(base)).await;
    let t = app.new_tenant("Acme").await;
    let loc = dir.path().to_str().unwrap();
    let r = test_target(&t, "local", &json!({"kind": "directory", "location": loc}), &[]).await;
    assert_ok(&r);
    assert!(dir.path().join(format!("customer-{}-tiered", t.id)).is_dir());
    // Not on the server (only on the hosts, or relative to their base): unchecked.
    let missing = dir.path().join("not-mounted-here");
    let r = test_target(
        &t,
        "remote",
        &json!({"kind": "directory",
        "location": missing.to_str().unwrap()}),
        &[],
    )
    .await;
    assert_eq!((r["status"].as_str(), r["ok"].as_bool()), (Some("unchecked"), Some(false)), "{r}");
    assert_eq!(r["error"]["code"], "not_checkable", "{r}");
    assert!(!missing.exists(), "the server never creates a directory target's base");
    // The default target is relative to the agents' base directory.
    let (_, list) =
        api(&t.admin, Method::GET, &format!("/tenants/{}/storage-targets", t.id), None).await;
    let default = list.as_array().unwrap().iter().find(|x| x["name"] == "default").unwrap().clone();
    let (st, r) = api(
        &t.admin,
        Method::POST,
        &format!("/tenants/{}/storage-targets/{}/test", t.id, default["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!((st, r["status"].as_str()), (200, Some("unchecked")), "{r}");
    // A read-only role cannot run checks.
    let aud = app.user_with(&t, "aud", &[alto_model::Role::Auditor]).await;
    let (st, v) = api(
        &aud,
        Method::POST,
        &format!("/tenants/{}/storage-targets/{}/test", t.id, default["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!((st, v["error"]["code"].as_str()), (403, Some("forbidden")), "{v}");
    // A failing check is audited as a failure, a passing one as a success.
    let (_, log) = api(
        &t.admin,
        Method::GET,
        &format!("/tenants/{}/audit?action=storage_target.test", t.id),
        None,
    )
    .await;
    let outcomes: Vec<&str> =
        log["items"].as_array().unwrap().iter().filter_map(|e| e["outcome"].as_str()).collect();
    assert_eq!(outcomes.len(), 3, "{log}");
    assert!(outcomes.contains(&"success"), "{log}");
}

/// A fake internal HTTP service on loopback: counts connections and answers every request
/// with `status` and a body that must never reach a tenant.
struct Internal {
    port: u16,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

const INTERNAL_BODY: &str = "<Error><Code>AccessDenied</Code><Message>INTERNAL-SECRET \
    db_password=hunter2 from the metadata service</Message></Error>";

impl Internal {
    async fn start(status: &'static str) -> Internal {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let h = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = l.accept().await {
                h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut got = Vec::new();
                    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                    let resp = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/xml\r\n\
                         content-length: {}\r\nconnection: close\r\n\r\n{INTERNAL_BODY}",
                        INTERNAL_BODY.len()
                    );
                    let _ = sock.write_all(resp.as_bytes()).await;
                });
            }
        });
        Internal { port, hits }
    }

    fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Stores a target directly (as if saved under an older, laxer policy), bypassing validation.
async fn store_raw(app: &TestApp, t: &TestTenant, name: &str, spec: &Value) -> String {
    let pool = app.db.owner_pool().await;
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO storage_targets (id, customer_id, name, kind, location, config, created_at,
            updated_at) VALUES ($1, $2, $3, $4, $5, $6, now(), now())",
    )
    .bind(id)
    .bind(t.id)
    .bind(name)
    .bind(spec["kind"].as_str().unwrap())
    .bind(spec["location"].as_str().unwrap())
    .bind(spec.get("config").cloned().unwrap_or(json!({})))
    .execute(&pool)
    .await
    .unwrap();
    id.to_string()
}

/// SSRF: with the default outbound policy (no allow-list) a tenant cannot point a target at
/// the server's own network, neither when saving it (field-named `validation_failed`,
/// nothing stored) nor when testing one saved before (`not_allowed`, not a single
/// connection); directory targets are confined to `storage.directory_base`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn targets_cannot_reach_the_servers_own_network_or_file_system() {
    let base = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let b = base.path().to_owned();
    let app = TestApp::spawn_with(|c| {
        c.storage.allowed_endpoints.clear();
        c.storage.directory_base = Some(b);
    })
    .await;
    let t = app.new_tenant("Acme").await;
    let internal = Internal::start("403 Forbidden").await;
    let p = internal.port;
    let s3 = |ep: &str| {
        let mut v = s3_spec("s3://tier");
        v["config"]["endpoint"] = json!(ep);
        v
    };
    let refused = [
        (s3(&format!("http://127.0.0.1:{p}")), "config.endpoint"),
        (s3(&format!("http://localhost:{p}")), "config.endpoint"),
        (s3("http://169.254.169.254/latest/meta-data"), "config.endpoint"),
        (s3("http://10.1.2.3:9000"), "config.endpoint"),
        (s3(&format!("http://[::1]:{p}")), "config.endpoint"),
        (s3(&format!("http://[::ffff:127.0.0.1]:{p}")), "config.endpoint"),
        (s3(&format!("http://2130706433:{p}")), "config.endpoint"),
        (s3(&format!("http://x@127.0.0.1:{p}")), "config.endpoint"),
        (
            json!({"kind": "azure", "location": "azure://c", "config": {"account":
                "devstoreaccount1", "access_key": AZ_SECRET, "use_emulator": true}}),
            "config.use_emulator",
        ),
        (
            json!({"kind": "azure", "location": "azure://c", "config": {"account": "acme",
                "access_key": AZ_SECRET, "endpoint": "http://192.168.1.10", "allow_http": true}}),
            "config.endpoint",
        ),
        (
            json!({"kind": "smb", "location": format!("smb://127.0.0.1:{p}/share"),
                "config": {"username": "u", "password": SMB_SECRET}}),
            "location",
        ),
        (json!({"kind": "directory", "location": "/etc"}), "storage.directory_base"),
        (
            json!({"kind": "directory",
                "location": format!("{}/../etc", base.path().display())}),
            "storage.directory_base",
        ),
    ];
    for (i, (spec, field)) in refused.iter().enumerate() {
        let (st, v) = create(&t, &format!("x{i}"), spec).await;
        assert_eq!(
            (st, v["error"]["code"].as_str()),
            (400, Some("validation_failed")),
            "{spec}: {v}"
        );
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(field), "{spec}: {msg:?} should name {field}");
        no_secrets(&v, &[S3_SECRET, AZ_SECRET, SMB_SECRET]);
    }
    let (_, list) =
        api(&t.admin, Method::GET, &format!("/tenants/{}/storage-targets", t.id), None).await;
    assert_eq!(list.as_array().unwrap().len(), 1, "only `default`: {list}");
    // Public endpoints and locations under the base are fine.
    let (st, v) = create(&t, "aws", &s3("https://s3.eu-west-1.amazonaws.com")).await;
    assert_eq!(st, 201, "{v}");
    let under = base.path().join("tier2");
    std::fs::create_dir(&under).unwrap();
    let (st, v) =
        create(&t, "local", &json!({"kind": "directory", "location": under.to_str().unwrap()}))
            .await;
    assert_eq!(st, 201, "{v}");

    // Targets saved before (or by another policy) are checked again when tested: not one
    // connection, and a stable code.
    for (name, spec) in [
        ("old-ip", s3(&format!("http://127.0.0.1:{p}"))),
        ("old-name", s3(&format!("http://localhost:{p}"))),
        (
            "old-smb",
            json!({"kind": "smb", "location": format!("smb://localhost:{p}/share"),
                "config": {"username": "u", "password": SMB_SECRET}}),
        ),
    ] {
        let id = store_raw(&app, &t, name, &spec).await;
        let path = format!("/tenants/{}/storage-targets/{id}/test", t.id);
        let (st, r) = api(&t.admin, Method::POST, &path, None).await;
        assert_eq!(st, 200, "{r}");
        assert_failed(&r, "not_allowed");
        no_secrets(&r, &[S3_SECRET, SMB_SECRET]);
    }
    assert_eq!(internal.hits(), 0, "the server connected to an internal address");

    // A directory outside the base (saved before the base was set), or reached through a
    // symbolic link in the base: unchecked, and nothing is created there.
    let link = base.path().join("escape");
    std::os::unix::fs::symlink(outside.path(), &link).unwrap();
    for (name, loc) in [("old-dir", outside.path().to_owned()), ("via-link", link.clone())] {
        let id = store_raw(
            &app,
            &t,
            name,
            &json!({"kind": "directory", "location": loc.to_str().unwrap()}),
        )
        .await;
        let path = format!("/tenants/{}/storage-targets/{id}/test", t.id);
        let (_, r) = api(&t.admin, Method::POST, &path, None).await;
        assert_eq!(r["status"], "unchecked", "{r}");
        assert_eq!(r["error"]["code"], "not_checkable", "{r}");
    }
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0, "nothing outside the base");
}

/// Whatever a target's server answers, its text never reaches the tenant: the check gives a
/// fixed message for its code (and the HTTP status).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_answers_never_echo_what_the_target_sent() {
    let app = TestApp::spawn().await; // loopback allow-listed, as for the test servers
    let t = app.new_tenant("Acme").await;
    for status in ["403 Forbidden", "404 Not Found", "400 Bad Request"] {
        let internal = Internal::start(status).await;
        let mut spec = s3_spec("s3://tier");
        spec["config"]["endpoint"] = json!(format!("http://127.0.0.1:{}", internal.port));
        let name = format!("echo-{}", &status[..3]);
        let r = test_target(&t, &name, &spec, &[S3_SECRET, "INTERNAL-SECRET", "hunter2"]).await;
        assert_eq!(r["status"], "failed", "{r}");
        assert!(internal.hits() > 0, "the allow-listed server was asked");
        let msg = r["error"]["message"].as_str().unwrap();
        assert!(!msg.contains("Error") && !msg.contains("metadata"), "{msg}");
    }
    let (_, log) = api(
        &t.admin,
        Method::GET,
        &format!("/tenants/{}/audit?action=storage_target.test", t.id),
        None,
    )
    .await;
    no_secrets(&log, &["INTERNAL-SECRET", "hunter2"]);
}
