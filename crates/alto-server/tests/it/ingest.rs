//! Scan upload and ingest: parts, formats, atomicity, re-scans that write only what changed,
//! deletion marking, and every kind of bad batch.

use alto_batch::{Format, ScanRecord};
use alto_client::Client;
use alto_model::Role;
use alto_test_support::{batch_bytes, file_record, TestApp, TestTenant};
use uuid::Uuid;

const PARQUET: &str = "application/vnd.apache.parquet";

fn now_us(app: &TestApp) -> i64 {
    app.clock_now().timestamp_micros()
}

fn tree(app: &TestApp, n: usize) -> Vec<ScanRecord> {
    let now = now_us(app);
    let mut v: Vec<ScanRecord> = (0..n)
        .map(|i| {
            file_record(
                format!("/srv/share/dir{}/file{i}.dat", i % 7).as_bytes(),
                1000 + i as u64,
                now,
                (i % 800) as i64,
            )
        })
        .collect();
    // Hostile names ride along.
    v.push(file_record(b"/srv/share/with,comma \"quote\"\nnewline.txt", 11, now, 3));
    v.push(file_record(b"/srv/share/latin1-\xe9t\xe9.doc", 12, now, 400));
    v.push(file_record(b"/srv/share/back\\slash\\x41", 13, now, 4000));
    let mut long = b"/srv/deep/".to_vec();
    while long.len() < 4080 {
        long.extend_from_slice(b"abcdefgh/");
    }
    long.extend_from_slice(b"end.PDF");
    v.push(file_record(&long, 14, now, 10));
    v
}

async fn upload(agent: &Client, scan: Uuid, parts: &[(Format, &[ScanRecord])], kind: &str) {
    for (i, (f, recs)) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let r = agent
            .upload_scan_part(scan, i as i32, last, kind, f.content_type(), batch_bytes(*f, recs))
            .await
            .unwrap();
        assert_eq!(r.status, if last { "queued" } else { "receiving" });
        assert_eq!(r.rows, recs.len() as u64);
    }
}

async fn all_paths(t: &TestTenant, host: Uuid) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut q = vec![("host_id", host.to_string()), ("limit", "1000".to_string())];
        if let Some(c) = &cursor {
            q.push(("cursor", c.clone()));
        }
        let page = t.admin.inventory_files(t.id, &q).await.unwrap();
        out.extend(page.items.iter().map(|f| (f.file_path.clone(), f.path_escaped)));
        cursor = page.next_cursor;
        if cursor.is_none() {
            return out;
        }
    }
}

#[tokio::test]
async fn a_multi_part_scan_becomes_the_inventory() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("Acme").await;
    let (host, agent) = app.enrolled_host(&t, "fs1").await;
    let recs = tree(&app, 2500);
    let scan = Uuid::now_v7();
    let (a, rest) = recs.split_at(1000);
    let (b, c) = rest.split_at(1000);
    upload(
        &agent,
        scan,
        &[(Format::Parquet, a), (Format::CsvGzip, b), (Format::CsvZstd, c)],
        "full",
    )
    .await;
    let s = app.wait_for_scan(&t, scan).await;
    assert_eq!(s.status, "completed", "{s:?}");
    assert_eq!(s.stats["inserted"], recs.len());
    assert_eq!(s.parts_expected, Some(3));

    // Every path, hostile ones included, comes back exactly (decoded to the same bytes).
    let mut got: Vec<Vec<u8>> = all_paths(&t, host)
        .await
        .into_iter()
        .map(|(p, e)| alto_batch::decode_path(&p, e).unwrap())
        .collect();
    let mut want: Vec<Vec<u8>> = recs.iter().map(|r| r.path.clone()).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);

    let sum = t.admin.inventory_summary(t.id, Some(host)).await.unwrap();
    assert_eq!(sum.files, recs.len() as i64);
    assert_eq!(sum.bytes, recs.iter().map(|r| r.size as i64).sum::<i64>());
    assert!(
        sum.by_extension.iter().any(|b| b.key == ".dat" && b.files == 2500),
        "{:?}",
        sum.by_extension
    );
    assert!(sum.by_extension.iter().any(|b| b.key == ".pdf"), "extensions are lower-cased");
    assert_eq!(sum.accessed_age.iter().map(|b| b.files).sum::<i64>(), sum.files);
    assert!(sum.accessed_age.iter().any(|b| b.key == "5y+"));
    let dirs = &sum.largest_directories;
    assert!(dirs[0].key.starts_with("/srv/share/dir"), "{dirs:?}");
    assert!(dirs.windows(2).all(|w| w[0].bytes >= w[1].bytes), "largest first: {dirs:?}");
    let h = t.admin.get_host(t.id, host).await.unwrap();
    assert_eq!((h.file_count, h.total_bytes), (sum.files, sum.bytes));
    assert_eq!(h.last_scan_at, Some(app.clock_now()));
    // Filters.
    let old = t
        .admin
        .inventory_files(
            t.id,
            &[
                ("accessed_before", (app.clock_now() - chrono::Duration::days(700)).to_rfc3339()),
                ("limit", "1000".into()),
            ],
        )
        .await
        .unwrap();
    assert!(
        !old.items.is_empty()
            && old
                .items
                .iter()
                .all(|f| f.last_accessed.unwrap() < app.clock_now() - chrono::Duration::days(700))
    );
    let pdf = t.admin.inventory_files(t.id, &[("extension", ".PDF".into())]).await.unwrap();
    assert_eq!(pdf.items.len(), 1);
}

#[tokio::test]
async fn a_rescan_writes_only_what_changed_and_marks_deletions() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("Acme").await;
    let (host, agent) = app.enrolled_host(&t, "fs1").await;
    let mut recs = tree(&app, 500);
    let first = Uuid::now_v7();
    upload(&agent, first, &[(Format::Parquet, &recs)], "full").await;
    assert_eq!(app.wait_for_scan(&t, first).await.status, "completed");

    // The stub registry's state must survive scans.
    let pool = app.db.owner_pool().await;
    sqlx::query("UPDATE file_inventory SET is_stubbed = true, tiered_location = 'obj-1' WHERE file_path = '/srv/share/dir1/file1.dat'")
        .execute(&pool).await.unwrap();
    let before: Vec<(String, String)> =
        sqlx::query_as("SELECT file_path, xmin::text FROM file_inventory ORDER BY file_path")
            .fetch_all(&pool)
            .await
            .unwrap();

    app.clock.advance(chrono::Duration::hours(1));
    recs[0].size += 1; // changed
    let removed = recs.remove(5); // deleted
    let now = now_us(&app);
    recs.push(file_record(b"/srv/share/new-file.txt", 1, now, 0)); // new
    let second = Uuid::now_v7();
    upload(&agent, second, &[(Format::Parquet, &recs)], "full").await;
    let s = app.wait_for_scan(&t, second).await;
    assert_eq!(s.status, "completed", "{s:?}");
    assert_eq!(
        (s.stats["inserted"].as_i64(), s.stats["updated"].as_i64(), s.stats["deleted"].as_i64()),
        (Some(1), Some(1), Some(1)),
        "{:?}",
        s.stats
    );
    assert_eq!(s.stats["unchanged"].as_i64(), Some(recs.len() as i64 - 2));

    let after: std::collections::HashMap<String, String> =
        sqlx::query_as::<_, (String, String)>("SELECT file_path, xmin::text FROM file_inventory")
            .fetch_all(&pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    let changed = String::from_utf8(recs[0].path.clone()).unwrap();
    let gone = String::from_utf8(removed.path.clone()).unwrap();
    let rewritten: Vec<&String> =
        before.iter().filter(|(p, x)| after.get(p) != Some(x)).map(|(p, _)| p).collect();
    let mut expect = vec![&changed, &gone];
    expect.sort();
    let mut rewritten = rewritten;
    rewritten.sort();
    assert_eq!(rewritten, expect, "only the changed and the deleted rows were written");
    let stubbed: (bool, Option<String>) = sqlx::query_as("SELECT is_stubbed, tiered_location FROM file_inventory WHERE file_path = '/srv/share/dir1/file1.dat'")
        .fetch_one(&pool).await.unwrap();
    assert_eq!(stubbed, (true, Some("obj-1".into())));
    let sum = t.admin.inventory_summary(t.id, Some(host)).await.unwrap();
    assert_eq!(sum.files, recs.len() as i64, "deleted file no longer counted");
    let deleted = t
        .admin
        .inventory_files(t.id, &[("include_deleted", "true".into()), ("path_prefix", gone.clone())])
        .await
        .unwrap();
    assert!(deleted.items[0].deleted_at.is_some());

    // A partial scan never deletes.
    let third = Uuid::now_v7();
    upload(&agent, third, &[(Format::Csv, &recs[..3])], "partial").await;
    let s = app.wait_for_scan(&t, third).await;
    assert_eq!(s.stats["deleted"].as_i64(), Some(0));
    assert_eq!(t.admin.inventory_summary(t.id, Some(host)).await.unwrap().files, recs.len() as i64);
}

async fn raw(
    agent: &Client,
    q: &str,
    ct: &str,
    sha: Option<&str>,
    body: Vec<u8>,
) -> (u16, serde_json::Value) {
    use sha2::Digest as _;
    let sha = sha.map(str::to_owned).unwrap_or_else(|| hex::encode(sha2::Sha256::digest(&body)));
    let r = agent
        .request(reqwest::Method::POST, &format!("/api/v1/scan-results?{q}"))
        .header("content-type", ct)
        .header("x-alto-sha256", sha)
        .body(body)
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or_default())
}

#[tokio::test]
async fn bad_batches_are_refused_with_the_part_and_row_and_change_nothing() {
    let app = TestApp::spawn_with(|c| c.ingest.max_part_bytes = 256 * 1024).await;
    let t = app.new_tenant("Acme").await;
    let (_, agent) = app.enrolled_host(&t, "fs1").await;
    let recs = tree(&app, 50);
    let good = batch_bytes(Format::Parquet, &recs);
    let scan = Uuid::now_v7();
    let q = |part: i32, last: bool| format!("scan_id={scan}&part={part}&last={last}");
    let header =
        "file_path,file_size,last_modified,last_accessed,file_extension,permissions,owner,hash\n";

    let zeros = "0".repeat(64);
    let cases: Vec<(String, &str, Option<&str>, Vec<u8>, u16, &str, &str)> = vec![
        (q(0, true), PARQUET, None, good[..good.len() / 2].to_vec(), 400, "invalid_batch", "part 0"),
        (q(0, true), PARQUET, None, b"not parquet at all".to_vec(), 400, "invalid_batch", "Parquet"),
        (q(0, true), "text/csv", None, format!("{header}/a,-1,2025-01-01T00:00:00Z,2025-01-01T00:00:00Z,,,u,\n").into_bytes(), 400, "invalid_batch", "row 1"),
        (q(0, true), "text/csv", None, format!("{header}/a,1,2025-01-01T00:00:00Z,2025-01-01T00:00:00Z,,,u,\n/b,1,13/13/2025,2025-01-01T00:00:00Z,,,u,\n").into_bytes(), 400, "invalid_batch", "row 2"),
        (q(0, true), "text/csv", None, format!("{header}/a,1,2025-01-01T00:00:00Z,2025-01-01T00:00:00Z,,,u,\n/a,2,2025-01-01T00:00:00Z,2025-01-01T00:00:00Z,,,u,\n").into_bytes(), 400, "invalid_batch", "twice"),
        (q(0, true), "text/csv", None, b"a,b,c\n1,2,3\n".to_vec(), 400, "invalid_batch", "header"),
        (q(0, true), PARQUET, Some(zeros.as_str()), good.clone(), 400, "checksum_mismatch", "SHA-256"),
        (q(0, true), "application/json", None, good.clone(), 415, "unsupported_media_type", "Content-Type"),
        (q(0, true), PARQUET, None, vec![0u8; 300 * 1024], 413, "payload_too_large", "part"),
        ("scan_id=nope&part=0".to_string(), PARQUET, None, good.clone(), 400, "invalid_query", ""),
        (format!("scan_id={scan}&part=-1"), PARQUET, None, good.clone(), 400, "invalid_query", ""),
        (format!("scan_id={scan}&part=0&customer_id={}", t.id), PARQUET, None, good.clone(), 400, "invalid_query", ""),
        // Part 1 marked last while part 0 never arrived.
        (q(1, true), PARQUET, None, good.clone(), 400, "invalid_batch", "missing"),
    ];
    for (query, ct, sha, body, status, code, needle) in cases {
        let (s, b) = raw(&agent, &query, ct, sha, body).await;
        assert_eq!((s, b["error"]["code"].as_str()), (status, Some(code)), "{query} {ct}: {b}");
        assert!(b["error"]["message"].as_str().unwrap_or("").contains(needle), "{query}: {b}");
    }
    // A user session is not a host credential.
    let (s, _) = raw(&t.admin, &q(0, true), PARQUET, None, good.clone()).await;
    assert_eq!(s, 401);

    let pool = app.db.owner_pool().await;
    let n: i64 =
        sqlx::query_scalar("SELECT count(*) FROM file_inventory").fetch_one(&pool).await.unwrap();
    let staged: i64 = sqlx::query_scalar("SELECT count(*) FROM scan_staging.rows")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!((n, staged), (0, 0), "nothing from refused parts was stored");

    // Parts: a retry of the same part is acknowledged; different content is a conflict.
    let (s, b) = raw(&agent, &q(0, false), PARQUET, None, good.clone()).await;
    assert_eq!(s, 202, "{b}");
    let (s, b) = raw(&agent, &q(0, false), PARQUET, None, good.clone()).await;
    assert_eq!((s, b["duplicate"].as_bool()), (200, Some(true)), "{b}");
    let other = batch_bytes(Format::Parquet, &recs[..10]);
    let (s, b) = raw(&agent, &q(0, false), PARQUET, None, other).await;
    assert_eq!((s, b["error"]["code"].as_str()), (409, Some("conflict")), "{b}");
    // A path repeated across parts fails the scan at its last part; nothing reaches the inventory.
    let (s, b) =
        raw(&agent, &q(1, true), PARQUET, None, batch_bytes(Format::Parquet, &recs[..1])).await;
    assert_eq!((s, b["error"]["code"].as_str()), (400, Some("invalid_batch")), "{b}");
    assert!(b["error"]["message"].as_str().unwrap().contains("more than once"), "{b}");
    assert_eq!(t.admin.get_scan(t.id, scan).await.unwrap().status, "failed");
    let n: i64 =
        sqlx::query_scalar("SELECT count(*) FROM file_inventory").fetch_one(&pool).await.unwrap();
    assert_eq!(n, 0);
    let (s, _) =
        raw(&agent, &format!("scan_id={scan}&part=2&last=true"), PARQUET, None, good.clone()).await;
    assert_eq!(s, 409, "a failed scan takes no more parts");
}

/// A decompression bomb: a small `text/csv+gzip` part that expands far beyond the limit on
/// decompressed content is refused with `413 payload_too_large` (decompression stops at the
/// limit; see alto-batch's `decompression_stops_at_the_limit`), and nothing is stored. A part
/// that fits is accepted.
#[tokio::test]
async fn a_decompression_bomb_is_refused_and_changes_nothing() {
    const LIMIT: usize = 4 * 1024 * 1024;
    let app = TestApp::spawn_with(|c| c.ingest.max_decoded_part_bytes = LIMIT).await;
    let t = app.new_tenant("Acme").await;
    let (_, agent) = app.enrolled_host(&t, "fs1").await;
    let now = now_us(&app);
    let recs: Vec<ScanRecord> = (0..300_000)
        .map(|i| file_record(format!("/srv/bomb/{i:09}.dat").as_bytes(), 1, now, 100))
        .collect();
    let bomb = batch_bytes(Format::CsvGzip, &recs);
    let plain = batch_bytes(Format::Csv, &recs);
    assert!(plain.len() > 8 * LIMIT && bomb.len() < LIMIT, "{} -> {}", bomb.len(), plain.len());
    let scan = Uuid::now_v7();
    let (s, b) =
        raw(&agent, &format!("scan_id={scan}&part=0&last=true"), "text/csv+gzip", None, bomb).await;
    assert_eq!((s, b["error"]["code"].as_str()), (413, Some("payload_too_large")), "{b}");
    let msg = b["error"]["message"].as_str().unwrap();
    assert!(msg.contains("part 0") && msg.contains("max_decoded_part_bytes"), "{msg}");
    let pool = app.db.owner_pool().await;
    let count = |q: &'static str| {
        let pool = pool.clone();
        async move { sqlx::query_scalar::<_, i64>(q).fetch_one(&pool).await.unwrap() }
    };
    assert_eq!(count("SELECT count(*) FROM scans").await, 0, "no scan was created");
    assert_eq!(count("SELECT count(*) FROM scan_staging.rows").await, 0);
    assert_eq!(count("SELECT count(*) FROM file_inventory").await, 0);
    // The same kind of part within the limit goes through.
    upload(&agent, Uuid::now_v7(), &[(Format::CsvGzip, &recs[..10_000])], "full").await;
}

#[tokio::test]
async fn scans_belong_to_their_host_and_tenant() {
    let app = TestApp::spawn().await;
    let a = app.new_tenant("Alpha").await;
    let b = app.new_tenant("Beta").await;
    let (_, a1) = app.enrolled_host(&a, "a1").await;
    let (_, a2) = app.enrolled_host(&a, "a2").await;
    let (_, b1) = app.enrolled_host(&b, "b1").await;
    let recs = tree(&app, 5);
    let scan = Uuid::now_v7();
    a1.upload_scan_part(scan, 0, false, "full", PARQUET, batch_bytes(Format::Parquet, &recs))
        .await
        .unwrap();
    // Another host of the same tenant, and a host of another tenant, cannot add to it.
    let e = a2
        .upload_scan_part(scan, 1, true, "full", PARQUET, batch_bytes(Format::Parquet, &recs))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("not_found"));
    let e = b1
        .upload_scan_part(scan, 1, true, "full", PARQUET, batch_bytes(Format::Parquet, &recs))
        .await
        .unwrap_err();
    assert!(matches!(e.code(), Some("not_found" | "conflict")), "{e}");
    assert_eq!(b.admin.get_scan(b.id, scan).await.unwrap_err().code(), Some("not_found"));
    assert_eq!(b.admin.get_scan(a.id, scan).await.unwrap_err().code(), Some("not_found"));
    a1.upload_scan_part(scan, 1, true, "full", PARQUET, batch_bytes(Format::Parquet, &[]))
        .await
        .unwrap();
    assert_eq!(app.wait_for_scan(&a, scan).await.status, "completed");
    // B sees none of A's inventory; A's support staff can read it.
    assert_eq!(b.admin.inventory_summary(a.id, None).await.unwrap_err().code(), Some("not_found"));
    assert_eq!(b.admin.inventory_summary(b.id, None).await.unwrap().files, 0);
    let sup = app.user_with(&a, "sup", &[Role::Support]).await;
    assert_eq!(sup.inventory_summary(a.id, None).await.unwrap().files, recs.len() as i64);
    let log = a
        .admin
        .list_audit(
            alto_client::Scope::Tenant(a.id),
            &alto_client::AuditQuery { action: Some("scan.".into()), ..Default::default() },
        )
        .await
        .unwrap();
    let actions: Vec<_> = log.items.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, vec!["scan.ingest", "scan.submit"]);
}

#[tokio::test]
async fn staged_rows_expire_by_day_without_touching_the_inventory() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("Acme").await;
    let (_, agent) = app.enrolled_host(&t, "fs1").await;
    let recs = tree(&app, 20);
    let scan = Uuid::now_v7();
    upload(&agent, scan, &[(Format::Parquet, &recs)], "full").await;
    assert_eq!(app.wait_for_scan(&t, scan).await.status, "completed");
    let db = app.db.app_db().await;
    let staged_on = app.clock_now().date_naive();
    // Keeping everything from the staging day on drops nothing; a later cut-off drops it.
    let mut tx = db.begin(alto_db::TenantCtx::Platform).await.unwrap();
    assert_eq!(alto_db::scans::drop_staging_before(&mut tx, staged_on).await.unwrap(), 0);
    let later = staged_on + chrono::Duration::days(8);
    assert_eq!(alto_db::scans::drop_staging_before(&mut tx, later).await.unwrap(), 1);
    tx.commit().await.unwrap();
    let pool = app.db.owner_pool().await;
    let staged: i64 = sqlx::query_scalar("SELECT count(*) FROM scan_staging.rows")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(staged, 0);
    assert_eq!(t.admin.inventory_summary(t.id, None).await.unwrap().files, recs.len() as i64);
    // The app role can do nothing else to staging but insert and read.
    let mut tx = db.begin(alto_db::TenantCtx::Platform).await.unwrap();
    let err = sqlx::query("DROP TABLE scan_staging.rows").execute(&mut *tx).await.unwrap_err();
    assert!(err.to_string().contains("must be owner"), "{err}");
}
