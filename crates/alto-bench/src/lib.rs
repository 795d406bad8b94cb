//! Benchmark support for `alto-agent`: a deterministic generator of realistic directory trees.
//!
//! The tree is planned from a seed (directories, then each file from its own seed-derived
//! stream, so the result does not depend on the number of threads that create it). Most files
//! hold 0–16 KiB of real data; about 1 % are large sparse files (`set_len`). Modification and
//! access times spread over about five years.
//!
//! **Must never:** write outside the root it is given, or delete anything.

use std::fs::{File, FileTimes};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// SplitMix64: tiny, fast, deterministic.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.unit().max(1e-12);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

const COMMON_EXT: &[&str] = &[
    "pdf", "docx", "xlsx", "pptx", "doc", "xls", "txt", "csv", "log", "jpg", "jpeg", "png", "gif",
    "tif", "tiff", "bmp", "mp4", "mov", "avi", "mkv", "mp3", "wav", "zip", "gz", "tar", "7z",
    "rar", "iso", "bak", "tmp", "json", "xml", "html", "htm", "css", "js", "ts", "py", "rs", "c",
    "h", "cpp", "java", "class", "jar", "go", "sh", "ps1", "bat", "exe", "dll", "so", "o", "a",
    "msg", "eml", "pst", "ost", "vsdx", "dwg", "dxf", "psd", "ai", "indd", "sql", "db", "sqlite",
    "mdb", "accdb", "parquet", "avro", "orc", "md", "rtf", "odt", "ods", "odp", "ini", "cfg",
    "conf", "yaml", "yml", "toml", "DAT", "JPG", "PDF", "heic", "webp", "svg", "eps", "raw", "cr2",
    "nef", "dng", "ogg", "flac", "m4a", "wmv", "vmdk", "vhd", "qcow2",
];

/// A few hundred extensions, most common first.
pub fn extensions() -> Vec<String> {
    let mut v: Vec<String> = COMMON_EXT.iter().map(|s| (*s).to_owned()).collect();
    let mut rng = Rng::new(0xe47);
    let letters = b"abcdefghijklmnopqrstuvwxyz0123456789";
    while v.len() < 320 {
        let len = rng.range(2, 5) as usize;
        let e: String = (0..len).map(|_| letters[rng.range(0, 35) as usize] as char).collect();
        if !v.contains(&e) {
            v.push(e);
        }
    }
    v
}

const SYLLABLES: &[&str] = &[
    "re", "port", "data", "final", "v", "draft", "scan", "img", "invoice", "2019", "2021", "proj",
    "backup", "copy", "of", "new", "old", "q", "budget", "team", "meeting", "notes", "x", "test",
    "photo", "DSC", "export", "summary", "plan", "contract", "ü", "é", "日本", " ", "-", "_",
    "client", "archive", "misc", "tmp", "build", "release", "Ω", "ç", "memo",
];

/// A name of varied length (1 to ~60 bytes) from a small syllable vocabulary.
pub fn word(rng: &mut Rng) -> String {
    // Skewed towards short names with a long tail.
    let n = 1 + (rng.unit().powi(2) * 10.0) as usize;
    let mut s = String::new();
    for _ in 0..n {
        s.push_str(SYLLABLES[rng.range(0, SYLLABLES.len() as u64 - 1) as usize]);
    }
    let s = s.trim().to_owned();
    if s.is_empty() || s == "." || s == ".." {
        "x".to_owned()
    } else {
        s
    }
}

/// One directory of the plan, relative to the root.
#[derive(Debug, Clone)]
pub struct PlannedDir {
    pub rel: PathBuf,
    pub depth: usize,
}

/// The tree's shape: directories (parents before children) and, per file, its directory.
#[derive(Debug, Clone)]
pub struct Plan {
    pub dirs: Vec<PlannedDir>,
    /// Indexes into `dirs` of directories that receive files (depth 3 to 8).
    pub leaves: Vec<usize>,
    pub seed: u64,
    pub files: u64,
}

/// Plans about one directory per 20 files, at depths 1 to 8, files at depths 3 to 8.
pub fn plan(files: u64, seed: u64) -> Plan {
    let mut rng = Rng::new(seed ^ 0xd1e5);
    let target = (files / 20).max(8) as usize;
    struct Node {
        children: Vec<usize>,
        depth: usize,
        rel: PathBuf,
    }
    let mut nodes = vec![Node { children: Vec::new(), depth: 0, rel: PathBuf::new() }];
    let mut made = 0usize;
    while made < target {
        let depth = rng.range(3, 8) as usize;
        let mut cur = 0usize;
        for _ in 0..depth {
            let nchildren = nodes[cur].children.len();
            let new = nchildren == 0 || rng.unit() < 0.6 / (1.0 + nchildren as f64).sqrt();
            if new && made < target {
                let name = format!("{}.{}", word(&mut rng), nodes.len());
                let rel = nodes[cur].rel.join(name);
                let d = nodes[cur].depth + 1;
                nodes.push(Node { children: Vec::new(), depth: d, rel });
                let id = nodes.len() - 1;
                nodes[cur].children.push(id);
                made += 1;
                cur = id;
            } else if nchildren > 0 {
                // Skewed choice: earlier children are busier.
                let i = ((rng.unit().powi(2)) * nchildren as f64) as usize;
                cur = nodes[cur].children[i.min(nchildren - 1)];
            } else {
                break;
            }
        }
    }
    let dirs: Vec<PlannedDir> =
        nodes.iter().skip(1).map(|n| PlannedDir { rel: n.rel.clone(), depth: n.depth }).collect();
    let mut leaves: Vec<usize> =
        dirs.iter().enumerate().filter(|(_, d)| d.depth >= 3).map(|(i, _)| i).collect();
    if leaves.is_empty() {
        leaves = (0..dirs.len()).collect();
    }
    Plan { dirs, leaves, seed, files }
}

/// One planned file.
#[derive(Debug, Clone)]
pub struct PlannedFile {
    pub rel: PathBuf,
    /// Bytes written for real.
    pub data: usize,
    /// Set with `set_len` (sparse) when larger than `data`.
    pub len: u64,
    pub mtime: SystemTime,
    pub atime: SystemTime,
}

const FIVE_YEARS: u64 = 5 * 365 * 24 * 3600;

impl Plan {
    /// File `i`, from its own random stream.
    pub fn file(&self, i: u64, exts: &[String], now: SystemTime) -> PlannedFile {
        let mut rng = Rng::new(self.seed.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ i);
        rng.next_u64();
        // Skewed leaf choice: some directories are much fuller than others.
        let li = (rng.unit().powi(3) * self.leaves.len() as f64) as usize;
        let dir = &self.dirs[self.leaves[li.min(self.leaves.len() - 1)]];
        let ext_i = (rng.unit().powi(4) * exts.len() as f64) as usize;
        let ext = &exts[ext_i.min(exts.len() - 1)];
        let name = match rng.range(0, 19) {
            0 => format!("{}-{i}", word(&mut rng)),
            1 => format!(".{}-{i}", word(&mut rng)),
            _ => format!("{}-{i}.{ext}", word(&mut rng)),
        };
        // Log-normal around 2 KiB, capped at 16 KiB of real data.
        let size = (2048.0 * (1.6 * rng.normal()).exp()) as u64;
        let data = if rng.range(0, 30) == 0 { 0 } else { size.min(16 * 1024) as usize };
        let len = if rng.range(0, 99) == 0 {
            // Large sparse file: 1 MiB to ~10 GiB.
            (1u64 << 20) << rng.range(0, 13)
        } else {
            data as u64
        };
        let age = rng.range(0, FIVE_YEARS);
        let mtime = now - Duration::from_secs(age);
        let atime = mtime + Duration::from_secs(rng.range(0, age));
        PlannedFile { rel: dir.rel.join(name), data, len, mtime, atime }
    }
}

/// Creates the planned tree under `root` with `threads` threads; returns bytes written.
pub fn generate(root: &Path, plan: &Plan, threads: usize) -> std::io::Result<u64> {
    std::fs::create_dir_all(root)?;
    for d in &plan.dirs {
        match std::fs::create_dir(root.join(&d.rel)) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
    }
    let exts = extensions();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600); // 2026-01-01
    let mut fill = vec![0u8; 16 * 1024];
    let mut rng = Rng::new(plan.seed);
    for b in fill.iter_mut() {
        *b = (rng.next_u64() & 0x7f) as u8;
    }
    let threads = threads.max(1) as u64;
    let written = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (exts, fill) = (&exts, &fill);
                s.spawn(move || -> std::io::Result<u64> {
                    let mut bytes = 0;
                    let mut i = t;
                    while i < plan.files {
                        let f = plan.file(i, exts, now);
                        let mut file = File::create(root.join(&f.rel))?;
                        file.write_all(&fill[..f.data])?;
                        bytes += f.data as u64;
                        if f.len > f.data as u64 {
                            file.set_len(f.len)?;
                        }
                        file.set_times(
                            FileTimes::new().set_modified(f.mtime).set_accessed(f.atime),
                        )?;
                        i += threads;
                    }
                    Ok(bytes)
                })
            })
            .collect();
        let mut total = 0;
        for h in handles {
            total += h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))?;
        }
        Ok::<u64, std::io::Error>(total)
    })?;
    // Directory times last: creating files changed them.
    let mut rng = Rng::new(plan.seed ^ 0xd17);
    for d in plan.dirs.iter().rev() {
        let t = now - Duration::from_secs(rng.range(0, FIVE_YEARS));
        File::open(root.join(&d.rel))?
            .set_times(FileTimes::new().set_modified(t).set_accessed(t))?;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(root: &Path) -> Vec<(PathBuf, u64, SystemTime)> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let e = e.unwrap();
                let m = e.metadata().unwrap();
                if m.is_dir() {
                    stack.push(e.path());
                } else {
                    out.push((
                        e.path().strip_prefix(root).unwrap().to_path_buf(),
                        m.len(),
                        m.modified().unwrap(),
                    ));
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn deterministic_whatever_the_thread_count() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let p = plan(500, 7);
        generate(a.path(), &p, 1).unwrap();
        generate(b.path(), &plan(500, 7), 2).unwrap();
        let (la, lb) = (listing(a.path()), listing(b.path()));
        assert_eq!(la.len(), 500);
        assert_eq!(la, lb);
        let depths: Vec<usize> = la.iter().map(|(p, _, _)| p.components().count() - 1).collect();
        assert!(depths.iter().all(|d| (3..=8).contains(d)), "{depths:?}");
        assert_ne!(listing(a.path()), {
            let c = tempfile::tempdir().unwrap();
            generate(c.path(), &plan(500, 8), 2).unwrap();
            listing(c.path())
        });
    }

    #[test]
    fn extensions_are_a_few_hundred_and_distinct() {
        let e = extensions();
        assert_eq!(e.len(), 320);
        let mut d = e.clone();
        d.sort();
        d.dedup();
        assert_eq!(d.len(), 320);
    }
}
