//! The command line grammar (clap derive). Every command and flag carries a doc comment: it
//! is what `--help` shows.

use alto_model::Role;
use chrono::{DateTime, Utc};
use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use uuid::Uuid;

/// The server used when neither `--server`/`ALTO_SERVER` nor a stored login names one.
pub(crate) const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

const GLOBAL: &str = "Global options";

/// altoctl: administer an Alto storage management server over its REST API.
///
/// Log in once with `altoctl login --username NAME`; the session token is stored in
/// `$ALTO_CONFIG_DIR/credentials.json` (default `~/.config/alto`, mode 0600) and used by later
/// commands. `--token`/`ALTO_TOKEN` overrides it.
///
/// Exit codes: 0 success, 1 error (the API's error code is shown in parentheses), 2 usage
/// error, 3 audit verification found a broken chain.
#[derive(Debug, Parser)]
#[command(name = "altoctl", version, propagate_version = true, max_term_width = 100)]
pub(crate) struct Cli {
    /// Base URL of the Alto server [default: the server you logged in to, else
    /// http://127.0.0.1:8080].
    #[arg(long, env = "ALTO_SERVER", global = true, value_name = "URL", help_heading = GLOBAL)]
    pub(crate) server: Option<String>,

    /// Bearer token to use instead of the stored login (a session token).
    #[arg(
        long,
        env = "ALTO_TOKEN",
        global = true,
        hide_env_values = true,
        value_name = "TOKEN",
        help_heading = GLOBAL
    )]
    pub(crate) token: Option<String>,

    /// Output format: human-readable tables, or the API's JSON for scripts.
    #[arg(long, short = 'o', value_enum, global = true, default_value_t = Output::Table, help_heading = GLOBAL)]
    pub(crate) output: Output,

    #[command(subcommand)]
    pub(crate) command: Command,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    /// Tables and short messages.
    Table,
    /// The API's JSON response bodies, pretty-printed.
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Log in and store the session token for later commands.
    Login(LoginArgs),
    /// End the session on the server and delete the stored credentials.
    Logout,
    /// Show the logged-in user, their tenant, roles and permissions.
    Whoami,
    /// Manage tenants (customers).
    #[command(subcommand)]
    Tenants(TenantsCmd),
    /// Manage users of a tenant or of the platform.
    #[command(subcommand)]
    Users(UsersCmd),
    /// Change a user's roles.
    #[command(subcommand)]
    Roles(RolesCmd),
    /// Manage a tenant's hosts (machines running the Alto agent).
    #[command(subcommand)]
    Hosts(HostsCmd),
    /// Inspect and revoke a host's agent credentials.
    #[command(subcommand)]
    Credentials(CredentialsCmd),
    /// Read and verify the tamper-evident audit trail.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Browse the file inventory that hosts' scans report.
    #[command(subcommand)]
    Inventory(InventoryCmd),
    /// Show uploaded scans and how their ingest went.
    #[command(subcommand)]
    Scans(ScansCmd),
}

#[derive(Debug, Args)]
pub(crate) struct LoginArgs {
    /// User name to log in as.
    #[arg(long, short = 'u', env = "ALTO_USERNAME", value_name = "USERNAME")]
    pub(crate) username: String,

    /// Password (visible in the process list; prefer --password-stdin or the prompt).
    #[arg(long, env = "ALTO_PASSWORD", hide_env_values = true, value_name = "PASSWORD")]
    pub(crate) password: Option<String>,

    /// Read the password from the first line of standard input.
    #[arg(long)]
    pub(crate) password_stdin: bool,
}

/// Which collection a command works on: a tenant's, or the platform's.
#[derive(Debug, Clone, Copy, Args)]
pub(crate) struct ScopeArgs {
    /// Tenant ID [default: your own tenant; platform scope for platform staff].
    #[arg(long, value_name = "ID", conflicts_with = "platform")]
    pub(crate) tenant: Option<Uuid>,

    /// Use the platform scope (platform staff) instead of a tenant.
    #[arg(long)]
    pub(crate) platform: bool,
}

/// The tenant a tenant-only command works in.
#[derive(Debug, Clone, Copy, Args)]
pub(crate) struct TenantArg {
    /// Tenant ID [default: your own tenant; required for platform staff].
    #[arg(long, value_name = "ID")]
    pub(crate) tenant: Option<Uuid>,
}

/// Paging of list commands.
#[derive(Debug, Clone, Args)]
pub(crate) struct PageArgs {
    /// Items per page (the server's default if omitted).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(1..=1000))]
    pub(crate) limit: Option<i64>,

    /// Start at this cursor (the `next_cursor` of a previous page).
    #[arg(long, value_name = "CURSOR", conflicts_with = "all")]
    pub(crate) cursor: Option<String>,

    /// Follow `next_cursor` and fetch every page.
    #[arg(long)]
    pub(crate) all: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum TenantsCmd {
    /// List tenants (all for platform staff, your own for tenant users).
    List(PageArgs),
    /// Create a tenant, optionally with its first administrator.
    Create {
        /// Display name of the tenant.
        #[arg(long)]
        name: String,
        /// Also create a tenant administrator with this user name.
        #[arg(long, value_name = "USERNAME", requires = "admin_password")]
        admin_username: Option<String>,
        /// Password of the new tenant administrator (at least 12 characters).
        #[arg(long, value_name = "PASSWORD", requires = "admin_username")]
        admin_password: Option<String>,
        /// Display name of the new tenant administrator.
        #[arg(long, value_name = "NAME", requires = "admin_username")]
        admin_display_name: Option<String>,
    },
    /// Show one tenant.
    Get {
        /// Tenant ID.
        id: Uuid,
    },
    /// Rename, suspend or reactivate a tenant.
    #[command(group(ArgGroup::new("change").required(true).multiple(true).args(["name", "status"])))]
    Update {
        /// Tenant ID.
        id: Uuid,
        /// New display name.
        #[arg(long)]
        name: Option<String>,
        /// New status; a suspended tenant's users and agents are refused.
        #[arg(long, value_parser = ["active", "suspended"])]
        status: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum UsersCmd {
    /// List users.
    List {
        #[command(flatten)]
        scope: ScopeArgs,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Create a user.
    Create {
        /// User name: 3–64 characters of `a-z 0-9 . _ @ + -`, unique across the service.
        #[arg(long)]
        username: String,
        /// Initial password (at least 12 characters).
        #[arg(long)]
        password: String,
        /// A role to grant; repeat for several.
        #[arg(long = "role", value_name = "ROLE", required = true, value_parser = parse_role)]
        roles: Vec<Role>,
        /// Human-readable name.
        #[arg(long, value_name = "NAME")]
        display_name: Option<String>,
        #[command(flatten)]
        scope: ScopeArgs,
    },
    /// Show one user.
    Get {
        /// User ID.
        id: Uuid,
        #[command(flatten)]
        scope: ScopeArgs,
    },
    /// Disable a user; their sessions end at once.
    Disable {
        /// User ID.
        id: Uuid,
        #[command(flatten)]
        scope: ScopeArgs,
    },
    /// Re-enable a disabled user.
    Enable {
        /// User ID.
        id: Uuid,
        #[command(flatten)]
        scope: ScopeArgs,
    },
    /// Set a user's password; their sessions end at once.
    SetPassword {
        /// User ID.
        id: Uuid,
        /// The new password (at least 12 characters).
        #[arg(long)]
        password: String,
        #[command(flatten)]
        scope: ScopeArgs,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum RolesCmd {
    /// Replace a user's roles with the ones given.
    Set {
        /// User ID.
        user_id: Uuid,
        /// A role to hold; repeat for several. Roles not listed are revoked.
        #[arg(long = "role", value_name = "ROLE", required = true, value_parser = parse_role)]
        roles: Vec<Role>,
        #[command(flatten)]
        scope: ScopeArgs,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum HostsCmd {
    /// List hosts.
    List {
        /// Only hosts in this status.
        #[arg(long, value_parser = ["pending", "online", "offline", "decommissioned"])]
        status: Option<String>,
        #[command(flatten)]
        tenant: TenantArg,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Register a host and print its one-time enrollment token.
    Create {
        /// Host name, unique within the tenant: letters, digits, `.`, `-`, `_`.
        #[arg(long)]
        name: String,
        /// Free-text description.
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        tenant: TenantArg,
    },
    /// Show one host.
    Get {
        /// Host ID.
        id: Uuid,
        #[command(flatten)]
        tenant: TenantArg,
    },
    /// Rename a host or change its description.
    #[command(group(ArgGroup::new("change").required(true).multiple(true).args(["name", "description"])))]
    Update {
        /// Host ID.
        id: Uuid,
        /// New host name.
        #[arg(long)]
        name: Option<String>,
        /// New description.
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        tenant: TenantArg,
    },
    /// Decommission a host; its credentials stop working.
    Decommission {
        /// Host ID.
        id: Uuid,
        #[command(flatten)]
        tenant: TenantArg,
    },
    /// Issue a new one-time enrollment token for a host.
    EnrollmentToken {
        /// Host ID.
        id: Uuid,
        #[command(flatten)]
        tenant: TenantArg,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum CredentialsCmd {
    /// List a host's agent credentials (metadata only; secrets are never shown again).
    List {
        /// Host ID.
        host_id: Uuid,
        #[command(flatten)]
        tenant: TenantArg,
    },
    /// Revoke one of a host's credentials immediately.
    Revoke {
        /// Host ID.
        host_id: Uuid,
        /// Credential ID.
        credential_id: Uuid,
        #[command(flatten)]
        tenant: TenantArg,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCmd {
    /// List audit entries, newest first.
    List {
        #[command(flatten)]
        scope: ScopeArgs,
        /// Entries per page, 1–1000 (server default 100).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(1..=1000))]
        limit: Option<i64>,
        /// Start at this cursor (the `next_cursor` of a previous page).
        #[arg(long, value_name = "CURSOR", conflicts_with = "all")]
        cursor: Option<String>,
        /// Only actions starting with this prefix, e.g. `auth.` or `host.credential`.
        #[arg(long, value_name = "PREFIX")]
        action: Option<String>,
        /// Only entries with this outcome.
        #[arg(long, value_parser = ["success", "failure", "denied"])]
        outcome: Option<String>,
        /// Follow `next_cursor` and fetch every page.
        #[arg(long)]
        all: bool,
    },
    /// Verify the audit hash chains; exits 3 if any chain is broken.
    ///
    /// With --platform (the default for platform staff) every chain is checked: the
    /// platform's and each tenant's.
    Verify {
        #[command(flatten)]
        scope: ScopeArgs,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum InventoryCmd {
    /// Files and total size, by extension, by last access and modification age, and the
    /// largest directories.
    Summary {
        /// Only this host's files [default: the whole tenant].
        #[arg(long, value_name = "ID")]
        host: Option<Uuid>,
        #[command(flatten)]
        tenant: TenantArg,
    },
    /// List inventory files, ordered by host and path.
    ///
    /// Paths that are not valid UTF-8 are shown as the server sends them: other bytes as `\xHH`
    /// and `\` as `\\`, marked "(escaped)" in the table. The HOST column shows the last 8
    /// hex digits of the host's ID; FLAGS shows `stub` and `deleted`.
    Files(FilesArgs),
}

/// Filters and paging of `inventory files`.
#[derive(Debug, Clone, Args)]
pub(crate) struct FilesArgs {
    /// Only this host's files.
    #[arg(long, value_name = "ID")]
    pub(crate) host: Option<Uuid>,

    /// Only paths starting with this text.
    #[arg(long, value_name = "P")]
    pub(crate) path_prefix: Option<String>,

    /// Only files with this extension, e.g. `.pdf` (the dot is added if missing).
    #[arg(long, value_name = ".EXT", value_parser = parse_extension)]
    pub(crate) extension: Option<String>,

    /// Only files of at least this size: bytes, or with a binary suffix (K, M, G, T; e.g. 10M).
    #[arg(long, value_name = "BYTES", value_parser = parse_size, allow_hyphen_values = true)]
    pub(crate) min_size: Option<i64>,

    /// Only files of at most this size: bytes, or with a binary suffix (K, M, G, T).
    #[arg(long, value_name = "BYTES", value_parser = parse_size, allow_hyphen_values = true)]
    pub(crate) max_size: Option<i64>,

    /// Only files last accessed before this instant (RFC 3339, e.g. 2025-01-31T00:00:00Z).
    #[arg(long, value_name = "RFC3339", value_parser = parse_instant, conflicts_with = "accessed_older_than")]
    pub(crate) accessed_before: Option<DateTime<Utc>>,

    /// Only files last accessed more than this many days ago (counted from now).
    #[arg(long, value_name = "DAYS", value_parser = parse_days)]
    pub(crate) accessed_older_than: Option<i64>,

    /// Only files last modified before this instant (RFC 3339).
    #[arg(long, value_name = "RFC3339", value_parser = parse_instant, conflicts_with = "modified_older_than")]
    pub(crate) modified_before: Option<DateTime<Utc>>,

    /// Only files last modified more than this many days ago (counted from now).
    #[arg(long, value_name = "DAYS", value_parser = parse_days)]
    pub(crate) modified_older_than: Option<i64>,

    /// Also list files that a later full scan no longer found.
    #[arg(long)]
    pub(crate) include_deleted: bool,

    #[command(flatten)]
    pub(crate) tenant: TenantArg,

    #[command(flatten)]
    pub(crate) page: PageArgs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ScansCmd {
    /// List recent scans, newest first (the server returns the 50 most recent).
    List {
        /// Only this host's scans.
        #[arg(long, value_name = "ID")]
        host: Option<Uuid>,
        #[command(flatten)]
        tenant: TenantArg,
    },
    /// Show one scan: status, parts, rows, bytes, error and, once ingested, its stats.
    Get {
        /// Scan ID.
        scan_id: Uuid,
        #[command(flatten)]
        tenant: TenantArg,
    },
}

/// An extension with its dot, lower-case: `pdf`, `.PDF` → `.pdf`.
fn parse_extension(s: &str) -> Result<String, String> {
    let e = s.trim().trim_start_matches('.');
    if e.is_empty() || e.contains(['/', '.']) || e.chars().any(char::is_whitespace) {
        return Err(format!("`{s}` is not a file extension; expected e.g. `.pdf`"));
    }
    Ok(format!(".{}", e.to_lowercase()))
}

/// A size in bytes, optionally with a binary suffix: `512`, `10K`, `1.5M`, `2GiB`.
fn parse_size(s: &str) -> Result<i64, String> {
    let bad = || {
        format!("`{s}` is not a size; expected a whole number of bytes (at least 0), optionally with K, M, G or T, e.g. 10M")
    };
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    if num.is_empty() {
        return Err(bad());
    }
    let bytes = if mult == 1 {
        num.parse::<u64>().map_err(|_| bad())?
    } else {
        let v: f64 = num.parse().map_err(|_| bad())?;
        let b = (v * mult as f64).round();
        if !b.is_finite() || b < 0.0 || b >= i64::MAX as f64 {
            return Err(bad());
        }
        b as u64
    };
    i64::try_from(bytes).map_err(|_| format!("`{s}` is too large"))
}

/// An RFC 3339 instant, e.g. `2025-01-31T00:00:00Z`.
fn parse_instant(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s.trim()).map(|t| t.with_timezone(&Utc)).map_err(|e| {
        format!("`{s}` is not an RFC 3339 date and time ({e}); expected e.g. 2025-01-31T00:00:00Z")
    })
}

/// A whole number of days, 0–36500.
fn parse_days(s: &str) -> Result<i64, String> {
    s.trim().parse::<i64>().ok().filter(|d| (0..=36_500).contains(d)).ok_or_else(|| {
        format!("`{s}` is not a number of days; expected a whole number from 0 to 36500")
    })
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| {
        let all: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
        format!("unknown role `{s}`; expected one of: {}", all.join(", "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn grammar_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn roles_parse() {
        assert_eq!(parse_role("tenant_admin"), Ok(Role::TenantAdmin));
        assert!(parse_role("root").is_err_and(|e| e.contains("platform_admin")));
    }

    #[test]
    fn filters_parse() {
        assert_eq!(parse_extension("PDF"), Ok(".pdf".to_owned()));
        assert_eq!(parse_extension(".txt"), Ok(".txt".to_owned()));
        assert!(parse_extension(".").is_err());
        assert!(parse_extension("a/b").is_err());
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("10K"), Ok(10 * 1024));
        assert_eq!(parse_size("1.5MiB"), Ok(1536 * 1024));
        assert!(parse_size("-5").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("5X").is_err());
        assert!(parse_size("99999999999T").is_err());
        assert!(parse_instant("2025-01-31T00:00:00Z").is_ok());
        assert!(parse_instant("2025-01-31").is_err());
        assert_eq!(parse_days("30"), Ok(30));
        assert!(parse_days("-1").is_err());
        assert!(parse_days("soon").is_err());
    }
}
