#!/usr/bin/env bash
# Installs the real servers the tier-2 backend tests start on 127.0.0.1 (crates/alto-tier2/tests):
#
#   - Samba (smbd, smbpasswd) and libsmbclient-dev (needed to BUILD alto-tier2's SMB backend)
#     from Debian packages;
#   - s3s-fs 0.14.1 (an S3 server on a directory that checks SigV4), built with cargo (about 4
#     minutes, once per machine);
#   - moto 5 (an in-memory S3 server; accepts any credentials, but stores the long sidecar keys
#     that s3s-fs 0.14.1 cannot) from PyPI into a virtualenv;
#   - Azurite 3.35.0 (Azure Blob emulator) from npm (3.36+ needs node 22).
#
# The last three go to a cache outside the clone, keyed by tool and version
# ($ALTO_TOOLS_CACHE, default ~/.cache/alto/tools), and .tools/{bin,moto,node} link to it: a
# fresh clone reuses what an earlier clone installed.
#
# Idempotent: when everything is there it changes nothing and takes about a second.
#
#   scripts/test-services.sh install   # install what is missing
#   scripts/test-services.sh check     # list what is missing; exit 1 if anything is
#
# Nothing is started here: each test starts its own server in a temporary directory on a free
# loopback port and stops it afterwards. Tests skip a backend whose server is missing, or fail
# when ALTO_REQUIRE_TEST_SERVICES=1.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT="$(pwd)"
TOOLS="$ROOT/.tools"
S3S_VERSION=0.14.1
AZURITE_VERSION=3.35.0
MOTO_VERSION=5
MOTO_SPEC="moto[server]==$MOTO_VERSION.*"
# Built and downloaded tools live in a cache outside the clone, one directory per tool and
# version, so a fresh clone (or CI) reuses them; .tools/ in the clone only links to them.
CACHE="${ALTO_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/alto/tools}"
S3S_DIR="$CACHE/s3s-fs-$S3S_VERSION"
MOTO_DIR="$CACHE/moto-$MOTO_VERSION-py$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")' 2>/dev/null || echo none)"
AZURITE_DIR="$CACHE/azurite-$AZURITE_VERSION-node$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo none)"

# .tools/<name> -> the cached directory (replacing a real directory left by older scripts).
link_tool() {
  local name="$1" dir="$2"
  mkdir -p "$TOOLS"
  if [ "$(readlink "$TOOLS/$name" 2>/dev/null)" != "$dir" ]; then
    rm -rf "${TOOLS:?}/$name"
    ln -s "$dir" "$TOOLS/$name"
  fi
}

log() { printf '\033[1m[test-services]\033[0m %s\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi

have_samba() {
  command -v smbd >/dev/null 2>&1 || [ -x /usr/sbin/smbd ]
}
have_smbpasswd() { command -v smbpasswd >/dev/null 2>&1 || [ -x /usr/bin/smbpasswd ]; }
have_libsmbclient_dev() { [ -f /usr/include/samba-4.0/libsmbclient.h ] || pkg-config --exists smbclient 2>/dev/null; }
have_s3s() { [ -x "$TOOLS/bin/s3s-fs" ] && grep -q "s3s-fs $S3S_VERSION " "$TOOLS/bin/../.crates.toml" 2>/dev/null; }
have_moto() { [ -x "$TOOLS/moto/bin/moto_server" ]; }
have_azurite() {
  [ -x "$TOOLS/node/node_modules/.bin/azurite-blob" ] &&
    grep -q "\"version\": \"$AZURITE_VERSION\"" "$TOOLS/node/node_modules/azurite/package.json" 2>/dev/null
}
# Link whatever the cache already holds.
link_cached() {
  [ -x "$S3S_DIR/bin/s3s-fs" ] && link_tool bin "$S3S_DIR/bin"
  [ -x "$MOTO_DIR/bin/moto_server" ] && link_tool moto "$MOTO_DIR"
  [ -x "$AZURITE_DIR/node_modules/.bin/azurite-blob" ] && link_tool node "$AZURITE_DIR"
  return 0
}

missing() {
  local m=()
  have_samba || m+=("samba (smbd)")
  have_smbpasswd || m+=("smbpasswd")
  have_libsmbclient_dev || m+=("libsmbclient-dev")
  have_s3s || m+=("s3s-fs $S3S_VERSION")
  have_moto || m+=("moto")
  have_azurite || m+=("azurite $AZURITE_VERSION")
  [ ${#m[@]} -eq 0 ] || printf '%s\n' "${m[@]}"
}

install() {
  local pkgs=()
  have_samba || pkgs+=(samba)
  have_smbpasswd || pkgs+=(smbclient)
  have_libsmbclient_dev || pkgs+=(libsmbclient-dev)
  if [ ${#pkgs[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ] && [ -z "$SUDO" ]; then
      log "not root and no sudo: install the Debian packages ${pkgs[*]} by hand"; exit 1
    fi
    log "installing Debian packages: ${pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    # policy-rc.d keeps apt from starting the system smbd; the tests never use it.
    $SUDO apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends \
      "${pkgs[@]}" >/dev/null
  fi

  mkdir -p "$CACHE"
  link_cached
  if ! have_s3s; then
    command -v cargo >/dev/null 2>&1 || { log "cargo is needed to build s3s-fs"; exit 1; }
    log "building s3s-fs $S3S_VERSION into $S3S_DIR (takes a few minutes, once per machine)"
    # 0.17 needs a newer rustc than this toolchain; --locked keeps its tested dependencies.
    # Its own target directory, so the build never touches the clone's.
    CARGO_TARGET_DIR="$CACHE/.s3s-build" \
      cargo install --quiet --locked --root "$S3S_DIR" "s3s-fs@$S3S_VERSION" --features binary
    rm -rf "$CACHE/.s3s-build"
    link_tool bin "$S3S_DIR/bin"
  fi

  if ! have_moto; then
    command -v python3 >/dev/null 2>&1 || { log "python3 is needed for moto"; exit 1; }
    log "installing moto into $MOTO_DIR (a Python virtualenv)"
    rm -rf "$MOTO_DIR"
    python3 -m venv "$MOTO_DIR"
    "$MOTO_DIR/bin/pip" install --quiet --disable-pip-version-check "$MOTO_SPEC"
    link_tool moto "$MOTO_DIR"
  fi

  if ! have_azurite; then
    command -v npm >/dev/null 2>&1 || { log "npm (node 20+) is needed for Azurite"; exit 1; }
    log "installing azurite $AZURITE_VERSION into $AZURITE_DIR"
    rm -rf "$AZURITE_DIR"
    mkdir -p "$AZURITE_DIR"
    npm install --silent --prefix "$AZURITE_DIR" --no-audit --no-fund "azurite@$AZURITE_VERSION" >/dev/null
    link_tool node "$AZURITE_DIR"
  fi

  local left
  left="$(missing)"
  if [ -n "$left" ]; then log "still missing: $left"; exit 1; fi
  log "all test services installed"
}

case "${1:-}" in
  install) install ;;
  check)
    link_cached
    left="$(missing)"
    if [ -n "$left" ]; then printf 'missing:\n%s\n' "$left"; exit 1; fi
    echo "all test services installed"
    ;;
  *)
    echo "usage: $0 install|check" >&2
    exit 2
    ;;
esac
