//! Pure job planning: order confirmed candidates, apply the run's caps, group them into
//! jobs of at most 1,000 files per host and rule (so one priority and one destination), and
//! estimate what each job frees and how long it takes.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::compile::{CompiledRule, STUB_KEEP_BYTES};
use crate::spec::OrderBy;

/// The seed's batch size.
pub const MAX_FILES_PER_JOB: usize = 1000;

/// A file the database selected and the evaluator confirmed.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub file_id: Uuid,
    pub host_id: Uuid,
    pub path: String,
    pub path_escaped: bool,
    pub size: i64,
    pub modified: Option<DateTime<Utc>>,
    pub accessed: Option<DateTime<Utc>>,
    pub inode: Option<i64>,
    pub hash: Option<String>,
    /// Index of the deciding rule.
    pub rule: usize,
}

/// Bytes a stub of a file of `size` bytes frees (it keeps the first 4 KiB).
pub fn space_saved(size: i64) -> i64 {
    (size - STUB_KEEP_BYTES).max(0)
}

/// Which candidates go first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ordering {
    /// By rule priority, then each rule's own `order_by`.
    ByRule,
    /// One order across all rules (watermark runs: the best candidates first).
    Global(OrderBy),
}

/// What a run may take.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    pub max_files: Option<u64>,
    pub max_bytes: Option<u64>,
    /// Stop once the estimated space saved reaches this (watermark runs).
    pub free_goal_bytes: Option<i64>,
    pub max_files_per_job: Option<usize>,
}

/// How fast a host moves data.
#[derive(Debug, Clone, Copy)]
pub struct Link {
    pub bytes_per_second: f64,
    /// Fixed cost per file (open, hash set-up, stub conversion, round trips).
    pub per_file_seconds: f64,
}

impl Link {
    pub fn seconds(&self, files: usize, bytes: i64) -> f64 {
        bytes.max(0) as f64 / self.bytes_per_second.max(1.0) + files as f64 * self.per_file_seconds
    }
}

/// One job to create.
#[derive(Debug, Clone)]
pub struct JobDraft {
    pub host_id: Uuid,
    pub rule: usize,
    pub files: Vec<Candidate>,
    pub bytes: i64,
    pub space_saved: i64,
    pub seconds: f64,
}

/// The result of planning.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub jobs: Vec<JobDraft>,
    pub files: u64,
    pub bytes: i64,
    pub space_saved: i64,
    pub seconds: f64,
    /// Candidates left for a later run because a cap or the goal was reached.
    pub deferred_files: u64,
    pub deferred_bytes: i64,
    /// Which limit stopped the run: `max_files`, `max_bytes` or `free_goal`.
    pub stopped_by: Option<&'static str>,
}

fn order_key(o: OrderBy, c: &Candidate) -> (i64, i64) {
    let t = |x: Option<DateTime<Utc>>| x.map_or(i64::MIN, |t| t.timestamp_micros());
    match o {
        OrderBy::OldestAccess => (t(c.accessed), 0),
        OrderBy::OldestModify => (t(c.modified), 0),
        OrderBy::Largest => (-c.size, 0),
    }
}

/// Orders, caps, groups and estimates. `rules` are the rules `Candidate::rule` indexes.
pub fn build(
    mut cands: Vec<Candidate>,
    rules: &[CompiledRule],
    ordering: Ordering,
    limits: Limits,
    link: Link,
) -> Outcome {
    match ordering {
        Ordering::ByRule => cands.sort_by(|a, b| {
            let o = rules[a.rule].spec.order_by;
            (a.rule, order_key(o, a), &a.path).cmp(&(b.rule, order_key(o, b), &b.path))
        }),
        Ordering::Global(o) => {
            cands.sort_by(|a, b| (order_key(o, a), &a.path).cmp(&(order_key(o, b), &b.path)));
        }
    }
    let mut out = Outcome::default();
    let mut taken: Vec<Candidate> = Vec::new();
    for c in cands {
        if out.stopped_by.is_some() {
            out.deferred_files += 1;
            out.deferred_bytes = out.deferred_bytes.saturating_add(c.size);
            continue;
        }
        if let Some(goal) = limits.free_goal_bytes {
            if out.space_saved >= goal {
                out.stopped_by = Some("free_goal");
                out.deferred_files += 1;
                out.deferred_bytes = out.deferred_bytes.saturating_add(c.size);
                continue;
            }
        }
        if limits.max_files.is_some_and(|m| out.files >= m) {
            out.stopped_by = Some("max_files");
            out.deferred_files += 1;
            out.deferred_bytes = out.deferred_bytes.saturating_add(c.size);
            continue;
        }
        if limits.max_bytes.is_some_and(|m| (out.bytes + c.size) as u64 > m) {
            out.stopped_by = Some("max_bytes");
            out.deferred_files += 1;
            out.deferred_bytes = out.deferred_bytes.saturating_add(c.size);
            continue;
        }
        out.files += 1;
        out.bytes = out.bytes.saturating_add(c.size);
        out.space_saved = out.space_saved.saturating_add(space_saved(c.size));
        taken.push(c);
    }
    // Group by (host, rule), keeping the chosen order inside each group.
    let per_job = limits.max_files_per_job.unwrap_or(MAX_FILES_PER_JOB).clamp(1, MAX_FILES_PER_JOB);
    let mut groups: Vec<((Uuid, usize), Vec<Candidate>)> = Vec::new();
    let mut index: std::collections::HashMap<(Uuid, usize), usize> = Default::default();
    for c in taken {
        let k = (c.host_id, c.rule);
        let i = *index.entry(k).or_insert_with(|| {
            groups.push((k, Vec::new()));
            groups.len() - 1
        });
        groups[i].1.push(c);
    }
    groups.sort_by_key(|((h, r), _)| (*r, *h));
    for ((host_id, rule), files) in groups {
        // Consume the group front to back (splitting off the tail each time would move the
        // rest of the group once per job: quadratic).
        let mut iter = files.into_iter().peekable();
        while iter.peek().is_some() {
            let chunk: Vec<Candidate> = iter.by_ref().take(per_job).collect();
            let bytes = chunk.iter().fold(0i64, |a, c| a.saturating_add(c.size));
            let saved = chunk.iter().fold(0i64, |a, c| a.saturating_add(space_saved(c.size)));
            let seconds = link.seconds(chunk.len(), bytes);
            out.seconds += seconds;
            out.jobs.push(JobDraft {
                host_id,
                rule,
                files: chunk,
                bytes,
                space_saved: saved,
                seconds,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::*;

    fn rule(order_by: OrderBy, priority: i32) -> CompiledRule {
        let spec = RuleSpec {
            name: format!("r{priority}"),
            description: None,
            enabled: true,
            priority,
            scope: Scope::default(),
            conditions: Conditions::default(),
            action: Action::tier("default"),
            schedule: None,
            order_by,
        };
        crate::compile(Uuid::now_v7(), 1, &spec, &|_| true).unwrap()
    }

    fn cand(i: usize, host: Uuid, rule: usize, size: i64) -> Candidate {
        Candidate {
            file_id: Uuid::from_u128(i as u128),
            host_id: host,
            path: format!("/f{i:05}"),
            path_escaped: false,
            size,
            modified: None,
            accessed: DateTime::from_timestamp(1_000_000 + (i as i64 % 97) * 1000, 0),
            inode: Some(i as i64),
            hash: None,
            rule,
        }
    }

    #[test]
    fn groups_chunks_and_estimates() {
        let rules = vec![rule(OrderBy::OldestAccess, 1), rule(OrderBy::Largest, 2)];
        let (h1, h2) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let mut v = Vec::new();
        for i in 0..2500 {
            v.push(cand(i, if i % 2 == 0 { h1 } else { h2 }, i % 3 % 2, 10_000));
        }
        let link = Link { bytes_per_second: 1_000_000.0, per_file_seconds: 0.01 };
        let o = build(v, &rules, Ordering::ByRule, Limits::default(), link);
        assert_eq!(o.files, 2500);
        assert!(o.jobs.iter().all(|j| j.files.len() <= MAX_FILES_PER_JOB));
        assert!(o
            .jobs
            .iter()
            .all(|j| j.files.iter().all(|f| f.host_id == j.host_id && f.rule == j.rule)));
        assert_eq!(o.jobs.iter().map(|j| j.files.len()).sum::<usize>(), 2500);
        let j = &o.jobs[0];
        assert_eq!(j.space_saved, j.files.len() as i64 * (10_000 - 4096));
        assert!((j.seconds - (j.bytes as f64 / 1e6 + j.files.len() as f64 * 0.01)).abs() < 1e-9);
        // Inside a job, oldest access first.
        assert!(j.files.windows(2).all(|w| w[0].accessed <= w[1].accessed));
    }

    #[test]
    fn caps_and_goal() {
        let rules = vec![rule(OrderBy::Largest, 1)];
        let h = Uuid::from_u128(1);
        let v: Vec<Candidate> = (0..100).map(|i| cand(i, h, 0, (i as i64 + 1) * 10_000)).collect();
        let link = Link { bytes_per_second: 1e6, per_file_seconds: 0.0 };
        let o = build(
            v.clone(),
            &rules,
            Ordering::ByRule,
            Limits { max_files: Some(10), ..Default::default() },
            link,
        );
        assert_eq!((o.files, o.deferred_files, o.stopped_by), (10, 90, Some("max_files")));
        // Largest first.
        assert_eq!(o.jobs[0].files[0].size, 1_000_000);
        let o = build(
            v.clone(),
            &rules,
            Ordering::ByRule,
            Limits { max_bytes: Some(2_000_000), ..Default::default() },
            link,
        );
        assert!(o.bytes <= 2_000_000 && o.stopped_by == Some("max_bytes"));
        let o = build(
            v,
            &rules,
            Ordering::Global(OrderBy::Largest),
            Limits { free_goal_bytes: Some(1_500_000), ..Default::default() },
            link,
        );
        assert!(o.space_saved >= 1_500_000);
        assert_eq!(o.files, 2);
    }
}
