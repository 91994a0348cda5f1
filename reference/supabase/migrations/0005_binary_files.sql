-- fsync 0005: binary files (plan: `content` is NULL for binaries stored in storage).
--
-- A binary's bytes live in the private `project-files` bucket, content-addressed as
-- `{project_id}/{sha256}`. A writer uploads the bytes there (storage policies below: owners and
-- editors of that project), then records the file with upsert_project_binary, which checks that
-- the object exists and stamps the row like any other write: a version, a seq, a `file:update`
-- event (content left out; consumers fetch the bytes through a signed URL). The snapshot function
-- and the agent check the bytes against content_hash.

INSERT INTO storage.buckets (id, name, public)
VALUES ('project-files', 'project-files', false)
ON CONFLICT (id) DO UPDATE SET public = false;

-- The project an object name `{project_id}/...` belongs to, or NULL.
CREATE OR REPLACE FUNCTION fsync.object_project(p_name text) RETURNS uuid
  LANGUAGE sql IMMUTABLE
AS $$
  SELECT CASE WHEN p_name ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/'
              THEN substr(p_name, 1, 36)::uuid END
$$;

-- Every member and the project's container token may read (sign) its binaries; owners and
-- editors may write them. The restrictive policy of 0004 keeps project-snapshots closed anyway.
DROP POLICY IF EXISTS "project-files: members read" ON storage.objects;
CREATE POLICY "project-files: members read" ON storage.objects
  FOR SELECT TO authenticated
  USING (bucket_id = 'project-files' AND fsync.access_role(fsync.object_project(name)) IS NOT NULL);

DROP POLICY IF EXISTS "project-files: writers insert" ON storage.objects;
CREATE POLICY "project-files: writers insert" ON storage.objects
  FOR INSERT TO authenticated
  WITH CHECK (bucket_id = 'project-files'
              AND coalesce(fsync.access_role(fsync.object_project(name)) IN ('owner', 'editor'), false));

DROP POLICY IF EXISTS "project-files: writers update" ON storage.objects;
CREATE POLICY "project-files: writers update" ON storage.objects
  FOR UPDATE TO authenticated
  USING (bucket_id = 'project-files'
         AND coalesce(fsync.access_role(fsync.object_project(name)) IN ('owner', 'editor'), false))
  WITH CHECK (bucket_id = 'project-files'
              AND coalesce(fsync.access_role(fsync.object_project(name)) IN ('owner', 'editor'), false));

DROP POLICY IF EXISTS "project-files: writers delete" ON storage.objects;
CREATE POLICY "project-files: writers delete" ON storage.objects
  FOR DELETE TO authenticated
  USING (bucket_id = 'project-files'
         AND coalesce(fsync.access_role(fsync.object_project(name)) IN ('owner', 'editor'), false));

------------------------------------------------------------------------------------------------
-- upsert_project_binary: records a binary file whose bytes are already in project-files.
------------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION public.upsert_project_binary(
  project_uuid uuid,
  p_file_path text,
  p_content_hash text,
  p_file_type text DEFAULT 'binary',
  expected_version integer DEFAULT NULL)
  RETURNS jsonb
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
DECLARE
  v_head public.project_files;
  v_row public.project_files;
  v_name text;
  v_size bigint;
  v_writer uuid;
BEGIN
  PERFORM fsync.check_path(p_file_path, 'p_file_path');
  PERFORM fsync.check_file_type(p_file_type, 'p_file_type');
  IF p_content_hash IS NULL OR p_content_hash !~ '^[0-9a-f]{64}$' THEN
    PERFORM fsync.invalid('p_content_hash must be the lowercase hex SHA-256 of the bytes');
  END IF;
  PERFORM fsync.check_expected_version(expected_version, 'expected_version');
  PERFORM fsync.require_access(project_uuid, true);

  v_name := project_uuid::text || '/' || p_content_hash;
  SELECT coalesce((o.metadata ->> 'size')::bigint, 0) INTO v_size
  FROM storage.objects o WHERE o.bucket_id = 'project-files' AND o.name = v_name;
  IF NOT FOUND THEN
    RAISE EXCEPTION USING ERRCODE = '22023',
      MESSAGE = format('no object project-files/%s: upload the bytes before recording the file', v_name),
      HINT = 'POST /storage/v1/object/project-files/{project_id}/{sha256}, then call upsert_project_binary';
  END IF;

  PERFORM fsync.begin_write(project_uuid);
  v_head := fsync.head(project_uuid, p_file_path);

  IF v_head.id IS NOT NULL AND NOT v_head.is_deleted AND v_head.content IS NULL
     AND v_head.content_hash = p_content_hash AND v_head.file_type = p_file_type THEN
    RETURN jsonb_build_object('file_path', p_file_path, 'version', v_head.version,
                              'content_hash', p_content_hash, 'seq', v_head.seq, 'noop', true);
  END IF;

  PERFORM fsync.check_expected(p_file_path, expected_version, v_head);
  v_writer := fsync.writer(project_uuid);
  IF v_head.id IS NOT NULL THEN
    UPDATE public.project_files SET is_current_version = false WHERE id = v_head.id;
  END IF;
  INSERT INTO public.project_files (
    project_id, file_path, file_type, content, content_hash, version, parent_version_id,
    is_current_version, created_by, last_modified_by, is_deleted, seq, size_bytes, storage_key)
  VALUES (
    project_uuid, p_file_path, p_file_type, NULL, p_content_hash, coalesce(v_head.version, 0) + 1,
    v_head.id, true, coalesce(v_head.created_by, v_writer), v_writer, false,
    fsync.next_seq(project_uuid), v_size, 'project-files/' || v_name)
  RETURNING * INTO v_row;

  PERFORM realtime.send(
    jsonb_build_object(
      'file_path', v_row.file_path, 'file_type', v_row.file_type,
      'content', NULL, 'content_omitted', true,
      'content_hash', v_row.content_hash, 'version', v_row.version, 'seq', v_row.seq,
      'timestamp', v_row.updated_at),
    'file:update', fsync.topic(project_uuid), true);

  RETURN jsonb_build_object('file_path', v_row.file_path, 'version', v_row.version,
                            'content_hash', v_row.content_hash, 'seq', v_row.seq, 'noop', false);
END
$$;

REVOKE ALL ON FUNCTION public.upsert_project_binary(uuid, text, text, text, integer) FROM PUBLIC, anon;
GRANT EXECUTE ON FUNCTION public.upsert_project_binary(uuid, text, text, text, integer)
  TO authenticated, service_role;
REVOKE ALL ON FUNCTION fsync.object_project(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION fsync.object_project(text) TO authenticated, service_role;
