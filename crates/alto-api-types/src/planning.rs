//! Rules, previews and explanations, planner settings, plans, tiering jobs, tags and host
//! groups (storage targets: `storage.rs`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

pub use alto_rules::eval::{CheckTrace, Explanation, RuleTrace};
pub use alto_rules::RuleError;
pub use alto_rules::{
    Action, ActionKind, Conditions, OrderBy, PermissionCondition, RuleSpec, Scope as RuleScope,
    StubState, TagCondition,
};

/// A stored rule: its definition plus identity, version and schedule state.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Rule {
    pub id: Uuid,
    pub tenant_id: Uuid,
    /// Increments with every change; plans record the version they used.
    pub version: i32,
    pub spec: RuleSpec,
    pub last_fired_at: Option<DateTime<Utc>>,
    /// Next scheduled run (rules with a schedule).
    pub next_run_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RuleVersion {
    pub version: i32,
    /// `created`, `updated` or `deleted`.
    pub change: String,
    pub spec: RuleSpec,
    pub changed_by: Option<Uuid>,
    pub changed_at: DateTime<Utc>,
}

/// The new order: every live rule id exactly once; priorities become 10, 20, 30, …
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReorderRules {
    pub rule_ids: Vec<Uuid>,
}

/// Result of validating a draft without saving it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RuleValidation {
    pub valid: bool,
    pub errors: Vec<RuleErrorBody>,
}

/// One validation failure (mirrors `alto_rules::RuleError`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RuleErrorBody {
    pub field: String,
    pub message: String,
}

/// What to preview: a draft rule in its place among the current rules, or the current rule
/// set as it stands.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    /// The draft. Omit to preview the whole current rule set.
    #[serde(default)]
    pub draft: Option<RuleSpec>,
    /// The draft replaces this existing rule (an edit) instead of being added.
    #[serde(default)]
    pub rule_id: Option<Uuid>,
    /// Only these hosts (default: every host in scope).
    #[serde(default)]
    pub host_ids: Vec<Uuid>,
    /// Sample size, 0–200 (default 20).
    #[serde(default)]
    pub sample: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CountBytes {
    pub key: String,
    pub files: u64,
    pub bytes: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PreviewFile {
    pub host_id: Uuid,
    pub file_path: String,
    pub file_size: i64,
    pub last_accessed: Option<DateTime<Utc>>,
    pub last_modified: Option<DateTime<Utc>>,
    pub rule_name: String,
    pub target: String,
}

/// What would move, without creating jobs.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Preview {
    pub evaluated_at: DateTime<Utc>,
    pub ruleset_revision: i64,
    pub files: u64,
    pub bytes: i64,
    /// Bytes the stubs would free (each keeps its first 4 KiB).
    pub space_saved: i64,
    pub estimated_seconds: f64,
    /// Keyed by host name.
    pub per_host: Vec<CountBytes>,
    /// Keyed by storage target name.
    pub per_target: Vec<CountBytes>,
    /// Keyed by rule name.
    pub per_rule: Vec<CountBytes>,
    /// Directories holding the most candidate bytes.
    pub top_directories: Vec<CountBytes>,
    /// Candidates by last-access age band.
    pub accessed_age: Vec<CountBytes>,
    pub sample: Vec<PreviewFile>,
}

/// Why one file will or will not move.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExplainResponse {
    pub host_id: Uuid,
    pub file_path: String,
    pub file_id: Uuid,
    pub file_size: i64,
    pub last_accessed: Option<DateTime<Utc>>,
    pub last_modified: Option<DateTime<Utc>>,
    /// A live job that already holds the file.
    pub in_job: Option<Uuid>,
    pub evaluated_at: DateTime<Utc>,
    pub ruleset_revision: i64,
    #[schema(value_type = Object)]
    pub explanation: serde_json::Value,
}

/// Per-tenant planner settings.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlannerSettings {
    /// Files modified less than this many seconds ago are never candidates (default 3600).
    pub safety_window_seconds: i32,
    /// Volume use (percent) at which a watermark run starts (default 90).
    pub high_watermark_pct: f64,
    /// Volume use (percent) a watermark run aims for (default 80).
    pub low_watermark_pct: f64,
    /// Watermark runs: `oldest_access`, `oldest_modify` or `largest` first.
    pub watermark_order: OrderBy,
    pub max_files_per_run: Option<i64>,
    pub max_bytes_per_run: Option<i64>,
    /// Rate limit per host: files planned per rolling hour.
    pub host_max_files_per_hour: Option<i64>,
    pub host_max_bytes_per_hour: Option<i64>,
    /// Link speed for estimates when a host has no observed throughput (default 1 Gbit/s).
    pub link_bytes_per_second: i64,
    /// Fixed cost per file in estimates (default 5 ms).
    pub per_file_overhead_ms: i32,
    /// Plan a host after each of its scans is ingested (default true).
    pub plan_after_ingest: bool,
    /// Retention after recall: a file whose content came back from tier-2 less than this many
    /// days ago is not planned for tiering again (0–3650, default 30; a rule may override it
    /// with `action.retain_after_recall_days`). The planner's explanation says
    /// `recently_recalled`.
    #[serde(default = "default_recall_retention_days")]
    pub recall_retention_days: i32,
    /// The tenant's tiering bandwidth (bytes per second, shared by its running tier jobs:
    /// each gets an equal share when it starts; within each host's own limit). None: no limit.
    #[serde(default)]
    pub tier_bandwidth_limit_bytes_per_second: Option<i64>,
    /// The same for recall jobs (on-access recalls are never throttled).
    #[serde(default)]
    pub recall_bandwidth_limit_bytes_per_second: Option<i64>,
    /// Read-only: bumped by every rule change.
    #[serde(default)]
    pub ruleset_revision: i64,
}

fn default_recall_retention_days() -> i32 {
    30
}

/// Start a planning run now.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunPlan {
    /// Only these hosts (default: every host).
    #[serde(default)]
    pub host_ids: Vec<Uuid>,
    /// Only candidates of these rules (default: every rule without a schedule).
    #[serde(default)]
    pub rule_ids: Vec<Uuid>,
    /// Caps for this run (default: the tenant's settings).
    #[serde(default)]
    pub max_files: Option<i64>,
    #[serde(default)]
    pub max_bytes: Option<i64>,
    /// Create the jobs `planned` (held) instead of `queued`; release them later.
    #[serde(default)]
    pub hold: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RuleVersionRef {
    pub rule_id: Uuid,
    pub name: String,
    pub version: i32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct PlanStats {
    /// Rows the database selected.
    pub selected: u64,
    /// Of those, confirmed by the reference evaluator.
    pub confirmed: u64,
    /// Selected rows the evaluator disagreed with (dropped; should always be 0).
    pub mismatches: u64,
    pub files: u64,
    pub bytes: i64,
    pub space_saved: i64,
    pub estimated_seconds: f64,
    pub jobs: u64,
    /// Candidates left for later because a cap, a host rate limit or the goal was reached.
    pub deferred_files: u64,
    pub deferred_bytes: i64,
    pub stopped_by: Vec<String>,
    pub duration_ms: u64,
    /// Time in the database's candidate selection.
    #[serde(default)]
    pub select_ms: u64,
    /// Time confirming candidates with the reference evaluator.
    #[serde(default)]
    pub confirm_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Plan {
    pub id: Uuid,
    pub tenant_id: Uuid,
    /// `ingest`, `schedule`, `manual` or `watermark`.
    pub trigger: String,
    pub requested_by: Option<String>,
    pub host_ids: Vec<Uuid>,
    pub rule_id: Option<Uuid>,
    pub ruleset_revision: i64,
    pub rule_versions: Vec<RuleVersionRef>,
    pub held: bool,
    pub stats: PlanStats,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobEstimates {
    pub space_saved_bytes: i64,
    pub duration_seconds: f64,
    pub bandwidth_bytes_per_second: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Job {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub host_id: Option<Uuid>,
    /// `tier`, `plan` or `ingest`.
    pub kind: String,
    /// `planned`, `queued`, `dispatched`, `running`, `succeeded`, `failed` or `cancelled`.
    pub state: String,
    pub priority: i32,
    pub plan_id: Option<Uuid>,
    pub rule_id: Option<Uuid>,
    pub rule_version: Option<i32>,
    pub target: Option<String>,
    pub file_count: i32,
    pub total_bytes: i64,
    pub estimates: Option<JobEstimates>,
    pub attempts: i32,
    pub max_attempts: i32,
    pub last_error: Option<String>,
    pub cancel_requested_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub dispatched_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Per-state file counts (single-job responses only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub file_states: Vec<CountBytes>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobFile {
    pub seq: i32,
    pub file_id: Uuid,
    pub file_path: String,
    pub path_escaped: bool,
    pub file_size: i64,
    pub last_modified: Option<DateTime<Utc>>,
    pub inode: Option<i64>,
    pub file_hash: Option<String>,
    /// `pending`, `succeeded`, `failed`, `skipped` or `cancelled`.
    pub state: String,
    pub attempts: i32,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PathTagEntry {
    pub id: Uuid,
    /// Absent: on every host.
    pub host_id: Option<Uuid>,
    pub path: String,
    pub key: String,
    pub value: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTag {
    #[serde(default)]
    pub host_id: Option<Uuid>,
    /// An absolute file or directory path; a directory's tags apply to everything below it.
    pub path: String,
    pub key: String,
    #[serde(default)]
    pub value: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetHostGroups {
    pub groups: Vec<String>,
}

// --- Execution (agents) and the stub registry ------------------------------------------------

/// An agent's report of one recall (`POST /agent/recalled`): a stub came back, or could not.
/// Older agents send only `path`, `path_escaped` and `sha256` (an explicit, successful recall).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Recalled {
    pub path: String,
    #[serde(default)]
    pub path_escaped: bool,
    /// SHA-256 of the content the stub stands for (the stub attribute's).
    pub sha256: String,
    /// What started the recall.
    #[serde(default)]
    pub trigger: RecallTrigger,
    /// Whether the content came back.
    #[serde(default)]
    pub outcome: RecallOutcome,
    /// For a failed or denied recall: why, in one line (never remote response bodies).
    #[serde(default)]
    pub error: Option<String>,
    /// Who caused an on-access recall (absent for explicit and job recalls).
    #[serde(default)]
    pub process: Option<RecallProcess>,
    /// Bytes brought back (the file's size on success, 0 otherwise).
    #[serde(default)]
    pub bytes: u64,
    /// Time from the access (or the start of the recall) to the answer, in milliseconds.
    #[serde(default)]
    pub duration_ms: Option<u64>,
}

/// What started a recall. Also its priority: on-access before manual before scheduled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecallTrigger {
    /// A program opened and read (wrote, mapped, truncated) a stub.
    OnAccess,
    /// `alto-agent recall PATH` on the host.
    #[default]
    Explicit,
    /// A recall job (API, `altoctl recall`, a scheduled restoration rule).
    Job,
}

impl RecallTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            RecallTrigger::OnAccess => "on_access",
            RecallTrigger::Explicit => "explicit",
            RecallTrigger::Job => "job",
        }
    }
}

/// Whether a recall brought the content back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecallOutcome {
    /// The content is back, verified; the file is whole and no longer a stub.
    #[default]
    Recalled,
    /// The content could not be brought back (tier-2 down, object missing, hash wrong); the
    /// reader got an error, never zeros, and the file is still a stub.
    Failed,
    /// A policy refused the recall (a denied program, a rate limit); the reader got an error.
    Denied,
    /// The stub had been truncated or replaced (`open(O_TRUNC)` raises no event): the file is
    /// an ordinary file now and the registry entry is released (the object is kept for the
    /// retention window, then collected).
    Replaced,
}

impl RecallOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RecallOutcome::Recalled => "recalled",
            RecallOutcome::Failed => "failed",
            RecallOutcome::Denied => "denied",
            RecallOutcome::Replaced => "replaced",
        }
    }
}

/// The process behind an on-access recall.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecallProcess {
    pub pid: i32,
    /// Executable path (`/proc/<pid>/exe`), when it could be read.
    #[serde(default)]
    pub exe: Option<String>,
    /// Real user id of the process.
    #[serde(default)]
    pub uid: Option<u32>,
    /// The user name for `uid` from the host's name service.
    #[serde(default)]
    pub user: Option<String>,
}

/// The server's answer to a recall report: what the stub registry recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RecallRecorded {
    /// Whether the registry changed. `false` for a resend of a report already recorded
    /// (`duplicate`), for a path the registry holds no entry of with this SHA-256 (nothing
    /// to record; the report is still audited and counted), and for failed or denied
    /// recalls of an entry that was already `stubbed`.
    pub recorded: bool,
    /// The report repeats one already recorded (nothing was audited or counted again).
    #[serde(default)]
    pub duplicate: bool,
    /// The registry entry the report is about, if the registry knows the file.
    #[serde(default)]
    pub stub_id: Option<Uuid>,
    /// The entry's state before the report.
    #[serde(default)]
    pub previous_state: Option<String>,
    /// The entry's state now (`rehydrated`, `replaced`, `stubbed`, …); absent for an unknown
    /// path.
    #[serde(default)]
    pub state: Option<String>,
    /// `replaced`: the object is kept in tier-2 until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain_until: Option<DateTime<Utc>>,
}

/// One stub-registry entry.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Stub {
    pub id: Uuid,
    pub host_id: Uuid,
    pub file_id: Option<Uuid>,
    pub file_path: String,
    pub path_escaped: bool,
    pub file_size: i64,
    pub sha256: String,
    pub object_key: String,
    pub tiered_location: String,
    pub target: Option<String>,
    pub stored_size: Option<i64>,
    /// `pending`, `stubbed`, `rehydrated`, `orphaned`, `failed` or `replaced` (the stub was
    /// truncated or overwritten; its object is kept until `retain_until`).
    pub state: String,
    pub job_id: Option<Uuid>,
    pub tiered_at: Option<DateTime<Utc>>,
    pub rehydrated_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// `replaced` entries: tier-2 reconciliation keeps the object until then, and collects it
    /// after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain_until: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HostStubSummary {
    pub host_id: Uuid,
    pub stubs: i64,
    /// Original bytes of the stubbed files.
    pub bytes: i64,
    /// Bytes freed on the host (each stub keeps its first 4 KiB).
    pub space_saved: i64,
    /// Bytes the objects take in tier-2.
    pub stored_bytes: i64,
    pub pending: i64,
    pub failed: i64,
    pub rehydrated: i64,
    /// Stubs truncated or overwritten (their objects are kept for the retention window).
    #[serde(default)]
    pub replaced: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StubSummary {
    pub stubs: i64,
    pub bytes: i64,
    pub space_saved: i64,
    pub stored_bytes: i64,
    pub per_host: Vec<HostStubSummary>,
}

/// Tier-2 references an agent found, to learn which the registry still holds.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckRefs {
    pub refs: Vec<RefToCheck>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefToCheck {
    pub path: String,
    #[serde(default)]
    pub path_escaped: bool,
    pub sha256: String,
}

/// Per reference, in order: `live` (a pending or stubbed registry entry holds it) or
/// `unknown` (nothing does: the object may be removed by reconciliation).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CheckedRefs {
    pub states: Vec<String>,
}
