//! Cron schedules for rules: five fields (minute hour day-of-month month day-of-week), UTC.

use chrono::{DateTime, Utc};

/// Parses a five-field cron expression; the error says what is wrong.
pub fn parse(expr: &str) -> Result<croner::Cron, String> {
    let fields = expr.split_whitespace().count();
    if fields != 5 {
        return Err(format!(
            "`{expr}` has {fields} fields; a schedule has five (minute hour day-of-month month day-of-week)"
        ));
    }
    croner::Cron::new(expr)
        .parse()
        .map_err(|e| format!("`{expr}` is not a valid cron expression: {e}"))
}

/// The first time strictly after `after` the schedule fires.
pub fn next_after(cron: &croner::Cron, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    cron.find_next_occurrence(&after, false).ok()
}

/// Whether a schedule last fired at `last` (or never, counting from `since`) is due at `now`:
/// returns the firing time that is due.
pub fn due(
    cron: &croner::Cron,
    last: Option<DateTime<Utc>>,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let from = last.unwrap_or(since);
    next_after(cron, from).filter(|t| *t <= now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn schedules() {
        let c = parse("30 2 * * *").unwrap();
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 3, 0, 0).unwrap();
        assert_eq!(next_after(&c, t), Some(Utc.with_ymd_and_hms(2026, 1, 2, 2, 30, 0).unwrap()));
        let since = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(
            due(&c, None, since, t),
            Some(Utc.with_ymd_and_hms(2026, 1, 1, 2, 30, 0).unwrap())
        );
        assert_eq!(
            due(&c, Some(Utc.with_ymd_and_hms(2026, 1, 1, 2, 30, 0).unwrap()), since, t),
            None
        );
        assert!(parse("* * * *").unwrap_err().contains("five"));
        assert!(parse("61 * * * *").is_err());
        assert!(parse("0 0 31 2 * *").is_err());
    }
}
