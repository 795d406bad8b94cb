//! `storage …` (storage targets) and `tags …` (path tags).

use std::io::{BufRead as _, Read as _};
use std::process::ExitCode;

use alto_api_types::{
    CreateStorageTarget, CreateTag, PathTagEntry, StorageCheckStatus, StorageHealth, StorageTarget,
    StorageTestResult, UpdateStorageTarget,
};
use anyhow::{Context as _, Result};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::Ctx;
use crate::args::{ConfigArgs, StorageCmd, TagsCmd};
use crate::{output, CodedError};

/// Exit code of `storage test` when the server could not check the target.
pub(crate) const EXIT_UNCHECKED: u8 = 4;

/// Config fields that hold secrets: never accepted from `--set` (the command line is visible
/// to every user of the machine and kept in shell history).
const SECRET_KEYS: [&str; 3] = ["secret_access_key", "access_key", "password"];

fn status_word(s: StorageCheckStatus) -> &'static str {
    match s {
        StorageCheckStatus::Ok => "ok",
        StorageCheckStatus::Failed => "FAILED",
        StorageCheckStatus::Unchecked => "unchecked",
    }
}

fn health_cell(h: Option<&StorageHealth>) -> String {
    match h {
        None => "-".to_owned(),
        Some(h) => match &h.error {
            Some(e) => format!("{} ({})", status_word(h.status), code_str(e.code)),
            None => status_word(h.status).to_owned(),
        },
    }
}

fn code_str(c: alto_api_types::StorageCheckCode) -> String {
    serde_json::to_value(c).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

fn usage_cell(h: Option<&StorageHealth>) -> String {
    h.and_then(|h| h.usage).map_or_else(
        || "-".to_owned(),
        |u| format!("{} objects, {}", u.objects, output::bytes(u.bytes)),
    )
}

fn target_row(t: &StorageTarget) -> Vec<String> {
    vec![
        t.id.to_string(),
        t.name.clone(),
        t.kind.clone(),
        t.location.clone(),
        health_cell(t.health.as_ref()),
        output::opt_ts(t.health.as_ref().map(|h| h.checked_at)),
        usage_cell(t.health.as_ref()),
    ]
}

const TARGET_HEADER: [&str; 7] = ["ID", "NAME", "KIND", "LOCATION", "HEALTH", "CHECKED", "USAGE"];

fn show_target(t: &StorageTarget) {
    let h = t.health.as_ref();
    let mut f = vec![
        ("id", t.id.to_string()),
        ("tenant", t.tenant_id.to_string()),
        ("name", t.name.clone()),
        ("kind", t.kind.clone()),
        ("location", t.location.clone()),
        ("config", t.config.to_string()),
        ("created", output::ts(t.created_at)),
        ("updated", output::opt_ts(t.updated_at)),
        ("health", health_cell(h)),
        ("checked", output::opt_ts(h.map(|h| h.checked_at))),
        ("latency", output::opt(h.and_then(|h| h.latency_ms).map(|ms| format!("{ms} ms")))),
    ];
    if let Some(e) = h.and_then(|h| h.error.as_ref()) {
        f.push(("error", e.message.clone()));
    }
    f.push(("usage", usage_cell(h)));
    output::fields(f);
}

fn show_test(r: &StorageTestResult) {
    let mut f = vec![
        ("target", format!("{} ({})", r.name, r.target_id)),
        ("status", status_word(r.status).to_owned()),
        ("checked", output::ts(r.checked_at)),
        ("latency", output::opt(r.latency_ms.map(|ms| format!("{ms} ms")))),
    ];
    if let Some(e) = &r.error {
        f.push(("error", format!("{} ({})", e.message, code_str(e.code))));
    }
    f.push((
        "usage",
        r.usage.map_or_else(
            || "-".to_owned(),
            |u| format!("{} objects, {}", u.objects, output::bytes(u.bytes)),
        ),
    ));
    output::fields(f);
}

fn read_source(path: &std::path::Path) -> Result<String> {
    if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).context("cannot read standard input")?;
        Ok(s)
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
    }
}

fn strip_newline(mut s: String) -> String {
    if s.ends_with('\n') {
        s.pop();
        if s.ends_with('\r') {
            s.pop();
        }
    }
    s
}

/// The config the flags describe: the file's object, then `--set`, then secrets.
fn build_config(a: &ConfigArgs) -> Result<Map<String, Value>> {
    let mut m = match &a.config_file {
        None => Map::new(),
        Some(p) => match serde_json::from_str::<Value>(&read_source(p)?) {
            Ok(Value::Object(m)) => m,
            Ok(_) => {
                return Err(CodedError::new(
                    "invalid_config",
                    format!("{}: the config file must hold a JSON object", p.display()),
                )
                .into())
            }
            Err(e) => {
                return Err(CodedError::new(
                    "invalid_config",
                    format!("{}: not JSON: {e}", p.display()),
                )
                .into())
            }
        },
    };
    for kv in &a.set {
        let Some((k, v)) = kv.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            return Err(CodedError::new("usage", format!("--set {kv:?}: use KEY=VALUE")).into());
        };
        if SECRET_KEYS.contains(&k) {
            return Err(CodedError::new(
                "usage",
                format!(
                    "--set {k}=…: {k} is a secret; read it from a file with --secret {k}=FILE \
                     or from standard input with --secret-stdin {k}"
                ),
            )
            .into());
        }
        let v = match v {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            s => Value::String(s.to_owned()),
        };
        m.insert(k.to_owned(), v);
    }
    for kf in &a.secret {
        let Some((k, f)) = kf.split_once('=').filter(|(k, f)| !k.is_empty() && !f.is_empty())
        else {
            return Err(CodedError::new("usage", format!("--secret {kf:?}: use KEY=FILE")).into());
        };
        let v = strip_newline(read_source(std::path::Path::new(f))?);
        m.insert(k.to_owned(), Value::String(v));
    }
    if let Some(k) = &a.secret_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("cannot read standard input")?;
        m.insert(k.clone(), Value::String(strip_newline(line)));
    }
    Ok(m)
}

/// A target named by ID, or by name (looked up in the tenant's list).
async fn resolve(ctx: &Ctx, tenant: Uuid, target: &str) -> Result<Uuid> {
    if let Ok(id) = target.parse::<Uuid>() {
        return Ok(id);
    }
    let list = ctx.client.list_storage_targets(tenant).await?;
    list.iter().find(|t| t.name == target).map(|t| t.id).ok_or_else(|| {
        CodedError::new("not_found", format!("no storage target named {target:?}")).into()
    })
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
        StorageCmd::Get { target, tenant } => {
            let tenant = ctx.tenant(tenant).await?;
            let id = resolve(ctx, tenant, &target).await?;
            let t = c.get_storage_target(tenant, id).await?;
            if ctx.json() {
                output::json(&t)?;
            } else {
                show_target(&t);
            }
        }
        StorageCmd::Create { name_arg, name, kind, location, config, tenant } => {
            let config = Value::Object(build_config(&config)?);
            let tenant = ctx.tenant(tenant).await?;
            let name = name_arg.or(name).unwrap_or_default();
            let t = c
                .create_storage_target(
                    tenant,
                    &CreateStorageTarget { name, kind, location, config },
                )
                .await?;
            if ctx.json() {
                output::json(&t)?;
            } else {
                outln!("Created storage target {} ({}).", t.name, t.id);
                show_target(&t);
            }
        }
        StorageCmd::Update { target, kind, location, unset, config, tenant } => {
            let mut patch = build_config(&config)?;
            for k in unset {
                patch.insert(k, Value::Null);
            }
            let tenant = ctx.tenant(tenant).await?;
            let id = resolve(ctx, tenant, &target).await?;
            let req = UpdateStorageTarget {
                kind,
                location,
                config: (!patch.is_empty()).then_some(Value::Object(patch)),
            };
            let t = c.update_storage_target(tenant, id, &req).await?;
            if ctx.json() {
                output::json(&t)?;
            } else {
                outln!("Updated storage target {} ({}).", t.name, t.id);
                show_target(&t);
            }
        }
        StorageCmd::Test { target, tenant } => {
            let tenant = ctx.tenant(tenant).await?;
            let id = resolve(ctx, tenant, &target).await?;
            let r = c.test_storage_target(tenant, id).await?;
            if ctx.json() {
                output::json(&r)?;
            } else {
                show_test(&r);
            }
            return Ok(match r.status {
                StorageCheckStatus::Ok => ExitCode::SUCCESS,
                StorageCheckStatus::Failed => ExitCode::FAILURE,
                StorageCheckStatus::Unchecked => ExitCode::from(EXIT_UNCHECKED),
            });
        }
        StorageCmd::Delete { target, tenant } => {
            let tenant = ctx.tenant(tenant).await?;
            let id = resolve(ctx, tenant, &target).await?;
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
