//! Transparent (on-access) recall: a stub comes back the moment a program reads, writes,
//! maps or executes it, on Linux 6.14+ with fanotify pre-content events (ext4, xfs, btrfs).
//!
//! * [`prepare`] runs once at agent start, before any thread: it takes the event group from
//!   the [`holder`] (spawning one if needed), moves the agent into its own mount namespace and
//!   puts an ignore mark on every mount there (so the agent's own I/O never raises events:
//!   it would wait on itself), and marks each managed file system (a filesystem mark).
//! * [`handler::Service`] reads the events: an ordinary file gets an evictable ignore mark
//!   and is let through (once per inode-cache lifetime); a stub is recalled through the
//!   event's descriptor from the target its attribute names, verified (SHA-256) and only
//!   then let through; a replaced stub (`open(O_TRUNC)` raises no event) is released; a
//!   failure or a policy refusal ([`policy`]) answers the reader with an error, never zeros.
//!   Every access is journaled before it is handled, so an agent that dies leaves its
//!   readers blocked (the holder keeps the group) and the next agent answers them.
//! * [`join_quietly`] gives `alto-agent recall` and `tier-once` the same silence and the
//!   group (the tier path must remove a file's ignore mark before punching it).
//!
//! **Must never:** let a reader through to a stub's holes (every path answers with the
//! content in place or an error), put an evictable mark on a stub, or block a reader
//! longer than `on_access.timeout`.

pub mod handler;
pub mod holder;
pub mod outbox;
pub mod policy;
pub mod process;

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use alto_api_types::{OnAccessFs, OnAccessStatus};
use alto_hsm::{HsmError, HsmGroup, UnsupportedReason};

use crate::config::AgentConfig;

/// `<state>/on-access`: the holder record, the pending-access journal, the report outbox and
/// the recall locks.
pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("on-access")
}

/// This process's handle of the host's event group, once [`prepare`] or [`join_quietly`]
/// found one.
static GROUP: OnceLock<Arc<HsmGroup>> = OnceLock::new();

/// What [`prepare`] set up, for [`handler::Service::start`] and the heartbeats.
pub struct Prepared {
    pub group: Option<Arc<HsmGroup>>,
    pub status: OnAccessStatus,
    /// A directory on each marked file system (by device), opened in the agent's silent
    /// namespace: where journaled accesses are reopened by file handle after a restart.
    pub mount_fds: HashMap<u64, File>,
    /// The agent lock (see [`holder`]), held while this process answers accesses.
    pub agent_lock: Option<File>,
}

impl Prepared {
    fn off(state: &str, reason: impl Into<String>) -> Prepared {
        Prepared {
            group: None,
            status: OnAccessStatus {
                state: state.into(),
                reason: Some(reason.into()),
                survives_restart: false,
                filesystems: Vec::new(),
            },
            mount_fds: HashMap::new(),
            agent_lock: None,
        }
    }
}

/// One line of `/proc/self/mountinfo`: mount point, device, file system type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub mount_point: PathBuf,
    pub dev: u64,
    pub fs_type: String,
}

/// Parses `/proc/self/mountinfo` text (octal escapes in mount points undone).
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            let (_, _, devno, _, mp) = (f.next()?, f.next()?, f.next()?, f.next()?, f.next()?);
            let rest: Vec<&str> = f.collect();
            let sep = rest.iter().position(|x| *x == "-")?;
            let fs_type = rest.get(sep + 1)?.to_string();
            let (maj, min) = devno.split_once(':')?;
            let dev = rustix::fs::makedev(maj.parse().ok()?, min.parse().ok()?);
            Some(MountEntry { mount_point: PathBuf::from(unescape(mp)), dev, fs_type })
        })
        .collect()
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let v = u8::from_str_radix(&s[i + 1..i + 4], 8).unwrap_or(b'?');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn mounts() -> Vec<MountEntry> {
    parse_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
}

/// Moves this process into its own mount namespace and puts an ignore mark on every mount
/// there that takes one: nothing this process opens raises events, whatever path it uses.
fn silence(group: &HsmGroup) -> Result<usize, HsmError> {
    alto_hsm::enter_private_mount_namespace()?;
    let mut n = 0;
    for m in mounts() {
        match group.ignore_mount(&m.mount_point) {
            Ok(()) => n += 1,
            Err(e) => tracing::trace!(mount = %m.mount_point.display(), error = %e, "not ignored"),
        }
    }
    Ok(n)
}

/// Sets up on-access recall for `cfg.roots`. Must run before the process starts any thread
/// (the mount namespace is per thread until then). Never fails: what is not possible is said
/// in the returned status, and explicit recall keeps working.
pub fn prepare(cfg: &AgentConfig) -> Prepared {
    let oa = &cfg.on_access;
    if !oa.enabled {
        return Prepared::off("disabled", "on_access.enabled = false");
    }
    // Taken first: from now on the holder leaves the accesses to this process.
    let agent_lock = match holder::agent_lock(&cfg.state_dir) {
        Ok(l) => l,
        Err(e) => return Prepared::off("error", format!("agent lock: {e}")),
    };
    let obtained = holder::obtain(&cfg.state_dir, oa.holder, !oa.holder, oa.unattended_after);
    let (group, survives) = match obtained {
        Ok(g) => g,
        Err(e) => {
            tracing::warn!(error = %e, "on-access recall unavailable");
            return Prepared::off("unsupported", e.to_string());
        }
    };
    if let Err(e) = silence(&group) {
        tracing::error!(error = %e, "cannot silence the agent's own I/O; on-access recall off");
        return Prepared::off("error", e.to_string());
    }
    let all = mounts();
    let mut filesystems = Vec::new();
    let mut mount_fds = HashMap::new();
    let mut marked = 0;
    for root in &cfg.roots {
        let dev = std::fs::metadata(root).map(|m| m.dev()).ok();
        let fs_type = dev.and_then(|d| {
            all.iter()
                .filter(|m| m.dev == d && root.starts_with(&m.mount_point))
                .max_by_key(|m| m.mount_point.as_os_str().len())
                .map(|m| m.fs_type.clone())
        });
        let (state, error) = match group.mark_filesystem(root) {
            Ok(()) => {
                marked += 1;
                if let (Some(d), Ok(f)) = (dev, File::open(root)) {
                    mount_fds.insert(d, f);
                }
                ("marked", None)
            }
            Err(HsmError::Unsupported { reason: UnsupportedReason::FileSystem, .. }) => {
                ("unsupported_filesystem", None)
            }
            Err(HsmError::Unsupported { reason: UnsupportedReason::Kernel, .. }) => {
                ("unsupported_kernel", None)
            }
            Err(e) => ("error", Some(e.to_string())),
        };
        tracing::info!(root = %root.display(), fs_type = ?fs_type, state, "on-access mark");
        filesystems.push(OnAccessFs {
            path: root.display().to_string(),
            fs_type,
            state: state.into(),
            error,
        });
    }
    let (state, reason) = if cfg.roots.is_empty() {
        ("active", Some("no roots configured".to_string()))
    } else if marked == cfg.roots.len() {
        ("active", None)
    } else if marked > 0 {
        ("partial", Some("some managed file systems lack pre-content events".to_string()))
    } else if filesystems.iter().all(|f| f.state == "unsupported_kernel") {
        ("unsupported", Some("the kernel lacks fanotify pre-content events (Linux 6.14+)".into()))
    } else if filesystems.iter().all(|f| f.state.starts_with("unsupported")) {
        ("unsupported", Some("no managed file system supports pre-content events".into()))
    } else {
        ("error", Some("no managed file system could be marked".into()))
    };
    let group = Arc::new(group);
    let _ = GROUP.set(Arc::clone(&group));
    Prepared {
        group: Some(group),
        status: OnAccessStatus {
            state: state.into(),
            reason,
            survives_restart: survives,
            filesystems,
        },
        mount_fds,
        agent_lock: Some(agent_lock),
    }
}

/// For `alto-agent recall` and `tier-once`, run beside a running agent: if this host has an
/// on-access group, take it and silence this process the way [`prepare`] silences the agent.
/// `Ok(false)` when there is none (nothing is marked, nothing to do). An error means a group
/// exists but this process cannot join it: stubbing and recalling would then be unsafe.
/// Must run before the process starts any thread.
pub fn join_quietly(cfg: &AgentConfig) -> Result<bool, HsmError> {
    if holder::existing(&cfg.state_dir).is_none() {
        return Ok(false);
    }
    let (group, _) = holder::obtain(&cfg.state_dir, false, false, cfg.on_access.unattended_after)?;
    silence(&group)?;
    let _ = GROUP.set(Arc::new(group));
    Ok(true)
}

/// Removes this process's group's ignore mark from `file` (before it becomes a stub: an
/// ignored stub would read as zeros without an event). A no-op without a group.
pub fn unignore(file: &File) -> std::io::Result<()> {
    match GROUP.get() {
        Some(g) => g.remove_inode_ignore(file).map(|_| ()).map_err(std::io::Error::other),
        None => Ok(()),
    }
}

/// An exclusive lock on one of 256 shards of `<state>/on-access/locks`, held while a stub is
/// recalled (on access, explicitly, by a job), so two recalls of one file never interleave.
pub fn recall_lock(state_dir: &Path, dev: u64, ino: u64) -> std::io::Result<File> {
    let dir = dir(state_dir).join("locks");
    std::fs::create_dir_all(&dir)?;
    let shard = (dev.wrapping_mul(31) ^ ino) % 256;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(format!("{shard:03}.lock")))?;
    rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_are_parsed() {
        let text = "36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 - ext4 /dev/root rw\n\
                    29 1 0:25 / /dev/shm rw shared:4 - tmpfs tmpfs rw\n\
                    garbage\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].mount_point, PathBuf::from("/mnt/with space"));
        assert_eq!(m[0].fs_type, "ext4");
        assert_eq!(m[0].dev, rustix::fs::makedev(98, 0));
        assert_eq!(m[1].fs_type, "tmpfs");
    }
}
