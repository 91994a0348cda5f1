-- File System Sync v1: snapshot records, so superseded snapshots are pruned (hardening).
--
-- Every stored snapshot (`project-snapshots/{project}/{snapshot_id}.zip` and `.json`) has a row:
-- when it was built (or first signed) and until when a URL signed for it works. The server
-- removes a snapshot, its two objects first and then its row, once nothing can still download
-- it: every URL signed for it has expired, and either its project is gone or a later snapshot of
-- the project was built long enough ago that no build which chose this one is still signing it.
-- The newest snapshot of a live project is never removed: a session started while nothing
-- changes reuses it. No foreign key: a deleted project's snapshots are pruned too.
-- Only the server's own connection reads and writes it: no API role has any grant.
--
-- Idempotent: safe to apply again.

CREATE TABLE IF NOT EXISTS fsync.project_snapshots (
  project_id uuid NOT NULL,
  snapshot_id text NOT NULL CHECK (length(snapshot_id) BETWEEN 1 AND 64),
  seq bigint NOT NULL CHECK (seq >= 0),
  built_at_s bigint NOT NULL,
  signed_until_s bigint NOT NULL,
  PRIMARY KEY (project_id, snapshot_id)
);

CREATE INDEX IF NOT EXISTS project_snapshots_by_seq ON fsync.project_snapshots (project_id, seq);
CREATE INDEX IF NOT EXISTS project_snapshots_by_expiry ON fsync.project_snapshots (signed_until_s);

REVOKE ALL ON fsync.project_snapshots FROM PUBLIC, anon, authenticated, service_role;

-- Snapshots stored before this migration get a record once: built when their zip was stored, and
-- signed, for all anyone knows, for as long as a URL may live from now (7 days).
INSERT INTO fsync.project_snapshots (project_id, snapshot_id, seq, built_at_s, signed_until_s)
SELECT m[1]::uuid, 'seq-' || m[2], m[2]::bigint,
       extract(epoch FROM coalesce(o.created_at, now()))::bigint,
       extract(epoch FROM now())::bigint + 7 * 24 * 3600
FROM storage.objects o,
     LATERAL regexp_match(o.name,
       '^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})/seq-(0|[1-9][0-9]{0,17})\.zip$') AS m
WHERE o.bucket_id = 'project-snapshots' AND m IS NOT NULL
ON CONFLICT (project_id, snapshot_id) DO NOTHING;
