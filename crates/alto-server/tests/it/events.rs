//! The live event WebSocket: authenticated, tenant-scoped.

use std::time::Duration;

use alto_api_types::{CreateHost, HeartbeatRequest};
use alto_test_support::TestApp;
use futures::StreamExt as _;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(
    app: &TestApp,
    token: Option<&str>,
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let mut req = format!("ws://{}/api/v1/events", app.addr).into_client_request().unwrap();
    if let Some(t) = token {
        req.headers_mut().insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    tokio_tungstenite::connect_async(req).await.map(|(ws, _)| ws)
}

/// Collects JSON events until `quiet` passes with none.
async fn drain(ws: &mut Ws, quiet: Duration) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    while let Ok(Some(Ok(msg))) = tokio::time::timeout(quiet, ws.next()).await {
        if let Message::Text(t) = msg {
            out.push(serde_json::from_str(&t).unwrap());
        }
    }
    out
}

#[tokio::test]
async fn events_are_tenant_scoped_and_need_authentication() {
    let app = TestApp::spawn().await;
    let a = app.new_tenant("Alpha").await;
    let b = app.new_tenant("Beta").await;
    assert!(connect(&app, None).await.is_err(), "anonymous upgrade refused");
    let mut ws_a = connect(&app, a.admin.token()).await.unwrap();
    let mut ws_b = connect(&app, b.admin.token()).await.unwrap();
    let mut ws_p = connect(&app, app.admin.token()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let created = a
        .admin
        .create_host(a.id, &CreateHost { name: "fs1".into(), description: None })
        .await
        .unwrap();
    let issued = app
        .client()
        .enroll(&alto_api_types::EnrollRequest {
            token: created.enrollment.token,
            hostname: "fs1".into(),
            agent_version: "1".into(),
            os: None,
        })
        .await
        .unwrap();
    app.client()
        .with_token(issued.credential)
        .heartbeat(&HeartbeatRequest {
            agent_version: "1".into(),
            os: None,
            hostname: None,
            volumes: vec![],
            on_access: None,
        })
        .await
        .unwrap();

    let got_a = drain(&mut ws_a, Duration::from_millis(700)).await;
    let got_b = drain(&mut ws_b, Duration::from_millis(200)).await;
    let got_p = drain(&mut ws_p, Duration::from_millis(200)).await;
    let actions: Vec<&str> = got_a.iter().filter_map(|e| e["action"].as_str()).collect();
    assert!(
        actions.contains(&"host.create")
            && actions.contains(&"host.enroll")
            && actions.contains(&"host.online"),
        "{got_a:?}"
    );
    assert!(
        got_a.iter().any(|e| e["type"] == "host_status" && e["status"] == "online"),
        "{got_a:?}"
    );
    assert!(got_a.iter().all(|e| e["customer_id"] == serde_json::json!(a.id)), "{got_a:?}");
    assert!(got_b.is_empty(), "tenant B saw tenant A's events: {got_b:?}");
    assert!(
        got_p.iter().any(|e| e["customer_id"] == serde_json::json!(a.id)),
        "platform staff see all: {got_p:?}"
    );
}

/// Waits (up to `within`) for the server to close `ws`; returns the events delivered before
/// and the close frame's code and reason.
async fn until_closed(
    ws: &mut Ws,
    within: Duration,
) -> (Vec<serde_json::Value>, Option<(u16, String)>) {
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => panic!("the socket stayed open {within:?}; delivered: {events:?}"),
            Ok(None) | Ok(Some(Err(_))) => return (events, None),
            Ok(Some(Ok(Message::Close(frame)))) => {
                return (events, frame.map(|f| (u16::from(f.code), f.reason.to_string())))
            }
            Ok(Some(Ok(Message::Text(t)))) => events.push(serde_json::from_str(&t).unwrap()),
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// Suspending a tenant closes its users' open sockets: nothing of the tenant's is delivered
/// after the suspension (the events of the suspension included), and every socket of the
/// tenant closes. Other tenants' sockets stay open.
#[tokio::test]
async fn suspending_the_tenant_closes_its_open_sockets() {
    let app = TestApp::spawn().await;
    let a = app.new_tenant("Alpha").await;
    let b = app.new_tenant("Beta").await;
    let mut ws_a = connect(&app, a.admin.token()).await.unwrap();
    let mut ws_idle = connect(&app, a.admin.token()).await.unwrap();
    let mut ws_b = connect(&app, b.admin.token()).await.unwrap();
    // Older than the freshness window of the upgrade's own check.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let suspend = alto_api_types::UpdateTenant { name: None, status: Some("suspended".into()) };
    app.admin.update_tenant(a.id, &suspend).await.unwrap();
    // The platform keeps producing events in the suspended tenant.
    for i in 0..3 {
        let _ = app
            .admin
            .create_host(a.id, &CreateHost { name: format!("late-{i}"), description: None })
            .await;
    }
    let (got, close) = until_closed(&mut ws_a, Duration::from_secs(3)).await;
    assert!(got.is_empty(), "events delivered after the suspension: {got:?}");
    assert_eq!(close, Some((1008, "tenant suspended".to_owned())));
    let started = std::time::Instant::now();
    let (_, close) = until_closed(&mut ws_idle, Duration::from_secs(8)).await;
    assert_eq!(close.map(|c| c.0), Some(1008), "after {:?}", started.elapsed());
    // Beta is untouched: its socket still delivers its own events.
    b.admin.create_host(b.id, &CreateHost { name: "fs1".into(), description: None }).await.unwrap();
    let got_b = drain(&mut ws_b, Duration::from_millis(700)).await;
    assert!(got_b.iter().any(|e| e["action"] == "host.create"), "{got_b:?}");
    // The suspended tenant's token cannot open a new socket either.
    assert!(connect(&app, a.admin.token()).await.is_err());
}
