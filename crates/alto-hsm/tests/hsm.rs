//! Integration tests of the on-access hook on a real ext4 file system (a loop-mounted image
//! built with `mkfs.ext4`, installed by `scripts/setup.sh`): events carry the right range, a
//! fill through the event descriptor reaches the reader, denials and dropped events fail the
//! read with EIO instead of hanging it, ignore marks stop events, tmpfs is `Unsupported`, and
//! I/O through an ignored bind mount raises nothing. Root only (`ALTO_REQUIRE_ROOT=1` makes a
//! non-root run fail instead of skip).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use alto_hsm::{
    DenyErrno, Event, EventReader, FileHandle, HsmError, HsmGroup, Range, UnsupportedReason,
};
use alto_test_services::mounts::Mounts;

const WAIT: Duration = Duration::from_secs(10);
const STUB_SIZE: usize = 64 * 1024;

fn root() -> bool {
    alto_test_services::require_root("fanotify groups, loop and bind mounts")
}

/// A fresh ext4 mount holding one stub (`stub`), with a group marking the file system.
fn marked_stub(mounts: &mut Mounts) -> (PathBuf, HsmGroup) {
    let mnt = mounts.ext4();
    let stub = mnt.join("stub");
    make_stub(&stub, &content(STUB_SIZE));
    let group = HsmGroup::new().expect("group");
    group.mark_filesystem(&mnt).expect("mark ext4");
    (stub, group)
}

/// Never zero, so a zero byte in a read is always a stub hole.
fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 + 1).collect()
}

/// A stub the way `alto-stub` makes one: the first 4 KiB real, the rest a punched hole.
fn make_stub(path: &Path, data: &[u8]) {
    let f = File::create(path).expect("create stub");
    f.write_all_at(data, 0).expect("write");
    rustix::fs::fallocate(
        &f,
        rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE,
        4096,
        (data.len() - 4096) as u64,
    )
    .expect("punch hole");
    f.sync_all().expect("fsync");
    let mut probe = vec![0u8; 100];
    File::open(path).expect("open").read_exact_at(&mut probe, 8192).expect("read");
    assert!(probe.iter().all(|&b| b == 0), "the stub's hole reads zeros without the hook");
}

fn make_plain(path: &Path, data: &[u8]) {
    std::fs::write(path, data).expect("write plain file");
}

/// Opens (after the mark: earlier opens never raise events) and reads in another thread.
fn spawn_read(path: &Path, offset: u64, len: usize) -> mpsc::Receiver<io::Result<Vec<u8>>> {
    let (tx, rx) = mpsc::channel();
    let path = path.to_path_buf();
    thread::spawn(move || {
        let r = File::open(&path).and_then(|f| {
            let mut buf = vec![0u8; len];
            let n = f.read_at(&mut buf, offset)?;
            buf.truncate(n);
            Ok(buf)
        });
        let _ = tx.send(r);
    });
    rx
}

fn one_event(reader: &mut EventReader) -> Event {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut events = reader.read_timeout(Duration::from_millis(200)).expect("read events");
        if !events.is_empty() {
            assert_eq!(events.len(), 1, "exactly one event: {events:?}");
            return events.pop().expect("one event");
        }
        assert!(Instant::now() < deadline, "no event within {WAIT:?}");
    }
}

fn result(rx: &mpsc::Receiver<io::Result<Vec<u8>>>) -> io::Result<Vec<u8>> {
    rx.recv_timeout(WAIT).expect("the reader finished (did not hang)")
}

/// Waits for the reader to finish while asserting no event arrives (one that does is
/// allowed, so nothing hangs, and the test fails).
fn result_without_event(
    reader: &mut EventReader,
    rx: &mpsc::Receiver<io::Result<Vec<u8>>>,
) -> io::Result<Vec<u8>> {
    let deadline = Instant::now() + WAIT;
    loop {
        let events = reader.read_timeout(Duration::from_millis(100)).expect("read events");
        if !events.is_empty() {
            let desc = format!("{events:?}");
            for e in events {
                e.allow().expect("allow");
            }
            panic!("unexpected event(s): {desc}");
        }
        if let Ok(r) = rx.try_recv() {
            return r;
        }
        assert!(Instant::now() < deadline, "reader neither finished nor raised an event");
    }
}

#[test]
fn stub_read_raises_event_with_range_and_sees_the_filled_bytes() {
    if !root() {
        return;
    }
    let mut mounts = Mounts::new();
    let mnt = mounts.ext4();
    let data = content(STUB_SIZE);
    let stub = mnt.join("stub");
    make_stub(&stub, &data);

    let group = HsmGroup::new().expect("group");
    group.mark_filesystem(&mnt).expect("mark ext4");
    let mut reader = group.reader();

    let rx = spawn_read(&stub, 8192 + 100, 200);
    let ev = one_event(&mut reader);
    assert_ne!(ev.mask() & alto_hsm::FAN_PRE_ACCESS, 0);
    assert_eq!(ev.range(), Some(Range { offset: 8192, count: 4096 }), "page-rounded range");
    assert!(ev.tid() > 0);
    ev.file().write_all_at(&data, 0).expect("fill through the event fd");
    ev.allow().expect("allow");

    let got = result(&rx).expect("read succeeds");
    assert_eq!(got, data[8292..8492].to_vec(), "the reader sees the real bytes, never zeros");
}

#[test]
fn deny_eio_fails_the_read_with_eio() {
    if !root() {
        return;
    }
    let mut mounts = Mounts::new();
    let (stub, group) = marked_stub(&mut mounts);
    let mut reader = group.reader();

    let rx = spawn_read(&stub, 20_000, 100);
    one_event(&mut reader).deny(DenyErrno::Io).expect("deny");
    let err = result(&rx).expect_err("denied read fails");
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
}

#[test]
fn dropped_unanswered_event_denies_with_eio() {
    if !root() {
        return;
    }
    let mut mounts = Mounts::new();
    let (stub, group) = marked_stub(&mut mounts);
    let mut reader = group.reader();

    let rx = spawn_read(&stub, 0, 100);
    let ev = one_event(&mut reader);
    drop(ev);
    let err = result(&rx).expect_err("read of a dropped event fails");
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
}

#[test]
fn evictable_ignore_mark_stops_events_for_a_normal_file() {
    if !root() {
        return;
    }
    let mut mounts = Mounts::new();
    let mnt = mounts.ext4();
    let data = content(8192);
    let plain = mnt.join("plain");
    let other = mnt.join("other");
    make_plain(&plain, &data);
    make_plain(&other, &data);

    let group = HsmGroup::new().expect("group");
    group.mark_filesystem(&mnt).expect("mark ext4");
    let mut reader = group.reader();

    // First access: one event; the owner decides it is no stub and ignores the inode.
    let rx = spawn_read(&plain, 0, 8192);
    let ev = one_event(&mut reader);
    group.ignore_inode_evictable(&ev).expect("ignore mark");
    ev.allow().expect("allow");
    assert_eq!(result(&rx).expect("read"), data);

    // Later accesses of that file: no event.
    let rx = spawn_read(&plain, 100, 4000);
    assert_eq!(result_without_event(&mut reader, &rx).expect("read"), data[100..4100].to_vec());

    // Another file of the same file system still raises its event.
    let rx = spawn_read(&other, 0, 10);
    one_event(&mut reader).allow().expect("allow");
    assert_eq!(result(&rx).expect("read"), data[..10].to_vec());

    // Removing the ignore mark brings the events back.
    let f = File::open(&plain).expect("open");
    assert!(group.remove_inode_ignore(&f).expect("remove ignore"));
    assert!(!group.remove_inode_ignore(&f).expect("second remove"));
    let rx = spawn_read(&plain, 0, 10);
    one_event(&mut reader).allow().expect("allow");
    assert_eq!(result(&rx).expect("read"), data[..10].to_vec());
}

#[test]
fn tmpfs_is_unsupported() {
    if !root() {
        return;
    }
    let mut mounts = Mounts::new();
    let mnt = mounts.tmpfs();
    let group = HsmGroup::new().expect("group");
    match group.mark_filesystem(&mnt) {
        Err(HsmError::Unsupported { path, reason: UnsupportedReason::FileSystem }) => {
            assert_eq!(path, mnt);
        }
        other => panic!("expected Unsupported(FileSystem), got {other:?}"),
    }
}

#[test]
fn io_through_the_ignored_private_bind_mount_raises_no_event() {
    if !root() {
        return;
    }
    let mut mounts = Mounts::new();
    let mnt = mounts.ext4();
    let data = content(STUB_SIZE);
    make_stub(&mnt.join("stub"), &data);
    // The daemon would make this bind mount in its own mount namespace; here it is in the
    // test's (unsharing a mount namespace needs a single-threaded process).
    let private = mounts.bind(&mnt, "private");

    let group = HsmGroup::new().expect("group");
    group.mark_filesystem(&mnt).expect("mark ext4");
    group.ignore_mount(&private).expect("ignore the private mount");
    let mut reader = group.reader();

    // Reading the stub by path through the private mount: no event, the raw stub bytes.
    let rx = spawn_read(&private.join("stub"), 8192, 100);
    let raw = result_without_event(&mut reader, &rx).expect("read through the private mount");
    assert!(raw.iter().all(|&b| b == 0), "the private mount sees the stub itself");

    // Filling by path through the private mount (a background recall): no event either.
    let (tx, rx) = mpsc::channel();
    let path = private.join("stub");
    let fill = data.clone();
    thread::spawn(move || {
        let r = OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|f| f.write_all_at(&fill, 0).and_then(|()| f.sync_all()))
            .map(|()| Vec::new());
        let _ = tx.send(r);
    });
    result_without_event(&mut reader, &rx).expect("fill through the private mount");

    // The same file through the normal mount still raises an event, and now reads real bytes.
    let rx = spawn_read(&mnt.join("stub"), 8192, 100);
    one_event(&mut reader).allow().expect("allow");
    assert_eq!(result(&rx).expect("read"), data[8192..8292].to_vec());
}

/// `truncate(N)` raises an event whose range is page-rounded around N: `count == 0` only when
/// N is page-aligned (measured on 6.18.44; the lab report's "offset=N count=0" holds only for
/// aligned sizes). So a range never tells a truncate from a read: callers fill whole files.
#[test]
fn truncate_of_a_stub_raises_an_event_at_the_new_size() {
    if !root() {
        return;
    }
    let mut mounts = Mounts::new();
    let (stub, group) = marked_stub(&mut mounts);
    let mut reader = group.reader();

    for (size, expected) in [
        (0u64, Range { offset: 0, count: 0 }),
        (16_384, Range { offset: 16_384, count: 0 }),
        (10_000, Range { offset: 8192, count: 4096 }),
        (100_000, Range { offset: 98_304, count: 4096 }),
    ] {
        let (tx, rx) = mpsc::channel();
        let path = stub.clone();
        thread::spawn(move || {
            let r = OpenOptions::new().write(true).open(&path).and_then(|f| f.set_len(size));
            let _ = tx.send(r.map(|()| Vec::new()));
        });
        let ev = one_event(&mut reader);
        let range = ev.range().expect("range record");
        assert_eq!(range, expected, "truncate to {size}");
        assert_eq!(range.is_whole_file(), expected.count == 0);
        ev.deny(DenyErrno::Again).expect("deny");
        let err = result(&rx).expect_err("denied truncate fails");
        assert_eq!(err.raw_os_error(), Some(libc::EAGAIN), "{err}");
        let len = std::fs::metadata(&stub).expect("stat").len();
        assert_eq!(len, STUB_SIZE as u64, "a denied truncate changes nothing");
    }
}

#[test]
fn inode_mark_raises_events_until_removed() {
    if !root() {
        return;
    }
    let mut mounts = Mounts::new();
    let mnt = mounts.ext4();
    let data = content(STUB_SIZE);
    let stub = mnt.join("stub");
    let plain = mnt.join("plain");
    make_stub(&stub, &data);
    make_plain(&plain, &data[..100]);

    let group = HsmGroup::new().expect("group");
    let marked = File::open(&stub).expect("open stub");
    group.mark_inode(&marked).expect("mark the stub's inode");
    let mut reader = group.reader();

    // Only the marked inode raises events (no file system mark here).
    let rx = spawn_read(&plain, 0, 100);
    assert_eq!(result_without_event(&mut reader, &rx).expect("read"), data[..100].to_vec());

    let rx = spawn_read(&stub, 40_000, 10);
    let ev = one_event(&mut reader);
    assert_eq!(ev.range(), Some(Range { offset: 36_864, count: 4096 }));
    ev.file().write_all_at(&data, 0).expect("fill");
    assert!(group.remove_inode_mark(&ev).expect("remove the mark"));
    ev.allow().expect("allow");
    assert_eq!(result(&rx).expect("read"), data[40_000..40_010].to_vec());

    let rx = spawn_read(&stub, 0, 10);
    assert_eq!(result_without_event(&mut reader, &rx).expect("read"), data[..10].to_vec());
    assert!(!group.remove_inode_mark(&marked).expect("second remove"));
}

/// What a restarted agent relies on: a second owner of the group (taken from a process with
/// `pidfd_getfd`, here this one) answers an event the first owner read and never answered, by
/// its descriptor number; a number with no pending event is `false`; the event's file handle
/// opens the file again through an ignored mount without raising an event.
#[test]
fn orphaned_event_is_answered_by_number_and_its_handle_reopens_the_file() {
    use std::os::fd::{AsFd as _, AsRawFd as _};
    if !root() {
        return;
    }
    let mut mounts = Mounts::new();
    let (stub, group) = marked_stub(&mut mounts);
    let mnt = stub.parent().unwrap().to_owned();
    let private = mounts.bind(&mnt, "private");
    group.ignore_mount(&private).expect("ignore the private mount");
    let mut reader = group.reader();

    let rx = spawn_read(&stub, 8192, 100);
    let ev = one_event(&mut reader);
    let number = ev.raw_fd();
    let handle = FileHandle::of(&ev).expect("handle");
    // The first owner "dies": its descriptor goes, the event stays pending.
    std::mem::forget(ev);
    // The crash would close it with the process.
    drop(unsafe_close(number));
    assert!(rx.recv_timeout(Duration::from_millis(300)).is_err(), "the reader stays blocked");

    let second = HsmGroup::from_process(std::process::id() as i32, group.as_fd().as_raw_fd())
        .expect("take the group from its holder");
    let mount_fd = File::open(&private).expect("open the private mount");
    let reopened = handle.open(&mount_fd).expect("open by handle");
    let data = content(STUB_SIZE);
    reopened.write_all_at(&data[4096..], 4096).expect("fill through the handle");
    assert!(second.answer_orphan(number, None).expect("answer"));
    assert_eq!(result(&rx).expect("read"), data[8192..8292].to_vec());
    assert!(!second.answer_orphan(number, None).expect("second answer"), "nothing left");
    assert!(matches!(
        HsmGroup::adopt(File::open(&mnt).unwrap().into()),
        Err(HsmError::NotAGroup(_))
    ));
    drop(reader);
}

/// Closes a descriptor number this test leaked on purpose (an owner that died).
fn unsafe_close(fd: i32) -> std::io::Result<()> {
    use std::os::fd::{FromRawFd as _, OwnedFd};
    // The number came from `Event::raw_fd` of an event that was then forgotten: nobody else
    // owns it, and it is closed exactly once here.
    #[allow(unsafe_code)]
    drop(unsafe { OwnedFd::from_raw_fd(fd) });
    Ok(())
}
