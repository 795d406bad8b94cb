#!/usr/bin/env bash
# The Alto demo: builds the server, agent and CLI, starts alto-server with its embedded
# PostgreSQL under ./alto-data, creates a demo tenant with an administrator, registers and
# enrolls a host, runs alto-agent on a generated sample directory (5,000 files) so the
# inventory fills, and prints the console URL and logins. Runs until Ctrl-C.
#
#   ALTO_DEMO_LISTEN   address to listen on (default 127.0.0.1:8080)
#   ALTO_DEMO_DATA     data directory (default ./alto-data)
#   ALTO_DEMO_EXIT=1   stop after the demo is set up (for scripted checks)
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh

LISTEN="${ALTO_DEMO_LISTEN:-127.0.0.1:8080}"
DATA="${ALTO_DEMO_DATA:-$PWD/alto-data}"
URL="http://$LISTEN"
mkdir -p "$DATA"
# As root, the embedded PostgreSQL runs as the `postgres` user, which must reach the data
# directory; fall back to /var/lib/alto-demo when the checkout sits under a private directory.
if [ "$(id -u)" -eq 0 ] && ! runuser -u postgres -- test -x "$DATA" 2>/dev/null; then
  chmod 711 "$DATA" 2>/dev/null || true
  if ! runuser -u postgres -- test -x "$DATA" 2>/dev/null; then
    DATA=/var/lib/alto-demo; mkdir -p "$DATA"
    echo "note: using $DATA (the postgres user cannot reach the checkout)" >&2
  fi
fi

echo "== building alto-server, alto-agent and altoctl (release)" >&2
cargo build --release --locked -p alto-server -p alto-cli -p alto-agent -p alto-bench
BIN="$PWD/target/release"

LOG="$DATA/server.log"
"$BIN/alto-server" --data-dir "$DATA" --listen "$LISTEN" >"$DATA/server.out" 2>"$LOG" &
SERVER=$!
AGENT=""
SAMPLE="$DATA/sample"
stop() {
  [ -n "$AGENT" ] && { kill -TERM "$AGENT" 2>/dev/null || true; wait "$AGENT" 2>/dev/null || true; }
  # The on-access holder keeps the sample's file system marked; the demo ends it and unmounts.
  HOLDER="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pid"])' "$DATA/agent/on-access/holder.json" 2>/dev/null || true)"
  [ -n "$HOLDER" ] && kill -KILL "$HOLDER" 2>/dev/null || true
  if mountpoint -q "$SAMPLE" 2>/dev/null; then sleep 0.2; umount "$SAMPLE" 2>/dev/null || umount -l "$SAMPLE" || true; fi
  kill -TERM "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true
}
trap stop EXIT INT TERM

for _ in $(seq 1 150); do
  if curl -fsS "$URL/readyz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$SERVER" 2>/dev/null; then echo "alto-server exited; log:" >&2; tail -n 30 "$LOG" >&2; exit 1; fi
  sleep 0.2
done
curl -fsS "$URL/readyz" >/dev/null || { echo "alto-server did not become ready; see $LOG" >&2; exit 1; }

ADMIN_PW_FILE="$DATA/initial-admin-password"
[ -f "$ADMIN_PW_FILE" ] || { echo "no $ADMIN_PW_FILE (was the admin password changed or set by config?)" >&2; exit 1; }
ADMIN_PW="$(cat "$ADMIN_PW_FILE")"

export ALTO_SERVER="$URL" ALTO_CONFIG_DIR="$DATA/altoctl"
ctl() { "$BIN/altoctl" "$@"; }
ctl login --username admin --password-stdin <<<"$ADMIN_PW" >/dev/null

DEMO_PW="demo-password-123"
TENANT_ID="$(ctl --output json tenants list | python3 -c 'import json,sys; d=json.load(sys.stdin); print(next((t["id"] for t in d["items"] if t["name"]=="Demo Customer"), ""))')"
if [ -z "$TENANT_ID" ]; then
  TENANT_ID="$(ctl --output json tenants create --name "Demo Customer" --admin-username demo-admin --admin-password "$DEMO_PW" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["tenant"]["id"])')"
  TOKEN="$(ctl --output json hosts create --tenant "$TENANT_ID" --name demo-host --description "sample file server" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["enrollment"]["token"])')"
  rm -rf "$DATA/agent"
  "$BIN/alto-agent" enroll --server "$URL" --token "$TOKEN" --state-dir "$DATA/agent"
  # Two rules: keep configuration files; tier files of 8 KiB to 16 MiB not opened for a year
  # (the sample has a few huge sparse files; the cap keeps the demo's tier-2 small).
  ctl rules create --tenant "$TENANT_ID" --name keep-config --priority 10 --glob '*.conf' --exclude >/dev/null
  ctl rules create --tenant "$TENANT_ID" --name cold-files --priority 100 \
    --accessed-older-than-days 365 --min-size 8KiB --max-size 16MiB --compression zstd \
    --target default >/dev/null
fi

# A sample directory for the agent to scan (generated once, deterministic). As root it lives
# on its own ext4 file system (a loop-mounted image), which the agent marks for transparent
# recall; the machine's own file systems are left alone.
if [ "$(id -u)" -eq 0 ]; then
  if [ ! -f "$DATA/sample.img" ]; then
    rm -rf "$SAMPLE" "$DATA/sample.done"
    truncate -s 2G "$DATA/sample.img"
    mkfs.ext4 -q -F "$DATA/sample.img"
  fi
  mkdir -p "$SAMPLE"
  mountpoint -q "$SAMPLE" || mount -o loop "$DATA/sample.img" "$SAMPLE"
fi
if [ ! -f "$DATA/sample.done" ]; then
  find "$SAMPLE" -mindepth 1 -maxdepth 1 ! -name lost+found -exec rm -rf {} + 2>/dev/null || true
  "$BIN/alto-gen-tree" --root "$SAMPLE" --files 5000 --seed 7 >/dev/null
  touch "$DATA/sample.done"
fi
mkdir -p "$DATA/tier2"   # the demo's local-directory tier-2 (default target)
ALTO_LOG=info ALTO_AGENT_TIER2__DIRECTORY_BASE="$DATA/tier2" ALTO_AGENT_TIER_POLL_INTERVAL=5s \
  "$BIN/alto-agent" run --root "$SAMPLE" --state-dir "$DATA/agent" 2>"$DATA/agent.log" &
AGENT=$!
echo "== alto-agent is scanning $SAMPLE and uploading" >&2
for _ in $(seq 1 150); do
  FILES="$(ctl --output json inventory summary --tenant "$TENANT_ID" 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["files"])' 2>/dev/null || echo 0)"
  [ "${FILES:-0}" -ge 5000 ] && break
  sleep 0.2
done
ctl inventory summary --tenant "$TENANT_ID" | head -n 12
echo "== rules, and the plan the planner made after the scan was ingested" >&2
ctl rules list --tenant "$TENANT_ID"
for _ in $(seq 1 100); do
  PLANS="$(ctl --output json plans list --tenant "$TENANT_ID" 2>/dev/null | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["items"]))' 2>/dev/null || echo 0)"
  [ "${PLANS:-0}" -ge 1 ] && break
  sleep 0.2
done
ctl plans list --tenant "$TENANT_ID" | head -n 6
ctl jobs list --tenant "$TENANT_ID" | head -n 8
if [ "$(id -u)" -eq 0 ]; then
  echo "== the agent tiers the planned files into $DATA/tier2 and leaves stubs" >&2
  for _ in $(seq 1 150); do
    OPEN="$(ctl --output json jobs list --tenant "$TENANT_ID" 2>/dev/null | python3 -c 'import json,sys; print(sum(1 for j in json.load(sys.stdin)["items"] if j["state"] in ("queued","running","dispatched")))' 2>/dev/null || echo 1)"
    [ "${OPEN:-1}" -eq 0 ] && break
    sleep 0.4
  done
  ctl jobs list --tenant "$TENANT_ID" | head -n 8
  ctl stubs summary --tenant "$TENANT_ID"
  ctl stubs list --tenant "$TENANT_ID" --limit 5
  echo "   on disk: $(du -sh "$SAMPLE" | cut -f1) in the sample (stubs keep 4 KiB each), $(du -sh "$DATA/tier2" | cut -f1) in tier-2" >&2
  STUB="$(ctl --output json stubs list --tenant "$TENANT_ID" --state stubbed --limit 1 2>/dev/null | python3 -c 'import json,sys; i=json.load(sys.stdin)["items"]; print(i[0]["file_path"] if i else "")' 2>/dev/null || true)"
  if [ -n "$STUB" ] && [ -f "$STUB" ]; then
    echo "== transparent recall: an ordinary program reads a stub" >&2
    echo "   before: $(stat -c '%s bytes, %b blocks of 512 on disk' "$STUB")   $STUB" >&2
    echo "   \$ sha256sum $STUB" >&2
    if OUT="$(timeout 60 sha256sum "$STUB" 2>&1)"; then
      echo "   $OUT" >&2
      echo "   after:  $(stat -c '%s bytes, %b blocks of 512 on disk' "$STUB") (the content is back, verified against the stub's SHA-256)" >&2
      sleep 2
      ctl stubs list --tenant "$TENANT_ID" --state rehydrated --limit 3
    else
      echo "   $OUT" >&2
      echo "   (no transparent recall here: needs Linux 6.14+ and ext4/xfs/btrfs; see docs/recall.md and $DATA/agent.log)" >&2
    fi
  fi
else
  echo "== tiering needs root (stub attributes, leases): the jobs stay queued" >&2
fi

cat <<TXT

  Alto is running.
    Console / API:  $URL        (OpenAPI: $URL/api/v1/openapi.json, metrics: $URL/metrics)
    Platform admin: admin / $ADMIN_PW
    Tenant admin:   demo-admin / $DEMO_PW   (tenant "Demo Customer", $TENANT_ID)
    CLI:            ALTO_SERVER=$URL $BIN/altoctl login --username admin
    Agent:          alto-agent run --root $SAMPLE  (log in $DATA/agent.log)
    Agent link:     https://127.0.0.1:8443  (gRPC over TLS; development CA in $DATA/tls/ca.pem)
    Data:           $DATA   (embedded PostgreSQL in $DATA/postgres; log in $LOG)
    Read a stub:    cat <a path from \`altoctl stubs list --state stubbed\`>   (recalled on access)
    Recall a tree:  altoctl recall --host <host id> <a directory above> --wait   (a recall job)
    Recall a stub:  $BIN/alto-agent recall --state-dir $DATA/agent <a path from \`altoctl stubs list\`>
                    (with ALTO_AGENT_TIER2__DIRECTORY_BASE=$DATA/tier2)
    Try:            altoctl rules explain --tenant $TENANT_ID --host <host id> --path <a path above>
                    altoctl rules preview --tenant $TENANT_ID    (what the rules would move now)

TXT
ctl audit verify --platform
if [ "${ALTO_DEMO_EXIT:-0}" = "1" ]; then exit 0; fi
echo "Press Ctrl-C to stop." >&2
wait "$SERVER"
