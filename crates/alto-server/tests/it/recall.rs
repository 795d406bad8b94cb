//! Recall reports (`POST /agent/recalled`) as the server records them: the registry is put
//! right whatever state the file's entry was in, resends are harmless, replaced stubs keep
//! their object for the retention window and are then released to reconciliation, failed and
//! denied recalls raise attributed alerts, every recall is audited and counted, the storm
//! detector flags a busy process or user once per window, hosts' on-access status is stored
//! and shown, and the planner leaves recently recalled files alone.

use std::time::Duration;

use alto_client::Client;
use alto_test_support::{api, file_record, TestApp, TestTenant, ADMIN_PASSWORD};
use futures::StreamExt as _;
use reqwest::Method;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

pub(crate) const SHA: &str = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn events(app: &TestApp, c: &Client) -> Ws {
    let mut req = format!("ws://{}/api/v1/events", app.addr).into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {}", c.token().unwrap()).parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    ws
}

async fn drain(ws: &mut Ws) -> Vec<Value> {
    let mut out = Vec::new();
    while let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_millis(700), ws.next()).await
    {
        if let Message::Text(t) = msg {
            out.push(serde_json::from_str(&t).unwrap());
        }
    }
    out
}

/// A host with `n` files `/srv/f{i}.bin` in one running job: every file staged (its registry
/// entry `pending`), those in `stub` stubbed. Returns the host, its agent and the job id.
pub(crate) async fn tiered(
    app: &TestApp,
    t: &TestTenant,
    n: usize,
    stub: &[usize],
) -> (Uuid, Client, String) {
    let (host, agent) = app.enrolled_host(t, "fs1").await;
    // No planning run after ingest: it could take the files before the manual run below.
    let mut s = t.admin.get_planner_settings(t.id).await.unwrap();
    s.plan_after_ingest = false;
    t.admin.put_planner_settings(t.id, &s).await.unwrap();
    let now = app.clock_now().timestamp_micros();
    let recs: Vec<_> = (0..n)
        .map(|i| file_record(format!("/srv/f{i}.bin").as_bytes(), 100_000, now, 400))
        .collect();
    app.scan_files(t, &agent, &recs).await;
    app.tier_everything(t, "default", None).await;
    let (st, plan) =
        api(&t.admin, Method::POST, &format!("/tenants/{}/plans", t.id), Some(json!({}))).await;
    assert_eq!((st, plan["stats"]["files"].as_u64()), (201, Some(n as u64)), "{plan}");
    let (_, claimed) = api(&agent, Method::POST, "/agent/jobs/claim", Some(json!({}))).await;
    let job = &claimed["jobs"][0];
    let jid = job["job_id"].as_str().unwrap().to_owned();
    let seq_of = |path: &str| {
        job["files"].as_array().unwrap().iter().find(|f| f["file_path"] == path).unwrap()["seq"]
            .clone()
    };
    let result = |i: usize, outcome: &str| {
        json!({ "seq": seq_of(&format!("/srv/f{i}.bin")), "outcome": outcome, "sha256": SHA,
                "object_key": format!("objects/cc/{SHA}"), "stored_size": 100_000 })
    };
    let staged: Vec<Value> = (0..n).map(|i| result(i, "staged")).collect();
    let (st, v) = api(
        &agent,
        Method::POST,
        &format!("/agent/jobs/{jid}/files"),
        Some(json!({ "results": staged })),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    if !stub.is_empty() {
        let stubbed: Vec<Value> = stub.iter().map(|&i| result(i, "stubbed")).collect();
        let (st, v) = api(
            &agent,
            Method::POST,
            &format!("/agent/jobs/{jid}/files"),
            Some(json!({ "results": stubbed })),
        )
        .await;
        assert_eq!(st, 200, "{v}");
    }
    (host, agent, jid)
}

async fn report(agent: &Client, body: Value) -> (u16, Value) {
    api(agent, Method::POST, "/agent/recalled", Some(body)).await
}

async fn recalled(agent: &Client, path: &str) -> Value {
    let (st, v) = report(agent, json!({ "path": path, "sha256": SHA })).await;
    assert_eq!(st, 200, "{v}");
    v
}

pub(crate) async fn is_stubbed(t: &TestTenant, path: &str) -> bool {
    let (_, inv) = api(
        &t.admin,
        Method::GET,
        &format!("/tenants/{}/inventory/files?path_prefix={path}", t.id),
        None,
    )
    .await;
    inv["items"][0]["is_stubbed"].as_bool().unwrap()
}

/// Audit entries of the tenant whose action starts with `action`.
pub(crate) async fn audit(t: &TestTenant, action: &str) -> Vec<Value> {
    let (st, v) = api(
        &t.admin,
        Method::GET,
        &format!("/tenants/{}/audit?action={action}&limit=500", t.id),
        None,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    v["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_recall_leaves_the_registry_right_whatever_state_the_entry_was_in() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("Acme").await;
    let (_, agent, jid) = tiered(&app, &t, 5, &[1, 3]).await;

    // Pending (the agent was killed between stubbing and reporting): rehydrated, not 404.
    assert!(!is_stubbed(&t, "/srv/f0.bin").await);
    let v = recalled(&agent, "/srv/f0.bin").await;
    assert_eq!(
        (&v["recorded"], &v["previous_state"], &v["state"]),
        (&json!(true), &json!("pending"), &json!("rehydrated")),
        "{v}"
    );
    // Stubbed: rehydrated and the inventory row is a plain file again.
    assert!(is_stubbed(&t, "/srv/f1.bin").await);
    let v = recalled(&agent, "/srv/f1.bin").await;
    assert_eq!((&v["recorded"], &v["state"]), (&json!(true), &json!("rehydrated")), "{v}");
    assert!(!is_stubbed(&t, "/srv/f1.bin").await);
    let recall_audits = audit(&t, "stub.recall").await.len();
    assert_eq!(recall_audits, 2);
    // A resend: 200, nothing recorded, audited or counted again.
    let again = recalled(&agent, "/srv/f1.bin").await;
    assert_eq!((&again["recorded"], &again["duplicate"]), (&json!(false), &json!(true)));
    assert_eq!(again["stub_id"], v["stub_id"]);
    assert_eq!(audit(&t, "stub.recall").await.len(), recall_audits, "no second audit entry");

    // Failed (the job ended before the agent reported `stubbed`): rehydrated.
    let (st, _) = api(
        &agent,
        Method::POST,
        &format!("/agent/jobs/{jid}/complete"),
        Some(json!({ "state": "succeeded" })),
    )
    .await;
    assert_eq!(st, 200);
    let (_, failed) =
        api(&t.admin, Method::GET, &format!("/tenants/{}/stubs?state=failed", t.id), None).await;
    assert_eq!(failed["items"].as_array().unwrap().len(), 2, "{failed}");
    let v = recalled(&agent, "/srv/f2.bin").await;
    assert_eq!((&v["previous_state"], &v["state"]), (&json!("failed"), &json!("rehydrated")));
    // Orphaned (as reconciliation may leave it): rehydrated.
    let owner = app.db.owner_pool().await;
    sqlx::query("UPDATE stub_registry SET state = 'orphaned' WHERE file_path = '/srv/f4.bin'")
        .execute(&owner)
        .await
        .unwrap();
    let v = recalled(&agent, "/srv/f4.bin").await;
    assert_eq!((&v["previous_state"], &v["state"]), (&json!("orphaned"), &json!("rehydrated")));

    // A path the registry does not know (or other content): 200, nothing recorded, audited once.
    for (path, sha) in [("/srv/never-tiered.bin", SHA), ("/srv/f3.bin", &"d".repeat(64))] {
        let (st, v) = report(&agent, json!({ "path": path, "sha256": sha })).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!((&v["recorded"], &v["state"]), (&json!(false), &Value::Null), "{v}");
    }
    let entries = audit(&t, "stub.recall").await;
    let unknown: Vec<&Value> =
        entries.iter().filter(|e| e["details"]["registry"] == "unknown").collect();
    assert_eq!(unknown.len(), 2, "{entries:?}");
    assert!(unknown.iter().any(|e| e["details"]["path"] == "/srv/never-tiered.bin"));
    // The stub of other content is untouched.
    assert!(is_stubbed(&t, "/srv/f3.bin").await);

    // Bad input: a stable code, nothing changes.
    let before = audit(&t, "stub.recall").await.len();
    let (st, v) = report(&agent, json!({ "path": "/srv/f3.bin", "sha256": "XYZ" })).await;
    assert_eq!((st, v["error"]["code"].as_str()), (400, Some("validation_failed")), "{v}");
    let (st, v) =
        report(&agent, json!({ "path": "/srv/f3.bin", "sha256": SHA, "outcome": "vanished" }))
            .await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(audit(&t, "stub.recall").await.len(), before);
    assert!(is_stubbed(&t, "/srv/f3.bin").await);

    let (_, sum) =
        api(&t.admin, Method::GET, &format!("/tenants/{}/stubs/summary", t.id), None).await;
    assert_eq!(sum["per_host"][0]["rehydrated"], 4, "{sum}");
    assert_eq!(sum["stubs"], 1, "{sum}");
}

#[tokio::test]
async fn a_replaced_stub_keeps_its_object_for_the_retention_window_then_releases_it() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("Acme").await;
    let (_, agent, _) = tiered(&app, &t, 2, &[0, 1]).await;
    let check = |path: &'static str| {
        let agent = agent.clone();
        async move {
            let (st, v) = api(
                &agent,
                Method::POST,
                "/agent/stubs/check",
                Some(json!({ "refs": [{ "path": path, "sha256": SHA }] })),
            )
            .await;
            assert_eq!(st, 200, "{v}");
            v["states"][0].as_str().unwrap().to_owned()
        }
    };
    let now = app.clock_now();
    let (st, v) = report(
        &agent,
        json!({ "path": "/srv/f0.bin", "sha256": SHA, "trigger": "on_access",
                "outcome": "replaced", "process": { "pid": 9, "exe": "/usr/bin/cp" } }),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!((&v["recorded"], &v["state"]), (&json!(true), &json!("replaced")), "{v}");
    let until: chrono::DateTime<chrono::Utc> = v["retain_until"].as_str().unwrap().parse().unwrap();
    assert_eq!(until, now + chrono::Duration::days(30));
    assert!(!is_stubbed(&t, "/srv/f0.bin").await, "an ordinary file now");
    let (_, list) =
        api(&t.admin, Method::GET, &format!("/tenants/{}/stubs?state=replaced", t.id), None).await;
    assert_eq!(list["items"][0]["file_path"], "/srv/f0.bin", "{list}");
    assert!(list["items"][0]["retain_until"].is_string());
    let (_, sum) =
        api(&t.admin, Method::GET, &format!("/tenants/{}/stubs/summary", t.id), None).await;
    assert_eq!((&sum["per_host"][0]["replaced"], &sum["stubs"]), (&json!(1), &json!(1)));
    // A resend changes nothing (the retention does not restart).
    app.clock.advance(chrono::Duration::days(1));
    let (_, again) =
        report(&agent, json!({ "path": "/srv/f0.bin", "sha256": SHA, "outcome": "replaced" }))
            .await;
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["retain_until"], v["retain_until"]);
    // Reconciliation keeps the object through the window (never deleted early) …
    assert_eq!(check("/srv/f0.bin").await, "live");
    app.clock.advance(chrono::Duration::days(28));
    assert_eq!(check("/srv/f0.bin").await, "live");
    // … and collects it after (never leaked); a stub still in place stays live.
    app.clock.advance(chrono::Duration::days(2));
    assert_eq!(check("/srv/f0.bin").await, "unknown");
    assert_eq!(check("/srv/f1.bin").await, "live");
}

#[tokio::test]
async fn failed_and_denied_recalls_raise_attributed_alerts_and_every_recall_is_counted() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("Acme").await;
    let (host, agent, _) = tiered(&app, &t, 3, &[0, 2]).await;
    let mut ws = events(&app, &t.admin).await;
    let process = json!({ "pid": 4242, "exe": "/usr/bin/cat", "uid": 1001, "user": "alice" });

    let (st, v) = report(
        &agent,
        json!({ "path": "/srv/f0.bin", "sha256": SHA, "trigger": "on_access", "outcome": "failed",
                "error": "tier-2 unavailable: connection refused", "process": process,
                "duration_ms": 5000 }),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!((&v["recorded"], &v["state"]), (&json!(false), &json!("stubbed")), "{v}");
    assert!(is_stubbed(&t, "/srv/f0.bin").await, "still a stub");
    // Denied on a stub the registry still holds as pending: it is a stub, so it says so now.
    let (st, v) = report(
        &agent,
        json!({ "path": "/srv/f1.bin", "sha256": SHA, "trigger": "on_access", "outcome": "denied",
                "error": "policy: /usr/bin/cat may not recall", "process": process }),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!((&v["previous_state"], &v["state"]), (&json!("pending"), &json!("stubbed")));
    assert!(is_stubbed(&t, "/srv/f1.bin").await);
    // A successful on-access recall, for the counters.
    let (st, _) = report(
        &agent,
        json!({ "path": "/srv/f2.bin", "sha256": SHA, "trigger": "on_access",
                "process": process, "bytes": 100000, "duration_ms": 12 }),
    )
    .await;
    assert_eq!(st, 200);

    let got = drain(&mut ws).await;
    for kind in ["recall.failed", "recall.denied"] {
        let a = got
            .iter()
            .find(|e| e["type"] == "alert" && e["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} alert in {got:?}"));
        assert_eq!(a["host_id"], host.to_string());
        assert_eq!(a["host"], "fs1");
        assert_eq!(a["trigger"], "on_access");
        assert_eq!(a["process"], process);
        assert!(a["error"].as_str().unwrap().len() > 5, "{a}");
    }
    assert_eq!(got.iter().filter(|e| e["type"] == "alert").count(), 2, "no alert for a success");

    // The audit trail attributes each recall: process, user, host, trigger, outcome, bytes,
    // duration.
    let entries = audit(&t, "stub.recall").await;
    assert_eq!(entries.len(), 3);
    let by_outcome = |o: &str| entries.iter().find(|e| e["details"]["outcome"] == o).unwrap();
    let f = by_outcome("failed");
    assert_eq!(f["outcome"], "failure");
    assert_eq!(f["details"]["process"]["user"], "alice");
    assert_eq!(f["details"]["process"]["pid"], 4242);
    assert_eq!(f["details"]["host"], "fs1");
    assert_eq!(f["details"]["trigger"], "on_access");
    assert_eq!(f["details"]["duration_ms"], 5000);
    let r = by_outcome("recalled");
    assert_eq!((&r["outcome"], &r["details"]["bytes"]), (&json!("success"), &json!(100000)));
    assert_eq!(by_outcome("denied")["details"]["process"]["exe"], "/usr/bin/cat");

    // Metrics, with units and without per-path or per-process labels.
    let text =
        reqwest::get(format!("{}/metrics", app.base_url)).await.unwrap().text().await.unwrap();
    for want in [
        "alto_recalls_total{trigger=\"on_access\",outcome=\"failed\"}",
        "alto_recalls_total{trigger=\"on_access\",outcome=\"denied\"}",
        "alto_recalls_total{trigger=\"on_access\",outcome=\"recalled\"}",
        "alto_recall_bytes_total{trigger=\"on_access\"}",
        "alto_recall_duration_seconds_bucket{trigger=\"on_access\",le=\"10\"}",
    ] {
        assert!(text.contains(want), "{want} missing from\n{text}");
    }
    for line in text.lines().filter(|l| l.starts_with("alto_recall")) {
        assert!(
            !["path=", "pid=", "exe=", "user="].iter().any(|l| line.contains(l)),
            "unbounded label: {line}"
        );
    }
}

#[tokio::test]
async fn the_storm_detector_flags_a_busy_process_or_user_once_per_window() {
    let app = TestApp::spawn_with(|c| {
        c.recalls.storm_threshold = 3;
        c.recalls.storm_window = Duration::from_secs(600);
    })
    .await;
    let t = app.new_tenant("Acme").await;
    let (_, agent) = app.enrolled_host(&t, "fs1").await;
    let mut ws = events(&app, &t.admin).await;
    let mut n = 0;
    let mut recall = |exe: &'static str, user: &'static str| {
        n += 1;
        let k = n;
        let agent = agent.clone();
        async move {
            let (st, v) = report(
                &agent,
                json!({ "path": format!("/srv/s{k}.bin"), "sha256": SHA, "trigger": "on_access",
                        "process": { "pid": 100 + k, "exe": exe, "uid": 1002, "user": user } }),
            )
            .await;
            assert_eq!(st, 200, "{v}");
        }
    };
    for _ in 0..3 {
        recall("/usr/bin/clamscan", "bob").await;
    }
    assert!(audit(&t, "recall.storm").await.is_empty(), "3 is not more than 3");
    recall("/usr/bin/clamscan", "bob").await;
    let storms = audit(&t, "recall.storm").await;
    let subjects: Vec<(String, String)> = storms
        .iter()
        .map(|e| {
            (
                e["details"]["subject_kind"].as_str().unwrap().to_owned(),
                e["details"]["subject"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(storms.len(), 2, "{storms:?}");
    assert!(subjects.contains(&("exe".into(), "/usr/bin/clamscan".into())), "{subjects:?}");
    assert!(subjects.contains(&("user".into(), "bob".into())), "{subjects:?}");
    // More of the same within the window: no new alert (once per window per subject).
    for _ in 0..5 {
        recall("/usr/bin/clamscan", "bob").await;
    }
    recall("/usr/bin/updatedb", "bob").await;
    assert_eq!(audit(&t, "recall.storm").await.len(), 2);
    let alerts: Vec<Value> =
        drain(&mut ws).await.into_iter().filter(|e| e["kind"] == "recall.storm").collect();
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    assert_eq!(alerts[0]["host"], "fs1");
    assert_eq!(alerts[0]["threshold"], 3);
    // The counts live in PostgreSQL (any replica, any restart sees them) …
    let owner = app.db.owner_pool().await;
    let rows: i64 = sqlx::query_scalar("SELECT coalesce(sum(recalls), 0)::bigint FROM recall_rate WHERE subject = '/usr/bin/clamscan'")
        .fetch_one(&owner)
        .await
        .unwrap();
    assert_eq!(rows, 9);
    // … the sliding window moves on: after two windows the same process is flagged again,
    // and the expiry drops the windows that no longer count.
    app.clock.advance(chrono::Duration::minutes(25));
    for _ in 0..4 {
        recall("/usr/bin/clamscan", "carol").await;
    }
    let storms = audit(&t, "recall.storm").await;
    assert_eq!(storms.len(), 4, "{storms:?}");
    app.workers.recall_expiry.step(&app.state).await.unwrap();
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM recall_rate WHERE recalls < 4")
        .fetch_one(&owner)
        .await
        .unwrap();
    assert_eq!(left, 0, "the old windows (updatedb's single recall among them) are gone");
}

#[tokio::test]
async fn the_hosts_on_access_status_is_stored_and_shown() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("Acme").await;
    let (host, agent) = app.enrolled_host(&t, "fs1").await;
    let status = json!({ "state": "partial", "reason": "/scratch is tmpfs",
        "survives_restart": true, "filesystems": [
            { "path": "/srv", "fs_type": "ext4", "state": "marked" },
            { "path": "/scratch", "fs_type": "tmpfs", "state": "unsupported_filesystem" }] });
    let hb = |on_access: Option<Value>| {
        let mut b = json!({ "agent_version": "0.2.0" });
        if let Some(o) = on_access {
            b["on_access"] = o;
        }
        b
    };
    let (st, v) =
        api(&agent, Method::POST, "/agent/heartbeat", Some(hb(Some(status.clone())))).await;
    assert_eq!(st, 200, "{v}");
    let h = t.admin.get_host(t.id, host).await.unwrap();
    let o = h.on_access.expect("stored");
    assert_eq!(o.state, "partial");
    assert!(o.survives_restart);
    assert_eq!(o.filesystems[1].state, "unsupported_filesystem");
    assert_eq!(h.on_access_reported_at, Some(app.clock_now()));
    // A status that does not fit is refused with a stable code, and changes nothing.
    let mut bad = status.clone();
    bad["filesystems"][0]["state"] = json!("half-marked");
    let (st, v) = api(&agent, Method::POST, "/agent/heartbeat", Some(hb(Some(bad)))).await;
    assert_eq!((st, v["error"]["code"].as_str()), (400, Some("validation_failed")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("filesystems[].state"));
    assert_eq!(t.admin.get_host(t.id, host).await.unwrap().on_access.unwrap().state, "partial");
    // A long kernel message is cut, not refused: the heartbeat still counts.
    let mut long = status.clone();
    long["filesystems"][0]["state"] = json!("error");
    long["filesystems"][0]["error"] = json!("e".repeat(10_000));
    let (st, v) = api(&agent, Method::POST, "/agent/heartbeat", Some(hb(Some(long)))).await;
    assert_eq!(st, 200, "{v}");
    let o = t.admin.get_host(t.id, host).await.unwrap().on_access.unwrap();
    assert!(o.filesystems[0].error.as_ref().unwrap().len() < 1100);
    // An agent that does not say (an older one): nothing is claimed for it.
    let (st, _) = api(&agent, Method::POST, "/agent/heartbeat", Some(hb(None))).await;
    assert_eq!(st, 200);
    let h = t.admin.get_host(t.id, host).await.unwrap();
    assert!(h.on_access.is_none() && h.on_access_reported_at.is_none());
}

#[tokio::test]
async fn recently_recalled_files_are_not_tiered_again_within_the_retention() {
    let app = TestApp::spawn().await;
    let mut t = app.new_tenant("Acme").await;
    let (host, agent, jid) = tiered(&app, &t, 2, &[0, 1]).await;
    let (st, _) = api(
        &agent,
        Method::POST,
        &format!("/agent/jobs/{jid}/complete"),
        Some(json!({ "state": "succeeded" })),
    )
    .await;
    assert_eq!(st, 200);
    let tp = format!("/tenants/{}", t.id);
    let (_, s) = api(&t.admin, Method::GET, &format!("{tp}/planner-settings"), None).await;
    assert_eq!(s["recall_retention_days"], 30, "the default");
    recalled(&agent, "/srv/f0.bin").await;
    let plan = |c: Client| {
        let tp = tp.clone();
        async move {
            let (st, p) = api(&c, Method::POST, &format!("{tp}/plans"), Some(json!({}))).await;
            assert!(st == 201 || st == 200, "{p}");
            p["stats"]["files"].as_u64().unwrap_or(0)
        }
    };
    assert_eq!(plan(t.admin.clone()).await, 0, "recalled within 30 days; the other is a stub");
    let (st, e) = api(
        &t.admin,
        Method::GET,
        &format!("{tp}/rules/explain?host_id={host}&path=/srv/f0.bin"),
        None,
    )
    .await;
    assert_eq!(st, 200, "{e}");
    assert_eq!(e["explanation"]["decision"], "recently_recalled", "{e}");
    assert!(e["explanation"]["reason"].as_str().unwrap().contains("30 days"), "{e}");
    // Bad settings are refused with a stable code.
    let mut bad = s.clone();
    bad["recall_retention_days"] = json!(-1);
    let (st, v) = api(&t.admin, Method::PUT, &format!("{tp}/planner-settings"), Some(bad)).await;
    assert_eq!((st, v["error"]["code"].as_str()), (400, Some("validation_failed")), "{v}");
    // A rule's own retention overrides the tenant's: 10 days.
    let (_, rules) = api(&t.admin, Method::GET, &format!("{tp}/rules"), None).await;
    let rule = &rules[0];
    let mut spec = rule["spec"].clone();
    spec["action"]["retain_after_recall_days"] = json!(10);
    let (st, v) = api(
        &t.admin,
        Method::PUT,
        &format!("{tp}/rules/{}", rule["id"].as_str().unwrap()),
        Some(spec.clone()),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    spec["action"]["retain_after_recall_days"] = json!(5000);
    let (st, v) = api(
        &t.admin,
        Method::PUT,
        &format!("{tp}/rules/{}", rule["id"].as_str().unwrap()),
        Some(spec),
    )
    .await;
    assert_eq!(st, 400, "{v}");
    assert!(v.to_string().contains("action.retain_after_recall_days"), "{v}");
    app.clock.advance(chrono::Duration::days(9));
    t.admin = app.login("acme-admin", ADMIN_PASSWORD).await;
    assert_eq!(plan(t.admin.clone()).await, 0, "9 days < 10");
    app.clock.advance(chrono::Duration::days(2));
    t.admin = app.login("acme-admin", ADMIN_PASSWORD).await;
    assert_eq!(plan(t.admin.clone()).await, 1, "11 days > 10: tiered again");
}
