// Edit → visible, measured in a real browser (issue 23): what `fsync-loadtest kpi` runs for its
// preview phase, and a command of its own. Debian's Chromium opens a running preview; each edit
// replaces the text of the page's footer, and the page's MutationObserver stamps the moment the
// new text is in the DOM. Times are epoch milliseconds, in Node (performance.timeOrigin + now)
// and in the page alike: one clock, the system's (the offset between the two, measured by a round
// trip, is taken off the page's times and printed). Interleaved with the edits through the API, the floor: the same edit written
// straight into the dev server's directory (Vite's own HMR). Also session request → first
// contentful paint of the preview.
//
//   node e2e/measure-visible.mjs   (settings from the environment, below; JSON on stdout)
//     FSYNC_API_URL, FSYNC_ANON_KEY, FSYNC_OWNER_TOKEN, FSYNC_PROJECT_ID,
//     FSYNC_EDITS (default 50), FSYNC_CHROMIUM (default /usr/bin/chromium),
//     FSYNC_SCREENSHOTS=1 (a PNG of the page before and after an edit, base64 in the JSON)
import { chromium } from '@playwright/test';
import { renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';

const env = (name, fallback) => {
  const value = process.env[name] ?? fallback;
  if (value === undefined) throw new Error(`${name} is not set`);
  return value;
};
const api = env('FSYNC_API_URL');
const headers = {
  apikey: env('FSYNC_ANON_KEY'),
  authorization: `Bearer ${env('FSYNC_OWNER_TOKEN')}`,
  'content-type': 'application/json',
};
const project = env('FSYNC_PROJECT_ID');
const edits = Number(env('FSYNC_EDITS', '50'));
const now = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
/** Between one edit being seen and the next being sent. */
const PACE_MS = 150;

/** Starts a session and waits until it runs: the request's time and the running view. */
async function startSession() {
  const requested = now();
  const created = await fetch(`${api}/orchestrator/v1/sessions`, {
    method: 'POST', headers, body: JSON.stringify({ project_id: project }),
  });
  const session = await created.json();
  if (created.status !== 201) throw new Error(`create a session: ${created.status} ${JSON.stringify(session)}`);
  for (let i = 0; i < 3000; i++) {
    const view = await (await fetch(`${api}/orchestrator/v1/sessions/${session.id}`, { headers })).json();
    if (view.status === 'running') return { requested, view };
    if (view.status === 'failed' || view.status === 'stopped') throw new Error(`the session ended: ${JSON.stringify(view)}`);
    await sleep(20);
  }
  throw new Error('the session never ran');
}

/** The owner's App.tsx with its footer saying `text`. */
function withFooter(app, text) {
  const edited = app.replace(/(<footer className="app-footer">)[^<]*(<\/footer>)/, `$1${text}$2`);
  if (edited === app) throw new Error('App.tsx has no footer to edit');
  return edited;
}

async function readApp() {
  const answer = await fetch(`${api}/rest/v1/rpc/list_current_files`, {
    method: 'POST', headers, body: JSON.stringify({ project_uuid: project }),
  });
  const files = await answer.json();
  return files.find((f) => f.file_path === 'src/App.tsx').content;
}

/** In the page: sets `window.fsyncSeenAt` to the epoch time at which the footer first reads
 * `text` (the observer is in place when this returns). */
function watch(text) {
  window.fsyncSeenAt = undefined;
  const stamp = () => performance.timeOrigin + performance.now();
  const footer = () => document.querySelector('footer.app-footer');
  if (footer()?.textContent === text) {
    window.fsyncSeenAt = stamp();
    return;
  }
  const observer = new MutationObserver(() => {
    if (footer()?.textContent === text) {
      window.fsyncSeenAt = stamp();
      observer.disconnect();
    }
  });
  observer.observe(document.body, { subtree: true, childList: true, characterData: true });
}

async function main() {
  const { requested, view } = await startSession();
  const browser = await chromium.launch({ executablePath: env('FSYNC_CHROMIUM', '/usr/bin/chromium'), args: ['--no-sandbox'] });
  try {
    const page = await browser.newPage();
    await page.goto(view.preview_url);
    await page.waitForSelector('footer.app-footer');
    const paint = await page.evaluate(() => {
      const entry = performance.getEntriesByName('first-contentful-paint')[0];
      return entry ? performance.timeOrigin + entry.startTime : null;
    });
    // The two clocks' offset, bracketed by a round trip (both read the system's clock).
    const before = now();
    const inPage = await page.evaluate(() => performance.timeOrigin + performance.now());
    const after = now();
    const offset = inPage - (before + after) / 2;

    const app = await readApp();
    const file = path.join(view.project_dir, 'src/App.tsx');
    const staged = path.join(view.project_dir, '..', 'App.tsx.measure');
    const samples = { api: [], floor: [] };
    const shots = {};
    if (process.env.FSYNC_SCREENSHOTS === '1') shots.before = (await page.screenshot()).toString('base64');
    for (let i = 0; i < edits * 2; i++) {
      // A person's pace, not a burst: the dev server's watcher sees each replacement on its own.
      await sleep(PACE_MS);
      const direct = i % 2 === 1;
      const text = `${direct ? 'Written directly' : 'Edited through fsync'} ${i}`;
      const content = withFooter(app, text);
      // The observer is in place before the edit is sent.
      await page.evaluate(watch, text);
      const sent = now();
      if (direct) {
        // Staged beside the project (the same filesystem), as the agent stages: one rename.
        writeFileSync(staged, content);
        renameSync(staged, file);
      } else {
        const answer = await fetch(`${api}/rest/v1/rpc/upsert_project_file`, {
          method: 'POST', headers,
          body: JSON.stringify({ project_uuid: project, p_file_path: 'src/App.tsx', p_content: content, p_file_type: 'typescript' }),
        });
        if (!answer.ok) throw new Error(`edit ${i}: ${answer.status} ${await answer.text()}`);
      }
      const seenAt = await page
        .waitForFunction(() => window.fsyncSeenAt, null, { timeout: 30_000 })
        .catch((e) => { throw new Error(`edit ${i} (${text}) never seen: ${e.message}`); });
      const visible = (await seenAt.jsonValue()) - offset;
      (direct ? samples.floor : samples.api).push(visible - sent);
      if (i === 0 && process.env.FSYNC_SCREENSHOTS === '1') shots.after = (await page.screenshot()).toString('base64');
    }
    const reloaded = await page.evaluate(() => performance.getEntriesByType('navigation').length);
    process.stdout.write(`${JSON.stringify({
      session_id: view.id,
      snapshot_hydration: view.snapshot_hydration,
      first_paint_ms: paint === null ? null : paint - offset - requested,
      edit_visible_ms: samples.api,
      floor_hmr_ms: samples.floor,
      clock_offset_ms: offset,
      navigations: reloaded,
      screenshots: shots,
    })}\n`);
    await fetch(`${api}/orchestrator/v1/sessions/${view.id}`, { method: 'DELETE', headers });
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  console.error(`measure-visible: ${e.stack ?? e}`);
  process.exit(1);
});

