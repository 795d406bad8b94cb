//! Candidate selection compiled from rules, and the plan/job writes.
//!
//! [`condition_sql`] turns one [`CompiledRule`] into a boolean SQL expression over
//! `file_inventory f` with every value bound as a parameter (patterns arrive as the
//! PostgreSQL rendering `alto-rules` produced from the same parse as the Rust matcher).
//! [`select_candidates`] puts the host's rules into one `CASE` (first match wins) and
//! prefilters with the eligible rules' conditions, so the database does the filtering and
//! the indexes on `file_inventory` apply; the planner then confirms each row with
//! `alto_rules::decide`.

use alto_rules::compile::cutoff;
use alto_rules::pattern::Shape;
use alto_rules::{CompiledRule, PathTag, StubState};
use chrono::{DateTime, Utc};
use sqlx::postgres::PgArguments;
use sqlx::Arguments as _;
use uuid::Uuid;

use crate::{Cursor, DbError, Tx};

/// Bound parameters of a statement being built.
#[derive(Default)]
pub struct Args {
    args: PgArguments,
    n: usize,
}

impl Args {
    /// Binds `v` and returns its placeholder (`$n`).
    pub fn push<T>(&mut self, v: T) -> String
    where
        T: for<'q> sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + 'static,
    {
        // Encoding into the argument buffer only fails for values too large for the
        // protocol, which validation has ruled out.
        if let Err(e) = self.args.add(v) {
            tracing::error!(error = %e, "binding a planner parameter failed");
        }
        self.n += 1;
        format!("${}", self.n)
    }
}

/// Escapes `LIKE` wildcards (the default escape character is `\\`).
fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Most tag paths a tag condition is expanded into before it falls back to a subquery.
const MAX_INLINE_TAG_PATHS: usize = 64;

/// `f.file_path` is `dir` or below it.
fn under_sql(dir: &str, a: &mut Args) -> String {
    if dir == "/" {
        "starts_with(f.file_path, '/')".to_owned()
    } else {
        let exact = a.push(dir.to_owned());
        let below = a.push(format!("{dir}/"));
        format!("(f.file_path = {exact} OR starts_with(f.file_path, {below}))")
    }
}

/// The SQL condition of one rule (scope path prefixes and conditions; host scope is
/// resolved by the caller). `tags` are the tags that apply on the host being planned (its
/// own and every-host tags, paths normalised): a tag condition becomes path tests against
/// the tagged paths, so no subquery runs per row.
pub fn condition_sql(
    r: &CompiledRule,
    now: DateTime<Utc>,
    tags: Option<&[PathTag]>,
    a: &mut Args,
) -> String {
    let c = r.conditions();
    let mut terms: Vec<String> = Vec::new();
    if !r.prefixes.is_empty() {
        let parts: Vec<String> = r.prefixes.iter().map(|p| under_sql(p, a)).collect();
        terms.push(format!("({})", parts.join(" OR ")));
    }
    if !r.globs.is_empty() {
        // Globs with a plain prefix, suffix or whole path become string tests; the rest are
        // one regular expression per rule (which keeps a statement within PostgreSQL's regex
        // cache).
        let mut parts: Vec<String> = Vec::new();
        let mut regexes: Vec<String> = Vec::new();
        for g in &r.globs {
            match g.shape() {
                Shape::Prefix(x) => {
                    parts.push(format!("starts_with(f.file_path, {})", a.push(x.clone())))
                }
                Shape::Suffix(x) => {
                    let like = format!("%{}", like_escape(x));
                    parts.push(format!("f.file_path LIKE {}", a.push(like)));
                }
                Shape::Exact(x) => parts.push(format!("f.file_path = {}", a.push(x.clone()))),
                Shape::Regex => regexes.push(format!("(?:{})", g.sql())),
            }
        }
        if !regexes.is_empty() {
            parts.push(format!("f.file_path ~ {}", a.push(regexes.join("|"))));
        }
        terms.push(format!("({})", parts.join(" OR ")));
    }
    if let Some(re) = &r.regex {
        let p = a.push(re.sql().to_owned());
        terms.push(format!("f.file_path ~ {p}"));
    }
    for (col, older, days) in [
        ("last_accessed", true, c.accessed_older_than_days),
        ("last_accessed", false, c.accessed_newer_than_days),
        ("last_modified", true, c.modified_older_than_days),
        ("last_modified", false, c.modified_newer_than_days),
    ] {
        if let Some(d) = days {
            let p = a.push(cutoff(now, d));
            let op = if older { "<" } else { ">=" };
            terms.push(format!("coalesce(f.{col} {op} {p}, false)"));
        }
    }
    if let Some(min) = c.min_size_bytes {
        terms.push(format!("f.file_size >= {}", a.push(min)));
    }
    if let Some(max) = c.max_size_bytes {
        terms.push(format!("f.file_size <= {}", a.push(max)));
    }
    if !r.extensions.is_empty() {
        let p = a.push(r.extensions.clone());
        terms.push(format!("coalesce(f.file_extension, '') = ANY({p}::text[])"));
    }
    if !r.exclude_extensions.is_empty() {
        let p = a.push(r.exclude_extensions.clone());
        terms.push(format!("NOT (coalesce(f.file_extension, '') = ANY({p}::text[]))"));
    }
    if !c.owners.is_empty() {
        let p = a.push(c.owners.clone());
        terms.push(format!("coalesce(f.owner = ANY({p}::text[]), false)"));
    }
    if let Some(all) = r.perm_all {
        let p = a.push(all);
        terms.push(format!("coalesce((f.mode & {p}::bigint) = {p}::bigint, false)"));
    }
    if let Some(none) = r.perm_none {
        let p = a.push(none);
        terms.push(format!("coalesce((f.mode & {p}::bigint) = 0, false)"));
    }
    for t in &c.tags {
        if let Some(tags) = tags {
            let mut paths: Vec<&str> = tags
                .iter()
                .filter(|x| x.key == t.key && t.value.as_ref().is_none_or(|v| *v == x.value))
                .map(|x| x.path.as_str())
                .collect();
            paths.sort_unstable();
            paths.dedup();
            if paths.len() <= MAX_INLINE_TAG_PATHS {
                if paths.is_empty() {
                    terms.push("false".into());
                } else {
                    let parts: Vec<String> = paths.iter().map(|p| under_sql(p, a)).collect();
                    terms.push(format!("({})", parts.join(" OR ")));
                }
                continue;
            }
        }
        let k = a.push(t.key.clone());
        let v = match &t.value {
            Some(v) => format!(" AND t.value = {}", a.push(v.clone())),
            None => String::new(),
        };
        terms.push(format!(
            "EXISTS (SELECT 1 FROM path_tags t
                      WHERE t.customer_id = f.customer_id
                        AND (t.host_id IS NULL OR t.host_id = f.host_id)
                        AND t.key = {k}{v}
                        AND (t.path = f.file_path OR starts_with(f.file_path,
                             CASE WHEN t.path = '/' THEN '/' ELSE t.path || '/' END)))"
        ));
    }
    match c.stub_state {
        Some(StubState::Stubbed) => terms.push("(f.is_stubbed OR f.scan_is_stub)".into()),
        Some(StubState::NotStubbed) => terms.push("NOT (f.is_stubbed OR f.scan_is_stub)".into()),
        None => {}
    }
    if terms.is_empty() {
        "true".into()
    } else {
        format!("({})", terms.join(" AND "))
    }
}

/// What to select.
#[derive(Debug, Clone)]
pub struct Selection<'a> {
    pub customer_id: Uuid,
    pub host_id: Uuid,
    /// The host's enabled, in-scope rules in priority order.
    pub rules: &'a [CompiledRule],
    /// Indexes into `rules` whose candidates are wanted (tier rules).
    pub eligible: &'a [usize],
    pub now: DateTime<Utc>,
    /// Files modified at or after this are too recent.
    pub safety_cutoff: DateTime<Utc>,
    /// The tenant's retention after recall (days); each rule's own
    /// `action.retain_after_recall_days` overrides it.
    pub recall_retention_days: u32,
    /// Only files at or below this directory.
    pub under: Option<String>,
    /// Leave out files already in a live job.
    pub skip_in_jobs: bool,
    /// Tags that apply on this host (paths normalised), to inline tag conditions; `None`
    /// evaluates them with a subquery on `path_tags`.
    pub tags: Option<&'a [PathTag]>,
}

/// A candidate row with everything the evaluator and the job need.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CandRow {
    pub id: Uuid,
    pub file_path: String,
    pub path_escaped: bool,
    pub file_size: i64,
    pub last_modified: Option<DateTime<Utc>>,
    pub last_accessed: Option<DateTime<Utc>>,
    pub file_extension: String,
    pub owner: Option<String>,
    pub mode: Option<i64>,
    pub stubbed: bool,
    pub deleted: bool,
    pub inode: Option<i64>,
    pub file_hash: Option<String>,
    /// When the file's content last came back from tier-2.
    pub recalled_at: Option<DateTime<Utc>>,
    /// Index into `Selection::rules` of the first matching rule (-1: none).
    pub rule_idx: i32,
}

const FACT_COLS: &str = "f.id, f.file_path, f.path_escaped, f.file_size, f.last_modified,
    f.last_accessed, coalesce(f.file_extension, '') AS file_extension, f.owner, f.mode,
    (f.is_stubbed OR f.scan_is_stub) AS stubbed, f.deleted_at IS NOT NULL AS deleted, f.inode,
    f.file_hash, f.recalled_at";

/// Files of one host whose first matching rule is eligible and that pass the candidate
/// gates (live, not stubbed, older than the safety window, not recalled within the deciding
/// rule's retention after recall, not in a live job).
pub async fn select_candidates(tx: &mut Tx, s: &Selection<'_>) -> Result<Vec<CandRow>, DbError> {
    let Some((sql, a)) = candidate_sql(s) else {
        return Ok(Vec::new());
    };
    Ok(sqlx::query_as_with::<_, CandRow, _>(&sql, a.args).fetch_all(&mut **tx).await?)
}

/// Session settings for planner statements: JIT compilation costs more than it saves on
/// these one-pass scans (measured: ~0.5 s of a 1.2 s query).
pub async fn tune(tx: &mut Tx) -> Result<(), DbError> {
    sqlx::query("SET LOCAL jit = off").execute(&mut **tx).await?;
    Ok(())
}

/// `EXPLAIN (ANALYZE, BUFFERS)` of the candidate query, for benchmarks and diagnosis.
pub async fn explain_candidates(tx: &mut Tx, s: &Selection<'_>) -> Result<String, DbError> {
    let Some((sql, a)) = candidate_sql(s) else {
        return Ok(String::new());
    };
    let lines: Vec<String> =
        sqlx::query_scalar_with(&format!("EXPLAIN (ANALYZE, BUFFERS) {sql}"), a.args)
            .fetch_all(&mut **tx)
            .await?;
    Ok(lines.join("\n"))
}

/// The candidate query and its parameters; `None` when no rule is eligible.
pub fn candidate_sql(s: &Selection<'_>) -> Option<(String, Args)> {
    let &last = s.eligible.iter().max()?;
    let mut a = Args::default();
    let cust = a.push(s.customer_id);
    let host = a.push(s.host_id);
    let safety = a.push(s.safety_cutoff);
    let conds: Vec<String> =
        s.rules[..=last].iter().map(|r| condition_sql(r, s.now, s.tags, &mut a)).collect();
    let case = conds
        .iter()
        .enumerate()
        .map(|(i, c)| format!("WHEN {c} THEN {i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let prefilter = s.eligible.iter().map(|&i| conds[i].as_str()).collect::<Vec<_>>().join(" OR ");
    let eligible: Vec<i32> = s.eligible.iter().map(|&i| i as i32).collect();
    let elig = a.push(eligible);
    let under = match &s.under {
        Some(d) => format!(" AND {}", under_sql(d, &mut a)),
        None => String::new(),
    };
    // Retention after recall depends on the deciding rule: one cutoff per rule, looked up by
    // the row's rule index (the column is on the row already read: no join, no index).
    let recall_cutoffs: Vec<DateTime<Utc>> = s.rules[..=last]
        .iter()
        .map(|r| cutoff(s.now, r.retain_after_recall_days(s.recall_retention_days)))
        .collect();
    let recall = a.push(recall_cutoffs);
    let in_jobs = if s.skip_in_jobs {
        " AND NOT EXISTS (SELECT 1 FROM job_files j WHERE j.file_id = s.id AND j.state = 'pending')"
    } else {
        ""
    };
    let sql = format!(
        "SELECT * FROM (
           SELECT {FACT_COLS}, CASE {case} ELSE -1 END AS rule_idx
             FROM file_inventory f
            WHERE f.customer_id = {cust} AND f.host_id = {host} AND f.deleted_at IS NULL
              AND NOT f.is_stubbed AND NOT f.scan_is_stub AND f.last_modified < {safety}
              {under} AND ({prefilter})
           OFFSET 0) s
          WHERE s.rule_idx = ANY({elig}::int[])
            AND (s.recalled_at IS NULL OR s.recalled_at <= ({recall}::timestamptz[])[s.rule_idx + 1]){in_jobs}"
    );
    Some((sql, a))
}

/// Every inventory row of a host (including deleted ones), for explanations and tests.
pub async fn host_files(tx: &mut Tx, host_id: Uuid) -> Result<Vec<CandRow>, DbError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {FACT_COLS}, -1 AS rule_idx FROM file_inventory f WHERE f.host_id = $1"
    ))
    .bind(host_id)
    .fetch_all(&mut **tx)
    .await?)
}

/// One file by host and path (the path as stored, escaped form for non-UTF-8 names).
pub async fn file_by_path(
    tx: &mut Tx,
    host_id: Uuid,
    path: &str,
) -> Result<Option<CandRow>, DbError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {FACT_COLS}, -1 AS rule_idx FROM file_inventory f
          WHERE f.host_id = $1 AND f.file_path = $2
          ORDER BY f.deleted_at IS NOT NULL, f.path_escaped LIMIT 1"
    ))
    .bind(host_id)
    .bind(path)
    .fetch_optional(&mut **tx)
    .await?)
}

/// Whether the file is in a live (pending) job, and which.
pub async fn live_job_of(tx: &mut Tx, file_id: Uuid) -> Result<Option<Uuid>, DbError> {
    Ok(sqlx::query_scalar(
        "SELECT job_id FROM job_files WHERE file_id = $1 AND state = 'pending' LIMIT 1",
    )
    .bind(file_id)
    .fetch_optional(&mut **tx)
    .await?)
}

/// Checks that PostgreSQL compiles a regular expression (defence in depth after the Rust
/// validation); returns its error message if not.
pub async fn check_regex(tx: &mut Tx, re: &str) -> Result<Option<String>, DbError> {
    sqlx::query("SAVEPOINT regex_check").execute(&mut **tx).await?;
    let r = sqlx::query("SELECT '' ~ $1").bind(re).execute(&mut **tx).await;
    match r {
        Ok(_) => {
            sqlx::query("RELEASE SAVEPOINT regex_check").execute(&mut **tx).await?;
            Ok(None)
        }
        Err(sqlx::Error::Database(e)) => {
            sqlx::query("ROLLBACK TO SAVEPOINT regex_check").execute(&mut **tx).await?;
            Ok(Some(e.message().to_owned()))
        }
        Err(e) => Err(e.into()),
    }
}

// --- Hosts as the planner sees them ----------------------------------------------------------

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PlanHost {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub name: String,
    pub status: String,
    pub groups: Vec<String>,
    pub volumes: serde_json::Value,
    pub observed_bytes_per_second: Option<i64>,
    pub bandwidth_limit_bytes_per_second: Option<i64>,
}

pub async fn plan_hosts(tx: &mut Tx, customer_id: Uuid) -> Result<Vec<PlanHost>, DbError> {
    Ok(sqlx::query_as(
        "SELECT id, customer_id, name, status, groups, volumes, observed_bytes_per_second,
                bandwidth_limit_bytes_per_second
           FROM hosts WHERE customer_id = $1 AND status <> 'decommissioned' ORDER BY name",
    )
    .bind(customer_id)
    .fetch_all(&mut **tx)
    .await?)
}

/// Hosts of every active tenant with volume data (the watermark sweep; platform scope).
pub async fn hosts_with_volumes(tx: &mut Tx) -> Result<Vec<PlanHost>, DbError> {
    Ok(sqlx::query_as(
        "SELECT h.id, h.customer_id, h.name, h.status, h.groups, h.volumes,
                h.observed_bytes_per_second, h.bandwidth_limit_bytes_per_second
           FROM hosts h JOIN customers c ON c.id = h.customer_id
          WHERE h.status = 'online' AND c.status = 'active' AND jsonb_array_length(h.volumes) > 0",
    )
    .fetch_all(&mut **tx)
    .await?)
}

pub async fn set_host_groups(
    tx: &mut Tx,
    host_id: Uuid,
    groups: &[String],
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    let n = sqlx::query("UPDATE hosts SET groups = $2, updated_at = $3 WHERE id = $1")
        .bind(host_id)
        .bind(groups)
        .bind(now)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    if n == 0 {
        return Err(DbError::NotFound("host"));
    }
    Ok(())
}

/// Serialises planning of one host across replicas (transaction-scoped).
pub async fn lock_host(tx: &mut Tx, host_id: Uuid) -> Result<(), DbError> {
    sqlx::query("SELECT pg_advisory_xact_lock(73010011, hashtext($1::text))")
        .bind(host_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Files and bytes planned for a host since `since` (its rate-limit usage).
pub async fn host_usage_since(
    tx: &mut Tx,
    host_id: Uuid,
    since: DateTime<Utc>,
) -> Result<(i64, i64), DbError> {
    Ok(sqlx::query_as(
        "SELECT least(coalesce(sum(file_count), 0), 9223372036854775807)::bigint, least(coalesce(sum(total_bytes), 0), 9223372036854775807)::bigint
           FROM jobs WHERE host_id = $1 AND kind = 'tier' AND created_at >= $2
            AND state <> 'cancelled'",
    )
    .bind(host_id)
    .bind(since)
    .fetch_one(&mut **tx)
    .await?)
}

/// Bytes of files still pending in live jobs of a host at or below `dir`.
pub async fn pending_bytes_under(tx: &mut Tx, host_id: Uuid, dir: &str) -> Result<i64, DbError> {
    let below = if dir == "/" { "/".to_owned() } else { format!("{dir}/") };
    Ok(sqlx::query_scalar(
        "SELECT least(coalesce(sum(jf.file_size), 0), 9223372036854775807)::bigint FROM job_files jf
           JOIN jobs j ON j.id = jf.job_id
           JOIN file_inventory f ON f.id = jf.file_id
          WHERE j.host_id = $1 AND jf.state = 'pending'
            AND (f.file_path = $2 OR starts_with(f.file_path, $3))",
    )
    .bind(host_id)
    .bind(dir)
    .bind(below)
    .fetch_one(&mut **tx)
    .await?)
}

/// Whether a watermark run for the host is queued or running, or one was made since `since`
/// (the cool-down that keeps a volume with nothing left to tier from re-triggering).
pub async fn watermark_plan_pending(
    tx: &mut Tx,
    host_id: Uuid,
    since: DateTime<Utc>,
) -> Result<bool, DbError> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM jobs WHERE host_id = $1 AND kind = 'plan'
                          AND state IN ('queued', 'running')
                          AND payload->>'trigger' = 'watermark')
             OR EXISTS (SELECT 1 FROM plans WHERE trigger = 'watermark' AND $1 = ANY(host_ids)
                          AND created_at >= $2)",
    )
    .bind(host_id)
    .bind(since)
    .fetch_one(&mut **tx)
    .await?)
}

// --- Plans and jobs ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct NewPlan {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub trigger: String,
    pub requested_by: Option<String>,
    pub host_ids: Vec<Uuid>,
    pub rule_id: Option<Uuid>,
    pub ruleset_revision: i64,
    pub rule_versions: serde_json::Value,
    pub held: bool,
    pub stats: serde_json::Value,
    pub now: DateTime<Utc>,
}

pub async fn insert_plan(tx: &mut Tx, p: &NewPlan) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO plans (id, customer_id, trigger, requested_by, host_ids, rule_id,
                            ruleset_revision, rule_versions, held, stats, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(p.id)
    .bind(p.customer_id)
    .bind(&p.trigger)
    .bind(&p.requested_by)
    .bind(&p.host_ids)
    .bind(p.rule_id)
    .bind(p.ruleset_revision)
    .bind(&p.rule_versions)
    .bind(p.held)
    .bind(&p.stats)
    .bind(p.now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PlanRow {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub trigger: String,
    pub requested_by: Option<String>,
    pub host_ids: Vec<Uuid>,
    pub rule_id: Option<Uuid>,
    pub ruleset_revision: i64,
    pub rule_versions: serde_json::Value,
    pub held: bool,
    pub stats: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

const PLAN_COLS: &str = "id, customer_id, trigger, requested_by, host_ids, rule_id,
    ruleset_revision, rule_versions, held, stats, created_at";

pub async fn get_plan(tx: &mut Tx, id: Uuid) -> Result<PlanRow, DbError> {
    sqlx::query_as(&format!("SELECT {PLAN_COLS} FROM plans WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(DbError::NotFound("plan"))
}

pub async fn list_plans(
    tx: &mut Tx,
    customer_id: Uuid,
    limit: i64,
    before: Option<Cursor>,
) -> Result<Vec<PlanRow>, DbError> {
    let (bt, bi) = Cursor::binds(before);
    Ok(sqlx::query_as(&format!(
        "SELECT {PLAN_COLS} FROM plans WHERE customer_id = $1
            AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
          ORDER BY created_at DESC, id DESC LIMIT $4"
    ))
    .bind(customer_id)
    .bind(bt)
    .bind(bi)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?)
}

/// A tiering job to insert.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: Uuid,
    pub host_id: Uuid,
    pub rule_id: Uuid,
    pub rule_version: i32,
    pub target_name: String,
    pub priority: i32,
    pub payload: serde_json::Value,
    pub file_count: i32,
    pub total_bytes: i64,
    pub estimates: serde_json::Value,
}

/// Column arrays of job files to insert (one set-based statement).
#[derive(Debug, Clone, Default)]
pub struct NewJobFiles {
    pub job_id: Vec<Uuid>,
    pub seq: Vec<i32>,
    pub file_id: Vec<Uuid>,
    pub size: Vec<i64>,
    pub mtime: Vec<Option<DateTime<Utc>>>,
    pub inode: Vec<Option<i64>>,
    pub hash: Vec<Option<String>>,
}

/// Inserts jobs (state `queued`, or `planned` when held) and their files, and wakes the
/// workers when `tx` commits.
pub async fn insert_jobs(
    tx: &mut Tx,
    customer_id: Uuid,
    plan_id: Uuid,
    held: bool,
    jobs: &[NewJob],
    files: &NewJobFiles,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    if jobs.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = jobs.iter().map(|j| j.id).collect();
    let hosts: Vec<Uuid> = jobs.iter().map(|j| j.host_id).collect();
    let rules: Vec<Uuid> = jobs.iter().map(|j| j.rule_id).collect();
    let versions: Vec<i32> = jobs.iter().map(|j| j.rule_version).collect();
    let targets: Vec<String> = jobs.iter().map(|j| j.target_name.clone()).collect();
    let prio: Vec<i32> = jobs.iter().map(|j| j.priority).collect();
    let payloads: Vec<serde_json::Value> = jobs.iter().map(|j| j.payload.clone()).collect();
    let counts: Vec<i32> = jobs.iter().map(|j| j.file_count).collect();
    let bytes: Vec<i64> = jobs.iter().map(|j| j.total_bytes).collect();
    let est: Vec<serde_json::Value> = jobs.iter().map(|j| j.estimates.clone()).collect();
    sqlx::query(
        "INSERT INTO jobs (id, customer_id, host_id, kind, state, priority, payload, run_after,
                           created_at, updated_at, plan_id, rule_id, rule_version, target_name,
                           file_count, total_bytes, estimates)
         SELECT u.id, $1, u.host, 'tier', $2, u.prio, u.payload, $3, $3, $3, $4, u.rule,
                u.version, u.target, u.n, u.bytes, u.est
           FROM unnest($5::uuid[], $6::uuid[], $7::uuid[], $8::int[], $9::text[], $10::int[],
                       $11::jsonb[], $12::int[], $13::bigint[], $14::jsonb[])
                AS u(id, host, rule, version, target, prio, payload, n, bytes, est)",
    )
    .bind(customer_id)
    .bind(if held { "planned" } else { "queued" })
    .bind(now)
    .bind(plan_id)
    .bind(&ids)
    .bind(&hosts)
    .bind(&rules)
    .bind(&versions)
    .bind(&targets)
    .bind(&prio)
    .bind(&payloads)
    .bind(&counts)
    .bind(&bytes)
    .bind(&est)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO job_files (job_id, customer_id, seq, file_id, file_size, last_modified,
                                inode, file_hash)
         SELECT u.job, $1, u.seq, u.file, u.size, u.mtime, u.inode, u.hash
           FROM unnest($2::uuid[], $3::int[], $4::uuid[], $5::bigint[], $6::timestamptz[],
                       $7::bigint[], $8::text[])
                AS u(job, seq, file, size, mtime, inode, hash)",
    )
    .bind(customer_id)
    .bind(&files.job_id)
    .bind(&files.seq)
    .bind(&files.file_id)
    .bind(&files.size)
    .bind(&files.mtime)
    .bind(&files.inode)
    .bind(&files.hash)
    .execute(&mut **tx)
    .await?;
    if !held {
        crate::notify(tx, crate::jobs::CHANNEL, "tier").await?;
    }
    Ok(())
}

/// Queues a held plan's planned jobs; returns how many.
pub async fn release_plan(tx: &mut Tx, plan_id: Uuid, now: DateTime<Utc>) -> Result<u64, DbError> {
    let n = sqlx::query(
        "UPDATE jobs SET state = 'queued', run_after = $2, updated_at = $2
          WHERE plan_id = $1 AND state = 'planned'",
    )
    .bind(plan_id)
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    sqlx::query("UPDATE plans SET held = false WHERE id = $1")
        .bind(plan_id)
        .execute(&mut **tx)
        .await?;
    if n > 0 {
        crate::notify(tx, crate::jobs::CHANNEL, "tier").await?;
    }
    Ok(n)
}
