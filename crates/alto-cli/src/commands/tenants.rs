//! `tenants …`

use std::process::ExitCode;

use alto_api_types::{CreateTenant, CreateUser, Tenant, UpdateTenant};
use alto_model::Role;
use anyhow::Result;

use super::{more_hint, pages, Ctx};
use crate::args::TenantsCmd;
use crate::output;

fn show(t: &Tenant) {
    output::fields(vec![
        ("id", t.id.to_string()),
        ("name", t.name.clone()),
        ("status", t.status.clone()),
        ("tier-2 location", t.tier2_location.clone()),
        ("created", output::ts(t.created_at)),
        ("updated", output::ts(t.updated_at)),
    ]);
}

pub(super) async fn run(ctx: &Ctx, cmd: TenantsCmd) -> Result<ExitCode> {
    let c = &ctx.client;
    match cmd {
        TenantsCmd::List(page) => {
            let list = pages(&page, |limit, cursor| async move {
                c.list_tenants(limit, cursor.as_deref()).await
            })
            .await?;
            if ctx.json() {
                output::json(&list)?;
            } else {
                let rows = list
                    .items
                    .iter()
                    .map(|t| {
                        vec![
                            t.id.to_string(),
                            t.name.clone(),
                            t.status.clone(),
                            output::ts(t.created_at),
                        ]
                    })
                    .collect();
                output::table(&["ID", "NAME", "STATUS", "CREATED"], rows);
                more_hint(list.next_cursor.as_deref());
            }
        }
        TenantsCmd::Create { name, admin_username, admin_password, admin_display_name } => {
            let admin = match (admin_username, admin_password) {
                (Some(username), Some(password)) => Some(CreateUser {
                    username,
                    password,
                    display_name: admin_display_name,
                    roles: vec![Role::TenantAdmin],
                }),
                _ => None,
            };
            let created = c.create_tenant(&CreateTenant { name, admin }).await?;
            if ctx.json() {
                output::json(&created)?;
            } else {
                outln!("Created tenant {} ({}).", created.tenant.name, created.tenant.id);
                show(&created.tenant);
                if let Some(a) = &created.admin {
                    outln!("Tenant administrator: {} ({}).", a.username, a.id);
                }
            }
        }
        TenantsCmd::Get { id } => {
            let t = c.get_tenant(id).await?;
            if ctx.json() {
                output::json(&t)?;
            } else {
                show(&t);
            }
        }
        TenantsCmd::Update { id, name, status } => {
            let t = c.update_tenant(id, &UpdateTenant { name, status }).await?;
            if ctx.json() {
                output::json(&t)?;
            } else {
                show(&t);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
