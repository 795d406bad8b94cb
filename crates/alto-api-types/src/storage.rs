//! Storage targets: named tier-2 locations (a directory, S3, Azure Blob or an SMB share),
//! their settings with secrets redacted, and the results of checking them.
//!
//! `config` is the backend's connection settings as `alto_tier2::TargetSpec` documents them
//! per kind (see docs/storage-targets.md). In every response its secrets
//! (`secret_access_key`, `access_key`, `password`) read `"***"`; a request may send `"***"`
//! or leave a secret out to keep the stored one.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// What a secret reads as in responses; sent back in an update, it keeps the stored secret.
pub const REDACTED: &str = "***";

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StorageTarget {
    pub id: Uuid,
    pub tenant_id: Uuid,
    /// Unique in the tenant; rules name it in `action.target`. Cannot be changed.
    pub name: String,
    /// `directory`, `smb`, `s3` or `azure`.
    pub kind: String,
    pub location: String,
    /// The backend's settings with every secret replaced by `"***"`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub updated_at: Option<DateTime<Utc>>,
    /// The last check (`POST …/test`) of the current settings; absent: never checked since
    /// they last changed.
    #[serde(default)]
    pub health: Option<StorageHealth>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateStorageTarget {
    pub name: String,
    /// `directory`, `smb`, `s3` or `azure`.
    pub kind: String,
    pub location: String,
    /// The backend's settings and credentials (`{}` for `directory`).
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

/// `PUT`: the settings as a whole. A secret left out of `config` (or sent as `"***"`) keeps
/// the stored one, as long as the kind stays the same.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplaceStorageTarget {
    pub kind: String,
    pub location: String,
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
}

/// `PATCH`: only what is given changes. `config` is merged key by key into the stored one
/// (`null` removes a key; a secret sent as `"***"` keeps the stored one).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateStorageTarget {
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub config: Option<serde_json::Value>,
}

/// The outcome of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StorageCheckStatus {
    /// The server reached the target and wrote and deleted a probe object.
    Ok,
    /// The target could not be used; `error` says why.
    Failed,
    /// The server cannot check this target (a `directory` location it does not see);
    /// agents check it when they run jobs.
    Unchecked,
}

impl StorageCheckStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StorageCheckStatus::Ok => "ok",
            StorageCheckStatus::Failed => "failed",
            StorageCheckStatus::Unchecked => "unchecked",
        }
    }
}

/// Why a check did not succeed. Codes are stable: scripts may match on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StorageCheckCode {
    /// (`unchecked`) A `directory` location the server does not see (relative to the
    /// agents' tier-2 base, or not mounted on the server).
    NotCheckable,
    /// The stored settings cannot be used (e.g. saved before validation existed).
    InvalidConfig,
    /// No connection: refused, unknown host, TLS failure.
    Unreachable,
    /// Wrong credentials, or they lack the permission to list, write or delete.
    AccessDenied,
    /// The bucket, container, share, base path or directory does not exist.
    NotFound,
    /// No answer within the check's time limit.
    Timeout,
    /// Any other failure of the storage (the message gives the HTTP status, if any).
    StorageError,
    /// The target's network address is one the server may not connect to (loopback,
    /// private, link-local… and not in `storage.allowed_endpoints`).
    NotAllowed,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StorageCheckError {
    pub code: StorageCheckCode,
    /// What failed, for people: a fixed text per code (plus an HTTP status or a local
    /// configuration problem), never a secret and never text the remote end sent.
    pub message: String,
}

/// Space used by objects of this tenant on the target (sidecars and temporaries excluded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StorageUsage {
    pub objects: i64,
    pub bytes: i64,
    pub measured_at: DateTime<Utc>,
}

/// The last check of a target, as `GET` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StorageHealth {
    pub status: StorageCheckStatus,
    /// `status == ok`.
    pub ok: bool,
    pub checked_at: DateTime<Utc>,
    /// Time to connect and run the write/delete probe.
    pub latency_ms: Option<i64>,
    pub error: Option<StorageCheckError>,
    /// The last usage measured (by this or an earlier check of the same settings).
    pub usage: Option<StorageUsage>,
}

/// The answer of `POST …/storage-targets/{id}/test`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StorageTestResult {
    pub target_id: Uuid,
    pub name: String,
    pub status: StorageCheckStatus,
    /// `status == ok`.
    pub ok: bool,
    pub checked_at: DateTime<Utc>,
    /// Time to connect and run the write/delete probe.
    pub latency_ms: Option<i64>,
    pub error: Option<StorageCheckError>,
    /// Measured by this check (absent when it failed, or when counting did not finish within
    /// the time limit).
    pub usage: Option<StorageUsage>,
    /// Whether the result was stored as the target's `health` (not when its settings changed
    /// while it ran).
    pub recorded: bool,
}
