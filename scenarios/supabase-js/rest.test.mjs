// The real @supabase/supabase-js against the fsync reference server: RPCs and the read subset of
// the REST API, as a frontend store would use them. Run by the Rust test
// reference/server/tests/it/supabase_js.rs, which starts the server and passes:
//   FSYNC_API_URL, FSYNC_ANON_KEY, FSYNC_PROJECT_ID,
//   FSYNC_OWNER_TOKEN, FSYNC_VIEWER_TOKEN, FSYNC_STRANGER_TOKEN
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { clientFor, env } from './client.mjs';

const project = env('FSYNC_PROJECT_ID');
const as = (token) => clientFor(token);
const owner = as(env('FSYNC_OWNER_TOKEN'));
const viewer = as(env('FSYNC_VIEWER_TOKEN'));
const stranger = as(env('FSYNC_STRANGER_TOKEN'));

test('upsert, conflict, bulk and list through .rpc()', async () => {
  const created = await owner.rpc('upsert_project_file', {
    project_uuid: project, p_file_path: 'src/App.tsx', p_content: 'export default 1', p_file_type: 'typescript',
    expected_version: 0,
  });
  assert.equal(created.error, null);
  assert.equal(created.data.version, 1);
  assert.equal(created.data.noop, false);
  assert.match(created.data.content_hash, /^[0-9a-f]{64}$/);

  const stale = await owner.rpc('upsert_project_file', {
    project_uuid: project, p_file_path: 'src/App.tsx', p_content: 'export default 2', p_file_type: 'typescript',
    expected_version: 0,
  });
  assert.equal(stale.status, 409);
  assert.equal(stale.error.code, 'PT409');
  assert.equal(JSON.parse(stale.error.details).current_version, 1);

  const bulk = await owner.rpc('bulk_upsert_project_files', {
    project_uuid: project,
    files: [
      { file_path: 'package.json', file_type: 'json', content: '{}' },
      { file_path: 'src/App.tsx', file_type: 'typescript', content: 'export default 2', expected_version: 1 },
    ],
  });
  assert.equal(bulk.error, null);
  assert.equal(bulk.data.files.length, 2);

  const listed = await owner.rpc('list_current_files', { project_uuid: project });
  assert.equal(listed.error, null);
  assert.deepEqual(listed.data.map((f) => [f.file_path, f.version]), [['package.json', 1], ['src/App.tsx', 2]]);

  // The same read as a GET call (supabase-js { get: true }).
  const viaGet = await owner.rpc('list_changes_since', { project_uuid: project, since_seq: 0 }, { get: true });
  assert.equal(viaGet.error, null);
  assert.equal(viaGet.data.seq, bulk.data.seq);
});

test(".from('project_files_current').select('*').eq('project_id', id) under RLS", async () => {
  const { data, error, status } = await owner
    .from('project_files_current').select('*').eq('project_id', project).order('file_path');
  assert.equal(error, null);
  assert.equal(status, 200);
  assert.deepEqual(data.map((f) => f.file_path), ['package.json', 'src/App.tsx']);
  assert.equal(data[1].version, 2);

  const one = await owner
    .from('project_files_current').select('file_path, version').eq('project_id', project).eq('file_path', 'package.json').single();
  assert.equal(one.error, null);
  assert.deepEqual(one.data, { file_path: 'package.json', version: 1 });

  const viewerRows = await viewer.from('project_files_current').select('file_path').eq('project_id', project);
  assert.equal(viewerRows.data.length, 2, 'viewers read');

  const strangerRows = await stranger.from('project_files_current').select('*').eq('project_id', project);
  assert.equal(strangerRows.error, null);
  assert.deepEqual(strangerRows.data, [], 'a non-member sees nothing');
});

test('viewers and strangers cannot write; errors come back as PostgREST errors', async () => {
  const byViewer = await viewer.rpc('upsert_project_file', {
    project_uuid: project, p_file_path: 'x.txt', p_content: 'x', p_file_type: 'text',
  });
  assert.equal(byViewer.status, 403);
  assert.equal(byViewer.error.code, '42501');

  const byStranger = await stranger.rpc('delete_project_file', { project_uuid: project, p_file_path: 'package.json' });
  assert.equal(byStranger.status, 404);
  assert.equal(byStranger.error.code, 'PT404');

  const badPath = await owner.rpc('upsert_project_file', {
    project_uuid: project, p_file_path: '../escape', p_content: 'x', p_file_type: 'text',
  });
  assert.equal(badPath.status, 400);
  assert.equal(badPath.error.code, '22023');
  assert.match(badPath.error.message, /"\." or "\.\." segment/);
});
