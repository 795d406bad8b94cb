//! Alto's public HTTP and WebSocket contract: request and response bodies, the stable error
//! codes, pagination.
//!
//! **API boundary.** Changing a type here changes what the console, `altoctl` and agents in
//! the field see. Add fields compatibly; never rename or repurpose an error code.
//!
//! **Must never:** contain logic beyond (de)serialisation, or depend on the server or the
//! database.

mod error;
mod jobs;
mod planning;
mod recalls;
mod storage;

pub use alto_model::{Compression, TargetKind};
pub use error::{ErrorBody, ErrorCode, ErrorDetail};
pub use jobs::*;
pub use planning::*;
pub use recalls::*;
pub use storage::*;

use alto_model::Role;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// A page of a list. Pass `next_cursor` back as `?cursor=` for the next page; it is absent on
/// the last page.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

// --- Auth ----------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LoginResponse {
    /// Bearer token for `Authorization: Bearer …`. The same session is also set as an
    /// HttpOnly cookie for the console.
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub me: Me,
}

/// The authenticated principal.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Me {
    pub user_id: Uuid,
    pub username: String,
    /// The user's tenant; absent for platform staff.
    pub tenant_id: Option<Uuid>,
    pub roles: Vec<Role>,
    /// Permission names granted in the user's scope (see docs/permissions.md).
    pub permissions: Vec<String>,
}

// --- Tenants -------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Tenant {
    pub id: Uuid,
    pub name: String,
    /// `active` or `suspended`.
    pub status: String,
    /// Name of the tenant's isolated tier-2 location (`customer-{id}-tiered`).
    pub tier2_location: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    pub name: String,
    /// Optionally create the tenant's first administrator in the same step.
    #[serde(default)]
    pub admin: Option<CreateUser>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedTenant {
    pub tenant: Tenant,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<User>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenant {
    #[serde(default)]
    pub name: Option<String>,
    /// `active` or `suspended`. A suspended tenant's users and agents are refused.
    #[serde(default)]
    pub status: Option<String>,
}

// --- Users ---------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct User {
    pub id: Uuid,
    pub tenant_id: Option<Uuid>,
    pub username: String,
    pub display_name: Option<String>,
    pub disabled: bool,
    pub roles: Vec<Role>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// 3–64 characters of `a-z 0-9 . _ @ + -`; unique across the service.
    pub username: String,
    /// At least 12 characters.
    pub password: String,
    #[serde(default)]
    pub display_name: Option<String>,
    pub roles: Vec<Role>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    #[serde(default)]
    pub display_name: Option<String>,
    /// Disabling a user ends all their sessions at once.
    #[serde(default)]
    pub disabled: Option<bool>,
    /// A new password ends all the user's sessions.
    #[serde(default)]
    pub password: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRoles {
    pub roles: Vec<Role>,
}

// --- Hosts and credentials -----------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Volume {
    pub mount_point: String,
    #[serde(default)]
    pub fs_type: Option<String>,
    pub total_bytes: u64,
    pub free_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Host {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    pub description: Option<String>,
    /// `pending` (never enrolled), `online`, `offline` or `decommissioned`.
    pub status: String,
    pub agent_version: Option<String>,
    pub os: Option<String>,
    pub reported_hostname: Option<String>,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub volumes: Vec<Volume>,
    pub last_scan_at: Option<DateTime<Utc>>,
    pub file_count: i64,
    pub total_bytes: i64,
    /// Host groups rules can be scoped to.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Upload bandwidth tiering jobs of this host may use (bytes per second; absent: no
    /// limit). Agents on the link throttle every job to it.
    #[serde(default)]
    pub bandwidth_limit_bytes_per_second: Option<i64>,
    /// Download bandwidth recall jobs of this host may use (bytes per second; absent: no
    /// limit). On-access recalls are never throttled.
    #[serde(default)]
    pub recall_bandwidth_limit_bytes_per_second: Option<i64>,
    pub created_at: DateTime<Utc>,
    /// Whether stubs on this host come back on access, as its agent last reported it
    /// (absent: the agent never said, e.g. an older agent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_access: Option<OnAccessStatus>,
    /// When the agent reported `on_access`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_access_reported_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateHost {
    /// Unique within the tenant; letters, digits, `.`, `-`, `_`.
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateHost {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Tiering upload limit in bytes per second; 0 removes the limit; absent keeps it.
    #[serde(default)]
    pub bandwidth_limit_bytes_per_second: Option<i64>,
    /// Recall-job download limit in bytes per second; 0 removes the limit; absent keeps it.
    #[serde(default)]
    pub recall_bandwidth_limit_bytes_per_second: Option<i64>,
}

/// A one-time enrollment token. Shown once; only its hash is stored.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EnrollmentToken {
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedHost {
    pub host: Host,
    pub enrollment: EnrollmentToken,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Credential {
    pub id: Uuid,
    /// `enrollment` or `rotation`.
    pub created_via: String,
    pub created_at: DateTime<Utc>,
    /// Set when a rotation superseded this credential: it works until then.
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    /// `active`, `expiring` (superseded, still inside the overlap window), `expired` or
    /// `revoked`.
    pub state: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    pub token: String,
    pub hostname: String,
    pub agent_version: String,
    #[serde(default)]
    pub os: Option<String>,
}

/// A credential rotation the agent proposes (`POST /agent/credentials/rotate` with a body):
/// the agent makes the new secret and id itself and stores them durably *before* asking, so a
/// crash between the server's answer and the agent's save cannot lose the only copy of the new
/// secret. Without a body the server makes them (and the caller must save the answer).
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateCredential {
    /// The new credential's id (a fresh UUID; a conflict is refused).
    pub credential_id: Uuid,
    /// The new secret: `alto_h_` and 43 base64url characters (256 random bits).
    pub credential: String,
}

impl std::fmt::Debug for RotateCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotateCredential")
            .field("credential_id", &self.credential_id)
            .field("credential", &"<redacted>")
            .finish()
    }
}

/// The agent's credential. The secret is shown exactly once.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IssuedCredential {
    pub host_id: Uuid,
    pub tenant_id: Uuid,
    pub credential_id: Uuid,
    pub credential: String,
    /// When the credential this one replaces stops working (rotation only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_expires_at: Option<DateTime<Utc>>,
    /// Where the agent link listens and the CA it presents (absent: no link; poll REST).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<AgentLinkInfo>,
}

/// How an agent reaches the agent link (gRPC over TLS).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentLinkInfo {
    /// `https://host:port`.
    pub url: String,
    /// PEM of the CA the link's certificate is issued by; agents trust exactly this.
    pub ca_pem: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    pub agent_version: String,
    #[serde(default)]
    pub os: Option<String>,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub volumes: Vec<Volume>,
    /// Whether stubs on this host come back on access (absent: an agent that does not say).
    #[serde(default)]
    pub on_access: Option<OnAccessStatus>,
}

/// Transparent (on-access) recall on one host, as its agent reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OnAccessStatus {
    /// `active` (every managed file system is marked), `partial` (some are not, see
    /// `filesystems`), `unsupported` (kernel or file systems lack pre-content events),
    /// `disabled` (turned off in the agent's configuration) or `error` (it could not be set
    /// up: see `reason`).
    pub state: String,
    /// Why it is not `active`, in one line.
    #[serde(default)]
    pub reason: Option<String>,
    /// Whether pending accesses survive an agent restart (the event group is held outside
    /// the agent process).
    #[serde(default)]
    pub survives_restart: bool,
    /// Per managed file system.
    #[serde(default)]
    pub filesystems: Vec<OnAccessFs>,
}

/// On-access recall on one managed file system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OnAccessFs {
    /// The managed path (a scan root) on this file system.
    pub path: String,
    #[serde(default)]
    pub fs_type: Option<String>,
    /// `marked`, or why not: `unsupported_filesystem`, `unsupported_kernel`, `error`.
    pub state: String,
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HeartbeatResponse {
    pub host_id: Uuid,
    pub status: String,
    pub server_time: DateTime<Utc>,
    /// How often the server expects heartbeats.
    pub heartbeat_interval_seconds: u64,
}

// --- Audit ---------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    /// The chain: a tenant, or absent for the platform chain.
    pub tenant_id: Option<Uuid>,
    pub seq: i64,
    pub occurred_at: DateTime<Utc>,
    /// `user`, `host`, `system` or `anonymous`.
    pub actor_kind: String,
    pub actor_id: Option<String>,
    pub actor_name: Option<String>,
    pub action: String,
    pub target_kind: Option<String>,
    pub target_id: Option<String>,
    /// `success`, `failure` or `denied`.
    pub outcome: String,
    pub source_ip: Option<String>,
    pub details: serde_json::Value,
    pub prev_hash: String,
    pub hash: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ChainFault {
    /// `hash_mismatch`, `broken_link`, `missing` or `truncated_tail`.
    pub kind: String,
    /// The first entry at fault (for `missing`: the first missing sequence number).
    pub seq: i64,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChainStatus {
    pub tenant_id: Option<Uuid>,
    pub entries_checked: u64,
    pub head_seq: i64,
    pub ok: bool,
    pub fault: Option<ChainFault>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditVerifyReport {
    pub ok: bool,
    pub chains: Vec<ChainStatus>,
}

// --- Health --------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
    pub version: String,
}

// --- Scans and inventory -------------------------------------------------------------------

/// Answer to one uploaded scan part.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ScanPartAccepted {
    pub scan_id: Uuid,
    pub part: i32,
    /// Rows in this part.
    pub rows: u64,
    /// `receiving` (more parts expected) or `queued` (the last part arrived; ingest queued).
    pub status: String,
    /// True when this exact part had been received before (a retry); nothing was changed.
    pub duplicate: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Scan {
    pub id: Uuid,
    pub host_id: Uuid,
    /// `full` (files missing from it are marked deleted) or `partial`.
    pub kind: String,
    /// `receiving`, `queued`, `ingesting`, `completed` or `failed`.
    pub status: String,
    pub parts_expected: Option<i32>,
    pub rows_staged: i64,
    pub bytes_received: i64,
    pub error: Option<String>,
    /// After ingest: `rows`, `inserted`, `updated`, `unchanged`, `deleted`.
    pub stats: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InventoryBucket {
    pub key: String,
    pub files: i64,
    pub bytes: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InventorySummary {
    pub files: i64,
    pub bytes: i64,
    pub by_extension: Vec<InventoryBucket>,
    /// Bands `0-30d`, `30-90d`, `90-180d`, `180d-1y`, `1-2y`, `2-5y`, `5y+` by last access.
    pub accessed_age: Vec<InventoryBucket>,
    pub modified_age: Vec<InventoryBucket>,
    pub largest_directories: Vec<InventoryBucket>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InventoryFile {
    pub id: Uuid,
    pub host_id: Uuid,
    /// The path; if `path_escaped`, bytes that are not UTF-8 appear as `\xHH` and `\` as `\\`.
    pub file_path: String,
    pub path_escaped: bool,
    pub file_size: i64,
    pub last_modified: Option<DateTime<Utc>>,
    pub last_accessed: Option<DateTime<Utc>>,
    pub file_extension: Option<String>,
    pub permissions: Option<String>,
    pub owner: Option<String>,
    /// Stubbed according to the stub registry.
    pub is_stubbed: bool,
    /// The last scan saw the stub attribute on the file.
    pub scan_is_stub: bool,
    pub deleted_at: Option<DateTime<Utc>>,
    pub last_scan_time: Option<DateTime<Utc>>,
}
