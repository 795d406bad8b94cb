//! The directory backend against a real file system (a temporary directory under /tmp).

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use alto_model::{CustomerId, HostId};
use alto_tier2::{
    Compression, DeleteOutcome, DirTarget, ObjectKey, PutMeta, RefId, RefRecord, Sha256Digest,
    Tier2Error, Usage,
};
use chrono::{DateTime, Utc};
use common::{content, created_at, meta, MIB};
use sha2::{Digest, Sha256};

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir_in("/tmp").expect("tempdir")
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(dir) else { return out };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn get_vec(t: &DirTarget, key: &ObjectKey) -> Result<Vec<u8>, Tier2Error> {
    let mut v = Vec::new();
    t.get(key, &mut v)?;
    Ok(v)
}

#[test]
fn round_trip_with_and_without_compression() {
    let dir = tmp();
    let customer = CustomerId::new();
    let t = DirTarget::open(dir.path(), customer).unwrap();
    assert_eq!(t.location(), dir.path().join(format!("customer-{customer}-tiered")));
    let host = HostId::new();
    let mut total = Usage::default();
    for (i, c) in [Compression::None, Compression::Zstd].into_iter().enumerate() {
        let data = content(3 * MIB + 17, i as u8);
        let path = format!("/srv/share/file-{i}.log");
        let out = t.put(&data[..], &meta(host, &path, &data, c)).unwrap();
        assert!(!out.deduplicated && !out.repaired);
        let key = out.key();
        assert_eq!(key.sha256, Sha256Digest::of(&data));
        assert_eq!(key.compression, c);
        let obj = t.object_path(&key);
        let hex = key.sha256.to_hex();
        assert_eq!(obj, t.location().join("objects").join(&hex[..2]).join(key.to_string()));
        assert!(obj.is_file());
        let r = &out.record;
        assert_eq!((r.customer_id, r.host_id), (customer, host));
        assert_eq!((r.path.as_str(), r.path_escaped), (path.as_str(), false));
        assert_eq!(r.size, data.len() as u64);
        assert_eq!(
            (r.mtime_ns, r.atime_ns),
            (1_500_000_000_987_654_321, 1_600_000_000_123_456_789)
        );
        assert_eq!((r.compression, r.object), (c, key));
        assert_eq!(r.stored_size, fs::metadata(&obj).unwrap().len());
        assert_eq!(r.created_at, created_at());
        match c {
            Compression::None => {
                assert_eq!(r.stored_size, data.len() as u64);
                assert_eq!(fs::read(&obj).unwrap(), data, "a plain object is a plain copy");
            }
            Compression::Zstd => {
                assert!(r.stored_size < data.len() as u64 * 3 / 4, "{}", r.stored_size)
            }
        }
        assert_eq!(get_vec(&t, &key).unwrap(), data);
        t.verify(&key).unwrap();
        let mut pulled = Vec::new();
        let mut reader = t.reader(&key).unwrap();
        reader.read_to_end(&mut pulled).unwrap();
        assert_eq!(pulled, data);
        assert_eq!(reader.bytes_read(), data.len() as u64);
        assert_eq!(t.find_object(&key.sha256), Some(key));
        assert_eq!(t.read_ref(&out.ref_id).unwrap().as_ref(), Some(r));
        let sidecar = t.location().join(out.ref_id.rel_path());
        assert_eq!(
            sidecar,
            t.location()
                .join("refs")
                .join(host.to_string())
                .join(format!("{hex}.{}.json", &Sha256Digest::of(path.as_bytes()).to_hex()[..16]))
        );
        let json: serde_json::Value = serde_json::from_slice(&fs::read(&sidecar).unwrap()).unwrap();
        assert_eq!(json["compression"], c.as_str());
        assert_eq!(json["format"], 1);
        total.objects += 1;
        total.bytes += r.stored_size;
    }
    assert_eq!(t.usage().unwrap(), total);
    assert!(files_under(&t.location().join("tmp")).is_empty());
    t.health().unwrap();

    // Empty files are objects too.
    let out = t.put(&b""[..], &meta(host, "/srv/empty", b"", Compression::Zstd)).unwrap();
    assert_eq!(get_vec(&t, &out.key()).unwrap(), b"");
}

#[test]
fn identical_content_is_stored_once() {
    let dir = tmp();
    let t = DirTarget::open(dir.path(), CustomerId::new()).unwrap();
    let (h1, h2) = (HostId::new(), HostId::new());
    let data = content(2 * MIB, 1);
    let a = t.put(&data[..], &meta(h1, "/srv/a/report.pdf", &data, Compression::Zstd)).unwrap();
    let b =
        t.put(&data[..], &meta(h1, "/srv/b/copy of report.pdf", &data, Compression::Zstd)).unwrap();
    let c = t.put(&data[..], &meta(h2, "/srv/a/report.pdf", &data, Compression::None)).unwrap();
    assert!(!a.deduplicated && b.deduplicated && c.deduplicated);
    assert_eq!(a.key(), b.key());
    // Asked for no compression, got the existing zstd object, and the sidecar says so.
    assert_eq!(c.key(), a.key());
    assert_eq!(c.record.compression, Compression::Zstd);
    assert_eq!(c.record.stored_size, a.record.stored_size);
    assert_eq!(t.usage().unwrap().objects, 1);
    let ids: BTreeSet<RefId> = [a.ref_id, b.ref_id, c.ref_id].into();
    assert_eq!(ids.len(), 3, "three references");
    assert_eq!(t.list_refs().unwrap().refs.len(), 3);
    assert!(
        files_under(&t.location().join("tmp")).is_empty(),
        "the duplicate temporaries are gone"
    );

    // Storing the same file again replaces its own sidecar.
    let mut again = meta(h1, "/srv/a/report.pdf", &data, Compression::Zstd);
    again.created_at = created_at() + chrono::Duration::days(1);
    let a2 = t.put(&data[..], &again).unwrap();
    assert_eq!(a2.ref_id, a.ref_id);
    assert_eq!(t.list_refs().unwrap().refs.len(), 3);
    assert_eq!(t.read_ref(&a.ref_id).unwrap().unwrap().created_at, again.created_at);
}

fn assert_nothing_stored(t: &DirTarget) {
    assert!(files_under(&t.location().join("objects")).is_empty(), "no object");
    assert!(files_under(&t.location().join("refs")).is_empty(), "no sidecar");
}

#[test]
fn wrong_size_or_hash_stores_nothing() {
    let dir = tmp();
    let t = DirTarget::open(dir.path(), CustomerId::new()).unwrap();
    let host = HostId::new();
    let data = content(MIB, 2);
    for c in [Compression::None, Compression::Zstd] {
        let mut m = meta(host, "/srv/x", &data, c);
        m.size += 1;
        match t.put(&data[..], &m) {
            Err(Tier2Error::SizeMismatch { expected, actual }) => {
                assert_eq!((expected, actual), (data.len() as u64 + 1, data.len() as u64))
            }
            r => panic!("expected SizeMismatch, got {r:?}"),
        }
        let mut m = meta(host, "/srv/x", &data, c);
        m.size -= 1; // the source is longer than announced: stops early
        assert!(matches!(t.put(&data[..], &m), Err(Tier2Error::SizeMismatch { .. })));
        let mut m = meta(host, "/srv/x", &data, c);
        m.expected_sha256 = Some(Sha256Digest::of(b"something else"));
        match t.put(&data[..], &m) {
            Err(Tier2Error::HashMismatch { actual, .. }) => {
                assert_eq!(actual, Sha256Digest::of(&data))
            }
            r => panic!("expected HashMismatch, got {r:?}"),
        }
        let mut m = meta(host, "/srv/x\\q", &data, c);
        m.path_escaped = true;
        assert!(matches!(t.put(&data[..], &m), Err(Tier2Error::InvalidPath(_))));
        let m = meta(host, "", &data, c);
        assert!(matches!(t.put(&data[..], &m), Err(Tier2Error::InvalidPath(_))));
    }
    assert_nothing_stored(&t);
    assert!(files_under(&t.location().join("tmp")).is_empty());
}

/// A reader that delivers `good` bytes and then fails, like a file on a dying disk.
struct FailsAfter {
    good: usize,
    sent: usize,
}

impl Read for FailsAfter {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.sent >= self.good {
            return Err(io::Error::other("EIO from the source disk"));
        }
        let n = buf.len().min(self.good - self.sent);
        buf[..n].fill(0x42);
        self.sent += n;
        Ok(n)
    }
}

#[test]
fn failing_reader_stores_nothing() {
    let dir = tmp();
    let t = DirTarget::open(dir.path(), CustomerId::new()).unwrap();
    let host = HostId::new();
    for c in [Compression::None, Compression::Zstd] {
        let m = PutMeta { expected_sha256: None, ..meta(host, "/srv/big", &vec![0; 8 * MIB], c) };
        match t.put(FailsAfter { good: 4 * MIB, sent: 0 }, &m) {
            Err(Tier2Error::Source(e)) => assert_eq!(e.to_string(), "EIO from the source disk"),
            r => panic!("expected Source, got {r:?}"),
        }
    }
    assert_nothing_stored(&t);
    assert!(files_under(&t.location().join("tmp")).is_empty(), "the temporary was removed");
}

const CHILD_ENV: &str = "ALTO_TIER2_KILLED_PUT_DIR";

/// Not a test on its own: the child half of `killed_put_leaves_only_tmp_garbage`.
#[test]
#[ignore]
fn killed_put_child() {
    let Ok(base) = std::env::var(CHILD_ENV) else { return };
    struct Hangs {
        sent: usize,
    }
    impl Read for Hangs {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.sent >= 2 * MIB {
                loop {
                    std::thread::sleep(Duration::from_secs(3600));
                }
            }
            let n = buf.len().min(2 * MIB - self.sent);
            buf[..n].fill(7);
            self.sent += n;
            Ok(n)
        }
    }
    let customer: uuid::Uuid = std::env::var("ALTO_TIER2_CUSTOMER").unwrap().parse().unwrap();
    let t = DirTarget::open(Path::new(&base), CustomerId::from(customer)).unwrap();
    let m = PutMeta {
        expected_sha256: None,
        ..meta(HostId::new(), "/srv/killed", &vec![0; 8 * MIB], Compression::None)
    };
    let _ = t.put(Hangs { sent: 0 }, &m);
    unreachable!("the reader never finishes");
}

#[test]
fn killed_put_leaves_only_tmp_garbage() {
    let dir = tmp();
    let customer = CustomerId::new();
    let t = DirTarget::open(dir.path(), customer).unwrap();
    let tmp_dir = t.location().join("tmp");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["killed_put_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir.path())
        .env("ALTO_TIER2_CUSTOMER", customer.to_string())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let garbage = loop {
        let files = files_under(&tmp_dir);
        if let Some(f) = files.first() {
            if fs::metadata(f).map(|m| m.len()).unwrap_or(0) >= 2 * MIB as u64 {
                break f.clone();
            }
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the child never wrote");
        std::thread::sleep(Duration::from_millis(20));
    };
    // Cut-offs relative to the temporary's own mtime: no clock needed.
    let written = DateTime::<Utc>::from(fs::metadata(&garbage).unwrap().modified().unwrap());
    let future = written + chrono::Duration::hours(1);
    let past = written - chrono::Duration::hours(1);
    // While the put is alive its temporary is locked and survives any cleanup.
    assert_eq!(t.cleanup_tmp(future).unwrap(), 0);
    assert!(garbage.exists());

    child.kill().unwrap();
    child.wait().unwrap();
    assert_nothing_stored(&t);
    assert_eq!(files_under(&tmp_dir), vec![garbage.clone()], "only the temporary is left");
    assert_eq!(t.usage().unwrap(), Usage::default());
    assert!(t.list_refs().unwrap().refs.is_empty());
    // Too young to be collected…
    assert_eq!(t.cleanup_tmp(past).unwrap(), 0);
    // …and old enough now that nobody holds it.
    assert_eq!(t.cleanup_tmp(future).unwrap(), 1);
    assert!(files_under(&tmp_dir).is_empty());
}

fn flip_byte(p: &Path, at: u64) {
    use std::os::unix::fs::FileExt;
    let f = fs::OpenOptions::new().read(true).write(true).open(p).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    b[0] ^= 0x01;
    f.write_all_at(&b, at).unwrap();
}

#[test]
fn corruption_is_detected_and_repaired() {
    let dir = tmp();
    let t = DirTarget::open(dir.path(), CustomerId::new()).unwrap();
    let host = HostId::new();
    for (i, c) in [Compression::None, Compression::Zstd].into_iter().enumerate() {
        let data = content(2 * MIB, 10 + i as u8);
        let out = t.put(&data[..], &meta(host, "/srv/c", &data, c)).unwrap();
        let key = out.key();
        let obj = t.object_path(&key);
        flip_byte(&obj, out.record.stored_size / 2);
        match t.verify(&key) {
            Err(Tier2Error::Corrupt { key: k, expected, actual }) => {
                assert_eq!((k, expected), (key, key.sha256));
                assert_ne!(actual, Some(key.sha256));
                println!("{c:?}: verify -> Corrupt, actual {actual:?}");
            }
            r => panic!("verify: expected Corrupt, got {r:?}"),
        }
        let mut sink = Vec::new();
        assert!(matches!(t.get(&key, &mut sink), Err(Tier2Error::Corrupt { .. })));
        assert!(sink.len() <= data.len());
        // The pull reader fails on the read that reaches the end, never with Ok(0).
        let mut pulled = Vec::new();
        let e = t.reader(&key).unwrap().read_to_end(&mut pulled).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("corrupt"), "{e}");
        // The next put of the same content notices and replaces the object.
        let again = t.put(&data[..], &meta(host, "/srv/c2", &data, c)).unwrap();
        assert!(again.repaired && !again.deduplicated);
        assert_eq!(again.key(), key);
        t.verify(&key).unwrap();
        assert_eq!(get_vec(&t, &key).unwrap(), data);
    }
    // A truncated object.
    let data = content(MIB, 20);
    let out = t.put(&data[..], &meta(host, "/srv/t", &data, Compression::None)).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(t.object_path(&out.key()))
        .unwrap()
        .set_len(1000)
        .unwrap();
    assert!(matches!(t.verify(&out.key()), Err(Tier2Error::Corrupt { .. })));
    let missing = ObjectKey::new(Sha256Digest::of(b"never stored"), Compression::None);
    assert!(matches!(t.verify(&missing), Err(Tier2Error::NotFound(k)) if k == missing));
}

#[test]
fn hostile_paths_round_trip_through_sidecars() {
    let dir = tmp();
    let t = DirTarget::open(dir.path(), CustomerId::new()).unwrap();
    let host = HostId::new();
    let data = content(10_000, 3);
    let raw: Vec<Vec<u8>> = vec![
        b"/srv/with\nnewline\r\nand\ttab".to_vec(),
        b"/srv/\xff\xfe not utf-8 \xc3(".to_vec(),
        b"/srv/back\\slash \"quotes\" 'single' {json: [1]}".to_vec(),
        b"/srv/\\x80 literally".to_vec(), // the text an escaped 0x80 would have, unescaped
        b"/srv/\x80 literally".to_vec(),
        "/srv/ünïcødé/日本語/emoji 🎉/\u{202e}rtl".as_bytes().to_vec(),
        format!("/srv/{}", "very-long-component/".repeat(3000)).into_bytes(),
    ];
    let mut expected = BTreeSet::new();
    for bytes in &raw {
        let (text, escaped) = alto_batch::encode_path(bytes);
        let mut m = meta(host, &text, &data, Compression::Zstd);
        m.path_escaped = escaped;
        let out = t.put(&data[..], &m).unwrap();
        assert_eq!(out.ref_id, RefId::new(host, Sha256Digest::of(&data), bytes));
        assert_eq!(out.record.path_bytes().as_deref(), Some(&bytes[..]));
        expected.insert((text, escaped));
    }
    let listing = t.list_refs().unwrap();
    assert!(listing.invalid.is_empty(), "{:?}", listing.invalid);
    let got: BTreeSet<(String, bool)> =
        listing.refs.iter().map(|r| (r.path.clone(), r.path_escaped)).collect();
    assert_eq!(got, expected, "every path comes back exactly, and none collide");
    let got_bytes: BTreeSet<Vec<u8>> =
        listing.refs.iter().map(|r| r.path_bytes().unwrap()).collect();
    assert_eq!(got_bytes, raw.into_iter().collect());
}

#[test]
fn list_refs_rebuilds_the_full_set() {
    let dir = tmp();
    let customer = CustomerId::new();
    let t = DirTarget::open(dir.path(), customer).unwrap();
    let hosts = [HostId::new(), HostId::new()];
    let mut written: Vec<RefRecord> = Vec::new();
    for i in 0..24u8 {
        let data = content(20_000 + usize::from(i), i % 7); // some share content
        let data = if i % 7 == 3 { b"same bytes".to_vec() } else { data };
        let c = if i % 2 == 0 { Compression::Zstd } else { Compression::None };
        let host = hosts[usize::from(i % 2)];
        let out = t.put(&data[..], &meta(host, &format!("/data/{i}/f"), &data, c)).unwrap();
        written.push(out.record);
    }
    // Rebuild from a fresh handle, as a restarted server would.
    let fresh = DirTarget::open(dir.path(), customer).unwrap();
    let listing = fresh.list_refs().unwrap();
    assert!(listing.invalid.is_empty());
    written.sort_by_key(|r| r.id());
    assert_eq!(listing.refs, written);
    let objects: BTreeSet<ObjectKey> = written.iter().map(|r| r.object).collect();
    assert_eq!(fresh.usage().unwrap().objects, objects.len() as u64);
    for k in &objects {
        fresh.verify(k).unwrap();
    }

    // Strays are reported, not trusted.
    let refs = t.location().join("refs");
    fs::create_dir(refs.join("not-a-host")).unwrap();
    let h0 = refs.join(hosts[0].to_string());
    fs::write(h0.join("notes.txt"), b"hello").unwrap();
    let bad_name = format!("{}.{}.json", Sha256Digest::of(b"x"), "0123456789abcdef");
    fs::write(h0.join(&bad_name), b"{not json").unwrap();
    let some = &written[0];
    let moved = format!("{}.{}.json", some.sha256, "ffffffffffffffff");
    let host_dir = refs.join(some.host_id.to_string());
    fs::copy(host_dir.join(some.id().unwrap().file_name()), host_dir.join(&moved)).unwrap();
    let mut foreign = some.clone();
    foreign.customer_id = CustomerId::new();
    foreign.path = "/elsewhere".into();
    let foreign_name = foreign.id().unwrap().file_name();
    fs::write(host_dir.join(&foreign_name), serde_json::to_vec(&foreign).unwrap()).unwrap();
    let mut extra: serde_json::Value = serde_json::to_value(some).unwrap();
    extra["surprise"] = serde_json::json!(true);
    extra["path"] = serde_json::json!("/extra");
    let extra_name = RefId::new(some.host_id, some.sha256, b"/extra").file_name();
    fs::write(host_dir.join(&extra_name), serde_json::to_vec(&extra).unwrap()).unwrap();

    let listing = t.list_refs().unwrap();
    assert_eq!(listing.refs, written, "the valid set is unchanged");
    let mut reasons: Vec<String> = listing
        .invalid
        .iter()
        .map(|i| format!("{}: {}", i.path.file_name().unwrap().to_string_lossy(), i.reason))
        .collect();
    reasons.sort();
    println!("{reasons:#?}");
    assert_eq!(listing.invalid.len(), 6, "{reasons:#?}");
}

#[test]
fn objects_are_deleted_only_when_unreferenced() {
    let dir = tmp();
    let t = DirTarget::open(dir.path(), CustomerId::new()).unwrap();
    let host = HostId::new();
    let data = content(100_000, 5);
    let a = t.put(&data[..], &meta(host, "/a", &data, Compression::None)).unwrap();
    let b = t.put(&data[..], &meta(host, "/b", &data, Compression::None)).unwrap();
    let key = a.key();
    // Another object with a similar name prefix is not confused with it.
    let other = content(100_000, 6);
    let o = t.put(&other[..], &meta(host, "/o", &other, Compression::None)).unwrap();
    assert_eq!(t.delete_object_if_unreferenced(&key).unwrap(), DeleteOutcome::Referenced(2));
    assert!(t.delete_ref(&a.ref_id).unwrap());
    assert!(!t.delete_ref(&a.ref_id).unwrap(), "already gone");
    assert_eq!(t.delete_object_if_unreferenced(&key).unwrap(), DeleteOutcome::Referenced(1));
    // The other variant of the same content is not referenced by them.
    assert_eq!(
        t.delete_object_if_unreferenced(&key.other_variant()).unwrap(),
        DeleteOutcome::NotFound
    );
    assert!(t.delete_ref(&b.ref_id).unwrap());
    assert_eq!(t.delete_object_if_unreferenced(&key).unwrap(), DeleteOutcome::Deleted);
    assert!(!t.object_path(&key).exists());
    assert_eq!(t.delete_object_if_unreferenced(&key).unwrap(), DeleteOutcome::NotFound);
    t.verify(&o.key()).unwrap();
    assert_eq!(t.usage().unwrap().objects, 1);
}

#[test]
fn open_and_health() {
    let dir = tmp();
    let missing = dir.path().join("not-mounted");
    assert!(matches!(DirTarget::open(&missing, CustomerId::new()), Err(Tier2Error::Io { .. })));
    assert!(!missing.exists(), "the base is never created");
    let file = dir.path().join("a-file");
    fs::write(&file, b"").unwrap();
    assert!(DirTarget::open(&file, CustomerId::new()).is_err());

    let t = DirTarget::open(dir.path(), CustomerId::new()).unwrap();
    t.health().unwrap();
    assert!(files_under(&t.location().join("tmp")).is_empty(), "the probe is gone");
    fs::remove_dir_all(t.location().join("tmp")).unwrap();
    assert!(matches!(t.health(), Err(Tier2Error::Io { .. })));
    // Reopening restores the layout.
    let t = DirTarget::open(dir.path(), t.customer_id()).unwrap();
    t.health().unwrap();
}

/// Printed, not asserted: SHA-256 speed decides how fast tiering and recall can go.
#[test]
fn sha256_throughput() {
    let buf = vec![0x5au8; 256 * MIB];
    let mut best = 0f64;
    for _ in 0..3 {
        let t0 = Instant::now();
        let mut h = Sha256::new();
        for chunk in buf.chunks(MIB) {
            h.update(chunk);
        }
        let d = h.finalize();
        assert_eq!(d.len(), 32);
        best = best.max(256.0 / t0.elapsed().as_secs_f64());
    }
    println!("SHA-256 over 256 MiB in memory: {best:.0} MiB/s (best of 3)");

    let dir = tmp();
    let t = DirTarget::open(dir.path(), CustomerId::new()).unwrap();
    for (seed, c) in [(9, Compression::None), (10, Compression::Zstd)] {
        let data = content(64 * MIB, seed); // distinct content: no dedupe
        let t0 = Instant::now();
        let out = t.put(&data[..], &meta(HostId::new(), "/bench", &data, c)).unwrap();
        let put = 64.0 / t0.elapsed().as_secs_f64();
        let t0 = Instant::now();
        t.verify(&out.key()).unwrap();
        let verify = 64.0 / t0.elapsed().as_secs_f64();
        println!(
            "put {c:?} 64 MiB (half random): {put:.0} MiB/s, verify {verify:.0} MiB/s, stored {} bytes",
            out.record.stored_size
        );
    }
}
