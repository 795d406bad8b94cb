//! Command implementations. Each is a thin call (or a few paged calls) to [`alto_client`]
//! followed by printing; the server decides everything else.

mod audit;
mod auth;
mod hosts;
mod inventory;
mod plans;
mod recall;
mod rules;
mod scans;
mod storage;
mod tenants;
mod users;

use std::future::Future;
use std::process::ExitCode;

use alto_api_types::Page;
use alto_client::{Client, ClientError, Scope};
use anyhow::{anyhow, Result};
use uuid::Uuid;

use crate::args::{Cli, Command, Output, PageArgs, ScopeArgs, TenantArg, DEFAULT_SERVER};
use crate::config::{self, Stored};
use crate::CodedError;

/// Where to connect and with which token, worked out before anything is sent.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// Base URL, without a trailing slash.
    pub(crate) server: String,
    /// Whether `--server`/`ALTO_SERVER` named the server.
    pub(crate) explicit_server: bool,
    pub(crate) token: Option<String>,
    /// The stored login, if any (and readable).
    pub(crate) stored: Option<Stored>,
}

fn normalize(url: &str) -> String {
    url.trim().trim_end_matches('/').to_owned()
}

/// Resolves the server and token: `--server`/`ALTO_SERVER`, else the stored login's server,
/// else the default; `--token`/`ALTO_TOKEN`, else the stored token, but only when it belongs
/// to that server (a token is never sent to a server it was not issued by).
pub(crate) fn resolve(cli: &Cli) -> Result<Target> {
    let tolerate_bad_file = matches!(cli.command, Command::Login(_) | Command::Logout);
    let stored = match config::load() {
        Ok(s) => s,
        Err(e) if tolerate_bad_file => {
            eprintln!("warning: ignoring the stored login: {e:#}");
            None
        }
        Err(e) => return Err(e),
    };
    let explicit = cli.server.as_deref().map(normalize).filter(|s| !s.is_empty());
    let server = explicit
        .clone()
        .or_else(|| stored.as_ref().map(|s| normalize(&s.server)))
        .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
    let token = cli.token.clone().filter(|t| !t.is_empty()).or_else(|| {
        stored.as_ref().filter(|s| normalize(&s.server) == server).map(|s| s.token.clone())
    });
    Ok(Target { server, explicit_server: explicit.is_some(), token, stored })
}

/// What every command gets: an authenticated client and the output format.
pub(crate) struct Ctx {
    pub(crate) client: Client,
    pub(crate) out: Output,
}

impl Ctx {
    fn new(target: &Target, out: Output) -> Result<Ctx> {
        let client = Client::new(&target.server)?;
        let Some(token) = &target.token else {
            let why = match &target.stored {
                Some(s) if target.explicit_server => format!(
                    "the stored login is for {}, not {}; ",
                    normalize(&s.server),
                    target.server
                ),
                _ => String::new(),
            };
            return Err(CodedError::new(
                "unauthenticated",
                format!(
                    "not logged in to {}: {why}run `altoctl login --username NAME` or set ALTO_TOKEN",
                    target.server
                ),
            )
            .into());
        };
        Ok(Ctx { client: client.with_token(token.clone()), out })
    }

    pub(crate) fn json(&self) -> bool {
        self.out == Output::Json
    }

    /// The user or audit scope: `--platform`, `--tenant`, else the caller's own tenant, else
    /// (platform staff) the platform.
    pub(crate) async fn scope(&self, s: ScopeArgs) -> Result<Scope> {
        if s.platform {
            return Ok(Scope::Platform);
        }
        if let Some(t) = s.tenant {
            return Ok(Scope::Tenant(t));
        }
        let me = self.client.me().await?;
        Ok(me.tenant_id.map_or(Scope::Platform, Scope::Tenant))
    }

    /// The tenant of a tenant-only command: `--tenant`, else the caller's own.
    pub(crate) async fn tenant(&self, t: TenantArg) -> Result<Uuid> {
        if let Some(t) = t.tenant {
            return Ok(t);
        }
        let me = self.client.me().await?;
        me.tenant_id.ok_or_else(|| {
            anyhow!(
                "--tenant ID is required: you are platform staff and have no tenant of your own"
            )
        })
    }
}

/// Fetches one page, or with `--all` every page, of a list.
pub(crate) async fn pages<T, F, Fut>(page: &PageArgs, fetch: F) -> Result<Page<T>>
where
    F: FnMut(Option<i64>, Option<String>) -> Fut,
    Fut: Future<Output = Result<Page<T>, ClientError>>,
{
    collect(page.limit, page.cursor.clone(), page.all, fetch).await
}

pub(crate) async fn collect<T, F, Fut>(
    limit: Option<i64>,
    cursor: Option<String>,
    all: bool,
    mut fetch: F,
) -> Result<Page<T>>
where
    F: FnMut(Option<i64>, Option<String>) -> Fut,
    Fut: Future<Output = Result<Page<T>, ClientError>>,
{
    let mut out = fetch(limit, cursor).await?;
    if all {
        let mut seen = std::collections::HashSet::new();
        while let Some(c) = out.next_cursor.take() {
            if !seen.insert(c.clone()) {
                return Err(anyhow!("the server returned cursor {c:?} twice; stopping"));
            }
            let next = fetch(limit, Some(c)).await?;
            out.items.extend(next.items);
            out.next_cursor = next.next_cursor;
        }
    }
    Ok(out)
}

/// Tells a person (on stderr) that there are more results.
pub(crate) fn more_hint(next: Option<&str>) {
    if let Some(c) = next {
        eprintln!("(more results: add --cursor {c}, or --all)");
    }
}

/// Runs the command; the exit code is 0, 1 for an invalid rule (`rules validate`), or 3 for
/// a failed audit verification.
pub(crate) async fn run(cli: Cli, target: Target) -> Result<ExitCode> {
    let out = cli.output;
    match cli.command {
        Command::Login(args) => auth::login(&target, out, &args).await,
        Command::Logout => auth::logout(&target, out).await,
        Command::Whoami => auth::whoami(&Ctx::new(&target, out)?, &target.server).await,
        Command::Tenants(c) => tenants::run(&Ctx::new(&target, out)?, c).await,
        Command::Users(c) => users::run(&Ctx::new(&target, out)?, c).await,
        Command::Roles(c) => users::roles(&Ctx::new(&target, out)?, c).await,
        Command::Hosts(c) => hosts::run(&Ctx::new(&target, out)?, c).await,
        Command::Credentials(c) => hosts::credentials(&Ctx::new(&target, out)?, c).await,
        Command::Audit(c) => audit::run(&Ctx::new(&target, out)?, c).await,
        Command::Inventory(c) => inventory::run(&Ctx::new(&target, out)?, c).await,
        Command::Scans(c) => scans::run(&Ctx::new(&target, out)?, c).await,
        Command::Rules(c) => rules::run(&Ctx::new(&target, out)?, c).await,
        Command::Plans(c) => plans::plans(&Ctx::new(&target, out)?, c).await,
        Command::Jobs(c) => plans::jobs(&Ctx::new(&target, out)?, c).await,
        Command::Stubs(c) => plans::stubs(&Ctx::new(&target, out)?, c).await,
        Command::PlannerSettings(c) => plans::settings(&Ctx::new(&target, out)?, c).await,
        Command::Storage(c) => storage::storage(&Ctx::new(&target, out)?, c).await,
        Command::Tags(c) => storage::tags(&Ctx::new(&target, out)?, c).await,
        Command::Recall(a) => recall::recall(&Ctx::new(&target, out)?, a).await,
        Command::RecallSchedules(c) => recall::schedules(&Ctx::new(&target, out)?, c).await,
    }
}
