//! Integration tests: a real server over HTTP on its own real PostgreSQL database.

#![allow(clippy::unwrap_used, clippy::type_complexity)]

mod audit;
mod auth;
mod errors;
mod events;
mod execution;
mod hostile;
mod hosts;
mod hot_paths;
mod ingest;
mod isolation;
mod link;
mod meta;
mod paging;
mod planner;
mod planner_prop;
mod rbac;
mod recall;
mod recall_jobs;
mod storage;
