//! Tenant isolation: a second tenant's admin, operator and host credential, and forged tenant
//! ids in paths, bodies and query strings, can neither read nor change the first tenant's
//! data — and cannot even learn that it exists. Row-level security holds even for a query
//! that forgets its `WHERE customer_id`.

use alto_api_types::{CreateHost, HeartbeatRequest, UpdateHost};
use alto_client::{AuditQuery, Client, Scope};
use alto_db::TenantCtx;
use alto_model::{CustomerId, Role};
use alto_test_support::{TestApp, TestTenant};
use reqwest::Method;
use uuid::Uuid;

struct World {
    app: TestApp,
    a: TestTenant,
    b: TestTenant,
    a_host: Uuid,
    a_agent: Client,
    b_host: Uuid,
    b_agent: Client,
    b_oper: Client,
}

async fn world() -> World {
    let app = TestApp::spawn().await;
    let a = app.new_tenant("Alpha").await;
    let b = app.new_tenant("Beta").await;
    let (a_host, a_agent) = app.enrolled_host(&a, "alpha-fs").await;
    let (b_host, b_agent) = app.enrolled_host(&b, "beta-fs").await;
    let b_oper = app.user_with(&b, "beta-op", &[Role::Operator]).await;
    World { app, a, b, a_host, a_agent, b_host, b_agent, b_oper }
}

async fn status_code(
    c: &Client,
    m: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut rb = c.request(m, path);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(serde_json::Value::Null))
}

#[tokio::test]
async fn other_tenants_admin_and_operator_get_not_found_everywhere() {
    let w = world().await;
    let (a, ah) = (w.a.id, w.a_host);
    let a_cred = w.a.admin.list_credentials(a, ah).await.unwrap()[0].id;
    let a_user = w.a.admin_id;
    let attempts: Vec<(Method, String, Option<serde_json::Value>)> = vec![
        (Method::GET, format!("/api/v1/tenants/{a}"), None),
        (Method::PATCH, format!("/api/v1/tenants/{a}"), Some(serde_json::json!({"name": "pwned"}))),
        (Method::GET, format!("/api/v1/tenants/{a}/users"), None),
        (Method::GET, format!("/api/v1/tenants/{a}/users/{a_user}"), None),
        (
            Method::PATCH,
            format!("/api/v1/tenants/{a}/users/{a_user}"),
            Some(serde_json::json!({"disabled": true})),
        ),
        (
            Method::PUT,
            format!("/api/v1/tenants/{a}/users/{a_user}/roles"),
            Some(serde_json::json!({"roles": ["support"]})),
        ),
        (
            Method::POST,
            format!("/api/v1/tenants/{a}/users"),
            Some(
                serde_json::json!({"username": "mole", "password": "long enough password", "roles": ["tenant_admin"]}),
            ),
        ),
        (Method::GET, format!("/api/v1/tenants/{a}/hosts"), None),
        (Method::GET, format!("/api/v1/tenants/{a}/hosts/{ah}"), None),
        (
            Method::PATCH,
            format!("/api/v1/tenants/{a}/hosts/{ah}"),
            Some(serde_json::json!({"name": "pwned"})),
        ),
        (Method::DELETE, format!("/api/v1/tenants/{a}/hosts/{ah}"), None),
        (
            Method::POST,
            format!("/api/v1/tenants/{a}/hosts"),
            Some(serde_json::json!({"name": "implant"})),
        ),
        (Method::POST, format!("/api/v1/tenants/{a}/hosts/{ah}/enrollment-tokens"), None),
        (Method::GET, format!("/api/v1/tenants/{a}/hosts/{ah}/credentials"), None),
        (Method::POST, format!("/api/v1/tenants/{a}/hosts/{ah}/credentials/{a_cred}/revoke"), None),
        (Method::GET, format!("/api/v1/tenants/{a}/audit"), None),
        (Method::GET, format!("/api/v1/tenants/{a}/audit/verify"), None),
    ];
    for who in [&w.b.admin, &w.b_oper] {
        for (m, path, body) in &attempts {
            let (s, b) = status_code(who, m.clone(), path, body.clone()).await;
            assert_eq!(
                (s, b["error"]["code"].as_str()),
                (404, Some("not_found")),
                "{m} {path}: {b}"
            );
        }
    }
    // Mixed paths: B's tenant with A's object ids.
    let b = w.b.id;
    for (m, path) in [
        (Method::GET, format!("/api/v1/tenants/{b}/hosts/{ah}")),
        (Method::PATCH, format!("/api/v1/tenants/{b}/hosts/{ah}")),
        (Method::DELETE, format!("/api/v1/tenants/{b}/hosts/{ah}")),
        (Method::GET, format!("/api/v1/tenants/{b}/hosts/{ah}/credentials")),
        (Method::POST, format!("/api/v1/tenants/{b}/hosts/{ah}/credentials/{a_cred}/revoke")),
        (Method::GET, format!("/api/v1/tenants/{b}/users/{a_user}")),
        (Method::PATCH, format!("/api/v1/tenants/{b}/users/{a_user}")),
    ] {
        let body = (m == Method::PATCH).then(|| serde_json::json!({"description": "x"}));
        let body = if path.contains("/users/") {
            body.map(|_| serde_json::json!({"disabled": true}))
        } else {
            body
        };
        let (s, b) = status_code(&w.b.admin, m.clone(), &path, body).await;
        assert_eq!(s, 404, "{m} {path}: {b}");
    }
    // B's tenant list shows only B.
    let list = w.b.admin.list_tenants(None, None).await.unwrap();
    assert_eq!(list.items.iter().map(|t| t.id).collect::<Vec<_>>(), vec![b]);

    // Nothing of A changed.
    let host = w.a.admin.get_host(a, ah).await.unwrap();
    assert_eq!(host.name, "alpha-fs");
    assert_ne!(host.status, "decommissioned");
    assert_eq!(w.a.admin.get_tenant(a).await.unwrap().name, "Alpha");
    let creds = w.a.admin.list_credentials(a, ah).await.unwrap();
    assert!(creds.iter().all(|c| c.revoked_at.is_none()));
    assert_eq!(w.a.admin.list_users(Scope::Tenant(a), None, None).await.unwrap().items.len(), 1);
    w.a.admin.me().await.expect("A's admin still enabled");
    // A's audit trail holds nothing done by B's people.
    let log =
        w.a.admin
            .list_audit(Scope::Tenant(a), &AuditQuery { limit: Some(1000), ..Default::default() })
            .await
            .unwrap();
    assert!(log
        .items
        .iter()
        .all(|e| !matches!(e.actor_name.as_deref(), Some("beta-admin" | "beta-op"))));
}

#[tokio::test]
async fn forged_tenant_ids_in_bodies_and_queries_are_refused() {
    let w = world().await;
    let a = w.a.id;
    let b = w.b.id;
    // A body naming another tenant is refused outright (unknown field), nothing is created.
    let (s, body) = status_code(
        &w.b.admin,
        Method::POST,
        &format!("/api/v1/tenants/{b}/hosts"),
        Some(serde_json::json!({"name": "forged", "tenant_id": a})),
    )
    .await;
    assert_eq!((s, body["error"]["code"].as_str()), (400, Some("invalid_json")), "{body}");
    let (s, body) = status_code(&w.b.admin, Method::POST, &format!("/api/v1/tenants/{b}/users"),
        Some(serde_json::json!({"username": "forged", "password": "long enough password", "roles": ["operator"], "customer_id": a}))).await;
    assert_eq!(s, 400, "{body}");
    // A query string naming another tenant is refused.
    let (s, body) = status_code(
        &w.b.admin,
        Method::GET,
        &format!("/api/v1/tenants/{b}/hosts?tenant_id={a}"),
        None,
    )
    .await;
    assert_eq!((s, body["error"]["code"].as_str()), (400, Some("invalid_query")), "{body}");
    // Agents: the host comes from the credential; a body naming another host is refused.
    let (s, _) = status_code(
        &w.b_agent,
        Method::POST,
        "/api/v1/agent/heartbeat",
        Some(serde_json::json!({"agent_version": "1", "host_id": w.a_host})),
    )
    .await;
    assert_eq!(s, 400);
    assert!(w
        .a
        .admin
        .list_hosts(a, None, None, None)
        .await
        .unwrap()
        .items
        .iter()
        .all(|h| h.name != "forged"));
    assert!(w
        .b
        .admin
        .list_hosts(b, None, None, None)
        .await
        .unwrap()
        .items
        .iter()
        .all(|h| h.name != "forged"));
    assert_eq!(
        w.a.admin.get_host(a, w.a_host).await.unwrap().status,
        "pending",
        "A's host untouched"
    );
}

#[tokio::test]
async fn host_credentials_reach_only_their_own_host() {
    let w = world().await;
    // A heartbeat with B's credential updates B's host and nothing else.
    w.b_agent
        .heartbeat(&HeartbeatRequest {
            agent_version: "9.9".into(),
            os: None,
            hostname: None,
            volumes: vec![],
            on_access: None,
        })
        .await
        .unwrap();
    assert_eq!(
        w.b.admin.get_host(w.b.id, w.b_host).await.unwrap().agent_version.as_deref(),
        Some("9.9")
    );
    assert_eq!(
        w.a.admin.get_host(w.a.id, w.a_host).await.unwrap().agent_version.as_deref(),
        Some("0.1.0")
    );
    // Host credentials are not user sessions: the admin API refuses them.
    for path in [
        format!("/api/v1/tenants/{}/hosts", w.a.id),
        format!("/api/v1/tenants/{}/hosts", w.b.id),
        "/api/v1/auth/me".into(),
    ] {
        let (s, _) = status_code(&w.b_agent, Method::GET, &path, None).await;
        assert_eq!(s, 401, "{path}");
    }
    // And sessions are not host credentials.
    let (s, _) = status_code(
        &w.b.admin,
        Method::POST,
        "/api/v1/agent/heartbeat",
        Some(serde_json::json!({"agent_version": "1"})),
    )
    .await;
    assert_eq!(s, 401);
    // B's admin cannot rename A's host by guessing its id under B's tenant.
    let err = w
        .b
        .admin
        .update_host(w.b.id, w.a_host, &UpdateHost { name: Some("x".into()), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("not_found"));
    let _ = &w.a_agent;
}

#[tokio::test]
async fn row_level_security_holds_without_where_clauses() {
    let w = world().await;
    let db = w.app.db.app_db().await;
    let count = |sql: &'static str, ctx: TenantCtx| {
        let db = db.clone();
        async move {
            let mut tx = db.begin(ctx).await.unwrap();
            let n: i64 = sqlx::query_scalar(sql).fetch_one(&mut *tx).await.unwrap();
            n
        }
    };
    let b = TenantCtx::Tenant(CustomerId(w.b.id));
    for table in [
        "SELECT count(*) FROM hosts WHERE customer_id <> (SELECT alto_tenant())",
        "SELECT count(*) FROM users WHERE customer_id IS DISTINCT FROM (SELECT alto_tenant())",
        "SELECT count(*) FROM host_credentials WHERE customer_id <> (SELECT alto_tenant())",
        "SELECT count(*) FROM audit_log WHERE customer_id IS DISTINCT FROM (SELECT alto_tenant())",
        "SELECT count(*) FROM customers WHERE id <> (SELECT alto_tenant())",
    ] {
        assert_eq!(count(table, b).await, 0, "{table}");
    }
    assert_eq!(count("SELECT count(*) FROM hosts", b).await, 1);
    assert_eq!(count("SELECT count(*) FROM hosts", TenantCtx::Anonymous).await, 0);
    assert_eq!(count("SELECT count(*) FROM users", TenantCtx::Anonymous).await, 0);
    assert_eq!(count("SELECT count(*) FROM hosts", TenantCtx::Platform).await, 2);

    // Writing a row for another tenant fails the policy check.
    let mut tx = db.begin(b).await.unwrap();
    let err = sqlx::query("INSERT INTO hosts (id, customer_id, name, created_at, updated_at) VALUES ($1, $2, 'x', now(), now())")
        .bind(Uuid::now_v7())
        .bind(w.a.id)
        .execute(&mut *tx)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("row-level security"), "{err}");
    drop(tx);
    // Updating another tenant's rows touches nothing.
    let mut tx = db.begin(b).await.unwrap();
    let n = sqlx::query("UPDATE hosts SET name = 'pwned'")
        .execute(&mut *tx)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(n, 1, "only B's own host");
    drop(tx);
    // The app role cannot switch itself to a superuser or bypass RLS.
    let mut tx = db.begin(b).await.unwrap();
    let err = sqlx::query("SET ROLE postgres").execute(&mut *tx).await.unwrap_err();
    assert!(err.to_string().contains("permission denied"), "{err}");
    let _ = (&w.b_oper, &w.a_agent, CreateHost { name: String::new(), description: None });
}
