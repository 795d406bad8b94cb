//! `alto-agent scan` against real temporary directories.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use alto_agent::{ErrorKind, Progress, ScanOptions, ScanSummary, Scanner, STUB_XATTR};
use alto_batch::{Format, ScanRecord};
use rustix::fs::{Mode, OFlags, CWD};

fn scan_with(roots: &[&Path], excludes: &[&str], output: &Path) -> (ScanSummary, Vec<ScanRecord>) {
    let opts = ScanOptions {
        roots: roots.iter().map(|p| p.to_path_buf()).collect(),
        excludes: excludes.iter().map(|s| (*s).to_owned()).collect(),
        cross_filesystems: false,
        threads: 2,
    };
    let summary = Scanner::new(&opts).unwrap().run_to_file(output, &Progress::default()).unwrap();
    let format = Format::from_path(output).unwrap();
    let rows = alto_batch::read_all(File::open(output).unwrap(), format).unwrap();
    assert_eq!(summary.rows, rows.len() as u64);
    (summary, rows)
}

fn by_path(rows: Vec<ScanRecord>) -> BTreeMap<Vec<u8>, ScanRecord> {
    rows.into_iter().map(|r| (r.path.clone(), r)).collect()
}

fn bytes(p: &Path) -> Vec<u8> {
    p.as_os_str().as_bytes().to_vec()
}

fn join(dir: &Path, name: &[u8]) -> PathBuf {
    dir.join(OsStr::from_bytes(name))
}

fn open_dir(p: &Path) -> OwnedFd {
    rustix::fs::openat(CWD, p, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap()
}

/// Creates nested directories below `root` (through descriptors, since the total path exceeds
/// what one path lookup accepts) until the path reaches `total` bytes with a file of that exact
/// length at the bottom. Returns the file's absolute path bytes.
fn deep_file(root: &Path, prefix: &str, total: usize) -> Vec<u8> {
    let mut path = bytes(root);
    let mut fd = open_dir(root);
    let mut first = true;
    loop {
        let remaining = total - path.len() - 1;
        if remaining <= 255 {
            let name = if first {
                format!("{prefix}{}", "f".repeat(remaining - prefix.len()))
            } else {
                "f".repeat(remaining)
            };
            let f = rustix::fs::openat(
                &fd,
                name.as_str(),
                OFlags::WRONLY | OFlags::CREATE,
                Mode::from_raw_mode(0o644),
            )
            .unwrap();
            rustix::io::write(&f, b"deep").unwrap();
            path.push(b'/');
            path.extend_from_slice(name.as_bytes());
            assert_eq!(path.len(), total);
            return path;
        }
        let len = 200.min(remaining - 100);
        let name = if first {
            first = false;
            format!("{prefix}{}", "d".repeat(len - prefix.len()))
        } else {
            "d".repeat(len)
        };
        rustix::fs::mkdirat(&fd, name.as_str(), Mode::from_raw_mode(0o755)).unwrap();
        fd = rustix::fs::openat(
            &fd,
            name.as_str(),
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
        path.push(b'/');
        path.extend_from_slice(name.as_bytes());
    }
}

#[test]
fn hostile_names_survive_parquet_byte_exactly_and_metadata_matches() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap().join("root");
    std::fs::create_dir(&root).unwrap();
    let names: Vec<&[u8]> = vec![
        b"plain.txt",
        b"new\nline.pdf",
        b"quo\"te's.csv",
        b"com,ma;semi.doc",
        b"back\\slash\\x41",
        b"bad\xff\xfeutf8.bin",
        b"\xc3(",
        b" leading space",
        b"tab\there",
        "日本語のファイル.DOCX".as_bytes(),
        b"-dash",
        b".hidden",
    ];
    let sub = root.join("sub dir, \"quoted\"");
    std::fs::create_dir(&sub).unwrap();
    let mut expected = Vec::new();
    for (i, n) in names.iter().enumerate() {
        for dir in [&root, &sub] {
            let p = join(dir, n);
            std::fs::write(&p, vec![b'x'; i * 100]).unwrap();
            expected.push(bytes(&p));
        }
    }
    let bad_dir = join(&root, b"dir\x80\x81");
    std::fs::create_dir(&bad_dir).unwrap();
    let p = join(&bad_dir, b"inner\nfile");
    std::fs::write(&p, b"hello").unwrap();
    expected.push(bytes(&p));
    // Exactly 4096 bytes (the longest a batch row may carry), and one byte longer.
    let deep = deep_file(&root, "deep", 4096);
    let too_deep = deep_file(&root, "toodeep", 4097);
    expected.push(deep.clone());

    let out = tmp.path().join("scan.parquet");
    let (summary, rows) = scan_with(&[&root], &[], &out);
    let got = by_path(rows);
    let mut want = expected.clone();
    want.sort();
    assert_eq!(got.keys().cloned().collect::<Vec<_>>(), want);
    assert!(!got.contains_key(&too_deep));
    assert_eq!(summary.errors.get(&ErrorKind::PathTooLong), Some(&1), "{summary:?}");
    assert_eq!(summary.files, expected.len() as u64);

    for p in &expected {
        let r = &got[p];
        if p == &deep {
            assert_eq!(r.size, 4);
            continue;
        }
        let m = std::fs::symlink_metadata(OsStr::from_bytes(p)).unwrap();
        assert_eq!(r.size, m.size(), "{p:?}");
        assert_eq!(r.mtime_us, m.mtime() * 1_000_000 + m.mtime_nsec() / 1000);
        assert_eq!(r.atime_us, m.atime() * 1_000_000 + m.atime_nsec() / 1000);
        assert_eq!(r.ctime_us, m.ctime() * 1_000_000 + m.ctime_nsec() / 1000);
        assert_eq!(r.inode, m.ino());
        assert_eq!(r.device, m.dev());
        assert_eq!(r.mode, m.mode());
        assert_eq!(r.uid, m.uid());
        assert_eq!(r.gid, m.gid());
        assert_eq!(r.nlink, m.nlink());
        assert!(!r.owner.is_empty());
        assert_eq!(r.hash, "");
        assert_eq!(r.stub, None);
    }
    assert_eq!(got[&bytes(&root.join("plain.txt"))].extension(), ".txt");
}

#[test]
fn symlinks_are_neither_followed_nor_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().canonicalize().unwrap();
    let root = base.join("root");
    let outside = base.join("outside");
    std::fs::create_dir_all(root.join("d")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), b"s").unwrap();
    std::fs::write(root.join("d/real.txt"), b"r").unwrap();
    std::os::unix::fs::symlink(&outside, root.join("to-outside")).unwrap();
    std::os::unix::fs::symlink(root.join("d/real.txt"), root.join("to-file")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/dangling", root.join("dangling")).unwrap();
    std::os::unix::fs::symlink("..", root.join("d/loop")).unwrap();

    let (summary, rows) = scan_with(&[&root], &[], &base.join("out.parquet"));
    let paths: Vec<Vec<u8>> = rows.into_iter().map(|r| r.path).collect();
    assert_eq!(paths, vec![bytes(&root.join("d/real.txt"))]);
    assert_eq!(summary.symlinks, 4);
    assert_eq!(summary.directories, 2);
    assert_eq!(summary.error_count(), 0);
}

#[test]
fn excludes_prune_directories_and_skip_files() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap().join("root");
    std::fs::create_dir_all(root.join("keep/node_modules/deep")).unwrap();
    std::fs::create_dir_all(root.join("cache")).unwrap();
    std::fs::write(root.join("keep/a.txt"), b"a").unwrap();
    std::fs::write(root.join("keep/b.tmp"), b"b").unwrap();
    std::fs::write(root.join("keep/node_modules/deep/c.js"), b"c").unwrap();
    std::fs::write(root.join("cache/d.txt"), b"d").unwrap();
    let cache = format!("{}/cache", root.display());

    let (summary, rows) =
        scan_with(&[&root], &["**/node_modules", "*.tmp", &cache], &tmp.path().join("out.parquet"));
    let paths: Vec<Vec<u8>> = rows.into_iter().map(|r| r.path).collect();
    assert_eq!(paths, vec![bytes(&root.join("keep/a.txt"))]);
    assert_eq!(summary.excluded, 3);
    // root and keep only: excluded directories are not read.
    assert_eq!(summary.directories, 2);
}

#[test]
fn sparse_file_with_stub_attribute_is_a_stub_dense_file_is_not() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap().join("root");
    std::fs::create_dir(&root).unwrap();
    let stub = root.join("stub.bin");
    let dense = root.join("dense.bin");
    let sparse_plain = root.join("sparse-plain.bin");
    File::create(&stub).unwrap().set_len(10 << 20).unwrap();
    File::create(&sparse_plain).unwrap().set_len(10 << 20).unwrap();
    std::fs::write(&dense, vec![1u8; 64 * 1024]).unwrap();
    let value = b"s3://tier2/obj-42\xff";
    let set = rustix::fs::lsetxattr(&stub, STUB_XATTR, value, rustix::fs::XattrFlags::empty())
        .and_then(|()| {
            rustix::fs::lsetxattr(&dense, STUB_XATTR, b"ignored", rustix::fs::XattrFlags::empty())
        });

    let (summary, rows) = scan_with(&[&root], &[], &tmp.path().join("out.parquet"));
    let got = by_path(rows);
    assert_eq!(got.len(), 3);
    assert_eq!(got[&bytes(&sparse_plain)].stub, None);
    assert_eq!(got[&bytes(&dense)].stub, None, "only sparse files are checked for stubs");
    match set {
        Ok(()) => {
            assert_eq!(got[&bytes(&stub)].stub.as_deref(), Some("s3://tier2/obj-42\u{fffd}"));
            assert_eq!(summary.stubs, 1);
        }
        Err(e) => alto_test_services::skip_or_fail(
            "ALTO_REQUIRE_ROOT",
            &format!(
                "the stub assertion: this file system refuses {STUB_XATTR} ({e}); \
                 trusted.* attributes need CAP_SYS_ADMIN and file system support"
            ),
        ),
    }
    assert_eq!(summary.error_count(), 0);
}

#[test]
fn csv_and_compressed_csv_outputs_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(join(&root, b"a,\"b\"\nc\xff.txt"), b"xyz").unwrap();
    std::fs::write(root.join("plain"), b"").unwrap();
    let mut want = vec![bytes(&join(&root, b"a,\"b\"\nc\xff.txt")), bytes(&root.join("plain"))];
    want.sort();
    for name in ["out.csv", "out.csv.gz", "out.csv.zst"] {
        let (_, rows) = scan_with(&[&root], &[], &tmp.path().join(name));
        let got = by_path(rows);
        assert_eq!(got.keys().cloned().collect::<Vec<_>>(), want, "{name}");
        assert_eq!(got[&want[0]].size, 3);
    }
}

#[test]
fn several_roots_and_many_files() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().canonicalize().unwrap();
    let mut n = 0;
    for r in ["r1", "r2"] {
        for d in 0..20 {
            let dir = base.join(r).join(format!("d{d}")).join("x");
            std::fs::create_dir_all(&dir).unwrap();
            for f in 0..150 {
                std::fs::write(dir.join(format!("f{f}")), b"").unwrap();
                n += 1;
            }
        }
    }
    let (summary, rows) =
        scan_with(&[&base.join("r1"), &base.join("r2")], &[], &base.join("out.parquet"));
    assert_eq!(rows.len(), n);
    assert_eq!(summary.files, n as u64);
    assert_eq!(summary.directories, 2 * (1 + 20 * 2));
}

#[test]
fn a_missing_root_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = ScanOptions { roots: vec![tmp.path().join("nope")], ..Default::default() };
    assert!(Scanner::new(&opts).is_err());
    let file = tmp.path().join("file");
    std::fs::write(&file, b"").unwrap();
    let opts = ScanOptions { roots: vec![file], ..Default::default() };
    assert!(Scanner::new(&opts).is_err());
}

#[test]
fn cli_scans_reports_json_and_fails_only_on_fatal_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("a")).unwrap();
    std::fs::write(root.join("a/f.txt"), b"12345").unwrap();
    let bin = env!("CARGO_BIN_EXE_alto-agent");
    let out = tmp.path().join("out.parquet");
    let o = std::process::Command::new(bin)
        .args(["scan", "--summary-format", "json", "--root"])
        .arg(&root)
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["files"], 1);
    assert_eq!(v["bytes"], 5);
    assert_eq!(v["rows"], 1);
    assert!(o.stderr.is_empty(), "no progress when stderr is not a terminal");

    let bad_root = std::process::Command::new(bin)
        .args(["scan", "--root", "/nonexistent/alto", "--output"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(!bad_root.status.success());
    let bad_out = std::process::Command::new(bin)
        .args(["scan", "--root"])
        .arg(&root)
        .args(["--output", "/nonexistent/dir/out.parquet"])
        .output()
        .unwrap();
    assert!(!bad_out.status.success());
    let help = std::process::Command::new(bin).args(["scan", "--help"]).output().unwrap();
    assert!(help.status.success());
}

#[test]
fn other_file_systems_are_skipped_unless_asked() {
    // /dev/shm is its own tmpfs on most Linux machines; skip where it is not.
    let (dev, shm) = (Path::new("/dev"), Path::new("/dev/shm"));
    let (Ok(a), Ok(b)) = (std::fs::metadata(dev), std::fs::symlink_metadata(shm)) else {
        eprintln!("SKIPPED: no /dev/shm");
        return;
    };
    if a.dev() == b.dev() || !b.is_dir() {
        eprintln!("SKIPPED: /dev/shm is not a separate file system here");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let opts = |cross| ScanOptions {
        roots: vec![dev.to_path_buf()],
        cross_filesystems: cross,
        excludes: vec!["/dev/pts".into(), "/dev/mqueue".into(), "/dev/hugepages".into()],
        threads: 1,
    };
    let out = tmp.path().join("dev.csv");
    let stay = Scanner::new(&opts(false)).unwrap().run_to_file(&out, &Progress::default()).unwrap();
    assert!(stay.other_filesystems >= 1, "{stay:?}");
    let rows = alto_batch::read_all(File::open(&out).unwrap(), Format::Csv).unwrap();
    assert!(rows.iter().all(|r| !r.path.starts_with(b"/dev/shm/")));
    let cross = Scanner::new(&opts(true)).unwrap().run_to_file(&out, &Progress::default()).unwrap();
    assert_eq!(cross.other_filesystems, 0);
    assert!(cross.directories > stay.directories);
}

/// Globs with and without `/`, and paths with `/` inside the part `*` would have to cover.
const GLOBS: &[&str] = &[
    "*.tmp",
    "*",
    "a*b",
    "node_modules",
    "**/node_modules",
    "/srv/*.iso",
    "/srv/*",
    "/srv/**",
    "/srv/**/*.iso",
    "/srv/**/b/*.iso",
    "/srv/?/x.iso",
    "/srv/[ab]/x.iso",
    "/srv/{a,b}/*",
    "**/*.iso",
];
const PATHS: &[&str] = &[
    "/srv/x.tmp",
    "/srv/a/b.tmp",
    "/srv/a.iso",
    "/srv/a/x.iso",
    "/srv/a/b/x.iso",
    "/srv/b/x.iso",
    "/srv/ab",
    "/srv/a/b",
    "/srv/app/node_modules",
    "/srv/node_modules/x",
    "/srv",
];

#[test]
fn scan_excludes_and_rule_globs_agree() {
    use alto_agent::Excludes;
    use alto_rules::pattern::Pattern;
    for glob in GLOBS {
        let rule = Pattern::glob(glob).unwrap();
        let exclude = Excludes::new(&[(*glob).to_owned()]).unwrap();
        for path in PATHS {
            assert_eq!(
                exclude.is_match(path.as_bytes()),
                rule.is_match(path),
                "glob {glob:?} on {path:?}: the scan exclude and the rule disagree"
            );
        }
    }
    // The dialect itself: `*` never crosses `/`, `**` does, a glob without `/` is a name.
    let m = |glob: &str, path: &str| {
        Excludes::new(&[glob.to_owned()]).unwrap().is_match(path.as_bytes())
    };
    assert!(m("/srv/*.iso", "/srv/a.iso"));
    assert!(!m("/srv/*.iso", "/srv/a/x.iso"));
    assert!(m("/srv/**/*.iso", "/srv/a/b/x.iso"));
    assert!(m("*.tmp", "/srv/a/b.tmp"));
    assert!(!m("a*b", "/srv/a/b"));
    assert!(m("node_modules", "/srv/app/node_modules"));
    // A relative glob with `/` is refused on both sides.
    assert!(Pattern::glob("a/*.tmp").is_err());
    assert!(Excludes::new(&["a/*.tmp".to_owned()]).is_err());
}

/// Names that are not UTF-8 are matched in the escaped form the server stores and rules see.
#[test]
fn scan_excludes_match_escaped_names_like_rules() {
    use alto_agent::Excludes;
    use alto_rules::pattern::Pattern;
    let raw = b"/srv/caf\xe9/r\xe9sum\xe9.tmp";
    let (text, escaped) = alto_batch::encode_path(raw);
    assert!(escaped);
    for glob in ["*.tmp", "/srv/*/*.tmp", "/srv/caf\\\\xe9/**", "/srv/*.tmp"] {
        let rule = Pattern::glob(glob).unwrap();
        let exclude = Excludes::new(&[glob.to_owned()]).unwrap();
        assert_eq!(exclude.is_match(raw), rule.is_match(&text), "glob {glob:?}");
    }
}

/// A real scan skips exactly the files a rule with the same glob would match (or that sit below
/// a directory it matches).
#[test]
fn scan_excludes_skip_what_rules_match() {
    use alto_rules::pattern::Pattern;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap().join("srv");
    let files =
        ["x.tmp", "a.iso", "a/x.iso", "a/b/x.iso", "a/b.tmp", "ab/y", "c/node_modules/z.js"];
    for f in files {
        let p = root.join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"x").unwrap();
    }
    let r = root.display().to_string();
    let globs = [
        "*.tmp".to_owned(),
        format!("{r}/*.iso"),
        format!("{r}/**/*.iso"),
        format!("{r}/*/x.iso"),
        "a*b".to_owned(),
        "node_modules".to_owned(),
        format!("{r}/a*"),
    ];
    for (i, glob) in globs.iter().enumerate() {
        let (_, rows) = scan_with(&[&root], &[glob], &tmp.path().join(format!("out{i}.csv")));
        let mut got: Vec<String> =
            rows.into_iter().map(|r| String::from_utf8(r.path).unwrap()).collect();
        got.sort();
        let rule = Pattern::glob(glob).unwrap();
        let mut want: Vec<String> = files
            .iter()
            .map(|f| format!("{r}/{f}"))
            .filter(|p| {
                // Excluded if the file or any directory below the root matches.
                let below = &p[r.len()..];
                !below
                    .match_indices('/')
                    .skip(1)
                    .map(|(i, _)| &p[..r.len() + i])
                    .chain([p.as_str()])
                    .any(|q| rule.is_match(q))
            })
            .collect();
        want.sort();
        assert_eq!(got, want, "glob {glob:?}");
    }
}
