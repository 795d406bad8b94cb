//! Background services. Each runs on every replica and coordinates through PostgreSQL
//! (advisory locks, rows), never through memory, so replicas can come and go.

pub mod host_monitor;
pub mod ingest;
pub mod planner;
