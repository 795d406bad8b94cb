//! `altoctl storage …` end to end: create from a config file, `--set` and secret files,
//! `test` (exit code by outcome) against a real S3 server (moto), `list`/`get` showing
//! health, `update`, with `--output json` throughout and secrets never printed. A module of
//! `cli.rs`, sharing its helpers.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_targets_are_created_tested_listed_and_updated() {
    let app = TestApp::spawn().await;
    app.new_tenant("Wayne").await;
    let cli = Altoctl::new();
    cli.login(&app, "wayne-admin", ADMIN_PASSWORD).await.ok();
    let dir = tempfile::tempdir().expect("tempdir");

    // Secrets never on the command line.
    let refused = cli
        .run(&[
            "storage",
            "create",
            "x",
            "--kind",
            "s3",
            "--location",
            "s3://b",
            "--set",
            "secret_access_key=oops",
        ])
        .await;
    assert_eq!(refused.code, 1, "{refused:#?}");
    assert!(refused.stderr.contains("--secret secret_access_key=FILE"), "{refused:#?}");

    // Validation errors come from the server and name the field.
    let bad = cli
        .run(&[
            "storage",
            "create",
            "x",
            "--kind",
            "s3",
            "--location",
            "s3://b",
            "--set",
            "colour=blue",
        ])
        .await;
    assert_eq!(bad.code, 1, "{bad:#?}");
    assert!(bad.stderr.contains("config.colour") && bad.stderr.contains("(validation_failed)"));

    // A directory only the hosts see: the server cannot check it (exit code 4).
    cli.run(&["storage", "create", "hosts-only", "--kind", "directory", "--location", "tier2/x"])
        .await
        .ok();
    let unchecked = cli.run(&["storage", "test", "hosts-only", "-o", "json"]).await;
    assert_eq!(unchecked.code, 4, "{unchecked:#?}");
    assert_eq!(unchecked.json()["status"], "unchecked");

    let Some(moto) = alto_test_services::Moto::start() else { return };
    moto.create_bucket("tier");
    let spec = moto.spec("s3://tier/site-a");
    // The config file holds everything but the secret, which comes from standard input.
    let mut config = spec["config"].clone();
    config.as_object_mut().expect("object").remove("secret_access_key");
    let cfg = dir.path().join("s3.json");
    std::fs::write(&cfg, serde_json::to_vec(&config).expect("json")).expect("write config");
    let created = cli
        .run_with(
            &[
                "storage",
                "create",
                "archive",
                "--kind",
                "s3",
                "--location",
                "s3://tier/site-a",
                "--config-file",
                cfg.to_str().expect("utf-8"),
                "--secret-stdin",
                "secret_access_key",
                "-o",
                "json",
            ],
            Some(&format!("{}\n", alto_test_services::S3_SECRET_KEY)),
        )
        .await
        .ok();
    assert!(!created.stdout.contains(alto_test_services::S3_SECRET_KEY), "{created:#?}");
    let created = created.json();
    assert_eq!(created["config"]["secret_access_key"], "***");
    assert_eq!(created["config"]["endpoint"], moto.endpoint());

    let tested = cli.run(&["storage", "test", "archive", "-o", "json"]).await.ok();
    assert!(!tested.stdout.contains(alto_test_services::S3_SECRET_KEY));
    let tested = tested.json();
    assert_eq!(tested["ok"], true, "{tested}");
    assert_eq!(tested["usage"]["objects"], 0, "{tested}");
    let table = cli.run(&["storage", "test", "archive"]).await.ok();
    assert!(table.stdout.contains("ok") && table.stdout.contains("0 objects"), "{table:#?}");

    let list = cli.run(&["storage", "list", "-o", "json"]).await.ok().json();
    let archive = list
        .as_array()
        .expect("array")
        .iter()
        .find(|t| t["name"] == "archive")
        .expect("listed")
        .clone();
    assert_eq!(archive["health"]["status"], "ok", "{archive}");
    assert_eq!(archive["health"]["usage"]["bytes"], 0, "{archive}");
    let table = cli.run(&["storage", "list"]).await.ok();
    assert!(table.stdout.contains("archive") && table.stdout.contains("HEALTH"), "{table:#?}");
    let got = cli.run(&["storage", "get", "archive"]).await.ok();
    assert!(got.stdout.contains("***") && !got.stdout.contains(alto_test_services::S3_SECRET_KEY));

    // A bucket that does not exist: the check fails, exit code 1, the error's code shown.
    let upd = cli
        .run(&["storage", "update", "archive", "--location", "s3://nothere", "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(upd["location"], "s3://nothere");
    assert!(upd["health"].is_null(), "a change clears the last check: {upd}");
    let failed = cli.run(&["storage", "test", "archive"]).await;
    assert_eq!(failed.code, 1, "{failed:#?}");
    assert!(failed.stdout.contains("FAILED") && failed.stdout.contains("not_found"), "{failed:#?}");
    let failed = cli.run(&["storage", "test", "archive", "-o", "json"]).await;
    assert_eq!(failed.code, 1);
    assert_eq!(failed.json()["error"]["code"], "not_found");

    // `update --set` keeps the stored secret: back to the right bucket, the check passes.
    cli.run(&[
        "storage",
        "update",
        "archive",
        "--location",
        "s3://tier",
        "--set",
        "region=us-east-1",
    ])
    .await
    .ok();
    cli.run(&["storage", "test", "archive"]).await.ok();
    let del = cli.run(&["storage", "delete", "archive"]).await.ok();
    assert!(del.stdout.contains("Deleted storage target archive"), "{del:#?}");
}
