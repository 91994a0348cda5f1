-- fsync 0004: the snapshot bucket (plan 0.3) and Realtime authorization (DESIGN §7, §8).

-- Snapshot zips live in a private bucket. Only the service role (the snapshot Edge Function)
-- writes; everyone else reads through signed URLs, which Storage serves without a policy check.
INSERT INTO storage.buckets (id, name, public)
VALUES ('project-snapshots', 'project-snapshots', false)
ON CONFLICT (id) DO UPDATE SET public = false;

-- Whatever other policies a project has on storage.objects, none opens this bucket to anon or
-- signed-in users (containers included): restrictive policies AND with every permissive one.
DROP POLICY IF EXISTS "project-snapshots: closed to api users" ON storage.objects;
CREATE POLICY "project-snapshots: closed to api users" ON storage.objects
  AS RESTRICTIVE FOR ALL TO anon, authenticated
  USING (bucket_id IS DISTINCT FROM 'project-snapshots')
  WITH CHECK (bucket_id IS DISTINCT FROM 'project-snapshots');

DROP POLICY IF EXISTS "project-snapshots: service role writes" ON storage.objects;
CREATE POLICY "project-snapshots: service role writes" ON storage.objects
  FOR INSERT TO service_role
  WITH CHECK (bucket_id = 'project-snapshots');

DROP POLICY IF EXISTS "project-snapshots: service role updates" ON storage.objects;
CREATE POLICY "project-snapshots: service role updates" ON storage.objects
  FOR UPDATE TO service_role
  USING (bucket_id = 'project-snapshots')
  WITH CHECK (bucket_id = 'project-snapshots');

DROP POLICY IF EXISTS "project-snapshots: service role deletes" ON storage.objects;
CREATE POLICY "project-snapshots: service role deletes" ON storage.objects
  FOR DELETE TO service_role
  USING (bucket_id = 'project-snapshots');

DROP POLICY IF EXISTS "project-snapshots: service role reads" ON storage.objects;
CREATE POLICY "project-snapshots: service role reads" ON storage.objects
  FOR SELECT TO service_role
  USING (bucket_id = 'project-snapshots');

-- Private channel `project:<uuid>`: members of the project, and container tokens scoped to it,
-- may receive its broadcasts. Realtime evaluates this with realtime.topic() and the joining
-- token's role and claims, here and on a real Supabase project alike.
DROP POLICY IF EXISTS "project topics: members and container read" ON realtime.messages;
CREATE POLICY "project topics: members and container read" ON realtime.messages
  FOR SELECT TO authenticated
  USING (realtime.messages.extension = 'broadcast' AND fsync.can_read_topic((SELECT realtime.topic())));

-- Client broadcasts on `project:<uuid>:client` (plan 3.3, only when a server keeps them): owners
-- and editors may send, viewers and container tokens may not. Realtime checks this INSERT policy
-- before relaying a client's broadcast on a private channel. Nobody may send on the server's
-- topic `project:<uuid>`.
DROP POLICY IF EXISTS "project topics: writers broadcast" ON realtime.messages;
CREATE POLICY "project topics: writers broadcast" ON realtime.messages
  FOR INSERT TO authenticated
  WITH CHECK (realtime.messages.extension = 'broadcast' AND fsync.can_write_topic((SELECT realtime.topic())));
