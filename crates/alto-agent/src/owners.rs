//! uid → user name and gid → group name through the system's name service, cached per scan.
//!
//! Names come from `getpwuid_r`/`getgrgid_r` (via `nix`), so whatever the host's NSS
//! configuration resolves — `/etc/passwd`, `sssd`, `winbind`, LDAP — is what a scan records;
//! on a domain-joined file server most owners are not in `/etc/passwd`. Each id is looked up at
//! most once per [`Owners`] (one per scan): answers *and* misses are cached, so an unknown uid
//! costs one lookup, not one per file. The cache is bounded ([`MAX_CACHED`] ids per kind); past
//! that it starts over rather than grow. Unknown ids render as the number, as before.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// The most ids remembered per kind (users, groups) before the cache starts over.
pub const MAX_CACHED: usize = 65_536;

/// Where names come from.
pub trait NameService: Send + Sync + fmt::Debug {
    /// The user name of `uid`, `None` if the name service does not know it.
    fn user(&self, uid: u32) -> Option<String>;
    /// The group name of `gid`, `None` if the name service does not know it.
    fn group(&self, gid: u32) -> Option<String>;
}

/// The system's name service (`getpwuid_r`/`getgrgid_r`, i.e. NSS).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemNames;

impl NameService for SystemNames {
    fn user(&self, uid: u32) -> Option<String> {
        match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
            Ok(u) => u.map(|u| u.name),
            Err(e) => {
                tracing::debug!(uid, error = %e, "user lookup failed; recording the number");
                None
            }
        }
    }

    fn group(&self, gid: u32) -> Option<String> {
        match nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid)) {
            Ok(g) => g.map(|g| g.name),
            Err(e) => {
                tracing::debug!(gid, error = %e, "group lookup failed; recording the number");
                None
            }
        }
    }
}

/// A fixed table of user names (tests, or a passwd(5) file that is not the system's).
#[derive(Debug, Default, Clone)]
pub struct NameTable {
    users: HashMap<u32, String>,
    groups: HashMap<u32, String>,
}

impl NameTable {
    /// Parses passwd(5) text: `name:pw:uid:…`. The first name for a uid wins.
    pub fn parse_passwd(text: &[u8]) -> NameTable {
        NameTable { users: parse_db(text), groups: HashMap::new() }
    }

    /// Adds group names from group(5) text: `name:pw:gid:…`. The first name for a gid wins.
    pub fn with_group_file(mut self, text: &[u8]) -> NameTable {
        self.groups = parse_db(text);
        self
    }
}

impl NameService for NameTable {
    fn user(&self, uid: u32) -> Option<String> {
        self.users.get(&uid).cloned()
    }

    fn group(&self, gid: u32) -> Option<String> {
        self.groups.get(&gid).cloned()
    }
}

/// `name:pw:id:…` lines (passwd(5) and group(5) share the first three fields).
fn parse_db(text: &[u8]) -> HashMap<u32, String> {
    let mut names = HashMap::new();
    for line in text.split(|b| *b == b'\n') {
        let mut fields = line.split(|b| *b == b':');
        let (Some(name), Some(_), Some(id)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        let (Ok(name), Some(id)) =
            (std::str::from_utf8(name), std::str::from_utf8(id).ok().and_then(|u| u.parse().ok()))
        else {
            continue;
        };
        if name.is_empty() || name.starts_with('#') {
            continue;
        }
        names.entry(id).or_insert_with(|| name.to_owned());
    }
    names
}

/// One kind of id → name, with misses remembered as `None`.
#[derive(Debug, Default)]
struct Cache {
    names: RwLock<HashMap<u32, Option<Arc<str>>>>,
}

impl Cache {
    fn get(&self, id: u32, lookup: impl FnOnce() -> Option<String>) -> Option<Arc<str>> {
        if let Some(hit) = self.names.read().unwrap_or_else(|e| e.into_inner()).get(&id) {
            return hit.clone();
        }
        // Looked up outside the lock: a slow NSS backend must not stall the other walkers.
        // Two threads may race on the same new id; both get the same answer.
        let found: Option<Arc<str>> = lookup().map(Arc::from);
        let mut names = self.names.write().unwrap_or_else(|e| e.into_inner());
        if names.len() >= MAX_CACHED {
            names.clear();
        }
        names.entry(id).or_insert(found).clone()
    }
}

/// User and group names by id, resolved through a [`NameService`] and cached. Unknown ids
/// render as the number. Clones share the cache.
#[derive(Debug, Clone)]
pub struct Owners {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    service: Box<dyn NameService>,
    users: Cache,
    groups: Cache,
    lookups: AtomicU64,
}

impl Default for Owners {
    /// No names at all: every owner renders as its number.
    fn default() -> Owners {
        Owners::with_service(NameTable::default())
    }
}

impl Owners {
    /// The system's name service (NSS), with an empty cache.
    pub fn from_system() -> Owners {
        Owners::with_service(SystemNames)
    }

    /// Names from `service`, with an empty cache.
    pub fn with_service(service: impl NameService + 'static) -> Owners {
        Owners {
            inner: Arc::new(Inner {
                service: Box::new(service),
                users: Cache::default(),
                groups: Cache::default(),
                lookups: AtomicU64::new(0),
            }),
        }
    }

    /// A fixed table parsed from passwd(5) text (see [`NameTable::parse_passwd`]).
    pub fn parse(text: &[u8]) -> Owners {
        Owners::with_service(NameTable::parse_passwd(text))
    }

    /// The user name of `uid`, or `uid` as text.
    pub fn name(&self, uid: u32) -> String {
        let i = &self.inner;
        let found = i.users.get(uid, || {
            i.lookups.fetch_add(1, Ordering::Relaxed);
            i.service.user(uid)
        });
        match found {
            Some(n) => n.to_string(),
            None => uid.to_string(),
        }
    }

    /// The group name of `gid`, or `gid` as text.
    pub fn group(&self, gid: u32) -> String {
        let i = &self.inner;
        let found = i.groups.get(gid, || {
            i.lookups.fetch_add(1, Ordering::Relaxed);
            i.service.group(gid)
        });
        match found {
            Some(n) => n.to_string(),
            None => gid.to_string(),
        }
    }

    /// How many times the name service was asked (cache misses, users and groups together).
    pub fn lookups(&self) -> u64 {
        self.inner.lookups.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Far above any uid a test machine assigns (and not `u32::MAX`, which means "no id").
    const UNKNOWN: u32 = 3_999_999_999;

    #[test]
    fn parses_passwd_and_falls_back_to_numbers() {
        let o = Owners::parse(b"root:x:0:0:root:/root:/bin/bash\n#c\nbad\nalice:x:1000:1000::/h:/bin/sh\nalias:x:1000:1:::\n");
        assert_eq!(o.name(0), "root");
        assert_eq!(o.name(1000), "alice");
        assert_eq!(o.name(4242), "4242");
    }

    #[test]
    fn owners_resolve_through_the_name_service() {
        let o = Owners::from_system();
        assert_eq!(o.name(0), "root");
        assert_eq!(o.group(0), "root");
        assert_eq!(o.name(UNKNOWN), UNKNOWN.to_string());
        assert_eq!(o.group(UNKNOWN), UNKNOWN.to_string());
    }

    #[test]
    fn owners_cache_answers_and_misses() {
        let o = Owners::from_system();
        for _ in 0..3 {
            assert_eq!(o.name(0), "root");
            assert_eq!(o.name(UNKNOWN), UNKNOWN.to_string());
        }
        assert_eq!(o.lookups(), 2);
        // Groups are cached apart from users.
        assert_eq!(o.group(0), "root");
        assert_eq!(o.group(0), "root");
        assert_eq!(o.lookups(), 3);
        // Clones share the cache.
        assert_eq!(o.clone().name(0), "root");
        assert_eq!(o.lookups(), 3);
    }

    #[test]
    fn owners_cache_is_bounded() {
        let o = Owners::parse(b"root:x:0:0::/:/bin/sh\n");
        for uid in 0..(MAX_CACHED as u32 + 10) {
            o.name(uid);
        }
        assert!(o.inner.users.names.read().unwrap().len() <= MAX_CACHED);
        assert_eq!(o.name(0), "root");
    }

    #[test]
    fn owners_group_file() {
        let t = NameTable::default().with_group_file(b"wheel:x:10:alice\n");
        let o = Owners::with_service(t);
        assert_eq!(o.group(10), "wheel");
        assert_eq!(o.group(11), "11");
        assert_eq!(o.name(10), "10");
    }
}
