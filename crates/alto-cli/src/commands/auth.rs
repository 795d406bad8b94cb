//! `login`, `logout`, `whoami`.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::process::{Command, ExitCode};

use alto_client::Client;
use anyhow::{bail, Context as _, Result};

use super::{Ctx, Target};
use crate::args::{LoginArgs, Output};
use crate::config::{self, Stored};
use crate::output;

fn read_line(what: &str) -> Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).with_context(|| format!("cannot read {what}"))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

/// Prompts on the terminal with echo turned off (via `stty`).
fn prompt(msg: &str) -> Result<String> {
    eprint!("{msg}");
    let _ = std::io::stderr().flush();
    let echo_off = Command::new("stty").arg("-echo").status().is_ok_and(|s| s.success());
    if !echo_off {
        eprintln!();
        bail!("cannot turn off terminal echo to ask for the password; use --password-stdin");
    }
    let line = read_line("the password");
    let _ = Command::new("stty").arg("echo").status();
    eprintln!();
    line
}

/// `--password-stdin`, else `--password`/`ALTO_PASSWORD`, else a prompt on a terminal.
fn password(args: &LoginArgs) -> Result<String> {
    let pw = if args.password_stdin {
        read_line("the password from standard input")?
    } else if let Some(p) = &args.password {
        p.clone()
    } else if std::io::stdin().is_terminal() {
        prompt(&format!("Password for {}: ", args.username))?
    } else {
        bail!("no password given: use --password-stdin, --password or ALTO_PASSWORD");
    };
    if pw.is_empty() {
        bail!("the password is empty");
    }
    Ok(pw)
}

pub(super) async fn login(target: &Target, out: Output, args: &LoginArgs) -> Result<ExitCode> {
    let password = password(args)?;
    let mut client = Client::new(&target.server)?;
    let resp = client.login(&args.username, &password).await?;
    let stored = Stored {
        server: target.server.clone(),
        token: resp.token.clone(),
        username: resp.me.username.clone(),
    };
    let path = config::save(&stored)?;
    match out {
        // The token stays in the credentials file; it is not echoed to stdout.
        Output::Json => output::json(&serde_json::json!({
            "server": target.server,
            "expires_at": resp.expires_at,
            "me": resp.me,
        }))?,
        Output::Table => {
            outln!(
                "Logged in to {} as {} ({}); the session expires {}.",
                target.server,
                resp.me.username,
                output::list(&resp.me.roles),
                output::ts(resp.expires_at)
            );
            outln!("Credentials stored in {}.", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn logout(target: &Target, out: Output) -> Result<ExitCode> {
    if target.token.is_none() {
        // Nothing to end on the server; drop a stored file anyway (it may be unreadable).
        let removed = config::remove()?;
        match out {
            Output::Json => output::json(&serde_json::json!({
                "server": target.server,
                "session_ended": false,
                "credentials_removed": removed,
            }))?,
            Output::Table => outln!("Not logged in to {}.", target.server),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let ctx = Ctx::new(target, out)?;
    let ended = match ctx.client.logout().await {
        Ok(()) => true,
        // The session had already ended (expired or revoked): still forget it locally.
        Err(e) if e.code() == Some("unauthenticated") => false,
        Err(e) => return Err(e.into()),
    };
    // Only forget the stored login if it is the session just ended, not a --token one.
    let stored_is_this =
        target.stored.as_ref().is_some_and(|s| Some(&s.token) == target.token.as_ref());
    let removed = stored_is_this && config::remove()?;
    match out {
        Output::Json => output::json(&serde_json::json!({
            "server": target.server,
            "session_ended": ended,
            "credentials_removed": removed,
        }))?,
        Output::Table => {
            if ended {
                outln!("Logged out of {}.", target.server);
            } else {
                outln!("The session on {} had already ended.", target.server);
            }
            if removed {
                outln!("Removed {}.", config::path()?.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn whoami(ctx: &Ctx, server: &str) -> Result<ExitCode> {
    let me = ctx.client.me().await?;
    if ctx.json() {
        output::json(&me)?;
    } else {
        output::fields(vec![
            ("server", server.to_owned()),
            ("user id", me.user_id.to_string()),
            ("username", me.username.clone()),
            ("tenant", me.tenant_id.map_or_else(|| "(platform)".to_owned(), |t| t.to_string())),
            ("roles", output::list(&me.roles)),
            ("permissions", output::list(&me.permissions)),
        ]);
    }
    Ok(ExitCode::SUCCESS)
}
