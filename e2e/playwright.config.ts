// The preview in a real browser (issue 23): Playwright drives Debian's Chromium (no browser
// download) against the reference server that serve.sh starts on a fresh database.
import { defineConfig } from '@playwright/test';
import { API_URL, CHROMIUM, DEV_SERVER, JWT_SECRET, PORT, missing } from './settings';

const admin = process.env.FSYNC_E2E_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const absent = missing();

export default defineConfig({
  testDir: './tests',
  timeout: 180_000,
  expect: { timeout: 20_000 },
  workers: 1,
  reporter: [['list']],
  outputDir: 'test-results',
  use: {
    browserName: 'chromium',
    headless: true,
    launchOptions: { executablePath: CHROMIUM, args: ['--no-sandbox'] },
  },
  webServer: absent
    ? undefined
    : {
        command: 'bash serve.sh',
        url: `${API_URL}/health`,
        timeout: 120_000,
        reuseExistingServer: false,
        // serve stops the agents it started (and their dev servers) on SIGTERM; a SIGKILL would
        // leave them running.
        gracefulShutdown: { signal: 'SIGTERM', timeout: 15_000 },
        stdout: 'pipe',
        stderr: 'pipe',
        env: {
          FSYNC_E2E_ADMIN_URL: admin,
          FSYNC_E2E_PORT: String(PORT),
          FSYNC_JWT_SECRET: JWT_SECRET,
          FSYNC_AGENT_EXEC: DEV_SERVER,
          FSYNC_USE_SNAPSHOT_HYDRATION: '1',
        },
      },
});
