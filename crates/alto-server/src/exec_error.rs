//! Why an operation an agent asked for did not happen ([`ExecError`], with stable codes),
//! and how an agent's text and hashes are checked and made storable. Shared by job execution
//! (`crate::execution`) and recall reports (`crate::recall`), which both render it the same
//! way on both transports.
//!
//! **Must never:** show an agent a database error's internals.

use alto_api_types::ErrorCode;
use alto_db::DbError;

/// Why an execution operation did not happen. HTTP renders it as an error body, the link as
/// a `Reply.error`; both use [`ExecError::code`] and [`ExecError::retryable`].
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The request itself is wrong (the message names the field or the file's seq).
    #[error("{0}")]
    Invalid(String),
    /// The request does not fit the job's state (ended, already a stub, nothing staged).
    #[error("{0}")]
    Conflict(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl ExecError {
    /// The stable error code for this error (database errors map as the HTTP layer maps
    /// them everywhere; see `http::error`).
    pub fn code(&self) -> ErrorCode {
        match self {
            ExecError::Invalid(_) => ErrorCode::ValidationFailed,
            ExecError::Conflict(_) => ErrorCode::Conflict,
            ExecError::NotFound(_) => ErrorCode::NotFound,
            ExecError::Db(DbError::NotFound(_)) => ErrorCode::NotFound,
            ExecError::Db(DbError::Conflict { .. }) => ErrorCode::Conflict,
            ExecError::Db(DbError::Unrepresentable { .. }) => ErrorCode::ValidationFailed,
            ExecError::Db(DbError::Connect(_)) => ErrorCode::Unavailable,
            ExecError::Db(DbError::Other(sqlx::Error::PoolTimedOut)) => ErrorCode::Unavailable,
            ExecError::Db(_) => ErrorCode::Internal,
        }
    }

    /// The message an agent may see: the error's own text, except that database failures
    /// are described without their internals (which go to the log).
    pub fn public_message(&self) -> String {
        match self {
            ExecError::Db(DbError::NotFound(what)) => format!("{what} not found"),
            ExecError::Db(DbError::Conflict { .. }) => {
                "the change conflicts with existing data".into()
            }
            ExecError::Db(DbError::Unrepresentable { kind, .. }) => kind.to_string(),
            ExecError::Db(e) => {
                tracing::error!(error = %e, "database error");
                match self.code() {
                    ErrorCode::Unavailable => "the database is busy or unavailable".into(),
                    _ => "internal error".into(),
                }
            }
            other => other.to_string(),
        }
    }

    /// Worth sending the same request again later.
    pub fn retryable(&self) -> bool {
        matches!(self.code(), ErrorCode::Unavailable | ErrorCode::Internal)
    }
}

impl From<sqlx::Error> for ExecError {
    fn from(e: sqlx::Error) -> Self {
        ExecError::Db(DbError::from(e))
    }
}

/// 64 lower-case hex digits.
pub fn valid_sha(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Text an agent reported, made storable: NUL (which PostgreSQL text cannot hold) becomes
/// U+FFFD, and more than `max` bytes are cut on a character boundary, marked with `…`.
pub fn agent_text(s: &str, max: usize) -> String {
    let mut out = s.replace('\0', "\u{fffd}");
    if out.len() > max {
        let mut end = max;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
        out.push('…');
    }
    out
}
