//! One test body run against every backend through [`Target`]: the directory, S3 (s3s-fs),
//! Azure Blob (Azurite) and SMB (Samba), the servers real and on 127.0.0.1 (see
//! `support/mod.rs`; a missing server binary skips its test).

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alto_model::{CustomerId, HostId};
use alto_test_services::{self as support, Azurite, Moto, Samba, S3};
use alto_tier2::{
    Compression, DeleteOutcome, ObjectKey, OpenOptions, Sha256Digest, Target, TargetKind,
    TargetSpec, Tier2Error,
};
use chrono::{TimeZone, Utc};
use common::{content, meta, MIB};

/// A test server's spec JSON as a `TargetSpec`.
fn ts(v: support::Spec) -> TargetSpec {
    serde_json::from_value(v).expect("a valid spec")
}

fn get_vec(t: &Target, key: &ObjectKey) -> Result<Vec<u8>, Tier2Error> {
    let mut v = Vec::new();
    t.get(key, &mut v)?;
    Ok(v)
}

/// Small multipart threshold, so that a 12 MiB object goes up in parts; few retries, so
/// that failures are quick.
fn opts() -> OpenOptions {
    OpenOptions {
        multipart_threshold: 5 * MIB as u64,
        part_size: 5 * MIB,
        max_retries: 1,
        request_timeout: Duration::from_secs(60),
        connect_timeout: Duration::from_secs(5),
        ..OpenOptions::default()
    }
}

type Corrupt = Box<dyn Fn(CustomerId, &ObjectKey, &[u8])>;

/// One backend under test.
struct Backend {
    name: &'static str,
    spec: TargetSpec,
    /// The secret in `spec`, which must never show in Debug output or errors.
    secret: String,
    /// `None` where the server accepts any credentials.
    bad_credentials: Option<TargetSpec>,
    missing_base: Vec<TargetSpec>,
    /// Overwrites the stored bytes of an object of a customer, behind the target's back.
    corrupt: Corrupt,
    _keep: Box<dyn std::any::Any>,
}

fn customer_dir(c: CustomerId) -> String {
    format!("customer-{c}-tiered")
}

fn directory_backend() -> Backend {
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let base = dir.path().to_owned();
    let spec =
        TargetSpec::new(TargetKind::Directory, base.display().to_string(), serde_json::json!({}));
    let b2 = base.clone();
    Backend {
        name: "directory",
        spec,
        secret: "no-secret-here-3141".into(),
        bad_credentials: Some(TargetSpec::new(
            TargetKind::Directory,
            "/nonexistent/alto-bad",
            serde_json::json!({}),
        )),
        missing_base: vec![TargetSpec::new(
            TargetKind::Directory,
            base.join("missing").display().to_string(),
            serde_json::json!({}),
        )],
        corrupt: Box::new(move |c, key, bytes| {
            fs::write(b2.join(customer_dir(c)).join(key.rel_path()), bytes).unwrap()
        }),
        _keep: Box::new(dir),
    }
}

fn s3_backend() -> Option<Backend> {
    let moto = Moto::start()?;
    moto.create_bucket("tier");
    let endpoint = moto.endpoint();
    Some(Backend {
        name: "s3",
        spec: ts(moto.spec("s3://tier/site-a")),
        secret: support::S3_SECRET_KEY.into(),
        // moto accepts any credentials: see s3_credentials_and_buckets_against_s3s_fs.
        bad_credentials: None,
        missing_base: vec![ts(moto.spec("s3://no-such-bucket"))],
        corrupt: Box::new(move |c, key, bytes| {
            use object_store::ObjectStoreExt as _;
            let store = object_store::aws::AmazonS3Builder::new()
                .with_endpoint(&endpoint)
                .with_allow_http(true)
                .with_bucket_name("tier")
                .with_access_key_id(support::S3_ACCESS_KEY)
                .with_secret_access_key(support::S3_SECRET_KEY)
                .with_region("us-east-1")
                .with_virtual_hosted_style_request(false)
                .build()
                .unwrap();
            let path = object_store::path::Path::from(format!(
                "site-a/{}/{}",
                customer_dir(c),
                key.rel_path().display()
            ));
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(store.put(&path, bytes.to_vec().into())).unwrap();
        }),
        _keep: Box::new(moto),
    })
}

fn azure_backend() -> Option<Backend> {
    let az = Azurite::start()?;
    az.create_container("tier");
    let endpoint = az.endpoint();
    let wrong_key = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [7u8; 64]);
    Some(Backend {
        name: "azure",
        spec: ts(az.spec("azure://tier/site-a", support::AZURITE_KEY)),
        secret: support::AZURITE_KEY.into(),
        bad_credentials: Some(ts(az.spec("azure://tier/site-a", &wrong_key))),
        missing_base: vec![ts(az.spec("azure://no-such-container", support::AZURITE_KEY))],
        corrupt: Box::new(move |c, key, bytes| {
            use object_store::ObjectStoreExt as _;
            let store = object_store::azure::MicrosoftAzureBuilder::new()
                .with_account(support::AZURITE_ACCOUNT)
                .with_access_key(support::AZURITE_KEY)
                .with_endpoint(endpoint.clone())
                .with_allow_http(true)
                .with_container_name("tier")
                .build()
                .unwrap();
            let path = object_store::path::Path::from(format!(
                "site-a/{}/{}",
                customer_dir(c),
                key.rel_path().display()
            ));
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(store.put(&path, bytes.to_vec().into())).unwrap();
        }),
        _keep: Box::new(az),
    })
}

fn smb_backend() -> Option<Backend> {
    let smb = Samba::start()?;
    fs::create_dir(smb.share.join("alto")).unwrap();
    let root = smb.share.join("alto");
    Some(Backend {
        name: "smb",
        spec: ts(smb.spec("share/alto", support::SMB_PASSWORD)),
        secret: support::SMB_PASSWORD.into(),
        bad_credentials: Some(ts(smb.spec("share/alto", "WrongPassw0rd!"))),
        missing_base: vec![
            ts(smb.spec("no-such-share", support::SMB_PASSWORD)),
            ts(smb.spec("share/no-such-dir", support::SMB_PASSWORD)),
        ],
        corrupt: Box::new(move |c, key, bytes| {
            fs::write(root.join(customer_dir(c)).join(key.rel_path()), bytes).unwrap()
        }),
        _keep: Box::new(smb),
    })
}

fn open(b: &Backend, customer: CustomerId) -> Target {
    Target::open(&b.spec, customer, &opts()).unwrap_or_else(|e| panic!("{}: open: {e}", b.name))
}

fn assert_no_secret(b: &Backend, what: &str, text: &str) {
    assert!(!text.contains(&b.secret), "{}: {what} shows the secret: {text}", b.name);
}

/// Opening or probing must fail, with an error that does not show the secret.
fn assert_unhealthy(b: &Backend, spec: &TargetSpec, what: &str) {
    let err = match Target::open(spec, CustomerId::new(), &opts()) {
        Err(e) => e,
        Ok(t) => match t.health() {
            Err(e) => e,
            Ok(()) => panic!("{}: health passed with {what}", b.name),
        },
    };
    assert_no_secret(b, what, &err.to_string());
    assert_no_secret(b, what, &format!("{err:?}"));
    eprintln!("{}: {what}: {err}", b.name);
}

fn exercise(b: &Backend) {
    let started = Instant::now();
    let customer = CustomerId::new();
    let t = open(b, customer);
    assert_eq!(t.customer_id(), customer);
    assert_eq!(t.kind(), b.spec.kind);
    t.health().unwrap();
    assert!(t.location().contains(&customer_dir(customer)), "{}", t.location());
    for text in [
        format!("{t:?}"),
        format!("{:?}", b.spec),
        t.location(),
        b.spec.redacted_config().to_string(),
    ] {
        assert_no_secret(b, "Debug output", &text);
    }
    let host = HostId::new();

    // Round trips, byte-exact: empty, a few MiB, and larger than the multipart threshold
    // (stored size above 5 MiB in both compressions).
    let mut stored = BTreeMap::new(); // key -> stored size
    let mut outcomes = Vec::new();
    let mut datas = Vec::new();
    let cases = [
        (0, Compression::None),
        (0, Compression::Zstd),
        (3 * MIB + 17, Compression::None),
        (3 * MIB + 17, Compression::Zstd),
        (12 * MIB + 5, Compression::None),
        (14 * MIB, Compression::Zstd),
    ];
    for (i, (n, c)) in cases.into_iter().enumerate() {
        let data = content(n, i as u8);
        let path = format!("/srv/share/file-{i}.bin");
        let t0 = Instant::now();
        let out = t.put(&data[..], &meta(host, &path, &data, c)).unwrap();
        let put_time = t0.elapsed();
        let key = out.key();
        if n == 0 && c == Compression::Zstd {
            // The empty plain object of the case before is reused.
            assert!(out.deduplicated, "{}", b.name);
            assert_eq!(key.compression, Compression::None);
        } else {
            assert!(!out.deduplicated && !out.repaired, "{}: case {i}", b.name);
            assert_eq!(key, ObjectKey::new(Sha256Digest::of(&data), c));
        }
        let r = &out.record;
        assert_eq!((r.customer_id, r.host_id, r.size), (customer, host, n as u64));
        assert_eq!(
            (r.path.as_str(), r.object, r.compression),
            (path.as_str(), key, key.compression)
        );
        if c == Compression::None {
            assert_eq!(r.stored_size, n as u64);
        }
        let t0 = Instant::now();
        assert!(get_vec(&t, &key).unwrap() == data, "{}: case {i} round trip", b.name);
        let get_time = t0.elapsed();
        if n >= 12 * MIB {
            let mib = n as f64 / MIB as f64;
            eprintln!(
                "{}: {mib:.0} MiB {c:?}: put {:.0} MiB/s, get {:.0} MiB/s (stored {} bytes)",
                b.name,
                mib / put_time.as_secs_f64(),
                mib / get_time.as_secs_f64(),
                r.stored_size
            );
        }
        t.verify(&key).unwrap();
        let mut pulled = Vec::new();
        let mut reader = t.reader(&key).unwrap();
        reader.read_to_end(&mut pulled).unwrap();
        assert!(pulled == data);
        assert_eq!(reader.bytes_read(), n as u64);
        assert_eq!(t.find_object(&key.sha256).unwrap(), Some(key));
        assert_eq!(t.read_ref(&out.ref_id).unwrap().as_ref(), Some(r));
        stored.insert(key, r.stored_size);
        outcomes.push(out);
        datas.push(data);
    }

    // Range reads and chunk manifests (range-first recall), on plain objects only.
    let manifest_of = |data: &[u8]| {
        let mut h = alto_tier2::ChunkHasher::new(data, MIB as u64);
        std::io::copy(&mut h, &mut std::io::sink()).unwrap();
        h.finish()
    };
    {
        let data = &datas[4];
        let key = outcomes[4].key();
        let n = data.len() as u64;
        for (off, len) in [(0, 4096), (5 * MIB as u64 + 3, MIB as u64), (n - 5, 5), (7, 1)] {
            let got = t.read_range(&key, off, len).unwrap();
            assert!(
                got == data[off as usize..(off + len) as usize],
                "{}: range {off}+{len}",
                b.name
            );
        }
        let m = manifest_of(data);
        assert_eq!(t.read_chunk_manifest(&key.sha256, MIB as u64).unwrap(), None);
        t.put_chunk_manifest(&m).unwrap();
        t.put_chunk_manifest(&m).unwrap(); // the same bytes again
        let bytes = t.read_chunk_manifest(&key.sha256, MIB as u64).unwrap().unwrap();
        let back = alto_tier2::ChunkManifest::parse_bound(
            &bytes,
            &m.digest(),
            MIB as u64,
            n,
            &key.sha256.0,
        )
        .unwrap();
        assert_eq!(back, m);
        for i in 0..m.count() {
            let (o, l) = m.chunk(i);
            assert!(m.verify_chunk(i, &t.read_range(&key, o, l).unwrap()), "{}: chunk {i}", b.name);
        }
        assert!(matches!(t.read_range(&outcomes[5].key(), 0, 10), Err(Tier2Error::Config(_))));
        let missing = ObjectKey::new(Sha256Digest::of(b"nothing"), Compression::None);
        assert!(matches!(t.read_range(&missing, 0, 10), Err(Tier2Error::NotFound(_))));
        // The object deleted below and an orphan (no object at all) get manifests too.
        t.put_chunk_manifest(&manifest_of(&datas[2])).unwrap();
        t.put_chunk_manifest(&manifest_of(&content(2 * MIB, 77))).unwrap();
    }

    // Dedupe: the same content from another path and host, asking for the other
    // compression, reuses the object.
    let data = &datas[2];
    let first = outcomes[2].key();
    let other_host = HostId::new();
    let out =
        t.put(&data[..], &meta(other_host, "/other/copy.bin", data, Compression::Zstd)).unwrap();
    assert!(out.deduplicated && !out.repaired, "{}", b.name);
    assert_eq!(out.key(), first);
    assert_eq!(out.record.stored_size, stored[&first]);
    outcomes.push(out);

    // Refused puts store nothing under a final name.
    let bad = content(2 * MIB, 99);
    let bad_sha = Sha256Digest::of(&bad);
    let refs_before = t.list_refs().unwrap().refs.len();
    let mut m = meta(host, "/srv/bad", &bad, Compression::None);
    m.size += 1;
    assert!(matches!(t.put(&bad[..], &m), Err(Tier2Error::SizeMismatch { .. })));
    let mut m = meta(host, "/srv/bad", &bad, Compression::Zstd);
    m.size -= 1;
    assert!(matches!(t.put(&bad[..], &m), Err(Tier2Error::SizeMismatch { .. })));
    let mut m = meta(host, "/srv/bad", &bad, Compression::None);
    m.expected_sha256 = Some(Sha256Digest::of(b"something else"));
    assert!(matches!(t.put(&bad[..], &m), Err(Tier2Error::HashMismatch { .. })));
    assert_eq!(t.find_object(&bad_sha).unwrap(), None);
    assert_eq!(t.list_refs().unwrap().refs.len(), refs_before);

    // list_refs rebuilds every record.
    let listing = t.list_refs().unwrap();
    assert!(listing.invalid.is_empty(), "{:?}", listing.invalid);
    let want: BTreeMap<_, _> = outcomes.iter().map(|o| (o.ref_id, o.record.clone())).collect();
    let got: BTreeMap<_, _> = listing.refs.iter().map(|r| (r.id().unwrap(), r.clone())).collect();
    assert_eq!(got.len(), listing.refs.len());
    assert_eq!(got, want, "{}", b.name);

    // Usage counts every object once.
    let usage = t.usage().unwrap();
    assert_eq!(usage.objects, stored.len() as u64, "{}", b.name);
    assert_eq!(usage.bytes, stored.values().sum::<u64>());

    // Deletion refuses while a sidecar references the object.
    let shared = &outcomes[2];
    let copy = outcomes.last().unwrap();
    assert_eq!(t.delete_object_if_unreferenced(&first).unwrap(), DeleteOutcome::Referenced(2));
    assert!(t.delete_ref(&shared.ref_id).unwrap());
    assert!(!t.delete_ref(&shared.ref_id).unwrap());
    assert_eq!(t.read_ref(&shared.ref_id).unwrap(), None);
    assert_eq!(t.delete_object_if_unreferenced(&first).unwrap(), DeleteOutcome::Referenced(1));
    t.verify(&first).unwrap();
    assert!(t.delete_ref(&copy.ref_id).unwrap());
    assert_eq!(t.delete_object_if_unreferenced(&first).unwrap(), DeleteOutcome::Deleted);
    assert_eq!(
        t.read_chunk_manifest(&first.sha256, MIB as u64).unwrap(),
        None,
        "{}: the manifest goes with its object",
        b.name
    );
    assert!(matches!(t.verify(&first), Err(Tier2Error::NotFound(_))));
    assert!(matches!(get_vec(&t, &first), Err(Tier2Error::NotFound(_))));
    assert_eq!(t.delete_object_if_unreferenced(&first).unwrap(), DeleteOutcome::NotFound);
    assert_eq!(t.find_object(&first.sha256).unwrap(), None);
    stored.remove(&first);
    assert_eq!(t.usage().unwrap().objects, stored.len() as u64);

    // Corruption: detected by verify, get and reader; the next put of the content repairs.
    for (i, c) in [Compression::None, Compression::Zstd].into_iter().enumerate() {
        let data = content(MIB + 3, 50 + i as u8);
        let out = t.put(&data[..], &meta(host, &format!("/srv/c{i}"), &data, c)).unwrap();
        let key = out.key();
        let mut wrong = data.clone();
        wrong[MIB / 2] ^= 0x40;
        (b.corrupt)(customer, &key, &wrong);
        match t.verify(&key) {
            Err(Tier2Error::Corrupt { key: k, expected, actual }) => {
                assert_eq!((k, expected), (key, key.sha256));
                if c == Compression::None {
                    assert_eq!(actual, Some(Sha256Digest::of(&wrong)));
                }
            }
            other => panic!("{}: verify of a corrupt object: {other:?}", b.name),
        }
        assert!(matches!(get_vec(&t, &key), Err(Tier2Error::Corrupt { .. })));
        let mut sink = Vec::new();
        let err = t.reader(&key).unwrap().read_to_end(&mut sink).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        let again = t.put(&data[..], &meta(host, &format!("/srv/c{i}"), &data, c)).unwrap();
        assert!(again.repaired && !again.deduplicated, "{}", b.name);
        assert!(get_vec(&t, &key).unwrap() == data);
    }

    // Customer isolation: another customer's location is separate and empty.
    let other = open(b, CustomerId::new());
    assert_ne!(other.location(), t.location());
    let key = outcomes[3].key();
    assert!(matches!(other.verify(&key), Err(Tier2Error::NotFound(_))));
    assert!(matches!(get_vec(&other, &key), Err(Tier2Error::NotFound(_))));
    assert_eq!(other.find_object(&key.sha256).unwrap(), None);
    assert!(other.list_refs().unwrap().refs.is_empty());
    assert_eq!(other.usage().unwrap().objects, 0);
    assert_eq!(other.read_ref(&outcomes[3].ref_id).unwrap(), None);

    // Calls from tokio's blocking threads (the agent's workers) and from a plain thread.
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let shared_t = Arc::new(t.clone());
    let tt = shared_t.clone();
    let got = rt
        .block_on(async move {
            tokio::task::spawn_blocking(move || {
                let data = content(6 * MIB, 77);
                let out =
                    tt.put(&data[..], &meta(host, "/srv/from-tokio", &data, Compression::Zstd))?;
                tt.verify(&out.key())?;
                let back = get_vec(&tt, &out.key())?;
                tt.health()?;
                Ok::<_, Tier2Error>(back == data)
            })
            .await
        })
        .unwrap()
        .unwrap();
    assert!(got);
    drop(rt);
    let tt = shared_t.clone();
    std::thread::spawn(move || tt.list_refs().unwrap()).join().unwrap();

    // Nothing but garbage is left to clean, and cleaning keeps what is referenced.
    let far = Utc.with_ymd_and_hms(2100, 1, 1, 0, 0, 0).unwrap();
    t.cleanup_tmp(far).unwrap();
    for o in &outcomes[3..5] {
        t.verify(&o.key()).unwrap();
    }
    let orphan = Sha256Digest::of(&content(2 * MIB, 77));
    assert_eq!(t.read_chunk_manifest(&orphan, MIB as u64).unwrap(), None, "{}", b.name);
    assert!(t.read_chunk_manifest(&outcomes[4].key().sha256, MIB as u64).unwrap().is_some());

    // Wrong credentials, missing bucket / container / share / directory.
    if let Some(spec) = &b.bad_credentials {
        assert_unhealthy(b, spec, "wrong credentials");
    }
    for spec in &b.missing_base {
        assert_unhealthy(b, spec, &format!("missing base {}", spec.location));
    }
    eprintln!("{}: whole exercise {:.1} s", b.name, started.elapsed().as_secs_f64());
}

#[test]
fn directory_backend_through_target() {
    exercise(&directory_backend());
}

#[test]
fn s3_backend_against_moto() {
    let Some(b) = s3_backend() else { return };
    exercise(&b);
}

/// s3s-fs checks SigV4 signatures (moto does not), but cannot store keys as long as
/// sidecars' (see `support::Moto`), so it checks what health and credentials need: the
/// list and the probe put/delete under `tmp/` pass with the right secret and fail with a
/// wrong one or a missing bucket; objects round-trip with create-only puts.
#[test]
fn s3_credentials_and_buckets_against_s3s_fs() {
    let Some(s3) = S3::start() else { return };
    s3.create_bucket("tier");
    let customer = CustomerId::new();
    let good = ts(s3.spec("s3://tier", support::S3_SECRET_KEY));
    let t = Target::open(&good, customer, &opts()).unwrap();
    t.health().unwrap();
    assert!(t.location().starts_with("s3://tier/customer-"), "{}", t.location());
    let b = Backend {
        name: "s3s-fs",
        spec: good.clone(),
        secret: support::S3_SECRET_KEY.into(),
        bad_credentials: None,
        missing_base: Vec::new(),
        corrupt: Box::new(|_, _, _| {}),
        _keep: Box::new(()),
    };
    assert_unhealthy(&b, &ts(s3.spec("s3://tier", "wrong-secret-key-000")), "wrong credentials");
    assert_unhealthy(
        &b,
        &ts(s3.spec("s3://no-such-bucket", support::S3_SECRET_KEY)),
        "missing bucket",
    );
    // The object half of a put reaches the server (the sidecar key is what is too long).
    let data = content(7 * MIB, 1);
    let err = t.put(&data[..], &meta(HostId::new(), "/srv/x", &data, Compression::None));
    assert!(matches!(err, Err(Tier2Error::Unavailable { .. })), "{err:?}");
    let key = ObjectKey::new(Sha256Digest::of(&data), Compression::None);
    assert!(get_vec(&t, &key).unwrap() == data);
    t.verify(&key).unwrap();
    assert_eq!(t.usage().unwrap().objects, 1);
}

#[test]
fn azure_backend_against_azurite() {
    let Some(b) = azure_backend() else { return };
    exercise(&b);
}

#[test]
fn smb_backend_against_samba() {
    let Some(b) = smb_backend() else { return };
    exercise(&b);
}

#[test]
fn specs_parse_validate_and_redact() {
    let spec: TargetSpec = serde_json::from_str(
        r#"{"kind":"s3","location":"s3://tier/site-a","config":{"endpoint":"http://127.0.0.1:9000",
            "access_key_id":"AK","secret_access_key":"very-secret","allow_http":true,"path_style":true}}"#,
    )
    .unwrap();
    spec.validate().unwrap();
    assert!(!format!("{spec:?}").contains("very-secret"));
    assert_eq!(spec.redacted_config()["secret_access_key"], "***");
    let smb: TargetSpec = serde_json::from_value(serde_json::json!({
        "kind": "smb", "location": "smb://fs1.example:445/tier2/alto",
        "config": {"username": "alto", "password": "pw-secret"}
    }))
    .unwrap();
    smb.validate().unwrap();
    assert!(!format!("{smb:?}").contains("pw-secret"));
    let az: TargetSpec = serde_json::from_value(serde_json::json!({
        "kind": "azure", "location": "azure://tier",
        "config": {"account": "acct", "access_key": "a2V5"}
    }))
    .unwrap();
    az.validate().unwrap();
    let emu: TargetSpec = serde_json::from_value(serde_json::json!({
        "kind": "azure", "location": "azure://tier", "config": {"use_emulator": true}
    }))
    .unwrap();
    emu.validate().unwrap();
    let dir: TargetSpec =
        serde_json::from_value(serde_json::json!({"kind": "directory", "location": "/mnt/tier2"}))
            .unwrap();
    dir.validate().unwrap();

    let bad = [
        serde_json::json!({"kind": "s3", "location": "tier", "config": {"access_key_id": "a", "secret_access_key": "b"}}),
        serde_json::json!({"kind": "s3", "location": "s3://tier/../x", "config": {"access_key_id": "a", "secret_access_key": "b"}}),
        serde_json::json!({"kind": "s3", "location": "s3://tier", "config": {"access_key_id": "a"}}),
        serde_json::json!({"kind": "s3", "location": "s3://tier", "config": {"access_key_id": "a", "secret_access_key": "sekrit", "typo": 1}}),
        serde_json::json!({"kind": "s3", "location": "s3://tier", "config": {"access_key_id": "a", "secret_access_key": 12345678}}),
        serde_json::json!({"kind": "azure", "location": "azure://tier", "config": {"account": "a"}}),
        serde_json::json!({"kind": "smb", "location": "smb://user:sekrit@host/share", "config": {"username": "u", "password": "p"}}),
        serde_json::json!({"kind": "smb", "location": "smb://host", "config": {"username": "u", "password": "p"}}),
        serde_json::json!({"kind": "directory", "location": "/x", "config": {"password": "sekrit"}}),
    ];
    for v in bad {
        let spec: TargetSpec = serde_json::from_value(v.clone()).unwrap();
        let err = spec.validate().unwrap_err();
        assert!(matches!(err, Tier2Error::Config(_)), "{v}: {err:?}");
        assert!(
            !err.to_string().contains("sekrit") && !err.to_string().contains("12345678"),
            "{err}"
        );
        assert!(Target::open(&spec, CustomerId::new(), &OpenOptions::default()).is_err());
    }
    // A relative directory location needs a base.
    let rel = TargetSpec::new(TargetKind::Directory, "tier2", serde_json::json!({}));
    assert!(matches!(
        Target::open(&rel, CustomerId::new(), &OpenOptions::default()),
        Err(Tier2Error::Config(_))
    ));
    let base = tempfile::tempdir_in("/tmp").unwrap();
    fs::create_dir(base.path().join("tier2")).unwrap();
    let opts =
        OpenOptions { directory_base: Some(base.path().to_owned()), ..OpenOptions::default() };
    let t = Target::open(&rel, CustomerId::new(), &opts).unwrap();
    assert!(t.location().starts_with(&base.path().join("tier2").display().to_string()));
    assert!(t.as_dir().is_some());
}
