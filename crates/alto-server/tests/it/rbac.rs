//! rbac tests.
