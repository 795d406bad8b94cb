//! A host's bandwidth limit is shared by every job its agent runs at once: two tiering jobs
//! running side by side over the agent link together stay under the limit.
//!
//! Needs root (`trusted.*` attributes, leases) and a file system with holes and extended
//! attributes under /tmp, like `tests/tier.rs`.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use alto_agent::config::AgentConfig;
use alto_agent::daemon;
use alto_agent::spool::Spool;
use alto_test_support::{api, TestApp};
use rand::{Rng as _, SeedableRng as _};
use reqwest::Method;
use serde_json::json;

/// `n` files of `size` random bytes below `dir`; returns their total size.
fn make_files(dir: &Path, n: usize, size: usize) -> u64 {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for i in 0..n {
        let d = dir.join(format!("d{}", i % 3));
        std::fs::create_dir_all(&d).unwrap();
        let mut v = vec![0u8; size];
        rng.fill(&mut v[..]);
        std::fs::write(d.join(format!("f{i:03}.dat")), &v).unwrap();
    }
    (n * size) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_jobs_at_once_share_the_host_limit() {
    if !alto_test_services::require_root("trusted.* attributes, leases") {
        return;
    }
    let app = TestApp::spawn_with(|c| c.link.max_jobs_per_host = 2).await;
    let mut t = app.new_tenant("Acme").await;
    let created = app.new_host(&t, "fs1").await;
    let host_id = created.host.id;
    let state = tempfile::tempdir_in("/tmp").unwrap();
    let data = tempfile::tempdir_in("/tmp").unwrap();
    let tier2 = tempfile::tempdir_in("/tmp").unwrap();
    daemon::enroll(&app.base_url, &created.enrollment.token, state.path()).await.unwrap();
    let data_path = data.path().canonicalize().unwrap();
    let cfg = AgentConfig {
        state_dir: state.path().to_owned(),
        roots: vec![data_path.clone()],
        tier2: alto_agent::config::Tier2Config { directory_base: tier2.path().to_owned() },
        tier_parallel_files: 2,
        ..Default::default()
    };

    // 2 MiB/s for the host; 24 files of 512 KiB in two jobs of 6 MiB each.
    let limit: u64 = 2 << 20;
    let (st, v) = api(
        &t.admin,
        Method::PATCH,
        &format!("/tenants/{}/hosts/{host_id}", t.id),
        Some(json!({ "bandwidth_limit_bytes_per_second": limit })),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let bytes = make_files(&data_path, 24, 512 << 10);

    // Safety window 0, no planning after ingest, one rule tiering everything uncompressed.
    app.tier_everything_later(&mut t, "default", "none").await;
    let admin = t.admin.clone();

    let c2 = cfg.clone();
    let scan = tokio::task::spawn_blocking(move || {
        daemon::scan_into_spool(&c2, &Spool::open(&c2.state_dir).unwrap())
    })
    .await
    .unwrap()
    .unwrap();
    let id = alto_agent::state::Identity::load(&cfg.state_dir).unwrap();
    let client = daemon::host_client(&cfg, &id).unwrap();
    daemon::drain(&client, &Spool::open(&cfg.state_dir).unwrap(), 0).await.unwrap();
    assert_eq!(app.wait_for_scan(&t, scan).await.status, "completed");

    // Two plans of half the files each: two jobs.
    for _ in 0..2 {
        let (st, p) = api(
            &admin,
            Method::POST,
            &format!("/tenants/{}/plans", t.id),
            Some(json!({ "max_files": 12 })),
        )
        .await;
        assert_eq!(st, 201, "{p}");
    }
    let (st, v) = api(&admin, Method::GET, &format!("/tenants/{}/jobs", t.id), None).await;
    assert_eq!(st, 200, "{v}");
    let jobs: Vec<String> =
        v["items"].as_array().unwrap().iter().map(|j| j["id"].as_str().unwrap().into()).collect();
    assert_eq!(jobs.len(), 2, "{v}");

    let cancel = tokio_util::sync::CancellationToken::new();
    let mut run_cfg = AgentConfig { roots: vec![], ..cfg.clone() };
    run_cfg.link.max_jobs = 2;
    let started = Instant::now();
    let task = tokio::spawn(daemon::run(run_cfg, cancel.clone()));
    // Until both jobs end, noting when the first one did (files are reported per batch, so
    // the end of each job is what the API shows of its progress).
    let mut first_done = None;
    let deadline = Instant::now() + Duration::from_secs(120);
    let elapsed = loop {
        let mut done = 0;
        for j in &jobs {
            let (st, f) =
                api(&admin, Method::GET, &format!("/tenants/{}/jobs/{j}/files", t.id), None).await;
            assert_eq!(st, 200, "{f}");
            assert!(f["next_cursor"].is_null(), "one page holds every file of a job: {f}");
            let files = f["items"].as_array().unwrap();
            if files.iter().all(|f| f["state"] == "succeeded") {
                done += 1;
            }
        }
        if done >= 1 && first_done.is_none() {
            first_done = Some(started.elapsed());
        }
        if done == 2 {
            break started.elapsed();
        }
        assert!(Instant::now() < deadline, "jobs did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    cancel.cancel();
    task.await.unwrap().unwrap();
    let first_done = first_done.unwrap();
    let rate = bytes as f64 / elapsed.as_secs_f64();
    eprintln!(
        "{bytes} bytes in two concurrent jobs took {elapsed:?} (the first ended after \
         {first_done:?}): {:.2} MiB/s for a limit of {:.2} MiB/s",
        rate / (1 << 20) as f64,
        limit as f64 / (1 << 20) as f64
    );
    // One after the other, the first would end at half the time; side by side, near the end.
    assert!(
        first_done.as_secs_f64() >= 0.75 * elapsed.as_secs_f64(),
        "the two jobs ran at the same time: the first ended after {first_done:?} of {elapsed:?}"
    );
    // At the limit the bytes take bytes/limit seconds, less one second of burst; each job with
    // the whole limit to itself would take half that. 10% tolerance.
    let min = (bytes as f64 / limit as f64 - 1.0) * 0.9;
    assert!(
        elapsed.as_secs_f64() >= min,
        "{bytes} bytes in {elapsed:?} at a host limit of {limit} B/s (at least {min:.2} s)"
    );
}
