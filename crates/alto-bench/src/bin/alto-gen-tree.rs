//! `alto-gen-tree`: creates a realistic, deterministic directory tree for benchmarks.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;

/// Create a realistic directory tree (depth 3–8, varied names, a few hundred extensions,
/// small real files plus ~1 % large sparse ones, times spread over five years).
#[derive(Debug, Parser)]
#[command(name = "alto-gen-tree", version, about)]
struct Args {
    /// Where to create the tree (created if missing).
    #[arg(long, value_name = "DIR")]
    root: PathBuf,
    /// How many regular files.
    #[arg(long, value_name = "N")]
    files: u64,
    /// Seed: the same seed and N give the same tree.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Threads creating files (default: one per available core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let threads = if args.threads == 0 {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    } else {
        args.threads
    };
    let started = Instant::now();
    let plan = alto_bench::plan(args.files, args.seed);
    let bytes = alto_bench::generate(&args.root, &plan, threads)
        .with_context(|| format!("generating under {}", args.root.display()))?;
    eprintln!(
        "alto-gen-tree: {} files, {} directories, {} bytes of data under {} in {:.1}s",
        args.files,
        plan.dirs.len(),
        bytes,
        args.root.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
