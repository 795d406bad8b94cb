//! `storage …` (storage targets) and `tags …` (path tags).

use std::process::ExitCode;

use alto_api_types::{CreateStorageTarget, CreateTag, PathTagEntry, StorageTarget};
use anyhow::Result;

use super::Ctx;
use crate::args::{StorageCmd, TagsCmd};
use crate::output;

fn target_row(t: &StorageTarget) -> Vec<String> {
    vec![
        t.id.to_string(),
        t.name.clone(),
        t.kind.clone(),
        t.location.clone(),
        output::ts(t.created_at),
    ]
}

const TARGET_HEADER: [&str; 5] = ["ID", "NAME", "KIND", "LOCATION", "CREATED"];

fn show_target(t: &StorageTarget) {
    output::fields(vec![
        ("id", t.id.to_string()),
        ("tenant", t.tenant_id.to_string()),
        ("name", t.name.clone()),
        ("kind", t.kind.clone()),
        ("location", t.location.clone()),
        ("created", output::ts(t.created_at)),
    ]);
}

pub(super) async fn storage(ctx: &Ctx, cmd: StorageCmd) -> Result<ExitCode> {
    let c = &ctx.client;
    match cmd {
        StorageCmd::List { tenant } => {
            let tenant = ctx.tenant(tenant).await?;
            let list = c.list_storage_targets(tenant).await?;
            if ctx.json() {
                output::json(&list)?;
            } else {
                output::table(&TARGET_HEADER, list.iter().map(target_row).collect());
            }
        }
        StorageCmd::Get { id, tenant } => {
            let tenant = ctx.tenant(tenant).await?;
            let t = c.get_storage_target(tenant, id).await?;
            if ctx.json() {
                output::json(&t)?;
            } else {
                show_target(&t);
            }
        }
        StorageCmd::Create { name, kind, location, tenant } => {
            let tenant = ctx.tenant(tenant).await?;
            let t = c
                .create_storage_target(tenant, &CreateStorageTarget { name, kind, location })
                .await?;
            if ctx.json() {
                output::json(&t)?;
            } else {
                outln!("Created storage target {} ({}).", t.name, t.id);
                show_target(&t);
            }
        }
        StorageCmd::Delete { id, tenant } => {
            let tenant = ctx.tenant(tenant).await?;
            let t = c.delete_storage_target(tenant, id).await?;
            if ctx.json() {
                output::json(&t)?;
            } else {
                outln!("Deleted storage target {} ({}).", t.name, t.id);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn tag_row(t: &PathTagEntry) -> Vec<String> {
    vec![
        t.id.to_string(),
        t.host_id.map_or_else(|| "(every host)".to_owned(), |h| h.to_string()),
        t.path.clone(),
        t.key.clone(),
        if t.value.is_empty() { "-".to_owned() } else { t.value.clone() },
        output::ts(t.created_at),
    ]
}

const TAG_HEADER: [&str; 6] = ["ID", "HOST", "PATH", "KEY", "VALUE", "CREATED"];

pub(super) async fn tags(ctx: &Ctx, cmd: TagsCmd) -> Result<ExitCode> {
    let c = &ctx.client;
    match cmd {
        TagsCmd::List { host, tenant } => {
            let tenant = ctx.tenant(tenant).await?;
            let list = c.list_tags(tenant, host).await?;
            if ctx.json() {
                output::json(&list)?;
            } else {
                output::table(&TAG_HEADER, list.iter().map(tag_row).collect());
            }
        }
        TagsCmd::Add { path, key, value, host, tenant } => {
            let tenant = ctx.tenant(tenant).await?;
            let t = c.create_tag(tenant, &CreateTag { host_id: host, path, key, value }).await?;
            if ctx.json() {
                output::json(&t)?;
            } else {
                outln!("Tagged {} with {} ({}).", t.path, t.key, t.id);
                output::table(&TAG_HEADER, vec![tag_row(&t)]);
            }
        }
        TagsCmd::Delete { id, tenant } => {
            let tenant = ctx.tenant(tenant).await?;
            let t = c.delete_tag(tenant, id).await?;
            if ctx.json() {
                output::json(&t)?;
            } else {
                outln!("Deleted tag {} on {} ({}).", t.key, t.path, t.id);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
