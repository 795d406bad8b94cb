//! `ApiError`: every handler error becomes a JSON body with a stable code. Internal details
//! are logged, never sent.

use alto_api_types::{ErrorBody, ErrorCode, ErrorDetail};
use alto_db::DbError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// An error answered to the client.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Seconds for `Retry-After`.
    pub retry_after: Option<u64>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), retry_after: None }
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ValidationFailed, message)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    pub fn forbidden() -> Self {
        Self::new(ErrorCode::Forbidden, "your role does not allow this action")
    }

    pub fn unauthenticated() -> Self {
        Self::new(ErrorCode::Unauthenticated, "authentication required")
    }

    pub fn internal() -> Self {
        Self::new(ErrorCode::Internal, "internal error; see the server log for the request id")
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::NotFound(what) => ApiError::not_found(what),
            DbError::Conflict { constraint } => {
                let what = match constraint.as_str() {
                    "customers_name_key" => "a tenant with this name already exists",
                    "users_username_key" => "this username is already taken",
                    "hosts_customer_id_name_key" => "a host with this name already exists",
                    _ => "the change conflicts with existing data",
                };
                ApiError::new(ErrorCode::Conflict, what)
            }
            DbError::Unrepresentable { kind, sqlstate } => {
                tracing::info!(%sqlstate, "refused a value the database cannot hold: {kind}");
                ApiError::validation(kind.to_string())
            }
            DbError::Connect(err) => {
                tracing::error!(error = %err, "database unavailable");
                ApiError::new(ErrorCode::Unavailable, "the database is unavailable")
            }
            DbError::Other(sqlx::Error::PoolTimedOut) => {
                tracing::error!("database pool timed out");
                ApiError::new(ErrorCode::Unavailable, "the database is busy or unavailable")
            }
            other => {
                tracing::error!(error = %other, "database error");
                ApiError::internal()
            }
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        DbError::from(e).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = ErrorBody {
            error: ErrorDetail { code: self.code, message: self.message, request_id: None },
        };
        let mut resp = (status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

impl From<crate::execution::ExecError> for ApiError {
    fn from(e: crate::execution::ExecError) -> Self {
        use crate::execution::ExecError as E;
        match e {
            E::Invalid(m) => ApiError::validation(m),
            E::Conflict(m) => ApiError::new(ErrorCode::Conflict, m),
            E::NotFound(what) => ApiError::not_found(what),
            E::Db(d) => d.into(),
        }
    }
}
