//! The Alto management server: REST API (`/api/v1`), live events, metrics and background
//! services over PostgreSQL.
//!
//! It is stateless apart from PostgreSQL: several replicas can serve one database, and any
//! coordination goes through the database (rows, advisory locks, `LISTEN/NOTIFY`).
//!
//! **Must never:** trust a tenant id from a request body or query when it could come from
//! the caller's credentials; keep state only in memory that another replica would need; send
//! internal error details to clients; run queries as the database owner after migrating.

pub mod audit;
pub mod auth;
pub mod bootstrap;
pub mod config;
pub mod egress;
pub mod events;
pub mod exec_error;
pub mod execution;
pub mod http;
pub mod link;
pub mod principal;
pub mod recall;
pub mod secrets;
pub mod services;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod worker;

pub use config::Config;
pub use startup::{Application, StartupError};
