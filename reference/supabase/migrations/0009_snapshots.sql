-- File System Sync v1: snapshot records, so superseded snapshots are pruned (hardening).
--
-- Every stored snapshot (`project-snapshots/{project}/{snapshot_id}.zip` and `.json`) has a row:
-- its seq, when it was built (or first signed), until when a URL signed for it works, since when
-- it is superseded (a later snapshot of its project was recorded then; 0 once its project is
-- deleted), and whether it is being removed. The server removes a snapshot once nothing can
-- still download it: every URL signed for it has expired, and it was superseded long enough ago
-- that no build which chose it before is still signing it. It claims the row first (`removing`),
-- then removes the two objects, then the row; a URL is signed only after its note reached a row
-- that is not being removed, and the objects were then checked to be there. The newest snapshot
-- of a live project is never superseded: a session started while nothing changes reuses it.
-- No foreign key: a deleted project's snapshots are pruned too (the trigger marks them).
-- Only the server's own connection reads and writes it: no API role has any grant.
--
-- Idempotent: safe to apply again.

CREATE TABLE IF NOT EXISTS fsync.project_snapshots (
  project_id uuid NOT NULL,
  snapshot_id text NOT NULL CHECK (length(snapshot_id) BETWEEN 1 AND 64),
  seq bigint NOT NULL CHECK (seq >= 0),
  built_at_s bigint NOT NULL,
  signed_until_s bigint NOT NULL,
  superseded_at_s bigint,
  removing boolean NOT NULL DEFAULT false,
  PRIMARY KEY (project_id, snapshot_id)
);

CREATE INDEX IF NOT EXISTS project_snapshots_by_seq ON fsync.project_snapshots (project_id, seq);
CREATE INDEX IF NOT EXISTS project_snapshots_superseded
  ON fsync.project_snapshots (superseded_at_s) WHERE superseded_at_s IS NOT NULL;

REVOKE ALL ON fsync.project_snapshots FROM PUBLIC, anon, authenticated, service_role;

-- A deleted project's snapshots are all superseded.
CREATE OR REPLACE FUNCTION fsync.supersede_deleted_project_snapshots() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
BEGIN
  UPDATE fsync.project_snapshots SET superseded_at_s = 0 WHERE project_id = OLD.id;
  RETURN OLD;
END
$$;
REVOKE ALL ON FUNCTION fsync.supersede_deleted_project_snapshots() FROM PUBLIC;
DROP TRIGGER IF EXISTS projects_supersede_snapshots ON public.projects;
CREATE TRIGGER projects_supersede_snapshots
  AFTER DELETE ON public.projects
  FOR EACH ROW EXECUTE FUNCTION fsync.supersede_deleted_project_snapshots();

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

-- Of those, all but each live project's newest are superseded from now.
UPDATE fsync.project_snapshots s SET superseded_at_s = extract(epoch FROM now())::bigint
WHERE s.superseded_at_s IS NULL
  AND EXISTS (SELECT 1 FROM fsync.project_snapshots later WHERE later.project_id = s.project_id AND later.seq > s.seq);
UPDATE fsync.project_snapshots s SET superseded_at_s = 0
WHERE s.superseded_at_s IS DISTINCT FROM 0
  AND NOT EXISTS (SELECT 1 FROM public.projects p WHERE p.id = s.project_id);
