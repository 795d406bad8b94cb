//! The `alto-agent` binary.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use alto_agent::{Progress, ScanOptions, ScanSummary, Scanner};
use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

/// The Alto agent: scans file systems on this host and reports them to the Alto server.
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
    /// Run the agent: heartbeats, scheduled full scans of the configured roots, and uploads
    /// from the local spool (kept across outages and restarts).
    Run(RunArgs),
    /// Spool a batch file (from `scan`) as a scan and upload it now.
    Upload(UploadArgs),
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

fn run_daemon(a: &RunArgs) -> anyhow::Result<()> {
    let mut flags = serde_json::Map::new();
    if !a.roots.is_empty() {
        flags.insert("roots".into(), serde_json::json!(a.roots));
    }
    if let Some(d) = &a.state_dir {
        flags.insert("state_dir".into(), serde_json::json!(d));
    }
    let cfg = alto_agent::config::AgentConfig::load(
        a.config.as_deref(),
        &serde_json::Value::Object(flags),
    )?;
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
        alto_agent::daemon::run(cfg, cancel).await
    })?;
    Ok(())
}

fn upload(a: &UploadArgs) -> anyhow::Result<()> {
    let id = alto_agent::state::Identity::load(&a.state_dir)?;
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
    /// Skip paths matching this glob (repeatable). Matched against the whole absolute path,
    /// where `*` also matches `/` (so `*.tmp` skips every .tmp file and `**/node_modules` every
    /// node_modules directory). An excluded directory is not descended.
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
