//! Alto's PostgreSQL layer: connection pools, migrations, tenant-scoped transactions and every
//! SQL statement the server runs.
//!
//! Two connections exist. The *owner* connection runs migrations only. The *app* pool logs in
//! as `alto_app`, which owns nothing and is subject to row-level security; every transaction
//! begins by naming its tenant ([`TenantCtx`]), so a query that forgets `WHERE customer_id`
//! still cannot see another tenant's rows.
//!
//! **Must never:** run application queries as the owner role, build SQL from user input by
//! string concatenation, or read the clock (callers pass `now`).

pub mod audit;
pub mod error;
pub mod execution;
pub mod hosts;
pub mod inventory;
pub mod jobs;
pub mod planner;
pub mod recalls;
pub mod rules;
pub mod scans;
pub mod storage;
pub mod tenants;
pub mod users;

use std::str::FromStr;
use std::time::Duration;

use alto_model::CustomerId;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Executor as _, Postgres, Transaction};

pub use error::DbError;

/// The role the server runs as. Created by the first migration.
pub const APP_ROLE: &str = "alto_app";

/// The embedded migrations, applied in order at start-up. Forward-only.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Which tenant's rows a transaction may see and change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantCtx {
    /// No tenant: only the narrow authentication functions return anything.
    Anonymous,
    /// Exactly one tenant.
    Tenant(CustomerId),
    /// Every tenant (platform staff and background services).
    Platform,
}

impl TenantCtx {
    fn setting(self) -> String {
        match self {
            TenantCtx::Anonymous => String::new(),
            TenantCtx::Tenant(c) => c.to_string(),
            TenantCtx::Platform => "*".into(),
        }
    }

    /// The tenant for rows this context writes; `None` in platform or anonymous scope.
    pub fn tenant(self) -> Option<CustomerId> {
        match self {
            TenantCtx::Tenant(c) => Some(c),
            _ => None,
        }
    }
}

/// How to reach the database.
#[derive(Debug, Clone)]
pub struct DbConfig {
    /// Connection URL with owner rights (used for migrations and to derive the app login).
    pub url: String,
    /// Password for the `alto_app` login, if the server requires one.
    pub app_password: Option<String>,
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

/// Handle to the database: a pool of `alto_app` connections.
#[derive(Debug, Clone)]
pub struct Db {
    pool: PgPool,
}

/// A transaction bound to a tenant context. Dropping it without [`commit`](Tx::commit) rolls
/// back.
pub type Tx = Transaction<'static, Postgres>;

impl Db {
    /// Applies pending migrations as the owner, then opens the `alto_app` pool.
    pub async fn connect_and_migrate(cfg: &DbConfig) -> Result<Db, DbError> {
        let owner = PgConnectOptions::from_str(&cfg.url).map_err(DbError::Connect)?;
        migrate(&owner, cfg.app_password.as_deref()).await?;
        Self::connect_app(cfg).await
    }

    /// Opens the `alto_app` pool without migrating.
    pub async fn connect_app(cfg: &DbConfig) -> Result<Db, DbError> {
        let owner = PgConnectOptions::from_str(&cfg.url).map_err(DbError::Connect)?;
        let mut app = owner.username(APP_ROLE).application_name("alto-server");
        app = match &cfg.app_password {
            Some(p) => app.password(p),
            None => app.password(""),
        };
        let pool = PgPoolOptions::new()
            .max_connections(cfg.max_connections)
            .acquire_timeout(cfg.acquire_timeout)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("SET statement_timeout = '60s'").await?;
                    Ok(())
                })
            })
            .connect_with(app)
            .await
            .map_err(DbError::Connect)?;
        Ok(Db { pool })
    }

    /// Begins a transaction scoped to `ctx`.
    pub async fn begin(&self, ctx: TenantCtx) -> Result<Tx, DbError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT set_config('alto.tenant', $1, true)")
            .bind(ctx.setting())
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    /// The pool, for health checks and metrics.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Cheap liveness query.
    pub async fn ping(&self) -> Result<(), DbError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Runs migrations on the database named by `owner`, then sets the app role's password.
pub async fn migrate(owner: &PgConnectOptions, app_password: Option<&str>) -> Result<(), DbError> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(owner.clone())
        .await
        .map_err(DbError::Connect)?;
    // Serialise concurrent migrators (several replicas starting at once).
    let mut conn = pool.acquire().await?;
    sqlx::query("SELECT pg_advisory_lock(73010001)").execute(&mut *conn).await?;
    let res = MIGRATOR.run(&mut *conn).await;
    sqlx::query("SELECT pg_advisory_unlock(73010001)").execute(&mut *conn).await?;
    res?;
    if let Some(p) = app_password {
        // Identifiers cannot be bound; the literal is quoted by PostgreSQL itself.
        let quoted: String =
            sqlx::query_scalar("SELECT quote_literal($1)").bind(p).fetch_one(&mut *conn).await?;
        sqlx::query(&format!("ALTER ROLE {APP_ROLE} PASSWORD {quoted}"))
            .execute(&mut *conn)
            .await?;
    }
    drop(conn);
    pool.close().await;
    Ok(())
}

/// Keyset pagination position: the `(created_at, id)` of the last row returned. Lists ordered
/// by creation take `Option<Cursor>` and the number of rows to fetch; the caller (the server's
/// one pagination helper) makes pages and opaque cursors of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub id: uuid::Uuid,
}

impl Cursor {
    /// The cursor as the two nullable bind parameters of a `($n::timestamptz IS NULL OR
    /// (created_at, id) > ($n, $m))` condition.
    pub(crate) fn binds(
        c: Option<Cursor>,
    ) -> (Option<chrono::DateTime<chrono::Utc>>, Option<uuid::Uuid>) {
        c.map(|c| (Some(c.created_at), Some(c.id))).unwrap_or_default()
    }
}

/// Publishes `payload` on `channel`; delivered to listeners when `tx` commits.
pub async fn notify(tx: &mut Tx, channel: &str, payload: &str) -> Result<(), DbError> {
    sqlx::query("SELECT pg_notify($1, $2)").bind(channel).bind(payload).execute(&mut **tx).await?;
    Ok(())
}

/// Takes a transaction-scoped advisory lock if free: the way one replica of several claims
/// singleton work. Released at commit or rollback.
pub async fn try_singleton_lock(tx: &mut Tx, key: i64) -> Result<bool, DbError> {
    Ok(sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(key)
        .fetch_one(&mut **tx)
        .await?)
}

/// Creates database `name` on the server at `maintenance_url` unless it exists.
pub async fn ensure_database(maintenance_url: &str, name: &str) -> Result<(), DbError> {
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
        return Err(DbError::Other(sqlx::Error::Configuration("invalid database name".into())));
    }
    let opts = PgConnectOptions::from_str(maintenance_url).map_err(DbError::Connect)?;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await
        .map_err(DbError::Connect)?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(name)
            .fetch_one(&pool)
            .await?;
    if !exists {
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&pool).await?;
    }
    pool.close().await;
    Ok(())
}
