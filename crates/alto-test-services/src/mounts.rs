//! Real file systems for tests that need a given kind (ext4, xfs, tmpfs) or a bind mount:
//! image files in a temporary directory, loop-mounted, unmounted in reverse order on drop.
//! Root only (the callers check [`crate::require_root`]).

use std::fs::File;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| {
        panic!(
            "{cmd} could not run ({e}); install it with scripts/setup.sh (e2fsprogs, xfsprogs, \
             util-linux)"
        )
    });
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// A temporary directory holding mounts, unmounted in reverse order on drop. The directory
/// is world-traversable (0755) so tests can run readers as other users.
pub struct Mounts {
    dir: tempfile::TempDir,
    mounted: Vec<PathBuf>,
}

impl Default for Mounts {
    fn default() -> Self {
        Self::new()
    }
}

impl Mounts {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod tempdir");
        Mounts { dir, mounted: Vec::new() }
    }

    /// The temporary directory (for files beside the mounts).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn mountpoint(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::create_dir(&p).expect("mkdir mountpoint");
        p
    }

    fn image(&self, name: &str, mib: u64) -> PathBuf {
        let img = self.dir.path().join(format!("{name}.img"));
        File::create(&img).expect("image").set_len(mib << 20).expect("image size");
        img
    }

    /// A fresh 32 MiB ext4 file system mounted at `<dir>/mnt`.
    pub fn ext4(&mut self) -> PathBuf {
        self.ext4_named("mnt", 32)
    }

    /// A fresh ext4 file system of `mib` MiB mounted at `<dir>/<name>`.
    pub fn ext4_named(&mut self, name: &str, mib: u64) -> PathBuf {
        let img = self.image(name, mib);
        run("mkfs.ext4", &["-q", "-F", s(&img)]);
        self.mount_loop(&img, name)
    }

    /// A fresh 320 MiB xfs file system (its minimum size is 300 MiB) at `<dir>/<name>`.
    pub fn xfs_named(&mut self, name: &str) -> PathBuf {
        let img = self.image(name, 320);
        run("mkfs.xfs", &["-q", "-f", s(&img)]);
        self.mount_loop(&img, name)
    }

    fn mount_loop(&mut self, img: &Path, name: &str) -> PathBuf {
        let mnt = self.mountpoint(name);
        run("mount", &["-o", "loop", s(img), s(&mnt)]);
        std::fs::set_permissions(&mnt, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        self.mounted.push(mnt.clone());
        mnt
    }

    /// A 1 MiB tmpfs at `<dir>/tmpfs`.
    pub fn tmpfs(&mut self) -> PathBuf {
        let mnt = self.mountpoint("tmpfs");
        run("mount", &["-t", "tmpfs", "-o", "size=1m", "tmpfs", s(&mnt)]);
        self.mounted.push(mnt.clone());
        mnt
    }

    /// `src` bind-mounted at `<dir>/<name>`.
    pub fn bind(&mut self, src: &Path, name: &str) -> PathBuf {
        let mnt = self.mountpoint(name);
        run("mount", &["--bind", s(src), s(&mnt)]);
        self.mounted.push(mnt.clone());
        mnt
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        for m in self.mounted.drain(..).rev() {
            let ok = Command::new("umount").arg(&m).status().is_ok_and(|s| s.success());
            if !ok {
                let _ = Command::new("umount").arg("-l").arg(&m).status();
            }
        }
    }
}
