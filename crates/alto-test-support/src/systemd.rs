//! A systemd unit's sandbox, rebuilt from the unit file for tests that run where systemd is not
//! PID 1 (no `systemd-run`): a private mount namespace (`unshare`) in which every mount is
//! read-only except `/dev`, `/proc` and `/sys` (`ProtectSystem=strict`), `/proc/sys` and `/sys`
//! read-only as well (`ProtectKernelTunables=`, `ProtectControlGroups=`), `/home`, `/root` and
//! `/run/user` empty and inaccessible (`ProtectHome=yes`), fresh `/tmp` and `/var/tmp`
//! (`PrivateTmp=`), each `ReadWritePaths=` (and `StateDirectory=`) bound writable again, and
//! the capability bounding set and no-new-privileges applied with `setpriv` before the command
//! starts. A setting this module does not know makes [`sandbox_script`] panic, so a test and
//! the unit it checks cannot drift apart.

use std::process::{Command, Stdio};

/// Settings that decide what the service may read, write or do: each is applied.
pub const APPLIED: &[&str] = &[
    "ProtectSystem",
    "ProtectHome",
    "ReadWritePaths",
    "PrivateTmp",
    "ProtectKernelTunables",
    "ProtectControlGroups",
    "NoNewPrivileges",
    "CapabilityBoundingSet",
    "StateDirectory",
];

/// Settings that do not change what the service may touch.
pub const NEUTRAL: &[&str] = &[
    "Type",
    "ExecStart",
    "Restart",
    "RestartSec",
    "StateDirectoryMode",
    "Nice",
    "IOSchedulingClass",
    "KillSignal",
    "TimeoutStopSec",
    "LimitNOFILE",
];

/// Settings that only forbid what the service never does, and that a test cannot apply
/// without seccomp: `RestrictSUIDSGID` (creating setuid/setgid files).
pub const NOT_APPLIED: &[&str] = &["RestrictSUIDSGID"];

/// Whether `tool` is on the `PATH`.
pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether a unit's sandbox can be rebuilt here: root (for `needs`, what the test does as root)
/// and `unshare`, `setpriv` and `systemd-analyze` on the `PATH`. Otherwise the test is skipped,
/// or fails under `ALTO_REQUIRE_ROOT=1` / `ALTO_REQUIRE_TEST_SERVICES=1`.
pub fn can_sandbox(needs: &str) -> bool {
    if !alto_test_services::require_root(needs) {
        return false;
    }
    for tool in ["unshare", "setpriv", "systemd-analyze"] {
        if !have(tool) {
            alto_test_services::skip_or_fail(
                "ALTO_REQUIRE_TEST_SERVICES",
                &format!("{tool} missing (scripts/setup.sh installs it)"),
            );
            return false;
        }
    }
    true
}

/// The `[Service]` settings of a unit file and its drop-ins, in order.
pub fn service_settings(texts: &[&str]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for text in texts {
        let mut section = String::new();
        for line in text.lines() {
            let l = line.trim();
            if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
                continue;
            }
            assert!(!l.ends_with('\\'), "continued lines are not understood here: {l}");
            if l.starts_with('[') {
                section = l.to_owned();
                continue;
            }
            let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("not a setting: {l}"));
            if section == "[Service]" {
                out.push((k.trim().to_owned(), v.trim().to_owned()));
            }
        }
    }
    out
}

/// The words of a list setting, unquoted (`"…"` with `\\`, `\"`) and `%%` → `%`.
pub fn words(v: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = v.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else { break };
        let mut w = String::new();
        if first == '"' {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => w.extend(chars.next()),
                    '"' => break,
                    c => w.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek().copied().filter(|c| !c.is_whitespace()) {
                w.push(c);
                chars.next();
            }
        }
        out.push(w.replace("%%", "%"));
    }
    out
}

/// `s` as one shell word.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The values of setting `k`, in order.
pub fn values<'a>(settings: &'a [(String, String)], k: &'a str) -> impl Iterator<Item = &'a str> {
    settings.iter().filter(move |(key, _)| key == k).map(|(_, v)| v.as_str())
}

/// A shell script that builds the unit's sandbox and then `exec`s its arguments in it.
pub fn sandbox_script(settings: &[(String, String)]) -> String {
    for (k, _) in settings {
        assert!(
            APPLIED.contains(&k.as_str())
                || NEUTRAL.contains(&k.as_str())
                || NOT_APPLIED.contains(&k.as_str()),
            "the unit sets {k}=, which this sandbox does not apply: teach it what {k} does"
        );
    }
    let get = |k: &'static str| values(settings, k);
    let yes =
        |k: &'static str| get(k).last().is_some_and(|v| ["yes", "true", "1", "on"].contains(&v));
    assert_eq!(get("ProtectSystem").last(), Some("strict"), "only strict is applied");
    let mut s = String::from("set -eu\n");
    let tunables = yes("ProtectKernelTunables");
    let cgroups = yes("ProtectControlGroups");
    s.push_str(&format!(
        "awk '{{print $5}}' /proc/self/mountinfo | while read -r mp; do\n\
         case \"$mp\" in\n\
           /sys/fs/cgroup|/sys/fs/cgroup/*) [ {cg} = 1 ] || continue ;;\n\
           /sys|/sys/*) [ {tu} = 1 ] || continue ;;\n\
           /proc|/proc/*|/dev|/dev/*) continue ;;\n\
         esac\n\
         mount -o remount,bind,ro \"$mp\" || echo \"sandbox: $mp stays writable\" >&2\n\
         done\n",
        cg = u8::from(cgroups || tunables),
        tu = u8::from(tunables),
    ));
    if tunables {
        s.push_str("mount --bind /proc/sys /proc/sys\nmount -o remount,bind,ro /proc/sys\n");
    }
    if yes("ProtectHome") {
        s.push_str(
            "for h in /home /root /run/user; do\n\
             if [ -d \"$h\" ]; then mount -t tmpfs -o ro,mode=000 tmpfs \"$h\"; fi\n\
             done\n",
        );
    }
    if yes("PrivateTmp") {
        s.push_str(
            "mount -t tmpfs -o mode=1777 tmpfs /tmp\nmount -t tmpfs -o mode=1777 tmpfs /var/tmp\n",
        );
    }
    // StateDirectory= is created by systemd and writable; where the test's own directories
    // stand in for it, it may not exist.
    let mut rw: Vec<String> =
        get("StateDirectory").flat_map(words).map(|d| format!("-/var/lib/{d}")).collect();
    rw.extend(get("ReadWritePaths").flat_map(words));
    for p in rw {
        let (optional, path) = match p.strip_prefix('-') {
            Some(p) => (true, p.to_owned()),
            None => (false, p),
        };
        let q = sh_quote(&path);
        if optional {
            s.push_str(&format!("if [ -e {q} ]; then "));
        }
        s.push_str(&format!("mount --bind {q} {q}; mount -o remount,bind,rw {q}"));
        s.push_str(if optional { "; fi\n" } else { "\n" });
    }
    let caps: Vec<String> = get("CapabilityBoundingSet")
        .flat_map(words)
        .map(|c| format!("+{}", c.to_lowercase().trim_start_matches("cap_")))
        .collect();
    let mut setpriv = String::from("exec setpriv");
    if get("CapabilityBoundingSet").next().is_some() {
        setpriv.push_str(&format!(" --bounding-set -all,{}", caps.join(",")));
    }
    if yes("NoNewPrivileges") {
        setpriv.push_str(" --no-new-privs");
    }
    s.push_str(&setpriv);
    s.push_str(" -- \"$@\"\n");
    s
}

/// `cmd args…` inside the sandbox `script` builds.
pub fn sandboxed(script: &str, cmd: &str, args: &[&str]) -> Command {
    let mut c = Command::new("unshare");
    c.args(["--mount", "--propagation", "slave", "--", "sh", "-c", script, "sandbox", cmd]);
    c.args(args);
    c
}

/// `systemd-analyze verify` of `unit` (its text) saved as `name` with the drop-ins given,
/// after replacing each `(from, to)` (binary and configuration paths). Panics with what
/// systemd said if it complains about the unit.
pub fn verify(name: &str, unit: &str, drop_ins: &[&str], replace: &[(&str, &str)]) {
    verify_beside(name, unit, drop_ins, replace, &[]);
}

/// [`verify`], with the units `unit` names (`Wants=`, `After=`) saved beside it as
/// `(name, text)`, after the same replacements.
pub fn verify_beside(
    name: &str,
    unit: &str,
    drop_ins: &[&str],
    replace: &[(&str, &str)],
    beside: &[(&str, &str)],
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let fix = |t: &str| replace.iter().fold(t.to_owned(), |acc, (from, to)| acc.replace(from, to));
    for (n, t) in beside {
        std::fs::write(dir.path().join(n), fix(t)).expect("unit");
    }
    let text = fix(unit);
    std::fs::write(dir.path().join(name), text).expect("unit");
    let d = dir.path().join(format!("{name}.d"));
    std::fs::create_dir(&d).expect("drop-in dir");
    for (i, t) in drop_ins.iter().enumerate() {
        std::fs::write(d.join(format!("{i:02}-test.conf")), t).expect("drop-in");
    }
    let o = Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.path().join(name))
        .output()
        .expect("systemd-analyze");
    let err = String::from_utf8_lossy(&o.stderr);
    let stem = name.trim_end_matches(".service");
    assert!(o.status.success() && !err.contains(stem), "systemd-analyze verify {name}: {err}");
}

/// Below /tmp or /var/tmp: the units' `PrivateTmp=` puts empty file systems there, so the
/// sandbox cannot see it.
fn hidden(p: &std::path::Path) -> bool {
    p.starts_with("/tmp") || p.starts_with("/var/tmp")
}

/// A scratch directory the sandbox can see: below `preferred` (the test's
/// `CARGO_TARGET_TMPDIR`) unless the checkout itself is below /tmp or /var/tmp, then below
/// /var/lib/alto-tests. Readable by other users (the embedded PostgreSQL runs as `postgres`).
pub fn scratch_dir(preferred: &str) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt as _;
    let p = std::path::Path::new(preferred);
    let real = p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    let base = if hidden(&real) {
        let b = std::path::PathBuf::from("/var/lib/alto-tests");
        std::fs::create_dir_all(&b).expect("create /var/lib/alto-tests");
        let _ = std::fs::set_permissions(&b, std::fs::Permissions::from_mode(0o755));
        b
    } else {
        real
    };
    tempfile::tempdir_in(base).expect("scratch dir")
}

/// `bin` itself, or a copy in `dir` when `bin` is where the sandbox cannot see it.
pub fn visible_binary(bin: &str, dir: &std::path::Path) -> String {
    let p = std::path::Path::new(bin);
    if !hidden(&p.canonicalize().unwrap_or_else(|_| p.to_path_buf())) {
        return bin.to_owned();
    }
    let to = dir.join(p.file_name().expect("binary name"));
    std::fs::copy(p, &to).expect("copy the binary where the sandbox sees it");
    to.display().to_string()
}
