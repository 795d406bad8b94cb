//! Printing: tables for people, the API's JSON for scripts.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;
use chrono::{DateTime, SecondsFormat, Utc};
use comfy_table::{presets, ContentArrangement, Table};
use serde::Serialize;

/// Set once stdout cannot be written to; later output is dropped.
static STDOUT_GONE: AtomicBool = AtomicBool::new(false);
/// Set when writing failed for a reason other than the reader going away.
static STDOUT_FAILED: AtomicBool = AtomicBool::new(false);

/// Writes one line to stdout (see [`outln!`]). Unlike `println!` it never panics: when the
/// reader has gone away (`altoctl … | head`) the rest of the output is dropped quietly and
/// the exit code stays what the command decided.
pub(crate) fn write_line(args: std::fmt::Arguments<'_>) {
    if STDOUT_GONE.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.write_all(b"\n")) {
        STDOUT_GONE.store(true, Ordering::Relaxed);
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            STDOUT_FAILED.store(true, Ordering::Relaxed);
            eprintln!("error: cannot write to standard output: {e}");
        }
    }
}

/// Whether some output could not be written (other than to a closed pipe).
pub(crate) fn failed() -> bool {
    STDOUT_FAILED.load(Ordering::Relaxed)
}

/// Prints a response body as pretty JSON on stdout.
pub(crate) fn json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    outln!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn new_table() -> Table {
    let mut t = Table::new();
    t.load_preset(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic);
    t
}

/// Prints rows under a header; "(none)" for an empty list.
pub(crate) fn table(header: &[&str], rows: Vec<Vec<String>>) {
    if rows.is_empty() {
        outln!("(none)");
        return;
    }
    let mut t = new_table();
    t.set_header(header.iter().copied());
    for r in rows {
        t.add_row(r);
    }
    outln!("{t}");
}

/// Prints one object as field/value pairs.
pub(crate) fn fields(pairs: Vec<(&str, String)>) {
    let mut t = new_table();
    for (k, v) in pairs {
        t.add_row(vec![k.to_owned(), v]);
    }
    outln!("{t}");
}

/// RFC 3339, UTC, whole seconds.
pub(crate) fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub(crate) fn opt_ts(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "-".to_owned(), ts)
}

pub(crate) fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// Joins displayable items with ", " ("-" when empty).
pub(crate) fn list<T: ToString>(items: &[T]) -> String {
    if items.is_empty() {
        return "-".to_owned();
    }
    items.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// The last 8 hex digits of an ID, to tell rows apart in a wide table. (The leading digits
/// of time-ordered UUIDs are a timestamp, nearly equal for objects made together.)
pub(crate) fn short_id(id: uuid::Uuid) -> String {
    let s = id.simple().to_string();
    s[s.len() - 8..].to_owned()
}

/// Bytes as a short human size (binary units).
pub(crate) fn bytes(n: i64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v.abs() >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A duration in seconds, shortly: `850 ms`, `42 s`, `3 min 20 s`, `2 h 05 min`.
pub(crate) fn seconds(s: f64) -> String {
    if !s.is_finite() || s < 0.0 {
        return "-".to_owned();
    }
    if s < 1.0 {
        return format!("{:.0} ms", s * 1000.0);
    }
    let whole = s.round() as u64;
    match whole {
        0..=59 => format!("{whole} s"),
        60..=3599 => format!("{} min {:02} s", whole / 60, whole % 60),
        3600..=86_399 => format!("{} h {:02} min", whole / 3600, whole % 3600 / 60),
        _ => format!("{} d {:02} h", whole / 86_400, whole % 86_400 / 3600),
    }
}

pub(crate) fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let t = DateTime::parse_from_rfc3339("2026-06-01T12:00:00.123+02:00")
            .expect("time")
            .with_timezone(&Utc);
        assert_eq!(ts(t), "2026-06-01T10:00:00Z");
        assert_eq!(opt_ts(None), "-");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(list::<String>(&[]), "-");
        assert_eq!(list(&["a", "b"]), "a, b");
        assert_eq!(seconds(0.25), "250 ms");
        assert_eq!(seconds(42.4), "42 s");
        assert_eq!(seconds(200.0), "3 min 20 s");
        assert_eq!(seconds(7500.0), "2 h 05 min");
        assert_eq!(seconds(90_000.0), "1 d 01 h");
        assert_eq!(seconds(f64::NAN), "-");
    }
}
