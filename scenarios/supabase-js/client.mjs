// What both compatibility test files share: the settings the Rust test passes, and supabase-js
// clients made the way a frontend makes them.
import { createClient } from '@supabase/supabase-js';
import ws from 'ws';

/** A required environment variable. */
export const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run this through the Rust test (bash ci/test)`);
  return value;
};

/**
 * supabase-js against the server in FSYNC_API_URL, calling as `token` (a third-party token: the
 * same callback feeds REST and Realtime). Node 20 has no native WebSocket, so realtime-js is
 * given `ws` as its transport. `vsn` picks the Realtime serializer.
 */
export const clientFor = (token, vsn) =>
  createClient(env('FSYNC_API_URL'), env('FSYNC_ANON_KEY'), {
    accessToken: async () => token,
    auth: { persistSession: false },
    realtime: { transport: ws, ...(vsn ? { vsn } : {}) },
  });
