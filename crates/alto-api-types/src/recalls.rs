//! Recall as a managed operation: an operator's request to bring stubs back (a file, a
//! directory tree, or the stubs a rule tiered), and scheduled restoration rules.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// `POST /api/v1/tenants/{tenant_id}/recalls`: which stubs of one host to bring back. A
/// stub is selected when its path is one of `paths` or lies under one of them (a directory
/// tree), and — with `rule_id` — it was tiered by that rule. The host's agent recalls them
/// as recall jobs (≤ 1,000 files each) ahead of every tiering job.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRecall {
    pub host_id: Uuid,
    /// Absolute paths as the inventory spells them: files, or directories whose whole tree
    /// is recalled. 1 to 100 paths.
    pub paths: Vec<String>,
    /// Only stubs tiered by this rule.
    #[serde(default)]
    pub rule_id: Option<Uuid>,
    /// Refuse (`validation_failed`, nothing queued) rather than recall more than this many files (default
    /// and maximum 1,000,000).
    #[serde(default)]
    pub max_files: Option<i64>,
    /// Only count what would be recalled; queue nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// What a recall request queued (or, for a dry run, would queue).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RecallCreated {
    pub request_id: Uuid,
    pub host_id: Uuid,
    pub files: i64,
    pub bytes: i64,
    /// The recall jobs queued (empty for a dry run or when nothing matched).
    pub jobs: Vec<Uuid>,
    pub dry_run: bool,
}

/// A scheduled restoration rule: on its cron schedule, recall the stubs of one host under
/// `paths` (and, with `rule_id`, tiered by that rule).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RecallSchedule {
    pub id: Uuid,
    pub name: String,
    pub host_id: Uuid,
    pub paths: Vec<String>,
    pub rule_id: Option<Uuid>,
    /// Five-field cron expression, evaluated in UTC.
    pub cron: String,
    pub enabled: bool,
    pub next_run_at: Option<DateTime<Utc>>,
    pub last_run_at: Option<DateTime<Utc>>,
    /// The request the last run made, and how many files it queued.
    pub last_request_id: Option<Uuid>,
    pub last_files: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// `POST /api/v1/tenants/{tenant_id}/recall-schedules`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRecallSchedule {
    pub name: String,
    pub host_id: Uuid,
    pub paths: Vec<String>,
    #[serde(default)]
    pub rule_id: Option<Uuid>,
    pub cron: String,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// `PATCH /api/v1/tenants/{tenant_id}/recall-schedules/{id}`: the fields to change.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRecallSchedule {
    #[serde(default)]
    pub paths: Option<Vec<String>>,
    #[serde(default)]
    pub cron: Option<String>,
    #[serde(default)]
    pub enabled: Option<bool>,
}
