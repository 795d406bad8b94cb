//! The permission matrix, enforced endpoint by endpoint, for every role: allowed calls
//! succeed and denied ones get `forbidden` (or `not_found` for platform-only objects, which
//! tenant users must not learn exist) and change nothing.

use alto_api_types::CreateUser;
use alto_client::{Client, Scope};
use alto_model::Role;
use alto_test_support::{TestApp, TestTenant, ADMIN_PASSWORD};
use reqwest::Method;
use uuid::Uuid;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Want {
    Allow,
    Deny,
}
use Want::{Allow, Deny};

struct Op {
    name: &'static str,
    method: Method,
    path: String,
    body: Option<serde_json::Value>,
}

fn ops(t: Uuid, host: Uuid, target: Uuid, n: usize) -> Vec<Op> {
    let op = |name, method, path: String, body| Op { name, method, path, body };
    vec![
        op("tenant.get", Method::GET, format!("/api/v1/tenants/{t}"), None),
        op(
            "tenant.update",
            Method::PATCH,
            format!("/api/v1/tenants/{t}"),
            Some(serde_json::json!({"name": format!("Renamed {n}")})),
        ),
        op(
            "tenant.create",
            Method::POST,
            "/api/v1/tenants".into(),
            Some(serde_json::json!({"name": format!("New tenant {n}")})),
        ),
        op("users.list", Method::GET, format!("/api/v1/tenants/{t}/users"), None),
        op(
            "users.create",
            Method::POST,
            format!("/api/v1/tenants/{t}/users"),
            Some(
                serde_json::json!({"username": format!("made-{n}"), "password": ADMIN_PASSWORD, "roles": ["support"]}),
            ),
        ),
        op("hosts.list", Method::GET, format!("/api/v1/tenants/{t}/hosts"), None),
        op("hosts.get", Method::GET, format!("/api/v1/tenants/{t}/hosts/{host}"), None),
        op(
            "hosts.create",
            Method::POST,
            format!("/api/v1/tenants/{t}/hosts"),
            Some(serde_json::json!({"name": format!("h-{n}")})),
        ),
        op(
            "hosts.update",
            Method::PATCH,
            format!("/api/v1/tenants/{t}/hosts/{host}"),
            Some(serde_json::json!({"description": format!("d{n}")})),
        ),
        op(
            "hosts.credentials",
            Method::GET,
            format!("/api/v1/tenants/{t}/hosts/{host}/credentials"),
            None,
        ),
        op(
            "hosts.enrollment",
            Method::POST,
            format!("/api/v1/tenants/{t}/hosts/{host}/enrollment-tokens"),
            None,
        ),
        op(
            "inventory.summary",
            Method::GET,
            format!("/api/v1/tenants/{t}/inventory/summary"),
            None,
        ),
        op("inventory.scans", Method::GET, format!("/api/v1/tenants/{t}/scans"), None),
        op("audit.list", Method::GET, format!("/api/v1/tenants/{t}/audit"), None),
        op("audit.verify", Method::GET, format!("/api/v1/tenants/{t}/audit/verify"), None),
        op("rules.list", Method::GET, format!("/api/v1/tenants/{t}/rules"), None),
        op(
            "rules.create",
            Method::POST,
            format!("/api/v1/tenants/{t}/rules"),
            Some(serde_json::json!({"name": format!("r-{n}"), "priority": n,
                "action": {"type": "tier", "target": "default"}})),
        ),
        op(
            "rules.preview",
            Method::POST,
            format!("/api/v1/tenants/{t}/rules/preview"),
            Some(serde_json::json!({})),
        ),
        op(
            "tags.create",
            Method::POST,
            format!("/api/v1/tenants/{t}/tags"),
            Some(serde_json::json!({"path": format!("/srv/{n}"), "key": "k"})),
        ),
        op(
            "plans.run",
            Method::POST,
            format!("/api/v1/tenants/{t}/plans"),
            Some(serde_json::json!({})),
        ),
        op("jobs.list", Method::GET, format!("/api/v1/tenants/{t}/jobs"), None),
        op("storage.list", Method::GET, format!("/api/v1/tenants/{t}/storage-targets"), None),
        op(
            "storage.create",
            Method::POST,
            format!("/api/v1/tenants/{t}/storage-targets"),
            Some(
                serde_json::json!({"name": format!("s-{n}"), "kind": "directory", "location": "/mnt/t2"}),
            ),
        ),
        op(
            "storage.get",
            Method::GET,
            format!("/api/v1/tenants/{t}/storage-targets/{target}"),
            None,
        ),
        op(
            "storage.update",
            Method::PATCH,
            format!("/api/v1/tenants/{t}/storage-targets/{target}"),
            Some(serde_json::json!({"config": {}})),
        ),
        op(
            "storage.test",
            Method::POST,
            format!("/api/v1/tenants/{t}/storage-targets/{target}/test"),
            None,
        ),
        op("platform.users", Method::GET, "/api/v1/platform/users".into(), None),
        op("platform.audit", Method::GET, "/api/v1/platform/audit".into(), None),
    ]
}

/// The documented matrix (docs/permissions.md), per operation, for:
/// platform_admin, tenant_admin, operator, auditor, support, platform auditor, platform support.
fn expected(name: &str) -> [Want; 7] {
    match name {
        "tenant.get" => [Allow, Allow, Allow, Allow, Allow, Allow, Allow],
        "tenant.update" | "tenant.create" => [Allow, Deny, Deny, Deny, Deny, Deny, Deny],
        "users.list" => [Allow, Allow, Deny, Allow, Allow, Allow, Allow],
        "users.create" => [Allow, Allow, Deny, Deny, Deny, Deny, Deny],
        "hosts.list" | "hosts.get" | "hosts.credentials" => [Allow; 7],
        "inventory.summary" | "inventory.scans" => [Allow; 7],
        "hosts.create" | "hosts.update" | "hosts.enrollment" => {
            [Allow, Allow, Deny, Deny, Deny, Deny, Deny]
        }
        "audit.list" | "audit.verify" => [Allow, Allow, Deny, Allow, Deny, Allow, Deny],
        "rules.list" | "rules.preview" | "jobs.list" | "storage.list" | "storage.get" => [Allow; 7],
        "rules.create" | "tags.create" | "plans.run" => {
            [Allow, Allow, Allow, Deny, Deny, Deny, Deny]
        }
        "storage.create" | "storage.update" | "storage.test" => {
            [Allow, Allow, Deny, Deny, Deny, Deny, Deny]
        }
        "platform.users" => [Allow, Deny, Deny, Deny, Deny, Allow, Allow],
        "platform.audit" => [Allow, Deny, Deny, Deny, Deny, Allow, Deny],
        other => panic!("no expectation for {other}"),
    }
}

async fn platform_user(app: &TestApp, name: &str, role: Role) -> Client {
    app.admin
        .create_user(
            Scope::Platform,
            &CreateUser {
                username: name.into(),
                password: ADMIN_PASSWORD.into(),
                display_name: None,
                roles: vec![role],
            },
        )
        .await
        .unwrap();
    app.login(name, ADMIN_PASSWORD).await
}

async fn principals(app: &TestApp, t: &TestTenant) -> Vec<(&'static str, Client)> {
    vec![
        ("platform_admin", app.admin.clone()),
        ("tenant_admin", t.admin.clone()),
        ("operator", app.user_with(t, "oper", &[Role::Operator]).await),
        ("auditor", app.user_with(t, "aud", &[Role::Auditor]).await),
        ("support", app.user_with(t, "sup", &[Role::Support]).await),
        ("platform_auditor", platform_user(app, "p-aud", Role::Auditor).await),
        ("platform_support", platform_user(app, "p-sup", Role::Support).await),
    ]
}

#[tokio::test]
async fn every_role_gets_exactly_the_documented_permissions() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("Acme").await;
    let (host, _) = app.enrolled_host(&t, "fs1").await;
    let who = principals(&app, &t).await;
    let targets = t.admin.list_storage_targets(t.id).await.unwrap();
    let target = targets.iter().find(|x| x.name == "default").unwrap().id;
    let mut failures = Vec::new();
    let mut n = 0;
    for (i, (role, client)) in who.iter().enumerate() {
        for op in ops(t.id, host, target, 0) {
            n += 1;
            // Re-number bodies so allowed creates never collide.
            let op = ops(t.id, host, target, n).into_iter().find(|o| o.name == op.name).unwrap();
            let mut rb = client.request(op.method.clone(), &op.path);
            if let Some(b) = &op.body {
                rb = rb.json(b);
            }
            let r = rb.send().await.unwrap();
            let status = r.status().as_u16();
            let body: serde_json::Value = r.json().await.unwrap_or(serde_json::Value::Null);
            let want = expected(op.name)[i];
            let ok = match want {
                Allow => (200..300).contains(&status),
                Deny => {
                    let code = body["error"]["code"].as_str().unwrap_or("");
                    (status == 403 && code == "forbidden") || (status == 404 && code == "not_found")
                }
            };
            if !ok {
                failures.push(format!("{role} {} -> {status} {body}", op.name));
            }
        }
    }
    assert!(failures.is_empty(), "matrix violations:\n{}", failures.join("\n"));
}

#[tokio::test]
async fn denied_writes_change_nothing_and_are_audited() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("Acme").await;
    let op = app.user_with(&t, "oper", &[Role::Operator]).await;
    let before = t.admin.list_hosts(t.id, None, None, None).await.unwrap().items.len();
    let err = op
        .create_host(t.id, &alto_api_types::CreateHost { name: "sneaky".into(), description: None })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("forbidden"));
    assert_eq!(t.admin.list_hosts(t.id, None, None, None).await.unwrap().items.len(), before);
    // An operator cannot make themselves admin either.
    let me = op.me().await.unwrap();
    let err =
        op.set_roles(Scope::Tenant(t.id), me.user_id, &[Role::TenantAdmin]).await.unwrap_err();
    assert_eq!(err.code(), Some("forbidden"));
    assert_eq!(op.me().await.unwrap().roles, vec![Role::Operator]);
    let log = t
        .admin
        .list_audit(
            Scope::Tenant(t.id),
            &alto_client::AuditQuery { outcome: Some("denied".into()), ..Default::default() },
        )
        .await
        .unwrap();
    assert_eq!(log.items.len(), 2, "{:?}", log.items);
    assert!(log.items.iter().all(|e| e.actor_name.as_deref() == Some("oper")));
}

#[tokio::test]
async fn tenant_admins_cannot_grant_platform_roles() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("Acme").await;
    let err = t
        .admin
        .create_user(
            Scope::Tenant(t.id),
            &CreateUser {
                username: "evil".into(),
                password: ADMIN_PASSWORD.into(),
                display_name: None,
                roles: vec![Role::PlatformAdmin],
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("validation_failed"));
    let err = t
        .admin
        .set_roles(Scope::Tenant(t.id), t.admin_id, &[Role::PlatformAdmin])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("validation_failed"));
    // Role changes are audited with before and after.
    let op = app.user_with(&t, "oper", &[Role::Operator]).await;
    let op_id = op.me().await.unwrap().user_id;
    t.admin.set_roles(Scope::Tenant(t.id), op_id, &[Role::Operator, Role::Auditor]).await.unwrap();
    assert_eq!(
        op.me().await.unwrap().roles,
        vec![Role::Auditor, Role::Operator],
        "takes effect at once"
    );
    let log = t
        .admin
        .list_audit(
            Scope::Tenant(t.id),
            &alto_client::AuditQuery {
                action: Some("user.roles_change".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(log.items[0].details["before"], serde_json::json!(["operator"]));
    assert_eq!(log.items[0].details["after"], serde_json::json!(["auditor", "operator"]));
}
