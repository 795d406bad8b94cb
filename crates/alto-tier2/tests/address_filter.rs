//! `OpenOptions::address_filter`: an object store reached by name connects only to addresses
//! the filter allows, checked when connecting (so a name that resolves differently between
//! a caller's check and the connection gains nothing).

use std::io::ErrorKind;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use alto_tier2::{AddressFilter, OpenOptions, Target, TargetKind, TargetSpec};

fn spec(port: u16) -> TargetSpec {
    TargetSpec::new(
        TargetKind::S3,
        "s3://tier",
        serde_json::json!({"endpoint": format!("http://localhost:{port}"), "region": "us-east-1",
            "access_key_id": "AKID", "secret_access_key": "secret-key-1", "allow_http": true,
            "path_style": true}),
    )
}

fn opts(allow: bool, asked: Arc<AtomicUsize>) -> OpenOptions {
    OpenOptions {
        request_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(2),
        max_retries: 0,
        address_filter: Some(AddressFilter(Arc::new(move |name, ip| {
            assert_eq!(name, "localhost");
            assert!(ip.is_loopback(), "{ip}");
            asked.fetch_add(1, Ordering::SeqCst);
            allow
        }))),
        ..OpenOptions::default()
    }
}

#[test]
fn connections_go_only_to_addresses_the_filter_allows() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let port = l.local_addr().unwrap().port();
    let customer = alto_model::CustomerId(uuid::Uuid::now_v7());

    let asked = Arc::new(AtomicUsize::new(0));
    let t = Target::open(&spec(port), customer, &opts(false, asked.clone())).unwrap();
    assert!(t.health().is_err());
    assert!(asked.load(Ordering::SeqCst) > 0, "the filter was asked");
    let pending = l.accept().map(drop).map_err(|e| e.kind());
    assert_eq!(pending, Err(ErrorKind::WouldBlock), "a refused address was connected to");

    // The same target with a filter that allows it does connect (nobody answers: it fails).
    let asked = Arc::new(AtomicUsize::new(0));
    let t = Target::open(&spec(port), customer, &opts(true, asked.clone())).unwrap();
    assert!(t.health().is_err());
    assert!(asked.load(Ordering::SeqCst) > 0);
    assert!(l.accept().is_ok(), "an allowed address was not connected to");
}

/// A filtered target follows no redirect: a redirect to a literal address (which no resolver
/// sees) would otherwise reach anything.
#[test]
fn a_filtered_target_follows_no_redirect() {
    use std::io::{Read as _, Write as _};
    let elsewhere = TcpListener::bind("127.0.0.2:0").unwrap();
    elsewhere.set_nonblocking(true).unwrap();
    let target = format!("http://{}/latest/meta-data", elsewhere.local_addr().unwrap());
    let front = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = front.local_addr().unwrap().port();
    let answered = Arc::new(AtomicUsize::new(0));
    let a = answered.clone();
    std::thread::spawn(move || {
        for mut s in front.incoming().flatten() {
            let mut buf = [0u8; 8192];
            let _ = s.read(&mut buf);
            let _ = s.write_all(
                format!(
                    "HTTP/1.1 307 Temporary Redirect\r\nlocation: {target}\r\n\
                     content-length: 0\r\nconnection: close\r\n\r\n"
                )
                .as_bytes(),
            );
            a.fetch_add(1, Ordering::SeqCst);
        }
    });
    let customer = alto_model::CustomerId(uuid::Uuid::now_v7());
    let t =
        Target::open(&spec(port), customer, &opts(true, Arc::new(AtomicUsize::new(0)))).unwrap();
    assert!(t.health().is_err());
    assert!(answered.load(Ordering::SeqCst) > 0, "the front server was asked");
    let followed = elsewhere.accept().map(drop).map_err(|e| e.kind());
    assert_eq!(followed, Err(ErrorKind::WouldBlock), "the redirect was followed");
}
