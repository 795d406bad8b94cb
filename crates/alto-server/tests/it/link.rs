//! The agent link: a real gRPC client over TLS (trusting only the CA the server hands out)
//! talks to the server's link as an agent would.

use std::time::Duration;

use alto_link::pb::{self, agent_message, request, server_message};
use alto_link::tonic;
use alto_test_support::{api, file_record, TestApp};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::sync::mpsc;

const SHA: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

/// One agent session: messages out, messages in.
struct Session {
    tx: mpsc::Sender<pb::AgentMessage>,
    rx: tonic::Streaming<pb::ServerMessage>,
    next: u64,
}

async fn open(app: &TestApp, credential: &str, hello: pb::Hello) -> Result<Session, tonic::Status> {
    let info = app.state.link_info.clone().expect("the link is enabled");
    assert!(info.url.starts_with("https://127.0.0.1:"), "{}", info.url);
    let tls = alto_link::tls::client_config(&info.ca_pem, "127.0.0.1");
    let ch = tonic::transport::Endpoint::from_shared(info.url.clone())
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .expect("TLS connection with the handed-out CA");
    let mut client = pb::agent_link_client::AgentLinkClient::new(ch);
    let (tx, rx) = mpsc::channel(16);
    tx.send(pb::AgentMessage { body: Some(agent_message::Body::Hello(hello)) }).await.unwrap();
    let mut req = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    req.metadata_mut().insert("authorization", format!("Bearer {credential}").parse().unwrap());
    let rx = client.session(req).await?.into_inner();
    Ok(Session { tx, rx, next: 1 })
}

fn hello(running: &[String]) -> pb::Hello {
    pb::Hello {
        agent_version: "0.1.0-test".into(),
        capabilities: vec!["tier".into()],
        running_jobs: running.to_vec(),
        max_jobs: 1,
        resume: true,
    }
}

impl Session {
    async fn recv(&mut self) -> server_message::Body {
        let m = tokio::time::timeout(Duration::from_secs(15), self.rx.message())
            .await
            .expect("a message within 15 s")
            .expect("stream ok")
            .expect("stream open");
        m.body.expect("a body")
    }

    async fn welcome(&mut self) -> pb::Welcome {
        match self.recv().await {
            server_message::Body::Welcome(w) => w,
            other => panic!("expected Welcome, got {other:?}"),
        }
    }

    async fn offer(&mut self) -> Value {
        loop {
            match self.recv().await {
                server_message::Body::Offer(o) => {
                    return serde_json::from_slice(&o.job_json).unwrap()
                }
                server_message::Body::Reply(_) => continue,
                other => panic!("expected an offer, got {other:?}"),
            }
        }
    }

    async fn call(&mut self, call: request::Call) -> pb::reply::Result {
        let id = self.next;
        self.next += 1;
        let m = pb::AgentMessage {
            body: Some(agent_message::Body::Request(pb::Request { id, call: Some(call) })),
        };
        self.tx.send(m).await.unwrap();
        loop {
            if let server_message::Body::Reply(r) = self.recv().await {
                assert_eq!(r.id, id, "replies come in order");
                return r.result.expect("a result");
            }
        }
    }
}

async fn job_state(t: &alto_test_support::TestTenant, jid: &str) -> Value {
    let (_, j) = api(&t.admin, Method::GET, &format!("/tenants/{}/jobs/{jid}", t.id), None).await;
    j
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_get_jobs_pushed_report_on_the_stream_and_get_cancels_and_lost_jobs_back() {
    let app = TestApp::spawn_with(|c| {
        c.link.heartbeat_interval = Duration::from_millis(200);
        c.link.lease = Duration::from_secs(2);
        c.link.dispatch_interval = Duration::from_millis(200);
    })
    .await;
    let t = app.new_tenant("Acme").await;
    let (host, agent) = app.enrolled_host(&t, "fs1").await;
    let (_, other) = app.enrolled_host(&t, "fs2").await;
    let credential = agent.token().unwrap().to_owned();

    // The enrollment answer and GET /agent/link name the link and its CA.
    let (st, info) = api(&agent, Method::GET, "/agent/link", None).await;
    assert_eq!(st, 200, "{info}");
    assert!(info["ca_pem"].as_str().unwrap().contains("BEGIN CERTIFICATE"));
    let (st, _) = api(&app.client(), Method::GET, "/agent/link", None).await;
    assert_eq!(st, 401, "only agents learn where the link is");

    // A wrong credential, or no Hello first, is refused.
    let err = open(&app, "alto_h_not-a-real-credential", hello(&[])).await.err().unwrap();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");

    let mut s = open(&app, &credential, hello(&[])).await.unwrap();
    let w = s.welcome().await;
    assert_eq!(w.host_id, host.to_string());
    assert_eq!(w.tenant_id, t.id.to_string());
    assert_eq!((w.max_jobs, w.lease_ms), (1, 2000));
    assert!(app.state.link.is_online(host));
    // Another host's agent connected at the same time gets none of this host's work.
    let mut o = open(&app, other.token().unwrap(), hello(&[])).await.unwrap();
    o.welcome().await;

    // Files, a rule, a plan: the job is pushed without the agent asking.
    app.plan_manually_only(&t).await;
    let now = app.clock_now().timestamp_micros();
    let recs: Vec<_> = (0..6)
        .map(|i| file_record(format!("/srv/f{i}.bin").as_bytes(), 100_000, now, 400))
        .collect();
    app.scan_files(&t, &agent, &recs).await;
    let tp = format!("/tenants/{}", t.id);
    app.tier_everything(&t, "default", None).await;
    let (st, plan) =
        api(&t.admin, Method::POST, &format!("{tp}/plans"), Some(json!({ "max_files": 3 }))).await;
    assert_eq!(st, 201, "{plan}");
    let job = s.offer().await;
    let jid = job["job_id"].as_str().unwrap().to_owned();
    assert_eq!(job["host_id"], host.to_string());
    assert_eq!(job["files"].as_array().unwrap().len(), 3, "{job}");
    assert_eq!(job["storage_target"]["kind"], "directory");
    assert_eq!(job_state(&t, &jid).await["state"], "running");

    // Progress, staged, a refused result, all on the stream in order.
    let r = s
        .call(request::Call::Progress(pb::Progress {
            job_id: jid.clone(),
            files_done: 1,
            bytes_done: 10,
        }))
        .await;
    assert!(
        matches!(r, pb::reply::Result::Ok(ref ok) if !ok.cancel && ok.lease_expires_at_ms > 0),
        "{r:?}"
    );
    let staged = |seq: i64, outcome: pb::Outcome| pb::FileResults {
        job_id: jid.clone(),
        results: vec![pb::FileResult {
            seq,
            outcome: outcome as i32,
            sha256: Some(SHA.into()),
            object_key: Some(SHA.into()),
            stored_size: Some(100_000),
            error: None,
        }],
    };
    let r = s.call(request::Call::Files(staged(0, pb::Outcome::Staged))).await;
    assert!(matches!(r, pb::reply::Result::Ok(ref ok) if ok.accepted == 1), "{r:?}");
    let r = s.call(request::Call::Files(staged(1, pb::Outcome::Stubbed))).await;
    match r {
        pb::reply::Result::Error(e) => {
            assert_eq!(e.code, "conflict", "{e:?}");
            assert!(!e.retryable);
        }
        other => panic!("stubbed before staged must be refused: {other:?}"),
    }
    let r = s.call(request::Call::Files(staged(0, pb::Outcome::Stubbed))).await;
    assert!(matches!(r, pb::reply::Result::Ok(_)), "{r:?}");
    let bad = s
        .call(request::Call::Progress(pb::Progress { job_id: "nope".into(), ..Default::default() }))
        .await;
    assert!(
        matches!(bad, pb::reply::Result::Error(ref e) if e.code == "validation_failed"),
        "{bad:?}"
    );

    // An operator cancels: the agent hears it at once, not at its next progress call.
    let (st, _) = api(&t.admin, Method::POST, &format!("{tp}/jobs/{jid}/cancel"), None).await;
    assert_eq!(st, 200);
    loop {
        match s.recv().await {
            server_message::Body::Cancel(c) => {
                assert_eq!(c.job_id, jid);
                break;
            }
            server_message::Body::Reply(_) => {}
            other => panic!("expected Cancel, got {other:?}"),
        }
    }
    let r = s
        .call(request::Call::Complete(pb::Complete {
            job_id: jid.clone(),
            state: pb::JobEnd::Cancelled as i32,
            error: None,
        }))
        .await;
    assert!(matches!(r, pb::reply::Result::Ok(_)), "{r:?}");
    assert_eq!(job_state(&t, &jid).await["state"], "cancelled");

    // The slot is free: the next job is pushed. Then the agent vanishes.
    let (st, _) = api(&t.admin, Method::POST, &format!("{tp}/plans"), Some(json!({}))).await;
    assert_eq!(st, 201);
    let job2 = s.offer().await;
    let jid2 = job2["job_id"].as_str().unwrap().to_owned();
    drop(s);
    for _ in 0..50 {
        if !app.state.link.is_online(host) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!app.state.link.is_online(host), "the server noticed the stream ended");
    // No heartbeat extends the lease; once it ran out the job is queued again for its host.
    app.clock.advance(chrono::Duration::seconds(30));
    let mut state = Value::Null;
    for _ in 0..50 {
        state = job_state(&t, &jid2).await["state"].clone();
        if state == "queued" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(state, "queued", "a vanished agent's job goes back to the queue");

    // The agent comes back and is offered the job again.
    let mut s = open(&app, &credential, hello(&[])).await.unwrap();
    s.welcome().await;
    let again = s.offer().await;
    assert_eq!(again["job_id"], jid2.as_str());

    // A second stream of the same host replaces the first, which is closed; a job the agent
    // says it runs is not offered again.
    let mut s2 = open(&app, &credential, hello(std::slice::from_ref(&jid2))).await.unwrap();
    s2.welcome().await;
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match s.rx.message().await {
                Err(st) => return st.code(),
                Ok(None) => return tonic::Code::Ok,
                Ok(Some(_)) => {}
            }
        }
    })
    .await
    .expect("the replaced stream ends");
    assert_eq!(closed, tonic::Code::Aborted);
    let nothing = tokio::time::timeout(Duration::from_millis(1500), s2.rx.message()).await;
    assert!(nothing.is_err(), "no offer of a job the agent runs: {nothing:?}");
    // The other host never saw an offer.
    let none = tokio::time::timeout(Duration::from_millis(300), o.rx.message()).await;
    assert!(none.is_err(), "{none:?}");
}

/// Recall reports and the on-access status travel over the link too, and meet the same
/// domain operations as over REST (same answer, same audit entry, same refusals).
#[tokio::test]
async fn recall_reports_and_the_on_access_status_travel_over_the_link() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("Acme").await;
    let (host, agent) = app.enrolled_host(&t, "fs1").await;
    let credential = agent.token().unwrap().to_owned();
    let mut s = open(&app, &credential, hello(&[])).await.unwrap();
    s.welcome().await;

    let status = alto_api_types::OnAccessStatus {
        state: "unsupported".into(),
        reason: Some("kernel 6.1 has no pre-content events".into()),
        survives_restart: false,
        filesystems: vec![],
    };
    s.tx.send(pb::AgentMessage {
        body: Some(agent_message::Body::OnAccess(alto_link::convert::on_access_to_pb(&status))),
    })
    .await
    .unwrap();
    let mut stored = None;
    for _ in 0..50 {
        stored = t.admin.get_host(t.id, host).await.unwrap().on_access;
        if stored.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stored, Some(status));

    let report: alto_api_types::Recalled = serde_json::from_value(json!({
        "path": "/srv/unknown.bin", "sha256": SHA, "trigger": "on_access", "outcome": "recalled",
        "process": { "pid": 1, "exe": "/usr/bin/less", "uid": 0, "user": "root" } }))
    .unwrap();
    match s.call(request::Call::Recall(alto_link::convert::recall_to_pb(&report))).await {
        pb::reply::Result::Ok(ok) => {
            let answer = alto_link::convert::recorded_from_ok(&ok).unwrap();
            assert!(!answer.recorded && !answer.duplicate && answer.state.is_none(), "{answer:?}");
        }
        other => panic!("expected Ok, got {other:?}"),
    }
    let (_, audit) =
        api(&t.admin, Method::GET, &format!("/tenants/{}/audit?action=stub.recall", t.id), None)
            .await;
    assert_eq!(audit["items"][0]["details"]["process"]["exe"], "/usr/bin/less", "{audit}");
    // A report that does not fit is refused with the REST API's code.
    let bad = pb::Recall { recalled_json: br#"{"path": "/x", "sha256": "nothex"}"#.to_vec() };
    match s.call(request::Call::Recall(bad)).await {
        pb::reply::Result::Error(e) => assert_eq!(e.code, "validation_failed", "{e:?}"),
        other => panic!("expected an error, got {other:?}"),
    }
}
