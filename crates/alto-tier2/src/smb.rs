//! SMB shares through `pavao` (libsmbclient). libsmbclient calls are serialised process-wide
//! by `pavao`, so SMB targets of one process do no I/O in parallel.

use std::fs::File;
use std::io::{self, Read, Write};
use std::sync::mpsc;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use pavao::{
    SmbClient, SmbCredentials, SmbDialect, SmbDirentType, SmbError, SmbMode, SmbOpenOptions,
    SmbOptions,
};

use crate::dir::CHUNK;
use crate::remote::{unavailable, Entry, Store, Uploaded};
use crate::Tier2Error;

/// One customer location on a share.
pub(crate) struct SmbStore {
    client: Arc<SmbClient>,
    /// `/<base>/customer-<id>-tiered`, relative to the share.
    root: String,
    /// `smb://server[:port]/share/<base>/customer-<id>-tiered`
    display: String,
}

fn io_kind(e: &SmbError) -> Option<io::ErrorKind> {
    match e {
        SmbError::Io(io) => Some(io.kind()),
        _ => None,
    }
}

fn is_not_found(e: &SmbError) -> bool {
    io_kind(e) == Some(io::ErrorKind::NotFound)
}

pub(crate) struct SmbParams<'a> {
    pub(crate) server: &'a str,
    pub(crate) share: &'a str,
    /// `/` or `/a/b`: must exist on the share.
    pub(crate) base: &'a str,
    pub(crate) root: String,
    pub(crate) username: &'a str,
    pub(crate) password: &'a str,
    pub(crate) workgroup: &'a str,
}

impl SmbStore {
    /// Connects (lazily: the first call connects) and creates the customer location under
    /// the base path, which must exist.
    pub(crate) fn open(p: SmbParams<'_>) -> Result<SmbStore, Tier2Error> {
        let display = format!("{}/{}{}", p.server, p.share, p.root);
        let client = SmbClient::new(
            SmbCredentials::default()
                .server(p.server)
                .share(format!("/{}", p.share))
                .username(p.username)
                .password(p.password)
                .workgroup(p.workgroup),
            SmbOptions::default()
                .one_share_per_server(true)
                .no_auto_anonymous_login(true)
                // Every live client of the process must use the same bounds.
                .min_protocol(SmbDialect::Smb202)
                .max_protocol(SmbDialect::Smb311),
        )
        .map_err(|e| unavailable("smb", "connect", display.clone(), e))?;
        let store = SmbStore { client: Arc::new(client), root: p.root, display };
        match store.client.stat(p.base) {
            Ok(st) if st.mode.is_dir() => {}
            Ok(_) => {
                return Err(unavailable(
                    "smb",
                    "open target",
                    format!("{}/{}{}", p.server, p.share, p.base),
                    "not a directory",
                ))
            }
            Err(e) => {
                return Err(unavailable(
                    "smb",
                    "open target",
                    format!("{}/{}{}", p.server, p.share, p.base),
                    e,
                ))
            }
        }
        store.mkdir("")?;
        for sub in ["objects", "refs", "tmp", "trash", "chunks"] {
            store.mkdir(sub)?;
        }
        Ok(store)
    }

    fn path(&self, key: &str) -> String {
        if key.is_empty() {
            self.root.clone()
        } else {
            format!("{}/{key}", self.root)
        }
    }

    fn err(&self, op: &'static str, key: &str, e: impl crate::classify::Cause) -> Tier2Error {
        let at =
            if key.is_empty() { self.display.clone() } else { format!("{}/{key}", self.display) };
        unavailable("smb", op, at, e)
    }

    fn mkdir(&self, key: &str) -> Result<(), Tier2Error> {
        match self.client.mkdir(self.path(key), SmbMode::from(0o755)) {
            Ok(()) => Ok(()),
            Err(e) if io_kind(&e) == Some(io::ErrorKind::AlreadyExists) => Ok(()),
            Err(e) => Err(self.err("create directory", key, e)),
        }
    }

    fn ensure_parent(&self, key: &str) -> Result<(), Tier2Error> {
        match key.rsplit_once('/') {
            Some((parent, _)) if parent.contains('/') => self.mkdir(parent),
            _ => Ok(()),
        }
    }

    /// Writes `len` bytes of `src` to a new `tmp/<random>` and renames it to `key`.
    fn write_via_tmp(&self, key: &str, src: &mut dyn Read, len: u64) -> Result<(), Tier2Error> {
        self.ensure_parent(key)?;
        let tmp = format!("tmp/{:032x}.part", rand::random::<u128>());
        let written = (|| -> Result<(), Tier2Error> {
            let mut f = self
                .client
                .open_with(
                    self.path(&tmp),
                    SmbOpenOptions::default().write(true).create(true).exclusive(true),
                )
                .map_err(|e| self.err("create", &tmp, e))?;
            let mut buf = vec![0u8; CHUNK];
            let mut remaining = len;
            while remaining > 0 {
                let n = remaining.min(CHUNK as u64) as usize;
                src.read_exact(&mut buf[..n]).map_err(|source| Tier2Error::Io {
                    op: "read spool file",
                    path: "<spool>".into(),
                    source,
                })?;
                f.write_all(&buf[..n]).map_err(|e| self.err("write", &tmp, e))?;
                remaining -= n as u64;
            }
            Ok(())
        })();
        let renamed = written.and_then(|()| self.replace(&tmp, key));
        if renamed.is_err() {
            let _ = self.client.unlink(self.path(&tmp));
        }
        renamed
    }

    /// Renames `from` over `to`. (libsmbclient itself falls back to deleting `to` first when
    /// the server refuses to replace it, so a replacement is not atomic on every server; a
    /// new name always is.)
    fn replace(&self, from: &str, to: &str) -> Result<(), Tier2Error> {
        match self.client.rename(self.path(from), self.path(to)) {
            Ok(()) => Ok(()),
            Err(e) if io_kind(&e) == Some(io::ErrorKind::AlreadyExists) => {
                let _ = self.client.unlink(self.path(to));
                self.client
                    .rename(self.path(from), self.path(to))
                    .map_err(|e| self.err("rename", to, e))
            }
            Err(e) => Err(self.err("rename", to, e)),
        }
    }

    fn list_into(&self, dir: &str, out: &mut Vec<Entry>) -> Result<(), Tier2Error> {
        let entries = match self.client.list_dirplus(self.path(dir)) {
            Ok(e) => e,
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(e) => return Err(self.err("list", dir, e)),
        };
        for e in entries {
            let key = format!("{dir}/{}", e.name());
            match e.get_type() {
                SmbDirentType::Dir => self.list_into(&key, out)?,
                SmbDirentType::File => out.push(Entry {
                    key,
                    size: e.size,
                    modified: Some(DateTime::<Utc>::from(e.mtime)),
                }),
                _ => {}
            }
        }
        Ok(())
    }
}

/// A file read by a helper thread (an open `SmbFile` borrows its client, so it cannot be
/// handed out by itself).
struct ChunkRead {
    rx: mpsc::Receiver<io::Result<Vec<u8>>>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for ChunkRead {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            match self.rx.recv() {
                Err(_) => return Ok(0),
                Ok(Ok(b)) => {
                    self.buf = b;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Store for SmbStore {
    fn backend(&self) -> &'static str {
        "smb"
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
        // No create-only rename through libsmbclient; an object that appears between this
        // check and the rename has the same content (its name is its hash).
        if create_only && self.head(key)?.is_some() {
            return Ok(Uploaded::Existed);
        }
        self.write_via_tmp(key, src, len)?;
        Ok(Uploaded::Created)
    }

    fn put_small(&self, key: &str, body: Vec<u8>) -> Result<(), Tier2Error> {
        let len = body.len() as u64;
        self.write_via_tmp(key, &mut &body[..], len)
    }

    fn open(&self, key: &str) -> Result<Option<Box<dyn Read + Send>>, Tier2Error> {
        let (tx, rx) = mpsc::sync_channel::<io::Result<Vec<u8>>>(2);
        let (opened_tx, opened_rx) = mpsc::channel::<Result<(), SmbError>>();
        let client = self.client.clone();
        let path = self.path(key);
        std::thread::Builder::new()
            .name("alto-tier2-smb-read".into())
            .spawn(move || {
                let mut f = match client.open_with(&path, SmbOpenOptions::default().read(true)) {
                    Ok(f) => {
                        let _ = opened_tx.send(Ok(()));
                        f
                    }
                    Err(e) => {
                        let _ = opened_tx.send(Err(e));
                        return;
                    }
                };
                loop {
                    let mut buf = vec![0u8; CHUNK];
                    let mut filled = 0;
                    let r = loop {
                        match f.read(&mut buf[filled..]) {
                            Ok(0) => break Ok(()),
                            Ok(n) => {
                                filled += n;
                                if filled == buf.len() {
                                    break Ok(());
                                }
                            }
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => break Err(e),
                        }
                    };
                    buf.truncate(filled);
                    let last = filled < CHUNK || r.is_err();
                    let msg = match r {
                        Ok(()) if filled == 0 => break,
                        Ok(()) => Ok(buf),
                        Err(e) => Err(e),
                    };
                    if tx.send(msg).is_err() || last {
                        break;
                    }
                }
            })
            .map_err(|source| Tier2Error::Io { op: "spawn reader", path: key.into(), source })?;
        match opened_rx.recv() {
            Ok(Ok(())) => Ok(Some(Box::new(ChunkRead { rx, buf: Vec::new(), pos: 0 }))),
            Ok(Err(e)) if is_not_found(&e) => Ok(None),
            Ok(Err(e)) => Err(self.err("open", key, e)),
            Err(_) => Err(self.err("open", key, "reader thread ended")),
        }
    }

    fn read_range(&self, key: &str, offset: u64, len: u64) -> Result<Option<Vec<u8>>, Tier2Error> {
        use std::io::{Seek as _, SeekFrom};
        let mut f =
            match self.client.open_with(self.path(key), SmbOpenOptions::default().read(true)) {
                Ok(f) => f,
                Err(e) if is_not_found(&e) => return Ok(None),
                Err(e) => return Err(self.err("open", key, e)),
            };
        f.seek(SeekFrom::Start(offset)).map_err(|e| self.err("seek", key, e))?;
        let mut body = Vec::with_capacity(len.min(1 << 30) as usize);
        (&mut f).take(len).read_to_end(&mut body).map_err(|e| self.err("read", key, e))?;
        Ok(Some(body))
    }

    fn read_small(&self, key: &str) -> Result<Option<Vec<u8>>, Tier2Error> {
        let mut f =
            match self.client.open_with(self.path(key), SmbOpenOptions::default().read(true)) {
                Ok(f) => f,
                Err(e) if is_not_found(&e) => return Ok(None),
                Err(e) => return Err(self.err("open", key, e)),
            };
        let mut body = Vec::new();
        f.read_to_end(&mut body).map_err(|e| self.err("read", key, e))?;
        Ok(Some(body))
    }

    fn head(&self, key: &str) -> Result<Option<u64>, Tier2Error> {
        match self.client.stat(self.path(key)) {
            Ok(st) if st.mode.is_file() => Ok(Some(st.size)),
            Ok(_) => Ok(None),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(self.err("stat", key, e)),
        }
    }

    fn list(&self, dir: &str) -> Result<Vec<Entry>, Tier2Error> {
        let mut out = Vec::new();
        self.list_into(dir, &mut out)?;
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<bool, Tier2Error> {
        match self.client.unlink(self.path(key)) {
            Ok(()) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(self.err("delete", key, e)),
        }
    }

    fn rename(&self, from: &str, to: &str) -> Result<bool, Tier2Error> {
        if self.head(from)?.is_none() {
            return Ok(false);
        }
        self.ensure_parent(to)?;
        self.replace(from, to)?;
        Ok(true)
    }

    fn health(&self) -> Result<(), Tier2Error> {
        match self.client.stat(self.path("")) {
            Ok(st) if st.mode.is_dir() => {}
            Ok(_) => return Err(self.err("stat", "", "not a directory")),
            Err(e) => return Err(self.err("stat", "", e)),
        }
        let probe = format!("tmp/{:032x}.probe", rand::random::<u128>());
        self.put_small(&probe, b"alto".to_vec())?;
        if !self.delete(&probe)? {
            return Err(self.err("delete", &probe, "the probe just written is missing"));
        }
        Ok(())
    }
}
