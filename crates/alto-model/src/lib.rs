//! Alto's domain vocabulary and the pure logic that must agree everywhere it is used.
//!
//! This crate holds identifiers, roles and the permission matrix, the audit hash-chain
//! canonical form, name validation, the storage vocabulary (target kinds, compression) and the
//! [`Clock`] abstraction.
//!
//! **Must never:** perform I/O, read the system clock outside [`SystemClock`], talk SQL or
//! HTTP, or depend on any other `alto-*` crate. Everything here is deterministic and testable
//! without a database.

pub mod audit;
pub mod clock;
pub mod ids;
pub mod rbac;
pub mod storage;
pub mod validate;

pub use clock::{Clock, FakeClock, SystemClock};
pub use ids::{CredentialId, CustomerId, HostId, UserId};
pub use rbac::{Permission, Role, Scope};
pub use storage::{Compression, TargetKind, UnknownTargetKind};
