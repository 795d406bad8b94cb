//! `audit list` and `audit verify`.

use std::process::ExitCode;

use alto_api_types::{AuditEntry, ChainStatus};
use alto_client::AuditQuery;
use anyhow::Result;

use super::{collect, more_hint, Ctx};
use crate::args::AuditCmd;
use crate::output;

/// Exit code of `audit verify` when a chain is broken.
pub(crate) const EXIT_CHAIN_BROKEN: u8 = 3;

fn kind_and(kind: &str, what: Option<&str>) -> String {
    match what {
        Some(w) => format!("{kind}:{w}"),
        None => kind.to_owned(),
    }
}

fn row(e: &AuditEntry) -> Vec<String> {
    vec![
        e.seq.to_string(),
        output::ts(e.occurred_at),
        kind_and(&e.actor_kind, e.actor_name.as_deref().or(e.actor_id.as_deref())),
        e.action.clone(),
        e.target_kind
            .as_deref()
            .map_or_else(|| "-".to_owned(), |k| kind_and(k, e.target_id.as_deref())),
        e.outcome.clone(),
        output::opt(e.source_ip.as_deref()),
    ]
}

fn chain_name(c: &ChainStatus) -> String {
    c.tenant_id.map_or_else(|| "platform".to_owned(), |t| format!("tenant {t}"))
}

pub(super) async fn run(ctx: &Ctx, cmd: AuditCmd) -> Result<ExitCode> {
    let c = &ctx.client;
    match cmd {
        AuditCmd::List { scope, limit, cursor, action, outcome, all } => {
            let scope = ctx.scope(scope).await?;
            let base = AuditQuery { limit, cursor: None, action, outcome };
            let base = &base;
            let list = collect(limit, cursor, all, |_, cursor| async move {
                c.list_audit(scope, &AuditQuery { cursor, ..base.clone() }).await
            })
            .await?;
            if ctx.json() {
                output::json(&list)?;
            } else {
                output::table(
                    &["SEQ", "TIME", "ACTOR", "ACTION", "TARGET", "OUTCOME", "SOURCE IP"],
                    list.items.iter().map(row).collect(),
                );
                more_hint(list.next_cursor.as_deref());
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCmd::Verify { scope } => {
            let scope = ctx.scope(scope).await?;
            let report = c.verify_audit(scope).await?;
            if ctx.json() {
                output::json(&report)?;
            } else {
                for chain in &report.chains {
                    let name = chain_name(chain);
                    match (&chain.fault, chain.ok) {
                        (None, true) => outln!(
                            "{name}: OK: {} entries (head seq {})",
                            chain.entries_checked,
                            chain.head_seq
                        ),
                        (Some(f), _) => {
                            outln!("{name}: BROKEN: {} at seq {}: {}", f.kind, f.seq, f.message)
                        }
                        (None, false) => outln!("{name}: BROKEN (no details given)"),
                    }
                }
                let broken = report.chains.iter().filter(|c| !c.ok).count();
                if report.ok {
                    outln!("Audit trail intact: {} chain(s) verified.", report.chains.len());
                } else {
                    eprintln!(
                        "audit verification FAILED: {broken} of {} chain(s) broken",
                        report.chains.len()
                    );
                }
            }
            Ok(if report.ok { ExitCode::SUCCESS } else { ExitCode::from(EXIT_CHAIN_BROKEN) })
        }
    }
}
