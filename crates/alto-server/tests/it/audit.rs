//! The audit trail: every mutation leaves a chained entry; the app role cannot change it;
//! tampering by a superuser is detected and the first bad entry is named.

use alto_api_types::CreateHost;
use alto_client::{AuditQuery, Scope};
use alto_db::TenantCtx;
use alto_model::{CustomerId, Role};
use alto_test_support::{TestApp, TestTenant};

async fn busy_tenant(app: &TestApp) -> TestTenant {
    let t = app.new_tenant("Acme").await;
    for i in 0..4 {
        t.admin
            .create_host(t.id, &CreateHost { name: format!("fs{i}"), description: None })
            .await
            .unwrap();
    }
    t
}

/// Runs statements as the superuser with triggers disabled for this session — what an
/// attacker with full database access could do.
async fn tamper(app: &TestApp, sql: &str) {
    let pool = app.db.owner_pool().await;
    let mut c = pool.acquire().await.unwrap();
    sqlx::query("SET session_replication_role = replica").execute(&mut *c).await.unwrap();
    let n = sqlx::query(sql).execute(&mut *c).await.unwrap().rows_affected();
    assert!(n > 0, "tampering touched no row: {sql}");
}

#[tokio::test]
async fn mutations_are_chained_and_verify() {
    let app = TestApp::spawn().await;
    let t = busy_tenant(&app).await;
    let log = t
        .admin
        .list_audit(Scope::Tenant(t.id), &AuditQuery { limit: Some(1000), ..Default::default() })
        .await
        .unwrap();
    // tenant.create, user.create, login, and per host: host.create + enrollment token.
    assert_eq!(
        log.items.len(),
        3 + 4 * 2,
        "{:?}",
        log.items.iter().map(|e| &e.action).collect::<Vec<_>>()
    );
    let seqs: Vec<i64> = log.items.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=11).rev().collect::<Vec<_>>());
    for w in log.items.windows(2) {
        assert_eq!(w[1].hash, w[0].prev_hash, "each entry links to its predecessor");
    }
    let e = log.items.iter().find(|e| e.action == "host.create").unwrap();
    assert_eq!(e.actor_name.as_deref(), Some("acme-admin"));
    assert_eq!(e.source_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(e.occurred_at, app.clock_now());
    let report = t.admin.verify_audit(Scope::Tenant(t.id)).await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.chains[0].entries_checked, 11);
    let all = app.admin.verify_audit(Scope::Platform).await.unwrap();
    assert!(all.ok && all.chains.len() == 2, "{all:?}");
    // Paging.
    let p1 = t
        .admin
        .list_audit(Scope::Tenant(t.id), &AuditQuery { limit: Some(4), ..Default::default() })
        .await
        .unwrap();
    let p2 = t
        .admin
        .list_audit(
            Scope::Tenant(t.id),
            &AuditQuery { limit: Some(4), cursor: p1.next_cursor.clone(), ..Default::default() },
        )
        .await
        .unwrap();
    assert_eq!(p2.items[0].seq, p1.items[3].seq - 1);
}

#[tokio::test]
async fn the_app_role_cannot_change_or_forge_entries() {
    let app = TestApp::spawn().await;
    let t = busy_tenant(&app).await;
    let db = app.db.app_db().await;
    for ctx in [TenantCtx::Tenant(CustomerId(t.id)), TenantCtx::Platform] {
        for sql in [
            "UPDATE audit_log SET action = 'x'",
            "DELETE FROM audit_log",
            "TRUNCATE audit_log",
            "INSERT INTO audit_log (customer_id, seq, occurred_at, actor_kind, action, outcome, prev_hash, hash) VALUES (NULL, 99, now(), 'user', 'x', 'success', '', '')",
            "UPDATE audit_chain_heads SET last_seq = 0",
            "ALTER TABLE audit_log DISABLE TRIGGER ALL",
            "SET session_replication_role = replica",
        ] {
            let mut tx = db.begin(ctx).await.unwrap();
            let err = sqlx::query(sql).execute(&mut *tx).await.unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("permission denied") || msg.contains("must be owner"), "{sql}: {msg}");
        }
    }
    // A tenant-scoped transaction cannot append to another chain either.
    let mut tx = db.begin(TenantCtx::Tenant(CustomerId(t.id))).await.unwrap();
    let err = sqlx::query("SELECT * FROM audit_append(NULL, now(), 'user', NULL, NULL, 'forged', NULL, NULL, 'success', NULL, '{}')")
        .execute(&mut *tx)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("another tenant"), "{err}");
    // Even the owner is stopped by the trigger.
    let pool = app.db.owner_pool().await;
    let err = sqlx::query("UPDATE audit_log SET action = 'x'").execute(&pool).await.unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    assert!(t.admin.verify_audit(Scope::Tenant(t.id)).await.unwrap().ok);
}

#[tokio::test]
async fn an_altered_entry_is_named() {
    let app = TestApp::spawn().await;
    let t = busy_tenant(&app).await;
    tamper(
        &app,
        &format!(
            "UPDATE audit_log SET actor_name = 'someone-else' WHERE customer_id = '{}' AND seq = 5",
            t.id
        ),
    )
    .await;
    let r = t.admin.verify_audit(Scope::Tenant(t.id)).await.unwrap();
    assert!(!r.ok);
    let f = r.chains[0].fault.clone().unwrap();
    assert_eq!((f.kind.as_str(), f.seq), ("hash_mismatch", 5), "{f:?}");
    assert_eq!(r.chains[0].entries_checked, 4);
    // The platform-wide verification names the same tenant chain and keeps the others OK.
    let all = app.admin.verify_audit(Scope::Platform).await.unwrap();
    assert!(!all.ok);
    let bad: Vec<_> = all.chains.iter().filter(|c| !c.ok).map(|c| c.tenant_id).collect();
    assert_eq!(bad, vec![Some(t.id)]);
}

#[tokio::test]
async fn a_recomputed_hash_breaks_the_next_link() {
    let app = TestApp::spawn().await;
    let t = busy_tenant(&app).await;
    // A careful attacker rewrites the entry and recomputes its hash with the same function.
    tamper(&app, &format!(
        "UPDATE audit_log SET action = 'host.nothing', hash = audit_hash(seq, customer_id, occurred_at, actor_kind, actor_id, actor_name, \
         'host.nothing', target_kind, target_id, outcome, source_ip, details, prev_hash) WHERE customer_id = '{}' AND seq = 6", t.id)).await;
    let f =
        t.admin.verify_audit(Scope::Tenant(t.id)).await.unwrap().chains[0].fault.clone().unwrap();
    assert_eq!((f.kind.as_str(), f.seq), ("broken_link", 7), "{f:?}");
}

#[tokio::test]
async fn deleted_entries_are_named() {
    let app = TestApp::spawn().await;
    let t = busy_tenant(&app).await;
    tamper(
        &app,
        &format!("DELETE FROM audit_log WHERE customer_id = '{}' AND seq IN (3, 4)", t.id),
    )
    .await;
    let f =
        t.admin.verify_audit(Scope::Tenant(t.id)).await.unwrap().chains[0].fault.clone().unwrap();
    assert_eq!((f.kind.as_str(), f.seq), ("missing", 3), "{f:?}");

    let app = TestApp::spawn().await;
    let t = busy_tenant(&app).await;
    tamper(&app, &format!("DELETE FROM audit_log WHERE customer_id = '{}' AND seq >= 10", t.id))
        .await;
    let f =
        t.admin.verify_audit(Scope::Tenant(t.id)).await.unwrap().chains[0].fault.clone().unwrap();
    assert_eq!((f.kind.as_str(), f.seq), ("truncated_tail", 10), "{f:?}");
}

#[tokio::test]
async fn auditors_read_and_verify_but_support_cannot() {
    let app = TestApp::spawn().await;
    let t = busy_tenant(&app).await;
    let aud = app.user_with(&t, "aud", &[Role::Auditor]).await;
    let sup = app.user_with(&t, "sup", &[Role::Support]).await;
    assert!(aud.verify_audit(Scope::Tenant(t.id)).await.unwrap().ok);
    assert!(!aud
        .list_audit(Scope::Tenant(t.id), &AuditQuery::default())
        .await
        .unwrap()
        .items
        .is_empty());
    assert_eq!(
        sup.list_audit(Scope::Tenant(t.id), &AuditQuery::default()).await.unwrap_err().code(),
        Some("forbidden")
    );
    // Tenant auditors cannot read the platform chain.
    assert_eq!(
        aud.list_audit(Scope::Platform, &AuditQuery::default()).await.unwrap_err().code(),
        Some("not_found")
    );
    // Bad filters are refused.
    let err = aud
        .list_audit(
            Scope::Tenant(t.id),
            &AuditQuery { outcome: Some("maybe".into()), ..Default::default() },
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("invalid_query"));
}
