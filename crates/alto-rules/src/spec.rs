//! The rule language as administrators write it (JSON through the API, files for `altoctl`).
//!
//! A rule is: a name, whether it is enabled, its priority (lower runs first), a scope (hosts,
//! host groups, path prefixes), conditions that must all hold, an action, an optional cron
//! schedule and the order in which its candidates go first when a run is capped.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// One tiering rule as stored and versioned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Unique within the tenant; 1–100 characters.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Evaluation order, 0–1,000,000, unique within the tenant; lower is evaluated first.
    pub priority: i32,
    #[serde(default)]
    pub scope: Scope,
    #[serde(default)]
    pub conditions: Conditions,
    pub action: Action,
    /// Five-field cron expression (minute hour day-of-month month day-of-week, UTC). A rule
    /// with a schedule still takes its files in every run (first match wins), but its files
    /// are only planned by its scheduled runs and by runs that name it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Which of the rule's candidates go first when a run is capped.
    #[serde(default)]
    pub order_by: OrderBy,
}

fn yes() -> bool {
    true
}

/// Where a rule applies. Empty lists mean "everywhere".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// Only these hosts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<Uuid>,
    /// Only hosts in any of these groups (see a host's `groups`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_groups: Vec<String>,
    /// Only files at or below any of these absolute directories.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub path_prefixes: Vec<String>,
}

impl Scope {
    pub fn is_everywhere(&self) -> bool {
        self.hosts.is_empty() && self.host_groups.is_empty() && self.path_prefixes.is_empty()
    }
}

/// Conditions; every one that is given must hold. List conditions hold when any entry
/// matches (tags: when every listed tag is present).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Conditions {
    /// Globs against the path: `*` and `?` stay within one name, `**` crosses directories,
    /// `[a-z]` and `{a,b}` as usual. A glob without `/` matches the file name at any depth;
    /// otherwise it must match the whole path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub path_globs: Vec<String>,
    /// A regular expression searched in the path (Rust syntax, linear time; anchor with `^`
    /// and `$`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_regex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accessed_older_than_days: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accessed_newer_than_days: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_older_than_days: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_newer_than_days: Option<u32>,
    /// Size at least this many bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_size_bytes: Option<i64>,
    /// Size at most this many bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size_bytes: Option<i64>,
    /// Extensions to include, with or without the dot, any case (`pdf`, `.ISO`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extensions: Vec<String>,
    /// Extensions that never match; `""` means "files without an extension".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_extensions: Vec<String>,
    /// Owner names (as the scan reports them, e.g. `alice` or `1001`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owners: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<PermissionCondition>,
    /// Metadata tags the file carries (directly or from a parent directory).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<TagCondition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stub_state: Option<StubState>,
}

/// Mode bits, as octal strings (`"0002"`, `"4000"`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PermissionCondition {
    /// Every one of these bits is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all_of: Option<String>,
    /// None of these bits is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub none_of: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TagCondition {
    pub key: String,
    /// Any value when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StubState {
    Stubbed,
    NotStubbed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Move matching files to `target` and leave stubs.
    Tier,
    /// Matching files never move; evaluation stops for them.
    Exclude,
}

pub use alto_model::Compression;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Action {
    #[serde(rename = "type")]
    pub kind: ActionKind,
    /// Storage target name (tier only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Tier only; default none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<Compression>,
    /// Tier only: a file recalled from tier-2 less than this many days ago is not tiered
    /// again by this rule (0–3650; default: the tenant's `recall_retention_days`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain_after_recall_days: Option<u32>,
}

impl Action {
    pub fn tier(target: &str) -> Action {
        Action {
            kind: ActionKind::Tier,
            target: Some(target.to_owned()),
            compression: None,
            retain_after_recall_days: None,
        }
    }
    pub fn exclude() -> Action {
        Action {
            kind: ActionKind::Exclude,
            target: None,
            compression: None,
            retain_after_recall_days: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderBy {
    /// Least recently accessed first (the default).
    #[default]
    OldestAccess,
    /// Least recently modified first.
    OldestModify,
    /// Largest first (frees the most space per file).
    Largest,
}
