//! Input PostgreSQL cannot hold, or that overflows what it adds up, gets a clear 4xx with a
//! stable code and changes nothing (or, for an agent's failure report, is made storable):
//! NUL bytes in text, timestamps outside PostgreSQL's range in query parameters and cursors,
//! a job error longer than the `NOTIFY` limit, file sizes whose sum overflows a bigint.

use alto_batch::Format;
use alto_test_support::{api, batch_bytes, file_record, TestApp};
use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

/// A cursor of `list` positioned at `micros` (the server's cursor format: base64 of
/// `{"v":1,"list":…,"after":{"t":…,"id":…}}`).
fn cursor(list: &str, micros: i64) -> String {
    use base64::Engine as _;
    let doc = json!({ "v": 1, "list": list, "after": { "t": micros, "id": Uuid::nil() } });
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(doc.to_string())
}

#[tokio::test]
async fn nul_bytes_and_out_of_range_timestamps_are_input_errors() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("Acme").await;
    let (_host, agent) = app.enrolled_host(&t, "fs1").await;
    let tp = format!("/tenants/{}", t.id);

    // Login with a NUL in the username (no authentication needed to send it).
    let r = app
        .client()
        .request(Method::POST, "/api/v1/auth/login")
        .json(&json!({ "username": "ad\u{0}min", "password": "x" }))
        .send()
        .await
        .unwrap();
    let st = r.status().as_u16();
    assert!((400..500).contains(&st), "login with NUL: {st}");

    // Bodies with NUL in text fields: each a 400 with a stable code, nothing created.
    let cases = [
        (
            Method::POST,
            format!("{tp}/rules"),
            json!({ "name": "r\u{0}", "priority": 10,
            "action": { "type": "tier", "target": "default" } }),
        ),
        (
            Method::POST,
            format!("{tp}/rules"),
            json!({ "name": "r1", "priority": 11,
            "description": "a\u{0}b", "action": { "type": "tier", "target": "default" } }),
        ),
        (
            Method::POST,
            format!("{tp}/tags"),
            json!({ "path": "/srv/x", "key": "k\u{0}",
            "value": "v" }),
        ),
        (
            Method::POST,
            format!("{tp}/tags"),
            json!({ "path": "/srv/x", "key": "k",
            "value": "v\u{0}" }),
        ),
    ];
    for (m, path, body) in cases {
        let (st, v) = api(&t.admin, m, &path, Some(body.clone())).await;
        assert!(
            st == 400 || st == 422,
            "{path} {body}: {st} {v} (a NUL is an input error, never a 500)"
        );
        assert!(v["error"]["code"].is_string(), "{v}");
        assert!(!v["error"]["message"].as_str().unwrap_or("").contains("0x00"), "{v}");
    }
    let (_, rules) = api(&t.admin, Method::GET, &format!("{tp}/rules"), None).await;
    assert_eq!(rules.as_array().map(Vec::len), Some(0), "nothing created: {rules}");

    // A heartbeat with NUL in its fields.
    let (st, v) = api(
        &agent,
        Method::POST,
        "/agent/heartbeat",
        Some(json!({ "agent_version": "1\u{0}", "hostname": "h\u{0}st", "os": "linux" })),
    )
    .await;
    assert!((400..500).contains(&st), "heartbeat: {st} {v}");

    // Query parameters and cursors.
    for q in [
        "/inventory/files?path_prefix=%00".to_owned(),
        "/inventory/files?extension=.p%00df".to_owned(),
        "/inventory/files?accessed_before=%2B200000-01-01T00:00:00Z".to_owned(),
        "/inventory/files?modified_before=-200000-01-01T00:00:00Z".to_owned(),
        "/audit?since=-200000-01-01T00:00:00Z".to_owned(),
        "/audit?action=a%00".to_owned(),
        format!("/inventory/files?cursor={}", cursor("inventory_files", i64::MIN + 1)),
        format!("/stubs?cursor={}", cursor("stubs", i64::MIN + 1)),
        format!("/jobs?cursor={}", cursor("jobs", -9_000_000_000_000_000_000)),
        format!("/plans?cursor={}", cursor("plans", i64::MIN + 1)),
        format!("/scans?cursor={}", cursor("scans", i64::MIN + 1)),
        // Within chrono's range, outside PostgreSQL's (4713 BC to 294276 AD).
        format!("/jobs?cursor={}", cursor("jobs", -200_000 * 365 * 86_400_000_000)),
        format!("/scans?cursor={}", cursor("scans", 280_000 * 365 * 86_400_000_000)),
        format!("/hosts?cursor={}", cursor("hosts", -200_000 * 365 * 86_400_000_000)),
        "/stubs?path_prefix=%00".to_owned(),
    ] {
        let (st, v) = api(&t.admin, Method::GET, &format!("{tp}{q}"), None).await;
        assert!((200..500).contains(&st) && st != 404, "{q}: {st} {v}");
        if st >= 400 {
            assert!(v["error"]["code"].is_string(), "{q}: {v}");
        }
    }
}

#[tokio::test]
async fn a_job_error_over_the_notify_limit_still_requeues_the_job() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("Acme").await;
    let (_host, agent) = app.enrolled_host(&t, "fs1").await;
    let tp = format!("/tenants/{}", t.id);
    let now = app.clock_now().timestamp_micros();
    let recs: Vec<_> =
        (0..3).map(|i| file_record(format!("/srv/f{i}").as_bytes(), 10_000, now, 400)).collect();
    app.scan_files(&t, &agent, &recs).await;
    app.tier_everything(&t, "default", None).await;
    let (st, _) = api(&t.admin, Method::POST, &format!("{tp}/plans"), Some(json!({}))).await;
    assert_eq!(st, 201);
    let (_, claimed) = api(&agent, Method::POST, "/agent/jobs/claim", Some(json!({}))).await;
    let jid = claimed["jobs"][0]["job_id"].as_str().unwrap().to_owned();
    // 20,000 bytes of error text, with a NUL in it, as a failing mount helper might print.
    let error = format!("storage unavailable: {}\u{0}{}", "é".repeat(5_000), "x".repeat(10_000));
    let (st, v) = api(
        &agent,
        Method::POST,
        &format!("/agent/jobs/{jid}/complete"),
        Some(json!({ "state": "failed", "error": error })),
    )
    .await;
    assert_eq!((st, v["state"].as_str()), (200, Some("queued")), "{v}");
    let (_, j) = api(&t.admin, Method::GET, &format!("{tp}/jobs/{jid}"), None).await;
    assert_eq!(j["state"], "queued");
    let kept = j["last_error"].as_str().unwrap_or_default();
    assert!(kept.starts_with("storage unavailable: éé") && kept.len() <= 4100, "{}", kept.len());

    // Per-file errors with NUL are stored, not refused (the agent would resend forever).
    app.clock.advance(chrono::Duration::minutes(5));
    let (_, again) = api(&agent, Method::POST, "/agent/jobs/claim", Some(json!({}))).await;
    assert_eq!(again["jobs"][0]["job_id"], jid.as_str());
    let (st, v) = api(
        &agent,
        Method::POST,
        &format!("/agent/jobs/{jid}/files"),
        Some(json!({ "results": [{ "seq": 0, "outcome": "failed", "error": "bad\u{0}byte" }] })),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = api(
        &agent,
        Method::POST,
        &format!("/agent/jobs/{jid}/complete"),
        Some(json!({ "state": "failed", "error": "x".repeat(9_000) })),
    )
    .await;
    assert_eq!((st, v["state"].as_str()), (200, Some("failed")), "{v}");
}

#[tokio::test]
async fn file_sizes_whose_sum_overflows_keep_the_summary_working() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("Acme").await;
    let (_host, agent) = app.enrolled_host(&t, "fs1").await;
    let tp = format!("/tenants/{}", t.id);
    let now = app.clock_now().timestamp_micros();
    let huge = i64::MAX as u64;
    let recs: Vec<_> = (0..3)
        .map(|i| file_record(format!("/srv/huge{i}").as_bytes(), huge - i, now, 400))
        .collect();
    let s = app.scan_files(&t, &agent, &recs).await;
    assert_eq!(s.status, "completed", "{s:?}");
    for q in ["/inventory/summary", "/inventory/summary?top=200", "/stubs/summary"] {
        let (st, v) = api(&t.admin, Method::GET, &format!("{tp}{q}"), None).await;
        assert_eq!(st, 200, "{q}: {v}");
    }
    let (_, v) = api(&t.admin, Method::GET, &format!("{tp}/inventory/summary"), None).await;
    assert_eq!(v["bytes"].as_i64(), Some(i64::MAX), "saturated: {v}");
    // Planning over them works too (the planner's totals saturate).
    app.tier_everything(&t, "default", None).await;
    let (st, p) = api(&t.admin, Method::POST, &format!("{tp}/plans"), Some(json!({}))).await;
    assert_eq!(st, 201, "{p}");
    let (st, p) =
        api(&t.admin, Method::POST, &format!("{tp}/rules/preview"), Some(json!({}))).await;
    assert!(st < 500, "{st} {p}");
}

#[tokio::test]
async fn a_scan_with_a_nul_in_its_text_fails_cleanly_and_says_nothing_of_the_database() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("Acme").await;
    let (_host, agent) = app.enrolled_host(&t, "fs1").await;
    let now = app.clock_now().timestamp_micros();
    let mut rec = file_record(b"/srv/owned", 10, now, 1);
    rec.owner = "ali\u{0}ce".into();
    let scan = Uuid::now_v7();
    let up = agent
        .upload_scan_part(
            scan,
            0,
            true,
            "full",
            Format::Parquet.content_type(),
            batch_bytes(Format::Parquet, &[rec]),
        )
        .await;
    match up {
        // Refused at the door: a clear client error, and no scan to show.
        Err(e) => assert!(e.status().is_some_and(|s| (400..500).contains(&s)), "{e:?}"),
        // Or accepted and failed in the merge: the tenant sees a stable message, not
        // PostgreSQL's text, and the inventory is untouched.
        Ok(_) => {
            let s = app.wait_for_scan(&t, scan).await;
            assert_eq!(s.status, "failed", "{s:?}");
            let msg = s.error.unwrap_or_default();
            eprintln!("the scan failed: {msg}");
            assert!(!msg.contains("0x00") && !msg.contains("UTF8"), "{msg}");
            assert!(msg.contains("cannot be stored"), "{msg}");
        }
    }
    let (_, inv) =
        api(&t.admin, Method::GET, &format!("/tenants/{}/inventory/files", t.id), None).await;
    assert_eq!(inv["items"].as_array().map(Vec::len), Some(0), "{inv}");
}
