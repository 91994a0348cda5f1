// The plan's unmigrated frontend (FSYNC_USE_RPC off) with the real @supabase/supabase-js: its
// `.from(...).insert/upsert/update/delete` on the compatibility view `legacy_project_files`, which
// the database routes into the versioned writes. Run by the Rust test
// reference/server/tests/it/supabase_js.rs, which starts the server, passes:
//   FSYNC_API_URL, FSYNC_ANON_KEY, FSYNC_PROJECT_ID, FSYNC_OWNER_TOKEN, FSYNC_VIEWER_TOKEN
// and then checks the project's history in PostgreSQL.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { clientFor, env } from './client.mjs';

const project = env('FSYNC_PROJECT_ID');
const owner = clientFor(env('FSYNC_OWNER_TOKEN'));
const viewer = clientFor(env('FSYNC_VIEWER_TOKEN'));
const files = () => owner.from('legacy_project_files');

test('insert, upsert, update and delete as the old store wrote them', async () => {
  const inserted = await files()
    .insert({ project_id: project, path: 'src/old.ts', type: 'typescript', content: 'v1' })
    .select();
  assert.equal(inserted.error, null);
  assert.equal(inserted.status, 201);
  assert.equal(inserted.data[0].content, 'v1');

  const duplicate = await files().insert({ project_id: project, path: 'src/old.ts', content: 'dup' });
  assert.equal(duplicate.status, 409);
  assert.equal(duplicate.error.code, 'PT409');

  const upserted = await files()
    .upsert({ project_id: project, path: 'src/old.ts', type: 'typescript', content: 'v2' }, { onConflict: 'project_id,path' })
    .select();
  assert.equal(upserted.error, null);
  assert.equal(upserted.data[0].content, 'v2');

  const ignored = await files().upsert(
    { project_id: project, path: 'src/old.ts', content: 'never' },
    { onConflict: 'project_id,path', ignoreDuplicates: true },
  );
  assert.equal(ignored.error, null);

  const updated = await files().update({ content: 'v3' }).eq('project_id', project).eq('path', 'src/old.ts').select();
  assert.equal(updated.error, null);
  assert.equal(updated.data.length, 1);
  assert.equal(updated.data[0].content, 'v3');

  const current = await files().select('path, content').eq('project_id', project).eq('path', 'src/old.ts').single();
  assert.equal(current.data.content, 'v3');

  const deleted = await files().delete().eq('project_id', project).eq('path', 'src/old.ts');
  assert.equal(deleted.error, null);
  assert.equal(deleted.status, 204);
  const gone = await files().select('path').eq('project_id', project);
  assert.deepEqual(gone.data, []);
});

test('the RPCs and the table writes see each other', async () => {
  const rpc = await owner.rpc('upsert_project_file', {
    project_uuid: project, p_file_path: 'mixed.md', p_content: 'from the rpc', p_file_type: 'markdown',
  });
  assert.equal(rpc.error, null);
  const table = await files()
    .upsert({ project_id: project, path: 'mixed.md', content: 'from the table' }, { onConflict: 'project_id,path' })
    .select();
  assert.equal(table.error, null);
  assert.equal(table.data[0].type, 'markdown', 'inferred from the path');
  const list = await owner.rpc('list_current_files', { project_uuid: project });
  const mixed = list.data.find((f) => f.file_path === 'mixed.md');
  assert.equal(mixed.version, 2);
  assert.equal(mixed.content, 'from the table');
});

test('a viewer cannot write through the view either', async () => {
  const refused = await viewer.from('legacy_project_files').insert({ project_id: project, path: 'v.txt', content: 'x' });
  assert.equal(refused.status, 403);
  assert.equal(refused.error.code, '42501');
});
