//! Hostile and malformed input: every refusal is a 4xx with a stable code and a request id,
//! never a 500, and nothing is written.

use alto_client::Scope;
use alto_test_support::TestApp;
use reqwest::Method;

async fn call(
    app: &TestApp,
    m: Method,
    path: &str,
    ct: Option<&str>,
    body: Option<Vec<u8>>,
) -> (u16, serde_json::Value) {
    let mut rb = app.admin.request(m, path);
    if let Some(ct) = ct {
        rb = rb.header("content-type", ct);
    }
    if let Some(b) = body {
        rb = rb.body(b);
    }
    let r = rb.send().await.unwrap();
    let s = r.status().as_u16();
    let text = r.text().await.unwrap();
    (s, serde_json::from_str(&text).unwrap_or_else(|_| serde_json::json!({ "raw": text })))
}

#[tokio::test]
async fn malformed_requests_get_stable_codes_and_change_nothing() {
    let app = TestApp::spawn().await;
    let json = Some("application/json");
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(2 * 1024 * 1024)).into_bytes();
    let cases: Vec<(Method, &str, Option<&str>, Option<Vec<u8>>, u16, &str)> = vec![
        (Method::POST, "/api/v1/tenants", json, Some(b"{\"name\": ".to_vec()), 400, "invalid_json"),
        (Method::POST, "/api/v1/tenants", json, Some(b"[1,2,3]".to_vec()), 400, "invalid_json"),
        (
            Method::POST,
            "/api/v1/tenants",
            json,
            Some(b"{\"name\": 42}".to_vec()),
            400,
            "invalid_json",
        ),
        (
            Method::POST,
            "/api/v1/tenants",
            json,
            Some(b"{\"name\": \"A\", \"evil\": true}".to_vec()),
            400,
            "invalid_json",
        ),
        (Method::POST, "/api/v1/tenants", json, Some(vec![0xff, 0xfe, 0x00]), 400, "invalid_json"),
        (
            Method::POST,
            "/api/v1/tenants",
            Some("text/plain"),
            Some(b"{\"name\": \"A\"}".to_vec()),
            415,
            "unsupported_media_type",
        ),
        (Method::POST, "/api/v1/tenants", json, Some(big), 413, "payload_too_large"),
        (
            Method::POST,
            "/api/v1/tenants",
            json,
            Some(b"{\"name\": \"\"}".to_vec()),
            400,
            "validation_failed",
        ),
        (
            Method::POST,
            "/api/v1/tenants",
            json,
            Some(b"{\"name\": \"a\\nb\"}".to_vec()),
            400,
            "validation_failed",
        ),
        (
            Method::POST,
            "/api/v1/tenants",
            json,
            Some(
                br#"{"name": "T", "admin": {"username": "x", "password": "short", "roles": []}}"#
                    .to_vec(),
            ),
            400,
            "validation_failed",
        ),
        (Method::GET, "/api/v1/tenants/not-a-uuid", None, None, 400, "invalid_id"),
        (Method::GET, "/api/v1/tenants/1'%20OR%20'1'='1", None, None, 400, "invalid_id"),
        (
            Method::GET,
            "/api/v1/tenants/00000000-0000-0000-0000-000000000000",
            None,
            None,
            404,
            "not_found",
        ),
        (Method::GET, "/api/v1/tenants?limit=0", None, None, 400, "invalid_query"),
        (Method::GET, "/api/v1/tenants?limit=abc", None, None, 400, "invalid_query"),
        (Method::GET, "/api/v1/tenants?cursor=%27%3B--", None, None, 400, "invalid_query"),
        (Method::GET, "/api/v1/nope", None, None, 404, "not_found"),
        (Method::DELETE, "/api/v1/tenants", None, None, 405, "method_not_allowed"),
        (
            Method::PATCH,
            "/api/v1/tenants/00000000-0000-0000-0000-000000000000",
            json,
            Some(b"{\"status\": \"deleted\"}".to_vec()),
            400,
            "validation_failed",
        ),
    ];
    for (m, path, ct, body, want_status, want_code) in cases {
        let (s, b) = call(&app, m.clone(), path, ct, body).await;
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (want_status, Some(want_code)),
            "{m} {path}: {b}"
        );
        assert!(
            b["error"]["request_id"].as_str().is_some_and(|r| r.len() == 36),
            "{m} {path}: {b}"
        );
    }
    // Nothing was created by any of them (the invalid-admin case must not leave a tenant).
    assert!(app.admin.list_tenants(None, None).await.unwrap().items.is_empty());
}

#[tokio::test]
async fn sql_metacharacters_are_data_not_code() {
    let app = TestApp::spawn().await;
    let name = "Robert'); DROP TABLE customers;-- \"quoted\" \\ %_";
    let t = app
        .admin
        .create_tenant(&alto_api_types::CreateTenant { name: name.into(), admin: None })
        .await
        .unwrap();
    assert_eq!(app.admin.get_tenant(t.tenant.id).await.unwrap().name, name);
    assert_eq!(app.admin.list_tenants(None, None).await.unwrap().items.len(), 1);
    let err = app.client().login("admin' OR '1'='1", "' OR '1'='1").await.unwrap_err();
    assert_eq!(err.code(), Some("invalid_credentials"));
    let err = app
        .admin
        .create_user(
            Scope::Tenant(t.tenant.id),
            &alto_api_types::CreateUser {
                username: "x'; DROP TABLE users;--".into(),
                password: "long enough password".into(),
                display_name: None,
                roles: vec![alto_model::Role::Operator],
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("validation_failed"));
}

#[tokio::test]
async fn bad_credentials_of_every_shape_are_401() {
    let app = TestApp::spawn().await;
    for auth in [
        "",
        "Bearer",
        "Bearer ",
        "Bearer alto_s_x",
        "Basic YWRtaW46YWRtaW4=",
        "Bearer alto_s_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "Bearer alto_h_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        let r = reqwest::Client::new()
            .get(format!("{}/api/v1/auth/me", app.base_url))
            .header("authorization", auth)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{auth}");
        let b: serde_json::Value = r.json().await.unwrap();
        assert_eq!(b["error"]["code"], "unauthenticated");
    }
    let r = reqwest::Client::new()
        .get(format!("{}/api/v1/auth/me", app.base_url))
        .header("cookie", "alto_session=alto_s_garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}
