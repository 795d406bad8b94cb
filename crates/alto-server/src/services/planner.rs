//! The planner: turns a tenant's rules and inventory into tiering jobs.
//!
//! A run loads the rules, compiles them ([`alto_rules::compile`]), and for each host selects
//! candidates in PostgreSQL with SQL compiled from the same rules
//! ([`alto_db::planner::select_candidates`]); every selected row is confirmed by
//! [`alto_rules::decide`] (a disagreement drops the file and is counted, never planned).
//! Confirmed candidates are ordered, capped (run caps, per-host hourly rate limits,
//! watermark goals), grouped into jobs of at most 1,000 files per host and rule, estimated,
//! and written with the plan in one transaction.
//!
//! Triggers: a `plan` job queued by each ingest, by the scheduler for rules with a cron
//! schedule, and by the watermark sweep; and on demand through the API (synchronously).
//! Queued runs and the sweep run as [`Worker`]s ([`worker`], [`sweep_worker`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alto_api_types::{
    JobPayload, PlanStats, RuleVersionRef, TargetRef, TierPayload, JOB_CONTRACT_VERSION,
};
use alto_db::planner::{self as pdb, NewJob, NewJobFiles, NewPlan, PlanHost, Selection};
use alto_db::{jobs, rules as rdb, storage, DbError, TenantCtx, Tx};
use alto_model::CustomerId;
use alto_rules::plan::{self, Candidate, Limits, Link, Ordering};
use alto_rules::{CompiledRule, Decision, EvalSettings, FileFacts, HostFacts, OrderBy, TagIndex};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::audit::{self, Actor};
use crate::state::AppState;
use crate::worker::{Mode, Worker};

/// Job kind of a queued planning run.
pub const KIND: &str = "plan";
/// Advisory-lock key of the scheduler and watermark sweep.
const SWEEP_LOCK: i64 = 73010012;
/// A host that got a watermark plan is not re-triggered for this long.
const WATERMARK_COOLDOWN_MINUTES: i64 = 10;

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("{0}")]
    Invalid(String),
}

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Ingest,
    Schedule,
    Manual,
    Watermark,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Ingest => "ingest",
            Trigger::Schedule => "schedule",
            Trigger::Manual => "manual",
            Trigger::Watermark => "watermark",
        }
    }
}

/// A planning run's parameters (also the payload of a `plan` job).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RunRequest {
    pub customer_id: Uuid,
    pub trigger: Trigger,
    #[serde(default)]
    pub requested_by: Option<String>,
    /// Empty: every host.
    #[serde(default)]
    pub host_ids: Vec<Uuid>,
    /// Empty: every rule without a schedule (schedule and watermark runs name theirs).
    #[serde(default)]
    pub rule_ids: Vec<Uuid>,
    #[serde(default)]
    pub max_files: Option<i64>,
    #[serde(default)]
    pub max_bytes: Option<i64>,
    #[serde(default)]
    pub hold: bool,
    /// Watermark runs: the volume's mount point and the bytes to free there.
    #[serde(default)]
    pub under: Option<String>,
    #[serde(default)]
    pub free_goal_bytes: Option<i64>,
}

impl RunRequest {
    pub fn new(customer_id: Uuid, trigger: Trigger) -> RunRequest {
        RunRequest {
            customer_id,
            trigger,
            requested_by: None,
            host_ids: Vec::new(),
            rule_ids: Vec::new(),
            max_files: None,
            max_bytes: None,
            hold: false,
            under: None,
            free_goal_bytes: None,
        }
    }
}

/// The loaded rule set of a tenant, compiled.
pub struct RuleSet {
    pub rules: Vec<CompiledRule>,
    pub revision: i64,
    pub settings: rdb::Settings,
    pub tags: TagIndex,
    /// The same tags as a list (for inlining tag conditions into SQL).
    pub tag_list: Vec<alto_rules::PathTag>,
    pub targets: HashMap<String, storage::TargetRow>,
}

impl RuleSet {
    pub fn eval_settings(&self, now: DateTime<Utc>) -> EvalSettings {
        EvalSettings {
            now,
            safety_window: chrono::Duration::seconds(i64::from(
                self.settings.safety_window_seconds.max(0),
            )),
            recall_retention_days: u32::try_from(self.settings.recall_retention_days).unwrap_or(0),
        }
    }

    pub fn versions(&self) -> Vec<RuleVersionRef> {
        self.rules
            .iter()
            .map(|r| RuleVersionRef {
                rule_id: r.id,
                name: r.spec.name.clone(),
                version: r.version,
            })
            .collect()
    }
}

/// Loads and compiles the tenant's rules (in priority order), settings, tags and targets.
/// A stored rule that no longer compiles (its target was removed out of band) is left out
/// and logged.
pub async fn load(tx: &mut Tx, customer_id: Uuid) -> Result<RuleSet, DbError> {
    let settings = rdb::settings(tx, customer_id).await?;
    let targets: HashMap<String, storage::TargetRow> = storage::list_targets(tx, customer_id)
        .await?
        .into_iter()
        .map(|t| (t.name.clone(), t))
        .collect();
    let mut rules = Vec::new();
    for row in rdb::list(tx, customer_id).await? {
        let spec: alto_rules::RuleSpec = match serde_json::from_value(row.spec.clone()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(rule = %row.id, error = %e, "stored rule does not parse; skipped");
                continue;
            }
        };
        match alto_rules::compile(row.id, row.version, &spec, &|t| targets.contains_key(t)) {
            Ok(c) => rules.push(c),
            Err(e) => tracing::error!(rule = %row.id, errors = %alto_rules::describe(&e),
                "stored rule does not compile; skipped"),
        }
    }
    let tag_list: Vec<alto_rules::PathTag> = storage::list_tags(tx, customer_id, None)
        .await?
        .into_iter()
        .map(|t| alto_rules::PathTag {
            host_id: t.host_id,
            path: t.path,
            key: t.key,
            value: t.value,
        })
        .collect();
    let tags = TagIndex::new(tag_list.clone());
    Ok(RuleSet { rules, revision: settings.ruleset_revision, settings, tags, tag_list, targets })
}

/// The host's view of a rule set: enabled rules whose host scope covers it, and their
/// indexes in the full list.
pub fn host_rules(set: &[CompiledRule], host: &HostFacts<'_>) -> (Vec<CompiledRule>, Vec<usize>) {
    let mut rules = Vec::new();
    let mut index = Vec::new();
    for (i, r) in set.iter().enumerate() {
        if r.spec.enabled && alto_rules::eval::host_in_scope(r, host) {
            rules.push(r.clone());
            index.push(i);
        }
    }
    (rules, index)
}

/// Facts of a selected row, for the evaluator.
pub fn facts(r: &pdb::CandRow) -> FileFacts<'_> {
    FileFacts {
        path: &r.file_path,
        size: r.file_size,
        modified: r.last_modified,
        accessed: r.last_accessed,
        extension: &r.file_extension,
        owner: r.owner.as_deref(),
        mode: r.mode,
        stubbed: r.stubbed,
        deleted: r.deleted,
        recalled_at: r.recalled_at,
    }
}

/// Candidates of one host, selected in SQL and confirmed by the evaluator.
#[derive(Debug, Default)]
pub struct HostSelection {
    /// Rows the database selected.
    pub selected: u64,
    /// Confirmed candidates; `rule` indexes the full rule list.
    pub candidates: Vec<Candidate>,
    pub mismatches: u64,
    pub select_ms: u64,
    pub confirm_ms: u64,
}

/// Selects a host's candidates in SQL and confirms each with the evaluator. `eligible` says
/// which rules (indexes into `set.rules`) may contribute.
pub async fn host_candidates(
    tx: &mut Tx,
    set: &RuleSet,
    host: &PlanHost,
    eligible: &(dyn Fn(usize, &CompiledRule) -> bool + Sync),
    now: DateTime<Utc>,
    under: Option<String>,
    skip_in_jobs: bool,
) -> Result<HostSelection, DbError> {
    let hf = HostFacts { id: host.id, groups: &host.groups };
    let (rules, index) = host_rules(&set.rules, &hf);
    let elig: Vec<usize> = rules
        .iter()
        .enumerate()
        .filter(|(i, r)| r.is_tier() && eligible(index[*i], r))
        .map(|(i, _)| i)
        .collect();
    let es = set.eval_settings(now);
    let host_tags: Vec<alto_rules::PathTag> =
        set.tag_list.iter().filter(|t| t.host_id.is_none_or(|h| h == host.id)).cloned().collect();
    let t0 = Instant::now();
    let rows = pdb::select_candidates(
        tx,
        &Selection {
            customer_id: host.customer_id,
            host_id: host.id,
            rules: &rules,
            eligible: &elig,
            now,
            safety_cutoff: es.safety_cutoff(),
            recall_retention_days: es.recall_retention_days,
            under,
            skip_in_jobs,
            tags: Some(&host_tags),
        },
    )
    .await?;
    let select_ms = t0.elapsed().as_millis() as u64;
    let t1 = Instant::now();
    let selected = rows.len() as u64;
    let confirm = |chunk: Vec<pdb::CandRow>| -> (Vec<Candidate>, u64) {
        let mut out = Vec::with_capacity(chunk.len());
        let mut mismatches = 0u64;
        for r in chunk {
            match alto_rules::decide(&rules, &hf, &facts(&r), &set.tags, &es) {
                Decision::Candidate { rule }
                    if rule as i32 == r.rule_idx && elig.contains(&rule) =>
                {
                    out.push(Candidate {
                        file_id: r.id,
                        host_id: host.id,
                        path: r.file_path,
                        path_escaped: r.path_escaped,
                        size: r.file_size,
                        modified: r.last_modified,
                        accessed: r.last_accessed,
                        inode: r.inode,
                        hash: r.file_hash,
                        rule: index[rule],
                    });
                }
                other => {
                    mismatches += 1;
                    tracing::error!(file = %r.id, sql_rule = r.rule_idx, decision = ?other,
                        "database selection and evaluator disagree; file not planned");
                }
            }
        }
        (out, mismatches)
    };
    // Large selections are confirmed on every core.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    let (candidates, mismatches) = if rows.len() < 20_000 || threads < 2 {
        confirm(rows)
    } else {
        let per = rows.len().div_ceil(threads);
        let mut rows = rows;
        let mut chunks = Vec::new();
        while rows.len() > per {
            let rest = rows.split_off(per);
            chunks.push(std::mem::replace(&mut rows, rest));
        }
        chunks.push(rows);
        let parts: Vec<(Vec<Candidate>, u64)> = std::thread::scope(|sc| {
            let handles: Vec<_> = chunks.into_iter().map(|c| sc.spawn(|| confirm(c))).collect();
            handles.into_iter().map(|h| h.join().unwrap_or_default()).collect()
        });
        let mut all = Vec::with_capacity(selected as usize);
        let mut mm = 0;
        for (c, m) in parts {
            all.extend(c);
            mm += m;
        }
        (all, mm)
    };
    if mismatches > 0 {
        metrics::counter!("alto_planner_mismatches_total").increment(mismatches);
    }
    Ok(HostSelection {
        selected,
        candidates,
        mismatches,
        select_ms,
        confirm_ms: t1.elapsed().as_millis() as u64,
    })
}

fn bandwidth(host: &PlanHost, s: &rdb::Settings) -> i64 {
    let base = host.observed_bytes_per_second.unwrap_or(s.link_bytes_per_second).max(1);
    match host.bandwidth_limit_bytes_per_second {
        Some(l) if l > 0 => base.min(l),
        _ => base,
    }
}

fn order_of(s: &str) -> OrderBy {
    match s {
        "oldest_modify" => OrderBy::OldestModify,
        "largest" => OrderBy::Largest,
        _ => OrderBy::OldestAccess,
    }
}

/// Where a job's objects go: the target location plus the seed's date path.
fn destination(t: &storage::TargetRow, now: DateTime<Utc>) -> String {
    format!("{}/{}/", t.location.trim_end_matches('/'), now.format("%Y/%m/%d"))
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub plan_id: Uuid,
    pub jobs: Vec<Uuid>,
    pub stats: PlanStats,
}

/// Runs the planner for one tenant in one transaction: the plan, its jobs and its audit
/// entry commit together.
pub async fn run(state: &AppState, req: &RunRequest) -> Result<RunOutcome, PlanError> {
    let started = Instant::now();
    let now = state.now();
    let ctx = TenantCtx::Tenant(CustomerId(req.customer_id));
    let mut tx = state.db.begin(ctx).await?;
    pdb::tune(&mut tx).await?;
    let set = load(&mut tx, req.customer_id).await?;
    let mut hosts = pdb::plan_hosts(&mut tx, req.customer_id).await?;
    if !req.host_ids.is_empty() {
        for h in &req.host_ids {
            if !hosts.iter().any(|x| x.id == *h) {
                return Err(PlanError::Invalid(format!("unknown host {h}")));
            }
        }
        hosts.retain(|h| req.host_ids.contains(&h.id));
    }
    for r in &req.rule_ids {
        if !set.rules.iter().any(|x| x.id == *r) {
            return Err(PlanError::Invalid(format!("unknown or invalid rule {r}")));
        }
    }
    let named = !req.rule_ids.is_empty();
    let watermark = req.trigger == Trigger::Watermark;
    let eligible = |_: usize, r: &CompiledRule| {
        if named {
            req.rule_ids.contains(&r.id)
        } else {
            // Scheduled rules move their files on their schedule; a watermark emergency
            // takes every tier rule's candidates.
            watermark || r.spec.schedule.is_none()
        }
    };
    let s = &set.settings;
    let mut run_files = req.max_files.or(s.max_files_per_run).map(|v| v.max(0) as u64);
    let mut run_bytes = req.max_bytes.or(s.max_bytes_per_run).map(|v| v.max(0) as u64);
    let mut stats = PlanStats::default();
    let mut drafts: Vec<(plan::JobDraft, i64)> = Vec::new();
    let ordering =
        if watermark { Ordering::Global(order_of(&s.watermark_order)) } else { Ordering::ByRule };
    for host in &hosts {
        pdb::lock_host(&mut tx, host.id).await?;
        let sel =
            host_candidates(&mut tx, &set, host, &eligible, now, req.under.clone(), true).await?;
        stats.selected += sel.selected;
        stats.confirmed += sel.candidates.len() as u64;
        stats.mismatches += sel.mismatches;
        stats.select_ms += sel.select_ms;
        stats.confirm_ms += sel.confirm_ms;
        let cands = sel.candidates;
        if cands.is_empty() {
            continue;
        }
        // Per-host hourly rate limit.
        let (mut host_files, mut host_bytes) = (None, None);
        if s.host_max_files_per_hour.is_some() || s.host_max_bytes_per_hour.is_some() {
            let (f, b) =
                pdb::host_usage_since(&mut tx, host.id, now - chrono::Duration::hours(1)).await?;
            host_files = s.host_max_files_per_hour.map(|m| (m - f).max(0) as u64);
            host_bytes = s.host_max_bytes_per_hour.map(|m| (m - b).max(0) as u64);
        }
        let min = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, None) => x,
            (None, y) => y,
        };
        let bps = bandwidth(host, s);
        let link = Link {
            bytes_per_second: bps as f64,
            per_file_seconds: f64::from(s.per_file_overhead_ms.max(0)) / 1000.0,
        };
        let limits = Limits {
            max_files: min(run_files, host_files),
            max_bytes: min(run_bytes, host_bytes),
            free_goal_bytes: req.free_goal_bytes,
            max_files_per_job: None,
        };
        let o = plan::build(cands, &set.rules, ordering, limits, link);
        stats.files += o.files;
        stats.bytes = stats.bytes.saturating_add(o.bytes);
        stats.space_saved += o.space_saved;
        stats.estimated_seconds += o.seconds;
        stats.deferred_files += o.deferred_files;
        stats.deferred_bytes = stats.deferred_bytes.saturating_add(o.deferred_bytes);
        if let Some(why) = o.stopped_by {
            let why = if host_files.is_some() || host_bytes.is_some() {
                format!("{why} (host {} rate limit or run cap)", host.name)
            } else {
                why.to_owned()
            };
            if !stats.stopped_by.contains(&why) {
                stats.stopped_by.push(why);
            }
        }
        run_files = run_files.map(|m| m.saturating_sub(o.files));
        run_bytes = run_bytes.map(|m| m.saturating_sub(o.bytes.max(0) as u64));
        drafts.extend(o.jobs.into_iter().map(|j| (j, bps)));
    }
    // Jobs and their files.
    let plan_id = Uuid::now_v7();
    let mut new_jobs = Vec::with_capacity(drafts.len());
    let mut files = NewJobFiles::default();
    for (d, bps) in &drafts {
        let rule = &set.rules[d.rule];
        let target_name = rule.target().unwrap_or("default").to_owned();
        let Some(target) = set.targets.get(&target_name) else {
            continue;
        };
        let id = Uuid::now_v7();
        let Ok(kind) = target.kind.parse::<alto_model::TargetKind>() else {
            tracing::warn!(target = %target.name, kind = %target.kind,
                "storage target of an unknown kind: no job planned for it");
            continue;
        };
        let payload = JobPayload::Tier(TierPayload {
            version: JOB_CONTRACT_VERSION,
            job_id: id,
            customer_id: req.customer_id,
            host_id: d.host_id,
            rule_id: rule.id,
            rule_version: rule.version,
            plan_id,
            priority: rule.spec.priority,
            storage_target: TargetRef {
                id: target.id,
                name: target.name.clone(),
                kind,
                location: target.location.clone(),
            },
            compression: rule.spec.action.compression,
            tiered_destination: destination(target, now),
            estimated_space_saved: d.space_saved,
            estimated_duration_seconds: d.seconds.ceil() as i64,
            estimated_bandwidth_bytes_per_second: *bps,
            created_at: now,
        })
        .to_json();
        for (i, f) in d.files.iter().enumerate() {
            files.job_id.push(id);
            files.seq.push(i as i32);
            files.file_id.push(f.file_id);
            files.size.push(f.size);
            files.mtime.push(f.modified);
            files.inode.push(f.inode);
            files.hash.push(f.hash.clone());
        }
        new_jobs.push(NewJob {
            id,
            host_id: d.host_id,
            rule_id: rule.id,
            rule_version: rule.version,
            target_name,
            // Dispatch order: watermark emergencies first.
            priority: if watermark { 100 } else { 50 },
            payload,
            file_count: d.files.len() as i32,
            total_bytes: d.bytes,
            estimates: serde_json::json!({
                "space_saved_bytes": d.space_saved,
                "duration_seconds": d.seconds,
                "bandwidth_bytes_per_second": bps,
            }),
        });
    }
    stats.jobs = new_jobs.len() as u64;
    stats.duration_ms = started.elapsed().as_millis() as u64;
    let host_ids: Vec<Uuid> = hosts.iter().map(|h| h.id).collect();
    let stats_json = serde_json::to_value(&stats).unwrap_or_default();
    pdb::insert_plan(
        &mut tx,
        &NewPlan {
            id: plan_id,
            customer_id: req.customer_id,
            trigger: req.trigger.as_str().into(),
            requested_by: req.requested_by.clone(),
            host_ids: host_ids.clone(),
            rule_id: req.rule_ids.first().copied().filter(|_| req.trigger == Trigger::Schedule),
            ruleset_revision: set.revision,
            rule_versions: serde_json::to_value(set.versions()).unwrap_or_default(),
            held: req.hold,
            stats: stats_json.clone(),
            now,
        },
    )
    .await?;
    let tw = Instant::now();
    pdb::insert_jobs(&mut tx, req.customer_id, plan_id, req.hold, &new_jobs, &files, now).await?;
    tracing::debug!(
        ms = tw.elapsed().as_millis() as u64,
        files = files.file_id.len(),
        "jobs written"
    );
    let actor = match &req.requested_by {
        Some(name) => Actor { kind: "user", id: None, name: Some(name.clone()), ip: None },
        None => Actor::system(),
    };
    let e = audit::entry(
        state.now(),
        Some(CustomerId(req.customer_id)),
        &actor,
        "plan.create",
        Some(("plan", plan_id.to_string())),
        "success",
        serde_json::json!({ "trigger": req.trigger.as_str(), "hosts": host_ids,
                            "ruleset_revision": set.revision, "held": req.hold,
                            "stats": stats_json }),
    );
    audit::record(&mut tx, &e).await?;
    crate::events::publish(
        &mut tx,
        &serde_json::json!({ "type": "plan_created", "customer_id": req.customer_id,
                             "plan_id": plan_id, "trigger": req.trigger.as_str(),
                             "jobs": stats.jobs, "files": stats.files, "bytes": stats.bytes }),
    )
    .await?;
    tx.commit().await.map_err(DbError::from)?;
    let t = req.trigger.as_str();
    metrics::counter!("alto_planner_runs_total", "trigger" => t).increment(1);
    metrics::counter!("alto_planner_files_planned_total").increment(stats.files);
    metrics::counter!("alto_planner_jobs_created_total").increment(stats.jobs);
    metrics::histogram!("alto_planner_run_duration_seconds", "trigger" => t)
        .record(started.elapsed().as_secs_f64());
    tracing::info!(tenant = %req.customer_id, trigger = t, plan = %plan_id, jobs = stats.jobs,
        files = stats.files, bytes = stats.bytes, ms = stats.duration_ms, "planning run");
    Ok(RunOutcome { plan_id, jobs: new_jobs.iter().map(|j| j.id).collect(), stats })
}

/// Queues a planning run (in the caller's transaction).
pub async fn enqueue(tx: &mut Tx, req: &RunRequest, now: DateTime<Utc>) -> Result<(), DbError> {
    let payload = serde_json::to_value(req).unwrap_or_default();
    jobs::enqueue(
        tx,
        Uuid::now_v7(),
        req.customer_id,
        req.host_ids.first().copied().filter(|_| req.host_ids.len() == 1),
        KIND,
        if req.trigger == Trigger::Watermark { 100 } else { 10 },
        &payload,
        now,
    )
    .await
}

/// Claims and runs one queued planning run. Returns false when there was none.
pub async fn step(state: &AppState, worker: &str) -> Result<bool, DbError> {
    let now = state.now();
    let mut tx = state.db.begin(TenantCtx::Platform).await?;
    let Some(job) =
        jobs::claim(&mut tx, &[KIND], worker, chrono::Duration::minutes(10), now).await?
    else {
        return Ok(false);
    };
    tx.commit().await?;
    let ctx = TenantCtx::Tenant(CustomerId(job.customer_id));
    let outcome = match serde_json::from_value::<RunRequest>(job.payload.clone()) {
        Ok(mut req) => {
            req.customer_id = job.customer_id;
            run(state, &req).await
        }
        Err(e) => Err(PlanError::Invalid(format!("bad plan payload: {e}"))),
    };
    let now = state.now();
    let mut tx = state.db.begin(ctx).await?;
    match outcome {
        Ok(o) => {
            jobs::complete(
                &mut tx,
                job.id,
                &serde_json::json!({ "plan_id": o.plan_id, "jobs": o.jobs.len() }),
                now,
            )
            .await?;
        }
        Err(e) => {
            let retry = matches!(&e, PlanError::Db(DbError::Connect(_) | DbError::Other(_)))
                .then(|| now + chrono::Duration::seconds(5 * i64::from(job.attempts.max(1))));
            let st = jobs::fail(&mut tx, job.id, &e.to_string(), retry, now).await?;
            tracing::error!(job = %job.id, error = %e, state = %st, "planning run failed");
        }
    }
    tx.commit().await?;
    Ok(true)
}

/// One scheduler and watermark sweep (singleton across replicas). Returns how many runs it
/// queued.
pub async fn sweep(state: &AppState) -> Result<usize, DbError> {
    let now = state.now();
    let mut tx = state.db.begin(TenantCtx::Platform).await?;
    if !alto_db::try_singleton_lock(&mut tx, SWEEP_LOCK).await? {
        return Ok(0);
    }
    let mut queued = 0;
    for r in rdb::scheduled(&mut tx).await? {
        let Some(expr) = r.schedule.as_deref() else { continue };
        let Ok(cron) = alto_rules::schedule::parse(expr) else { continue };
        if let Some(at) = alto_rules::schedule::due(&cron, r.last_fired_at, r.updated_at, now) {
            let mut req = RunRequest::new(r.customer_id, Trigger::Schedule);
            req.rule_ids = vec![r.id];
            enqueue(&mut tx, &req, now).await?;
            // Record the latest due firing, so a long outage fires once, not once per slot.
            let mut last = at;
            while let Some(n) = alto_rules::schedule::next_after(&cron, last).filter(|n| *n <= now)
            {
                last = n;
            }
            rdb::set_last_fired(&mut tx, r.id, last).await?;
            queued += 1;
        }
    }
    let mut settings_cache: HashMap<Uuid, rdb::Settings> = HashMap::new();
    for h in pdb::hosts_with_volumes(&mut tx).await? {
        let s = match settings_cache.get(&h.customer_id) {
            Some(s) => s.clone(),
            None => {
                let s = rdb::settings(&mut tx, h.customer_id).await?;
                settings_cache.insert(h.customer_id, s.clone());
                s
            }
        };
        let vols: Vec<alto_api_types::Volume> =
            serde_json::from_value(h.volumes.clone()).unwrap_or_default();
        for v in vols {
            if v.total_bytes == 0 {
                continue;
            }
            let used = v.total_bytes.saturating_sub(v.free_bytes) as f64;
            let pct = used * 100.0 / v.total_bytes as f64;
            if pct < s.high_watermark_pct {
                continue;
            }
            if pdb::watermark_plan_pending(
                &mut tx,
                h.id,
                now - chrono::Duration::minutes(WATERMARK_COOLDOWN_MINUTES),
            )
            .await?
            {
                continue;
            }
            let mount = alto_rules::compile::normalize_prefix(&v.mount_point)
                .unwrap_or_else(|_| "/".into());
            let pending = pdb::pending_bytes_under(&mut tx, h.id, &mount).await?;
            let target = s.low_watermark_pct / 100.0 * v.total_bytes as f64;
            let goal = (used - target) as i64 - pending;
            if goal <= 0 {
                continue;
            }
            let mut req = RunRequest::new(h.customer_id, Trigger::Watermark);
            req.host_ids = vec![h.id];
            req.under = Some(mount.clone());
            req.free_goal_bytes = Some(goal);
            enqueue(&mut tx, &req, now).await?;
            tracing::info!(host = %h.id, mount = %mount, used_pct = pct, goal, "high watermark crossed");
            queued += 1;
            break;
        }
    }
    tx.commit().await?;
    Ok(queued)
}

/// The planner worker: runs queued planning runs until none is left; woken by `alto_jobs`
/// notifications, and looks every 2 s.
pub fn worker(state: &AppState) -> Worker<AppState> {
    Worker::with_triggers(
        "planner",
        Mode::Drain,
        Duration::from_secs(2),
        vec![state.jobs_wakeup.clone()],
        |state: AppState, instance: Arc<str>| async move {
            Ok(usize::from(step(&state, &instance).await?))
        },
    )
}

/// The scheduler and watermark sweep worker: one [`sweep`] every `planner.sweep_interval`.
pub fn sweep_worker(state: &AppState) -> Worker<AppState> {
    Worker::new(
        "planner-sweep",
        Mode::Periodic,
        state.config.planner.sweep_interval,
        |state: AppState, _| async move {
            let n = sweep(&state).await?;
            if n > 0 {
                tracing::info!(runs = n, "planner sweep queued runs");
            }
            Ok(n)
        },
    )
}
