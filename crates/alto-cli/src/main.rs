//! `altoctl`: the Alto admin command line.
//!
//! Administers an Alto server over its REST API: log in, manage tenants, users, roles, hosts
//! and agent credentials, read the audit trail and verify its hash chains, and manage tiering:
//! rules (with validation, previews and explanations), storage targets, path tags, planner
//! settings, plans and jobs. Every command is a
//! thin call to [`alto_client`] followed by printing a table or the API's JSON.
//!
//! **Must never:** talk to the database, embed server logic (permission checks, validation
//! beyond parsing flags, audit hashing), or send a stored token to a server other than the
//! one that issued it. The server decides; `altoctl` asks and reports.
//!
//! Exit codes: 0 success; 1 any error, printed as `error: <message> (<code>)` on stderr (also
//! `rules validate` on an invalid rule); 2 usage error (clap); 3 `audit verify` found a broken
//! chain.

/// `println!` that never panics on a closed stdout; see [`output::write_line`].
macro_rules! outln {
    () => {
        $crate::output::write_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::output::write_line(format_args!($($arg)*))
    };
}

mod args;
mod commands;
mod config;
mod output;
mod size;

use std::process::ExitCode;

use alto_client::ClientError;
use clap::Parser as _;

/// A local error with a stable code, printed like an API error.
#[derive(Debug)]
pub(crate) struct CodedError {
    code: &'static str,
    message: String,
}

impl CodedError {
    pub(crate) fn new(code: &'static str, message: impl Into<String>) -> CodedError {
        CodedError { code, message: message.into() }
    }
}

impl std::fmt::Display for CodedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for CodedError {}

/// The error line shown to the user (without the `error: ` prefix).
fn describe(e: &anyhow::Error, server: &str) -> String {
    if let Some(ce) = e.downcast_ref::<ClientError>() {
        return match ce {
            ClientError::Api { code, message, .. } => {
                let hint = if code == "unauthenticated" {
                    "\nhint: the session may have ended; run `altoctl login` again"
                } else {
                    ""
                };
                format!("{message} ({code}){hint}")
            }
            ClientError::Transport(re) => {
                // The innermost cause says what actually went wrong (refused, DNS, timeout).
                let mut cause: &dyn std::error::Error = re;
                while let Some(next) = cause.source() {
                    cause = next;
                }
                let detail =
                    if re.is_timeout() { "timed out".to_owned() } else { cause.to_string() };
                format!("cannot reach the server at {server}: {detail} (unreachable)")
            }
            ClientError::Unexpected { status, body } => {
                format!("unexpected response from {server} (HTTP {status}): {body} (unexpected_response)")
            }
            ClientError::BadUrl(url) => format!(
                "invalid server URL {url:?}: it must start with http:// or https:// (bad_url)"
            ),
        };
    }
    if let Some(c) = e.downcast_ref::<CodedError>() {
        return c.to_string();
    }
    format!("{e:#}")
}

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    let target = match commands::resolve(&cli) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {}", describe(&e, args::DEFAULT_SERVER));
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let server = target.server.clone();
    match runtime.block_on(commands::run(cli, target)) {
        Ok(_) if output::failed() => ExitCode::FAILURE,
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", describe(&e, &server));
            ExitCode::FAILURE
        }
    }
}
