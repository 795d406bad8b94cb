//! The event loop: one reader thread, a pool of fill threads, a deadline thread.
//!
//! The reader lets ordinary files through at once (with an evictable ignore mark, so their
//! next accesses raise nothing), journals every other access
//! (`<state>/on-access/pending/<fd>.json`: descriptor number, file handle, thread), and queues
//! stubs:
//! the first access to a file starts its fill, later ones wait on the same fill. A fill
//! answers every waiter of its file; the deadline thread answers (with the configured error)
//! any waiter older than `on_access.timeout`, so no reader waits longer, and the fill goes on
//! for the next one. A waiter's journal entry is removed just before it is answered.
//!
//! At start, before reading anything, the journal of a previous agent is replayed: each entry
//! is reopened by its file handle through the silent mount, handled like a new access, and
//! answered by its old number ([`alto_hsm::HsmGroup::answer_orphan`]); then every other number
//! is answered `EAGAIN`, in case the previous agent died between reading an access and
//! journaling it (an event must be answered before new numbers can collide with it).

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsFd as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use alto_api_types::{RecallOutcome, RecallProcess, RecallTrigger, Recalled};
use alto_hsm::{DenyErrno, Event, FileHandle, HsmGroup};
use alto_model::CustomerId;
use std::os::unix::fs::FileExt as _;

use alto_stub::{ChunkRef, RangeFinish, StubAttr, StubState, StubStatus};
use alto_tier2::{ChunkManifest, ObjectKey};
use serde::{Deserialize, Serialize};

use super::outbox::Outbox;
use super::policy::Policy;
use crate::config::{deny_errno, OnAccessConfig};
use crate::owners::Owners;

/// A journaled access.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PendingAccess {
    fd: i32,
    handle_type: i32,
    handle: String,
    dev: u64,
    tid: i32,
}

/// How an access is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Allow,
    Deny(DenyErrno),
}

struct Waiter {
    ev: Event,
    since: Instant,
    need: Need,
}

/// What an access needs in place before it may go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// The whole file, recalled and verified (no range, `count == 0`: truncate, clone).
    Whole,
    /// The bytes `[start, end)` (page-rounded by the kernel).
    Range(u64, u64),
}

impl Need {
    /// An access at offset 0 needs every chunk unless `offset_zero_range_first`: a copier
    /// that skips holes (`SEEK_DATA`: `cp`, `tar --sparse`) always reads the stub's kept
    /// head at 0 first, and would otherwise skip the chunks not yet in place as holes and
    /// write zeros into its copy.
    fn of(ev: &Event, offset_zero_range_first: bool) -> Need {
        match ev.range() {
            Some(r) if r.is_whole_file() => Need::Whole,
            Some(r) if r.offset == 0 && !offset_zero_range_first => Need::Range(0, u64::MAX),
            Some(r) => Need::Range(r.offset, r.offset.saturating_add(r.count)),
            None => Need::Whole,
        }
    }
}

/// Which chunks of a range-first recall are in place (verified and written).
struct Chunks {
    chunk_size: u64,
    size: u64,
    filled: Vec<bool>,
}

impl Chunks {
    /// The chunks `[first, last)` under `[start, end)` (clipped to the file).
    fn span(&self, start: u64, end: u64) -> (usize, usize) {
        let end = end.min(self.size);
        if start >= end {
            return (0, 0);
        }
        ((start / self.chunk_size) as usize, end.div_ceil(self.chunk_size) as usize)
    }

    fn covers(&self, need: Need) -> bool {
        match need {
            Need::Whole => false,
            Need::Range(a, b) => {
                let (f, l) = self.span(a, b);
                self.filled[f..l].iter().all(|x| *x)
            }
        }
    }
}

/// The accesses waiting on one file's recall, and that recall's progress when range-first.
#[derive(Default)]
struct Entry {
    waiters: Vec<Waiter>,
    chunks: Option<Chunks>,
}

type Key = (u64, u64);

struct Shared {
    group: Arc<HsmGroup>,
    cfg: OnAccessConfig,
    error: DenyErrno,
    state_dir: PathBuf,
    base: PathBuf,
    customer: CustomerId,
    journal: PathBuf,
    outbox: Outbox,
    owners: Owners,
    policy: Mutex<Policy>,
    inflight: Mutex<HashMap<Key, Entry>>,
    stop: AtomicBool,
}

struct Job {
    key: Key,
    file: File,
    tid: i32,
    since: Instant,
}

/// The running handler. [`Service::stop`] (or drop) ends it.
pub struct Service {
    shared: Arc<Shared>,
    /// The reader and deadline threads (joined on stop).
    threads: Vec<JoinHandle<()>>,
    /// Fill threads: not joined on stop (one may hang on a tier-2 that does not answer;
    /// the process exits around it).
    fillers: Vec<JoinHandle<()>>,
}

/// Everything [`Service::start`] needs besides the group.
pub struct Settings {
    pub cfg: OnAccessConfig,
    pub state_dir: PathBuf,
    pub base: PathBuf,
    pub customer: CustomerId,
}

impl Service {
    /// Replays a previous agent's journal, answers its other leftovers, then starts reading.
    pub fn start(
        group: Arc<HsmGroup>,
        mount_fds: &HashMap<u64, File>,
        s: Settings,
    ) -> std::io::Result<Service> {
        let journal = super::dir(&s.state_dir).join("pending");
        std::fs::create_dir_all(&journal)?;
        let shared = Arc::new(Shared {
            error: deny_errno(&s.cfg.error).unwrap_or(DenyErrno::Io),
            policy: Mutex::new(Policy::new(&s.cfg)),
            group,
            outbox: Outbox::new(&s.state_dir),
            owners: Owners::from_system(),
            journal,
            cfg: s.cfg,
            state_dir: s.state_dir,
            base: s.base,
            customer: s.customer,
            inflight: Mutex::new(HashMap::new()),
            stop: AtomicBool::new(false),
        });
        // A holder answering accesses while no agent ran finishes its round (100 ms) once it
        // sees the agent lock; only then are leftover numbers answered.
        std::thread::sleep(Duration::from_millis(300));
        replay(&shared, mount_fds);
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut threads = Vec::new();
        let mut fillers = Vec::new();
        for i in 0..shared.cfg.fill_threads {
            let (sh, rx) = (Arc::clone(&shared), Arc::clone(&rx));
            fillers.push(
                std::thread::Builder::new()
                    .name(format!("recall-fill-{i}"))
                    .spawn(move || fill_loop(&sh, &rx))?,
            );
        }
        let sh = Arc::clone(&shared);
        threads.push(
            std::thread::Builder::new()
                .name("recall-deadline".into())
                .spawn(move || deadline_loop(&sh))?,
        );
        let sh = Arc::clone(&shared);
        threads.push(
            std::thread::Builder::new()
                .name("recall-events".into())
                .spawn(move || read_loop(&sh, &tx))?,
        );
        Ok(Service { shared, threads, fillers })
    }

    /// Stops reading; lets running fills finish (up to the timeout). Accesses still waiting
    /// then stay pending in the group for the next agent (they are journaled) when a holder
    /// keeps the group, and are answered `EAGAIN` otherwise (a closing group would let
    /// them read zeros).
    pub fn stop(mut self, holder: bool) {
        self.shutdown(holder);
    }

    fn shutdown(&mut self, holder: bool) {
        if self.threads.is_empty() {
            return;
        }
        self.shared.stop.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + self.shared.cfg.timeout.min(Duration::from_secs(10));
        while Instant::now() < deadline && !self.shared.inflight.lock().expect("lock").is_empty() {
            std::thread::sleep(Duration::from_millis(20));
        }
        let left: Vec<Waiter> = self
            .shared
            .inflight
            .lock()
            .expect("lock")
            .drain()
            .flat_map(|(_, e)| e.waiters)
            .collect();
        if holder {
            if !left.is_empty() {
                tracing::warn!(
                    waiting = left.len(),
                    "stopping with readers waiting; the next agent answers them"
                );
            }
            // Forget the events unanswered: the holder keeps them pending, the journal names them.
            // Their descriptors stay open until this process exits, which closes them
            // without answering.
            for w in left {
                std::mem::forget(w.ev);
            }
        } else {
            for w in left {
                answer(&self.shared, w.ev, Answer::Deny(DenyErrno::Again));
            }
        }
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                tracing::error!("an on-access thread panicked");
            }
        }
        let busy = self.fillers.drain(..).filter(|t| !t.is_finished()).count();
        if busy > 0 {
            tracing::warn!(
                busy,
                "recalls still running at stop are abandoned (redone by the next agent)"
            );
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.shutdown(true);
    }
}

fn journal_path(sh: &Shared, fd: i32) -> PathBuf {
    sh.journal.join(format!("{fd}.json"))
}

fn journal(sh: &Shared, ev: &Event, dev: u64) {
    let entry = FileHandle::of(ev).map(|h| PendingAccess {
        fd: ev.raw_fd(),
        handle_type: h.handle_type,
        handle: hex::encode(&h.bytes),
        dev,
        tid: ev.tid(),
    });
    let r = entry
        .map_err(std::io::Error::other)
        .and_then(|e| serde_json::to_vec(&e).map_err(std::io::Error::other))
        .and_then(|b| std::fs::write(journal_path(sh, ev.raw_fd()), b));
    if let Err(e) = r {
        tracing::warn!(error = %e, "access not journaled (a crash now answers it EAGAIN)");
    }
}

/// Removes the journal entry, then answers.
fn answer(sh: &Shared, ev: Event, a: Answer) {
    let _ = std::fs::remove_file(journal_path(sh, ev.raw_fd()));
    let r = match a {
        Answer::Allow => ev.allow(),
        Answer::Deny(e) => ev.deny(e),
    };
    if let Err(e) = r {
        tracing::error!(error = %e, "answering an access failed");
    }
}

fn read_loop(sh: &Arc<Shared>, tx: &mpsc::Sender<Job>) {
    let mut reader = sh.group.reader();
    while !sh.stop.load(Ordering::SeqCst) {
        let events = match reader.read_timeout(Duration::from_millis(200)) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, "reading on-access events failed");
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        };
        for ev in events {
            dispatch(sh, tx, ev);
        }
    }
}

fn dispatch(sh: &Shared, tx: &mpsc::Sender<Job>, ev: Event) {
    let meta = match ev.file().metadata() {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = %e, "fstat of an accessed file failed");
            return answer(sh, ev, Answer::Deny(sh.error));
        }
    };
    // Most accesses are to ordinary files: let them through here, and ignore them from now on
    // (not journaled: a crash in these microseconds leaves the access to the `EAGAIN` sweep).
    if matches!(alto_stub::stub_status(ev.file()), Ok(StubStatus::NotAStub)) {
        if let Err(e) = sh.group.ignore_inode_evictable(&ev) {
            tracing::debug!(error = %e, "ignore mark not added");
        }
        return answer(sh, ev, Answer::Allow);
    }
    let key = (meta.dev(), meta.ino());
    let need = Need::of(&ev, sh.cfg.range_fill_offset_zero);
    // A range-first recall running: an access to chunks already in place goes on at once.
    let covered = sh
        .inflight
        .lock()
        .expect("lock")
        .get(&key)
        .and_then(|e| e.chunks.as_ref())
        .is_some_and(|c| c.covers(need));
    if covered {
        return answer(sh, ev, Answer::Allow);
    }
    journal(sh, &ev, meta.dev());
    let mut inflight = sh.inflight.lock().expect("lock");
    let since = Instant::now();
    if let Some(e) = inflight.get_mut(&key) {
        if e.chunks.as_ref().is_some_and(|c| c.covers(need)) {
            drop(inflight);
            return answer(sh, ev, Answer::Allow);
        }
        e.waiters.push(Waiter { ev, since, need });
        return;
    }
    let (file, tid) = match ev.file().try_clone() {
        Ok(f) => (f, ev.tid()),
        Err(e) => {
            drop(inflight);
            tracing::error!(error = %e, "dup of an event descriptor failed");
            return answer(sh, ev, Answer::Deny(sh.error));
        }
    };
    inflight.insert(key, Entry { waiters: vec![Waiter { ev, since, need }], chunks: None });
    drop(inflight);
    if let Err(mpsc::SendError(job)) = tx.send(Job { key, file, tid, since }) {
        finish(sh, job.key, Answer::Deny(DenyErrno::Again));
    }
}

fn fill_loop(sh: &Shared, rx: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        let job = {
            let rx = rx.lock().expect("lock");
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(j) => j,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if sh.stop.load(Ordering::SeqCst) {
                        return;
                    }
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        };
        let process = super::process::of_thread(job.tid, &sh.owners);
        // Jobs' copies in this process step aside while a reader waits on this fill.
        let _fg = crate::throttle::foreground();
        let a = handle(sh, &job.file, job.key, Some(process), job.since);
        finish(sh, job.key, a);
    }
}

/// Answers every waiter of `key` and forgets the key.
fn finish(sh: &Shared, key: Key, a: Answer) {
    let waiters = sh.inflight.lock().expect("lock").remove(&key).unwrap_or_default().waiters;
    for w in waiters {
        answer(sh, w.ev, a);
    }
}

fn deadline_loop(sh: &Shared) {
    while !sh.stop.load(Ordering::SeqCst) || !sh.inflight.lock().expect("lock").is_empty() {
        std::thread::sleep(Duration::from_millis(100));
        let now = Instant::now();
        let mut late = Vec::new();
        {
            let mut inflight = sh.inflight.lock().expect("lock");
            for e in inflight.values_mut() {
                let (old, keep): (Vec<Waiter>, Vec<Waiter>) = e
                    .waiters
                    .drain(..)
                    .partition(|w| now.duration_since(w.since) >= sh.cfg.timeout);
                e.waiters = keep;
                late.extend(old);
            }
            // A key stays while its fill runs, even with nobody waiting on it.
        }
        for w in late {
            tracing::warn!(timeout = ?sh.cfg.timeout, "a reader waited too long for its stub; answered with an error");
            answer(sh, w.ev, Answer::Deny(sh.error));
        }
        if sh.stop.load(Ordering::SeqCst) {
            return;
        }
    }
}

/// Decides and does what an access to `file` needs; reports it. Runs on a fill thread, or at
/// start for a journaled access.
fn handle(
    sh: &Shared,
    file: &File,
    key: Key,
    process: Option<RecallProcess>,
    since: Instant,
) -> Answer {
    let status = match alto_stub::stub_status(file) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "reading the stub attribute failed");
            return Answer::Deny(sh.error);
        }
    };
    let attr = match status {
        StubStatus::NotAStub => {
            let _ = sh.group.ignore_inode_evictable(file);
            return Answer::Allow;
        }
        StubStatus::Converting(_) => {
            // Only after a crash during a conversion; the agent's start reconciles it.
            tracing::warn!(path = %path_of(file).display(), "access to a file whose conversion was interrupted");
            return Answer::Deny(DenyErrno::Again);
        }
        StubStatus::Replaced(_) => {
            return match alto_stub::release_replaced(file) {
                Ok(attr) => {
                    let _ = sh.group.ignore_inode_evictable(file);
                    report(sh, file, &attr, RecallOutcome::Replaced, None, process, since);
                    Answer::Allow
                }
                Err(e) => {
                    tracing::error!(error = %e, "releasing a replaced stub failed");
                    Answer::Deny(sh.error)
                }
            };
        }
        StubStatus::Stub(attr) => attr,
    };
    let checked = {
        let p = process.as_ref();
        let exe = p.and_then(|p| p.exe.as_deref());
        sh.policy.lock().expect("lock").check(exe, p.and_then(|p| p.uid), Instant::now())
    };
    if let Err(refusal) = checked {
        report(sh, file, &attr, RecallOutcome::Denied, Some(refusal.message()), process, since);
        return Answer::Deny(refusal.errno());
    }
    let _lock = match super::recall_lock(&sh.state_dir, key.0, key.1) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "recall lock");
            return Answer::Deny(sh.error);
        }
    };
    // An explicit recall may have finished it while this waited for the lock.
    match alto_stub::stub_status(file) {
        Ok(StubStatus::Stub(_)) => {}
        Ok(StubStatus::NotAStub) => {
            let _ = sh.group.ignore_inode_evictable(file);
            return Answer::Allow;
        }
        _ => return Answer::Deny(sh.error),
    }
    if let Some(chunks) = attr.chunks {
        match load_manifest(sh, &attr, chunks) {
            Ok((target, object, m)) => {
                return range_fill(sh, file, key, &attr, (&target, &object, &m), process, since)
            }
            // Nothing was ever let through: the whole-file recall (verified by the whole
            // SHA-256) is safe and keeps the file available.
            Err(e) if attr.state == StubState::Stubbed => {
                tracing::warn!(path = %path_of(file).display(), error = %e, "chunk manifest refused; recalling the whole file");
            }
            // A range-first recall already let readers at some chunks; a whole-file recall
            // that fails would punch them again under those readers' maps. Refuse.
            Err(e) => {
                tracing::error!(path = %path_of(file).display(), error = %e, "chunk manifest refused; the reader gets an error");
                report(sh, file, &attr, RecallOutcome::Failed, Some(e), process, since);
                return Answer::Deny(sh.error);
            }
        }
    }
    match fill(sh, file, &attr) {
        Ok(()) => {
            let _ = sh.group.ignore_inode_evictable(file);
            report(sh, file, &attr, RecallOutcome::Recalled, None, process, since);
            Answer::Allow
        }
        Err(e) => {
            tracing::error!(path = %path_of(file).display(), error = %e, "on-access recall failed; the reader gets an error");
            report(sh, file, &attr, RecallOutcome::Failed, Some(e), process, since);
            Answer::Deny(sh.error)
        }
    }
}

fn fill(sh: &Shared, file: &File, attr: &StubAttr) -> Result<(), String> {
    let key: ObjectKey = attr
        .object_key
        .parse()
        .map_err(|_| format!("unknown object key {:?} in the stub attribute", attr.object_key))?;
    let target = crate::targets::open_for_read(&sh.state_dir, &sh.base, &attr.target, sh.customer)
        .map_err(|e| format!("tier-2 target {:?}: {e}", attr.target))?;
    let reader = target.reader(&key).map_err(|e| format!("tier-2: {e}"))?;
    alto_stub::recall_file(file, reader).map_err(|e| e.to_string())
}

/// Most bytes one tier-2 request of a range-first recall fetches (a run of chunks).
const RUN_BYTES: u64 = 8 << 20;

/// The target, the object and the verified chunk manifest of a stub with a `chunks` field.
fn load_manifest(
    sh: &Shared,
    attr: &StubAttr,
    c: ChunkRef,
) -> Result<(alto_tier2::Target, ObjectKey, ChunkManifest), String> {
    let object: ObjectKey = attr
        .object_key
        .parse()
        .map_err(|_| format!("unknown object key {:?} in the stub attribute", attr.object_key))?;
    let target = crate::targets::open_for_read(&sh.state_dir, &sh.base, &attr.target, sh.customer)
        .map_err(|e| format!("tier-2 target {:?}: {e}", attr.target))?;
    let bytes = target
        .read_chunk_manifest(&object.sha256, c.chunk_size)
        .map_err(|e| format!("tier-2: {e}"))?
        .ok_or_else(|| "the chunk manifest is missing in tier-2".to_string())?;
    let m = ChunkManifest::parse_bound(
        &bytes,
        &c.manifest_sha256,
        c.chunk_size,
        attr.size,
        &attr.sha256,
    )
    .map_err(|e| e.to_string())?;
    Ok((target, object, m))
}

/// The next chunks to fetch that nobody fetches yet (`claimed`): with `waiting`, those of
/// the oldest waiter whose range is not in place; else the next missing ones from `cursor`
/// on (wrapping). `None` when there are none.
fn next_run(
    sh: &Shared,
    key: Key,
    m: &ChunkManifest,
    claimed: &[bool],
    cursor: &mut usize,
    waiting: bool,
) -> Option<(usize, usize)> {
    let n = claimed.len();
    let max = (RUN_BYTES / m.chunk_size).max(1) as usize;
    let (first, limit) = if waiting {
        let inflight = sh.inflight.lock().expect("lock");
        inflight.get(&key).and_then(|e| {
            let c = e.chunks.as_ref()?;
            e.waiters.iter().find_map(|w| match w.need {
                Need::Range(a, b) => {
                    let (f, l) = c.span(a, b);
                    (f..l).find(|i| !claimed[*i]).map(|i| (i, l))
                }
                Need::Whole => None,
            })
        })?
    } else {
        ((0..n).map(|k| (*cursor + k) % n).find(|i| !claimed[*i])?, n)
    };
    let mut last = first + 1;
    while last < limit && last - first < max && !claimed[last] {
        last += 1;
    }
    *cursor = last % n.max(1);
    Some((first, last))
}

/// Marks chunk `i` in place and lets go every waiter whose range now is.
fn chunk_done(sh: &Shared, key: Key, i: usize) {
    let ready: Vec<Waiter> = {
        let mut inflight = sh.inflight.lock().expect("lock");
        let Some(e) = inflight.get_mut(&key) else { return };
        let Some(c) = e.chunks.as_mut() else { return };
        c.filled[i] = true;
        let (ready, wait): (Vec<Waiter>, Vec<Waiter>) =
            e.waiters.drain(..).partition(|w| c.covers(w.need));
        e.waiters = wait;
        ready
    };
    for w in ready {
        answer(sh, w.ev, Answer::Allow);
    }
}

/// Range-first recall of a stub with a verified chunk manifest: chunks are fetched (the
/// ones waiters need first, then the rest in order), each verified against the manifest
/// and written through `file` (an event's descriptor or the silent mount: no events);
/// every waiter goes on as soon as its range is in place. When all chunks are in place the
/// whole file is hashed before the stub state is dropped. Any failure leaves the file a
/// stub (`recalling`, the chunks written so far in place and correct) and answers the rest
/// with the configured error; the next access starts again.
fn range_fill(
    sh: &Shared,
    file: &File,
    key: Key,
    attr: &StubAttr,
    (target, object, m): (&alto_tier2::Target, &ObjectKey, &ChunkManifest),
    process: Option<RecallProcess>,
    since: Instant,
) -> Answer {
    let fail = |e: String, process: Option<RecallProcess>| {
        tracing::error!(path = %path_of(file).display(), error = %e, "on-access recall failed; the reader gets an error");
        report(sh, file, attr, RecallOutcome::Failed, Some(e), process, since);
        Answer::Deny(sh.error)
    };
    let rr = match alto_stub::begin_range_recall(file) {
        Ok(r) => r,
        Err(e) => return fail(e.to_string(), process),
    };
    let n = m.count();
    if let Some(e) = sh.inflight.lock().expect("lock").get_mut(&key) {
        e.chunks = Some(Chunks { chunk_size: m.chunk_size, size: m.size, filled: vec![false; n] });
    }
    if n > 0 {
        chunk_done_none(sh, key);
    }
    // The run a waiter needs is fetched at once; meanwhile the next run in order is
    // fetched ahead on a second thread, so tier-2 reads overlap hashing and writing.
    let fetch = |(first, last): (usize, usize)| -> Result<(usize, usize, Vec<u8>), String> {
        let (off, _) = m.chunk(first);
        let (loff, llen) = m.chunk(last - 1);
        let len = loff + llen - off;
        let bytes = match target.read_range(object, off, len) {
            Ok(b) if b.len() as u64 == len => b,
            Ok(b) => return Err(format!("tier-2 returned {} of {len} bytes at {off}", b.len())),
            Err(e) => return Err(format!("tier-2: {e}")),
        };
        // Verified here, on the thread that read them (hashing overlaps writing).
        for i in first..last {
            let (co, cl) = m.chunk(i);
            if !m.verify_chunk(i, &bytes[(co - off) as usize..(co - off + cl) as usize]) {
                return Err(format!(
                    "chunk {i} (bytes {co}..{}) of object {object} does not match its SHA-256",
                    co + cl
                ));
            }
        }
        Ok((first, last, bytes))
    };
    let write = |(first, last, bytes): (usize, usize, Vec<u8>)| -> Result<(), String> {
        let (off, _) = m.chunk(first);
        for i in first..last {
            let (co, cl) = m.chunk(i);
            // Verified by `fetch`: nothing unverified is written.
            let slice = &bytes[(co - off) as usize..(co - off + cl) as usize];
            // Never write past the end of a file someone truncated meanwhile (a pwrite there
            // would bring cut content back).
            let now = file.metadata().map(|md| md.len()).unwrap_or(0);
            let keep = cl.min(now.saturating_sub(co)) as usize;
            if keep > 0 {
                file.write_all_at(&slice[..keep], co)
                    .map_err(|e| format!("writing chunk {i}: {e}"))?;
            }
            chunk_done(sh, key, i);
        }
        Ok(())
    };
    let filled = std::thread::scope(|scope| -> Result<(), String> {
        let mut claimed = vec![false; n];
        let mut cursor = 0;
        let mut ahead = None;
        let claim = |claimed: &mut Vec<bool>, (f, l): (usize, usize)| {
            claimed[f..l].iter_mut().for_each(|c| *c = true);
        };
        loop {
            let run = if let Some(r) = next_run(sh, key, m, &claimed, &mut cursor, true) {
                claim(&mut claimed, r);
                fetch(r)?
            } else if let Some(h) = ahead.take() {
                std::thread::ScopedJoinHandle::join(h)
                    .map_err(|_| "the tier-2 read ahead panicked".to_string())??
            } else if let Some(r) = next_run(sh, key, m, &claimed, &mut cursor, false) {
                claim(&mut claimed, r);
                fetch(r)?
            } else {
                return Ok(());
            };
            if ahead.is_none() {
                if let Some(r) = next_run(sh, key, m, &claimed, &mut cursor, false) {
                    claim(&mut claimed, r);
                    ahead = Some(scope.spawn(move || fetch(r)));
                }
            }
            write(run)?;
        }
    });
    if let Err(e) = filled {
        return fail(e, process);
    }
    match alto_stub::finish_range_recall(file, &rr) {
        Ok(RangeFinish::Recalled) => {
            let _ = sh.group.ignore_inode_evictable(file);
            report(sh, file, attr, RecallOutcome::Recalled, None, process, since);
            Answer::Allow
        }
        Ok(RangeFinish::Modified) => {
            let _ = sh.group.ignore_inode_evictable(file);
            tracing::warn!(path = %path_of(file).display(), "written during its range-first recall: kept as it is, no longer a stub");
            report(sh, file, attr, RecallOutcome::Replaced, None, process, since);
            Answer::Allow
        }
        Err(e) => fail(e.to_string(), process),
    }
}

/// Lets go the waiters whose range holds no content (past the end of the file).
fn chunk_done_none(sh: &Shared, key: Key) {
    let ready: Vec<Waiter> = {
        let mut inflight = sh.inflight.lock().expect("lock");
        let Some(e) = inflight.get_mut(&key) else { return };
        let Some(c) = e.chunks.as_ref() else { return };
        let (ready, wait): (Vec<Waiter>, Vec<Waiter>) =
            e.waiters.drain(..).partition(|w| c.covers(w.need));
        e.waiters = wait;
        ready
    };
    for w in ready {
        answer(sh, w.ev, Answer::Allow);
    }
}

fn path_of(file: &File) -> PathBuf {
    use std::os::fd::AsRawFd as _;
    std::fs::read_link(format!("/proc/self/fd/{}", file.as_fd().as_raw_fd()))
        .unwrap_or_else(|_| PathBuf::from("(unknown)"))
}

fn report(
    sh: &Shared,
    file: &File,
    attr: &StubAttr,
    outcome: RecallOutcome,
    error: Option<String>,
    process: Option<RecallProcess>,
    since: Instant,
) {
    use std::os::unix::ffi::OsStrExt as _;
    let (path, path_escaped) = alto_batch::encode_path(path_of(file).as_os_str().as_bytes());
    let bytes = if outcome == RecallOutcome::Recalled { attr.size } else { 0 };
    tracing::info!(%path, outcome = outcome.as_str(), pid = ?process.as_ref().map(|p| p.pid),
        exe = ?process.as_ref().and_then(|p| p.exe.clone()), error = ?error, "on-access recall");
    sh.outbox.put(&Recalled {
        path,
        path_escaped,
        sha256: attr.sha256_hex(),
        trigger: RecallTrigger::OnAccess,
        outcome,
        error,
        process,
        bytes,
        duration_ms: Some(since.elapsed().as_millis() as u64),
    });
}

/// Every number a dead owner may have left unanswered is answered `EAGAIN` (after the
/// journaled ones were handled); the journal is emptied. Returns how many were pending.
pub fn answer_leftovers(group: &HsmGroup, state_dir: &std::path::Path) -> usize {
    let journal = super::dir(state_dir).join("pending");
    for e in std::fs::read_dir(&journal).into_iter().flatten().flatten() {
        let _ = std::fs::remove_file(e.path());
    }
    (0..65_536)
        .filter(|fd| group.answer_orphan(*fd, Some(DenyErrno::Again)).unwrap_or(false))
        .count()
}

/// Answers what a previous agent left: journaled accesses are handled and answered by their
/// old numbers; then every other number is answered `EAGAIN`.
fn replay(sh: &Shared, mount_fds: &HashMap<u64, File>) {
    let entries: Vec<PathBuf> =
        std::fs::read_dir(&sh.journal).into_iter().flatten().flatten().map(|e| e.path()).collect();
    let mut replayed = 0;
    for p in &entries {
        let entry: Option<PendingAccess> =
            std::fs::read(p).ok().and_then(|b| serde_json::from_slice(&b).ok());
        let _ = std::fs::remove_file(p);
        let Some(e) = entry else { continue };
        let a = reopen(&e, mount_fds).map_or(Answer::Deny(sh.error), |f| {
            let key = f.metadata().map(|m| (m.dev(), m.ino())).unwrap_or((e.dev, 0));
            handle(sh, &f, key, None, Instant::now())
        });
        let deny = match a {
            Answer::Allow => None,
            Answer::Deny(d) => Some(d),
        };
        match sh.group.answer_orphan(e.fd, deny) {
            Ok(true) => replayed += 1,
            Ok(false) => {}
            Err(err) => {
                tracing::error!(fd = e.fd, error = %err, "answering a journaled access failed")
            }
        }
    }
    let swept = answer_leftovers(&sh.group, &sh.state_dir);
    if replayed + swept > 0 {
        tracing::warn!(
            replayed,
            unjournaled = swept,
            "answered accesses a previous agent left waiting"
        );
    }
}

fn reopen(e: &PendingAccess, mount_fds: &HashMap<u64, File>) -> Option<File> {
    let mount = mount_fds.get(&e.dev)?;
    let h = FileHandle { handle_type: e.handle_type, bytes: hex::decode(&e.handle).ok()? };
    match h.open(mount) {
        Ok(f) => Some(f),
        Err(err) => {
            tracing::error!(error = %err, "a journaled file could not be reopened");
            None
        }
    }
}
