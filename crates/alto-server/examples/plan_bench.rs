//! Planner benchmark: an inventory of N files and 20 rules; a full planning run (candidate
//! selection in PostgreSQL, confirmation by the Rust evaluator, job creation) and a preview
//! of one draft rule, side by side with the physical baseline of one sequential pass over
//! the same inventory (`SELECT count(*), sum(file_size) … WHERE last_accessed < $1`) in the
//! same run.
//!
//! ```text
//! cargo run --release -p alto-server --example plan_bench -- [--rows N] [--small]
//! ```
//! Default N = 1,000,000; `--small` = 20,000 (for CI). Uses a private throwaway cluster (or
//! `ALTO_TEST_DATABASE_URL`). Prints a Markdown table; never asserts absolute times.

use std::time::{Duration, Instant};

use alto_server::services::planner::{self, RunRequest, Trigger};
use alto_test_support::TestApp;
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

const EXT: [&str; 12] = [
    ".pdf", ".docx", ".xlsx", ".jpg", ".png", ".mp4", ".log", ".csv", ".txt", ".zip", ".iso",
    ".bak",
];

fn inventory_copy(n: usize, customer: Uuid, host: Uuid, now_us: i64) -> Vec<u8> {
    use std::io::Write as _;
    let mut out = Vec::with_capacity(n * 200);
    for i in 0..n {
        let ext = EXT[(i * 31) % EXT.len()];
        let path = format!(
            "/srv/share{}/project{:03}/dir{:04}/file_{i:07}{ext}",
            i % 7,
            (i * 7919) % 997,
            (i * 104_729) % 4096
        );
        let size = ((i as u64 * 2_654_435_761) % 50_000_000) + 1;
        let day = 86_400_000_000i64;
        let mtime = now_us - ((i as i64 * 7_777) % 2000 + 1) * day;
        let atime = mtime + ((i as i64 * 13) % 30) * day / 2;
        let atime = atime.min(now_us - day);
        let ts = |us: i64| {
            chrono::DateTime::from_timestamp_micros(us).map(|t| t.to_rfc3339()).unwrap_or_default()
        };
        let _ = writeln!(
            out,
            "{}\t{customer}\t{host}\t{path}\t{size}\t{}\t{}\t{ext}\tuser{}\t{}\t{}",
            Uuid::now_v7(),
            ts(mtime),
            ts(atime),
            i % 20,
            if i % 50 == 0 { 0o100666 } else { 0o100644 },
            i,
        );
    }
    out
}

async fn api(c: &alto_client::Client, m: Method, path: &str, body: Value) -> Value {
    let r = c.request(m, &format!("/api/v1{path}")).json(&body).send().await.expect("request");
    let st = r.status();
    let v: Value = r.json().await.expect("json");
    assert!(st.is_success(), "{path}: {st} {v}");
    v
}

fn rules() -> Vec<Value> {
    let tier = |t: &str| json!({ "type": "tier", "target": t });
    let ex = json!({ "type": "exclude" });
    let mut v = vec![
        json!({ "name": "keep-share0-project000", "priority": 10, "scope": { "path_prefixes": ["/srv/share0/project000"] }, "action": ex }),
        json!({ "name": "keep-recent-docs", "priority": 20, "conditions": { "extensions": ["docx", "xlsx"], "accessed_newer_than_days": 365 }, "action": ex }),
        json!({ "name": "keep-world-writable", "priority": 30, "conditions": { "permissions": { "all_of": "0002" } }, "action": ex }),
        json!({ "name": "keep-legal", "priority": 40, "conditions": { "tags": [{ "key": "legal", "value": "hold" }] }, "action": ex }),
        json!({ "name": "keep-temp", "priority": 50, "conditions": { "path_regex": "/dir00[0-9][0-9]/" }, "action": ex }),
        json!({ "name": "isos-30d", "priority": 60, "conditions": { "extensions": ["iso", "zip"], "accessed_older_than_days": 30, "min_size_bytes": 1048576 }, "action": tier("archive") }),
        json!({ "name": "videos-90d", "priority": 70, "conditions": { "path_globs": ["*.mp4"], "accessed_older_than_days": 90 }, "action": tier("archive") }),
        json!({ "name": "logs-180d", "priority": 80, "conditions": { "extensions": ["log"], "modified_older_than_days": 180 }, "action": tier("default") }),
        json!({ "name": "share6-2y", "priority": 90, "conditions": { "path_globs": ["/srv/share6/**"], "accessed_older_than_days": 730 }, "action": tier("default") }),
        json!({ "name": "owner-user7", "priority": 100, "conditions": { "owners": ["user7"], "accessed_older_than_days": 400 }, "action": tier("default") }),
    ];
    // Ten more specific rules that rarely match (a realistic long tail).
    for i in 0..10 {
        v.push(json!({
            "name": format!("project{:03}-cold", 900 + i), "priority": 200 + i * 10,
            "scope": { "path_prefixes": [format!("/srv/share{}/project{:03}", i % 7, 900 + i)] },
            "conditions": { "accessed_older_than_days": 60, "exclude_extensions": ["txt"] },
            "action": tier("default"),
        }));
    }
    v
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mut n = 1_000_000usize;
    if args.iter().any(|a| a == "--small") {
        n = 20_000;
    }
    if let Some(i) = args.iter().position(|a| a == "--rows") {
        n = args.get(i + 1).and_then(|v| v.parse().ok()).expect("--rows N");
    }
    let app = TestApp::spawn_with(|c| c.planner.workers = 0).await;
    let t = app.new_tenant("Bench").await;
    let (host, _agent) = app.enrolled_host(&t, "bench-host").await;
    let now = app.clock_now();
    eprintln!("loading {n} inventory rows by COPY…");
    let owner = app.db.owner_pool().await;
    {
        let text = inventory_copy(n, t.id, host, now.timestamp_micros());
        let mut conn = owner.acquire().await.expect("conn");
        let mut copy = conn
            .copy_in_raw(
                "COPY file_inventory (id, customer_id, host_id, file_path, file_size, last_modified,
                 last_accessed, file_extension, owner, mode, inode) FROM STDIN",
            )
            .await
            .expect("copy");
        for chunk in text.chunks(1 << 20) {
            copy.send(chunk).await.expect("send");
        }
        copy.finish().await.expect("finish");
        sqlx::query("ANALYZE file_inventory").execute(&mut *conn).await.expect("analyze");
        sqlx::query("VACUUM file_inventory").execute(&mut *conn).await.expect("vacuum");
    }
    let tp = format!("/tenants/{}", t.id);
    api(&t.admin, Method::POST, &format!("{tp}/storage-targets"),
        json!({ "name": "archive", "kind": "s3", "location": format!("s3://customer-{}-tiered", t.id),
            // Never contacted: the planner only names the target.
            "config": { "endpoint": "http://127.0.0.1:9", "allow_http": true, "path_style": true,
                "access_key_id": "bench", "secret_access_key": "bench-secret" } })).await;
    api(
        &t.admin,
        Method::POST,
        &format!("{tp}/tags"),
        json!({ "path": "/srv/share3/project100", "key": "legal", "value": "hold" }),
    )
    .await;
    for r in rules() {
        api(&t.admin, Method::POST, &format!("{tp}/rules"), r).await;
    }

    // Baseline: one sequential pass over the inventory with a bound cutoff.
    let cutoff = now - chrono::Duration::days(30);
    let mut scan = Duration::MAX;
    for _ in 0..3 {
        let t0 = Instant::now();
        let _: (i64, Option<i64>) = sqlx::query_as(
            "SELECT count(*), sum(file_size)::bigint FROM file_inventory
              WHERE customer_id = $1 AND host_id = $2 AND deleted_at IS NULL AND last_accessed < $3",
        )
        .bind(t.id)
        .bind(host)
        .bind(cutoff)
        .fetch_one(&owner)
        .await
        .expect("baseline");
        scan = scan.min(t0.elapsed());
    }

    // Preview of one draft rule (through the API, as a console would).
    let draft = json!({ "draft": { "name": "draft-pdfs", "priority": 65,
        "conditions": { "extensions": ["pdf"], "accessed_older_than_days": 120 },
        "action": { "type": "tier", "target": "default" } } });
    let mut preview = Duration::MAX;
    let mut pv = Value::Null;
    for _ in 0..3 {
        let t0 = Instant::now();
        pv = api(&t.admin, Method::POST, &format!("{tp}/rules/preview"), draft.clone()).await;
        preview = preview.min(t0.elapsed());
    }

    // The full planning run (once: it creates the jobs).
    let req = RunRequest::new(t.id, Trigger::Manual);
    let t0 = Instant::now();
    let out = planner::run(&app.state, &req).await.expect("plan");
    let plan = t0.elapsed();
    let s = &out.stats;
    // Confirm what was written.
    let (jobs, files): (i64, i64) = sqlx::query_as(
        "SELECT count(*), coalesce(sum(file_count), 0)::bigint FROM jobs WHERE plan_id = $1",
    )
    .bind(out.plan_id)
    .fetch_one(&owner)
    .await
    .expect("count");
    assert_eq!((jobs as u64, files as u64), (s.jobs, s.files));
    assert_eq!(s.mismatches, 0, "SQL and evaluator disagreed");

    if args.iter().any(|a| a == "--explain") {
        // The steady-state query (after the first run filled job_files).
        let mut tx = app
            .state
            .db
            .begin(alto_db::TenantCtx::Tenant(alto_model::CustomerId(t.id)))
            .await
            .expect("tx");
        let set = planner::load(&mut tx, t.id).await.expect("load");
        let hosts = alto_db::planner::plan_hosts(&mut tx, t.id).await.expect("hosts");
        let hf = alto_rules::HostFacts { id: host, groups: &hosts[0].groups };
        let (rules, _) = planner::host_rules(&set.rules, &hf);
        let eligible: Vec<usize> = (0..rules.len()).filter(|i| rules[*i].is_tier()).collect();
        let es = set.eval_settings(now);
        let sel = alto_db::planner::Selection {
            customer_id: t.id,
            host_id: host,
            rules: &rules,
            eligible: &eligible,
            now,
            safety_cutoff: es.safety_cutoff(),
            recall_retention_days: es.recall_retention_days,
            under: None,
            skip_in_jobs: true,
            tags: Some(&set.tag_list),
        };
        alto_db::planner::tune(&mut tx).await.expect("tune");
        eprintln!(
            "{}",
            alto_db::planner::explain_candidates(&mut tx, &sel).await.expect("explain")
        );
    }

    // Steady state: the same inventory planned again; every candidate is in a live job, so
    // the run selects, finds nothing new and writes only the (empty) plan.
    let t1 = Instant::now();
    let again = planner::run(&app.state, &req).await.expect("plan again");
    let replan = t1.elapsed();
    assert_eq!(again.stats.files, 0);

    let ratio = |d: Duration| d.as_secs_f64() / scan.as_secs_f64();
    println!("| step ({n} files, 20 rules) | seconds | files/s | vs one scan |");
    println!("|---|---:|---:|---:|");
    println!(
        "| baseline: one sequential pass (count, sum where accessed < cutoff) | {:.3} | {:.0} | 1.00× |",
        scan.as_secs_f64(),
        n as f64 / scan.as_secs_f64()
    );
    println!(
        "| preview of one draft rule (HTTP, {} candidates) | {:.3} | {:.0} | {:.2}× |",
        pv["files"],
        preview.as_secs_f64(),
        n as f64 / preview.as_secs_f64(),
        ratio(preview)
    );
    println!(
        "| full planning run: select {} · confirm {} · {} jobs of {} files | {:.3} | {:.0} | {:.2}× |",
        s.selected,
        s.confirmed,
        s.jobs,
        s.files,
        plan.as_secs_f64(),
        n as f64 / plan.as_secs_f64(),
        ratio(plan)
    );
    println!(
        "| re-plan, every candidate already in a live job (steady state) | {:.3} | {:.0} | {:.2}× |",
        replan.as_secs_f64(),
        n as f64 / replan.as_secs_f64(),
        ratio(replan)
    );
    println!();
    println!("plan stats: {}", serde_json::to_string(&out.stats).unwrap_or_default());
    println!("re-plan stats: {}", serde_json::to_string(&again.stats).unwrap_or_default());
    owner.close().await;
    app.shutdown().await;
}
