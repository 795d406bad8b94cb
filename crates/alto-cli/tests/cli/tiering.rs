//! `altoctl` tiering commands end to end: rules (from flags and files, validation, order,
//! versions, explanations, previews), storage targets, tags, host groups, planner settings,
//! plans and jobs. A module of `cli.rs`, sharing its helpers.

use super::*;

/// A rule file in a temporary directory.
fn rule_file(dir: &tempfile::TempDir, name: &str, rule: &Value) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(rule).expect("json")).expect("write rule");
    path.to_str().expect("utf-8 path").to_owned()
}

fn id_of(v: &Value) -> String {
    uuid_of(&v["id"]).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_are_created_from_flags_and_files_validated_reordered_and_versioned() {
    let app = TestApp::spawn().await;
    app.new_tenant("Stark").await;
    let cli = Altoctl::new();
    cli.login(&app, "stark-admin", ADMIN_PASSWORD).await.ok();
    let dir = tempfile::tempdir().expect("tempdir");

    // Storage targets: every tenant has `default`; add one.
    let targets = cli.run(&["storage", "list", "-o", "json"]).await.ok().json();
    assert!(targets.as_array().expect("array").iter().any(|t| t["name"] == "default"), "{targets}");
    let archive = cli
        .run(&[
            "storage",
            "create",
            "--name",
            "archive",
            "--kind",
            "directory",
            "--location",
            "/mnt/archive",
            "-o",
            "json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(archive["kind"], "directory");
    let table = cli.run(&["storage", "get", &id_of(&archive)]).await.ok();
    assert!(table.stdout.contains("/mnt/archive"), "{table:#?}");

    // A rule from flags; without --priority it goes first at 10.
    let old = cli
        .run(&[
            "rules",
            "create",
            "--name",
            "old-isos",
            "--ext",
            "iso",
            "--accessed-older-than-days",
            "90",
            "--min-size",
            "1MiB",
            "--max-size",
            "1.5GB",
            "--target",
            "archive",
            "-o",
            "json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(old["version"], 1);
    assert_eq!(old["spec"]["priority"], 10);
    assert_eq!(old["spec"]["enabled"], true);
    assert_eq!(old["spec"]["conditions"]["min_size_bytes"], 1_048_576);
    assert_eq!(old["spec"]["conditions"]["max_size_bytes"], 1_500_000_000_i64);
    assert_eq!(old["spec"]["conditions"]["accessed_older_than_days"], 90);
    assert_eq!(old["spec"]["action"], serde_json::json!({"type": "tier", "target": "archive"}));
    let old_id = id_of(&old);

    // A rule from a file, and one from standard input; the next free priority is 20.
    let keep = rule_file(
        &dir,
        "keep.json",
        &serde_json::json!({
            "name": "keep-db", "priority": 5,
            "conditions": {"path_globs": ["*.db"]},
            "action": {"type": "exclude"}
        }),
    );
    let created = cli.run(&["rules", "create", "--file", &keep]).await.ok();
    assert!(created.stdout.contains("Created rule keep-db"), "{created:#?}");
    assert!(created.stdout.contains("path glob `*.db`"), "{created:#?}");
    let stdin_rule = serde_json::json!({
        "name": "tmp-files", "priority": 20, "enabled": false,
        "conditions": {"extensions": ["tmp"]}, "action": {"type": "tier", "target": "default"}
    });
    let tmp = cli
        .run_with(&["rules", "create", "--file", "-", "-o", "json"], Some(&stdin_rule.to_string()))
        .await
        .ok()
        .json();
    assert_eq!(tmp["spec"]["enabled"], false);
    let tmp_id = id_of(&tmp);

    // Listing: priority order, table and JSON.
    let list = cli.run(&["rules", "list", "-o", "json"]).await.ok().json();
    let names: Vec<&str> =
        list.as_array().expect("array").iter().filter_map(|r| r["spec"]["name"].as_str()).collect();
    assert_eq!(names, ["keep-db", "old-isos", "tmp-files"], "{list}");
    let keep_id = id_of(&list[0]);
    let table = cli.run(&["rules", "list"]).await.ok();
    for want in ["keep-db", "old-isos", "tier → archive", "exclude", "accessed more than 90 days"]
    {
        assert!(table.stdout.contains(want), "missing {want:?}: {table:#?}");
    }
    assert!(
        table.stdout.find("keep-db") < table.stdout.find("old-isos"),
        "lowest priority first: {table:#?}"
    );

    // Validation: a catastrophic regex and an unknown target, each with its field, exit 1.
    let bad = rule_file(
        &dir,
        "bad.json",
        &serde_json::json!({
            "name": "bad", "priority": 500,
            "conditions": {"path_regex": "(a+)+"},
            "action": {"type": "tier", "target": "nowhere"}
        }),
    );
    let v = cli.run(&["rules", "validate", "--file", &bad]).await;
    assert_eq!(v.code, 1, "{v:#?}");
    assert!(
        v.stdout.contains(
            "conditions.path_regex: catastrophic pattern: nested unbounded repetition such as \
             `(a+)+` or `(.*)*`"
        ),
        "{v:#?}"
    );
    assert!(v.stdout.contains("action.target: unknown storage target `nowhere`"), "{v:#?}");
    assert!(v.stderr.contains("2 problems") && v.stderr.contains("(validation_failed)"), "{v:#?}");
    let vj = cli.run(&["rules", "validate", "--file", &bad, "-o", "json"]).await;
    assert_eq!(vj.code, 1, "{vj:#?}");
    let vj = vj.json();
    assert_eq!(vj["valid"], false);
    let fields: Vec<&str> = vj["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert!(fields.contains(&"conditions.path_regex") && fields.contains(&"action.target"));
    // Uniqueness is checked against the tenant's rules.
    let dup = rule_file(
        &dir,
        "dup.json",
        &serde_json::json!({"name": "OLD-ISOS", "priority": 10, "action": {"type": "exclude"}}),
    );
    let d = cli.run(&["rules", "validate", "--file", &dup]).await;
    assert_eq!(d.code, 1, "{d:#?}");
    assert!(d.stdout.contains("name: a rule named `old-isos` already exists"), "{d:#?}");
    assert!(d.stdout.contains("priority: priority 10 is already used"), "{d:#?}");
    let fresh = rule_file(
        &dir,
        "fresh.json",
        &serde_json::json!({"name": "fresh", "priority": 99, "action": {"type": "exclude"}}),
    );
    let good = cli.run(&["rules", "validate", "--file", &fresh]).await.ok();
    assert!(good.stdout.contains("Rule fresh is valid."), "{good:#?}");
    let help = cli.run(&["rules", "validate", "--help"]).await.ok();
    assert!(help.stdout.contains("1 when it is not"), "{help:#?}");
    // A file that is not a rule is refused before anything is sent.
    let junk = rule_file(&dir, "junk.json", &serde_json::json!({"name": "x", "colour": "red"}));
    let j = cli.run(&["rules", "validate", "--file", &junk]).await;
    assert_eq!(j.code, 1, "{j:#?}");
    assert!(j.stderr.contains("is not a valid rule") && j.stderr.contains("colour"), "{j:#?}");
    // Creating an invalid rule is refused by the server with every problem.
    let c = cli.run(&["rules", "create", "--file", &bad]).await;
    assert_eq!(c.code, 1, "{c:#?}");
    assert!(c.stderr.contains("unknown storage target `nowhere`"), "{c:#?}");
    assert!(c.stderr.contains("(validation_failed)"), "{c:#?}");

    // Bad sizes are usage errors with the reason.
    let neg = cli.run(&["rules", "create", "--name", "n", "--exclude", "--min-size", "-5"]).await;
    assert_eq!(neg.code, 2, "{neg:#?}");
    assert!(neg.stderr.contains("`-5` is not a size: sizes cannot be negative"), "{neg:#?}");
    let junk = cli.run(&["rules", "create", "--name", "n", "--exclude", "--max-size", "5 parsecs"]);
    let junk = junk.await;
    assert_eq!(junk.code, 2, "{junk:#?}");
    assert!(junk.stderr.contains("unknown unit `parsecs`"), "{junk:#?}");

    // Reorder: every rule once; priorities become 10, 20, 30.
    let re =
        cli.run(&["rules", "reorder", &old_id, &tmp_id, &keep_id, "-o", "json"]).await.ok().json();
    let order: Vec<(&str, i64)> = re
        .as_array()
        .expect("array")
        .iter()
        .map(|r| {
            (r["spec"]["name"].as_str().unwrap_or(""), r["spec"]["priority"].as_i64().unwrap_or(0))
        })
        .collect();
    assert_eq!(order, [("old-isos", 10), ("tmp-files", 20), ("keep-db", 30)], "{re}");
    let reordered_version = re[0]["version"].as_i64().expect("version");
    let partial = cli.run(&["rules", "reorder", &old_id]).await;
    assert_eq!(partial.code, 1, "{partial:#?}");
    assert!(partial.stderr.contains("exactly once"), "{partial:#?}");

    // Enable / disable make new versions; a stale --expected-version is a conflict.
    let en = cli.run(&["rules", "enable", &tmp_id]).await.ok();
    assert!(en.stdout.contains("now enabled"), "{en:#?}");
    let again = cli.run(&["rules", "enable", &tmp_id]).await.ok();
    assert!(again.stdout.contains("already enabled"), "{again:#?}");
    let dis = cli.run(&["rules", "disable", &old_id, "-o", "json"]).await.ok().json();
    assert_eq!(dis["spec"]["enabled"], false);
    let version = dis["version"].as_i64().expect("version");
    assert_eq!(version, reordered_version + 1, "disabling is a new version: {dis}");
    let upd_file = rule_file(
        &dir,
        "upd.json",
        &serde_json::json!({
            "name": "old-isos", "priority": 10,
            "conditions": {"extensions": ["iso", "img"], "accessed_older_than_days": 180},
            "action": {"type": "tier", "target": "archive"}
        }),
    );
    let stale = cli
        .run(&["rules", "update", &old_id, "--file", &upd_file, "--expected-version", "1"])
        .await;
    assert_eq!(stale.code, 1, "{stale:#?}");
    assert!(stale.stderr.contains("(conflict)"), "{stale:#?}");
    let upd = cli
        .run(&[
            "rules",
            "update",
            &old_id,
            "--file",
            &upd_file,
            "--expected-version",
            &version.to_string(),
            "-o",
            "json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(upd["version"], version + 1);
    assert_eq!(upd["spec"]["enabled"], true);
    let got = cli.run(&["rules", "get", &old_id]).await.ok();
    assert!(got.stdout.contains("accessed more than 180 days ago"), "{got:#?}");
    let versions = cli.run(&["rules", "versions", &old_id, "-o", "json"]).await.ok().json();
    let changes: Vec<&str> =
        versions.as_array().expect("array").iter().filter_map(|v| v["change"].as_str()).collect();
    assert_eq!(changes.len() as i64, version + 1, "{versions}");
    assert_eq!(changes.first(), Some(&"created"), "{versions}");
    assert!(changes[1..].iter().all(|c| *c == "updated"), "{versions}");
    let vt = cli.run(&["rules", "versions", &old_id]).await.ok();
    assert!(vt.stdout.contains("created") && vt.stdout.contains("updated"), "{vt:#?}");

    // Delete; a target still in use cannot be deleted, an unused one can.
    let del = cli.run(&["rules", "delete", &tmp_id]).await.ok();
    assert!(del.stdout.contains("Deleted rule tmp-files"), "{del:#?}");
    let gone = cli.run(&["rules", "get", &tmp_id]).await;
    assert_eq!(gone.code, 1, "{gone:#?}");
    assert!(gone.stderr.contains("(not_found)"), "{gone:#?}");
    let in_use = cli.run(&["storage", "delete", &id_of(&archive)]).await;
    assert_eq!(in_use.code, 1, "{in_use:#?}");
    assert!(in_use.stderr.contains("old-isos") && in_use.stderr.contains("(conflict)"));
    let secret = dir.path().join("s3-secret");
    std::fs::write(&secret, "spare-secret\n").expect("write secret");
    let secret_arg = format!("secret_access_key={}", secret.display());
    let spare = cli
        .run(&[
            "storage",
            "create",
            "--name",
            "spare",
            "--kind",
            "s3",
            "--location",
            "s3://b",
            "--set",
            "access_key_id=AK",
            "--secret",
            &secret_arg,
        ])
        .await
        .ok();
    assert!(!spare.stdout.contains("spare-secret"), "{spare:#?}");
    assert!(spare.stdout.contains("Created storage target spare"), "{spare:#?}");
    let listed = cli.run(&["storage", "list", "-o", "json"]).await.ok().json();
    let spare = listed
        .as_array()
        .expect("array")
        .iter()
        .find(|t| t["name"] == "spare")
        .expect("spare listed")
        .clone();
    let del = cli.run(&["storage", "delete", &id_of(&spare)]).await.ok();
    assert!(del.stdout.contains("Deleted storage target spare"), "{del:#?}");
    let bad_kind =
        cli.run(&["storage", "create", "--name", "x", "--kind", "tape", "--location", "l"]);
    assert_eq!(bad_kind.await.code, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_preview_plans_and_jobs_work_on_an_ingested_inventory() {
    use alto_test_support::file_record;

    let app = TestApp::spawn().await;
    let tenant = app.new_tenant("Tyrell").await;
    let (host_id, host) = app.enrolled_host(&tenant, "fs-plan").await;
    let host_s = host_id.to_string();
    let cli = Altoctl::new();
    cli.login(&app, "tyrell-admin", ADMIN_PASSWORD).await.ok();

    // Planner settings: no automatic planning after ingest, for a predictable test.
    let settings = cli.run(&["planner-settings", "get", "-o", "json"]).await.ok().json();
    assert_eq!(settings["plan_after_ingest"], true, "{settings}");
    let set = cli
        .run(&[
            "planner-settings",
            "set",
            "--plan-after-ingest",
            "false",
            "--max-bytes-per-run",
            "1TiB",
            "-o",
            "json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(set["plan_after_ingest"], false);
    assert_eq!(set["max_bytes_per_run"], 1_i64 << 40);
    assert_eq!(set["safety_window_seconds"], settings["safety_window_seconds"], "unchanged");
    let table = cli.run(&["planner-settings", "get"]).await.ok();
    assert!(table.stdout.contains("plan after ingest") && table.stdout.contains("1.0 TiB"));
    let bad = cli.run(&["planner-settings", "set", "--low-watermark-pct", "99"]).await;
    assert_eq!(bad.code, 1, "{bad:#?}");
    assert!(bad.stderr.contains("low_watermark_pct must be below"), "{bad:#?}");

    // Inventory: two old ISOs, a recent one, an old database and an old PDF.
    let now_us = app.clock_now().timestamp_micros();
    let records = vec![
        file_record(b"/data/old/a.iso", 5_000_000, now_us, 400),
        file_record(b"/data/old/b.iso", 3_000_000, now_us, 200),
        file_record(b"/data/new/c.iso", 2_000_000, now_us, 1),
        file_record(b"/data/keep/x.iso.db", 7_000_000, now_us, 500),
        file_record(b"/data/docs/r.pdf", 1_000_000, now_us, 400),
    ];
    let body = alto_test_support::batch_bytes(alto_batch::Format::Parquet, &records);
    let scan_id = Uuid::new_v4();
    host.upload_scan_part(scan_id, 0, true, "full", "application/vnd.apache.parquet", body)
        .await
        .expect("upload");
    assert_eq!(app.wait_for_scan(&tenant, scan_id).await.status, "completed");

    // Host groups, and a tag.
    let g = cli.run(&["hosts", "groups", &host_s, "fileservers", "eu", "-o", "json"]).await;
    assert_eq!(g.ok().json()["groups"], serde_json::json!(["eu", "fileservers"]));
    let shown = cli.run(&["hosts", "get", &host_s]).await.ok();
    assert!(shown.stdout.contains("eu, fileservers"), "{shown:#?}");
    let badg = cli.run(&["hosts", "groups", &host_s, "no spaces"]).await;
    assert_eq!(badg.code, 1, "{badg:#?}");
    assert!(badg.stderr.contains("not a valid group name"), "{badg:#?}");
    let tag = cli
        .run(&[
            "tags",
            "add",
            "--path",
            "/data/old",
            "--key",
            "project",
            "--value",
            "apollo",
            "--host",
            &host_s,
            "-o",
            "json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(tag["key"], "project");
    let tags = cli.run(&["tags", "list", "--host", &host_s]).await.ok();
    assert!(tags.stdout.contains("/data/old") && tags.stdout.contains("apollo"), "{tags:#?}");

    // Rules: keep databases; tier ISOs untouched for 90 days that carry the project tag
    // (from their directory), on the file servers.
    cli.run(&[
        "rules",
        "create",
        "--name",
        "keep-db",
        "--priority",
        "5",
        "--exclude",
        "--ext",
        "db",
    ])
    .await
    .ok();
    let old = cli
        .run(&[
            "rules",
            "create",
            "--name",
            "old-isos",
            "--priority",
            "10",
            "--target",
            "default",
            "--ext",
            "iso",
            "--accessed-older-than-days",
            "90",
            "--host-group",
            "fileservers",
            "--tag",
            "project=apollo",
            "-o",
            "json",
        ])
        .await
        .ok()
        .json();
    let old_id = id_of(&old);

    // Explain: a candidate, an excluded file, one that fails a condition, and no such file.
    let ex = cli.run(&["rules", "explain", "--host", &host_s, "--path", "/data/old/a.iso"]).await;
    let ex = ex.ok();
    for want in [
        "/data/old/a.iso",
        "keep-db",
        "not_matched",
        "✗ extensions",
        "old-isos",
        "matched",
        "✓ accessed_older_than_days",
        "✓ scope.host_groups",
        "✓ tags: tag project=apollo from `/data/old`",
        "Decision: tier (rule `old-isos`, target `default`)",
    ] {
        assert!(ex.stdout.contains(want), "missing {want:?}: {ex:#?}");
    }
    let exj = cli
        .run(&["rules", "explain", "--host", &host_s, "--path", "/data/old/a.iso", "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(exj["explanation"]["decision"], "tier", "{exj}");
    assert_eq!(exj["explanation"]["rule_id"], old_id.as_str());
    assert_eq!(exj["file_size"], 5_000_000);
    let kept =
        cli.run(&["rules", "explain", "--host", &host_s, "--path", "/data/keep/x.iso.db"]).await;
    let kept = kept.ok();
    assert!(kept.stdout.contains("Decision: excluded (rule `keep-db`)"), "{kept:#?}");
    assert!(kept.stdout.contains("not evaluated"), "later rules are skipped: {kept:#?}");
    let recent_args = ["rules", "explain", "--host", &host_s, "--path", "/data/new/c.iso"];
    let recent = cli.run(&recent_args).await.ok();
    assert!(recent.stdout.contains("Decision: no_match"), "{recent:#?}");
    assert!(recent.stdout.contains("✗ accessed_older_than_days: last accessed"), "{recent:#?}");
    let missing = cli.run(&["rules", "explain", "--host", &host_s, "--path", "/nope"]).await;
    assert_eq!(missing.code, 1, "{missing:#?}");
    assert!(missing.stderr.contains("(not_found)"), "{missing:#?}");

    // Preview: the current rules, then a draft.
    let pv = cli.run(&["rules", "preview"]).await.ok();
    for want in [
        "Per host",
        "fs-plan",
        "Per target",
        "default",
        "Top directories",
        "/data/old",
        "By last access",
        "Sample (2 of 2 files)",
        "/data/old/b.iso",
    ] {
        assert!(pv.stdout.contains(want), "missing {want:?}: {pv:#?}");
    }
    let pj = cli.run(&["rules", "preview", "--host", &host_s, "-o", "json"]).await.ok().json();
    assert_eq!(pj["files"], 2, "{pj}");
    assert_eq!(pj["bytes"], 8_000_000, "{pj}");
    let dir = tempfile::tempdir().expect("tempdir");
    let draft = rule_file(
        &dir,
        "pdf.json",
        &serde_json::json!({
            "name": "old-pdfs", "priority": 20,
            "conditions": {"extensions": ["pdf"], "modified_older_than_days": 30},
            "action": {"type": "tier", "target": "default"}
        }),
    );
    let dj = cli
        .run(&["rules", "preview", "--file", &draft, "--sample", "0", "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(dj["files"], 1, "only the draft's candidates: {dj}");
    assert_eq!(dj["sample"].as_array().map(Vec::len), Some(0), "{dj}");
    let replaces = cli.run(&["rules", "preview", "--replaces", &old_id]).await;
    assert_eq!(replaces.code, 2, "--replaces needs --file: {replaces:#?}");

    // Plans: run held, inspect, release.
    let plan = cli.run(&["plans", "run", "--hold", "--host", &host_s, "-o", "json"]).await;
    let plan = plan.ok().json();
    assert_eq!(plan["held"], true, "{plan}");
    assert_eq!(plan["trigger"], "manual");
    assert_eq!(plan["stats"]["files"], 2, "{plan}");
    assert_eq!(plan["stats"]["bytes"], 8_000_000, "{plan}");
    let plan_id = id_of(&plan);
    let plans = cli.run(&["plans", "list"]).await.ok();
    assert!(plans.stdout.contains(&plan_id), "{plans:#?}");
    let pg = cli.run(&["plans", "get", &plan_id]).await.ok();
    assert!(pg.stdout.contains("old-isos v1"), "{pg:#?}");

    let jobs = cli.run(&["jobs", "list", "--plan", &plan_id, "-o", "json"]).await.ok().json();
    let items = jobs["items"].as_array().expect("items");
    assert!(!items.is_empty(), "{jobs}");
    assert!(items.iter().all(|j| j["state"] == "planned" && j["kind"] == "tier"), "{jobs}");
    let job_id = id_of(&items[0]);
    let files: i64 = items.iter().filter_map(|j| j["file_count"].as_i64()).sum();
    assert_eq!(files, 2, "{jobs}");
    let jt = cli.run(&["jobs", "list", "--state", "planned"]).await.ok();
    assert!(jt.stdout.contains(&job_id) && jt.stdout.contains("planned"), "{jt:#?}");
    let jg = cli.run(&["jobs", "get", &job_id]).await.ok();
    assert!(jg.stdout.contains("planned") && jg.stdout.contains(&plan_id), "{jg:#?}");
    let jf = cli.run(&["jobs", "files", &job_id, "-o", "json"]).await.ok().json();
    let paths: Vec<&str> = jf["items"]
        .as_array()
        .expect("a page")
        .iter()
        .filter_map(|f| f["file_path"].as_str())
        .collect();
    assert!(paths.iter().all(|p| p.starts_with("/data/old/")), "{jf}");
    let jft = cli.run(&["jobs", "files", &job_id, "--limit", "1", "--all"]).await.ok();
    for p in &paths {
        assert!(jft.stdout.contains(p), "--all follows seq: {jft:#?}");
    }
    let doc = cli.run(&["jobs", "document", &job_id]).await.ok().json();
    assert!(doc["files"].as_array().is_some_and(|f| !f.is_empty()), "{doc}");

    let rel = cli.run(&["plans", "release", &plan_id, "-o", "json"]).await.ok().json();
    assert_eq!(rel["id"], plan_id.as_str());
    let again = cli.run(&["plans", "release", &plan_id]).await;
    assert_eq!(again.code, 1, "{again:#?}");
    assert!(again.stderr.contains("(conflict)"), "{again:#?}");
    let queued = cli.run(&["jobs", "get", &job_id, "-o", "json"]).await.ok().json();
    assert_eq!(queued["state"], "queued", "{queued}");

    // Cancel, retry, cancel again; cancelling an ended job is a conflict.
    let c = cli.run(&["jobs", "cancel", &job_id, "-o", "json"]).await.ok().json();
    assert_eq!(c["state"], "cancelled", "{c}");
    let twice = cli.run(&["jobs", "cancel", &job_id]).await;
    assert_eq!(twice.code, 1, "{twice:#?}");
    assert!(twice.stderr.contains("(conflict)"), "{twice:#?}");
    let r = cli.run(&["jobs", "retry", &job_id]).await.ok();
    assert!(r.stdout.contains("retried; it is now queued"), "{r:#?}");
    let c = cli.run(&["jobs", "cancel", &job_id]).await.ok();
    assert!(c.stdout.contains(&format!("Job {job_id} is cancelled.")), "{c:#?}");
    let cancelled = cli.run(&["jobs", "list", "--state", "cancelled", "-o", "json"]).await;
    let cancelled = cancelled.ok().json();
    assert!(
        cancelled["items"].as_array().expect("items").iter().any(|j| j["id"] == job_id.as_str()),
        "{cancelled}"
    );

    // Tags can be removed; an unknown job is not found.
    cli.run(&["tags", "delete", &id_of(&tag)]).await.ok();
    let none = cli.run(&["tags", "list", "-o", "json"]).await.ok().json();
    assert_eq!(none.as_array().map(Vec::len), Some(0), "{none}");
    let nojob = cli.run(&["jobs", "get", &Uuid::new_v4().to_string()]).await;
    assert_eq!(nojob.code, 1, "{nojob:#?}");
    assert!(nojob.stderr.contains("(not_found)"), "{nojob:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caps_edits_live_jobs_and_permissions() {
    use alto_test_support::file_record;

    let app = TestApp::spawn().await;
    let tenant = app.new_tenant("Cyberdyne").await;
    let (host_id, host) = app.enrolled_host(&tenant, "fs-cap").await;
    let host_s = host_id.to_string();
    let cli = Altoctl::new();
    cli.login(&app, "cyberdyne-admin", ADMIN_PASSWORD).await.ok();
    cli.run(&["planner-settings", "set", "--plan-after-ingest", "false"]).await.ok();

    let now_us = app.clock_now().timestamp_micros();
    let records: Vec<_> = (0..4)
        .map(|i| file_record(format!("/srv/logs/{i}.log").as_bytes(), 1000 * (i + 1), now_us, 60))
        .collect();
    let body = alto_test_support::batch_bytes(alto_batch::Format::Parquet, &records);
    let scan_id = Uuid::new_v4();
    host.upload_scan_part(scan_id, 0, true, "full", "application/vnd.apache.parquet", body)
        .await
        .expect("upload");
    assert_eq!(app.wait_for_scan(&tenant, scan_id).await.status, "completed");

    let rule = cli
        .run(&[
            "rules",
            "create",
            "--name",
            "logs",
            "--target",
            "default",
            "--ext",
            "log",
            "--modified-older-than-days",
            "30",
            "--path-prefix",
            "/srv",
            "--order-by",
            "largest",
            "-o",
            "json",
        ])
        .await
        .ok()
        .json();
    let rule_id = id_of(&rule);

    // An edit without --expected-version is accepted; preview --replaces shows the edit.
    let dir = tempfile::tempdir().expect("tempdir");
    let edit = rule_file(
        &dir,
        "edit.json",
        &serde_json::json!({
            "name": "logs", "priority": 10,
            "conditions": {"extensions": ["log"], "min_size_bytes": 3000},
            "action": {"type": "tier", "target": "default"}
        }),
    );
    let pv = cli
        .run(&["rules", "preview", "--file", &edit, "--replaces", &rule_id, "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(pv["files"], 2, "3000 and 4000 bytes: {pv}");
    let upd = cli.run(&["rules", "update", &rule_id, "--file", &edit, "-o", "json"]).await;
    assert_eq!(upd.ok().json()["version"], 2);
    let back = rule_file(
        &dir,
        "back.json",
        &serde_json::json!({
            "name": "logs", "priority": 10, "order_by": "largest",
            "conditions": {"extensions": ["log"]},
            "action": {"type": "tier", "target": "default"}
        }),
    );
    cli.run(&["rules", "update", &rule_id, "--file", &back]).await.ok();

    // A capped run takes the largest first and defers the rest.
    let plan = cli
        .run(&["plans", "run", "--rule", &rule_id, "--max-files", "1", "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(plan["stats"]["files"], 1, "{plan}");
    assert_eq!(plan["stats"]["bytes"], 4000, "largest first: {plan}");
    assert_eq!(plan["stats"]["deferred_files"], 3, "{plan}");
    let by_host = cli.run(&["jobs", "list", "--host", &host_s, "-o", "json"]).await.ok().json();
    let job = by_host["items"][0].clone();
    assert_eq!(job["state"], "queued", "{by_host}");
    let other_host = cli
        .run(&["jobs", "list", "--host", &Uuid::new_v4().to_string(), "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(other_host["items"].as_array().map(Vec::len), Some(0), "{other_host}");

    // The file in the live job says so in its explanation.
    let ex = cli.run(&["rules", "explain", "--host", &host_s, "--path", "/srv/logs/3.log"]).await;
    let ex = ex.ok();
    assert!(ex.stdout.contains(&id_of(&job)), "in job: {ex:#?}");
    assert!(ex.stdout.contains("Note: the file is already in live job"), "{ex:#?}");

    // A scheduled rule shows its next run.
    let sched = cli
        .run(&[
            "rules",
            "create",
            "--name",
            "weekly-tmp",
            "--target",
            "default",
            "--ext",
            "tmp",
            "--schedule",
            "0 2 * * 6",
            "-o",
            "json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(sched["spec"]["schedule"], "0 2 * * 6");
    assert_eq!(sched["spec"]["priority"], 20, "after `logs`: {sched}");
    assert!(sched["next_run_at"].is_string(), "{sched}");
    let bad_cron =
        cli.run(&["rules", "create", "--name", "x", "--exclude", "--schedule", "61 * * * *"]).await;
    assert_eq!(bad_cron.code, 1, "{bad_cron:#?}");
    assert!(bad_cron.stderr.contains("schedule"), "{bad_cron:#?}");

    // Groups can be cleared; tags need absolute paths.
    cli.run(&["hosts", "groups", &host_s, "a"]).await.ok();
    let cleared = cli.run(&["hosts", "groups", &host_s, "--clear", "-o", "json"]).await;
    assert_eq!(cleared.ok().json()["groups"], serde_json::json!([]));
    let rel = cli.run(&["tags", "add", "--path", "relative/dir", "--key", "k"]).await;
    assert_eq!(rel.code, 1, "{rel:#?}");
    assert!(rel.stderr.contains("(validation_failed)"), "{rel:#?}");

    // An auditor reads rules and jobs but cannot change them.
    app.user_with(&tenant, "cyberdyne-auditor", &[Role::Auditor]).await;
    let auditor = Altoctl::new();
    auditor.login(&app, "cyberdyne-auditor", ADMIN_PASSWORD).await.ok();
    let list = auditor.run(&["rules", "list"]).await.ok();
    assert!(list.stdout.contains("logs"), "{list:#?}");
    auditor.run(&["jobs", "list"]).await.ok();
    let denied = auditor.run(&["rules", "disable", &rule_id]).await;
    assert_eq!(denied.code, 1, "{denied:#?}");
    assert!(denied.stderr.contains("(forbidden)"), "{denied:#?}");
    let denied = auditor.run(&["jobs", "cancel", &id_of(&job)]).await;
    assert_eq!(denied.code, 1, "{denied:#?}");
    assert!(denied.stderr.contains("(forbidden)"), "{denied:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stubs_list_and_summary_show_the_registry() {
    let app = TestApp::spawn().await;
    let tenant = app.new_tenant("Pym").await;
    let (_, host) = app.enrolled_host(&tenant, "fs-stubs").await;
    let now_us = app.clock_now().timestamp_micros();
    let records =
        vec![alto_test_support::file_record(b"/data/cold/big.iso", 1_000_000, now_us, 900)];
    let body = alto_test_support::batch_bytes(alto_batch::Format::Parquet, &records);
    let scan_id = Uuid::new_v4();
    host.upload_scan_part(scan_id, 0, true, "full", "application/vnd.apache.parquet", body)
        .await
        .expect("upload");
    app.wait_for_scan(&tenant, scan_id).await;
    let cli = Altoctl::new();
    cli.login(&app, "pym-admin", ADMIN_PASSWORD).await.ok();
    let empty = cli.run(&["stubs", "summary", "-o", "json"]).await.ok().json();
    assert_eq!(empty["stubs"], 0, "{empty}");
    cli.run(&["rules", "create", "--name", "all", "--target", "default"]).await.ok();
    cli.run(&["plans", "run"]).await.ok();
    // The agent's side, over its API: stage, then stub.
    let claimed: Value = host
        .request(reqwest::Method::POST, "/api/v1/agent/jobs/claim")
        .json(&serde_json::json!({}))
        .send()
        .await
        .expect("claim")
        .json()
        .await
        .expect("json");
    let job = claimed["jobs"][0]["job_id"].as_str().expect("a job").to_owned();
    let sha = "b".repeat(64);
    for outcome in ["staged", "stubbed"] {
        let r = host
            .request(reqwest::Method::POST, &format!("/api/v1/agent/jobs/{job}/files"))
            .json(&serde_json::json!({ "results": [{ "seq": 0, "outcome": outcome,
                "sha256": sha, "object_key": format!("objects/bb/{sha}"), "stored_size": 1_000_000 }] }))
            .send()
            .await
            .expect("report");
        assert!(r.status().is_success(), "{outcome}: {}", r.status());
    }
    let list = cli.run(&["stubs", "list"]).await.ok();
    for want in ["/data/cold/big.iso", "stubbed", "default", "bbbbbbbbbbbbbbbb"] {
        assert!(list.stdout.contains(want), "missing {want}: {list:#?}");
    }
    let sum = cli.run(&["stubs", "summary", "-o", "json"]).await.ok().json();
    assert_eq!(sum["stubs"], 1, "{sum}");
    assert_eq!(sum["space_saved"], 1_000_000 - 4096, "{sum}");
    let bad = cli.run(&["stubs", "list", "--state", "bogus"]).await;
    assert_eq!(bad.code, 2, "{bad:#?}");
}
