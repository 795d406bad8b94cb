//! The stable error-code table. Every error response is
//! `{"error": {"code": "...", "message": "...", "request_id": "..."}}`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Machine-readable error codes. Codes are stable: clients may match on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The body is not valid JSON, or has unknown or mistyped fields.
    InvalidJson,
    /// The body or a parameter is well-formed but not acceptable.
    ValidationFailed,
    /// An id in the path or query is not a UUID.
    InvalidId,
    /// A query parameter is malformed.
    InvalidQuery,
    /// The request body is larger than the limit.
    PayloadTooLarge,
    /// The body must be `application/json`.
    UnsupportedMediaType,
    /// No valid session, token or credential was presented.
    Unauthenticated,
    /// Wrong username or password.
    InvalidCredentials,
    /// Too many failed logins; retry after the time in `Retry-After`.
    TooManyAttempts,
    /// Authenticated, but the role does not allow this.
    Forbidden,
    /// No such object (or not visible to the caller).
    NotFound,
    /// The change conflicts with existing state (e.g. a duplicate name).
    Conflict,
    /// The enrollment token is unknown, used or expired.
    InvalidEnrollmentToken,
    /// An uploaded scan batch is malformed; the message names the part and row at fault.
    InvalidBatch,
    /// The body does not match its declared SHA-256.
    ChecksumMismatch,
    /// The tenant is suspended.
    TenantSuspended,
    /// The HTTP method is not supported on this path.
    MethodNotAllowed,
    /// A dependency (the database) is unavailable.
    Unavailable,
    /// An unexpected server error; the request id identifies it in the logs.
    Internal,
}

impl ErrorCode {
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidJson
            | ErrorCode::ValidationFailed
            | ErrorCode::InvalidId
            | ErrorCode::InvalidQuery
            | ErrorCode::InvalidBatch
            | ErrorCode::ChecksumMismatch => 400,
            ErrorCode::Unauthenticated
            | ErrorCode::InvalidCredentials
            | ErrorCode::InvalidEnrollmentToken => 401,
            ErrorCode::Forbidden | ErrorCode::TenantSuspended => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::Conflict => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::TooManyAttempts => 429,
            ErrorCode::Internal => 500,
            ErrorCode::Unavailable => 503,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::ValidationFailed => "validation_failed",
            ErrorCode::InvalidId => "invalid_id",
            ErrorCode::InvalidQuery => "invalid_query",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::InvalidCredentials => "invalid_credentials",
            ErrorCode::TooManyAttempts => "too_many_attempts",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::InvalidEnrollmentToken => "invalid_enrollment_token",
            ErrorCode::InvalidBatch => "invalid_batch",
            ErrorCode::ChecksumMismatch => "checksum_mismatch",
            ErrorCode::TenantSuspended => "tenant_suspended",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}
