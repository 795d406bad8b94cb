//! Health, readiness, metrics, OpenAPI, embedded start.

use alto_test_support::TestApp;

#[tokio::test]
async fn health_ready_metrics_and_openapi() {
    let app = TestApp::spawn().await;
    let http = reqwest::Client::new();
    let r = http.get(format!("{}/healthz", app.base_url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = http.get(format!("{}/readyz", app.base_url)).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // Make a request that shows up in metrics, then scrape.
    app.admin.me().await.unwrap();
    let text =
        http.get(format!("{}/metrics", app.base_url)).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("alto_http_requests_total"), "{text}");
    assert!(text.contains("route=\"/api/v1/auth/me\""), "{text}");
    assert!(text.contains("alto_http_request_duration_seconds_bucket"), "{text}");
    assert!(text.contains("alto_db_pool_connections"), "{text}");

    let doc: serde_json::Value = http
        .get(format!("{}/api/v1/openapi.json", app.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/v1/auth/login",
        "/api/v1/tenants/{tenant_id}/hosts",
        "/api/v1/agent/heartbeat",
        "/api/v1/tenants/{tenant_id}/audit/verify",
        "/api/v1/events",
    ] {
        assert!(doc["paths"].get(path).is_some(), "OpenAPI lacks {path}");
    }
    assert!(doc["components"]["schemas"].get("ErrorCode").is_some());
    // Parameters are where they are sent: a path parameter is in the path template (and every
    // template variable is a path parameter); everything else a handler reads from the URL is
    // a query parameter (generated clients and contract tests depend on it).
    let mut queries = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            for p in &params {
                let name = p["name"].as_str().unwrap();
                match p["in"].as_str().unwrap() {
                    "path" => assert!(
                        path.contains(&format!("{{{name}}}")),
                        "{method} {path}: `{name}` is declared a path parameter"
                    ),
                    "query" => queries += 1,
                    other => assert_eq!(other, "header", "{method} {path}: {name}"),
                }
            }
            for var in path.split('{').skip(1).filter_map(|s| s.split('}').next()) {
                assert!(
                    params.iter().any(|p| p["name"] == var && p["in"] == "path"),
                    "{method} {path}: `{var}` is not declared as a path parameter"
                );
            }
        }
    }
    let files = &doc["paths"]["/api/v1/tenants/{tenant_id}/inventory/files"]["get"]["parameters"];
    for q in ["path_prefix", "cursor", "limit", "accessed_before"] {
        assert!(
            files.as_array().unwrap().iter().any(|p| p["name"] == q && p["in"] == "query"),
            "inventory/files: {q} is a query parameter: {files}"
        );
    }
    // Every paginated list declares the one pair `limit` and `cursor`; `after` of a job's
    // files is the deprecated alias.
    for list in [
        "/api/v1/tenants",
        "/api/v1/tenants/{tenant_id}/users",
        "/api/v1/platform/users",
        "/api/v1/tenants/{tenant_id}/hosts",
        "/api/v1/tenants/{tenant_id}/scans",
        "/api/v1/tenants/{tenant_id}/inventory/files",
        "/api/v1/tenants/{tenant_id}/plans",
        "/api/v1/tenants/{tenant_id}/jobs",
        "/api/v1/tenants/{tenant_id}/jobs/{job_id}/files",
        "/api/v1/tenants/{tenant_id}/stubs",
        "/api/v1/tenants/{tenant_id}/audit",
        "/api/v1/platform/audit",
    ] {
        let params =
            doc["paths"][list]["get"]["parameters"].as_array().cloned().unwrap_or_default();
        for q in ["limit", "cursor"] {
            assert!(
                params.iter().any(|p| p["name"] == q && p["in"] == "query"),
                "{list}: {q} is a query parameter: {params:?}"
            );
        }
    }
    let jf = &doc["paths"]["/api/v1/tenants/{tenant_id}/jobs/{job_id}/files"]["get"]["parameters"];
    let after = jf.as_array().unwrap().iter().find(|p| p["name"] == "after").expect("after");
    assert_eq!(after["deprecated"], true, "{after}");
    assert!(queries >= 30, "only {queries} query parameters declared");
    app.shutdown().await;
}

#[tokio::test]
async fn server_with_embedded_postgres_starts_and_stops() {
    // No database URL: the server runs its own cluster under the data directory.
    let dir = tempfile::Builder::new().prefix("alto-embedded-").tempdir_in("/tmp").unwrap();
    let mut config =
        alto_server::Config { data_dir: dir.path().join("data"), ..Default::default() };
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    let clock = std::sync::Arc::new(alto_model::SystemClock);
    let app = alto_server::Application::build(config.clone(), clock.clone()).await.unwrap();
    let admin = app.initial_admin().cloned().expect("first start creates an admin");
    let pw_file = admin.password_file.clone().expect("generated password is saved");
    assert_eq!(std::fs::read_to_string(&pw_file).unwrap().trim(), admin.password);
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(&pw_file).unwrap().permissions().mode() & 0o777, 0o600);
    let url = format!("http://{}", app.local_addr());
    let stop = std::sync::Arc::new(tokio::sync::Notify::new());
    let s2 = stop.clone();
    let h = tokio::spawn(app.run(async move { s2.notified().await }));
    let mut c = alto_client::Client::new(&url).unwrap();
    c.login(&admin.username, &admin.password).await.unwrap();
    c.create_tenant(&alto_api_types::CreateTenant { name: "Persisted".into(), admin: None })
        .await
        .unwrap();
    stop.notify_one();
    h.await.unwrap().unwrap();

    // A second start reuses the cluster and its data and creates no second admin.
    let app = alto_server::Application::build(config, clock).await.unwrap();
    assert!(app.initial_admin().is_none());
    let url = format!("http://{}", app.local_addr());
    let stop = std::sync::Arc::new(tokio::sync::Notify::new());
    let s2 = stop.clone();
    let h = tokio::spawn(app.run(async move { s2.notified().await }));
    let mut c = alto_client::Client::new(&url).unwrap();
    c.login(&admin.username, &admin.password).await.unwrap();
    let tenants = c.list_tenants(None, None).await.unwrap();
    assert_eq!(tenants.items.len(), 1);
    assert_eq!(tenants.items[0].name, "Persisted");
    stop.notify_one();
    h.await.unwrap().unwrap();
}

#[test]
fn permissions_doc_matches_the_matrix() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/permissions.md"))
            .unwrap();
    let start = doc.find("<!-- matrix:start -->\n").unwrap() + "<!-- matrix:start -->\n".len();
    let end = doc.find("<!-- matrix:end -->").unwrap();
    let expected = alto_model::rbac::matrix_markdown();
    if doc[start..end] != expected {
        if std::env::var_os("ALTO_BLESS").is_some() {
            let fixed = format!("{}{}{}", &doc[..start], expected, &doc[end..]);
            std::fs::write(
                concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/permissions.md"),
                fixed,
            )
            .unwrap();
            return;
        }
        panic!("docs/permissions.md is stale; re-run with ALTO_BLESS=1:\n{expected}");
    }
}

#[test]
fn configuration_example_lists_every_key() {
    // The example file is the effective default configuration; a new key must be added there.
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/alto-server.example.toml"
    ))
    .unwrap();
    let parsed: alto_server::Config =
        toml::from_str(&example).expect("example parses with deny_unknown_fields");
    let defaults = alto_server::Config { data_dir: parsed.data_dir.clone(), ..Default::default() };
    assert_eq!(parsed, defaults);
    let rendered = toml::to_string_pretty(&alto_server::Config::default()).unwrap();
    for line in rendered.lines().filter(|l| l.contains(" = ")) {
        let key = line.split(" = ").next().unwrap();
        assert!(example.contains(&format!("{key} = ")), "example lacks `{key}`");
    }
}

/// `/metrics` is not open to whoever reaches the port: by default only loopback may scrape;
/// with `metrics.token`, anyone with the token may, and nobody else.
#[tokio::test]
async fn metrics_need_an_allowed_address_or_the_token() {
    const TOKEN: &str = "scrape-token-0123456789";
    let http = reqwest::Client::new();
    let scrape = |app: &TestApp, from: Option<&str>, token: Option<&str>| {
        let mut rb = http.get(format!("{}/metrics", app.base_url));
        if let Some(f) = from {
            rb = rb.header("x-forwarded-for", f);
        }
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        async move {
            let r = rb.send().await.unwrap();
            let st = r.status().as_u16();
            let text = r.text().await.unwrap();
            let code = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["error"]["code"].as_str().map(str::to_owned));
            (st, code, text)
        }
    };
    // Default: loopback scrapes, a remote client (behind the trusted proxy) does not.
    let app = TestApp::spawn_with(|c| c.http.trust_forwarded_for = true).await;
    let (st, _, text) = scrape(&app, None, None).await;
    assert_eq!(st, 200);
    assert!(text.contains("alto_http_requests_total"), "{text}");
    let (st, code, text) = scrape(&app, Some("203.0.113.9"), None).await;
    assert_eq!((st, code.as_deref()), (403, Some("forbidden")), "{text}");
    assert!(!text.contains("alto_http_requests_total"));
    drop(app);
    // With a token and no address list: the token, and only it.
    let app = TestApp::spawn_with(|c| {
        c.metrics.token = Some(TOKEN.into());
        c.metrics.allow_from.clear();
    })
    .await;
    let (st, code, _) = scrape(&app, None, None).await;
    assert_eq!((st, code.as_deref()), (401, Some("unauthenticated")));
    let (st, code, _) = scrape(&app, None, Some("scrape-token-wrong-000")).await;
    assert_eq!((st, code.as_deref()), (401, Some("unauthenticated")));
    let (st, _, text) = scrape(&app, None, Some(TOKEN)).await;
    assert_eq!(st, 200);
    assert!(text.contains("alto_http_requests_total"), "{text}");
}
