//! Host registration, enrollment, heartbeats, credential rotation with overlap, revocation,
//! decommissioning and the offline monitor.

use alto_api_types::{CreateHost, EnrollRequest, HeartbeatRequest, Volume};
use alto_client::{AuditQuery, Scope};
use alto_test_support::{TestApp, ADMIN_PASSWORD};

fn enroll_req(token: &str) -> EnrollRequest {
    EnrollRequest {
        token: token.into(),
        hostname: "fs1.example".into(),
        agent_version: "0.1.0".into(),
        os: Some("linux".into()),
    }
}

fn hb(v: &str) -> HeartbeatRequest {
    HeartbeatRequest {
        agent_version: v.into(),
        os: Some("Debian 12".into()),
        hostname: Some("fs1.example".into()),
        volumes: vec![Volume {
            mount_point: "/srv".into(),
            fs_type: Some("ext4".into()),
            total_bytes: 1000,
            free_bytes: 250,
        }],
        on_access: None,
    }
}

#[tokio::test]
async fn enrollment_token_is_one_time_and_expires() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("Acme").await;
    let created = t
        .admin
        .create_host(
            t.id,
            &CreateHost { name: "fs1".into(), description: Some("file server".into()) },
        )
        .await
        .unwrap();
    assert_eq!(created.host.status, "pending");
    let token = created.enrollment.token.clone();
    assert!(token.starts_with("alto_e_"));

    let issued = app.client().enroll(&enroll_req(&token)).await.unwrap();
    assert_eq!((issued.host_id, issued.tenant_id), (created.host.id, t.id));
    assert!(issued.credential.starts_with("alto_h_"));
    // Second use fails, and so does a garbage token.
    assert_eq!(
        app.client().enroll(&enroll_req(&token)).await.unwrap_err().code(),
        Some("invalid_enrollment_token")
    );
    assert_eq!(
        app.client().enroll(&enroll_req("alto_e_nope")).await.unwrap_err().code(),
        Some("invalid_enrollment_token")
    );
    // The credential is stored only as a hash.
    let pool = app.db.owner_pool().await;
    let stored: Vec<Vec<u8>> = sqlx::query_scalar("SELECT secret_hash FROM host_credentials")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert!(!stored[0].windows(10).any(|w| issued
        .credential
        .as_bytes()
        .windows(10)
        .any(|x| x == w)));
    assert_eq!(stored[0].len(), 32);

    // A new token for re-enrollment expires after its TTL (24 h).
    let again = t.admin.new_enrollment_token(t.id, created.host.id).await.unwrap();
    app.clock.advance(chrono::Duration::hours(25));
    assert_eq!(
        app.client().enroll(&enroll_req(&again.token)).await.unwrap_err().code(),
        Some("invalid_enrollment_token")
    );
    let admin = app.login("acme-admin", ADMIN_PASSWORD).await; // the session outlived its TTL
    let log = admin
        .list_audit(
            Scope::Tenant(t.id),
            &AuditQuery { action: Some("host.enroll".into()), ..Default::default() },
        )
        .await
        .unwrap();
    let outcomes: Vec<_> = log
        .items
        .iter()
        .filter(|e| e.action == "host.enroll")
        .map(|e| e.outcome.as_str())
        .collect();
    assert_eq!(outcomes, vec!["failure", "failure", "success"], "newest first");
}

#[tokio::test]
async fn heartbeat_records_status_version_and_volumes() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("Acme").await;
    let (host, agent) = app.enrolled_host(&t, "fs1").await;
    let r = agent.heartbeat(&hb("0.2.0")).await.unwrap();
    assert_eq!(r.host_id, host);
    assert_eq!(r.heartbeat_interval_seconds, 30);
    let h = t.admin.get_host(t.id, host).await.unwrap();
    assert_eq!(h.status, "online");
    assert_eq!(h.agent_version.as_deref(), Some("0.2.0"));
    assert_eq!(h.volumes, hb("x").volumes);
    assert_eq!(h.last_seen_at, Some(app.clock_now()));
    // Impossible volume figures are refused and change nothing.
    let mut bad = hb("0.3.0");
    bad.volumes[0].free_bytes = 2000;
    assert_eq!(agent.heartbeat(&bad).await.unwrap_err().code(), Some("validation_failed"));
    assert_eq!(t.admin.get_host(t.id, host).await.unwrap().agent_version.as_deref(), Some("0.2.0"));
}

#[tokio::test]
async fn rotation_keeps_the_old_credential_for_the_overlap_window_only() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("Acme").await;
    let (host, old) = app.enrolled_host(&t, "fs1").await;
    let issued = old.rotate_credential().await.unwrap();
    let new = app.client().with_token(issued.credential.clone());
    let overlap_end = issued.previous_expires_at.unwrap();
    assert_eq!(overlap_end, app.clock_now() + chrono::Duration::hours(24));
    old.heartbeat(&hb("1")).await.expect("old works inside the window");
    new.heartbeat(&hb("1")).await.expect("new works");
    let creds = t.admin.list_credentials(t.id, host).await.unwrap();
    let states: Vec<_> = creds.iter().map(|c| c.state.as_str()).collect();
    assert_eq!(states, vec!["expiring", "active"]);

    app.clock.advance(chrono::Duration::hours(24) + chrono::Duration::seconds(1));
    let err = old.heartbeat(&hb("1")).await.unwrap_err();
    assert_eq!(err.code(), Some("unauthenticated"));
    new.heartbeat(&hb("1")).await.expect("new still works");
    let admin = app.login("acme-admin", ADMIN_PASSWORD).await; // the session outlived its TTL
    let log = admin
        .list_audit(
            Scope::Tenant(t.id),
            &AuditQuery { action: Some("host.credential_rotate".into()), ..Default::default() },
        )
        .await
        .unwrap();
    assert_eq!(log.items.len(), 1);
}

/// A superseded credential (inside its overlap window) still authenticates, but cannot rotate
/// again: otherwise whoever holds an old credential could cut the real agent's current one
/// short and keep the successor for itself.
#[tokio::test]
async fn only_the_current_credential_can_rotate() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("Acme").await;
    let (host, old) = app.enrolled_host(&t, "fs1").await;
    let issued = old.rotate_credential().await.unwrap();
    let current = app.client().with_token(issued.credential.clone());
    old.heartbeat(&hb("1")).await.expect("old works inside the window");
    let before = t.admin.list_credentials(t.id, host).await.unwrap();

    let err = old.rotate_credential().await.unwrap_err();
    assert_eq!(err.code(), Some("forbidden"), "{err}");
    let after = t.admin.list_credentials(t.id, host).await.unwrap();
    let view = |cs: &[alto_api_types::Credential]| {
        cs.iter().map(|c| (c.id, c.state.clone(), c.expires_at)).collect::<Vec<_>>()
    };
    assert_eq!(view(&before), view(&after), "a refused rotation changes nothing");
    // The current credential keeps working after the old one's window, and can rotate.
    app.clock.advance(chrono::Duration::hours(25));
    assert_eq!(old.heartbeat(&hb("1")).await.unwrap_err().code(), Some("unauthenticated"));
    current.heartbeat(&hb("1")).await.expect("the current credential still works");
    let next = current.rotate_credential().await.expect("the current credential rotates");
    app.client().with_token(next.credential).heartbeat(&hb("1")).await.unwrap();
    // The refusal is audited.
    let admin = app.login("acme-admin", ADMIN_PASSWORD).await;
    let log = admin
        .list_audit(
            Scope::Tenant(t.id),
            &AuditQuery { action: Some("host.credential_rotate".into()), ..Default::default() },
        )
        .await
        .unwrap();
    let outcomes: Vec<_> = log.items.iter().map(|e| e.outcome.as_str()).collect();
    assert_eq!(outcomes.iter().filter(|o| **o == "denied").count(), 1, "{outcomes:?}");
    assert_eq!(outcomes.iter().filter(|o| **o == "success").count(), 2, "{outcomes:?}");
}

#[tokio::test]
async fn revocation_is_immediate_and_decommission_revokes_everything() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("Acme").await;
    let (host, agent) = app.enrolled_host(&t, "fs1").await;
    agent.heartbeat(&hb("1")).await.unwrap();
    let cred = t.admin.list_credentials(t.id, host).await.unwrap()[0].id;
    let revoked = t.admin.revoke_credential(t.id, host, cred).await.unwrap();
    assert_eq!(revoked.state, "revoked");
    assert_eq!(agent.heartbeat(&hb("1")).await.unwrap_err().code(), Some("unauthenticated"));
    let log = t
        .admin
        .list_audit(
            Scope::Tenant(t.id),
            &AuditQuery { action: Some("host.".into()), ..Default::default() },
        )
        .await
        .unwrap();
    let actions: Vec<_> =
        log.items.iter().map(|e| (e.action.as_str(), e.outcome.as_str())).collect();
    assert!(actions.contains(&("host.credential_revoke", "success")), "{actions:?}");
    assert!(actions.contains(&("host.auth", "failure")), "{actions:?}");

    // Re-enroll, then decommission: the new credential dies too, and tokens cannot be issued.
    let token = t.admin.new_enrollment_token(t.id, host).await.unwrap();
    let issued = app.client().enroll(&enroll_req(&token.token)).await.unwrap();
    let agent = app.client().with_token(issued.credential);
    agent.heartbeat(&hb("1")).await.unwrap();
    let h = t.admin.decommission_host(t.id, host).await.unwrap();
    assert_eq!(h.status, "decommissioned");
    assert_eq!(agent.heartbeat(&hb("1")).await.unwrap_err().code(), Some("unauthenticated"));
    assert_eq!(
        t.admin.new_enrollment_token(t.id, host).await.unwrap_err().code(),
        Some("conflict")
    );
}

#[tokio::test]
async fn silent_hosts_go_offline() {
    let app = TestApp::spawn_with(|c| {
        c.agents.heartbeat_interval = std::time::Duration::from_millis(200);
        c.agents.offline_after = std::time::Duration::from_secs(60);
    })
    .await;
    let t = app.new_tenant("Acme").await;
    let (host, agent) = app.enrolled_host(&t, "fs1").await;
    agent.heartbeat(&hb("1")).await.unwrap();
    app.clock.advance(chrono::Duration::seconds(30));
    // The host monitor is driven: one sweep now (after any background one in flight).
    app.workers.host_monitor.step(&app.state).await.unwrap();
    assert_eq!(t.admin.get_host(t.id, host).await.unwrap().status, "online", "within the window");
    app.clock.advance(chrono::Duration::seconds(61));
    app.workers.host_monitor.step(&app.state).await.unwrap();
    let status = t.admin.get_host(t.id, host).await.unwrap().status;
    assert_eq!(status, "offline");
    agent.heartbeat(&hb("1")).await.unwrap();
    assert_eq!(t.admin.get_host(t.id, host).await.unwrap().status, "online");
    let log = t.admin.list_audit(Scope::Tenant(t.id), &AuditQuery::default()).await.unwrap();
    let actions: Vec<_> = log.items.iter().map(|e| e.action.as_str()).take(3).collect();
    assert_eq!(actions, vec!["host.online", "host.offline", "host.online"]);
}

#[tokio::test]
async fn host_lists_page_and_filter() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("Acme").await;
    for i in 0..5 {
        t.admin
            .create_host(t.id, &CreateHost { name: format!("fs{i}"), description: None })
            .await
            .unwrap();
        app.clock.advance(chrono::Duration::seconds(1));
    }
    let p1 = t.admin.list_hosts(t.id, None, Some(2), None).await.unwrap();
    let p2 = t.admin.list_hosts(t.id, None, Some(2), p1.next_cursor.as_deref()).await.unwrap();
    let p3 = t.admin.list_hosts(t.id, None, Some(2), p2.next_cursor.as_deref()).await.unwrap();
    let names: Vec<_> =
        [p1.items, p2.items, p3.items.clone()].concat().into_iter().map(|h| h.name).collect();
    assert_eq!(names, vec!["fs0", "fs1", "fs2", "fs3", "fs4"]);
    assert!(p3.next_cursor.is_none());
    assert_eq!(t.admin.list_hosts(t.id, Some("online"), None, None).await.unwrap().items.len(), 0);
    assert_eq!(t.admin.list_hosts(t.id, Some("pending"), None, None).await.unwrap().items.len(), 5);
    let err = t
        .admin
        .create_host(t.id, &CreateHost { name: "fs1".into(), description: None })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("conflict"));
}
