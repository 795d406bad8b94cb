//! Stubs on a real file system: run as root in a directory under /tmp (ext4 on the lab and
//! CI machines). Each test prints SKIPPED and returns when not root, because `trusted.*`
//! attributes and leases on other users' files need root.

#![allow(clippy::unwrap_used)]

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileExt as _, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use alto_stub::{
    convert_to_stub, convert_to_stub_with, identity, is_sparse_stub_layout, read_attr, recall,
    recall_file, reconcile, release_replaced, stub_status, AttrError, FileIdentity, Reconciled,
    StubAttr, StubError, StubState, StubStatus, STUB_XATTR,
};
use rustix::fs::{AtFlags, FallocateFlags, Mode, OFlags, StatxFlags, Timespec, Timestamps, CWD};
use sha2::{Digest, Sha256};

const MIB: usize = 1 << 20;

fn root() -> bool {
    alto_test_services::require_root("trusted.* attributes, leases")
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir_in("/tmp").expect("tempdir")
}

fn random(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::fill(&mut v[..]);
    v
}

const ATIME: Timespec = Timespec { tv_sec: 1_600_000_000, tv_nsec: 123_456_789 };
const MTIME: Timespec = Timespec { tv_sec: 1_500_000_000, tv_nsec: 987_654_321 };

fn make_file(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, content).unwrap();
    set_times(&p, ATIME, MTIME);
    p
}

fn set_times(p: &Path, atime: Timespec, mtime: Timespec) {
    let t = Timestamps { last_access: atime, last_modification: mtime };
    rustix::fs::utimensat(CWD, p, &t, AtFlags::empty()).unwrap();
}

struct Snap {
    size: u64,
    ino: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    blocks: u64,
    atime: (i64, u32),
    mtime: (i64, u32),
}

fn snap(p: &Path) -> Snap {
    let st = rustix::fs::statx(CWD, p, AtFlags::SYMLINK_NOFOLLOW, StatxFlags::BASIC_STATS).unwrap();
    Snap {
        size: st.stx_size,
        ino: st.stx_ino,
        mode: u32::from(st.stx_mode),
        uid: st.stx_uid,
        gid: st.stx_gid,
        blocks: st.stx_blocks,
        atime: (st.stx_atime.tv_sec, st.stx_atime.tv_nsec),
        mtime: (st.stx_mtime.tv_sec, st.stx_mtime.tv_nsec),
    }
}

/// Reads without updating atime (O_NOATIME: allowed for root).
fn read_noatime(p: &Path) -> Vec<u8> {
    let fd = rustix::fs::open(p, OFlags::RDONLY | OFlags::NOATIME | OFlags::CLOEXEC, Mode::empty())
        .unwrap();
    let mut v = Vec::new();
    File::from(fd).read_to_end(&mut v).unwrap();
    v
}

fn attr_for(content: &[u8]) -> StubAttr {
    let sha: [u8; 32] = Sha256::digest(content).into();
    StubAttr {
        state: StubState::Stubbed,
        object_key: format!("{}.zst", hex::encode(sha)),
        target: "default".into(),
        size: content.len() as u64,
        mtime_ns: MTIME.tv_sec * 1_000_000_000 + MTIME.tv_nsec,
        sha256: sha,
        chunks: None,
    }
}

fn user_xattr(p: &Path) -> Option<Vec<u8>> {
    let mut buf = [0u8; 256];
    rustix::fs::lgetxattr(p, "user.note", &mut buf[..]).ok().map(|n| buf[..n].to_vec())
}

fn raw_attr(p: &Path) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 8192];
    rustix::fs::lgetxattr(p, STUB_XATTR, &mut buf[..]).ok().map(|n| buf[..n].to_vec())
}

fn set_raw_attr(p: &Path, attr: &StubAttr) {
    rustix::fs::lsetxattr(p, STUB_XATTR, &attr.encode().unwrap(), rustix::fs::XattrFlags::empty())
        .unwrap();
}

fn punch(p: &Path, from: u64, len: u64) {
    let f = OpenOptions::new().write(true).open(p).unwrap();
    rustix::fs::fallocate(&f, FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE, from, len)
        .unwrap();
}

/// A stub that is the 1 MiB test file with owner, mode and a user attribute set first.
fn stubbed_file(dir: &Path) -> (PathBuf, Vec<u8>, StubAttr) {
    let content = random(MIB);
    let p = make_file(dir, "data.bin", &content);
    let attr = attr_for(&content);
    let id = identity(&p).unwrap();
    let out = convert_to_stub(&p, &id, &attr).unwrap();
    assert!(out.punched);
    (p, content, attr)
}

#[test]
fn convert_keeps_metadata_and_recall_restores_bytes() {
    if !root() {
        return;
    }
    let dir = tmp();
    let content = random(MIB);
    let p = make_file(dir.path(), "data.bin", &content);
    fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::lchown(&p, Some(1234), Some(2345)).unwrap();
    rustix::fs::lsetxattr(&p, "user.note", b"keep me", rustix::fs::XattrFlags::empty()).unwrap();
    let acl = set_acl(&p);
    set_times(&p, ATIME, MTIME); // chown/setxattr do not touch them, but be exact
    let before = snap(&p);
    let id = identity(&p).unwrap();
    assert_eq!(id.size, MIB as u64);
    assert_eq!(id.mtime_ns, 1_500_000_000_987_654_321);
    assert_eq!(id.inode, before.ino);
    let attr = attr_for(&content);

    let out = convert_to_stub(&p, &id, &attr).unwrap();
    let after = snap(&p);
    println!(
        "1 MiB file: st_blocks {} -> {} (reported by convert: {} -> {})",
        before.blocks, after.blocks, out.blocks_before, out.blocks_after
    );
    assert!(out.punched && !out.already_stubbed);
    assert_eq!(after.size, before.size);
    assert_eq!(after.ino, before.ino);
    assert_eq!(after.mtime, before.mtime, "mtime must be restored exactly");
    assert_eq!(after.atime, before.atime, "atime must be restored exactly");
    assert_eq!(after.mode, before.mode);
    assert_eq!(after.mode & 0o7777, 0o640);
    assert_eq!((after.uid, after.gid), (1234, 2345));
    assert!(after.blocks < before.blocks / 10, "{} -> {}", before.blocks, after.blocks);
    assert!(is_sparse_stub_layout(&p).unwrap());
    assert_eq!(user_xattr(&p).as_deref(), Some(&b"keep me"[..]));
    assert_eq!(get_acl(&p), acl, "the ACL is untouched");
    let got = read_attr(&p).unwrap().unwrap();
    assert_eq!(got, attr.with_state(StubState::Stubbed));
    // SEEK_DATA-aware tools still find data at offset 0.
    let f = File::open(&p).unwrap();
    assert_eq!(rustix::fs::seek(&f, rustix::fs::SeekFrom::Data(0)).unwrap(), 0);
    drop(f);
    let stub = read_noatime(&p);
    assert_eq!(stub.len(), MIB);
    assert_eq!(&stub[..4096], &content[..4096], "the first 4 KiB are kept");
    assert!(stub[4096..].iter().all(|&b| b == 0), "the rest is a hole");

    recall(&p, &content[..]).unwrap();
    let back = snap(&p);
    assert_eq!(read_noatime(&p), content, "byte-identical after recall");
    assert_eq!(read_attr(&p).unwrap(), None, "the attribute is gone");
    assert_eq!(back.mtime, before.mtime);
    assert_eq!(back.atime, before.atime);
    assert_eq!(back.mode, before.mode);
    assert_eq!((back.uid, back.gid), (1234, 2345));
    assert_eq!(back.ino, before.ino);
    assert!(back.blocks >= (MIB as u64) / 512);
    assert!(!is_sparse_stub_layout(&p).unwrap());
    assert_eq!(user_xattr(&p).as_deref(), Some(&b"keep me"[..]));
    assert_eq!(get_acl(&p), acl);
}

const ACL_XATTR: &str = "system.posix_acl_access";

/// Sets an access ACL `u::rw-,u:1000:r--,g::r--,m::r--,o::---` (the kernel's binary
/// format: version 2, then sorted `{tag u16, perm u16, id u32}` entries) and returns what
/// the kernel stored, or `None` if the file system has no ACLs.
fn set_acl(p: &Path) -> Option<Vec<u8>> {
    const UNDEFINED: u32 = u32::MAX;
    let mut v = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in [
        (0x01u16, 6u16, UNDEFINED),
        (0x02, 4, 1000),
        (0x04, 4, UNDEFINED),
        (0x10, 4, UNDEFINED),
        (0x20, 0, UNDEFINED),
    ] {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    match rustix::fs::lsetxattr(p, ACL_XATTR, &v, rustix::fs::XattrFlags::empty()) {
        Ok(()) => {
            let got = get_acl(p);
            assert!(got.is_some());
            got
        }
        Err(e) => {
            eprintln!("SKIPPED the ACL check: {e}");
            None
        }
    }
}

fn get_acl(p: &Path) -> Option<Vec<u8>> {
    let mut buf = [0u8; 256];
    rustix::fs::lgetxattr(p, ACL_XATTR, &mut buf[..]).ok().map(|n| buf[..n].to_vec())
}

struct FailingHalfway<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Read for FailingHalfway<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.data.len() / 2 {
            return Err(io::Error::new(io::ErrorKind::ConnectionReset, "tier-2 went away"));
        }
        let n = buf.len().min(64 * 1024).min(self.data.len() / 2 - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[test]
fn recall_with_wrong_bytes_keeps_the_stub() {
    if !root() {
        return;
    }
    let dir = tmp();
    let (p, content, attr) = stubbed_file(dir.path());
    let stub_before = read_noatime(&p);
    let before = snap(&p);

    let mut wrong = content.clone();
    wrong[MIB / 2] ^= 1;
    let mut longer = content.clone();
    longer.push(0);
    let mut wrong_head = content.clone();
    wrong_head[10] ^= 1;
    for (name, src) in [
        ("one flipped byte", &wrong[..]),
        ("one byte short", &content[..MIB - 1]),
        ("one byte long", &longer[..]),
        ("flipped byte in the head", &wrong_head[..]),
        ("empty", &[][..]),
    ] {
        match recall(&p, src) {
            Err(StubError::HashMismatch { expected, actual, bytes }) => {
                assert_eq!(expected, attr.sha256_hex(), "{name}");
                assert_ne!(actual, expected, "{name}");
                println!("{name}: HashMismatch after {bytes} bytes");
            }
            other => panic!("{name}: expected HashMismatch, got {other:?}"),
        }
        assert_eq!(read_attr(&p).unwrap(), Some(attr.clone()), "{name}: attr stays `stubbed`");
        assert!(is_sparse_stub_layout(&p).unwrap(), "{name}: layout is a stub again");
        assert_eq!(read_noatime(&p), stub_before, "{name}: the stub is exactly as before");
        let now = snap(&p);
        assert_eq!((now.mtime, now.size), (before.mtime, before.size), "{name}");
    }

    match recall(&p, FailingHalfway { data: &content, pos: 0 }) {
        Err(StubError::Source(e)) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset),
        other => panic!("expected Source, got {other:?}"),
    }
    assert_eq!(read_attr(&p).unwrap(), Some(attr.clone()));
    assert_eq!(read_noatime(&p), stub_before);

    recall(&p, &content[..]).unwrap();
    assert_eq!(read_noatime(&p), content);
    assert_eq!(read_attr(&p).unwrap(), None);
    // Not a stub any more.
    assert!(matches!(recall(&p, &content[..]), Err(StubError::NotAStub)));
}

#[test]
fn changed_after_identity_is_refused_untouched() {
    if !root() {
        return;
    }
    let dir = tmp();
    let content = random(256 * 1024);
    let p = make_file(dir.path(), "grows.log", &content);
    let id = identity(&p).unwrap();
    let attr = attr_for(&content);
    OpenOptions::new().append(true).open(&p).unwrap().write_all(b"!").unwrap();
    let before = snap(&p);
    match convert_to_stub(&p, &id, &attr) {
        Err(StubError::Changed { expected, actual }) => {
            assert_eq!(expected, id);
            assert_eq!(actual.size, id.size + 1);
        }
        other => panic!("expected Changed, got {other:?}"),
    }
    let after = snap(&p);
    assert_eq!((after.blocks, after.mtime, after.size), (before.blocks, before.mtime, before.size));
    assert_eq!(raw_attr(&p), None);
    let mut expect = content.clone();
    expect.push(b'!');
    assert_eq!(read_noatime(&p), expect);

    // Same size, only the mtime moved (rewritten in place, or touched).
    let p2 = make_file(dir.path(), "touched", &content);
    let id2 = identity(&p2).unwrap();
    set_times(&p2, ATIME, Timespec { tv_sec: MTIME.tv_sec + 1, tv_nsec: MTIME.tv_nsec });
    assert!(matches!(convert_to_stub(&p2, &id2, &attr), Err(StubError::Changed { .. })));
    assert_eq!(raw_attr(&p2), None);
    assert_eq!(read_noatime(&p2), content);

    // Replaced by another inode under the same name.
    let p3 = make_file(dir.path(), "replaced", &content);
    let id3 = identity(&p3).unwrap();
    let tmp3 = dir.path().join("replaced.new");
    fs::write(&tmp3, &content).unwrap();
    set_times(&tmp3, ATIME, MTIME);
    fs::rename(&tmp3, &p3).unwrap();
    match convert_to_stub(&p3, &id3, &attr) {
        Err(StubError::Changed { actual, .. }) => assert_ne!(actual.inode, id3.inode),
        other => panic!("expected Changed, got {other:?}"),
    }
    assert_eq!(read_noatime(&p3), content);

    // The attribute must describe the expected file.
    let id4 = FileIdentity { size: id3.size + 1, ..id3 };
    assert!(matches!(convert_to_stub(&p3, &id4, &attr), Err(StubError::AttrMismatch(_))));
}

fn kill(mut c: Child) {
    c.kill().ok();
    c.wait().ok();
}

fn assert_in_use(p: &Path, content: &[u8], what: &str) {
    let id = identity(p).unwrap();
    let before = snap(p);
    match convert_to_stub(p, &id, &attr_for(content)) {
        Err(StubError::InUse) => {}
        other => panic!("{what}: expected InUse, got {other:?}"),
    }
    assert_eq!(raw_attr(p), None, "{what}: no attribute left behind");
    let after = snap(p);
    assert_eq!((after.blocks, after.mtime), (before.blocks, before.mtime), "{what}");
}

#[test]
fn open_elsewhere_is_in_use() {
    if !root() {
        return;
    }
    let dir = tmp();
    let content = random(64 * 1024);
    let p = make_file(dir.path(), "busy", &content);

    let w = OpenOptions::new().write(true).open(&p).unwrap();
    assert_in_use(&p, &content, "writer in this process");
    drop(w);
    let r = File::open(&p).unwrap();
    assert_in_use(&p, &content, "reader in this process");
    drop(r);

    let reader = Command::new("sleep")
        .arg("60")
        .stdin(File::open(&p).unwrap())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    assert_in_use(&p, &content, "reader in another process");
    kill(reader);

    let writer = Command::new("sleep")
        .arg("60")
        .stdin(Stdio::null())
        .stdout(OpenOptions::new().append(true).open(&p).unwrap())
        .spawn()
        .unwrap();
    assert_in_use(&p, &content, "appender in another process");
    kill(writer);

    // Everyone gone: now it converts.
    assert_eq!(read_noatime(&p), content);
    set_times(&p, ATIME, MTIME);
    let id = identity(&p).unwrap();
    let out = convert_to_stub(&p, &id, &attr_for(&content)).unwrap();
    assert!(out.punched);
}

#[test]
fn tiny_file_is_marked_not_punched() {
    if !root() {
        return;
    }
    let dir = tmp();
    let content = random(100);
    let p = make_file(dir.path(), "tiny", &content);
    let id = identity(&p).unwrap();
    let attr = attr_for(&content);
    let out = convert_to_stub(&p, &id, &attr).unwrap();
    assert!(!out.punched);
    assert_eq!(read_attr(&p).unwrap().map(|a| a.state), Some(StubState::Stubbed));
    assert_eq!(read_noatime(&p), content);
    assert_eq!(snap(&p).mtime, (MTIME.tv_sec, MTIME.tv_nsec as u32));
    assert!(is_sparse_stub_layout(&p).unwrap());

    let mut wrong = content.clone();
    wrong[0] ^= 0xff;
    assert!(matches!(recall(&p, &wrong[..]), Err(StubError::HashMismatch { .. })));
    assert_eq!(read_noatime(&p), content, "a failed recall never touches the head");
    assert!(read_attr(&p).unwrap().is_some());
    recall(&p, &content[..]).unwrap();
    assert_eq!(read_attr(&p).unwrap(), None);
    assert_eq!(read_noatime(&p), content);
}

#[test]
fn non_regular_files_are_refused() {
    if !root() {
        return;
    }
    let dir = tmp();
    let content = random(8192);
    let target = make_file(dir.path(), "target", &content);
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let id = identity(&target).unwrap();
    let attr = attr_for(&content);
    assert!(matches!(identity(&link), Err(StubError::NotRegular { .. })));
    assert!(matches!(convert_to_stub(&link, &id, &attr), Err(StubError::NotRegular { .. })));
    assert!(matches!(recall(&link, &content[..]), Err(StubError::NotRegular { .. })));
    assert!(matches!(reconcile(&link), Err(StubError::NotRegular { .. })));
    assert!(matches!(is_sparse_stub_layout(&link), Err(StubError::NotRegular { .. })));
    assert_eq!(read_attr(&link).unwrap(), None);
    assert_eq!(raw_attr(&target), None);
    assert_eq!(read_noatime(&target), content);

    let sub = dir.path().join("dir");
    fs::create_dir(&sub).unwrap();
    assert!(matches!(identity(&sub), Err(StubError::NotRegular { .. })));
    assert!(matches!(convert_to_stub(&sub, &id, &attr), Err(StubError::NotRegular { .. })));

    let fifo = dir.path().join("fifo");
    rustix::fs::mknodat(CWD, &fifo, rustix::fs::FileType::Fifo, Mode::from_raw_mode(0o600), 0)
        .unwrap();
    // Must not block opening the FIFO.
    assert!(matches!(convert_to_stub(&fifo, &id, &attr), Err(StubError::NotRegular { .. })));
}

#[test]
fn convert_is_idempotent_and_refuses_foreign_stubs() {
    if !root() {
        return;
    }
    let dir = tmp();
    let (p, content, attr) = stubbed_file(dir.path());
    let id = identity(&p).unwrap();
    let again = convert_to_stub(&p, &id, &attr).unwrap();
    assert!(again.already_stubbed && !again.punched);
    let mut other = attr.clone();
    other.object_key = "someone-elses-object".into();
    match convert_to_stub(&p, &id, &other) {
        Err(StubError::BadState { state: StubState::Stubbed, op: "convert" }) => {}
        r => panic!("expected BadState, got {r:?}"),
    }
    assert_eq!(read_attr(&p).unwrap(), Some(attr));
    recall(&p, &content[..]).unwrap();
}

#[test]
fn garbage_attribute_is_a_typed_error() {
    if !root() {
        return;
    }
    let dir = tmp();
    let content = random(10_000);
    let p = make_file(dir.path(), "forged", &content);
    rustix::fs::lsetxattr(&p, STUB_XATTR, b"v=1;st=stubbed;obj=x", rustix::fs::XattrFlags::empty())
        .unwrap();
    assert!(matches!(read_attr(&p), Err(StubError::Attr(AttrError::Malformed(_)))));
    let id = identity(&p).unwrap();
    assert!(matches!(convert_to_stub(&p, &id, &attr_for(&content)), Err(StubError::Attr(_))));
    assert!(matches!(recall(&p, &content[..]), Err(StubError::Attr(_))));
    let v1 = String::from_utf8(attr_for(&content).encode().unwrap()).unwrap();
    // Version 2 must carry its `chunks` field.
    rustix::fs::lsetxattr(
        &p,
        STUB_XATTR,
        v1.replace("v=1", "v=2").as_bytes(),
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    assert!(matches!(read_attr(&p), Err(StubError::Attr(AttrError::Malformed(_)))));
    let future = v1.replace("v=1", "v=3");
    rustix::fs::lsetxattr(&p, STUB_XATTR, future.as_bytes(), rustix::fs::XattrFlags::empty())
        .unwrap();
    assert!(matches!(read_attr(&p), Err(StubError::Attr(AttrError::UnsupportedVersion(3)))));
    assert_eq!(read_noatime(&p), content);
}

/// Each crash point of convert and recall, built by hand, and what `reconcile` makes of it.
#[test]
fn reconcile_repairs_every_interrupted_state() {
    if !root() {
        return;
    }
    let dir = tmp();
    let content = random(MIB);
    let attr = attr_for(&content);
    let mtime = (MTIME.tv_sec, MTIME.tv_nsec as u32);

    // Killed after `stubbing` was written, before the punch.
    let p = make_file(dir.path(), "a", &content);
    set_raw_attr(&p, &attr.with_state(StubState::Stubbing));
    assert_eq!(reconcile(&p).unwrap(), Reconciled::AbortedStubbing);
    assert_eq!(raw_attr(&p), None);
    assert_eq!(read_noatime(&p), content);
    assert_eq!(snap(&p).mtime, mtime);

    // Killed in the middle of the punch (partly punched, mtime already moved).
    let p = make_file(dir.path(), "b", &content);
    set_raw_attr(&p, &attr.with_state(StubState::Stubbing));
    punch(&p, 4096, 256 * 1024);
    assert_eq!(reconcile(&p).unwrap(), Reconciled::FinishedStubbing);
    assert_eq!(read_attr(&p).unwrap(), Some(attr.clone()));
    assert!(is_sparse_stub_layout(&p).unwrap());
    assert_eq!(snap(&p).mtime, mtime, "mtime restored from the attribute");
    recall(&p, &content[..]).unwrap();
    assert_eq!(read_noatime(&p), content);

    // Killed after the punch, before `stubbed`.
    let p = make_file(dir.path(), "c", &content);
    set_raw_attr(&p, &attr.with_state(StubState::Stubbing));
    punch(&p, 4096, (MIB - 4096) as u64);
    assert_eq!(reconcile(&p).unwrap(), Reconciled::FinishedStubbing);
    assert_eq!(reconcile(&p).unwrap(), Reconciled::Stubbed, "idempotent");

    // `stubbing`, then someone rewrote the file while no agent ran: not ours to decide.
    let p = make_file(dir.path(), "d", &content);
    set_raw_attr(&p, &attr.with_state(StubState::Stubbing));
    let mut other = content.clone();
    other[MIB - 1] ^= 1;
    fs::write(&p, &other).unwrap();
    assert!(matches!(reconcile(&p), Err(StubError::Conflict)));
    assert_eq!(read_noatime(&p), other, "untouched");

    // Killed in the middle of a recall: part of the tail written, state `recalling`.
    let (p, _, _) = {
        let sub = dir.path().join("e");
        fs::create_dir(&sub).unwrap();
        stubbed_file(&sub)
    };
    let this_attr = read_attr(&p).unwrap().unwrap();
    let this_content_len = this_attr.size;
    set_raw_attr(&p, &this_attr.with_state(StubState::Recalling));
    OpenOptions::new()
        .write(true)
        .open(&p)
        .map(|f| {
            use std::os::unix::fs::FileExt;
            f.write_all_at(&[7u8; 100_000], 8192).unwrap();
        })
        .unwrap();
    assert!(!is_sparse_stub_layout(&p).unwrap());
    assert_eq!(reconcile(&p).unwrap(), Reconciled::RolledBackRecall);
    assert_eq!(read_attr(&p).unwrap().map(|a| a.state), Some(StubState::Stubbed));
    assert!(is_sparse_stub_layout(&p).unwrap());
    assert_eq!(snap(&p).size, this_content_len);

    // Killed after a recall wrote everything, before the attribute went.
    let p = make_file(dir.path(), "f", &content);
    set_raw_attr(&p, &attr.with_state(StubState::Recalling));
    assert_eq!(reconcile(&p).unwrap(), Reconciled::FinishedRecall);
    assert_eq!(raw_attr(&p), None);
    assert_eq!(read_noatime(&p), content);

    // A stub truncated with O_TRUNC (no pre-content event) is reported, not touched.
    let sub = dir.path().join("g");
    fs::create_dir(&sub).unwrap();
    let (p, _, gattr) = stubbed_file(&sub);
    fs::write(&p, b"new content").unwrap();
    match reconcile(&p).unwrap() {
        Reconciled::Stale { attr, size, .. } => {
            assert_eq!(attr, gattr);
            assert_eq!(size, 11);
        }
        r => panic!("expected Stale, got {r:?}"),
    }
    assert!(matches!(recall(&p, &content[..]), Err(StubError::StaleStub { .. })));
    assert_eq!(fs::read(&p).unwrap(), b"new content");

    // No attribute at all.
    let p = make_file(dir.path(), "h", b"plain");
    assert_eq!(reconcile(&p).unwrap(), Reconciled::NotAStub);
    assert_eq!(fs::metadata(&p).unwrap().size(), 5);
}

/// The whole life of a file, as the agent will run it: identity, put into tier-2 (zstd),
/// verify, convert, recall from the verifying tier-2 reader; and a corrupted object that
/// never makes it into the file.
#[test]
fn tier_stub_recall_end_to_end() {
    use alto_tier2::{Compression, DirTarget, PutMeta, Sha256Digest};
    if !root() {
        return;
    }
    let dir = tmp();
    let share = dir.path().join("share");
    let tier2 = dir.path().join("tier2");
    fs::create_dir_all(&share).unwrap();
    fs::create_dir_all(&tier2).unwrap();
    let target = DirTarget::open(&tier2, alto_model::CustomerId::new()).unwrap();
    let mut content = random(3 * MIB);
    content.extend(std::iter::repeat_n(b'z', 2 * MIB)); // something to compress
    let p = make_file(&share, "cold.bin", &content);

    let id = identity(&p).unwrap();
    // Upload from a descriptor that is closed again before the conversion: the write lease
    // counts this process's own descriptors too.
    let out = {
        let src = File::open(&p).unwrap();
        let meta = PutMeta {
            host_id: alto_model::HostId::new(),
            path: p.to_str().unwrap().into(),
            path_escaped: false,
            size: id.size,
            mtime_ns: id.mtime_ns,
            atime_ns: ATIME.tv_sec * 1_000_000_000 + ATIME.tv_nsec,
            expected_sha256: None,
            compression: Compression::Zstd,
            created_at: chrono::DateTime::UNIX_EPOCH,
        };
        target.put(src, &meta).unwrap()
    };
    let key = out.key();
    target.verify(&key).unwrap();
    assert_eq!(key.sha256, Sha256Digest::of(&content));
    let attr = StubAttr {
        state: StubState::Stubbed,
        object_key: key.to_string(),
        target: "default".into(),
        size: id.size,
        mtime_ns: id.mtime_ns,
        sha256: key.sha256.0,
        chunks: None,
    };
    convert_to_stub(&p, &id, &attr).unwrap();
    assert!(is_sparse_stub_layout(&p).unwrap());
    let stub = read_attr(&p).unwrap().unwrap();
    let key_again: alto_tier2::ObjectKey = stub.object_key.parse().unwrap();
    assert_eq!(key_again, key);

    // A corrupted tier-2 object: the recall fails, the stub stays a stub.
    let obj = target.object_path(&key);
    let good = fs::read(&obj).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x10;
    fs::write(&obj, &bad).unwrap();
    let err = recall(&p, target.reader(&key).unwrap()).unwrap_err();
    println!("recall from a corrupted object: {err}");
    assert!(matches!(err, StubError::Source(_) | StubError::HashMismatch { .. }));
    assert_eq!(read_attr(&p).unwrap(), Some(attr.clone()));
    assert!(is_sparse_stub_layout(&p).unwrap());

    // Repaired object: the recall succeeds.
    fs::write(&obj, &good).unwrap();
    recall(&p, target.reader(&key).unwrap()).unwrap();
    assert_eq!(read_noatime(&p), content);
    assert_eq!(read_attr(&p).unwrap(), None);
    assert_eq!(snap(&p).mtime, (MTIME.tv_sec, MTIME.tv_nsec as u32));
}

/// What the on-access handler relies on: the status of an open descriptor, releasing a stub
/// that was replaced behind its back, resuming an interrupted recall on the same descriptor,
/// and a conversion whose caller step fails changing nothing.
#[test]
fn status_release_resume_and_the_caller_step() {
    if !root() {
        return;
    }
    let dir = tmp();
    let open = |p: &Path| OpenOptions::new().read(true).write(true).open(p).unwrap();

    let plain = make_file(dir.path(), "plain", b"plain");
    assert_eq!(stub_status(&open(&plain)).unwrap(), StubStatus::NotAStub);

    let sub = dir.path().join("a");
    fs::create_dir(&sub).unwrap();
    let (p, content, attr) = stubbed_file(&sub);
    let before = snap(&p);
    assert_eq!(stub_status(&open(&p)).unwrap(), StubStatus::Stub(attr.clone()));
    assert!(matches!(release_replaced(&open(&p)), Err(StubError::BadState { .. })));

    // Interrupted recall: `recalling`, part of the tail written (mtime moved). Resuming on a
    // descriptor finishes it and puts the original mtime back.
    set_raw_attr(&p, &attr.with_state(StubState::Recalling));
    open(&p).write_all_at(&content[8192..100_000], 8192).unwrap();
    assert_ne!(snap(&p).mtime, before.mtime);
    let f = open(&p);
    assert_eq!(stub_status(&f).unwrap(), StubStatus::Stub(attr.with_state(StubState::Recalling)));
    recall_file(&f, &content[..]).unwrap();
    drop(f);
    assert_eq!(read_noatime(&p), content);
    assert_eq!(raw_attr(&p), None);
    assert_eq!(snap(&p).mtime, before.mtime);

    // An interrupted recall whose file then grew (a write past the end): while content is
    // still missing it stays a stub and recalling it is refused, never released with holes;
    // once nothing is missing, it is an ordinary replaced file.
    let sub = dir.path().join("grown");
    fs::create_dir(&sub).unwrap();
    let (p, content, attr) = stubbed_file(&sub);
    set_raw_attr(&p, &attr.with_state(StubState::Recalling));
    open(&p).write_all_at(&content[8192..65_536], 8192).unwrap();
    open(&p).write_all_at(b"appended", content.len() as u64).unwrap();
    let recalling = attr.with_state(StubState::Recalling);
    assert_eq!(stub_status(&open(&p)).unwrap(), StubStatus::Stub(recalling.clone()));
    assert!(matches!(release_replaced(&open(&p)), Err(StubError::BadState { .. })));
    assert!(matches!(recall_file(&open(&p), &content[..]), Err(StubError::StaleStub { .. })));
    assert_eq!(raw_attr(&p).map(|a| StubAttr::parse(&a).unwrap()), Some(recalling.clone()));
    open(&p).write_all_at(&content[4096..], 4096).unwrap();
    assert_eq!(stub_status(&open(&p)).unwrap(), StubStatus::Replaced(recalling));

    // Replaced with `>` (O_TRUNC raises no event): released, the new bytes untouched.
    let sub = dir.path().join("b");
    fs::create_dir(&sub).unwrap();
    let (p, _, attr) = stubbed_file(&sub);
    fs::write(&p, b"new").unwrap();
    assert_eq!(stub_status(&open(&p)).unwrap(), StubStatus::Replaced(attr.clone()));
    assert_eq!(release_replaced(&open(&p)).unwrap(), attr);
    assert_eq!(raw_attr(&p), None);
    assert_eq!(fs::read(&p).unwrap(), b"new");
    assert!(matches!(release_replaced(&open(&p)), Err(StubError::NotAStub)));

    // The caller's step runs under the lease with `stubbing` set; its failure undoes it.
    let content = random(MIB);
    let p = make_file(dir.path(), "c", &content);
    let attr = attr_for(&content);
    let id = identity(&p).unwrap();
    let mut seen = None;
    let err = convert_to_stub_with(&p, &id, &attr, &mut |f| {
        seen = Some(stub_status(f).unwrap());
        Err(io::Error::other("no"))
    })
    .unwrap_err();
    assert!(matches!(err, StubError::Io { op: "before punch", .. }), "{err:?}");
    assert_eq!(seen, Some(StubStatus::Converting(attr.with_state(StubState::Stubbing))));
    assert_eq!(raw_attr(&p), None);
    assert_eq!(read_noatime(&p), content);
    let mut ran = false;
    convert_to_stub_with(&p, &id, &attr, &mut |_| {
        ran = true;
        Ok(())
    })
    .unwrap();
    assert!(ran);
    assert!(is_sparse_stub_layout(&p).unwrap());
}
