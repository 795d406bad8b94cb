#!/usr/bin/env bash
# Installs what Alto needs to build, run and test on a Debian machine. Idempotent: a second
# run changes nothing and takes a second.
#
#   - PostgreSQL server binaries (initdb, postgres): the embedded database and test clusters.
#   - A C toolchain and pkg-config for crates that build C code (zstd).
#   - curl (the demo's readiness check) and GNU time (peak memory in the benchmarks).
#   - libsmbclient-dev: alto-tier2's SMB backend links libsmbclient (build time and run time).
#   - systemd (only systemd-analyze is used; nothing is started) and util-linux (unshare,
#     setpriv): the test that verifies deploy/systemd/alto-agent.service and runs the agent
#     inside its sandbox; util-linux's mount also loop- and bind-mounts in alto-hsm's tests.
#   - e2fsprogs (mkfs.ext4): alto-hsm's tests build an ext4 image (tmpfs has no fanotify
#     pre-content events); xfsprogs (mkfs.xfs): the on-access tests run on xfs too.
# The Rust toolchain itself (cargo, rustc) must already be installed.
set -euo pipefail

log() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    log "not root and no sudo: install the Debian packages listed in scripts/setup.sh by hand"; fi
fi

have_pg() { compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null; }

missing=()
have_pg || missing+=(postgresql)
command -v cc >/dev/null 2>&1 || missing+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
command -v curl >/dev/null 2>&1 || missing+=(curl)
[ -x /usr/bin/time ] || missing+=(time)   # peak memory in scripts/bench.sh
[ -f /usr/include/samba-4.0/libsmbclient.h ] || missing+=(libsmbclient-dev)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
{ command -v unshare && command -v setpriv; } >/dev/null 2>&1 || missing+=(util-linux)
command -v mkfs.ext4 >/dev/null 2>&1 || [ -x /usr/sbin/mkfs.ext4 ] || [ -x /sbin/mkfs.ext4 ] || missing+=(e2fsprogs)
command -v mkfs.xfs >/dev/null 2>&1 || [ -x /usr/sbin/mkfs.xfs ] || [ -x /sbin/mkfs.xfs ] || missing+=(xfsprogs)

if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  # policy-rc.d may refuse to start the system cluster; Alto does not need it running.
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
have_pg || { log "PostgreSQL server binaries are still missing after installing 'postgresql'"; exit 1; }

if ! command -v cargo >/dev/null 2>&1; then
  log "cargo is not installed: install the Rust toolchain (https://rustup.rs) and re-run"
  exit 1
fi
log "ready: $(cargo --version), PostgreSQL $(ls /usr/lib/postgresql | sort -n | tail -1)"
