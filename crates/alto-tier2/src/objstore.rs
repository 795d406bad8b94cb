//! S3-compatible and Azure Blob stores through `object_store`, driven from blocking
//! callers by one small process-wide tokio runtime.

use std::collections::VecDeque;
use std::fs::File;
use std::future::Future;
use std::io::{self, Read};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as OsPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use tokio::runtime::{Handle, Runtime};

use crate::remote::{unavailable, Entry, Store, Uploaded};
use crate::Tier2Error;

/// Requests one `list_refs` or reference check keeps in flight.
const READ_CONCURRENCY: usize = 16;
/// Parts of one multipart upload in flight.
const PARTS_IN_FLIGHT: usize = 4;

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// The runtime every object-store target shares: two worker threads, never shut down.
/// Blocking callers hand futures to it and wait on a channel, so they may be plain
/// threads, `spawn_blocking` threads of another runtime, or even (though it blocks a
/// worker) async tasks: nothing here calls `block_on` on a tokio runtime.
pub(crate) fn runtime() -> Result<Handle, Tier2Error> {
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt.handle().clone());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("alto-tier2-io")
        .enable_all()
        .build()
        .map_err(|e| Tier2Error::Config(format!("cannot start the tier-2 I/O runtime: {e}")))?;
    if let Err(extra) = RUNTIME.set(rt) {
        // Another thread won the race; ours must not be dropped inside a runtime context.
        extra.shutdown_background();
    }
    RUNTIME
        .get()
        .map(|rt| rt.handle().clone())
        .ok_or_else(|| Tier2Error::Config("tier-2 I/O runtime missing".into()))
}

/// Runs `fut` on `handle` and waits for it from any thread.
fn run<F>(handle: &Handle, fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match futures::executor::block_on(handle.spawn(fut)) {
        Ok(out) => out,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("tier-2 I/O task cancelled: {e}"),
    }
}

/// One customer location in a bucket or container.
pub(crate) struct ObjStore {
    pub(crate) backend: &'static str,
    pub(crate) store: Arc<dyn ObjectStore>,
    /// `[prefix/]customer-<id>-tiered`
    pub(crate) root: String,
    /// `s3://bucket/root` or `azure://container/root`, plus the endpoint if not the default.
    pub(crate) display: String,
    pub(crate) handle: Handle,
    pub(crate) multipart_threshold: u64,
    pub(crate) part_size: usize,
}

fn is_not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

impl ObjStore {
    fn path(&self, key: &str) -> OsPath {
        OsPath::from(format!("{}/{key}", self.root))
    }

    fn err(&self, op: &'static str, key: &str, e: impl crate::classify::Cause) -> Tier2Error {
        let at =
            if key.is_empty() { self.display.clone() } else { format!("{}/{key}", self.display) };
        unavailable(self.backend, op, at, e)
    }

    fn read_exact_local(src: &mut File, n: usize) -> Result<Vec<u8>, Tier2Error> {
        let mut buf = vec![0u8; n];
        src.read_exact(&mut buf).map_err(|source| Tier2Error::Io {
            op: "read spool file",
            path: "<spool>".into(),
            source,
        })?;
        Ok(buf)
    }

    fn upload_multipart(&self, key: &str, src: &mut File, len: u64) -> Result<(), Tier2Error> {
        let path = self.path(key);
        let store = self.store.clone();
        let mut upload = run(&self.handle, async move { store.put_multipart(&path).await })
            .map_err(|e| self.err("start multipart upload", key, e))?;
        let mut inflight = VecDeque::new();
        let mut remaining = len;
        let mut result: Result<(), Tier2Error> = Ok(());
        while remaining > 0 {
            let n = remaining.min(self.part_size as u64) as usize;
            let buf = match Self::read_exact_local(src, n) {
                Ok(b) => b,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            remaining -= n as u64;
            let part = {
                let _in_runtime = self.handle.enter();
                upload.put_part(PutPayload::from(buf))
            };
            inflight.push_back(self.handle.spawn(part));
            if inflight.len() >= PARTS_IN_FLIGHT {
                if let Some(h) = inflight.pop_front() {
                    if let Err(e) = self.join_part(h, key) {
                        result = Err(e);
                        break;
                    }
                }
            }
        }
        while let Some(h) = inflight.pop_front() {
            let r = self.join_part(h, key);
            if result.is_ok() {
                result = r;
            }
        }
        match result {
            Ok(()) => {
                let done = run(&self.handle, async move {
                    let r = upload.complete().await;
                    if r.is_err() {
                        let _ = upload.abort().await;
                    }
                    r
                });
                done.map(drop).map_err(|e| self.err("complete multipart upload", key, e))
            }
            Err(e) => {
                run(&self.handle, async move {
                    let _ = upload.abort().await;
                });
                Err(e)
            }
        }
    }

    fn join_part(
        &self,
        h: tokio::task::JoinHandle<object_store::Result<()>>,
        key: &str,
    ) -> Result<(), Tier2Error> {
        match futures::executor::block_on(h) {
            Ok(r) => r.map_err(|e| self.err("upload part", key, e)),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(self.err("upload part", key, e)),
        }
    }
}

/// The body of a GET as a blocking [`Read`], fed by a task on the runtime.
struct StreamRead {
    rx: tokio::sync::mpsc::Receiver<object_store::Result<Bytes>>,
    buf: Bytes,
}

impl Read for StreamRead {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.buf.is_empty() {
            match futures::executor::block_on(self.rx.recv()) {
                None => return Ok(0),
                Some(Ok(b)) => self.buf = b,
                Some(Err(e)) => return Err(io::Error::other(e.to_string())),
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf.split_to(n));
        Ok(n)
    }
}

impl Store for ObjStore {
    fn backend(&self) -> &'static str {
        self.backend
    }

    fn display(&self) -> &str {
        &self.display
    }

    fn upload(
        &self,
        key: &str,
        src: &mut File,
        len: u64,
        create_only: bool,
    ) -> Result<Uploaded, Tier2Error> {
        if len > self.multipart_threshold {
            // Multipart uploads cannot be made conditional; an object that appears between
            // this check and completion has the same content (its name is its hash), so
            // overwriting it is harmless.
            if create_only && self.head(key)?.is_some() {
                return Ok(Uploaded::Existed);
            }
            self.upload_multipart(key, src, len)?;
            return Ok(Uploaded::Created);
        }
        let buf = Self::read_exact_local(src, len as usize)?;
        let path = self.path(key);
        let store = self.store.clone();
        let mode = if create_only { PutMode::Create } else { PutMode::Overwrite };
        let opts = PutOptions { mode, ..Default::default() };
        let r =
            run(
                &self.handle,
                async move { store.put_opts(&path, PutPayload::from(buf), opts).await },
            );
        match r {
            Ok(_) => Ok(Uploaded::Created),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. })
                if create_only =>
            {
                Ok(Uploaded::Existed)
            }
            Err(e) => Err(self.err("put", key, e)),
        }
    }

    fn put_small(&self, key: &str, body: Vec<u8>) -> Result<(), Tier2Error> {
        let path = self.path(key);
        let store = self.store.clone();
        run(&self.handle, async move { store.put(&path, PutPayload::from(body)).await })
            .map(drop)
            .map_err(|e| self.err("put", key, e))
    }

    fn open(&self, key: &str) -> Result<Option<Box<dyn Read + Send>>, Tier2Error> {
        let path = self.path(key);
        let store = self.store.clone();
        let got = match run(&self.handle, async move { store.get(&path).await }) {
            Ok(g) => g,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(self.err("get", key, e)),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        self.handle.spawn(async move {
            let mut stream = got.into_stream();
            while let Some(item) = stream.next().await {
                let stop = item.is_err();
                if tx.send(item).await.is_err() || stop {
                    break;
                }
            }
        });
        Ok(Some(Box::new(StreamRead { rx, buf: Bytes::new() })))
    }

    fn read_range(&self, key: &str, offset: u64, len: u64) -> Result<Option<Vec<u8>>, Tier2Error> {
        // One request, no HEAD first: callers ask for ranges inside the object (a range
        // past its end fails, which the caller treats as a failed recall).
        let end = offset.saturating_add(len);
        if len == 0 {
            return Ok(Some(Vec::new()));
        }
        let path = self.path(key);
        let store = self.store.clone();
        match run(&self.handle, async move { store.get_range(&path, offset..end).await }) {
            Ok(b) => Ok(Some(b.to_vec())),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(self.err("get range", key, e)),
        }
    }

    fn read_small(&self, key: &str) -> Result<Option<Vec<u8>>, Tier2Error> {
        self.read_many(vec![key.to_owned()]).pop().unwrap_or(Ok(None))
    }

    fn read_many(&self, keys: Vec<String>) -> Vec<Result<Option<Vec<u8>>, Tier2Error>> {
        let paths: Vec<OsPath> = keys.iter().map(|k| self.path(k)).collect();
        let store = self.store.clone();
        let results = run(&self.handle, async move {
            futures::stream::iter(paths)
                .map(|p| {
                    let store = store.clone();
                    async move {
                        match store.get(&p).await {
                            Ok(g) => g.bytes().await.map(|b| Some(b.to_vec())),
                            Err(e) if is_not_found(&e) => Ok(None),
                            Err(e) => Err(e),
                        }
                    }
                })
                .buffered(READ_CONCURRENCY)
                .collect::<Vec<_>>()
                .await
        });
        results.into_iter().zip(&keys).map(|(r, k)| r.map_err(|e| self.err("get", k, e))).collect()
    }

    fn head(&self, key: &str) -> Result<Option<u64>, Tier2Error> {
        let path = self.path(key);
        let store = self.store.clone();
        match run(&self.handle, async move { store.head(&path).await }) {
            Ok(m) => Ok(Some(m.size)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(self.err("head", key, e)),
        }
    }

    fn list(&self, dir: &str) -> Result<Vec<Entry>, Tier2Error> {
        let prefix = self.path(dir);
        let store = self.store.clone();
        let metas =
            run(
                &self.handle,
                async move { store.list(Some(&prefix)).try_collect::<Vec<_>>().await },
            )
            .map_err(|e| self.err("list", dir, e))?;
        let root = format!("{}/", self.root);
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                let key = m.location.as_ref().strip_prefix(&root)?.to_owned();
                Some(Entry { key, size: m.size, modified: Some(m.last_modified) })
            })
            .collect())
    }

    fn delete(&self, key: &str) -> Result<bool, Tier2Error> {
        // DELETE of a missing key succeeds on S3, so ask first.
        if self.head(key)?.is_none() {
            return Ok(false);
        }
        let path = self.path(key);
        let store = self.store.clone();
        match run(&self.handle, async move { store.delete(&path).await }) {
            Ok(()) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(self.err("delete", key, e)),
        }
    }

    fn rename(&self, from: &str, to: &str) -> Result<bool, Tier2Error> {
        let (f, t) = (self.path(from), self.path(to));
        let store = self.store.clone();
        match run(&self.handle, async move { store.copy(&f, &t).await }) {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => return Ok(false),
            Err(e) => return Err(self.err("copy", from, e)),
        }
        self.delete(from)?;
        Ok(true)
    }

    fn health(&self) -> Result<(), Tier2Error> {
        let root = OsPath::from(self.root.as_str());
        let store = self.store.clone();
        run(&self.handle, async move { store.list_with_delimiter(Some(&root)).await })
            .map_err(|e| self.err("list", "", e))?;
        let probe = format!("tmp/{:032x}.probe", rand::random::<u128>());
        self.put_small(&probe, b"alto".to_vec())?;
        if !self.delete(&probe)? {
            return Err(self.err("delete", &probe, "the probe just written is missing"));
        }
        Ok(())
    }
}
