//! `users …` and `roles set`.

use std::process::ExitCode;

use alto_api_types::{CreateUser, UpdateUser, User};
use anyhow::Result;

use super::{more_hint, pages, Ctx};
use crate::args::{RolesCmd, UsersCmd};
use crate::output;

fn show(u: &User) {
    output::fields(vec![
        ("id", u.id.to_string()),
        ("username", u.username.clone()),
        ("display name", output::opt(u.display_name.as_deref())),
        ("tenant", u.tenant_id.map_or_else(|| "(platform)".to_owned(), |t| t.to_string())),
        ("roles", output::list(&u.roles)),
        ("disabled", u.disabled.to_string()),
        ("created", output::ts(u.created_at)),
        ("updated", output::ts(u.updated_at)),
    ]);
}

fn print_user(ctx: &Ctx, u: &User) -> Result<()> {
    if ctx.json() {
        output::json(u)
    } else {
        show(u);
        Ok(())
    }
}

pub(super) async fn run(ctx: &Ctx, cmd: UsersCmd) -> Result<ExitCode> {
    let c = &ctx.client;
    match cmd {
        UsersCmd::List { scope, page } => {
            let scope = ctx.scope(scope).await?;
            let list = pages(&page, |limit, cursor| async move {
                c.list_users(scope, limit, cursor.as_deref()).await
            })
            .await?;
            if ctx.json() {
                output::json(&list)?;
            } else {
                let rows = list
                    .items
                    .iter()
                    .map(|u| {
                        vec![
                            u.id.to_string(),
                            u.username.clone(),
                            output::opt(u.display_name.as_deref()),
                            output::list(&u.roles),
                            if u.disabled { "disabled" } else { "active" }.to_owned(),
                            output::ts(u.created_at),
                        ]
                    })
                    .collect();
                output::table(
                    &["ID", "USERNAME", "DISPLAY NAME", "ROLES", "STATE", "CREATED"],
                    rows,
                );
                more_hint(list.next_cursor.as_deref());
            }
        }
        UsersCmd::Create { username, password, roles, display_name, scope } => {
            let scope = ctx.scope(scope).await?;
            let u = c
                .create_user(scope, &CreateUser { username, password, display_name, roles })
                .await?;
            print_user(ctx, &u)?;
        }
        UsersCmd::Get { id, scope } => {
            let scope = ctx.scope(scope).await?;
            print_user(ctx, &c.get_user(scope, id).await?)?;
        }
        UsersCmd::Disable { id, scope } => {
            let scope = ctx.scope(scope).await?;
            let req = UpdateUser { disabled: Some(true), ..UpdateUser::default() };
            print_user(ctx, &c.update_user(scope, id, &req).await?)?;
        }
        UsersCmd::Enable { id, scope } => {
            let scope = ctx.scope(scope).await?;
            let req = UpdateUser { disabled: Some(false), ..UpdateUser::default() };
            print_user(ctx, &c.update_user(scope, id, &req).await?)?;
        }
        UsersCmd::SetPassword { id, password, scope } => {
            let scope = ctx.scope(scope).await?;
            let req = UpdateUser { password: Some(password), ..UpdateUser::default() };
            let u = c.update_user(scope, id, &req).await?;
            if ctx.json() {
                output::json(&u)?;
            } else {
                outln!("Password of {} changed; their sessions have ended.", u.username);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn roles(ctx: &Ctx, cmd: RolesCmd) -> Result<ExitCode> {
    match cmd {
        RolesCmd::Set { user_id, roles, scope } => {
            let scope = ctx.scope(scope).await?;
            print_user(ctx, &ctx.client.set_roles(scope, user_id, &roles).await?)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
