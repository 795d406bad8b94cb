//! Fault injection for tests that must stop the agent at an exact point (a crash between two
//! steps, a scan that never ends). Points are named in `ALTO_AGENT_FAULT` (comma-separated);
//! nothing is injected unless the variable names the point, and the agent logs every point it
//! hits, so an injected fault is never silent.
//!
//! | point | effect |
//! |---|---|
//! | `scan-stall` | a scheduled scan waits (without walking) until the agent stops |
//! | `rotate-crash-after-answer` | the process aborts after the server issued a rotated credential and before the agent promoted it |

/// The environment variable naming the active points.
pub const ENV: &str = "ALTO_AGENT_FAULT";

/// Whether `point` is active.
pub fn active(point: &str) -> bool {
    let on = std::env::var(ENV).map(|v| v.split(',').any(|p| p.trim() == point)).unwrap_or(false);
    if on {
        tracing::warn!(point, "fault injection point hit ({ENV})");
    }
    on
}

/// Aborts the process (as a crash would: no destructors, no flushing) if `point` is active.
pub fn crash(point: &str) {
    if active(point) {
        eprintln!("alto-agent: injected crash at {point}");
        std::process::abort();
    }
}
