//! Tiering data-path benchmark: copy a tree to a local-directory tier-2 target (streamed
//! through SHA-256, fsynced, verified, self-describing sidecar) and turn every file into a
//! stub, side by side with plain `cp -r` of the same data to the same file system in the same
//! run. Also reports raw SHA-256 throughput and the per-file overhead on 10,000 4 KiB files.
//!
//! ```text
//! cargo run --release -p alto-bench --bin alto-tier-bench -- [--small] [--scratch DIR]
//! ```
//! Default: 2 GiB (1,536 files of 1 MiB and two of 256 MiB); `--small`: 64 MiB (CI). Needs
//! root (stubs use `trusted.*` attributes and leases). Prints a Markdown table; never asserts
//! absolute times.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use alto_stub::{StubAttr, StubState};
use alto_tier2::{Compression, DirTarget, PutMeta};
use anyhow::{bail, Context, Result};
use sha2::Digest as _;

fn fill(path: &Path, size: usize, seed: u64) -> Result<()> {
    let mut f = std::fs::File::create(path)?;
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for chunk in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let b = x.to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
        let n = left.min(buf.len());
        f.write_all(&buf[..n])?;
        left -= n;
    }
    f.sync_all()?;
    Ok(())
}

fn make_tree(root: &Path, files: &[(String, usize)]) -> Result<()> {
    std::fs::create_dir_all(root)?;
    for (i, (name, size)) in files.iter().enumerate() {
        let p = root.join(name);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d)?;
        }
        fill(&p, *size, i as u64 + 1)?;
    }
    Ok(())
}

fn drop_caches() {
    let _ = Command::new("sync").status();
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
}

fn cp_r(src: &Path, dst: &Path) -> Result<Duration> {
    let _ = std::fs::remove_dir_all(dst);
    let t = Instant::now();
    let st = Command::new("cp").arg("-r").arg(src).arg(dst).status()?;
    // cp leaves data in the page cache; sync so both sides pay for durability.
    let st2 = Command::new("sync").status()?;
    if !st.success() || !st2.success() {
        bail!("cp -r failed");
    }
    Ok(t.elapsed())
}

fn tier_all(src: &Path, t2: &Path, files: &[(String, usize)]) -> Result<Duration> {
    let _ = std::fs::remove_dir_all(t2);
    std::fs::create_dir_all(t2)?;
    let customer = alto_model::CustomerId(uuid::Uuid::from_u128(7));
    let host = alto_model::HostId(uuid::Uuid::from_u128(9));
    let target = DirTarget::open(t2, customer)?;
    let now = chrono::DateTime::from_timestamp(1_780_000_000, 0).context("time")?;
    let t = Instant::now();
    for (name, _) in files {
        let p = src.join(name);
        let id = alto_stub::identity(&p)?;
        let out = {
            let f = std::fs::File::open(&p)?;
            let meta = f.metadata()?;
            use std::os::unix::fs::MetadataExt as _;
            target.put(
                f,
                &PutMeta {
                    host_id: host,
                    path: p.to_string_lossy().into_owned(),
                    path_escaped: false,
                    size: id.size,
                    mtime_ns: id.mtime_ns,
                    atime_ns: meta.atime() * 1_000_000_000 + meta.atime_nsec(),
                    expected_sha256: None,
                    compression: Compression::None,
                    created_at: now,
                },
            )?
        };
        let attr = StubAttr {
            state: StubState::Stubbed,
            object_key: out.key().to_string(),
            target: "default".into(),
            size: id.size,
            mtime_ns: id.mtime_ns,
            sha256: out.record.sha256.0,
            chunks: None,
        };
        alto_stub::convert_to_stub(&p, &id, &attr)?;
    }
    Command::new("sync").status()?;
    Ok(t.elapsed())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let small = args.iter().any(|a| a == "--small");
    let scratch = args
        .iter()
        .position(|a| a == "--scratch")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/alto-tier-bench"));
    if !rustix::process::geteuid().is_root() {
        println!("alto-tier-bench: needs root (trusted.* attributes, leases); skipped");
        return Ok(());
    }
    let (n_small, n_big, big) = if small { (48, 1, 16usize << 20) } else { (1536, 2, 256 << 20) };
    let mut files: Vec<(String, usize)> =
        (0..n_small).map(|i| (format!("d{}/f{i:05}.bin", i % 16), 1usize << 20)).collect();
    files.extend((0..n_big).map(|i| (format!("big/b{i}.img"), big)));
    let total: usize = files.iter().map(|f| f.1).sum();
    let src = scratch.join("src");
    let _ = std::fs::remove_dir_all(&scratch);
    eprintln!("generating {} files, {} MiB…", files.len(), total >> 20);
    make_tree(&src, &files)?;

    drop_caches();
    let cp = cp_r(&src, &scratch.join("cp-copy"))?;
    let _ = std::fs::remove_dir_all(scratch.join("cp-copy"));
    drop_caches();
    let tier = tier_all(&src, &scratch.join("tier2"), &files)?;

    // SHA-256 alone, in memory.
    let buf = vec![0x5au8; 256 << 20];
    let t = Instant::now();
    let d = sha2::Sha256::digest(&buf);
    let sha = t.elapsed();
    std::hint::black_box(d);

    // Per-file overhead: 10,000 (1,000 small) 4 KiB files.
    let n4k = if small { 1000 } else { 10_000 };
    let small_files: Vec<(String, usize)> =
        (0..n4k).map(|i| (format!("s{}/f{i:05}", i % 100), 4096)).collect();
    let src4 = scratch.join("src4k");
    make_tree(&src4, &small_files)?;
    drop_caches();
    let cp4 = cp_r(&src4, &scratch.join("cp4k"))?;
    drop_caches();
    let tier4 = tier_all(&src4, &scratch.join("tier2-4k"), &small_files)?;

    let mib = total as f64 / (1 << 20) as f64;
    println!("| step | seconds | MiB/s | vs cp -r |");
    println!("|---|---:|---:|---:|");
    println!(
        "| `cp -r` + sync, {} files, {mib:.0} MiB | {:.2} | {:.0} | 1.00× |",
        files.len(),
        cp.as_secs_f64(),
        mib / cp.as_secs_f64()
    );
    println!(
        "| tier (hash, copy, fsync, verify, sidecar) + stub, same files | {:.2} | {:.0} | {:.2}× of cp throughput |",
        tier.as_secs_f64(),
        mib / tier.as_secs_f64(),
        cp.as_secs_f64() / tier.as_secs_f64()
    );
    println!(
        "| SHA-256 of 256 MiB in memory | {:.3} | {:.0} | — |",
        sha.as_secs_f64(),
        256.0 / sha.as_secs_f64()
    );
    println!(
        "| `cp -r` + sync, {n4k} files of 4 KiB | {:.2} | {:.0} files/s | 1.00× |",
        cp4.as_secs_f64(),
        n4k as f64 / cp4.as_secs_f64()
    );
    println!(
        "| tier + stub, {n4k} files of 4 KiB | {:.2} | {:.0} files/s | {:.2}× of cp; {:.2} ms per file |",
        tier4.as_secs_f64(),
        n4k as f64 / tier4.as_secs_f64(),
        cp4.as_secs_f64() / tier4.as_secs_f64(),
        tier4.as_secs_f64() * 1000.0 / n4k as f64
    );
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}
