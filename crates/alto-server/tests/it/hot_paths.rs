//! Every statement on a hot path, run for real under the application role (row-level
//! security on, the tenant set) beside a neighbour tenant whose rows make each big table at
//! least 100,000 rows long, must reach its rows through an index: any sequential scan of a
//! large table fails the test, and names the table.
//!
//! The paths: ingest of a scan, a planning run, dispatch (claim), per-file results (staged,
//! stubbed, skipped, failed), progress, completion, recall reports of every outcome (with the
//! storm detector), reconciliation's reference check,
//! and the pages a console shows (inventory, stubs, jobs, job files, plans, scans, audit),
//! plus whatever the server's background services run meanwhile. The counts come from
//! PostgreSQL itself (`pg_stat_user_tables.seq_scan`), so a new statement on any of these
//! paths is covered without being listed here.
//!
//! This is how the quadratic tiering of issue 10 would have been caught: the per-file
//! registry lookup had no `customer_id`, and the policy's `OR` kept PostgreSQL from using the
//! `(customer_id, host_id, file_path, …)` index, so every file cost a scan of the registry.

use std::time::Duration;

use alto_batch::Format;
use alto_client::Client;
use alto_test_support::{api, batch_bytes, file_record, TestApp};
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

/// Rows of each big table that belong to the neighbour.
const NOISE: i64 = 120_000;
/// A table this long must never be read whole on a hot path.
const LARGE: i64 = 50_000;
/// Files of the tenant under test, ingested through the API.
const FILES: usize = 1_500;
const SHA: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

async fn ok(c: &Client, m: Method, path: &str, body: Option<Value>) -> Value {
    let (st, v) = api(c, m, path, body).await;
    assert!((200..300).contains(&st), "{path}: {st} {v}");
    v
}

/// The neighbour's history: inventory, stub registry, jobs, job files and audit entries.
async fn seed_neighbour(
    owner: &PgPool,
    customer: Uuid,
    host: Uuid,
    now: chrono::DateTime<chrono::Utc>,
) {
    let old = now - chrono::Duration::days(400);
    let stmts = [
        "INSERT INTO file_inventory (id, customer_id, host_id, file_path, file_size, last_modified,
                last_accessed, file_extension, last_scan_time, is_stubbed, owner)
         SELECT gen_random_uuid(), $1, $2, '/noise/d' || (g % 997) || '/f' || g || '.dat',
                100000 + g, $4, $4, 'dat', $5, g % 2 = 0, 'root'
           FROM generate_series(1, $3) g",
        "INSERT INTO stub_registry (id, customer_id, host_id, file_path, path_escaped, file_size,
                sha256, object_key, tiered_location, target_name, stored_size, state, tiered_at,
                created_at, updated_at)
         SELECT gen_random_uuid(), $1, $2, '/noise/d' || (g % 997) || '/f' || g || '.dat', false,
                100000 + g, repeat('a', 64), 'objects/aa/' || g, 'default', 'default', 100000,
                CASE WHEN g % 10 = 0 THEN 'rehydrated' ELSE 'stubbed' END, $4, $4, $5
           FROM generate_series(1, $3) g",
        "INSERT INTO jobs (id, customer_id, host_id, kind, state, priority, payload, run_after,
                created_at, updated_at, finished_at, file_count, total_bytes, target_name)
         SELECT gen_random_uuid(), $1, $2, 'tier', 'succeeded', 0, '{}', $4, $4, $5, $5, 1,
                100000, 'default'
           FROM generate_series(1, $3) g",
        "INSERT INTO job_files (job_id, customer_id, seq, file_id, file_size, state, updated_at)
         SELECT gen_random_uuid(), $1, 0, gen_random_uuid(), 100000, 'succeeded', $5
           FROM generate_series(1, $3) g",
        "INSERT INTO audit_log (customer_id, seq, occurred_at, actor_kind, actor_id, action,
                outcome, details, prev_hash, hash)
         SELECT $1, 1000000 + g, $4, 'host', $2::text, 'stub.recall', 'success', '{}',
                repeat('0', 64), repeat('0', 64)
           FROM generate_series(1, $3) g",
    ];
    for s in stmts {
        sqlx::query(s)
            .bind(customer)
            .bind(host)
            .bind(NOISE)
            .bind(old)
            .bind(now)
            .execute(owner)
            .await
            .unwrap_or_else(|e| panic!("{e}: {s}"));
    }
    for t in ["file_inventory", "stub_registry", "jobs", "job_files", "audit_log"] {
        sqlx::query(&format!("VACUUM ANALYZE {t}")).execute(owner).await.unwrap();
    }
}

/// `(table, seq_scan, rows read, rows)` of every table with at least `LARGE` rows. Rows read
/// counts what sequential scans read and every index entry index scans read: an index scan
/// without a condition on the index's leading column (an `OR` in a policy hides it) is a
/// full pass too, just not a sequential one.
async fn large_tables(owner: &PgPool) -> Vec<(String, i64, i64, i64)> {
    let mut conn = owner.acquire().await.unwrap();
    sqlx::query("SELECT pg_stat_clear_snapshot()").execute(&mut *conn).await.unwrap();
    sqlx::query_as(
        "SELECT s.schemaname || '.' || s.relname, coalesce(s.seq_scan, 0),
                (coalesce(s.seq_tup_read, 0)
                 + coalesce((SELECT sum(i.idx_tup_read) FROM pg_stat_user_indexes i
                              WHERE i.relid = s.relid), 0))::bigint,
                c.reltuples::bigint
           FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
          WHERE c.reltuples >= $1 ORDER BY 1",
    )
    .bind(LARGE as f32)
    .fetch_all(&mut *conn)
    .await
    .unwrap()
}

/// Ends the server's database sessions (a backend reports its counters when it exits) and
/// waits until the counters stop moving.
async fn settled(owner: &PgPool) -> Vec<(String, i64, i64, i64)> {
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE datname = current_database() AND pid <> pg_backend_pid()
            AND backend_type = 'client backend'",
    )
    .execute(owner)
    .await
    .unwrap();
    let mut last = large_tables(owner).await;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = large_tables(owner).await;
        if now == last {
            return now;
        }
        last = now;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_paths_never_scan_a_large_table_under_row_level_security() {
    let app = TestApp::spawn().await;
    let noise = app.new_tenant("Neighbour").await;
    let (noise_host, _) = app.enrolled_host(&noise, "big").await;
    let t = app.new_tenant("Acme").await;
    let (host, agent) = app.enrolled_host(&t, "fs1").await;
    let tp = format!("/tenants/{}", t.id);
    let owner = app.db.owner_pool().await;
    seed_neighbour(&owner, noise.id, noise_host, app.clock_now()).await;
    ok(&t.admin, Method::POST, &format!("{tp}/rules"),
        Some(json!({ "name": "all", "priority": 10, "action": { "type": "tier", "target": "default" } }))).await;
    let mut s = ok(&t.admin, Method::GET, &format!("{tp}/planner-settings"), None).await;
    s["plan_after_ingest"] = json!(false);
    ok(&t.admin, Method::PUT, &format!("{tp}/planner-settings"), Some(s)).await;

    // Every plan goes to the server's log from here on (new sessions; the server's are ended
    // so that its pool opens new ones), so that a failure can name the statement.
    let log = explain_log(&owner, &app.db.name).await;

    // Counters from here on. Pending counters of the setup are reported within a second of a
    // session going idle: give them that, then start from zero.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    sqlx::query("SELECT pg_stat_reset()").execute(&owner).await.unwrap();
    let log_from = log.as_ref().and_then(|p| std::fs::metadata(p).ok()).map_or(0, |m| m.len());
    let before = large_tables(&owner).await;
    assert!(
        before.len() >= 5,
        "the neighbour's tables are large: {before:?} (every big table of a hot path)"
    );
    assert!(before.iter().all(|(_, n, r, _)| *n == 0 && *r == 0), "{before:?}");

    // Ingest: a full scan of the host, in two parts.
    let now = app.clock_now().timestamp_micros();
    let recs: Vec<_> = (0..FILES)
        .map(|i| file_record(format!("/srv/d{}/f{i}.bin", i % 13).as_bytes(), 50_000, now, 400))
        .collect();
    let scan = Uuid::now_v7();
    for (part, chunk) in recs.chunks(FILES / 2 + 1).enumerate() {
        agent
            .upload_scan_part(
                scan,
                part as i32,
                part == 1,
                "full",
                Format::Parquet.content_type(),
                batch_bytes(Format::Parquet, chunk),
            )
            .await
            .unwrap();
    }
    assert_eq!(app.wait_for_scan(&t, scan).await.status, "completed");
    // A second scan of the same tree (the steady state: every row already known).
    assert_eq!(app.scan_files(&t, &agent, &recs).await.status, "completed");

    // Planning, then dispatch.
    let plan = ok(&t.admin, Method::POST, &format!("{tp}/plans"), Some(json!({}))).await;
    assert_eq!(plan["stats"]["files"], FILES as u64, "{plan}");
    let claimed =
        ok(&agent, Method::POST, "/agent/jobs/claim", Some(json!({ "max_jobs": 1 }))).await;
    let job = &claimed["jobs"][0];
    let jid = job["job_id"].as_str().unwrap().to_owned();
    let files = job["files"].as_array().unwrap();
    assert!(files.len() >= 100, "{}", files.len());

    // Per-file results, as an agent sends them: staged, then stubbed; a few skipped/failed.
    let path = format!("/agent/jobs/{jid}/files");
    for chunk in files.chunks(50) {
        let staged: Vec<Value> = chunk
            .iter()
            .map(|f| {
                json!({ "seq": f["seq"], "outcome": "staged", "sha256": SHA,
                "object_key": format!("objects/bb/{SHA}"), "stored_size": 50_000 })
            })
            .collect();
        ok(&agent, Method::POST, &path, Some(json!({ "results": staged }))).await;
        let stubbed: Vec<Value> = chunk
            .iter()
            .map(|f| {
                json!({ "seq": f["seq"], "outcome": "stubbed", "sha256": SHA,
                "object_key": format!("objects/bb/{SHA}"), "stored_size": 50_000 })
            })
            .collect();
        ok(&agent, Method::POST, &path, Some(json!({ "results": stubbed }))).await;
        ok(&agent, Method::POST, &format!("/agent/jobs/{jid}/progress"), Some(json!({}))).await;
    }
    ok(
        &agent,
        Method::POST,
        &format!("/agent/jobs/{jid}/complete"),
        Some(json!({ "state": "succeeded" })),
    )
    .await;
    // A second job: some files skipped and failed, then the job fails and is queued again.
    let claimed = ok(&agent, Method::POST, "/agent/jobs/claim", Some(json!({}))).await;
    if let Some(j2) = claimed["jobs"][0]["job_id"].as_str() {
        ok(
            &agent,
            Method::POST,
            &format!("/agent/jobs/{j2}/files"),
            Some(json!({ "results": [{ "seq": 0, "outcome": "skipped", "error": "changed" },
                                     { "seq": 1, "outcome": "failed", "error": "io" }] })),
        )
        .await;
        ok(
            &agent,
            Method::POST,
            &format!("/agent/jobs/{j2}/complete"),
            Some(json!({ "state": "failed", "error": "storage unavailable: gone" })),
        )
        .await;
    }

    // Recall reports of every outcome (with the storm detector's counters), and
    // reconciliation's check.
    let first = files[0]["file_path"].as_str().unwrap().to_owned();
    ok(&agent, Method::POST, "/agent/recalled", Some(json!({ "path": first, "sha256": SHA })))
        .await;
    let process = json!({ "pid": 42, "exe": "/usr/bin/clamscan", "uid": 0, "user": "root" });
    for (i, outcome) in ["recalled", "failed", "denied", "replaced"].iter().enumerate() {
        let path = files[10 + i]["file_path"].as_str().unwrap().to_owned();
        let r = ok(
            &agent,
            Method::POST,
            "/agent/recalled",
            Some(json!({ "path": path, "sha256": SHA, "trigger": "on_access",
                         "outcome": outcome, "process": process, "error": "io",
                         "bytes": 50000, "duration_ms": 3 })),
        )
        .await;
        assert_eq!(r["recorded"], *outcome == "recalled" || *outcome == "replaced", "{r}");
    }
    let r = ok(
        &agent,
        Method::POST,
        "/agent/recalled",
        Some(json!({ "path": "/srv/never/tiered.bin", "sha256": SHA, "trigger": "on_access",
                     "process": process })),
    )
    .await;
    assert_eq!(r["recorded"], false);
    let refs: Vec<Value> =
        files.iter().take(200).map(|f| json!({ "path": f["file_path"], "sha256": SHA })).collect();
    let checked =
        ok(&agent, Method::POST, "/agent/stubs/check", Some(json!({ "refs": refs }))).await;
    assert_eq!(checked["states"][1], "live");

    // A recall request for a tree (counted, then queued with the tenant's bandwidth share),
    // its job claimed ahead of any tiering job, and its per-file results.
    let mut s = ok(&t.admin, Method::GET, &format!("{tp}/planner-settings"), None).await;
    s["recall_bandwidth_limit_bytes_per_second"] = json!(10_000_000);
    ok(&t.admin, Method::PUT, &format!("{tp}/planner-settings"), Some(s)).await;
    let body = json!({ "host_id": host, "paths": ["/srv/d3"], "dry_run": true });
    let dry = ok(&t.admin, Method::POST, &format!("{tp}/recalls"), Some(body)).await;
    assert!(dry["files"].as_i64().unwrap() > 10, "{dry}");
    let body = json!({ "host_id": host, "paths": ["/srv/d3", "/srv/d4/"] });
    let made = ok(&t.admin, Method::POST, &format!("{tp}/recalls"), Some(body)).await;
    let claimed =
        ok(&agent, Method::POST, "/agent/jobs/claim", Some(json!({ "max_jobs": 1 }))).await;
    let rj = &claimed["jobs"][0];
    assert_eq!((&rj["kind"], &rj["job_id"]), (&json!("recall"), &made["jobs"][0]), "{claimed}");
    let rid = rj["job_id"].as_str().unwrap().to_owned();
    let results: Vec<Value> = rj["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| json!({ "seq": f["seq"], "outcome": "recalled", "sha256": SHA, "stored_size": 50_000 }))
        .collect();
    ok(
        &agent,
        Method::POST,
        &format!("/agent/jobs/{rid}/files"),
        Some(json!({ "results": results })),
    )
    .await;
    ok(
        &agent,
        Method::POST,
        &format!("/agent/jobs/{rid}/complete"),
        Some(json!({ "state": "succeeded" })),
    )
    .await;

    // The pages a console shows, first pages and the next ones.
    for q in [
        "/inventory/files?limit=100".to_owned(),
        "/inventory/files?limit=100&path_prefix=/srv/d3/".to_owned(),
        "/inventory/summary".to_owned(),
        "/stubs?limit=100".to_owned(),
        "/stubs?state=stubbed&limit=50".to_owned(),
        "/stubs/summary".to_owned(),
        "/jobs?limit=50".to_owned(),
        "/jobs?kind=recall&limit=50".to_owned(),
        "/recall-schedules".to_owned(),
        format!("/jobs/{jid}"),
        format!("/jobs/{jid}/files?limit=100"),
        "/plans".to_owned(),
        "/scans".to_owned(),
        "/audit?limit=100".to_owned(),
    ] {
        let page = ok(&t.admin, Method::GET, &format!("{tp}{q}"), None).await;
        if let Some(next) = page["next_cursor"].as_str() {
            let sep = if q.contains('?') { '&' } else { '?' };
            ok(&t.admin, Method::GET, &format!("{tp}{q}{sep}cursor={next}"), None).await;
        }
    }

    let after = settled(&owner).await;
    eprintln!("large tables after the hot paths (table, seq scans, rows read, rows): {after:?}");
    let scanned: Vec<&(String, i64, i64, i64)> =
        after.iter().filter(|(_, n, _, _)| *n > 0).collect();
    let statements = match (&log, scanned.is_empty()) {
        (Some(p), false) => statements_scanning(p, log_from, &scanned),
        _ => String::new(),
    };
    assert!(
        scanned.is_empty(),
        "sequential scans of large tables on a hot path (table, scans, rows read, rows): \
         {scanned:?}\nthe statements, from auto_explain:\n{statements}"
    );

    // An index scan with no condition on the index's first column walks the whole index
    // (btree checks the other columns entry by entry, and the statistics count only the
    // entries that matched): as much a full pass as a sequential scan. The plans say so.
    let Some(log) = log else {
        eprintln!("no server log (external database): the plans were not checked");
        return;
    };
    let big: Vec<(String, String, f32)> = sqlx::query_as(
        "SELECT i.relname::text,
                coalesce(a.attname::text, pg_get_indexdef(x.indexrelid, 1, true)),
                i.reltuples
           FROM pg_index x
           JOIN pg_class i ON i.oid = x.indexrelid
           JOIN pg_class t ON t.oid = x.indrelid
           LEFT JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = x.indkey[0]
          WHERE t.reltuples >= $1 AND i.reltuples >= $1",
    )
    .bind(LARGE as f32)
    .fetch_all(&owner)
    .await
    .unwrap();
    assert!(big.len() >= 5, "{big:?}");
    let walks = full_index_walks(&log, log_from, &big);
    assert!(
        walks.is_empty(),
        "index scans of large indexes without a condition on their first column:\n{}",
        walks.join("\n")
    );
}

/// Plans in `log` (from byte `from`) that scan one of the `indexes` (name, first column,
/// entries) without naming its first column in the index condition.
fn full_index_walks(
    log: &std::path::Path,
    from: u64,
    indexes: &[(String, String, f32)],
) -> Vec<String> {
    let text = std::fs::read(log).unwrap_or_default();
    let text = String::from_utf8_lossy(&text[(from as usize).min(text.len())..]).into_owned();
    let mut out = std::collections::BTreeSet::new();
    for entry in text.split("LOG:  duration:") {
        let lines: Vec<&str> = entry.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            let Some((name, first, _)) = indexes.iter().find(|(name, _, _)| {
                l.contains(&format!("Index Scan using {name} on "))
                    || l.contains(&format!("Index Only Scan using {name} on "))
                    || l.contains(&format!("Index Scan Backward using {name} on "))
                    || l.contains(&format!("Bitmap Index Scan on {name} "))
                    || l.trim_end().ends_with(&format!("Bitmap Index Scan on {name}"))
            }) else {
                continue;
            };
            let indent = l.len() - l.trim_start().len();
            let cond = lines[i + 1..]
                .iter()
                .take_while(|d| d.len() - d.trim_start().len() > indent && !d.contains("->"))
                .find(|d| d.trim_start().starts_with("Index Cond:"))
                .map(|d| d.trim().to_owned());
            let ok = cond.as_deref().is_some_and(|c| {
                c.contains(&format!("{first} "))
                    || c.contains(&format!("({first} "))
                    || c.contains(&format!(".{first} "))
            });
            if !ok {
                let q = entry
                    .split("Query Text:")
                    .nth(1)
                    .unwrap_or("")
                    .lines()
                    .take_while(|l| !l.contains("Scan") && !l.contains("->"))
                    .map(str::trim)
                    .collect::<Vec<_>>()
                    .join(" ");
                let cond = cond.map_or("no index condition", |_| "a condition on later columns");
                out.insert(format!(
                    "  {name} (first column {first}), {cond}: {}",
                    q.chars().take(300).collect::<String>()
                ));
            }
        }
    }
    out.into_iter().collect()
}

/// Turns on `auto_explain` for every statement of new sessions on `db` and ends the server's
/// sessions; returns the server's log file when it is a private test cluster's.
async fn explain_log(owner: &PgPool, db: &str) -> Option<std::path::PathBuf> {
    for set in [
        "session_preload_libraries = 'auto_explain'",
        "auto_explain.log_min_duration = 0",
        "auto_explain.log_nested_statements = on",
    ] {
        sqlx::query(&format!("ALTER DATABASE {db} SET {set}")).execute(owner).await.ok()?;
    }
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE datname = current_database() AND pid <> pg_backend_pid()
            AND backend_type = 'client backend'",
    )
    .execute(owner)
    .await
    .ok()?;
    let data: String = sqlx::query_scalar("SHOW data_directory").fetch_one(owner).await.ok()?;
    let log = std::path::Path::new(&data).with_extension("log");
    log.is_file().then_some(log)
}

/// The query texts of the plans in `log` (from byte `from`) that scan one of `tables`.
fn statements_scanning(
    log: &std::path::Path,
    from: u64,
    tables: &[&(String, i64, i64, i64)],
) -> String {
    let text = std::fs::read(log).unwrap_or_default();
    let text = String::from_utf8_lossy(&text[(from as usize).min(text.len())..]).into_owned();
    let mut out = std::collections::BTreeSet::new();
    for entry in text.split("LOG:  duration:") {
        for (t, _, _, _) in tables {
            let name = t.rsplit('.').next().unwrap_or(t);
            if entry.contains(&format!("Seq Scan on {name} "))
                || entry.contains(&format!("Seq Scan on {name}\n"))
            {
                let q = entry
                    .split("Query Text:")
                    .nth(1)
                    .unwrap_or(entry)
                    .lines()
                    .take_while(|l| !l.trim_start().starts_with("->") && !l.contains("Scan on"))
                    .map(str::trim)
                    .collect::<Vec<_>>()
                    .join(" ");
                out.insert(format!("  [{name}] {}", q.chars().take(400).collect::<String>()));
            }
        }
    }
    out.into_iter().collect::<Vec<_>>().join("\n")
}
