//! Login, sessions, cookies, logout, lockout, password changes.

use alto_api_types::{CreateUser, UpdateUser};
use alto_client::{AuditQuery, Scope};
use alto_model::Role;
use alto_test_support::{TestApp, ADMIN_PASSWORD, ADMIN_USER};

#[tokio::test]
async fn login_sets_a_strict_httponly_cookie_that_authenticates() {
    let app = TestApp::spawn().await;
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/api/v1/auth/login", app.base_url))
        .json(&serde_json::json!({ "username": ADMIN_USER, "password": ADMIN_PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("alto_session=alto_s_"), "{cookie}");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let pair = cookie.split(';').next().unwrap().to_owned();
    let me: serde_json::Value = http
        .get(format!("{}/api/v1/auth/me", app.base_url))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["username"], ADMIN_USER);
    assert_eq!(me["roles"], serde_json::json!(["platform_admin"]));
    assert!(me["tenant_id"].is_null());

    // Logout through the cookie ends the session for cookie and token alike.
    let r = http
        .post(format!("{}/api/v1/auth/logout", app.base_url))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = http
        .get(format!("{}/api/v1/auth/me", app.base_url))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn wrong_password_and_unknown_user_look_the_same() {
    let app = TestApp::spawn().await;
    let mut c = app.client();
    let a = c.login(ADMIN_USER, "wrong password here").await.unwrap_err();
    let b = c.login("nobody-here", "wrong password here").await.unwrap_err();
    assert_eq!(a.code(), Some("invalid_credentials"));
    assert_eq!(b.code(), Some("invalid_credentials"));
    assert_eq!(a.to_string(), b.to_string());
    // Both are in the platform audit chain as failures.
    let log = app
        .admin
        .list_audit(
            Scope::Platform,
            &AuditQuery {
                action: Some("auth.login".into()),
                outcome: Some("failure".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let names: Vec<_> = log.items.iter().filter_map(|e| e.actor_name.clone()).collect();
    assert!(
        names.contains(&"nobody-here".to_owned()) && names.contains(&ADMIN_USER.to_owned()),
        "{names:?}"
    );
}

#[tokio::test]
async fn repeated_failures_lock_the_name_until_the_lockout_ends() {
    let app = TestApp::spawn().await;
    let mut c = app.client();
    for _ in 0..5 {
        assert_eq!(
            c.login(ADMIN_USER, "not the password").await.unwrap_err().code(),
            Some("invalid_credentials")
        );
    }
    // Even the right password is refused while locked, with Retry-After.
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/auth/login", app.base_url))
        .json(&serde_json::json!({ "username": ADMIN_USER, "password": ADMIN_PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry), "{retry}");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_attempts");

    app.clock.advance(chrono::Duration::minutes(16));
    c.login(ADMIN_USER, ADMIN_PASSWORD).await.expect("lockout over");
}

#[tokio::test]
async fn sessions_expire_and_disabling_a_user_ends_them() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("Acme").await;
    let op = app.user_with(&t, "op1", &[Role::Operator]).await;
    op.me().await.unwrap();

    // Disable: the live session stops at once, and login is refused.
    let users = t.admin.list_users(Scope::Tenant(t.id), None, None).await.unwrap();
    let op_id = users.items.iter().find(|u| u.username == "op1").unwrap().id;
    t.admin
        .update_user(
            Scope::Tenant(t.id),
            op_id,
            &UpdateUser { disabled: Some(true), ..Default::default() },
        )
        .await
        .unwrap();
    assert_eq!(op.me().await.unwrap_err().code(), Some("unauthenticated"));
    assert_eq!(
        app.client().login("op1", ADMIN_PASSWORD).await.unwrap_err().code(),
        Some("invalid_credentials")
    );

    // Expiry: default TTL is 12 h.
    app.clock.advance(chrono::Duration::hours(11));
    t.admin.me().await.unwrap();
    app.clock.advance(chrono::Duration::hours(2));
    assert_eq!(t.admin.me().await.unwrap_err().code(), Some("unauthenticated"));
}

#[tokio::test]
async fn changing_the_password_ends_sessions_and_needs_the_current_one() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("Acme").await;
    let r = t
        .admin
        .request(reqwest::Method::POST, "/api/v1/auth/password")
        .json(&serde_json::json!({ "current_password": "wrong", "new_password": "a-brand-new-password" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = t
        .admin
        .request(reqwest::Method::POST, "/api/v1/auth/password")
        .json(&serde_json::json!({ "current_password": ADMIN_PASSWORD, "new_password": "short" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = t
        .admin
        .request(reqwest::Method::POST, "/api/v1/auth/password")
        .json(&serde_json::json!({ "current_password": ADMIN_PASSWORD, "new_password": "a-brand-new-password" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(t.admin.me().await.is_err(), "old session ended");
    app.login("acme-admin", "a-brand-new-password").await;
}

#[tokio::test]
async fn platform_staff_can_be_created_with_platform_roles_only() {
    let app = TestApp::spawn().await;
    let err = app
        .admin
        .create_user(
            Scope::Platform,
            &CreateUser {
                username: "ops".into(),
                password: ADMIN_PASSWORD.into(),
                display_name: None,
                roles: vec![Role::TenantAdmin],
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("validation_failed"));
    let u = app
        .admin
        .create_user(
            Scope::Platform,
            &CreateUser {
                username: "auditor@msp".into(),
                password: ADMIN_PASSWORD.into(),
                display_name: Some("MSP auditor".into()),
                roles: vec![Role::Auditor],
            },
        )
        .await
        .unwrap();
    assert_eq!(u.tenant_id, None);
    // The last platform admin cannot be demoted.
    let me = app.admin.me().await.unwrap();
    let err = app.admin.set_roles(Scope::Platform, me.user_id, &[Role::Support]).await.unwrap_err();
    assert_eq!(err.code(), Some("validation_failed"));
    assert_eq!(app.admin.me().await.unwrap().roles, vec![Role::PlatformAdmin]);
}

#[tokio::test]
async fn a_suspended_tenant_is_locked_out_until_reactivated() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("Acme").await;
    let (_, agent) = app.enrolled_host(&t, "fs1").await;
    let hb = alto_api_types::HeartbeatRequest {
        agent_version: "1".into(),
        os: None,
        hostname: None,
        volumes: vec![],
        on_access: None,
    };
    agent.heartbeat(&hb).await.unwrap();
    let upd = |s: &str| alto_api_types::UpdateTenant { name: None, status: Some(s.into()) };
    app.admin.update_tenant(t.id, &upd("suspended")).await.unwrap();
    assert_eq!(t.admin.me().await.unwrap_err().code(), Some("tenant_suspended"));
    assert_eq!(
        app.client().login("acme-admin", ADMIN_PASSWORD).await.unwrap_err().code(),
        Some("tenant_suspended")
    );
    assert_eq!(agent.heartbeat(&hb).await.unwrap_err().code(), Some("tenant_suspended"));
    // Tenant admins cannot lift it themselves (platform-only), platform admins can.
    app.admin.update_tenant(t.id, &upd("active")).await.unwrap();
    t.admin.me().await.unwrap();
    agent.heartbeat(&hb).await.unwrap();
    let err = t.admin.update_tenant(t.id, &upd("suspended")).await.unwrap_err();
    assert_eq!(err.code(), Some("not_found"));
}

/// Logs in as `username` from `source` (the server trusts `X-Forwarded-For` in these
/// tests); returns the status, the error code and `Retry-After`.
async fn login_from(
    app: &TestApp,
    source: &str,
    username: &str,
    password: &str,
) -> (u16, Option<String>, Option<u64>) {
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/auth/login", app.base_url))
        .header("x-forwarded-for", source)
        .json(&serde_json::json!({ "username": username, "password": password }))
        .send()
        .await
        .unwrap();
    let st = r.status().as_u16();
    let retry = r.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse().ok());
    let body: serde_json::Value = r.json().await.unwrap_or_default();
    (st, body["error"]["code"].as_str().map(str::to_owned), retry)
}

/// Nobody can lock another person out by guessing from their own address: five failures
/// lock that source out of that username (even the right password is refused there, with
/// `Retry-After`), with a growing backoff, while the owner logs in from elsewhere. Only many
/// failures from many sources lock the username for everyone.
#[tokio::test]
async fn failures_lock_the_source_not_the_account() {
    let app = TestApp::spawn_with(|c| {
        c.http.trust_forwarded_for = true;
        c.auth.max_failed_logins_global = 12;
    })
    .await;
    let attacker = "203.0.113.7";
    for _ in 0..5 {
        let (st, code, _) = login_from(&app, attacker, ADMIN_USER, "not the password").await;
        assert_eq!((st, code.as_deref()), (401, Some("invalid_credentials")));
    }
    let (st, code, retry) = login_from(&app, attacker, ADMIN_USER, ADMIN_PASSWORD).await;
    assert_eq!((st, code.as_deref()), (429, Some("too_many_attempts")));
    let first = retry.expect("Retry-After");
    assert!((1..=900).contains(&first), "{first}");
    // The real administrator, elsewhere, is not locked out.
    let (st, code, _) = login_from(&app, "198.51.100.1", ADMIN_USER, ADMIN_PASSWORD).await;
    assert_eq!((st, code), (200, None));
    // An IPv6 attacker cannot dodge the lock by changing addresses within its /64.
    for i in 0..5 {
        let src = format!("2001:db8:1:2::{i:x}");
        login_from(&app, &src, ADMIN_USER, "not the password").await;
    }
    let (st, _, _) = login_from(&app, "2001:db8:1:2::ffff", ADMIN_USER, ADMIN_PASSWORD).await;
    assert_eq!(st, 429);

    // After the lock, the next failure from the same source locks it again, for longer.
    app.clock.advance(chrono::Duration::minutes(16));
    let (st, _, _) = login_from(&app, attacker, ADMIN_USER, "not the password").await;
    assert_eq!(st, 401);
    let (st, code, retry) = login_from(&app, attacker, ADMIN_USER, ADMIN_PASSWORD).await;
    assert_eq!((st, code.as_deref()), (429, Some("too_many_attempts")));
    let second = retry.expect("Retry-After");
    assert!(second > first + 600, "the backoff grows: {first} s, then {second} s");
    // A quiet window after the lock ends forgives the source.
    app.clock.advance(chrono::Duration::minutes(31 + 16));
    let (st, _, _) = login_from(&app, attacker, ADMIN_USER, ADMIN_PASSWORD).await;
    assert_eq!(st, 200);

    // Distributed guessing: one failure each from many sources (each far below the
    // per-source limit) locks the username for everyone, the owner included.
    app.new_tenant("Acme").await;
    for i in 0..12 {
        let (st, _, _) =
            login_from(&app, &format!("10.0.{i}.1"), "acme-admin", "not the password").await;
        assert_eq!(st, 401);
    }
    let (st, code, retry) = login_from(&app, "198.51.100.1", "acme-admin", ADMIN_PASSWORD).await;
    assert_eq!((st, code.as_deref()), (429, Some("too_many_attempts")));
    assert!(retry.is_some());
    app.clock.advance(chrono::Duration::minutes(16));
    let (st, _, _) = login_from(&app, "198.51.100.1", "acme-admin", ADMIN_PASSWORD).await;
    assert_eq!(st, 200);
}
