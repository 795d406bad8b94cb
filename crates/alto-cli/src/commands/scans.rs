//! `scans list` and `scans get`.

use std::process::ExitCode;

use alto_api_types::Scan;
use anyhow::Result;

use super::{more_hint, pages, Ctx};
use crate::args::ScansCmd;
use crate::output;

/// The ingest counters of a scan's `stats`, in a fixed order.
const STATS: [&str; 5] = ["rows", "inserted", "updated", "unchanged", "deleted"];

fn stat(s: &Scan, key: &str) -> Option<String> {
    s.stats.get(key).filter(|v| !v.is_null()).map(|v| match v {
        serde_json::Value::String(t) => t.clone(),
        other => other.to_string(),
    })
}

/// `inserted 3, updated 1, …` once ingested, else `-`.
fn stats_line(s: &Scan) -> String {
    let parts: Vec<String> =
        STATS[1..].iter().filter_map(|k| stat(s, k).map(|v| format!("{k} {v}"))).collect();
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join(", ")
    }
}

fn parts(s: &Scan) -> String {
    output::opt(s.parts_expected)
}

fn show(s: &Scan) {
    let mut f = vec![
        ("id", s.id.to_string()),
        ("host", s.host_id.to_string()),
        ("kind", s.kind.clone()),
        ("status", s.status.clone()),
        ("parts", parts(s)),
        ("rows staged", s.rows_staged.to_string()),
        ("bytes received", output::bytes(s.bytes_received)),
        ("error", output::opt(s.error.as_deref())),
        ("created", output::ts(s.created_at)),
        ("completed", output::opt_ts(s.completed_at)),
    ];
    for k in STATS {
        if let Some(v) = stat(s, k) {
            f.push((k, v));
        }
    }
    output::fields(f);
}

pub(super) async fn run(ctx: &Ctx, cmd: ScansCmd) -> Result<ExitCode> {
    let c = &ctx.client;
    match cmd {
        ScansCmd::List { host, page, tenant } => {
            let tenant = ctx.tenant(tenant).await?;
            let list = pages(&page, |limit, cursor| async move {
                c.list_scans(tenant, host, limit, cursor.as_deref()).await
            })
            .await?;
            if ctx.json() {
                output::json(&list)?;
            } else {
                let rows = list
                    .items
                    .iter()
                    .map(|s| {
                        vec![
                            s.id.to_string(),
                            output::short_id(s.host_id),
                            s.kind.clone(),
                            s.status.clone(),
                            parts(s),
                            s.rows_staged.to_string(),
                            output::bytes(s.bytes_received),
                            output::ts(s.created_at),
                            output::opt(s.error.as_deref()),
                            stats_line(s),
                        ]
                    })
                    .collect();
                output::table(
                    &[
                        "ID", "HOST", "KIND", "STATUS", "PARTS", "ROWS", "BYTES", "CREATED",
                        "ERROR", "STATS",
                    ],
                    rows,
                );
                more_hint(list.next_cursor.as_deref());
            }
        }
        ScansCmd::Get { scan_id, tenant } => {
            let tenant = ctx.tenant(tenant).await?;
            let s = c.get_scan(tenant, scan_id).await?;
            if ctx.json() {
                output::json(&s)?;
            } else {
                show(&s);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
