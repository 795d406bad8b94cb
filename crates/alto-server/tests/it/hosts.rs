//! hosts tests.
