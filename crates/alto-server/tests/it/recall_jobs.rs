//! Recall as a managed operation, as the server runs it: a request selects a host's stubs by
//! path (a file or a whole tree, never a sibling sharing a prefix) and by rule, a dry run only
//! counts, bad requests change nothing, recall jobs are handed out before tiering jobs that
//! were queued first, their `recalled` results put the registry and inventory right, tier
//! outcomes are refused in them, and scheduled restoration rules queue jobs when due.

use alto_test_support::{api, file_record, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

use crate::recall::{audit, is_stubbed, tiered, SHA};

async fn recall(t: &alto_test_support::TestTenant, body: Value) -> (u16, Value) {
    api(&t.admin, Method::POST, &format!("/tenants/{}/recalls", t.id), Some(body)).await
}

#[tokio::test]
async fn a_recall_request_selects_trees_queues_jobs_ahead_of_tiering_and_fixes_the_registry() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("Acme").await;
    let (host, agent, tier_job) = tiered(&app, &t, 5, &[0, 1, 2, 3, 4]).await;
    // The tier job ends; then a second one is queued (more files), before any recall.
    let (st, v) = api(
        &agent,
        Method::POST,
        &format!("/agent/jobs/{tier_job}/complete"),
        Some(json!({ "state": "succeeded" })),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let now = app.clock_now().timestamp_micros();
    // A full scan: the stubs (as they were) and three new files.
    let more: Vec<_> = (0..5)
        .map(|i| file_record(format!("/srv/f{i}.bin").as_bytes(), 100_000, now, 400))
        .chain((0..3).map(|i| file_record(format!("/srv/new/g{i}.bin").as_bytes(), 10, now, 400)))
        .collect();
    app.scan_files(&t, &agent, &more).await;
    let (st, plan) =
        api(&t.admin, Method::POST, &format!("/tenants/{}/plans", t.id), Some(json!({}))).await;
    assert_eq!((st, plan["stats"]["files"].as_u64()), (201, Some(3)), "{plan}");

    // Bad requests: clear errors, nothing queued.
    for (body, code) in [
        (json!({ "host_id": host, "paths": ["srv"] }), "validation_failed"),
        (json!({ "host_id": host, "paths": ["/srv/../etc"] }), "validation_failed"),
        (json!({ "host_id": host, "paths": [] }), "validation_failed"),
        (json!({ "host_id": host, "paths": ["/srv"], "max_files": 2 }), "validation_failed"),
        (json!({ "host_id": host, "paths": ["/srv"], "tenant_id": t.id }), "invalid_json"),
        (json!({ "host_id": uuid::Uuid::now_v7(), "paths": ["/srv"] }), "not_found"),
        (
            json!({ "host_id": host, "paths": ["/srv"], "rule_id": uuid::Uuid::now_v7() }),
            "not_found",
        ),
    ] {
        let (st, v) = recall(&t, body.clone()).await;
        assert_eq!(v["error"]["code"], code, "{body}: {st} {v}");
    }
    let other = app.new_tenant("Other").await;
    let (st, v) = recall(&other, json!({ "host_id": host, "paths": ["/srv"] })).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (404, Some("not_found")),
        "another tenant's host"
    );

    // Selection: a file, a tree, never a sibling that only shares a prefix.
    for (paths, n) in [
        (json!(["/srv/f1.bin"]), 1),
        (json!(["/srv/"]), 5),
        (json!(["/srv/f1.bin", "/srv"]), 5),
        (json!(["/sr"]), 0),
        (json!(["/srv/f1"]), 0),
        (json!(["/"]), 5),
    ] {
        let (st, v) = recall(&t, json!({ "host_id": host, "paths": paths, "dry_run": true })).await;
        assert_eq!((st, v["files"].as_i64()), (202, Some(n)), "{paths}: {v}");
        assert_eq!(v["jobs"], json!([]), "a dry run queues nothing");
    }

    // The request: one job (5 files ≤ 1,000), audited.
    let (st, made) = recall(&t, json!({ "host_id": host, "paths": ["/srv"] })).await;
    assert_eq!((st, made["files"].as_i64(), made["bytes"].as_i64()), (202, Some(5), Some(500_000)));
    let jobs = made["jobs"].as_array().unwrap().clone();
    assert_eq!(jobs.len(), 1);
    assert_eq!(audit(&t, "recall.request").await.len(), 1);
    // The same stubs are not queued twice while the job is live.
    let (_, again) =
        recall(&t, json!({ "host_id": host, "paths": ["/srv"], "dry_run": true })).await;
    assert_eq!(again["files"], 0, "{again}");

    // The tenant's recall bandwidth is shared by its running recall jobs (this one alone).
    let mut settings = t.admin.get_planner_settings(t.id).await.unwrap();
    settings.recall_bandwidth_limit_bytes_per_second = Some(3_000_000);
    t.admin.put_planner_settings(t.id, &settings).await.unwrap();
    let mut bad = settings.clone();
    bad.tier_bandwidth_limit_bytes_per_second = Some(0);
    assert!(t.admin.put_planner_settings(t.id, &bad).await.is_err(), "0 is refused");

    // Priority: the recall job comes out before the tier job queued earlier.
    let (st, claimed) =
        api(&agent, Method::POST, "/agent/jobs/claim", Some(json!({ "max_jobs": 1 }))).await;
    assert_eq!(st, 200, "{claimed}");
    let job = &claimed["jobs"][0];
    assert_eq!(job["kind"], "recall", "{claimed}");
    assert_eq!(job["job_id"], jobs[0]);
    assert_eq!(job["trigger"], "manual");
    assert_eq!(job["bandwidth_bytes_per_second"], 3_000_000, "the tenant's share");
    assert_eq!(job["files"].as_array().unwrap().len(), 5);
    let jid = job["job_id"].as_str().unwrap().to_owned();
    let seq_of = |path: &str| {
        job["files"].as_array().unwrap().iter().find(|f| f["file_path"] == path).unwrap()["seq"]
            .clone()
    };
    // A tier outcome in a recall job is refused and changes nothing.
    let bad = json!({ "results": [{ "seq": seq_of("/srv/f0.bin"), "outcome": "stubbed",
        "sha256": SHA, "object_key": "k", "stored_size": 1 }] });
    let (st, v) = api(&agent, Method::POST, &format!("/agent/jobs/{jid}/files"), Some(bad)).await;
    assert_eq!((st, v["error"]["code"].as_str()), (400, Some("validation_failed")), "{v}");
    // `recalled` without its hash is refused too.
    let bad = json!({ "results": [{ "seq": seq_of("/srv/f0.bin"), "outcome": "recalled" }] });
    let (st, _) = api(&agent, Method::POST, &format!("/agent/jobs/{jid}/files"), Some(bad)).await;
    assert_eq!(st, 400);
    assert!(is_stubbed(&t, "/srv/f0.bin").await);

    // Results: three recalled, one already whole, one failed.
    let results = json!({ "results": [
        { "seq": seq_of("/srv/f0.bin"), "outcome": "recalled", "sha256": SHA, "stored_size": 100_000 },
        { "seq": seq_of("/srv/f1.bin"), "outcome": "recalled", "sha256": SHA, "stored_size": 100_000 },
        { "seq": seq_of("/srv/f2.bin"), "outcome": "recalled", "sha256": SHA, "stored_size": 100_000 },
        { "seq": seq_of("/srv/f3.bin"), "outcome": "skipped", "error": "not a stub" },
        { "seq": seq_of("/srv/f4.bin"), "outcome": "failed", "error": "tier-2: object missing" },
    ]});
    let (st, v) =
        api(&agent, Method::POST, &format!("/agent/jobs/{jid}/files"), Some(results)).await;
    assert_eq!(st, 200, "{v}");
    for (i, stub) in [(0, false), (1, false), (2, false), (4, true)] {
        assert_eq!(is_stubbed(&t, &format!("/srv/f{i}.bin")).await, stub, "f{i}");
    }
    let (_, stubs) =
        api(&t.admin, Method::GET, &format!("/tenants/{}/stubs?state=rehydrated", t.id), None)
            .await;
    assert_eq!(stubs["items"].as_array().map(Vec::len), Some(3), "{stubs}");
    let (st, v) = api(
        &agent,
        Method::POST,
        &format!("/agent/jobs/{jid}/complete"),
        Some(json!({ "state": "succeeded" })),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let (_, j) = api(&t.admin, Method::GET, &format!("/tenants/{}/jobs/{jid}", t.id), None).await;
    assert_eq!(j["state"], "succeeded");
    let states: std::collections::BTreeMap<String, u64> = j["file_states"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["key"].as_str().unwrap().to_owned(), s["files"].as_u64().unwrap()))
        .collect();
    assert_eq!(states.get("succeeded"), Some(&3), "{j}");
    assert_eq!(states.get("failed"), Some(&1), "{j}");
    let (_, listed) =
        api(&t.admin, Method::GET, &format!("/tenants/{}/jobs?kind=recall", t.id), None).await;
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(audit(&t, "recall.files").await.len(), 1);
    // The failed stub can be asked for again, and so can the one the agent found whole (the
    // agent cannot say what it holds; its own recall report, or the next scan, says that);
    // the recalled ones are no longer stubs.
    let (_, v) = recall(&t, json!({ "host_id": host, "paths": ["/srv"], "dry_run": true })).await;
    assert_eq!(v["files"], 2, "{v}");
    // A queued recall job is cancelled like a tiering job: its files are free again.
    let (_, again) = recall(&t, json!({ "host_id": host, "paths": ["/srv"] })).await;
    let second = again["jobs"][0].as_str().unwrap().to_owned();
    let (st, c) =
        api(&t.admin, Method::POST, &format!("/tenants/{}/jobs/{second}/cancel", t.id), None).await;
    assert_eq!((st, c["state"].as_str()), (200, Some("cancelled")), "{c}");
    let (_, v) = recall(&t, json!({ "host_id": host, "paths": ["/srv"], "dry_run": true })).await;
    assert_eq!(v["files"], 2, "cancelled files can be asked for again: {v}");
    // The tier job is next.
    let (_, claimed) =
        api(&agent, Method::POST, "/agent/jobs/claim", Some(json!({ "max_jobs": 1 }))).await;
    assert_eq!(claimed["jobs"][0]["kind"], "tier", "{claimed}");
    assert!(claimed["jobs"][0].get("bandwidth_bytes_per_second").is_none(), "no tiering limit");
}

#[tokio::test]
async fn a_scheduled_restoration_queues_its_recall_when_due_and_moves_on() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("Acme").await;
    let (host, agent, tier_job) = tiered(&app, &t, 3, &[0, 1, 2]).await;
    api(
        &agent,
        Method::POST,
        &format!("/agent/jobs/{tier_job}/complete"),
        Some(json!({ "state": "succeeded" })),
    )
    .await;
    let path = format!("/tenants/{}/recall-schedules", t.id);
    let (st, v) = api(
        &t.admin,
        Method::POST,
        &path,
        Some(json!({ "name": "monday", "host_id": host, "paths": ["/srv"], "cron": "61 * * * *" })),
    )
    .await;
    assert_eq!((st, v["error"]["code"].as_str()), (400, Some("validation_failed")), "{v}");
    let (st, sch) = api(
        &t.admin,
        Method::POST,
        &path,
        Some(json!({ "name": "hourly", "host_id": host, "paths": ["/srv/"], "cron": "0 * * * *" })),
    )
    .await;
    assert_eq!(st, 201, "{sch}");
    assert_eq!(sch["paths"], json!(["/srv"]));
    let next: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(sch["next_run_at"].clone()).unwrap();
    assert!(next > app.clock_now());
    // Not due yet: nothing.
    assert_eq!(app.workers.recall_schedules.step(&app.state).await.unwrap(), 0);
    let (_, jobs) =
        api(&t.admin, Method::GET, &format!("/tenants/{}/jobs?kind=recall", t.id), None).await;
    assert_eq!(jobs["items"], json!([]));
    // Due: one recall job of the three stubs, scheduled priority, and the next run moves on.
    app.clock.advance(next - app.clock_now() + chrono::Duration::seconds(1));
    assert_eq!(app.workers.recall_schedules.step(&app.state).await.unwrap(), 1);
    let (_, jobs) =
        api(&t.admin, Method::GET, &format!("/tenants/{}/jobs?kind=recall", t.id), None).await;
    let items = jobs["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{jobs}");
    assert_eq!(items[0]["file_count"], 3);
    assert_eq!(items[0]["priority"], alto_api_types::RECALL_PRIORITY_SCHEDULED);
    let (_, after) =
        api(&t.admin, Method::GET, &format!("{path}/{}", sch["id"].as_str().unwrap()), None).await;
    assert_eq!(after["last_files"], 3, "{after}");
    let next2: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(after["next_run_at"].clone()).unwrap();
    assert!(next2 > next, "{after}");
    // Run again at once: not due.
    assert_eq!(app.workers.recall_schedules.step(&app.state).await.unwrap(), 0);
    // Disable, then delete.
    let id = sch["id"].as_str().unwrap();
    let (st, v) =
        api(&t.admin, Method::PATCH, &format!("{path}/{id}"), Some(json!({ "enabled": false })))
            .await;
    assert_eq!((st, &v["enabled"]), (200, &json!(false)), "{v}");
    let (st, _) = api(&t.admin, Method::DELETE, &format!("{path}/{id}"), None).await;
    assert_eq!(st, 200);
    let (st, _) = api(&t.admin, Method::GET, &format!("{path}/{id}"), None).await;
    assert_eq!(st, 404);
}
