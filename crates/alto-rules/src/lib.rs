//! Alto's tiering rules: the rule language ([`spec`]), validation with field-named errors
//! ([`compile()`]), path patterns compiled once into a Rust matcher and a PostgreSQL regular
//! expression ([`pattern`]), the reference evaluator and its explanations ([`eval`]), cron
//! schedules ([`schedule`]) and pure job planning ([`plan`]).
//!
//! The planner selects candidates in PostgreSQL with SQL compiled from these same
//! [`CompiledRule`]s (in `alto-db`) and confirms every one with [`eval::decide`]; a property
//! test holds the two to the same answers.
//!
//! **Must never:** perform I/O, read the clock (every age is measured from a `now` the caller
//! passes), or contain SQL statements.

pub mod compile;
pub mod eval;
pub mod pattern;
pub mod plan;
pub mod schedule;
pub mod spec;

pub use compile::{compile, describe, CompiledRule, RuleError};
pub use eval::{decide, explain, Decision, EvalSettings, FileFacts, HostFacts, PathTag, TagIndex};
pub use spec::*;

/// Host-group names: 1–64 of letters, digits, `.`, `-`, `_`.
pub fn valid_group_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// Tag keys: 1–64 of letters, digits, `.`, `-`, `_`, `:`.
pub fn valid_tag_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'))
}
