//! isolation tests.
