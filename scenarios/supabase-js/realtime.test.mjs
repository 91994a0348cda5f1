// The real @supabase/realtime-js (through supabase-js) against the fsync reference server:
// private channel `project:<id>` joins decided by the realtime.messages policies, server-authored
// `file:update` after `.rpc('upsert_project_file')`, both serializers, container tokens.
// Run by reference/server/tests/it/realtime_js.rs, which passes:
//   FSYNC_API_URL, FSYNC_ANON_KEY, FSYNC_PROJECT_ID, FSYNC_OTHER_PROJECT_ID,
//   FSYNC_OWNER_TOKEN, FSYNC_STRANGER_TOKEN, FSYNC_CONTAINER_TOKEN
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { clientFor, env } from './client.mjs';

const project = env('FSYNC_PROJECT_ID');
const otherProject = env('FSYNC_OTHER_PROJECT_ID');

const clients = [];
// As Supabase's docs say for private channels: `await supabase.realtime.setAuth()` before
// subscribing, so that the join carries the user's token.
const as = async (token, vsn) => {
  const client = clientFor(token, vsn);
  clients.push(client);
  await client.realtime.setAuth();
  return client;
};
after(async () => {
  for (const client of clients) {
    await client.removeAllChannels();
    await client.realtime.disconnect();
  }
});

// Subscribes and resolves with the final status ('SUBSCRIBED', or 'CHANNEL_ERROR' with its error).
const subscribe = (channel) =>
  new Promise((resolve) => {
    channel.subscribe((status, error) => {
      if (status === 'SUBSCRIBED' || status === 'CHANNEL_ERROR' || status === 'TIMED_OUT') resolve({ status, error });
    });
  });

const nextBroadcast = (channel, event) =>
  new Promise((resolve) => channel.on('broadcast', { event }, (message) => resolve(message)));

for (const vsn of ['2.0.0', '1.0.0']) {
  test(`vsn ${vsn}: a member's private channel receives file:update after .rpc('upsert_project_file')`, async () => {
    const owner = await as(env('FSYNC_OWNER_TOKEN'), vsn);
    assert.equal(owner.realtime.vsn, vsn);
    const channel = owner.channel(`project:${project}`, { config: { private: true } });
    const received = nextBroadcast(channel, 'file:update');
    const joined = await subscribe(channel);
    assert.equal(joined.status, 'SUBSCRIBED', String(joined.error));

    const path = `src/${vsn}.ts`;
    const write = await owner.rpc('upsert_project_file', {
      project_uuid: project, p_file_path: path, p_content: `// ${vsn}`, p_file_type: 'typescript',
    });
    assert.equal(write.error, null);

    const message = await received;
    assert.equal(message.type, 'broadcast');
    assert.equal(message.event, 'file:update');
    assert.equal(message.payload.file_path, path);
    assert.equal(message.payload.content, `// ${vsn}`);
    assert.equal(message.payload.seq, write.data.seq);
    assert.equal(message.payload.version, write.data.version);
    await owner.removeChannel(channel);
  });
}

test("a non-member's join is refused with Supabase's wording", async () => {
  const stranger = await as(env('FSYNC_STRANGER_TOKEN'));
  const channel = stranger.channel(`project:${project}`, { config: { private: true } });
  const joined = await subscribe(channel);
  assert.equal(joined.status, 'CHANNEL_ERROR');
  assert.match(
    joined.error.message,
    new RegExp(`Unauthorized: You do not have permissions to read from this Channel topic: project:${project}`),
  );
  await stranger.removeChannel(channel);
});

test('a container token joins its own project only', async () => {
  const container = await as(env('FSYNC_CONTAINER_TOKEN'));
  const own = container.channel(`project:${project}`, { config: { private: true } });
  assert.equal((await subscribe(own)).status, 'SUBSCRIBED');
  const other = container.channel(`project:${otherProject}`, { config: { private: true } });
  const refused = await subscribe(other);
  assert.equal(refused.status, 'CHANNEL_ERROR');
  assert.match(refused.error.message, /Unauthorized/);
  await container.removeChannel(own);
  await container.removeChannel(other);

  const write = await container.rpc('upsert_project_file', {
    project_uuid: project, p_file_path: 'x.ts', p_content: 'x', p_file_type: 'typescript',
  });
  assert.equal(write.status, 403, 'a container token cannot write');
});

test('client broadcasts are refused while FSYNC_KEEP_CLIENT_BROADCAST is off', async () => {
  const owner = await as(env('FSYNC_OWNER_TOKEN'));
  const channel = owner.channel(`project:${project}`, { config: { private: true, broadcast: { ack: true, self: true } } });
  assert.equal((await subscribe(channel)).status, 'SUBSCRIBED');
  const result = await channel.send({ type: 'broadcast', event: 'cursor', payload: { x: 1 } });
  assert.equal(result, 'error');
  await owner.removeChannel(channel);
});
