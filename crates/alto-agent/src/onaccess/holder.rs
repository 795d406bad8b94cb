//! The holder: a tiny process (`alto-agent hsm-holder`) that owns the fanotify group, so the
//! group, its marks and every pending access outlive the agent. While it lives, a reader
//! waiting on a stub stays blocked through an agent crash, stop or upgrade and is answered
//! by the next agent; if the group were closed the kernel would let every waiting reader
//! through to the stub's zeros. The agent takes the group from the holder with
//! `pidfd_getfd` (root or `CAP_SYS_PTRACE`).
//!
//! A group nobody reads would block every first access to every file of the managed file
//! systems, not only stubs: that would freeze the file server while the agent is stopped.
//! So the holder watches for an agent (which holds an exclusive `flock` on
//! `<state>/on-access/agent.lock` for its whole life) and, once none has been there for
//! `on_access.unattended_after`, answers accesses itself: ordinary files are let through (and
//! ignored from then on), stubs and anything in doubt get `EAGAIN` (never zeros). It reads no
//! tier-2 and no network. When an agent comes back the holder stops reading.
//!
//! **Must never:** let a stub through, touch tier-2 or the network, or exit on its own (a
//! closed group lets every waiting reader through to zeros and drops the marks).

use std::os::fd::{AsFd as _, AsRawFd as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use alto_hsm::{HsmError, HsmGroup};
use serde::{Deserialize, Serialize};

/// `<state>/on-access/holder.json`: which process holds the group, as which descriptor.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct HolderInfo {
    pub pid: i32,
    pub fd: i32,
    /// Whether `pid` is a holder (`false`: the agent holds the group itself, `holder = false`).
    pub holder: bool,
}

pub fn info_path(state_dir: &Path) -> PathBuf {
    super::dir(state_dir).join("holder.json")
}

fn write_info(state_dir: &Path, info: &HolderInfo) -> std::io::Result<()> {
    let dir = super::dir(state_dir);
    std::fs::create_dir_all(&dir)?;
    let tmp = dir.join(format!("holder.json.{}", info.pid));
    std::fs::write(&tmp, serde_json::to_vec(info).map_err(std::io::Error::other)?)?;
    std::fs::rename(tmp, info_path(state_dir))
}

/// The recorded holder, if its process still runs and still is what the record says.
pub fn existing(state_dir: &Path) -> Option<HolderInfo> {
    let info: HolderInfo =
        serde_json::from_slice(&std::fs::read(info_path(state_dir)).ok()?).ok()?;
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", info.pid)).ok()?;
    let is_agent = cmdline.split(|b| *b == 0).any(|a| a.ends_with(b"alto-agent"));
    let is_holder = cmdline.split(|b| *b == 0).any(|a| a == b"hsm-holder");
    let link = std::fs::read_link(format!("/proc/{}/fd/{}", info.pid, info.fd)).ok()?;
    (is_agent && is_holder == info.holder && link.as_os_str() == "anon_inode:[fanotify]")
        .then_some(info)
}

/// Takes the agent lock (held for the life of the returned file): tells the holder an agent
/// answers accesses now.
pub fn agent_lock(state_dir: &Path) -> std::io::Result<std::fs::File> {
    let dir = super::dir(state_dir);
    std::fs::create_dir_all(&dir)?;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("agent.lock"))?;
    rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)?;
    Ok(f)
}

/// Whether an agent holds the agent lock now.
fn agent_present(lock: &Path) -> bool {
    let Ok(f) = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(lock)
    else {
        return false;
    };
    match rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {
            let _ = rustix::fs::flock(&f, rustix::fs::FlockOperation::Unlock);
            false
        }
        Err(_) => true,
    }
}

/// The holder's answer when no agent runs: ordinary files through, everything else `EAGAIN`.
fn answer_unattended(group: &HsmGroup, ev: alto_hsm::Event) {
    let r = match alto_stub::stub_status(ev.file()) {
        Ok(alto_stub::StubStatus::NotAStub) => {
            let _ = group.ignore_inode_evictable(&ev);
            ev.allow()
        }
        _ => ev.deny(alto_hsm::DenyErrno::Again),
    };
    if let Err(e) = r {
        tracing::error!(error = %e, "answering an access failed");
    }
}

/// `alto-agent hsm-holder`: makes the group, records itself, holds it; answers accesses
/// itself while no agent has run for `unattended_after`.
pub fn run(state_dir: &Path, unattended_after: Duration) -> Result<(), HsmError> {
    if let Some(h) = existing(state_dir) {
        tracing::info!(pid = h.pid, "a holder already runs; nothing to do");
        return Ok(());
    }
    let group = HsmGroup::new()?;
    let info =
        HolderInfo { pid: std::process::id() as i32, fd: group.as_fd().as_raw_fd(), holder: true };
    if let Err(e) = write_info(state_dir, &info) {
        tracing::error!(error = %e, "cannot record the holder");
        return Err(HsmError::Init(e));
    }
    tracing::info!(pid = info.pid, "holding the on-access event group");
    let lock = super::dir(state_dir).join("agent.lock");
    let mut reader = group.reader();
    let mut absent_since: Option<Instant> = None;
    let mut unattended = false;
    loop {
        if agent_present(&lock) {
            if unattended {
                tracing::info!("an agent is back; it answers accesses again");
            }
            absent_since = None;
            unattended = false;
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        let since = *absent_since.get_or_insert_with(Instant::now);
        if since.elapsed() < unattended_after {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        if !unattended {
            unattended = true;
            let left = super::handler::answer_leftovers(&group, state_dir);
            tracing::warn!(left, "no agent for {unattended_after:?}: ordinary files go through, stubs get EAGAIN until one starts");
        }
        match reader.read_timeout(Duration::from_millis(100)) {
            Ok(events) => events.into_iter().for_each(|ev| answer_unattended(&group, ev)),
            Err(e) => {
                tracing::error!(error = %e, "reading events failed");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// The group: from the running holder; else from a holder spawned now (`spawn`); else, with
/// `spawn == false` and `own == true`, a group of this process's own (recorded so that
/// `alto-agent recall` and `tier-once` can join it). Returns the group and whether it
/// survives this process.
pub fn obtain(
    state_dir: &Path,
    spawn: bool,
    own: bool,
    unattended_after: Duration,
) -> Result<(HsmGroup, bool), HsmError> {
    if let Some(h) = existing(state_dir) {
        return Ok((HsmGroup::from_process(h.pid, h.fd)?, h.holder));
    }
    if spawn {
        // A probe first: without the privilege (or the kernel feature) say so now, rather
        // than after waiting for a holder that cannot start.
        drop(HsmGroup::new()?);
        let exe = std::env::current_exe().map_err(HsmError::Init)?;
        let child = std::process::Command::new(exe)
            .arg("hsm-holder")
            .arg("--state-dir")
            .arg(state_dir)
            .arg("--unattended-after")
            .arg(humantime::format_duration(unattended_after).to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            // Its own process group: a Ctrl-C at the agent's terminal does not reach it.
            .process_group(0)
            .spawn()
            .map_err(HsmError::Init)?;
        let pid = child.id() as i32;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(h) = existing(state_dir).filter(|h| h.pid == pid) {
                return Ok((HsmGroup::from_process(h.pid, h.fd)?, true));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        return Err(HsmError::Init(std::io::Error::other("the holder did not start in 10 s")));
    }
    if own {
        let group = HsmGroup::new()?;
        let info = HolderInfo {
            pid: std::process::id() as i32,
            fd: group.as_fd().as_raw_fd(),
            holder: false,
        };
        write_info(state_dir, &info).map_err(HsmError::Init)?;
        return Ok((group, false));
    }
    Err(HsmError::Init(std::io::Error::other("no on-access group on this host")))
}
