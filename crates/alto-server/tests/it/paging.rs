//! Every paginated list pages the same way: `?limit=` (1 to 1000) and one opaque cursor that
//! names its list. A cursor of another list, or a garbled one, is `400 invalid_query` and
//! changes nothing; a job's files still accept the deprecated `after`.

use alto_test_support::{api, file_record, TestApp};
use reqwest::Method;
use serde_json::Value;

#[tokio::test]
async fn a_cursor_works_only_on_its_own_list() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("Acme").await;
    let (_host, agent) = app.enrolled_host(&t, "fs1").await;
    app.enrolled_host(&t, "fs2").await;
    let tp = format!("/tenants/{}", t.id);
    app.plan_manually_only(&t).await;
    let now = app.clock_now().timestamp_micros();
    let recs: Vec<_> =
        (0..5).map(|i| file_record(format!("/srv/f{i}").as_bytes(), 10_000, now, 400)).collect();
    app.scan_files(&t, &agent, &recs).await;
    let user = serde_json::json!({ "username": "reader", "password": "a long password!",
        "roles": ["auditor"] });
    let (st, v) = api(&t.admin, Method::POST, &format!("{tp}/users"), Some(user)).await;
    assert_eq!(st, 201, "{v}");
    app.tier_everything(&t, "default", None).await;
    let plan = app.plan_now(&t).await;
    let (_, jobs) =
        api(&t.admin, Method::GET, &format!("{tp}/jobs?plan_id={}", plan.id), None).await;
    let jid = jobs["items"][0]["id"].as_str().expect("a job").to_owned();

    // A first page of one item of each list, and its cursor.
    let lists = [
        format!("{tp}/hosts"),
        format!("{tp}/users"),
        format!("{tp}/inventory/files"),
        format!("{tp}/audit"),
        format!("{tp}/jobs?kind=all"),
        format!("{tp}/jobs/{jid}/files"),
    ];
    let mut cursors = Vec::new();
    for l in &lists {
        let sep = if l.contains('?') { '&' } else { '?' };
        let (st, page) = api(&t.admin, Method::GET, &format!("{l}{sep}limit=1"), None).await;
        assert_eq!(st, 200, "{l}: {page}");
        assert_eq!(page["items"].as_array().map(Vec::len), Some(1), "{l}: {page}");
        let c = page["next_cursor"].as_str().unwrap_or_else(|| panic!("{l}: {page}")).to_owned();
        cursors.push(c);
    }
    let every_list = [
        lists.to_vec(),
        vec![
            format!("{tp}/scans"),
            format!("{tp}/plans"),
            format!("{tp}/stubs"),
            "/tenants".into(),
        ],
    ]
    .concat();
    for (i, own) in lists.iter().enumerate() {
        let c = &cursors[i];
        for l in &every_list {
            let sep = if l.contains('?') { '&' } else { '?' };
            let (st, v) = api(&t.admin, Method::GET, &format!("{l}{sep}cursor={c}"), None).await;
            if l == own {
                assert_eq!(st, 200, "{l} with its own cursor: {v}");
                assert!(!v["items"].as_array().expect("items").is_empty(), "{l}: {v}");
            } else {
                assert_eq!(st, 400, "{l} with the cursor of {own}: {v}");
                assert_eq!(v["error"]["code"], "invalid_query", "{l}: {v}");
            }
        }
    }
    for garbled in ["garbage!", "e30", "eyJ2IjoxfQ", "%27%3B--", "AAAA"] {
        for l in &every_list {
            let sep = if l.contains('?') { '&' } else { '?' };
            let (st, v) =
                api(&t.admin, Method::GET, &format!("{l}{sep}cursor={garbled}"), None).await;
            assert_eq!(
                (st, v["error"]["code"].clone()),
                (400, Value::from("invalid_query")),
                "{l} {garbled}: {v}"
            );
        }
    }
    // Nothing changed: the lists answer as before.
    let (_, hosts) = api(&t.admin, Method::GET, &format!("{tp}/hosts"), None).await;
    assert_eq!(hosts["items"].as_array().map(Vec::len), Some(2), "{hosts}");
    for l in &every_list {
        let sep = if l.contains('?') { '&' } else { '?' };
        for limit in ["0", "1001", "-1"] {
            let (st, v) = api(&t.admin, Method::GET, &format!("{l}{sep}limit={limit}"), None).await;
            assert_eq!(
                (st, v["error"]["code"].clone()),
                (400, Value::from("invalid_query")),
                "{l} limit={limit}: {v}"
            );
        }
        let (st, v) = api(&t.admin, Method::GET, &format!("{l}{sep}limit=1000"), None).await;
        assert_eq!(st, 200, "{l}: {v}");
    }

    // A job's files: cursor and the deprecated `after` give the same pages; not both.
    let files = format!("{tp}/jobs/{jid}/files");
    let (_, all) = api(&t.admin, Method::GET, &files, None).await;
    let all = all["items"].as_array().expect("files").clone();
    assert_eq!(all.len(), 5);
    let mut by_cursor = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let q = next.as_ref().map_or(String::new(), |c| format!("&cursor={c}"));
        let (st, p) = api(&t.admin, Method::GET, &format!("{files}?limit=2{q}"), None).await;
        assert_eq!(st, 200, "{p}");
        by_cursor.extend(p["items"].as_array().expect("items").iter().cloned());
        match p["next_cursor"].as_str() {
            Some(c) => next = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(by_cursor, all);
    let seq1 = all[1]["seq"].as_i64().expect("seq");
    let (st, p) = api(&t.admin, Method::GET, &format!("{files}?after={seq1}&limit=2"), None).await;
    assert_eq!(st, 200, "{p}");
    assert_eq!(p["items"].as_array().expect("items")[..], all[2..4]);
    assert!(p["next_cursor"].is_string(), "{p}");
    let c = p["next_cursor"].as_str().expect("cursor");
    let (st, v) =
        api(&t.admin, Method::GET, &format!("{files}?after={seq1}&cursor={c}"), None).await;
    assert_eq!((st, v["error"]["code"].clone()), (400, Value::from("invalid_query")), "{v}");
}
