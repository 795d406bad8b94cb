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
    /// A value the database cannot hold: text with a NUL byte, a timestamp outside
    /// PostgreSQL's range, a number out of range. The statement failed and changed nothing;
    /// the caller sent something no check before it caught (an input error, not a fault).
    #[error("{kind}")]
    Unrepresentable { kind: Unrepresentable, sqlstate: String },
    #[error("database error: {0}")]
    Other(#[source] sqlx::Error),
}

/// What kind of value the database refused (stable, safe to show: no database text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unrepresentable {
    #[error("text must not contain NUL bytes or invalid UTF-8")]
    Text,
    #[error("a timestamp is outside the supported range")]
    Timestamp,
    #[error("a number is out of range")]
    Number,
}

impl Unrepresentable {
    /// The class of a PostgreSQL data exception (SQLSTATE class 22) caused by a value.
    pub fn of_sqlstate(code: &str) -> Option<Unrepresentable> {
        Some(match code {
            // character_not_in_repertoire (a NUL or an invalid byte), untranslatable_character
            "22021" | "22P05" => Unrepresentable::Text,
            // datetime_field_overflow, invalid_datetime_format
            "22008" | "22007" => Unrepresentable::Timestamp,
            // numeric_value_out_of_range
            "22003" => Unrepresentable::Number,
            _ => return None,
        })
    }
}

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e {
            if db.is_unique_violation() {
                return DbError::Conflict {
                    constraint: db.constraint().unwrap_or("unique").to_owned(),
                };
            }
            if let Some(code) = db.code() {
                if let Some(kind) = Unrepresentable::of_sqlstate(&code) {
                    return DbError::Unrepresentable { kind, sqlstate: code.into_owned() };
                }
            }
        }
        DbError::Other(e)
    }
}
