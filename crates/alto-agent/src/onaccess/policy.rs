//! Who may recall on access: deny rules by executable and a per-user limit over a moving
//! window. Pure logic: no I/O, time is a parameter.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use alto_hsm::DenyErrno;
use alto_rules::pattern::Pattern;

use crate::config::{deny_errno, OnAccessConfig};

/// Why a recall is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A deny rule matched the program (`rule` is its glob).
    Program { rule: String, errno: DenyErrno },
    /// The user recalled `limit` stubs within `window` already.
    RateLimited { uid: u32, limit: u32, window: Duration },
}

impl Refusal {
    pub fn errno(&self) -> DenyErrno {
        match self {
            Refusal::Program { errno, .. } => *errno,
            Refusal::RateLimited { .. } => DenyErrno::Again,
        }
    }

    /// One line for the audit trail and the reader's administrator.
    pub fn message(&self) -> String {
        match self {
            Refusal::Program { rule, .. } => {
                format!("denied by on_access.deny rule {rule:?} (the program may not recall)")
            }
            Refusal::RateLimited { uid, limit, window } => format!(
                "recall rate limit: user {uid} recalled {limit} stubs within {} (on_access.user_rate_limit)",
                humantime::format_duration(*window)
            ),
        }
    }
}

/// The compiled policy and the per-user recall history.
#[derive(Debug)]
pub struct Policy {
    deny: Vec<(Pattern, String, DenyErrno)>,
    limit: u32,
    window: Duration,
    recent: HashMap<u32, VecDeque<Instant>>,
}

impl Policy {
    /// From a configuration `AgentConfig::load` validated (invalid rules are skipped).
    pub fn new(cfg: &OnAccessConfig) -> Policy {
        let deny = cfg
            .deny
            .iter()
            .filter_map(|r| {
                Some((
                    Pattern::glob(&r.executable).ok()?,
                    r.executable.clone(),
                    deny_errno(&r.errno)?,
                ))
            })
            .collect();
        Policy {
            deny,
            limit: cfg.user_rate_limit,
            window: cfg.user_rate_window,
            recent: HashMap::new(),
        }
    }

    /// Whether the program `exe` run by `uid` may recall a stub at `now`; an allowed recall
    /// counts against the user's limit. Unknown executables and users are never denied by a
    /// rule, but root (uid 0) is limited like anyone else.
    pub fn check(
        &mut self,
        exe: Option<&str>,
        uid: Option<u32>,
        now: Instant,
    ) -> Result<(), Refusal> {
        if let Some(exe) = exe {
            if let Some((_, rule, errno)) = self.deny.iter().find(|(p, _, _)| p.is_match(exe)) {
                return Err(Refusal::Program { rule: rule.clone(), errno: *errno });
            }
        }
        let (Some(uid), true) = (uid, self.limit > 0) else {
            return Ok(());
        };
        let q = self.recent.entry(uid).or_default();
        while q.front().is_some_and(|t| now.saturating_duration_since(*t) >= self.window) {
            q.pop_front();
        }
        if q.len() >= self.limit as usize {
            return Err(Refusal::RateLimited { uid, limit: self.limit, window: self.window });
        }
        q.push_back(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DenyRule;

    fn cfg(limit: u32) -> OnAccessConfig {
        OnAccessConfig {
            deny: vec![
                DenyRule { executable: "/usr/bin/clamscan".into(), errno: "EPERM".into() },
                DenyRule { executable: "/opt/backup/**".into(), errno: "EAGAIN".into() },
            ],
            user_rate_limit: limit,
            user_rate_window: Duration::from_secs(60),
            ..OnAccessConfig::default()
        }
    }

    #[test]
    fn deny_rules_match_by_executable_glob() {
        let mut p = Policy::new(&cfg(0));
        let t = Instant::now();
        assert!(matches!(
            p.check(Some("/usr/bin/clamscan"), Some(0), t),
            Err(Refusal::Program { errno: DenyErrno::Perm, .. })
        ));
        assert!(matches!(
            p.check(Some("/opt/backup/bin/agent"), Some(0), t),
            Err(Refusal::Program { errno: DenyErrno::Again, .. })
        ));
        assert_eq!(p.check(Some("/usr/bin/cat"), Some(0), t), Ok(()));
        assert_eq!(p.check(None, None, t), Ok(()), "unknown program and user");
    }

    #[test]
    fn the_user_limit_is_a_moving_window() {
        let mut p = Policy::new(&cfg(2));
        let t0 = Instant::now();
        assert_eq!(p.check(Some("/usr/bin/cat"), Some(1000), t0), Ok(()));
        assert_eq!(p.check(Some("/usr/bin/cat"), Some(1000), t0 + Duration::from_secs(30)), Ok(()));
        let e =
            p.check(Some("/usr/bin/cat"), Some(1000), t0 + Duration::from_secs(40)).unwrap_err();
        assert_eq!(e.errno(), DenyErrno::Again);
        assert!(e.message().contains("user 1000 recalled 2 stubs within 1m"), "{}", e.message());
        // Another user has a limit of their own.
        assert_eq!(p.check(Some("/usr/bin/cat"), Some(1001), t0 + Duration::from_secs(40)), Ok(()));
        // The first recall leaves the window at t0 + 60 s: one more is allowed, not two.
        assert_eq!(p.check(Some("/usr/bin/cat"), Some(1000), t0 + Duration::from_secs(61)), Ok(()));
        assert!(p.check(Some("/usr/bin/cat"), Some(1000), t0 + Duration::from_secs(62)).is_err());
    }
}
