//! Rules, validation, preview, explain and the planner end to end: a scan is ingested, the
//! planner runs on its own and creates jobs with estimates; caps, watermarks, schedules,
//! cancel and retry.

use alto_batch::ScanRecord;
use alto_client::Client;
use alto_test_support::{api, file_record, TestApp, TestTenant};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

fn rec(app: &TestApp, path: &str, size: u64, age_days: i64) -> ScanRecord {
    file_record(path.as_bytes(), size, app.clock_now().timestamp_micros(), age_days)
}

async fn ingest(app: &TestApp, t: &TestTenant, agent: &Client, recs: &[ScanRecord]) {
    assert_eq!(app.scan_files(t, agent, recs).await.status, "completed");
}

/// Runs the queued planning runs (driving the planner worker), then lists the plans.
async fn wait_plans(app: &TestApp, t: &TestTenant, n: usize) -> Vec<Value> {
    let planner = &app.workers.planner;
    for _ in 0..300 {
        app.run_planner().await;
        let seen = planner.steps();
        let (_, v) = api(&t.admin, Method::GET, &format!("/tenants/{}/plans", t.id), None).await;
        let items = v["items"].as_array().cloned().unwrap_or_default();
        if items.len() >= n {
            return items;
        }
        // Not here: the run was queued on another replica's worker; wait for a step.
        planner.wait_step_after(seen, std::time::Duration::from_millis(100)).await;
    }
    panic!("no plan appeared");
}

#[allow(clippy::needless_pass_by_value)]
fn rule(name: &str, priority: i32, conditions: Value, action: Value) -> Value {
    json!({ "name": name, "priority": priority, "conditions": conditions, "action": action })
}

#[tokio::test]
async fn bad_rules_are_refused_precisely_and_change_nothing() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("Acme").await;
    let base = format!("/tenants/{}/rules", t.id);
    let tier = json!({ "type": "tier", "target": "default" });
    let (st, _) =
        api(&t.admin, Method::POST, &base, Some(rule("ok", 10, json!({}), tier.clone()))).await;
    assert_eq!(st, 201);
    for (body, want) in [
        (rule("a", 20, json!({ "path_globs": ["srv/*.iso"] }), tier.clone()), "must be absolute"),
        (rule("b", 20, json!({ "path_globs": ["/srv/[abc"] }), tier.clone()), "unclosed"),
        (rule("c", 20, json!({ "path_regex": "(a+)+$" }), tier.clone()), "catastrophic"),
        (
            rule("d", 20, json!({ "path_regex": "(unclosed" }), tier.clone()),
            "invalid regular expression",
        ),
        (rule("e", 20, json!({ "min_size_bytes": -1 }), tier.clone()), "must not be negative"),
        (
            rule("f", 20, json!({ "accessed_older_than_days": 99999999 }), tier.clone()),
            "at most 36500",
        ),
        (
            rule("g", 20, json!({}), json!({ "type": "tier", "target": "nowhere" })),
            "unknown storage target `nowhere`",
        ),
        (rule("h", 10, json!({}), tier.clone()), "priority 10 is already used by rule `ok`"),
        (rule("OK", 20, json!({}), tier.clone()), "a rule named `ok` already exists"),
        (
            rule(
                "i",
                20,
                json!({ "extensions": ["iso"], "exclude_extensions": [".ISO"] }),
                tier.clone(),
            ),
            "both included and excluded",
        ),
        (
            rule("j", 20, json!({ "min_size_bytes": 10, "max_size_bytes": 5 }), tier.clone()),
            "below min_size_bytes",
        ),
        (
            rule("k", 20, json!({}), tier.clone())
                .as_object()
                .map(|o| {
                    let mut o = o.clone();
                    o.insert("schedule".into(), json!("every day"));
                    Value::Object(o)
                })
                .unwrap(),
            "five",
        ),
        (rule("l", 20, json!({ "stub_state": "stubbed" }), tier.clone()), "already tiered"),
    ] {
        let (st, v) = api(&t.admin, Method::POST, &base, Some(body.clone())).await;
        assert_eq!(st, 400, "{body}: {v}");
        assert_eq!(v["error"]["code"], "validation_failed");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(want), "{body}: {msg}");
        // The validate endpoint reports the same, field by field.
        let (st, v) = api(&t.admin, Method::POST, &format!("{base}/validate"), Some(body)).await;
        assert_eq!(st, 200);
        assert_eq!(v["valid"], false);
        assert!(v["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["message"].as_str().unwrap().contains(want)));
    }
    // Unknown fields are refused too.
    let (st, v) = api(
        &t.admin,
        Method::POST,
        &base,
        Some(json!({ "name": "x", "priority": 1, "action": tier, "colour": "red" })),
    )
    .await;
    assert_eq!((st, v["error"]["code"].as_str()), (400, Some("invalid_json")));
    let (_, list) = api(&t.admin, Method::GET, &base, None).await;
    assert_eq!(list.as_array().unwrap().len(), 1, "nothing but the first rule was created");
}

#[tokio::test]
async fn rules_are_versioned_ordered_and_audited() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("Acme").await;
    let base = format!("/tenants/{}/rules", t.id);
    let tier = json!({ "type": "tier", "target": "default" });
    let (_, a) =
        api(&t.admin, Method::POST, &base, Some(rule("a", 10, json!({}), tier.clone()))).await;
    let (_, b) = api(
        &t.admin,
        Method::POST,
        &base,
        Some(rule("b", 20, json!({}), json!({ "type": "exclude" }))),
    )
    .await;
    let (aid, bid) = (a["id"].as_str().unwrap().to_owned(), b["id"].as_str().unwrap().to_owned());
    // Optimistic concurrency on update.
    let upd = rule("a", 10, json!({ "min_size_bytes": 100 }), tier.clone());
    let (st, _) =
        api(&t.admin, Method::PUT, &format!("{base}/{aid}?expected_version=7"), Some(upd.clone()))
            .await;
    assert_eq!(st, 409);
    let (st, v) =
        api(&t.admin, Method::PUT, &format!("{base}/{aid}?expected_version=1"), Some(upd)).await;
    assert_eq!((st, v["version"].as_i64()), (200, Some(2)));
    let (st, v) = api(
        &t.admin,
        Method::POST,
        &format!("{base}/reorder"),
        Some(json!({ "rule_ids": [bid, aid] })),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let names: Vec<&str> =
        v.as_array().unwrap().iter().map(|r| r["spec"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["b", "a"]);
    assert_eq!(v[0]["spec"]["priority"], 10);
    let (st, _) =
        api(&t.admin, Method::POST, &format!("{base}/reorder"), Some(json!({ "rule_ids": [bid] })))
            .await;
    assert_eq!(st, 400, "a reorder must name every rule");
    let (_, vers) = api(&t.admin, Method::GET, &format!("{base}/{aid}/versions"), None).await;
    let changes: Vec<&str> =
        vers.as_array().unwrap().iter().map(|v| v["change"].as_str().unwrap()).collect();
    assert_eq!(changes, ["created", "updated", "updated"], "the reorder moved `a` from 10 to 20");
    assert_eq!(vers[1]["spec"]["conditions"]["min_size_bytes"], 100);
    let (st, _) = api(&t.admin, Method::DELETE, &format!("{base}/{bid}"), None).await;
    assert_eq!(st, 200);
    let (_, s) =
        api(&t.admin, Method::GET, &format!("/tenants/{}/planner-settings", t.id), None).await;
    assert_eq!(s["ruleset_revision"], 6, "create×2, update, reorder×2, delete");
    let (_, bv) = api(&t.admin, Method::GET, &format!("{base}/{bid}/versions"), None).await;
    assert_eq!(bv.as_array().unwrap().len(), 3, "b: created, moved to 10, deleted");
    let audit = t
        .admin
        .list_audit(
            alto_client::Scope::Tenant(t.id),
            &alto_client::AuditQuery { limit: Some(200), ..Default::default() },
        )
        .await
        .unwrap();
    let actions: Vec<&str> = audit.items.iter().map(|e| e.action.as_str()).collect();
    for a in ["rule.create", "rule.update", "rule.reorder", "rule.delete"] {
        assert!(actions.contains(&a), "{a} not audited: {actions:?}");
    }
    // An auditor may read but not change rules; another tenant sees nothing.
    let auditor = app.user_with(&t, "aud", &[alto_model::Role::Auditor]).await;
    let (st, _) = api(&auditor, Method::GET, &base, None).await;
    assert_eq!(st, 200);
    let (st, _) = api(&auditor, Method::POST, &base, Some(rule("z", 99, json!({}), tier))).await;
    assert_eq!(st, 403);
    let other = app.new_tenant("Other").await;
    let (st, _) = api(&other.admin, Method::GET, &format!("{base}/{aid}"), None).await;
    assert_eq!(st, 404);
}

#[tokio::test]
async fn ingest_triggers_planning_with_explainable_decisions() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("Acme").await;
    let (host, agent) = app.enrolled_host(&t, "fs1").await;
    let base = format!("/tenants/{}/rules", t.id);
    let tier = json!({ "type": "tier", "target": "default" });
    api(
        &t.admin,
        Method::POST,
        &base,
        Some(rule(
            "keep-legal",
            10,
            json!({ "path_globs": ["/srv/legal/**"] }),
            json!({ "type": "exclude" }),
        )),
    )
    .await;
    let (st, v) = api(
        &t.admin,
        Method::POST,
        &base,
        Some(rule(
            "cold",
            20,
            json!({ "accessed_older_than_days": 180, "min_size_bytes": 4096 }),
            tier.clone(),
        )),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    let mut recs = Vec::new();
    for i in 0..2500 {
        recs.push(rec(
            &app,
            &format!("/srv/data/d{}/f{i}.bin", i % 10),
            10_000,
            200 + (i % 50) as i64,
        ));
    }
    recs.push(rec(&app, "/srv/legal/contract.pdf", 50_000, 900));
    recs.push(rec(&app, "/srv/data/small.txt", 100, 900));
    recs.push(rec(&app, "/srv/data/fresh.bin", 50_000, 0));
    recs.push(rec(&app, "/srv/data/warm.bin", 50_000, 30));
    ingest(&app, &t, &agent, &recs).await;
    let plans = wait_plans(&app, &t, 1).await;
    let plan = &plans[0];
    assert_eq!(plan["trigger"], "ingest");
    assert_eq!(plan["stats"]["files"], 2500);
    assert_eq!(plan["stats"]["mismatches"], 0);
    assert_eq!(plan["stats"]["jobs"], 3, "2,500 files in jobs of at most 1,000");
    assert_eq!(plan["rule_versions"].as_array().unwrap().len(), 2);
    let (_, jobs) = api(
        &t.admin,
        Method::GET,
        &format!("/tenants/{}/jobs?plan_id={}", t.id, plan["id"].as_str().unwrap()),
        None,
    )
    .await;
    let jobs = jobs["items"].as_array().unwrap();
    let counts: Vec<i64> = jobs.iter().map(|j| j["file_count"].as_i64().unwrap()).collect();
    assert_eq!(counts.iter().sum::<i64>(), 2500);
    assert!(counts.iter().all(|c| *c <= 1000));
    for j in jobs {
        assert_eq!(j["state"], "queued");
        assert_eq!(j["host_id"], host.to_string());
        let n = j["file_count"].as_i64().unwrap();
        assert_eq!(j["estimates"]["space_saved_bytes"].as_i64().unwrap(), n * (10_000 - 4096));
        // 1 Gbit/s default link and 5 ms per file.
        let want = (n * 10_000) as f64 / 125_000_000.0 + n as f64 * 0.005;
        assert!((j["estimates"]["duration_seconds"].as_f64().unwrap() - want).abs() < 1e-6);
    }
    // The job document has the seed's structure.
    let jid = jobs[0]["id"].as_str().unwrap();
    let (_, doc) =
        api(&t.admin, Method::GET, &format!("/tenants/{}/jobs/{jid}/document", t.id), None).await;
    for k in [
        "job_id",
        "customer_id",
        "host_id",
        "rule_id",
        "files",
        "priority",
        "estimated_space_saved",
        "estimated_duration_seconds",
        "created_at",
    ] {
        assert!(doc.get(k).is_some(), "{k} missing from {doc}");
    }
    let f0 = &doc["files"][0];
    assert!(f0["file_path"].as_str().unwrap().starts_with("/srv/data/"));
    assert_eq!(f0["file_size"], 10_000);
    assert!(f0["tiered_destination"]
        .as_str()
        .unwrap()
        .starts_with(&format!("customer-{}-tiered/2026/06/01/", t.id)));
    // Explain says why, for each kind of file.
    let explain = |p: &str| {
        let path = format!("/tenants/{}/rules/explain?host_id={host}&path={}", t.id, urlencode(p));
        let c = t.admin.clone();
        async move { api(&c, Method::GET, &path, None).await }
    };
    let (_, e) = explain("/srv/legal/contract.pdf").await;
    assert_eq!(e["explanation"]["decision"], "excluded");
    assert_eq!(e["explanation"]["rules"][1]["outcome"], "not_evaluated");
    let (_, e) = explain("/srv/data/small.txt").await;
    assert_eq!(e["explanation"]["decision"], "no_match");
    let checks = e["explanation"]["rules"][1]["checks"].as_array().unwrap();
    let size = checks.iter().find(|c| c["condition"] == "min_size_bytes").unwrap();
    assert_eq!(size["passed"], false);
    assert!(size["detail"].as_str().unwrap().contains("size 100 bytes"));
    let (_, e) = explain("/srv/data/fresh.bin").await;
    assert_eq!(e["explanation"]["decision"], "no_match", "accessed today: the age check fails");
    let (_, e) = explain("/srv/data/d3/f3.bin").await;
    assert_eq!(e["explanation"]["decision"], "tier");
    assert_eq!(e["explanation"]["target"], "default");
    assert!(e["in_job"].is_string(), "already in a live job");
    let (st, _) = explain("/srv/nope").await;
    assert_eq!(st, 404);
    // A second run plans nothing new: those files are in live jobs.
    let (st, p2) =
        api(&t.admin, Method::POST, &format!("/tenants/{}/plans", t.id), Some(json!({}))).await;
    assert_eq!(st, 201);
    assert_eq!(p2["stats"]["files"], 0);
    assert_eq!(p2["trigger"], "manual");
    // Cancel frees the files; retry takes them back.
    let (st, j) =
        api(&t.admin, Method::POST, &format!("/tenants/{}/jobs/{jid}/cancel", t.id), None).await;
    assert_eq!((st, j["state"].as_str()), (200, Some("cancelled")));
    let (st, _) =
        api(&t.admin, Method::POST, &format!("/tenants/{}/jobs/{jid}/cancel", t.id), None).await;
    assert_eq!(st, 409);
    let (st, j) =
        api(&t.admin, Method::POST, &format!("/tenants/{}/jobs/{jid}/retry", t.id), None).await;
    assert_eq!((st, j["state"].as_str()), (200, Some("queued")));
    assert_eq!(j["file_states"][0]["key"], "pending");
    assert_eq!(j["file_states"][0]["bytes"], j["total_bytes"]);
    let (st, _) =
        api(&t.admin, Method::POST, &format!("/tenants/{}/jobs/{jid}/retry", t.id), None).await;
    assert_eq!(st, 409, "a queued job is not retryable");
    // Another tenant sees none of it, whichever path it tries.
    let other = app.new_tenant("Other").await;
    let o = format!("/tenants/{}", other.id);
    for (m, path, body) in [
        (Method::GET, format!("{o}/jobs/{jid}"), None),
        (Method::POST, format!("{o}/jobs/{jid}/cancel"), None),
        (Method::GET, format!("{o}/plans/{}", plan["id"].as_str().unwrap()), None),
        (Method::GET, format!("{o}/rules/explain?host_id={host}&path=/srv/data/d3/f3.bin"), None),
        (Method::POST, format!("{o}/rules/preview"), Some(json!({ "host_ids": [host] }))),
        (
            Method::POST,
            format!("{o}/tags"),
            Some(json!({ "host_id": host, "path": "/srv", "key": "k" })),
        ),
        (Method::PUT, format!("{o}/hosts/{host}/groups"), Some(json!({ "groups": ["x"] }))),
        (Method::GET, format!("/tenants/{}/jobs/{jid}", t.id), None),
    ] {
        let (st, v) = api(&other.admin, m, &path, body).await;
        assert_eq!(st, 404, "{path}: {v}");
    }
    let (_, jobs) = api(&other.admin, Method::GET, &format!("{o}/jobs"), None).await;
    assert_eq!(jobs["items"].as_array().unwrap().len(), 0);
    let (st, v) =
        api(&other.admin, Method::POST, &format!("{o}/plans"), Some(json!({ "host_ids": [host] })))
            .await;
    assert_eq!(st, 400, "{v}");
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"/-_.".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn preview_caps_hold_and_safety_window() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("Acme").await;
    let (host, agent) = app.enrolled_host(&t, "fs1").await;
    let settings = format!("/tenants/{}/planner-settings", t.id);
    let (_, mut s) = api(&t.admin, Method::GET, &settings, None).await;
    s["plan_after_ingest"] = json!(false);
    s["safety_window_seconds"] = json!(2 * 86_400);
    let (st, v) = api(&t.admin, Method::PUT, &settings, Some(s.clone())).await;
    assert_eq!(st, 200, "{v}");
    s["low_watermark_pct"] = json!(95);
    let (st, _) = api(&t.admin, Method::PUT, &settings, Some(s)).await;
    assert_eq!(st, 400, "low watermark above high is refused");
    let mut recs = Vec::new();
    for i in 0..300 {
        recs.push(rec(
            &app,
            &format!("/srv/p{}/f{i}.iso", i % 3),
            1_000_000 + i as u64,
            1 + (i % 5) as i64,
        ));
    }
    ingest(&app, &t, &agent, &recs).await;
    let draft = rule(
        "isos",
        10,
        json!({ "extensions": ["iso"] }),
        json!({ "type": "tier", "target": "default" }),
    );
    let (st, _) =
        api(&app.admin, Method::POST, "/rules/preview", Some(json!({ "draft": draft }))).await;
    assert_eq!(st, 404, "platform staff must name the tenant");
    let (st, own) =
        api(&t.admin, Method::POST, "/rules/preview", Some(json!({ "draft": draft }))).await;
    assert_eq!(st, 200, "tenant users preview their own tenant");
    let (st, p) = api(
        &t.admin,
        Method::POST,
        &format!("/tenants/{}/rules/preview", t.id),
        Some(json!({ "draft": draft, "sample": 5 })),
    )
    .await;
    assert_eq!(st, 200, "{p}");
    // Files modified 1 day ago are inside the 2-day safety window.
    let expect = (0..300).filter(|i| 1 + i % 5 > 2).count() as u64;
    assert_eq!(p["files"], expect);
    assert_eq!(own["files"], expect);
    assert_eq!(p["per_host"][0]["key"], "fs1");
    assert_eq!(p["per_target"][0]["key"], "default");
    assert_eq!(p["sample"].as_array().unwrap().len(), 5);
    assert_eq!(p["top_directories"].as_array().unwrap().len(), 3);
    assert_eq!(p["accessed_age"][0]["key"], "0-30d");
    let (_, plans) = api(&t.admin, Method::GET, &format!("/tenants/{}/plans", t.id), None).await;
    assert_eq!(plans["items"].as_array().unwrap().len(), 0, "a preview creates nothing");
    // Save it, then plan with a cap and hold the jobs.
    api(&t.admin, Method::POST, &format!("/tenants/{}/rules", t.id), Some(draft)).await;
    let (st, plan) = api(
        &t.admin,
        Method::POST,
        &format!("/tenants/{}/plans", t.id),
        Some(json!({ "host_ids": [host], "max_files": 100, "hold": true })),
    )
    .await;
    assert_eq!(st, 201, "{plan}");
    assert_eq!(plan["stats"]["files"], 100);
    assert_eq!(plan["stats"]["deferred_files"], expect - 100);
    assert_eq!(plan["stats"]["stopped_by"][0], "max_files");
    let pid = plan["id"].as_str().unwrap();
    let (_, jobs) =
        api(&t.admin, Method::GET, &format!("/tenants/{}/jobs?plan_id={pid}", t.id), None).await;
    assert!(jobs["items"].as_array().unwrap().iter().all(|j| j["state"] == "planned"));
    let (st, plan) =
        api(&t.admin, Method::POST, &format!("/tenants/{}/plans/{pid}/release", t.id), None).await;
    assert_eq!((st, plan["held"].as_bool()), (200, Some(false)));
    let (_, jobs) = api(
        &t.admin,
        Method::GET,
        &format!("/tenants/{}/jobs?plan_id={pid}&state=queued", t.id),
        None,
    )
    .await;
    assert_eq!(jobs["items"].as_array().unwrap().len(), 1);
    // Oldest access first: the 100 chosen are the oldest.
    let jid = jobs["items"][0]["id"].as_str().unwrap();
    let (_, files) =
        api(&t.admin, Method::GET, &format!("/tenants/{}/jobs/{jid}/files", t.id), None).await;
    assert_eq!(files["items"].as_array().unwrap().len(), 100);
    assert!(files["items"].as_array().unwrap().iter().all(|f| f["state"] == "pending"));
    let (st, _) = api(
        &t.admin,
        Method::POST,
        &format!("/tenants/{}/plans", t.id),
        Some(json!({ "host_ids": [Uuid::now_v7()] })),
    )
    .await;
    assert_eq!(st, 400);
}

#[tokio::test]
async fn watermark_and_schedule_triggers() {
    let app =
        TestApp::spawn_with(|c| c.planner.sweep_interval = std::time::Duration::from_secs(3600))
            .await;
    let t = app.new_tenant("Acme").await;
    let (host, agent) = app.enrolled_host(&t, "fs1").await;
    let settings = format!("/tenants/{}/planner-settings", t.id);
    let (_, mut s) = api(&t.admin, Method::GET, &settings, None).await;
    s["plan_after_ingest"] = json!(false);
    api(&t.admin, Method::PUT, &settings, Some(s)).await;
    // 1,000 files of 1 MB on /srv; scheduled rule for /srv/logs.
    let mut recs: Vec<ScanRecord> = (0..1000)
        .map(|i| rec(&app, &format!("/srv/data/f{i:04}"), 1_000_000, 10 + i as i64))
        .collect();
    recs.extend((0..10).map(|i| rec(&app, &format!("/srv/logs/l{i}.log"), 5000, 100)));
    ingest(&app, &t, &agent, &recs).await;
    let base = format!("/tenants/{}/rules", t.id);
    let tier = json!({ "type": "tier", "target": "default" });
    let mut nightly = rule("hourly-logs", 10, json!({ "extensions": ["log"] }), tier.clone());
    nightly["schedule"] = json!("30 * * * *");
    let (st, v) = api(&t.admin, Method::POST, &base, Some(nightly)).await;
    assert_eq!(st, 201, "{v}");
    assert!(v["next_run_at"].as_str().unwrap().starts_with("2026-06-01T12:30:00"));
    api(
        &t.admin,
        Method::POST,
        &base,
        Some(rule("old", 20, json!({ "accessed_older_than_days": 5 }), tier)),
    )
    .await;
    // A manual run leaves the scheduled rule's files alone.
    let (_, p) = api(
        &t.admin,
        Method::POST,
        &format!("/tenants/{}/plans", t.id),
        Some(json!({ "max_files": 1 })),
    )
    .await;
    assert_eq!(p["stats"]["files"], 1);
    let state = app.state.clone();
    // Heartbeat: /srv is 95% full (950 of 1000 MB).
    agent
        .heartbeat(&alto_api_types::HeartbeatRequest {
            agent_version: "0.1.0".into(),
            os: None,
            hostname: None,
            volumes: vec![alto_api_types::Volume {
                mount_point: "/srv".into(),
                fs_type: None,
                total_bytes: 1_000_000_000,
                free_bytes: 50_000_000,
            }],
            on_access: None,
        })
        .await
        .unwrap();
    let n = app.workers.planner_sweep.step(&state).await.unwrap();
    assert_eq!(n, 1, "a watermark run is queued");
    // The planner worker picks the queued run up.
    let plans = wait_plans(&app, &t, 2).await;
    let wm = plans.iter().find(|p| p["trigger"] == "watermark").expect("watermark plan");
    // Goal: 950 MB used - 800 MB (low 80%) - 1 MB already in a job = 149 MB, in ~1 MB files.
    let saved = wm["stats"]["space_saved"].as_i64().unwrap();
    assert!((149_000_000..151_000_000).contains(&saved), "{saved}");
    assert_eq!(wm["stats"]["stopped_by"][0], "free_goal");
    assert_eq!(wm["host_ids"][0], host.to_string());
    // No re-trigger while the cool-down runs.
    assert_eq!(app.workers.planner_sweep.step(&state).await.unwrap(), 0);
    // The schedule fires at half past.
    app.clock.advance(chrono::Duration::minutes(31));
    let n = app.workers.planner_sweep.step(&state).await.unwrap();
    assert_eq!(n, 1, "the nightly rule is due");
    // The planner worker picks the queued run up.
    let plans = wait_plans(&app, &t, 3).await;
    let sch = plans.iter().find(|p| p["trigger"] == "schedule").expect("scheduled plan");
    assert_eq!(sch["stats"]["files"], 10);
    assert_eq!(app.workers.planner_sweep.step(&state).await.unwrap(), 0, "fires once");
}
