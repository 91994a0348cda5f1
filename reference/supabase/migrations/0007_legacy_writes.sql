-- File System Sync v1: writes from unmigrated clients (FSYNC_USE_RPC off), through the
-- compatibility view `legacy_project_files` (plan 0.1.1, 0.4).
--
-- A frontend that still writes with `.from(...).insert/upsert/update/delete` reaches the view's
-- INSTEAD OF triggers, which route every row into the same versioned writes the RPCs make
-- (`upsert_project_file`, `delete_project_file`): a version bump, the next `seq`, a server event.
-- A fleet mixing migrated and unmigrated clients therefore keeps one history: versions and `seq`
-- stay gapless and every change reaches the containers.
--
-- What each write means:
--   INSERT   a new file; a path that is live already is a conflict (409, `PT409`), unless the
--            request's `Prefer` header says `resolution=merge-duplicates` (upsert: last writer
--            wins) or `resolution=ignore-duplicates` (the row is skipped). The header is read
--            from `request.headers`, as PostgREST sets it.
--   UPDATE   new content or type for the matched rows (last writer wins); a file cannot move to
--            another path or project this way.
--   DELETE   a tombstone for each matched row.
-- A missing or unknown `type` is inferred from the path, as the backfill does. Access is the
-- RPCs' own: owners and editors write, viewers and containers get 403, non-members 404.
--
-- Idempotent: safe to apply again.

CREATE OR REPLACE FUNCTION fsync.legacy_write() RETURNS trigger
  LANGUAGE plpgsql SECURITY INVOKER SET search_path = ''
AS $$
DECLARE
  v_prefer text := coalesce(current_setting('request.headers', true)::jsonb ->> 'prefer', '');
  v_expected integer;
  v_type text;
  v_written jsonb;
  v_row public.project_files;
BEGIN
  IF TG_OP = 'DELETE' THEN
    PERFORM public.delete_project_file(OLD.project_id, OLD.path, NULL);
    RETURN OLD;
  END IF;
  IF TG_OP = 'UPDATE' AND (NEW.project_id IS DISTINCT FROM OLD.project_id OR NEW.path IS DISTINCT FROM OLD.path) THEN
    RAISE EXCEPTION USING ERRCODE = '22023',
      MESSAGE = 'a legacy write cannot move a file to another path or project',
      HINT = 'write the new path, then delete the old one';
  END IF;
  -- A plain INSERT creates only (expected version 0: a live path is a conflict, under the
  -- project's lock); an upsert or an update is last-writer-wins.
  IF TG_OP = 'INSERT' AND v_prefer !~ 'resolution=merge-duplicates' THEN
    v_expected := 0;
  END IF;
  v_type := CASE WHEN NEW.type = ANY (fsync.file_types()) THEN NEW.type ELSE fsync.infer_file_type(NEW.path) END;
  BEGIN
    v_written := public.upsert_project_file(NEW.project_id, NEW.path, coalesce(NEW.content, ''), v_type, v_expected);
  EXCEPTION WHEN SQLSTATE 'PT409' THEN
    IF TG_OP = 'INSERT' AND v_prefer ~ 'resolution=ignore-duplicates' THEN
      RETURN NULL;
    END IF;
    RAISE;
  END;
  SELECT * INTO v_row FROM public.project_files
  WHERE project_id = NEW.project_id AND file_path = NEW.path AND version = (v_written ->> 'version')::integer;
  NEW.id := v_row.id;
  NEW.type := v_row.file_type;
  NEW.content := v_row.content;
  NEW.created_at := v_row.created_at;
  NEW.updated_at := v_row.updated_at;
  RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS legacy_write ON public.legacy_project_files;
CREATE TRIGGER legacy_write INSTEAD OF INSERT OR UPDATE OR DELETE ON public.legacy_project_files
  FOR EACH ROW EXECUTE FUNCTION fsync.legacy_write();

-- The trigger runs as the caller; what it calls checks the caller's access itself.
REVOKE ALL ON FUNCTION fsync.legacy_write() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION fsync.legacy_write(), fsync.file_types(), fsync.infer_file_type(text)
  TO authenticated, service_role;
GRANT INSERT, UPDATE, DELETE ON public.legacy_project_files TO authenticated;
