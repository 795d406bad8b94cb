//! The agent side of tiering over HTTP: claiming a host's jobs, staged-before-stubbed
//! per-file outcomes, completion, the stub registry and its summary.

use alto_test_support::{api, file_record, TestApp};
use reqwest::Method;
use serde_json::json;

const SHA: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

#[tokio::test]
async fn agents_stage_then_stub_and_the_registry_shows_it() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("Acme").await;
    let (host, agent) = app.enrolled_host(&t, "fs1").await;
    let (_, other_agent) = app.enrolled_host(&t, "fs2").await;
    app.plan_manually_only(&t).await;
    let now = app.clock_now().timestamp_micros();
    let recs: Vec<_> = (0..5)
        .map(|i| file_record(format!("/srv/f{i}.bin").as_bytes(), 100_000, now, 400))
        .collect();
    app.scan_files(&t, &agent, &recs).await;
    let tp = format!("/tenants/{}", t.id);
    app.tier_everything(&t, "default", None).await;
    let (st, plan) = api(&t.admin, Method::POST, &format!("{tp}/plans"), Some(json!({}))).await;
    assert_eq!((st, plan["stats"]["files"].as_i64()), (201, Some(5)), "{plan}");

    // Another host's agent gets nothing.
    let (_, none) = api(&other_agent, Method::POST, "/agent/jobs/claim", Some(json!({}))).await;
    assert_eq!(none["jobs"].as_array().unwrap().len(), 0);
    let (st, claimed) =
        api(&agent, Method::POST, "/agent/jobs/claim", Some(json!({ "max_jobs": 5 }))).await;
    assert_eq!(st, 200, "{claimed}");
    let job = &claimed["jobs"][0];
    let jid = job["job_id"].as_str().unwrap().to_owned();
    assert_eq!(job["files"].as_array().unwrap().len(), 5);
    assert_eq!(job["storage_target"]["kind"], "directory");
    assert_eq!(job["host_id"], host.to_string());
    let (_, j) = api(&t.admin, Method::GET, &format!("{tp}/jobs/{jid}"), None).await;
    assert_eq!(j["state"], "running");
    // Claimed again: nothing new; with `resume` (an agent restarted before it recorded the
    // claim) the same job comes back.
    let (_, none) = api(&agent, Method::POST, "/agent/jobs/claim", Some(json!({}))).await;
    assert_eq!(none["jobs"].as_array().unwrap().len(), 0);
    let (_, back) =
        api(&agent, Method::POST, "/agent/jobs/claim", Some(json!({ "resume": true }))).await;
    assert_eq!(back["jobs"][0]["job_id"], jid.as_str());
    let (_, none) =
        api(&other_agent, Method::POST, "/agent/jobs/claim", Some(json!({ "resume": true }))).await;
    assert_eq!(none["jobs"].as_array().unwrap().len(), 0, "never another host's job");
    // The other host cannot report on it.
    let (st, _) =
        api(&other_agent, Method::POST, &format!("/agent/jobs/{jid}/progress"), Some(json!({})))
            .await;
    assert_eq!(st, 404);
    // Stubbed before staged is refused; bad hashes are refused.
    let res = |seq: i64, outcome: &str| {
        json!({ "results": [{ "seq": seq, "outcome": outcome,
        "sha256": SHA, "object_key": format!("objects/aa/{SHA}"), "stored_size": 100000 }] })
    };
    let (st, v) =
        api(&agent, Method::POST, &format!("/agent/jobs/{jid}/files"), Some(res(0, "stubbed")))
            .await;
    assert_eq!(st, 409, "{v}");
    let (st, _) = api(
        &agent,
        Method::POST,
        &format!("/agent/jobs/{jid}/files"),
        Some(json!({ "results": [{ "seq": 0, "outcome": "staged", "sha256": "nothex" }] })),
    )
    .await;
    assert_eq!(st, 400);
    // Stage, resend (idempotent), stub.
    for _ in 0..2 {
        let (st, _) =
            api(&agent, Method::POST, &format!("/agent/jobs/{jid}/files"), Some(res(0, "staged")))
                .await;
        assert_eq!(st, 200);
    }
    let (_, stubs) = api(&t.admin, Method::GET, &format!("{tp}/stubs?state=pending"), None).await;
    assert_eq!(stubs["items"].as_array().unwrap().len(), 1, "pending before the file is touched");
    let (st, _) =
        api(&agent, Method::POST, &format!("/agent/jobs/{jid}/files"), Some(res(0, "stubbed")))
            .await;
    assert_eq!(st, 200);
    let (st, _) =
        api(&agent, Method::POST, &format!("/agent/jobs/{jid}/files"), Some(res(0, "stubbed")))
            .await;
    assert_eq!(st, 200, "a resent stubbed is accepted");
    // One file skipped, one failed, the rest left: completion settles them.
    let (st, _) = api(
        &agent,
        Method::POST,
        &format!("/agent/jobs/{jid}/files"),
        Some(json!({ "results": [{ "seq": 1, "outcome": "skipped", "error": "changed" },
                                 { "seq": 2, "outcome": "failed", "error": "hash mismatch" }] })),
    )
    .await;
    assert_eq!(st, 200);
    let (_, p) =
        api(&agent, Method::POST, &format!("/agent/jobs/{jid}/progress"), Some(json!({}))).await;
    assert_eq!(p["cancel"], false);
    let (st, done) = api(
        &agent,
        Method::POST,
        &format!("/agent/jobs/{jid}/complete"),
        Some(json!({ "state": "succeeded" })),
    )
    .await;
    assert_eq!((st, done["state"].as_str()), (200, Some("succeeded")));
    let (st, _) = api(
        &agent,
        Method::POST,
        &format!("/agent/jobs/{jid}/complete"),
        Some(json!({ "state": "succeeded" })),
    )
    .await;
    assert_eq!(st, 200, "a resent completion is accepted");
    let (_, j) = api(&t.admin, Method::GET, &format!("{tp}/jobs/{jid}"), None).await;
    let states: Vec<(String, i64)> = j["file_states"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["key"].as_str().unwrap().to_owned(), s["files"].as_i64().unwrap()))
        .collect();
    assert_eq!(states, vec![("failed".into(), 1), ("skipped".into(), 3), ("succeeded".into(), 1)]);
    // Registry and inventory agree.
    let (_, sum) = api(&t.admin, Method::GET, &format!("{tp}/stubs/summary"), None).await;
    assert_eq!(sum["stubs"], 1);
    assert_eq!(sum["space_saved"], 100_000 - 4096);
    let (_, inv) =
        api(&t.admin, Method::GET, &format!("{tp}/inventory/files?path_prefix=/srv/f0"), None)
            .await;
    assert_eq!(inv["items"][0]["is_stubbed"], true);
    // The stubbed file is never planned again; the skipped and failed ones are.
    let (_, again) = api(&t.admin, Method::POST, &format!("{tp}/plans"), Some(json!({}))).await;
    assert_eq!(again["stats"]["files"], 4);
    // Reconciliation asks which tier-2 references are still held.
    let (st, v) = api(
        &agent,
        Method::POST,
        "/agent/stubs/check",
        Some(json!({ "refs": [
        { "path": "/srv/f0.bin", "sha256": SHA },
        { "path": "/srv/f9.bin", "sha256": SHA }] })),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(v["states"], json!(["live", "unknown"]));
    let (_, v) = api(
        &other_agent,
        Method::POST,
        "/agent/stubs/check",
        Some(json!({ "refs": [{ "path": "/srv/f0.bin", "sha256": SHA }] })),
    )
    .await;
    assert_eq!(v["states"], json!(["unknown"]), "another host's registry is not visible");
    // Explicit recall makes it an ordinary file again.
    let (st, _) = api(
        &agent,
        Method::POST,
        "/agent/recalled",
        Some(json!({ "path": "/srv/f0.bin", "sha256": SHA })),
    )
    .await;
    assert_eq!(st, 200);
    let (_, inv) =
        api(&t.admin, Method::GET, &format!("{tp}/inventory/files?path_prefix=/srv/f0"), None)
            .await;
    assert_eq!(inv["items"][0]["is_stubbed"], false);
    let (_, stubs) =
        api(&t.admin, Method::GET, &format!("{tp}/stubs?state=rehydrated"), None).await;
    assert_eq!(stubs["items"].as_array().unwrap().len(), 1);
    // Storage unavailable: the job goes back to the queue with backoff, files still pending.
    let (_, claimed) = api(&agent, Method::POST, "/agent/jobs/claim", Some(json!({}))).await;
    let j2 = claimed["jobs"][0]["job_id"].as_str().unwrap().to_owned();
    let (st, v) = api(
        &agent,
        Method::POST,
        &format!("/agent/jobs/{j2}/complete"),
        Some(json!({ "state": "failed", "error": "storage unavailable: /mnt/t2 is not mounted" })),
    )
    .await;
    assert_eq!((st, v["state"].as_str()), (200, Some("queued")), "{v}");
    let (_, j) = api(&t.admin, Method::GET, &format!("{tp}/jobs/{j2}"), None).await;
    assert_eq!(j["state"], "queued");
    assert_eq!(j["file_states"][0]["key"], "pending");
    let (_, none) = api(&agent, Method::POST, "/agent/jobs/claim", Some(json!({}))).await;
    assert_eq!(none["jobs"].as_array().unwrap().len(), 0, "not before the backoff");
    app.clock.advance(chrono::Duration::minutes(5));
    let (_, again) = api(&agent, Method::POST, "/agent/jobs/claim", Some(json!({}))).await;
    assert_eq!(again["jobs"][0]["job_id"], j2.as_str());
    // Another tenant sees no stubs.
    let other = app.new_tenant("Other").await;
    let (st, _) = api(&other.admin, Method::GET, &format!("{tp}/stubs"), None).await;
    assert_eq!(st, 404);
}

/// A stored payload that does not fit the job contract (here: a target kind this build does
/// not know) fails its job with the reason when an agent claims it; it is never handed out
/// with a default target, over REST or the link.
#[tokio::test]
async fn a_job_whose_payload_does_not_fit_the_contract_fails_instead_of_running() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("Acme").await;
    let (_host, agent) = app.enrolled_host(&t, "fs1").await;
    app.plan_manually_only(&t).await;
    let now = app.clock_now().timestamp_micros();
    let recs: Vec<_> =
        (0..2).map(|i| file_record(format!("/srv/f{i}").as_bytes(), 10_000, now, 400)).collect();
    app.scan_files(&t, &agent, &recs).await;
    app.tier_everything(&t, "default", None).await;
    let plan = app.plan_now(&t).await;
    assert_eq!(plan.stats.jobs, 1, "{plan:?}");
    let owner = app.db.owner_pool().await;
    let corrupted = sqlx::query(
        "UPDATE jobs SET payload = jsonb_set(payload, '{storage_target,kind}', '\"tape\"') \
         WHERE customer_id = $1 AND kind = 'tier'",
    )
    .bind(t.id)
    .execute(&owner)
    .await
    .unwrap();
    assert_eq!(corrupted.rows_affected(), 1);

    let (st, claimed) = api(&agent, Method::POST, "/agent/jobs/claim", Some(json!({}))).await;
    assert_eq!(st, 200, "{claimed}");
    assert_eq!(claimed["jobs"], json!([]), "a malformed job was handed out: {claimed}");
    let jobs = t.admin.list_jobs(t.id, &Default::default()).await.unwrap();
    let job = &jobs.items[0];
    assert_eq!(job.state, "failed");
    let why = job.last_error.as_deref().unwrap_or_default();
    assert!(why.contains("job contract") && why.contains("tape"), "{why}");
    // The failure is audited.
    let (_, audit) =
        api(&t.admin, Method::GET, &format!("/tenants/{}/audit?action=job.complete", t.id), None)
            .await;
    assert!(audit.to_string().contains("job contract"), "{audit}");
}
