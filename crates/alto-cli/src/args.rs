//! The command line grammar (clap derive). Every command and flag carries a doc comment: it
//! is what `--help` shows.

use std::path::PathBuf;

use alto_model::{Role, TargetKind};
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
/// Exit codes: 0 success, 1 error (the API's error code is shown in parentheses), an invalid
/// rule in `rules validate` or a failed `storage test`, 2 usage error, 3 audit verification
/// found a broken chain, 4 `storage test` could not check the target from the server.
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
    /// Manage tiering rules: which files move to which storage target, and why.
    ///
    /// Rules are evaluated in priority order (lowest first); the first rule whose scope and
    /// conditions all hold decides a file. A `tier` rule moves it to a storage target and
    /// leaves a stub; an `exclude` rule keeps it where it is.
    #[command(subcommand)]
    Rules(RulesCmd),
    /// Run the planner (rules into tiering jobs) and inspect its plans.
    #[command(subcommand)]
    Plans(PlansCmd),
    /// Inspect, cancel and retry jobs (tiering jobs and the planner's own).
    #[command(subcommand)]
    Jobs(JobsCmd),
    /// The stub registry: every tiered file, its object, hash and state; space saved.
    #[command(subcommand)]
    Stubs(StubsCmd),
    /// Manage storage targets: the named tier-2 locations that rules move files to.
    #[command(subcommand)]
    Storage(StorageCmd),
    /// Manage metadata tags on paths; rules can require them (`conditions.tags`).
    #[command(subcommand)]
    Tags(TagsCmd),
    /// Show or change the tenant's planner settings (safety window, watermarks, caps).
    #[command(subcommand)]
    PlannerSettings(PlannerSettingsCmd),
    /// Bring stubs back from tier-2: a file, a directory tree, or what a rule tiered.
    ///
    /// The host's agent recalls them as recall jobs (up to 1,000 files each), dispatched
    /// before every tiering job. Follow them with `altoctl jobs list --kind recall`, or wait
    /// here with --wait.
    Recall(RecallArgs),
    /// Scheduled restoration rules: recall a host's stubs under paths on a cron schedule.
    #[command(subcommand)]
    RecallSchedules(RecallSchedulesCmd),
}

#[derive(Debug, Args)]
pub(crate) struct RecallArgs {
    /// The host whose stubs to recall.
    #[arg(long, value_name = "ID")]
    pub(crate) host: Uuid,
    /// Absolute paths as the inventory spells them: files, or directories (whole trees).
    #[arg(required = true, value_name = "PATH")]
    pub(crate) paths: Vec<String>,
    /// Only stubs tiered by this rule.
    #[arg(long, value_name = "ID")]
    pub(crate) rule: Option<Uuid>,
    /// Refuse rather than recall more than this many files (default 1,000,000).
    #[arg(long, value_name = "N")]
    pub(crate) max_files: Option<i64>,
    /// Only count what would be recalled.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Wait until every recall job ended, showing progress; exit non-zero if a file failed.
    #[arg(long)]
    pub(crate) wait: bool,
    #[command(flatten)]
    pub(crate) tenant: TenantArg,
}

#[derive(Debug, Subcommand)]
pub(crate) enum RecallSchedulesCmd {
    /// List the scheduled restoration rules.
    List {
        #[command(flatten)]
        tenant: TenantArg,
    },
    /// Create one: on CRON (five fields, UTC) recall the host's stubs under PATHs.
    Create {
        /// Unique name.
        #[arg(long)]
        name: String,
        #[arg(long, value_name = "ID")]
        host: Uuid,
        /// e.g. "0 6 * * 1-5" (06:00 UTC on weekdays).
        #[arg(long)]
        cron: String,
        /// Only stubs tiered by this rule.
        #[arg(long, value_name = "ID")]
        rule: Option<Uuid>,
        /// Create it disabled.
        #[arg(long)]
        disabled: bool,
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
        #[command(flatten)]
        tenant: TenantArg,
    },
    /// Enable, disable or reschedule one.
    Update {
        id: Uuid,
        #[arg(long)]
        cron: Option<String>,
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        #[arg(long)]
        disable: bool,
        #[command(flatten)]
        tenant: TenantArg,
    },
    /// Delete one (recall jobs it queued go on).
    Delete {
        id: Uuid,
        #[command(flatten)]
        tenant: TenantArg,
    },
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
        /// Upload bandwidth limit of tiering jobs, bytes per second (0 removes it).
        #[arg(long, value_name = "BYTES_PER_SECOND")]
        bandwidth_limit: Option<i64>,
        /// Download bandwidth limit of recall jobs, bytes per second (0 removes it).
        #[arg(long, value_name = "BYTES_PER_SECOND")]
        recall_bandwidth_limit: Option<i64>,
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
    /// Set a host's groups, replacing the ones it has; rules can be scoped to groups
    /// (`scope.host_groups`).
    ///
    /// Example: `altoctl hosts groups HOST_ID finance eu-west`. Use --clear to remove every
    /// group.
    #[command(group(ArgGroup::new("set").required(true).args(["groups", "clear"])))]
    Groups {
        /// Host ID.
        host_id: Uuid,
        /// Group names: 1–64 letters, digits, `.`, `-`, `_`.
        #[arg(value_name = "GROUP")]
        groups: Vec<String>,
        /// Remove every group from the host.
        #[arg(long)]
        clear: bool,
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

    /// Only files of at least this size: bytes, or a number with a unit (K, M, G, T, P and
    /// KiB, MiB, … are binary; KB, MB, … decimal; e.g. 10M, 1.5GB).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, allow_hyphen_values = true)]
    pub(crate) min_size: Option<i64>,

    /// Only files of at most this size (units as for --min-size).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, allow_hyphen_values = true)]
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
    /// List scans, newest first (50 a page unless --limit says otherwise).
    List {
        /// Only this host's scans.
        #[arg(long, value_name = "ID")]
        host: Option<Uuid>,
        #[command(flatten)]
        page: PageArgs,
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

/// Rule files: how `--file` is described in help texts.
const RULE_FILE_HELP: &str = "A rule as JSON (the API's RuleSpec), or `-` for standard input";

#[derive(Debug, Subcommand)]
pub(crate) enum RulesCmd {
    /// List the rules in evaluation order (lowest priority first).
    List {
        #[command(flatten)]
        tenant: TenantArg,
    },
    /// Show one rule: scope, conditions, action, schedule and version.
    Get {
        /// Rule ID.
        id: Uuid,
        #[command(flatten)]
        tenant: TenantArg,
    },
    /// Create a rule from a JSON file, or a simple one from flags.
    ///
    /// From a file: `altoctl rules create --file rule.json`, where rule.json is e.g.
    ///
    ///     {"name": "old-isos", "priority": 10,
    ///      "conditions": {"extensions": ["iso"], "accessed_older_than_days": 90},
    ///      "action": {"type": "tier", "target": "default"}}
    ///
    /// From flags:
    ///
    ///     altoctl rules create --name old-isos --ext iso --accessed-older-than-days 90 \
    ///         --target default
    ///
    /// Every condition given must hold; list flags (--ext, --glob, …) hold when any of their
    /// values matches. Without --priority the rule goes last (10 above the highest existing
    /// priority). `altoctl rules validate` checks a file without saving it.
    #[command(
        verbatim_doc_comment,
        about = "Create a rule from a JSON file, or a simple one from flags"
    )]
    Create(Box<CreateRuleArgs>),
    /// Replace a rule's definition with the one in a JSON file (a new version).
    ///
    /// With --expected-version the server refuses the change (conflict) if the rule was
    /// changed since that version; `rules get` shows the current one.
    Update {
        /// Rule ID.
        id: Uuid,
        #[arg(long, value_name = "FILE", help = RULE_FILE_HELP)]
        file: PathBuf,
        /// Only update if the rule is still at this version.
        #[arg(long, value_name = "N")]
        expected_version: Option<i32>,
        #[command(flatten)]
        tenant: TenantArg,
    },
    /// Delete a rule (its versions stay in the history).
    Delete {
        /// Rule ID.
        id: Uuid,
        #[command(flatten)]
        tenant: TenantArg,
    },
    /// Enable a rule (a new version; refused if someone changed it meanwhile).
    Enable {
        /// Rule ID.
        id: Uuid,
        #[command(flatten)]
        tenant: TenantArg,
    },
    /// Disable a rule: it stays in place but matches nothing (a new version).
    Disable {
        /// Rule ID.
        id: Uuid,
        #[command(flatten)]
        tenant: TenantArg,
    },
    /// Show a rule's version history, oldest first.
    Versions {
        /// Rule ID.
        id: Uuid,
        #[command(flatten)]
        tenant: TenantArg,
    },
    /// Set the evaluation order: name every rule exactly once, first to last.
    ///
    /// Priorities become 10, 20, 30, … in the order given.
    Reorder {
        /// Rule IDs in the new order.
        #[arg(value_name = "ID", required = true, num_args = 1..)]
        ids: Vec<Uuid>,
        #[command(flatten)]
        tenant: TenantArg,
    },
    /// Check a rule file without saving it; exits 1 if it is invalid.
    ///
    /// Exit codes: 0 when the rule is valid; 1 when it is not, after printing each problem
    /// as `field: message` (e.g. `conditions.path_regex: catastrophic pattern: …`), or on any
    /// other error. With --output json the server's answer (`valid`, `errors`) is printed and
    /// the exit code is the same.
    Validate {
        #[arg(long, value_name = "FILE", help = RULE_FILE_HELP)]
        file: PathBuf,
        #[command(flatten)]
        tenant: TenantArg,
    },
    /// Show what would move, without creating jobs: totals, per host, per target, per rule,
    /// top directories, last-access ages and a sample of files.
    ///
    /// Without --file the current rule set is previewed; with it, the draft is added in its
    /// priority's place (or, with --replaces, takes the place of that rule).
    Preview {
        /// A draft rule as JSON (the API's RuleSpec), or `-` for standard input.
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
        /// The draft replaces this existing rule (previewing an edit).
        #[arg(long, value_name = "RULE_ID", requires = "file")]
        replaces: Option<Uuid>,
        /// Only this host; repeat for several [default: every host].
        #[arg(long = "host", value_name = "ID")]
        hosts: Vec<Uuid>,
        /// Number of sample files to show, 0–200 [default: the server's, 20].
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=200))]
        sample: Option<u32>,
        #[command(flatten)]
        tenant: TenantArg,
    },
    /// Explain why one file will or will not move: every rule in order, the checks that
    /// held or failed, and the decision.
    Explain {
        /// Host ID the file is on.
        #[arg(long, value_name = "ID")]
        host: Uuid,
        /// The file's absolute path, as the inventory shows it.
        #[arg(long, value_name = "PATH")]
        path: String,
        #[command(flatten)]
        tenant: TenantArg,
    },
}

/// `rules create`: a file, or the flags of a simple rule.
#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("source").required(true).args(["file", "name"])))]
#[command(group(ArgGroup::new("action").args(["target", "exclude"])))]
#[command(group(ArgGroup::new("flags").multiple(true).args([
    "name", "description", "priority", "target", "exclude", "compression",
    "accessed_older_than_days", "accessed_newer_than_days", "modified_older_than_days",
    "modified_newer_than_days", "min_size", "max_size", "ext", "exclude_ext", "glob", "regex",
    "owner", "tag", "path_prefix", "host", "host_group", "schedule", "order_by", "disabled",
])))]
pub(crate) struct CreateRuleArgs {
    #[arg(long, value_name = "FILE", conflicts_with = "flags", help = RULE_FILE_HELP)]
    pub(crate) file: Option<PathBuf>,

    /// Rule name, unique in the tenant (1–100 characters).
    #[arg(long, requires = "action", help_heading = "Rule from flags")]
    pub(crate) name: Option<String>,

    /// Free-text description.
    #[arg(long, help_heading = "Rule from flags")]
    pub(crate) description: Option<String>,

    /// Evaluation order, 0–1000000, unique; lower runs first [default: 10 above the highest].
    #[arg(long, value_name = "N", help_heading = "Rule from flags")]
    pub(crate) priority: Option<i32>,

    /// Tier matching files to this storage target (see `altoctl storage list`).
    #[arg(long, value_name = "NAME", help_heading = "Rule from flags")]
    pub(crate) target: Option<String>,

    /// Exclude matching files: they never move, and later rules are not consulted.
    #[arg(long, help_heading = "Rule from flags")]
    pub(crate) exclude: bool,

    /// Compression of tiered copies [default: none].
    #[arg(long, value_parser = ["none", "zstd"], conflicts_with = "exclude", help_heading = "Rule from flags")]
    pub(crate) compression: Option<String>,

    /// Only files last accessed more than N days ago.
    #[arg(long, value_name = "N", help_heading = "Rule from flags")]
    pub(crate) accessed_older_than_days: Option<u32>,

    /// Only files last accessed within the last N days.
    #[arg(long, value_name = "N", help_heading = "Rule from flags")]
    pub(crate) accessed_newer_than_days: Option<u32>,

    /// Only files last modified more than N days ago.
    #[arg(long, value_name = "N", help_heading = "Rule from flags")]
    pub(crate) modified_older_than_days: Option<u32>,

    /// Only files last modified within the last N days.
    #[arg(long, value_name = "N", help_heading = "Rule from flags")]
    pub(crate) modified_newer_than_days: Option<u32>,

    /// Only files of at least this size: bytes, or a number with a unit (K, M, G, T, P and
    /// KiB, MiB, … are binary; KB, MB, … decimal; e.g. 4k, 10MiB, 1.5GB).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, allow_hyphen_values = true, help_heading = "Rule from flags")]
    pub(crate) min_size: Option<i64>,

    /// Only files of at most this size (units as for --min-size).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, allow_hyphen_values = true, help_heading = "Rule from flags")]
    pub(crate) max_size: Option<i64>,

    /// Only files with this extension (`pdf` or `.pdf`, any case); repeat for several.
    #[arg(long = "ext", value_name = "EXT", help_heading = "Rule from flags")]
    pub(crate) ext: Vec<String>,

    /// Never files with this extension (`""`: files without one); repeat for several.
    #[arg(long = "exclude-ext", value_name = "EXT", help_heading = "Rule from flags")]
    pub(crate) exclude_ext: Vec<String>,

    /// Only paths matching this glob (`*`, `?`, `**`, `[a-z]`, `{a,b}`; without `/` it
    /// matches the file name); repeat for several.
    #[arg(long = "glob", value_name = "GLOB", help_heading = "Rule from flags")]
    pub(crate) glob: Vec<String>,

    /// Only paths in which this regular expression is found (anchor with ^ and $).
    #[arg(long, value_name = "REGEX", help_heading = "Rule from flags")]
    pub(crate) regex: Option<String>,

    /// Only files owned by this user (name or uid, as scans report it); repeat for several.
    #[arg(long = "owner", value_name = "OWNER", help_heading = "Rule from flags")]
    pub(crate) owner: Vec<String>,

    /// Only files carrying this tag (`KEY` or `KEY=VALUE`, on the file or a parent
    /// directory); repeat to require several.
    #[arg(long = "tag", value_name = "KEY[=VALUE]", help_heading = "Rule from flags")]
    pub(crate) tag: Vec<String>,

    /// Only files at or below this absolute directory; repeat for several.
    #[arg(long = "path-prefix", value_name = "DIR", help_heading = "Rule from flags")]
    pub(crate) path_prefix: Vec<String>,

    /// Only this host; repeat for several [default: every host].
    #[arg(long = "host", value_name = "ID", help_heading = "Rule from flags")]
    pub(crate) host: Vec<Uuid>,

    /// Only hosts in this group (see `altoctl hosts groups`); repeat for several.
    #[arg(long = "host-group", value_name = "GROUP", help_heading = "Rule from flags")]
    pub(crate) host_group: Vec<String>,

    /// Plan the rule's files on this five-field cron schedule (UTC), e.g. "0 2 * * 6".
    #[arg(long, value_name = "CRON", help_heading = "Rule from flags")]
    pub(crate) schedule: Option<String>,

    /// Which candidates go first when a run is capped [default: oldest_access].
    #[arg(long, value_parser = ["oldest_access", "oldest_modify", "largest"], help_heading = "Rule from flags")]
    pub(crate) order_by: Option<String>,

    /// Create the rule disabled.
    #[arg(long, help_heading = "Rule from flags")]
    pub(crate) disabled: bool,

    #[command(flatten)]
    pub(crate) tenant: TenantArg,
}

#[derive(Debug, Subcommand)]
pub(crate) enum PlansCmd {
    /// Start a planning run now and show what it planned.
    ///
    /// By default every host and every rule without a schedule take part, capped by the
    /// planner settings. With --hold the jobs are created `planned` (not sent to agents)
    /// until `altoctl plans release PLAN_ID`.
    Run {
        /// Only this host; repeat for several [default: every host].
        #[arg(long = "host", value_name = "ID")]
        hosts: Vec<Uuid>,
        /// Only candidates of this rule; repeat for several (scheduled rules too).
        #[arg(long = "rule", value_name = "ID")]
        rules: Vec<Uuid>,
        /// Plan at most this many files [default: the planner settings' cap].
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(1..))]
        max_files: Option<i64>,
        /// Plan at most this many bytes (4k, 10MiB, 1.5GB, …) [default: the settings' cap].
        #[arg(long, value_name = "SIZE", value_parser = parse_size, allow_hyphen_values = true)]
        max_bytes: Option<i64>,
        /// Create the jobs held (`planned`) instead of queued.
        #[arg(long)]
        hold: bool,
        #[command(flatten)]
        tenant: TenantArg,
    },
    /// List plans (planning runs), newest first.
    List {
        #[command(flatten)]
        tenant: TenantArg,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show one plan: trigger, rule versions used and statistics.
    Get {
        /// Plan ID.
        id: Uuid,
        #[command(flatten)]
        tenant: TenantArg,
    },
    /// Release a held plan: its `planned` jobs become `queued`.
    Release {
        /// Plan ID.
        id: Uuid,
        #[command(flatten)]
        tenant: TenantArg,
    },
}

/// Job states, for `--state`.
const JOB_STATES: [&str; 7] =
    ["planned", "queued", "dispatched", "running", "succeeded", "failed", "cancelled"];

#[derive(Debug, Subcommand)]
pub(crate) enum StubsCmd {
    /// List registry entries, newest first.
    List {
        /// Only this host's stubs.
        #[arg(long, value_name = "ID")]
        host: Option<Uuid>,
        /// Only paths starting with this text.
        #[arg(long, value_name = "PREFIX")]
        path_prefix: Option<String>,
        /// Only entries in this state.
        #[arg(long, value_parser = ["pending", "stubbed", "rehydrated", "orphaned", "failed", "replaced"])]
        state: Option<String>,
        #[command(flatten)]
        tenant: TenantArg,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Totals per host: stubs, original bytes, space saved, bytes in tier-2.
    Summary {
        #[command(flatten)]
        tenant: TenantArg,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum JobsCmd {
    /// List jobs, newest first (tiering jobs unless --kind says otherwise).
    List {
        /// Only jobs in this state.
        #[arg(long, value_parser = JOB_STATES)]
        state: Option<String>,
        /// Only this host's jobs.
        #[arg(long, value_name = "ID")]
        host: Option<Uuid>,
        /// Only jobs of this plan.
        #[arg(long, value_name = "ID")]
        plan: Option<Uuid>,
        /// Only jobs of this kind: tier (the default), recall, plan, ingest, or all.
        #[arg(long, value_parser = ["tier", "recall", "plan", "ingest", "all"])]
        kind: Option<String>,
        #[command(flatten)]
        tenant: TenantArg,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show one job, with its files counted by state.
    Get {
        /// Job ID.
        id: Uuid,
        #[command(flatten)]
        tenant: TenantArg,
    },
    /// List a job's files and their results, in order.
    Files {
        /// Job ID.
        id: Uuid,
        #[command(flatten)]
        page: PageArgs,
        #[command(flatten)]
        tenant: TenantArg,
    },
    /// Print the job document sent to the agent (JSON).
    Document {
        /// Job ID.
        id: Uuid,
        #[command(flatten)]
        tenant: TenantArg,
    },
    /// Cancel a tiering job: a planned or queued one at once; a dispatched or running one is
    /// asked to stop and ends when its agent confirms.
    Cancel {
        /// Job ID.
        id: Uuid,
        #[command(flatten)]
        tenant: TenantArg,
    },
    /// Retry a failed or cancelled tiering job: its unfinished files become pending again.
    Retry {
        /// Job ID.
        id: Uuid,
        #[command(flatten)]
        tenant: TenantArg,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum StorageCmd {
    /// List storage targets (every tenant starts with `default`) with their last check.
    List {
        #[command(flatten)]
        tenant: TenantArg,
    },
    /// Show one storage target: settings (secrets shown as `***`), last check and usage.
    Get {
        /// Storage target name or ID.
        target: String,
        #[command(flatten)]
        tenant: TenantArg,
    },
    /// Create a storage target that rules can name in `action.target`.
    ///
    /// `--config-file` and `--set` give the backend's settings (see docs/storage-targets.md);
    /// secrets (`secret_access_key`, `access_key`, `password`) come from a file or standard
    /// input (`--secret KEY=FILE`, `--secret-stdin KEY`, or inside `--config-file`), never from
    /// the command line. Examples:
    ///
    ///   altoctl storage create archive --kind s3 --location s3://tier/site-a \
    ///     --set endpoint=https://s3.example.com --set access_key_id=AKIA… \
    ///     --secret secret_access_key=/run/secrets/s3
    ///
    ///   altoctl storage create nas --kind smb --location smb://fs1/tier2/alto \
    ///     --set username=alto --secret-stdin password < pw.txt
    #[command(verbatim_doc_comment)]
    Create {
        /// Name, unique in the tenant (1–63 letters, digits, `.`, `-`, `_`); rules refer to it
        /// in `action.target` (or `rules create --target NAME`). Cannot be changed later.
        #[arg(value_name = "NAME", required_unless_present = "name")]
        name_arg: Option<String>,
        /// The name (instead of the positional NAME).
        #[arg(long, value_name = "NAME", conflicts_with = "name_arg")]
        name: Option<String>,
        /// Kind of location.
        #[arg(long, value_parser = target_kinds())]
        kind: String,
        /// Where: an absolute directory (or one relative to the agents' tier-2 base),
        /// `s3://BUCKET[/PREFIX]`, `azure://CONTAINER[/PREFIX]` or
        /// `smb://SERVER[:PORT]/SHARE[/PATH]`.
        #[arg(long, value_name = "LOCATION")]
        location: String,
        #[command(flatten)]
        config: ConfigArgs,
        #[command(flatten)]
        tenant: TenantArg,
    },
    /// Change a storage target's location or settings; only what is given changes.
    ///
    /// `--config-file`, `--set` and `--secret` are merged key by key into the stored config
    /// (`--unset KEY` removes one); secrets not given are kept. The kind cannot change while
    /// rules, unfinished jobs or live stubs use the target, nor the location while jobs or
    /// stubs do.
    Update {
        /// Storage target name or ID.
        target: String,
        /// New kind (its config then starts empty: give every field again).
        #[arg(long, value_parser = target_kinds())]
        kind: Option<String>,
        /// New location.
        #[arg(long, value_name = "LOCATION")]
        location: Option<String>,
        /// Remove a config field (repeatable).
        #[arg(long, value_name = "KEY")]
        unset: Vec<String>,
        #[command(flatten)]
        config: ConfigArgs,
        #[command(flatten)]
        tenant: TenantArg,
    },
    /// Check a target from the server: connect, write and delete a probe object, count usage.
    ///
    /// Exit code 0 when the check passed, 1 when it failed (the error's code is shown), 4
    /// when the server could not check it (a directory only the hosts see).
    Test {
        /// Storage target name or ID.
        target: String,
        #[command(flatten)]
        tenant: TenantArg,
    },
    /// Delete a storage target (refused while rules, unfinished jobs or live stubs use it).
    Delete {
        /// Storage target name or ID.
        target: String,
        #[command(flatten)]
        tenant: TenantArg,
    },
}

/// A storage target's `config`, from a file, flags and secret files.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct ConfigArgs {
    /// A JSON object with config fields (`-`: standard input); `--set` and `--secret` add to
    /// or override it.
    #[arg(long, value_name = "FILE")]
    pub(crate) config_file: Option<PathBuf>,
    /// A config field (repeatable): `true`/`false` become booleans, anything else a string.
    /// Not for secrets.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub(crate) set: Vec<String>,
    /// A secret config field read from a file (repeatable; one trailing newline is removed).
    #[arg(long = "secret", value_name = "KEY=FILE")]
    pub(crate) secret: Vec<String>,
    /// A secret config field read from standard input (its first line).
    #[arg(long, value_name = "KEY")]
    pub(crate) secret_stdin: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum TagsCmd {
    /// List path tags.
    List {
        /// Only tags that apply on this host (its own and those on every host).
        #[arg(long, value_name = "ID")]
        host: Option<Uuid>,
        #[command(flatten)]
        tenant: TenantArg,
    },
    /// Tag a file or directory; a directory's tags apply to everything below it. Setting a
    /// key again on the same path (and host) replaces its value.
    Add {
        /// Absolute path of the file or directory.
        #[arg(long, value_name = "PATH")]
        path: String,
        /// Tag key: 1–64 letters, digits, `.`, `-`, `_`, `:`.
        #[arg(long, value_name = "KEY")]
        key: String,
        /// Tag value [default: empty].
        #[arg(long, value_name = "VALUE")]
        value: Option<String>,
        /// Only on this host [default: on every host].
        #[arg(long, value_name = "ID")]
        host: Option<Uuid>,
        #[command(flatten)]
        tenant: TenantArg,
    },
    /// Delete a tag.
    Delete {
        /// Tag ID.
        id: Uuid,
        #[command(flatten)]
        tenant: TenantArg,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum PlannerSettingsCmd {
    /// Show the planner settings.
    Get {
        #[command(flatten)]
        tenant: TenantArg,
    },
    /// Change some planner settings; the others keep their values.
    ///
    /// Caps and rate limits take `none` to remove them. Example:
    /// `altoctl planner-settings set --max-bytes-per-run 500GiB --plan-after-ingest false`.
    #[command(override_usage = "altoctl planner-settings set [OPTIONS] <--SETTING VALUE>...")]
    Set(Box<SetPlannerArgs>),
}

/// `planner-settings set`.
#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("change").required(true).multiple(true).args([
    "safety_window_seconds", "high_watermark_pct", "low_watermark_pct", "watermark_order",
    "max_files_per_run", "max_bytes_per_run", "host_max_files_per_hour",
    "host_max_bytes_per_hour", "link_bytes_per_second", "per_file_overhead_ms",
    "plan_after_ingest", "recall_retention_days", "tier_bandwidth_limit",
    "recall_bandwidth_limit",
])))]
pub(crate) struct SetPlannerArgs {
    /// Files modified less than this many seconds ago are never candidates.
    #[arg(long, value_name = "N")]
    pub(crate) safety_window_seconds: Option<i32>,
    /// Volume use (percent) at which a watermark run starts.
    #[arg(long, value_name = "PCT")]
    pub(crate) high_watermark_pct: Option<f64>,
    /// Volume use (percent) a watermark run aims for.
    #[arg(long, value_name = "PCT")]
    pub(crate) low_watermark_pct: Option<f64>,
    /// Which files a watermark run takes first.
    #[arg(long, value_parser = ["oldest_access", "oldest_modify", "largest"])]
    pub(crate) watermark_order: Option<String>,
    /// At most this many files per planning run, or `none`.
    #[arg(long, value_name = "N|none", value_parser = parse_count_cap)]
    pub(crate) max_files_per_run: Option<Cap>,
    /// At most this many bytes per planning run (4k, 10MiB, 1.5GB, …), or `none`.
    #[arg(long, value_name = "SIZE|none", value_parser = parse_size_cap, allow_hyphen_values = true)]
    pub(crate) max_bytes_per_run: Option<Cap>,
    /// At most this many files planned per host per rolling hour, or `none`.
    #[arg(long, value_name = "N|none", value_parser = parse_count_cap)]
    pub(crate) host_max_files_per_hour: Option<Cap>,
    /// At most this many bytes planned per host per rolling hour, or `none`.
    #[arg(long, value_name = "SIZE|none", value_parser = parse_size_cap, allow_hyphen_values = true)]
    pub(crate) host_max_bytes_per_hour: Option<Cap>,
    /// Link speed for estimates when a host has no observed throughput, in bytes per second
    /// (units allowed: 125MB = 1 Gbit/s).
    #[arg(long, value_name = "N", value_parser = parse_size, allow_hyphen_values = true)]
    pub(crate) link_bytes_per_second: Option<i64>,
    /// Fixed cost per file in estimates, in milliseconds.
    #[arg(long, value_name = "MS")]
    pub(crate) per_file_overhead_ms: Option<i32>,
    /// Plan a host after each of its scans is ingested.
    #[arg(long, value_name = "true|false", action = clap::ArgAction::Set)]
    pub(crate) plan_after_ingest: Option<bool>,
    /// A file recalled from tier-2 less than this many days ago is not tiered again (0–3650;
    /// a rule's `action.retain_after_recall_days` overrides it).
    #[arg(long, value_name = "DAYS")]
    pub(crate) recall_retention_days: Option<i32>,
    /// The tenant's tiering bandwidth in bytes per second (10MB, …), shared by its running
    /// tier jobs, or `none`.
    #[arg(long, value_name = "SIZE|none", value_parser = parse_size_cap, allow_hyphen_values = true)]
    pub(crate) tier_bandwidth_limit: Option<Cap>,
    /// The same for recall jobs (on-access recalls are never throttled), or `none`.
    #[arg(long, value_name = "SIZE|none", value_parser = parse_size_cap, allow_hyphen_values = true)]
    pub(crate) recall_bandwidth_limit: Option<Cap>,
    #[command(flatten)]
    pub(crate) tenant: TenantArg,
}

/// A cap that can be removed: `Cap(None)` is `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cap(pub(crate) Option<i64>);

fn is_none_word(s: &str) -> bool {
    matches!(s.trim().to_ascii_lowercase().as_str(), "none" | "unlimited" | "off")
}

fn parse_count_cap(s: &str) -> Result<Cap, String> {
    if is_none_word(s) {
        return Ok(Cap(None));
    }
    s.trim().parse::<i64>().ok().filter(|n| *n >= 1).map(|n| Cap(Some(n))).ok_or_else(|| {
        format!("`{s}` is not a count; expected a whole number of at least 1, or `none`")
    })
}

fn parse_size_cap(s: &str) -> Result<Cap, String> {
    if is_none_word(s) {
        return Ok(Cap(None));
    }
    crate::size::parse(s).map(|n| Cap(Some(n)))
}

/// An extension with its dot, lower-case: `pdf`, `.PDF` → `.pdf`.
fn parse_extension(s: &str) -> Result<String, String> {
    let e = s.trim().trim_start_matches('.');
    if e.is_empty() || e.contains(['/', '.']) || e.chars().any(char::is_whitespace) {
        return Err(format!("`{s}` is not a file extension; expected e.g. `.pdf`"));
    }
    Ok(format!(".{}", e.to_lowercase()))
}

/// A size in bytes (see [`crate::size`]): `512`, `4k`, `10MiB`, `1.5GB`.
fn parse_size(s: &str) -> Result<i64, String> {
    crate::size::parse(s)
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

/// The storage target kinds `--kind` accepts: [`TargetKind::ALL`], the one list.
fn target_kinds() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(TargetKind::ALL.map(TargetKind::as_str))
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
    fn caps_parse() {
        assert_eq!(parse_count_cap("100"), Ok(Cap(Some(100))));
        assert_eq!(parse_count_cap("none"), Ok(Cap(None)));
        assert_eq!(parse_count_cap("Unlimited"), Ok(Cap(None)));
        assert!(parse_count_cap("0").is_err());
        assert!(parse_count_cap("-3").is_err());
        assert!(parse_count_cap("many").is_err_and(|e| e.contains("`none`")));
        assert_eq!(parse_size_cap("2GiB"), Ok(Cap(Some(2 << 30))));
        assert_eq!(parse_size_cap("off"), Ok(Cap(None)));
        assert!(parse_size_cap("-1").is_err_and(|e| e.contains("cannot be negative")));
    }

    #[test]
    fn host_groups_need_groups_or_clear() {
        let parse = |extra: &[&str]| {
            let mut argv =
                vec!["altoctl", "hosts", "groups", "00000000-0000-0000-0000-000000000001"];
            argv.extend_from_slice(extra);
            Cli::try_parse_from(argv).map(|c| c.command)
        };
        assert!(parse(&[]).is_err(), "nothing to set");
        assert!(parse(&["--clear", "eu"]).is_err(), "both");
        match parse(&["eu", "finance"]) {
            Ok(Command::Hosts(HostsCmd::Groups { groups, clear, .. })) => {
                assert_eq!(groups, ["eu", "finance"]);
                assert!(!clear);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            parse(&["--clear"]),
            Ok(Command::Hosts(HostsCmd::Groups { clear: true, .. }))
        ));
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
        assert_eq!(parse_size("1.5GB"), Ok(1_500_000_000));
        assert!(parse_size("-5").is_err_and(|e| e.contains("not a size")));
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
