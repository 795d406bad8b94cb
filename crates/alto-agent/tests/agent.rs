//! The agent against a real server: enrollment, a scan spooled and uploaded, nothing lost
//! while the server is unreachable.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt as _;

use alto_agent::config::AgentConfig;
use alto_agent::daemon;
use alto_agent::spool::Spool;
use alto_agent::state::Identity;
use alto_test_support::TestApp;

fn tree(root: &std::path::Path, n: usize) {
    for i in 0..n {
        let d = root.join(format!("d{}", i % 5));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(format!("f{i}.txt")), vec![b'x'; i % 100]).unwrap();
    }
    std::fs::write(root.join("comma, \"quote\"\nnewline.txt"), b"hostile").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enroll_scan_spool_and_upload_end_to_end() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("Acme").await;
    let created = app.new_host(&t, "fs1").await;
    let state = tempfile::tempdir().unwrap();
    let id = daemon::enroll(&app.base_url, &created.enrollment.token, state.path()).await.unwrap();
    assert_eq!((id.host_id, id.tenant_id), (created.host.id, t.id));
    let meta = std::fs::metadata(state.path().join("credential.json")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(Identity::load(state.path()).unwrap(), id);
    // The token worked once.
    assert!(daemon::enroll(&app.base_url, &created.enrollment.token, &state.path().join("again"))
        .await
        .is_err());

    let data = tempfile::tempdir().unwrap();
    tree(data.path(), 250);
    let cfg = AgentConfig {
        state_dir: state.path().to_owned(),
        roots: vec![data.path().to_owned()],
        part_rows: 100,
        ..Default::default()
    };
    let spool = Spool::open(state.path()).unwrap();
    let c2 = cfg.clone();
    let scan = tokio::task::spawn_blocking(move || {
        daemon::scan_into_spool(&c2, &Spool::open(&c2.state_dir).unwrap())
    })
    .await
    .unwrap()
    .unwrap();
    let pending = spool.pending().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].1.rows, 251);
    assert_eq!(pending[0].1.parts, 3);

    // Server unreachable: the upload is deferred and the scan stays spooled.
    let dead =
        alto_client::Client::new("http://127.0.0.1:9").unwrap().with_token(id.credential.clone());
    assert!(daemon::drain(&dead, &spool, 0).await.is_err());
    assert_eq!(spool.pending().unwrap().len(), 1);

    // Server back: uploaded, acknowledged, removed from the spool, ingested.
    let live = alto_client::Client::new(&app.base_url).unwrap().with_token(id.credential.clone());
    assert_eq!(daemon::drain(&live, &spool, 0).await.unwrap(), 1);
    assert!(spool.pending().unwrap().is_empty());
    let s = app.wait_for_scan(&t, scan).await;
    assert_eq!(s.status, "completed", "{s:?}");
    let sum = t.admin.inventory_summary(t.id, Some(id.host_id)).await.unwrap();
    assert_eq!(sum.files, 251);
    let hostile = t
        .admin
        .inventory_files(t.id, &[("path_prefix", format!("{}/comma", data.path().display()))])
        .await
        .unwrap();
    assert_eq!(
        hostile.items[0].file_path,
        format!("{}/comma, \"quote\"\nnewline.txt", data.path().display())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_heartbeats_scans_and_uploads() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("Acme").await;
    let created = app.new_host(&t, "fs1").await;
    let state = tempfile::tempdir().unwrap();
    daemon::enroll(&app.base_url, &created.enrollment.token, state.path()).await.unwrap();
    let data = tempfile::tempdir().unwrap();
    tree(data.path(), 40);
    let cfg = AgentConfig {
        state_dir: state.path().to_owned(),
        roots: vec![data.path().to_owned()],
        ..Default::default()
    };
    let cancel = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(daemon::run(cfg, cancel.clone()));
    let mut files = 0;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        files = t.admin.inventory_summary(t.id, None).await.unwrap().files;
        if files == 41 {
            break;
        }
    }
    assert_eq!(files, 41);
    let h = t.admin.get_host(t.id, created.host.id).await.unwrap();
    assert_eq!(h.status, "online");
    assert_eq!(h.volumes.len(), 1);
    assert!(h.volumes[0].total_bytes > 0);
    cancel.cancel();
    task.await.unwrap().unwrap();
}
