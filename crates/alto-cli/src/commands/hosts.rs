//! `hosts …` and `credentials …`.

use std::process::ExitCode;

use alto_api_types::{CreateHost, Credential, EnrollmentToken, Host, UpdateHost};
use anyhow::Result;

use super::{more_hint, pages, Ctx};
use crate::args::{CredentialsCmd, HostsCmd};
use crate::output;

fn show(h: &Host) {
    let volumes = h
        .volumes
        .iter()
        .map(|v| {
            format!(
                "{} ({} free of {})",
                v.mount_point,
                output::bytes(i64::try_from(v.free_bytes).unwrap_or(i64::MAX)),
                output::bytes(i64::try_from(v.total_bytes).unwrap_or(i64::MAX))
            )
        })
        .collect::<Vec<_>>();
    output::fields(vec![
        ("id", h.id.to_string()),
        ("tenant", h.tenant_id.to_string()),
        ("name", h.name.clone()),
        ("description", output::opt(h.description.as_deref())),
        ("status", h.status.clone()),
        ("hostname", output::opt(h.reported_hostname.as_deref())),
        ("os", output::opt(h.os.as_deref())),
        ("agent version", output::opt(h.agent_version.as_deref())),
        ("last seen", output::opt_ts(h.last_seen_at)),
        ("last scan", output::opt_ts(h.last_scan_at)),
        ("files", h.file_count.to_string()),
        ("size", output::bytes(h.total_bytes)),
        ("groups", output::list(&h.groups)),
        ("volumes", if volumes.is_empty() { "-".to_owned() } else { volumes.join("\n") }),
        ("on-access recall", on_access(h)),
        ("created", output::ts(h.created_at)),
    ]);
}

/// The agent's on-access recall report: its state (and why), then one line per managed file
/// system.
fn on_access(h: &Host) -> String {
    let Some(o) = &h.on_access else {
        return "not reported".to_owned();
    };
    let mut lines = vec![format!(
        "{}{}{}{}",
        o.state,
        o.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default(),
        if o.survives_restart { ", survives agent restarts" } else { "" },
        h.on_access_reported_at
            .map(|t| format!(", reported {}", output::ts(t)))
            .unwrap_or_default(),
    )];
    for f in &o.filesystems {
        lines.push(format!(
            "{} [{}]: {}{}",
            f.path,
            f.fs_type.as_deref().unwrap_or("?"),
            f.state,
            f.error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default()
        ));
    }
    lines.join("\n")
}

fn print_host(ctx: &Ctx, h: &Host) -> Result<()> {
    if ctx.json() {
        output::json(h)
    } else {
        show(h);
        Ok(())
    }
}

/// The one-time token, set apart so it is not missed.
fn show_token(host: &str, t: &EnrollmentToken) {
    outln!();
    outln!("Enrollment token for {host} (shown once; expires {}):", output::ts(t.expires_at));
    outln!();
    outln!("    {}", t.token);
    outln!();
    outln!("Give it to the Alto agent on the host to enroll; it works once.");
}

pub(super) async fn run(ctx: &Ctx, cmd: HostsCmd) -> Result<ExitCode> {
    let c = &ctx.client;
    match cmd {
        HostsCmd::List { status, tenant, page } => {
            let tenant = ctx.tenant(tenant).await?;
            let status = status.as_deref();
            let list = pages(&page, |limit, cursor| async move {
                c.list_hosts(tenant, status, limit, cursor.as_deref()).await
            })
            .await?;
            if ctx.json() {
                output::json(&list)?;
            } else {
                let rows = list
                    .items
                    .iter()
                    .map(|h| {
                        vec![
                            h.id.to_string(),
                            h.name.clone(),
                            h.status.clone(),
                            output::opt_ts(h.last_seen_at),
                            output::opt(h.agent_version.as_deref()),
                            h.file_count.to_string(),
                            output::bytes(h.total_bytes),
                            output::list(&h.groups),
                        ]
                    })
                    .collect();
                output::table(
                    &["ID", "NAME", "STATUS", "LAST SEEN", "AGENT", "FILES", "SIZE", "GROUPS"],
                    rows,
                );
                more_hint(list.next_cursor.as_deref());
            }
        }
        HostsCmd::Create { name, description, tenant } => {
            let tenant = ctx.tenant(tenant).await?;
            let created = c.create_host(tenant, &CreateHost { name, description }).await?;
            if ctx.json() {
                output::json(&created)?;
            } else {
                outln!("Registered host {} ({}).", created.host.name, created.host.id);
                show_token(&created.host.name, &created.enrollment);
            }
        }
        HostsCmd::Get { id, tenant } => {
            let tenant = ctx.tenant(tenant).await?;
            print_host(ctx, &c.get_host(tenant, id).await?)?;
        }
        HostsCmd::Update {
            id,
            name,
            description,
            bandwidth_limit,
            recall_bandwidth_limit,
            tenant,
        } => {
            let tenant = ctx.tenant(tenant).await?;
            let req = UpdateHost {
                name,
                description,
                bandwidth_limit_bytes_per_second: bandwidth_limit,
                recall_bandwidth_limit_bytes_per_second: recall_bandwidth_limit,
            };
            print_host(ctx, &c.update_host(tenant, id, &req).await?)?;
        }
        HostsCmd::Decommission { id, tenant } => {
            let tenant = ctx.tenant(tenant).await?;
            let h = c.decommission_host(tenant, id).await?;
            if ctx.json() {
                output::json(&h)?;
            } else {
                outln!("Host {} ({}) is {}.", h.name, h.id, h.status);
            }
        }
        HostsCmd::Groups { host_id, groups, clear: _, tenant } => {
            let tenant = ctx.tenant(tenant).await?;
            let h = c.set_host_groups(tenant, host_id, &groups).await?;
            if ctx.json() {
                output::json(&h)?;
            } else if h.groups.is_empty() {
                outln!("Host {} ({}) is in no groups.", h.name, h.id);
            } else {
                outln!("Host {} ({}) is in groups: {}.", h.name, h.id, h.groups.join(", "));
            }
        }
        HostsCmd::EnrollmentToken { id, tenant } => {
            let tenant = ctx.tenant(tenant).await?;
            let t = c.new_enrollment_token(tenant, id).await?;
            if ctx.json() {
                output::json(&t)?;
            } else {
                show_token(&id.to_string(), &t);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn credential_row(k: &Credential) -> Vec<String> {
    vec![
        k.id.to_string(),
        k.state.clone(),
        k.created_via.clone(),
        output::ts(k.created_at),
        output::opt_ts(k.last_used_at),
        output::opt_ts(k.expires_at),
        output::opt_ts(k.revoked_at),
    ]
}

const CREDENTIAL_HEADER: [&str; 7] =
    ["ID", "STATE", "CREATED VIA", "CREATED", "LAST USED", "EXPIRES", "REVOKED"];

pub(super) async fn credentials(ctx: &Ctx, cmd: CredentialsCmd) -> Result<ExitCode> {
    let c = &ctx.client;
    match cmd {
        CredentialsCmd::List { host_id, tenant } => {
            let tenant = ctx.tenant(tenant).await?;
            let list = c.list_credentials(tenant, host_id).await?;
            if ctx.json() {
                output::json(&list)?;
            } else {
                output::table(&CREDENTIAL_HEADER, list.iter().map(credential_row).collect());
            }
        }
        CredentialsCmd::Revoke { host_id, credential_id, tenant } => {
            let tenant = ctx.tenant(tenant).await?;
            let k = c.revoke_credential(tenant, host_id, credential_id).await?;
            if ctx.json() {
                output::json(&k)?;
            } else {
                outln!("Credential {} is {}.", k.id, k.state);
                output::table(&CREDENTIAL_HEADER, vec![credential_row(&k)]);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
