//! Ingest benchmark: a first scan and a 1%-changed re-scan of N files, timed from upload
//! start to inventory committed, side by side with a raw `COPY` of the same rows into an
//! unlogged table on the same PostgreSQL in the same run.
//!
//! ```text
//! cargo run --release -p alto-server --example ingest_bench -- [--rows N] [--small]
//! ```
//! Default N = 1,000,000; `--small` = 20,000 (for CI). Uses a private throwaway cluster (or
//! `ALTO_TEST_DATABASE_URL`). Prints a Markdown table; never asserts absolute times.

use std::time::{Duration, Instant};

use alto_batch::{Format, ScanRecord};
use alto_test_support::{batch_bytes, file_record, TestApp};
use uuid::Uuid;

const PART_ROWS: usize = 100_000;

fn records(n: usize, now_us: i64) -> Vec<ScanRecord> {
    const EXT: [&str; 12] =
        ["pdf", "docx", "xlsx", "jpg", "png", "mp4", "log", "csv", "txt", "zip", "iso", "bak"];
    (0..n)
        .map(|i| {
            let path = format!(
                "/srv/share{}/project{:03}/dir{:04}/file_{i:07}.{}",
                i % 7,
                (i * 7919) % 997,
                (i * 104_729) % 4096,
                EXT[(i * 31) % EXT.len()]
            );
            file_record(
                path.as_bytes(),
                ((i as u64 * 2_654_435_761) % 50_000_000) + 1,
                now_us,
                (i % 2000) as i64,
            )
        })
        .collect()
}

async fn run_scan(
    t: &alto_test_support::TestTenant,
    agent: &alto_client::Client,
    parts: &[Vec<u8>],
) -> (Duration, serde_json::Value) {
    let scan = Uuid::now_v7();
    let start = Instant::now();
    for (i, body) in parts.iter().enumerate() {
        agent
            .upload_scan_part(
                scan,
                i as i32,
                i + 1 == parts.len(),
                "full",
                Format::Parquet.content_type(),
                body.clone(),
            )
            .await
            .expect("upload");
    }
    eprintln!("  uploaded and staged in {:.2} s", start.elapsed().as_secs_f64());
    loop {
        let s = t.admin.get_scan(t.id, scan).await.expect("scan");
        match s.status.as_str() {
            "completed" => return (start.elapsed(), s.stats),
            "failed" => panic!("scan failed: {:?}", s.error),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

fn copy_text(recs: &[ScanRecord]) -> Vec<u8> {
    use std::io::Write as _;
    let mut out = Vec::with_capacity(recs.len() * 160);
    for r in recs {
        let t = chrono::DateTime::from_timestamp_micros(r.mtime_us)
            .map(|t| t.to_rfc3339())
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "\"{}\",{},{t},{t},{},{},{}",
            String::from_utf8_lossy(&r.path),
            r.size,
            r.extension(),
            r.permissions(),
            r.owner
        );
    }
    out
}

async fn raw_copy(url: &str, text: &[u8]) -> Duration {
    let pool = sqlx::PgPool::connect(url).await.expect("owner pool");
    sqlx::query("DROP TABLE IF EXISTS bench_copy").execute(&pool).await.expect("drop");
    sqlx::query("CREATE UNLOGGED TABLE bench_copy (path text, size bigint, mtime timestamptz, atime timestamptz, ext text, perms text, owner text)")
        .execute(&pool)
        .await
        .expect("create");
    let mut conn = pool.acquire().await.expect("conn");
    let start = Instant::now();
    let mut copy = conn.copy_in_raw("COPY bench_copy FROM STDIN (FORMAT csv)").await.expect("copy");
    for chunk in text.chunks(1 << 20) {
        copy.send(chunk).await.expect("send");
    }
    copy.finish().await.expect("finish");
    start.elapsed()
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
    let app = TestApp::spawn_with(|c| c.ingest.max_part_bytes = 256 * 1024 * 1024).await;
    let t = app.new_tenant("Bench").await;
    let (_, agent) = app.enrolled_host(&t, "bench-host").await;
    let now = app.clock_now().timestamp_micros();
    eprintln!("generating {n} records and Parquet parts of {PART_ROWS} rows…");
    let mut recs = records(n, now);
    let parts: Vec<Vec<u8>> =
        recs.chunks(PART_ROWS).map(|c| batch_bytes(Format::Parquet, c)).collect();
    let text = copy_text(&recs);
    {
        let t0 = Instant::now();
        let mut k = 0u64;
        for p in &parts {
            k += alto_batch::for_each(std::io::Cursor::new(p.clone()), Format::Parquet, |_| Ok(()))
                .expect("parse");
        }
        eprintln!("  parsing {k} Parquet rows alone: {:.2} s", t0.elapsed().as_secs_f64());
    }

    let copy1 = raw_copy(&app.db.url, &text).await;
    let (first, stats1) = run_scan(&t, &agent, &parts).await;
    // 1% of files change size.
    for r in recs.iter_mut().step_by(100) {
        r.size += 1;
    }
    let parts2: Vec<Vec<u8>> =
        recs.chunks(PART_ROWS).map(|c| batch_bytes(Format::Parquet, c)).collect();
    let copy2 = raw_copy(&app.db.url, &text).await;
    let (rescan, stats2) = run_scan(&t, &agent, &parts2).await;

    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    println!("| step ({n} rows) | seconds | rows/s | vs raw COPY |");
    println!("|---|---:|---:|---:|");
    println!(
        "| raw COPY into an unlogged table | {:.2} | {:.0} | 1.00× |",
        copy1.as_secs_f64(),
        rate(copy1)
    );
    println!(
        "| first scan: upload → inventory committed | {:.2} | {:.0} | {:.2}× |",
        first.as_secs_f64(),
        rate(first),
        first.as_secs_f64() / copy1.as_secs_f64()
    );
    println!(
        "| raw COPY (again, before the re-scan) | {:.2} | {:.0} | 1.00× |",
        copy2.as_secs_f64(),
        rate(copy2)
    );
    println!(
        "| re-scan, 1% changed | {:.2} | {:.0} | {:.2}× |",
        rescan.as_secs_f64(),
        rate(rescan),
        rescan.as_secs_f64() / copy2.as_secs_f64()
    );
    println!();
    println!("first scan stats: {stats1}");
    println!("re-scan stats: {stats2}");
    app.shutdown().await;
}
