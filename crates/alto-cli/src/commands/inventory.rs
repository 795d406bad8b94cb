//! `inventory summary` and `inventory files`.

use std::process::ExitCode;

use alto_api_types::{InventoryBucket, InventoryFile};
use alto_model::{Clock as _, SystemClock};
use anyhow::{anyhow, Result};
use chrono::{DateTime, Duration, SecondsFormat, Utc};

use super::{collect, more_hint, Ctx};
use crate::args::{FilesArgs, InventoryCmd};
use crate::output;

fn buckets(title: &str, key: &str, list: &[InventoryBucket]) {
    outln!();
    outln!("{title}:");
    let rows = list
        .iter()
        .map(|b| vec![b.key.clone(), b.files.to_string(), output::bytes(b.bytes)])
        .collect();
    output::table(&[key, "FILES", "SIZE"], rows);
}

fn flags(f: &InventoryFile) -> String {
    let mut v = Vec::new();
    if f.is_stubbed || f.scan_is_stub {
        v.push("stub");
    }
    if f.deleted_at.is_some() {
        v.push("deleted");
    }
    if v.is_empty() {
        "-".to_owned()
    } else {
        v.join(",")
    }
}

fn file_row(f: &InventoryFile) -> Vec<String> {
    let path =
        if f.path_escaped { format!("{} (escaped)", f.file_path) } else { f.file_path.clone() };
    vec![
        path,
        output::bytes(f.file_size),
        output::opt_ts(f.last_accessed),
        output::opt_ts(f.last_modified),
        output::opt(f.owner.as_deref()),
        output::short_id(f.host_id),
        flags(f),
    ]
}

/// The instant `days` days before `now`, as RFC 3339.
fn days_before(now: DateTime<Utc>, days: i64) -> Result<String> {
    let t = Duration::try_days(days)
        .and_then(|d| now.checked_sub_signed(d))
        .ok_or_else(|| anyhow!("{days} days before now is out of range"))?;
    Ok(t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// The API query of `inventory files`, without `limit` and `cursor`.
fn files_query(a: &FilesArgs, now: DateTime<Utc>) -> Result<Vec<(&'static str, String)>> {
    if let (Some(min), Some(max)) = (a.min_size, a.max_size) {
        if min > max {
            return Err(anyhow!("--min-size ({min}) is larger than --max-size ({max})"));
        }
    }
    let rfc = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::AutoSi, true);
    let mut q = Vec::new();
    if let Some(h) = a.host {
        q.push(("host_id", h.to_string()));
    }
    if let Some(p) = &a.path_prefix {
        q.push(("path_prefix", p.clone()));
    }
    if let Some(e) = &a.extension {
        q.push(("extension", e.clone()));
    }
    if let Some(v) = a.min_size {
        q.push(("min_size", v.to_string()));
    }
    if let Some(v) = a.max_size {
        q.push(("max_size", v.to_string()));
    }
    if let Some(t) = a.accessed_before {
        q.push(("accessed_before", rfc(t)));
    } else if let Some(d) = a.accessed_older_than {
        q.push(("accessed_before", days_before(now, d)?));
    }
    if let Some(t) = a.modified_before {
        q.push(("modified_before", rfc(t)));
    } else if let Some(d) = a.modified_older_than {
        q.push(("modified_before", days_before(now, d)?));
    }
    if a.include_deleted {
        q.push(("include_deleted", "true".to_owned()));
    }
    Ok(q)
}

pub(super) async fn run(ctx: &Ctx, cmd: InventoryCmd) -> Result<ExitCode> {
    let c = &ctx.client;
    match cmd {
        InventoryCmd::Summary { host, tenant } => {
            let tenant = ctx.tenant(tenant).await?;
            let s = c.inventory_summary(tenant, host).await?;
            if ctx.json() {
                output::json(&s)?;
            } else {
                output::fields(vec![
                    ("files", s.files.to_string()),
                    ("size", output::bytes(s.bytes)),
                ]);
                buckets("By extension", "EXTENSION", &s.by_extension);
                buckets("By last access", "ACCESSED", &s.accessed_age);
                buckets("By last modification", "MODIFIED", &s.modified_age);
                buckets("Largest directories", "DIRECTORY", &s.largest_directories);
            }
        }
        InventoryCmd::Files(a) => {
            let base = files_query(&a, SystemClock.now())?;
            let tenant = ctx.tenant(a.tenant).await?;
            let base = &base;
            let list = collect(a.page.limit, a.page.cursor.clone(), a.page.all, |limit, cursor| {
                let mut q = base.clone();
                if let Some(l) = limit {
                    q.push(("limit", l.to_string()));
                }
                if let Some(cur) = cursor {
                    q.push(("cursor", cur));
                }
                async move { c.inventory_files(tenant, &q).await }
            })
            .await?;
            if ctx.json() {
                output::json(&list)?;
            } else {
                output::table(
                    &["PATH", "SIZE", "LAST ACCESSED", "LAST MODIFIED", "OWNER", "HOST", "FLAGS"],
                    list.items.iter().map(file_row).collect(),
                );
                more_hint(list.next_cursor.as_deref());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn args(extra: &[&str]) -> FilesArgs {
        let mut argv = vec!["altoctl", "inventory", "files"];
        argv.extend_from_slice(extra);
        match crate::args::Cli::try_parse_from(argv).expect("parses").command {
            crate::args::Command::Inventory(InventoryCmd::Files(a)) => a,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn older_than_becomes_an_instant() {
        let now =
            DateTime::parse_from_rfc3339("2026-06-01T12:00:00Z").expect("time").with_timezone(&Utc);
        let q = files_query(
            &args(&["--accessed-older-than", "30", "--extension", "PDF", "--min-size", "1K"]),
            now,
        )
        .expect("query");
        assert!(q.contains(&("accessed_before", "2026-05-02T12:00:00Z".to_owned())), "{q:?}");
        assert!(q.contains(&("extension", ".pdf".to_owned())), "{q:?}");
        assert!(q.contains(&("min_size", "1024".to_owned())), "{q:?}");
        let q = files_query(&args(&["--modified-before", "2025-01-31T01:00:00+01:00"]), now)
            .expect("query");
        assert_eq!(q, vec![("modified_before", "2025-01-31T00:00:00Z".to_owned())]);
        assert!(files_query(&args(&["--min-size", "10", "--max-size", "5"]), now).is_err());
    }

    #[test]
    fn conflicting_and_bad_filters_are_usage_errors() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["altoctl", "inventory", "files"];
            argv.extend_from_slice(extra);
            crate::args::Cli::try_parse_from(argv).map(|_| ())
        };
        assert!(parse(&[
            "--accessed-before",
            "2025-01-01T00:00:00Z",
            "--accessed-older-than",
            "3"
        ])
        .is_err());
        assert!(parse(&["--min-size", "-5"]).is_err());
        assert!(parse(&["--modified-before", "yesterday"]).is_err());
    }

    #[test]
    fn escaped_paths_and_flags_are_marked() {
        let f = InventoryFile {
            id: uuid::Uuid::nil(),
            host_id: uuid::Uuid::nil(),
            file_path: "/data/caf\\xe9".into(),
            path_escaped: true,
            file_size: 10,
            last_modified: None,
            last_accessed: None,
            file_extension: None,
            permissions: None,
            owner: None,
            is_stubbed: true,
            scan_is_stub: false,
            deleted_at: Some(DateTime::<Utc>::MIN_UTC),
            last_scan_time: None,
        };
        let row = file_row(&f);
        assert_eq!(row[0], "/data/caf\\xe9 (escaped)");
        assert_eq!(row[5], "00000000");
        assert_eq!(output::short_id(uuid::Uuid::max()), "ffffffff");
        assert_eq!(row[6], "stub,deleted");
    }
}
