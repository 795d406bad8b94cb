//! Errors of the database layer.

/// What a database operation can fail with. `NotFound` and `Conflict` are expected outcomes
/// the API maps to 404 and 409; everything else is an internal error.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("conflict on {constraint}")]
    Conflict { constraint: String },
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Other(#[source] sqlx::Error),
}

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e {
            if db.is_unique_violation() {
                return DbError::Conflict {
                    constraint: db.constraint().unwrap_or("unique").to_owned(),
                };
            }
        }
        DbError::Other(e)
    }
}
