#!/usr/bin/env bash
# Edit → visible in a real browser, beside Vite's own HMR measured in the same run, and session
# request → first paint on both hydration paths (issue 23):
#   bash e2e/measure.sh [EDITS]     (default 50; binaries from FSYNC_BIN_DIR, default target/release)
# Starts two reference servers on a fresh database `fsync_measure` and one storage (snapshot hydration on, on
# port 54339, and off, on 54340), each preview running the fixture's Vite dev server on the
# shared dependencies; loads the `small` fixture through the API; runs e2e/measure-visible.mjs
# once per path and prints p50/p95/p99 of each figure. Needs PostgreSQL, Chromium, npm ci in e2e/.
set -euo pipefail
cd "$(dirname "$0")/.."
edits="${1:-50}"
bin="$(cd "${FSYNC_BIN_DIR:-target/release}" && pwd)"
for b in fsync-reference fsync-agent fsync-fixtures; do
  [ -x "$bin/$b" ] || { echo "measure: no $bin/$b (cargo build --release -p $b)" >&2; exit 1; }
done
admin="${FSYNC_E2E_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
secret=fsync-measure-secret-fsync-measure-secret-0123
psql "$admin" -qc "DROP DATABASE IF EXISTS fsync_measure WITH (FORCE)" 2>/dev/null
state="$(mktemp -d /tmp/fsync-measure-XXXXXX)"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done; wait; rm -rf "$state"; }
trap cleanup EXIT
serve() { # PORT HYDRATION
  DATABASE_URL="${admin%/*}/fsync_measure" FSYNC_STATE_DIR="$state/$1" FSYNC_JWT_SECRET="$secret" \
    FSYNC_STORAGE_URL="file://$state/storage" \
    FSYNC_INSTANCE_ID="measure-$1" FSYNC_AGENT_BIN="$bin/fsync-agent" \
    FSYNC_PREVIEW_DEPS="$(ci/preview-deps/install)" FSYNC_USE_SNAPSHOT_HYDRATION="$2" \
    FSYNC_AGENT_EXEC='exec vite --host "$HOST" --port "$PORT" --strictPort --clearScreen false' \
    "$bin/fsync-reference" serve --addr "127.0.0.1:$1" >"$state/serve-$1.log" 2>&1 &
  pids+=("$!")
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$1/health" >/dev/null && return; sleep 0.1; done
  echo "measure: the server on $1 did not start:" >&2; tail "$state/serve-$1.log" >&2; exit 1
}
mkdir -p "$state/54339" "$state/54340"
serve 54339 1
serve 54340 0
token() { FSYNC_JWT_SECRET="$secret" "$bin/fsync-reference" token "$@"; }
anon="$(token --role anon)"
loaded="$("$bin/fsync-fixtures" load --api http://127.0.0.1:54339 --service-key "$(token --role service_role)" \
  --anon-key "$anon" --size small --seed 3 2>/dev/null)"
project="$(awk '/^project_id:/{print $2}' <<<"$loaded")"
owner="$(awk '/^owner_id:/{print $2}' <<<"$loaded")"
run() { # PORT EDITS
  FSYNC_API_URL="http://127.0.0.1:$1" FSYNC_ANON_KEY="$anon" FSYNC_OWNER_TOKEN="$(token --sub "$owner")" \
    FSYNC_PROJECT_ID="$project" FSYNC_EDITS="$2" node e2e/measure-visible.mjs
}
snapshot="$(run 54339 "$edits")"
legacy="$(run 54340 0)"
python3 - "$snapshot" "$legacy" <<'EOF'
import json, sys
snapshot, legacy = (json.loads(a) for a in sys.argv[1:])
def line(name, samples):
    s = sorted(samples)
    at = lambda q: s[min(len(s) - 1, int(q * len(s)))]
    print(f"{name:28} n={len(s):4}  p50 {at(0.5):7.1f} ms  p95 {at(0.95):7.1f} ms  p99 {at(0.99):7.1f} ms")
line("edit → visible (API)", snapshot["edit_visible_ms"])
line("floor: Vite's HMR", snapshot["floor_hmr_ms"])
print(f"{'first paint (snapshot)':28} {snapshot['first_paint_ms']:.0f} ms")
print(f"{'first paint (legacy)':28} {legacy['first_paint_ms']:.0f} ms")
print(f"clocks' offset (page − node) {snapshot['clock_offset_ms']:.2f} ms; page loads {snapshot['navigations']}")
EOF
