#!/usr/bin/env bash
# The server the browser tests run against (Playwright's webServer starts it and stops it): the
# reference server on a fresh database `fsync_e2e`, its agents real processes that run each
# preview's Vite dev server on the shared dependencies. Its settings come from e2e/settings.ts
# through the environment; binaries from FSYNC_BIN_DIR (default: target/debug).
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${FSYNC_BIN_DIR:-target/debug}"
for b in fsync-reference fsync-agent; do
  [ -x "$bin/$b" ] || { echo "e2e: no $bin/$b (cargo build -p fsync-reference -p fsync-agent)" >&2; exit 1; }
done
psql "${FSYNC_E2E_ADMIN_URL:?}" -qc "DROP DATABASE IF EXISTS fsync_e2e WITH (FORCE)" >/dev/null
# The run's files (storage, sessions) where the last run's were: every run starts afresh. Under
# target/, not e2e/: nothing a preview resolves may come from the test's own node_modules.
state="$PWD/target/e2e-state"
rm -rf "$state" && mkdir -p "$state"
export DATABASE_URL="${FSYNC_E2E_ADMIN_URL%/*}/fsync_e2e"
export FSYNC_STATE_DIR="$state"
export FSYNC_AGENT_BIN="$bin/fsync-agent"
export FSYNC_PREVIEW_DEPS="${FSYNC_PREVIEW_DEPS:-$(ci/preview-deps/install)}"
# Playwright stops it with SIGTERM (playwright.config.ts): it stops every agent it started.
exec "$bin/fsync-reference" serve --addr "127.0.0.1:${FSYNC_E2E_PORT:?}"
