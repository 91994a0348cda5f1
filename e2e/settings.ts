// What the browser tests and the server they start share: the API's address, the JWT secret
// (so that tests mint their own tokens), the database and the dev server every preview runs.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';

export const ROOT = path.resolve(import.meta.dirname, '..');
export const BIN_DIR = path.resolve(ROOT, process.env.FSYNC_BIN_DIR ?? 'target/debug');
export const PORT = Number(process.env.FSYNC_E2E_PORT ?? 54329);
export const API_URL = `http://127.0.0.1:${PORT}`;
export const JWT_SECRET = 'fsync-e2e-secret-fsync-e2e-secret-0123456789';
export const CHROMIUM = process.env.FSYNC_CHROMIUM ?? '/usr/bin/chromium';
/** The preview's dev server: Vite on the host and port the launcher chose. */
export const DEV_SERVER = 'exec vite --host "$HOST" --port "$PORT" --strictPort --clearScreen false';

/** Why the browser tests cannot run here, or null. With FSYNC_REQUIRE_BROWSER=1 that is an error. */
export function missing(): string | null {
  const needs: [string, boolean][] = [
    [CHROMIUM, existsSync(CHROMIUM)],
    [`${BIN_DIR}/fsync-reference`, existsSync(`${BIN_DIR}/fsync-reference`)],
    [`${BIN_DIR}/fsync-agent`, existsSync(`${BIN_DIR}/fsync-agent`)],
    [`${BIN_DIR}/fsync-fixtures`, existsSync(`${BIN_DIR}/fsync-fixtures`)],
  ];
  const absent = needs.filter(([, found]) => !found).map(([what]) => what);
  if (absent.length === 0) return null;
  const why = `no ${absent.join(', ')}`;
  if (process.env.FSYNC_REQUIRE_BROWSER === '1') throw new Error(`FSYNC_REQUIRE_BROWSER=1, but ${why}`);
  return why;
}

/** A token signed with the test server's secret (`fsync-reference token`). */
export function token(role: 'anon' | 'service_role' | 'authenticated', sub?: string): string {
  const args = ['token', '--role', role, ...(sub ? ['--sub', sub] : [])];
  const env = { ...process.env, FSYNC_JWT_SECRET: JWT_SECRET };
  return execFileSync(`${BIN_DIR}/fsync-reference`, args, { env, encoding: 'utf8' }).trim();
}
