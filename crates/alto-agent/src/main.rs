//! The `alto-agent` binary: parses the command line, loads the configuration and calls the
//! library (`scanner`, `daemon`, `tier`, `recall`, `gc`) for each command.
//!
//! **Must never:** hold agent logic beyond arguments, configuration and output (what the
//! commands do lives in the library, where the tests drive it), or print the host credential's
//! secret.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use alto_agent::{Progress, ScanOptions, ScanSummary, Scanner};
use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

/// The Alto agent: scans file systems on this host, reports them to the Alto server, tiers
/// cold files to tier-2 storage (leaving stubs) and recalls them.
#[derive(Debug, Parser)]
#[command(name = "alto-agent", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Scan directory trees once, offline, into a batch file (one row per regular file).
    ///
    /// Never follows symlinks, never modifies the tree, stays on each root's file system unless
    /// --cross-filesystems. Unreadable or vanishing entries are counted and reported; the exit
    /// code is non-zero only if a root cannot be opened or the output cannot be written.
    Scan(ScanArgs),
    /// Enroll this host: trade a one-time enrollment token for the host credential, stored in
    /// <state-dir>/credential.json (mode 0600).
    Enroll(EnrollArgs),
    /// Run the agent: heartbeats, scheduled full scans of the configured roots, uploads
    /// from the local spool (kept across outages and restarts), and the tiering jobs the
    /// server queues for this host (as `tier-once` runs them, every `tier_poll_interval`).
    Run(RunArgs),
    /// Spool a batch file (from `scan`) as a scan and upload it now.
    Upload(UploadArgs),
    /// Claim and execute the tiering jobs queued for this host, then exit.
    ///
    /// First finishes or rolls back whatever an interrupted run left (the journal in
    /// <state-dir>/tier-journal), then claims jobs one at a time until the server has none:
    /// each file is checked against the job's snapshot, copied to tier-2 and verified,
    /// reported `staged`, converted to a stub and reported `stubbed` (or `skipped`/`failed`
    /// with the reason). Exit code 0 when every job ran (per-file outcomes are in the
    /// summary and on the server), non-zero if the server or the journal failed.
    TierOnce(TierArgs),
    /// Bring stubs back from tier-2: write the content back into each file (verified against
    /// the SHA-256 in its stub attribute before the attribute is removed) and tell the server.
    ///
    /// A path that is not a stub is reported and left alone. If the object is missing or
    /// corrupt the file stays a stub, exactly as it was. If the server is unreachable the
    /// recall still happens and a warning is printed. Exit code non-zero if any path was not
    /// recalled.
    Recall(RecallArgs),
    /// Delete what tier-2 holds for this host that the stub registry does not: objects and
    /// sidecars of files copied but never stubbed (changed, open, cancelled, interrupted) or
    /// recalled since.
    ///
    /// Sidecars younger than --grace or of files in a job this agent still has a journal of
    /// are kept; the server is asked about every other one and only those it does not know
    /// are deleted, then each object no sidecar (of any host) references any more.
    ReconcileTier2(ReconcileArgs),
    /// Print the systemd drop-in that lets `alto-agent.service` write where the
    /// configuration says: the state directory, the scanned roots and the tier-2 base.
    ///
    /// The unit has `ProtectSystem=strict` (the whole file system read-only); install the
    /// output as /etc/systemd/system/alto-agent.service.d/paths.conf, then
    /// `systemctl daemon-reload` and restart the agent (see docs/deployment.md).
    UnitPaths(UnitPathsArgs),
    /// Hold the on-access event group (started by `run`, or by its own systemd unit): while
    /// this process lives, readers waiting on stubs stay blocked through agent restarts
    /// instead of reading zeros. Does nothing else.
    #[command(hide = true)]
    HsmHolder(HolderArgs),
}

#[derive(Debug, clap::Args)]
struct HolderArgs {
    /// State directory (where the holder records itself).
    #[arg(long, default_value = "/var/lib/alto-agent")]
    state_dir: PathBuf,
    /// How long to wait for an agent before answering accesses itself (ordinary files
    /// through, stubs EAGAIN).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    unattended_after: Duration,
}

#[derive(Debug, clap::Args)]
struct UnitPathsArgs {
    /// TOML configuration file; env ALTO_AGENT_* overrides it.
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// State directory.
    #[arg(long)]
    state_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct ReconcileArgs {
    /// TOML configuration file; env ALTO_AGENT_* overrides it.
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// State directory (credential, journals, remembered targets).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// The storage target (as named in rules and stub attributes).
    #[arg(long, default_value = "default")]
    target: String,
    /// Keep sidecars younger than this (a put or its report may be in flight).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    grace: Duration,
    /// Only report what would be deleted.
    #[arg(long)]
    dry_run: bool,
    /// How to print the report.
    #[arg(long, value_enum, default_value_t = SummaryFormat::Text)]
    output: SummaryFormat,
}

#[derive(Debug, clap::Args)]
struct TierArgs {
    /// TOML configuration file; env ALTO_AGENT_* overrides it.
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// State directory (credential and journal).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// How to print the summary on stdout.
    #[arg(long, value_enum, default_value_t = SummaryFormat::Text)]
    summary_format: SummaryFormat,
}

#[derive(Debug, clap::Args)]
struct RecallArgs {
    /// Stub files to recall, or directories: every stub in their trees (symbolic links not
    /// followed, other file systems not entered).
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// TOML configuration file (tier2.directory_base); env ALTO_AGENT_* overrides it.
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// State directory (credential).
    #[arg(long)]
    state_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct EnrollArgs {
    /// The Alto server URL, e.g. http://alto.example:8080.
    #[arg(long, env = "ALTO_AGENT_SERVER_URL")]
    server: String,
    /// The one-time enrollment token shown when the host was registered.
    #[arg(long, env = "ALTO_AGENT_ENROLL_TOKEN", hide_env_values = true)]
    token: String,
    /// State directory.
    #[arg(long, env = "ALTO_AGENT_STATE_DIR", default_value = "/var/lib/alto-agent")]
    state_dir: PathBuf,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// TOML configuration file (see deploy/agent.example.toml); env ALTO_AGENT_* overrides it.
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// A directory to scan (repeatable; replaces `roots` from the file).
    #[arg(long = "root", value_name = "DIR")]
    roots: Vec<PathBuf>,
    /// State directory (credential and spool).
    #[arg(long)]
    state_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct UploadArgs {
    /// The batch file to upload (.parquet, .csv, .csv.gz, .csv.zst).
    #[arg(long)]
    file: PathBuf,
    /// `full` (files missing from it are marked deleted) or `partial`.
    #[arg(long, default_value = "full", value_parser = ["full", "partial"])]
    kind: String,
    /// State directory (credential and spool).
    #[arg(long, env = "ALTO_AGENT_STATE_DIR", default_value = "/var/lib/alto-agent")]
    state_dir: PathBuf,
}

/// The enrolled identity; a credential rotation a crash left pending is finished (or dropped)
/// first, as `run` does at start, so that one-shot commands use the credential that works.
fn identity(
    state_dir: &std::path::Path,
    server: Option<&str>,
) -> anyhow::Result<alto_agent::state::Identity> {
    use alto_agent::state::Identity;
    if Identity::load_pending(state_dir).is_some() {
        let current = Identity::load(state_dir)?;
        let base = alto_client::Client::new(server.unwrap_or(&current.server_url))?;
        let r = runtime()?.block_on(alto_agent::rotation::resolve_pending(state_dir, &base));
        if let Err(e) = r {
            eprintln!("warning: pending credential rotation not resolved: {e}");
        }
    }
    Ok(Identity::load(state_dir)?)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("async runtime")
}

fn enroll(a: &EnrollArgs) -> anyhow::Result<()> {
    let id = runtime()?.block_on(alto_agent::daemon::enroll(&a.server, &a.token, &a.state_dir))?;
    println!(
        "enrolled: host {} of tenant {}; credential saved in {}",
        id.host_id,
        id.tenant_id,
        alto_agent::state::identity_path(&a.state_dir).display()
    );
    Ok(())
}

fn load_config(
    file: Option<&std::path::Path>,
    roots: &[PathBuf],
    state_dir: Option<&PathBuf>,
) -> anyhow::Result<alto_agent::config::AgentConfig> {
    let mut flags = serde_json::Map::new();
    if !roots.is_empty() {
        flags.insert("roots".into(), serde_json::json!(roots));
    }
    if let Some(d) = state_dir {
        flags.insert("state_dir".into(), serde_json::json!(d));
    }
    Ok(alto_agent::config::AgentConfig::load(file, &serde_json::Value::Object(flags))?)
}

fn tier_once(a: &TierArgs) -> anyhow::Result<()> {
    let cfg = load_config(a.config.as_deref(), &[], a.state_dir.as_ref())?;
    // Stubbing must remove a file's on-access ignore mark, which needs the host's group.
    alto_agent::onaccess::join_quietly(&cfg)
        .context("this host recalls on access, but this process cannot join its event group")?;
    let id = identity(&cfg.state_dir, cfg.server_url.as_deref())?;
    let summary = runtime()?.block_on(async {
        let cancel = tokio_util::sync::CancellationToken::new();
        let c2 = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                c2.cancel();
            }
        });
        let (exec, api) = alto_agent::daemon::tier_executor(&cfg, &id, cancel)?;
        anyhow::Ok(alto_agent::tier::run_pass(&exec, &api).await?)
    })?;
    match a.summary_format {
        SummaryFormat::Json => println!("{}", serde_json::to_string_pretty(&summary)?),
        SummaryFormat::Text => {
            let done = summary.jobs.iter().filter(|j| j.end.is_some()).count();
            let resumed = summary.jobs.iter().filter(|j| j.resumed).count();
            println!("jobs         {} ({done} ended, {resumed} resumed)", summary.jobs.len());
            println!("stubbed      {}", summary.stubbed());
            println!("skipped      {}", summary.skipped());
            println!("failed       {}", summary.failed());
            println!(
                "bytes        {} ({})",
                summary.bytes_stubbed(),
                indicatif::HumanBytes(summary.bytes_stubbed())
            );
            for j in &summary.jobs {
                let end = j.end.map(|e| format!("{e:?}").to_lowercase());
                println!(
                    "  job {} {}: {} stubbed, {} skipped, {} failed{}",
                    j.job_id,
                    end.as_deref().unwrap_or("open"),
                    j.stubbed,
                    j.skipped,
                    j.failed,
                    j.note.as_deref().map(|n| format!(" ({n})")).unwrap_or_default()
                );
            }
        }
    }
    if summary.storage_unavailable {
        eprintln!("warning: tier-2 storage unavailable; the job was handed back to the server");
    }
    Ok(())
}

fn reconcile_tier2(a: &ReconcileArgs) -> anyhow::Result<()> {
    use alto_model::Clock as _;
    let cfg = load_config(a.config.as_deref(), &[], a.state_dir.as_ref())?;
    let id = identity(&cfg.state_dir, cfg.server_url.as_deref())?;
    let customer = alto_model::CustomerId(id.tenant_id);
    let target = alto_agent::targets::open_for_read(
        &cfg.state_dir,
        &cfg.tier2.directory_base,
        &a.target,
        customer,
    )?;
    let api = alto_agent::api::ServerApi::new(alto_agent::daemon::host_client(&cfg, &id)?);
    let grace = chrono::Duration::from_std(a.grace).context("--grace is too long")?;
    let report = runtime()?.block_on(alto_agent::gc::reconcile(
        &api,
        target,
        alto_model::HostId(id.host_id),
        &alto_agent::journal::journal_dir(&cfg.state_dir),
        grace,
        alto_model::SystemClock.now(),
        a.dry_run,
    ))?;
    match a.output {
        SummaryFormat::Json => println!("{}", serde_json::to_string(&report)?),
        SummaryFormat::Text => {
            let verb = if a.dry_run { "would delete" } else { "deleted" };
            println!("sidecars     {} of this host", report.refs);
            println!("live         {}", report.live);
            println!("in flight    {} (kept)", report.in_flight);
            println!("invalid      {} (kept)", report.invalid);
            println!("{verb:<12} {} sidecars", report.refs_deleted);
            if !a.dry_run {
                println!(
                    "objects      {} deleted, {} bytes freed",
                    report.objects_deleted, report.bytes_freed
                );
            }
        }
    }
    Ok(())
}

fn recall(a: &RecallArgs) -> anyhow::Result<()> {
    let cfg = load_config(a.config.as_deref(), &[], a.state_dir.as_ref())?;
    alto_agent::onaccess::join_quietly(&cfg)
        .context("this host recalls on access, but this process cannot join its event group")?;
    let id = identity(&cfg.state_dir, cfg.server_url.as_deref())?;
    let base = cfg.tier2.directory_base.clone();
    let customer = alto_model::CustomerId(id.tenant_id);
    let api = alto_agent::api::ServerApi::new(alto_agent::daemon::host_client(&cfg, &id)?);
    let rt = runtime()?;
    let (mut recalled, mut failed, mut bytes, mut unreported) = (0u64, 0u64, 0u64, 0u64);
    let mut paths = Vec::new();
    for p in &a.paths {
        let (found, errors) = alto_agent::recall::stubs_under(p);
        for (d, e) in errors {
            failed += 1;
            eprintln!("error: {}: {e}", d.display());
        }
        paths.extend(found);
    }
    for p in &paths {
        match alto_agent::recall::recall_path(&cfg.state_dir, &base, customer, p) {
            Ok(r) => {
                recalled += 1;
                bytes += r.size;
                println!("recalled     {} ({} bytes)", p.display(), r.size);
                let (path, path_escaped) = alto_agent::recall::inventory_path(p);
                let report = alto_api_types::Recalled {
                    path,
                    path_escaped,
                    sha256: r.sha256.clone(),
                    trigger: alto_api_types::RecallTrigger::Explicit,
                    outcome: alto_api_types::RecallOutcome::Recalled,
                    error: None,
                    process: None,
                    bytes: r.size,
                    duration_ms: None,
                };
                if let Err(e) = rt.block_on(api.recalled(&report)) {
                    unreported += 1;
                    eprintln!(
                        "warning: {}: recalled, but the server was not told: {e}",
                        p.display()
                    );
                }
            }
            Err(e) => {
                failed += 1;
                eprintln!("error: {}: {e}", p.display());
            }
        }
    }
    println!(
        "recalled {recalled} file(s), {bytes} bytes; {failed} failed; {unreported} not reported to the server"
    );
    if failed > 0 {
        anyhow::bail!("{failed} of {} path(s) not recalled", paths.len().max(failed as usize));
    }
    Ok(())
}

fn run_daemon(a: &RunArgs) -> anyhow::Result<()> {
    let cfg = load_config(a.config.as_deref(), &a.roots, a.state_dir.as_ref())?;
    // Before any thread: the mount namespace that silences the agent's own I/O is per thread.
    let on_access = alto_agent::onaccess::prepare(&cfg);
    let rt = runtime()?;
    rt.block_on(async move {
        let cancel = tokio_util::sync::CancellationToken::new();
        let c2 = cancel.clone();
        tokio::spawn(async move {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {},
            }
            c2.cancel();
        });
        alto_agent::daemon::run_with(cfg, cancel, Some(on_access)).await
    })?;
    Ok(())
}

fn unit_paths(a: &UnitPathsArgs) -> anyhow::Result<()> {
    let cfg = load_config(a.config.as_deref(), &[], a.state_dir.as_ref())?;
    let source = match &a.config {
        Some(f) => f.display().to_string(),
        None => "the defaults and ALTO_AGENT_* variables".into(),
    };
    print!("{}", cfg.systemd_drop_in(&source));
    Ok(())
}

fn upload(a: &UploadArgs) -> anyhow::Result<()> {
    let id = identity(&a.state_dir, None)?;
    let spool = alto_agent::spool::Spool::open(&a.state_dir)?;
    let scan = spool.add_batch(&a.file, &a.kind, 100_000)?;
    let client = alto_client::Client::new(&id.server_url)?.with_token(id.credential);
    let n = runtime()?.block_on(alto_agent::daemon::drain(&client, &spool, 0))?;
    println!("uploaded {n} scan(s); this one is {scan}");
    Ok(())
}

#[derive(Debug, clap::Args)]
struct ScanArgs {
    /// A directory to scan (repeatable).
    #[arg(long = "root", required = true, value_name = "DIR")]
    roots: Vec<PathBuf>,
    /// The batch file; its name picks the format: .parquet, .csv, .csv.gz or .csv.zst.
    #[arg(long, short, value_name = "FILE")]
    output: PathBuf,
    /// Skip paths matching this glob (repeatable), in the rules' dialect: `*` and `?` stay
    /// within one name, `**` crosses directories; a glob without `/` matches the name at any
    /// depth (`*.tmp` skips every .tmp file, `node_modules` every node_modules directory), one
    /// with `/` must start with `/` or `**` and match the whole absolute path. An excluded
    /// directory is not descended. See docs/rules.md, "Path globs".
    #[arg(long = "exclude", value_name = "GLOB")]
    excludes: Vec<String>,
    /// Descend into directories on other file systems.
    #[arg(long)]
    cross_filesystems: bool,
    /// Walker threads (default: one per available core).
    #[arg(long, value_name = "N", default_value_t = 0)]
    threads: usize,
    /// How to print the summary on stdout.
    #[arg(long, value_enum, default_value_t = SummaryFormat::Text)]
    summary_format: SummaryFormat,
    /// No progress display even on a terminal.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SummaryFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ALTO_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Scan(args) => scan(&args),
        Command::Enroll(args) => enroll(&args),
        Command::Run(args) => run_daemon(&args),
        Command::Upload(args) => upload(&args),
        Command::TierOnce(args) => tier_once(&args),
        Command::Recall(args) => recall(&args),
        Command::ReconcileTier2(args) => reconcile_tier2(&args),
        Command::UnitPaths(args) => unit_paths(&args),
        Command::HsmHolder(args) => {
            alto_agent::onaccess::holder::run(&args.state_dir, args.unattended_after)
                .map_err(anyhow::Error::from)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn scan(args: &ScanArgs) -> anyhow::Result<()> {
    let opts = ScanOptions {
        roots: args.roots.clone(),
        excludes: args.excludes.clone(),
        cross_filesystems: args.cross_filesystems,
        threads: args.threads,
    };
    let scanner = Scanner::new(&opts)?;
    let progress = Arc::new(Progress::default());
    let display = (!args.quiet && std::io::stderr().is_terminal())
        .then(|| spawn_progress(Arc::clone(&progress)));
    let result = scanner
        .run_to_file(&args.output, &progress)
        .with_context(|| format!("scan to {}", args.output.display()));
    if let Some((stop, handle)) = display {
        let _ = stop.send(());
        let _ = handle.join();
    }
    let summary = result?;
    match args.summary_format {
        SummaryFormat::Json => println!("{}", serde_json::to_string_pretty(&summary)?),
        SummaryFormat::Text => print_text(&summary, args),
    }
    Ok(())
}

fn spawn_progress(
    progress: Arc<Progress>,
) -> (std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let handle = std::thread::spawn(move || {
        let bar = indicatif::ProgressBar::with_draw_target(
            None,
            indicatif::ProgressDrawTarget::stderr_with_hz(5),
        );
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {elapsed} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        let started = std::time::Instant::now();
        loop {
            let files = progress.files.load(Ordering::Relaxed);
            let bytes = progress.bytes.load(Ordering::Relaxed);
            let dirs = progress.directories.load(Ordering::Relaxed);
            let errors = progress.errors.load(Ordering::Relaxed);
            let rate = files as f64 / started.elapsed().as_secs_f64().max(0.001);
            bar.set_message(format!(
                "{files} files, {}, {dirs} directories, {errors} errors, {rate:.0} files/s",
                indicatif::HumanBytes(bytes)
            ));
            bar.tick();
            if rx.recv_timeout(Duration::from_millis(200)).is_ok() {
                break;
            }
        }
        bar.finish_and_clear();
    });
    (tx, handle)
}

fn print_text(s: &ScanSummary, args: &ScanArgs) {
    println!("output       {}", args.output.display());
    println!("rows         {}", s.rows);
    println!("files        {}", s.files);
    println!("bytes        {} ({})", s.bytes, indicatif::HumanBytes(s.bytes));
    println!("directories  {}", s.directories);
    println!("symlinks     {} (not followed)", s.symlinks);
    println!("other        {}", s.other);
    println!("stubs        {}", s.stubs);
    println!("excluded     {}", s.excluded);
    println!("other fs     {} (skipped)", s.other_filesystems);
    println!("errors       {}", s.error_count());
    for (kind, n) in &s.errors {
        println!("  {:<22} {n}", kind.as_str());
    }
    for e in &s.error_samples {
        println!("  e.g. {}: {} ({})", e.kind.as_str(), e.path, e.message);
    }
    let rate = s.files as f64 / s.seconds.max(0.000_001);
    println!("seconds      {:.3} ({rate:.0} files/s)", s.seconds);
}
