//! audit tests.
