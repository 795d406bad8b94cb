#!/usr/bin/env bash
# Installs the real servers the tier-2 backend tests start on 127.0.0.1 (crates/alto-tier2/tests):
#
#   - Samba (smbd, smbpasswd) and libsmbclient-dev (needed to BUILD alto-tier2's SMB backend)
#     from Debian packages;
#   - s3s-fs 0.14.1 (an S3 server on a directory that checks SigV4), built with cargo into
#     .tools/bin (about 4 minutes the first time);
#   - moto 5 (an in-memory S3 server; accepts any credentials, but stores the long sidecar keys
#     that s3s-fs 0.14.1 cannot) from PyPI into the virtualenv .tools/moto;
#   - Azurite 3.35.0 (Azure Blob emulator) from npm into .tools/node (3.36+ needs node 22).
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
MOTO_SPEC='moto[server]==5.*'

log() { printf '\033[1m[test-services]\033[0m %s\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi

have_samba() {
  command -v smbd >/dev/null 2>&1 || [ -x /usr/sbin/smbd ]
}
have_smbpasswd() { command -v smbpasswd >/dev/null 2>&1 || [ -x /usr/bin/smbpasswd ]; }
have_libsmbclient_dev() { [ -f /usr/include/samba-4.0/libsmbclient.h ] || pkg-config --exists smbclient 2>/dev/null; }
have_s3s() { [ -x "$TOOLS/bin/s3s-fs" ] && grep -q "s3s-fs $S3S_VERSION " "$TOOLS/.crates.toml" 2>/dev/null; }
have_moto() { [ -x "$TOOLS/moto/bin/moto_server" ]; }
have_azurite() {
  [ -x "$TOOLS/node/node_modules/.bin/azurite-blob" ] &&
    grep -q "\"version\": \"$AZURITE_VERSION\"" "$TOOLS/node/node_modules/azurite/package.json" 2>/dev/null
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

  if ! have_s3s; then
    command -v cargo >/dev/null 2>&1 || { log "cargo is needed to build s3s-fs"; exit 1; }
    log "building s3s-fs $S3S_VERSION into .tools/bin (takes a few minutes)"
    # 0.17 needs a newer rustc than this toolchain; --locked keeps its tested dependencies.
    cargo install --quiet --locked --root "$TOOLS" "s3s-fs@$S3S_VERSION" --features binary
  fi

  if ! have_moto; then
    command -v python3 >/dev/null 2>&1 || { log "python3 is needed for moto"; exit 1; }
    log "installing moto into .tools/moto (a Python virtualenv)"
    rm -rf "$TOOLS/moto"
    python3 -m venv "$TOOLS/moto"
    "$TOOLS/moto/bin/pip" install --quiet --disable-pip-version-check "$MOTO_SPEC"
  fi

  if ! have_azurite; then
    command -v npm >/dev/null 2>&1 || { log "npm (node 20+) is needed for Azurite"; exit 1; }
    log "installing azurite $AZURITE_VERSION into .tools/node"
    mkdir -p "$TOOLS/node"
    npm install --silent --prefix "$TOOLS/node" --no-audit --no-fund "azurite@$AZURITE_VERSION" >/dev/null
  fi

  local left
  left="$(missing)"
  if [ -n "$left" ]; then log "still missing: $left"; exit 1; fi
  log "all test services installed"
}

case "${1:-}" in
  install) install ;;
  check)
    left="$(missing)"
    if [ -n "$left" ]; then printf 'missing:\n%s\n' "$left"; exit 1; fi
    echo "all test services installed"
    ;;
  *)
    echo "usage: $0 install|check" >&2
    exit 2
    ;;
esac
