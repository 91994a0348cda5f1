-- fsync 0003: the SQL API (plan 1.1-1.4, DESIGN §5-§7).
--
-- Every RPC is SECURITY DEFINER with an empty search_path, checks access through
-- fsync.access_role itself and stamps the author. Every write locks the project row, bumps
-- projects.seq by exactly 1, stamps that seq on each row it writes and, in the same transaction,
-- calls realtime.send, so the event exists only if the write commits.
--
-- Errors follow PostgREST's mapping from SQLSTATE to HTTP status:
--   22023 -> 400 invalid input        42501 -> 403 not allowed
--   PT404 -> 404 no such project/file PT409 -> 409 version conflict (head version in DETAIL)
--   PT413 -> 413 too large

------------------------------------------------------------------------------------------------
-- Private helpers.
------------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION fsync.invalid(p_message text) RETURNS void
  LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
  RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = p_message;
END
$$;

-- Raises 22023 / PT413 when a path, file type or content breaks the documented rules.
-- p_what names the argument in the message (`p_file_path`, `files[3].file_path`, ...).
CREATE OR REPLACE FUNCTION fsync.check_path(p_path text, p_what text) RETURNS void
  LANGUAGE plpgsql IMMUTABLE
AS $$
DECLARE
  v_problem text := fsync.path_problem(p_path);
BEGIN
  IF v_problem IS NOT NULL THEN
    RAISE EXCEPTION USING ERRCODE = '22023',
      MESSAGE = format('%s %s', p_what, v_problem),
      HINT = 'paths are relative POSIX paths: no leading /, no backslash, no empty, "." or ".." segments, no control characters, at most ' || fsync.max_path_bytes() || ' bytes';
  END IF;
END
$$;

CREATE OR REPLACE FUNCTION fsync.check_file_type(p_type text, p_what text) RETURNS void
  LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
  IF p_type IS NULL OR NOT p_type = ANY (fsync.file_types()) THEN
    RAISE EXCEPTION USING ERRCODE = '22023',
      MESSAGE = format('%s %s is not a known file type', p_what, coalesce(quote_literal(p_type), 'NULL')),
      HINT = 'one of: ' || array_to_string(fsync.file_types(), ', ');
  END IF;
END
$$;

CREATE OR REPLACE FUNCTION fsync.check_content(p_content text, p_what text) RETURNS void
  LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
  IF p_content IS NULL THEN
    PERFORM fsync.invalid(p_what || ' is required');
  END IF;
  IF octet_length(p_content) > fsync.max_content_bytes() THEN
    RAISE EXCEPTION USING ERRCODE = 'PT413',
      MESSAGE = format('%s is %s bytes, more than the limit of %s bytes', p_what,
                       octet_length(p_content), fsync.max_content_bytes());
  END IF;
END
$$;

CREATE OR REPLACE FUNCTION fsync.check_expected_version(p_expected integer, p_what text) RETURNS void
  LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
  IF p_expected < 0 THEN
    PERFORM fsync.invalid(p_what || ' must be null, 0 (create only) or a version >= 1');
  END IF;
END
$$;

-- Raises unless the caller may read (p_write false) or write (p_write true) the project, and
-- returns the caller's standing. A project the caller cannot see does not exist for them.
CREATE OR REPLACE FUNCTION fsync.require_access(p_project uuid, p_write boolean) RETURNS text
  LANGUAGE plpgsql STABLE
AS $$
DECLARE
  v_role text;
BEGIN
  IF p_project IS NULL THEN
    PERFORM fsync.invalid('project_uuid is required');
  END IF;
  v_role := fsync.access_role(p_project);
  IF v_role IS NULL OR NOT EXISTS (SELECT 1 FROM public.projects WHERE id = p_project) THEN
    RAISE EXCEPTION USING ERRCODE = 'PT404', MESSAGE = format('project %s not found', p_project);
  END IF;
  IF p_write AND v_role = 'container' THEN
    RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = 'container tokens cannot write';
  END IF;
  IF p_write AND v_role NOT IN ('owner', 'editor', 'service') THEN
    RAISE EXCEPTION USING ERRCODE = '42501',
      MESSAGE = format('role %s cannot write to project %s', v_role, p_project),
      HINT = 'owners and editors write; viewers read';
  END IF;
  RETURN v_role;
END
$$;

-- The helpers the write RPCs call are PL/pgSQL, not SQL functions: PL/pgSQL keeps each plan for
-- the session, while a SQL function called from PL/pgSQL is parsed and planned again on every call
-- (measured with pgbench on upsert_project_file: 1.47 -> 1.10 ms per call, the SQL helpers had
-- been 15% of PostgreSQL's time).

-- The user a write is attributed to: the caller, or the project owner for the service role.
CREATE OR REPLACE FUNCTION fsync.writer(p_project uuid) RETURNS uuid
  LANGUAGE plpgsql STABLE
AS $$
BEGIN
  IF fsync.access_role(p_project) = 'service' THEN
    RETURN (SELECT owner_id FROM public.projects WHERE id = p_project);
  END IF;
  RETURN auth.uid();
END
$$;

-- Takes the project's write lock: writers of one project commit one at a time, which makes seq
-- gapless and in commit order and compare-and-set linearizable.
CREATE OR REPLACE FUNCTION fsync.lock_project(p_project uuid) RETURNS bigint
  LANGUAGE plpgsql
AS $$
DECLARE
  v_seq bigint;
BEGIN
  SELECT seq INTO v_seq FROM public.projects WHERE id = p_project FOR UPDATE;
  RETURN v_seq;
END
$$;

CREATE OR REPLACE FUNCTION fsync.next_seq(p_project uuid) RETURNS bigint
  LANGUAGE plpgsql
AS $$
DECLARE
  v_seq bigint;
BEGIN
  UPDATE public.projects SET seq = seq + 1, updated_at = now() WHERE id = p_project RETURNING seq INTO v_seq;
  RETURN v_seq;
END
$$;

-- The head row of a path (the current version, possibly a tombstone), or all-NULL.
CREATE OR REPLACE FUNCTION fsync.head(p_project uuid, p_path text) RETURNS public.project_files
  LANGUAGE plpgsql STABLE
AS $$
DECLARE
  v_row public.project_files;
BEGIN
  SELECT * INTO v_row FROM public.project_files
  WHERE project_id = p_project AND file_path = p_path AND is_current_version;
  RETURN v_row;
END
$$;

-- Compare-and-set: NULL accepts any head, 0 accepts only a path with no live file (never
-- written, or deleted), n accepts only a head at version n (a tombstone's version counts).
CREATE OR REPLACE FUNCTION fsync.check_expected(p_path text, p_expected integer, p_head public.project_files)
  RETURNS void
  LANGUAGE plpgsql
AS $$
DECLARE
  v_current integer := coalesce(p_head.version, 0);
  v_deleted boolean := coalesce(p_head.is_deleted, false);
BEGIN
  IF p_expected IS NULL THEN
    RETURN;
  END IF;
  IF p_expected = 0 AND (p_head.id IS NULL OR v_deleted) THEN
    RETURN;
  END IF;
  IF p_expected > 0 AND p_head.id IS NOT NULL AND p_head.version = p_expected THEN
    RETURN;
  END IF;
  RAISE EXCEPTION USING ERRCODE = 'PT409',
    MESSAGE = format('version conflict on %s: expected version %s, head is version %s%s',
                     p_path, p_expected, v_current, CASE WHEN v_deleted THEN ' (deleted)' ELSE '' END),
    DETAIL = jsonb_build_object('file_path', p_path, 'expected_version', p_expected,
                                'current_version', v_current, 'deleted', v_deleted)::text,
    HINT = format('reload %s and retry with expected_version %s', p_path, v_current);
END
$$;

-- Writes a new version of a path (content, or a tombstone when p_deleted) and makes it the head.
CREATE OR REPLACE FUNCTION fsync.write_version(
  p_project uuid, p_path text, p_type text, p_content text, p_deleted boolean,
  p_head public.project_files, p_writer uuid, p_seq bigint)
  RETURNS public.project_files
  LANGUAGE plpgsql
AS $$
DECLARE
  v_row public.project_files;
BEGIN
  IF p_head.id IS NOT NULL THEN
    UPDATE public.project_files SET is_current_version = false WHERE id = p_head.id;
  END IF;
  INSERT INTO public.project_files (
    project_id, file_path, file_type, content, content_hash, version, parent_version_id,
    is_current_version, created_by, last_modified_by, is_deleted, seq, size_bytes)
  VALUES (
    p_project, p_path, coalesce(p_type, p_head.file_type),
    CASE WHEN p_deleted THEN NULL ELSE p_content END,
    CASE WHEN p_deleted THEN NULL ELSE fsync.content_hash(p_content) END,
    coalesce(p_head.version, 0) + 1, p_head.id, true,
    coalesce(p_head.created_by, p_writer), p_writer, p_deleted, p_seq,
    CASE WHEN p_deleted THEN NULL ELSE octet_length(p_content) END)
  RETURNING * INTO v_row;
  RETURN v_row;
END
$$;

CREATE OR REPLACE FUNCTION fsync.topic(p_project uuid) RETURNS text
  LANGUAGE sql IMMUTABLE AS $$ SELECT 'project:' || p_project::text $$;

------------------------------------------------------------------------------------------------
-- upsert_project_file (plan 1.1)
------------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION public.upsert_project_file(
  project_uuid uuid,
  p_file_path text,
  p_content text,
  p_file_type text,
  expected_version integer DEFAULT NULL)
  RETURNS jsonb
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
DECLARE
  v_head public.project_files;
  v_row public.project_files;
  v_hash text;
  v_inline boolean;
BEGIN
  PERFORM fsync.check_path(p_file_path, 'p_file_path');
  PERFORM fsync.check_file_type(p_file_type, 'p_file_type');
  PERFORM fsync.check_content(p_content, 'p_content');
  PERFORM fsync.check_expected_version(expected_version, 'expected_version');
  PERFORM fsync.require_access(project_uuid, true);

  PERFORM fsync.begin_write(project_uuid);
  v_head := fsync.head(project_uuid, p_file_path);
  v_hash := fsync.content_hash(p_content);

  -- The same content again is a no-op that succeeds whatever expected_version says, so a write
  -- retried after a lost response succeeds; it writes nothing and emits nothing.
  IF v_head.id IS NOT NULL AND NOT v_head.is_deleted
     AND v_head.content_hash = v_hash AND v_head.file_type = p_file_type THEN
    RETURN jsonb_build_object('file_path', p_file_path, 'version', v_head.version,
                              'content_hash', v_hash, 'seq', v_head.seq, 'noop', true);
  END IF;

  PERFORM fsync.check_expected(p_file_path, expected_version, v_head);
  v_row := fsync.write_version(project_uuid, p_file_path, p_file_type, p_content, false, v_head,
                               fsync.writer(project_uuid), fsync.next_seq(project_uuid));

  v_inline := octet_length(p_content) <= fsync.max_inline_event_bytes();
  PERFORM realtime.send(
    jsonb_build_object(
      'file_path', v_row.file_path, 'file_type', v_row.file_type,
      'content', CASE WHEN v_inline THEN v_row.content END,
      'content_omitted', NOT v_inline,
      'content_hash', v_row.content_hash, 'version', v_row.version, 'seq', v_row.seq,
      'timestamp', v_row.updated_at),
    'file:update', fsync.topic(project_uuid), true);

  RETURN jsonb_build_object('file_path', v_row.file_path, 'version', v_row.version,
                            'content_hash', v_row.content_hash, 'seq', v_row.seq, 'noop', false);
END
$$;

------------------------------------------------------------------------------------------------
-- delete_project_file (plan 1.2): a tombstone with a version bump.
------------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION public.delete_project_file(
  project_uuid uuid,
  p_file_path text,
  expected_version integer DEFAULT NULL)
  RETURNS jsonb
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
DECLARE
  v_head public.project_files;
  v_row public.project_files;
BEGIN
  PERFORM fsync.check_path(p_file_path, 'p_file_path');
  PERFORM fsync.check_expected_version(expected_version, 'expected_version');
  PERFORM fsync.require_access(project_uuid, true);

  PERFORM fsync.begin_write(project_uuid);
  v_head := fsync.head(project_uuid, p_file_path);
  IF v_head.id IS NULL THEN
    RAISE EXCEPTION USING ERRCODE = 'PT404',
      MESSAGE = format('file %s not found in project %s', p_file_path, project_uuid);
  END IF;
  -- Deleting a deleted file is a no-op, so a retried delete succeeds.
  IF v_head.is_deleted THEN
    RETURN jsonb_build_object('file_path', p_file_path, 'version', v_head.version,
                              'seq', v_head.seq, 'noop', true);
  END IF;

  PERFORM fsync.check_expected(p_file_path, expected_version, v_head);
  v_row := fsync.write_version(project_uuid, p_file_path, NULL, NULL, true, v_head,
                               fsync.writer(project_uuid), fsync.next_seq(project_uuid));

  PERFORM realtime.send(
    jsonb_build_object('file_path', v_row.file_path, 'version', v_row.version, 'seq', v_row.seq,
                       'timestamp', v_row.updated_at),
    'file:delete', fsync.topic(project_uuid), true);

  RETURN jsonb_build_object('file_path', v_row.file_path, 'version', v_row.version,
                            'seq', v_row.seq, 'noop', false);
END
$$;

------------------------------------------------------------------------------------------------
-- list_current_files (plan 1.3)
------------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION public.list_current_files(project_uuid uuid)
  RETURNS TABLE (file_path text, file_type text, content text, content_hash text, version integer,
                 updated_at timestamptz, seq bigint)
  LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = ''
AS $$
#variable_conflict use_column
BEGIN
  PERFORM fsync.require_access(project_uuid, false);
  RETURN QUERY
    SELECT f.file_path, f.file_type, f.content, f.content_hash, f.version, f.updated_at, f.seq
    FROM public.project_files f
    WHERE f.project_id = project_uuid AND f.is_current_version AND NOT f.is_deleted
    -- Byte order, whatever the database's locale: consumers get the same order everywhere.
    ORDER BY f.file_path COLLATE "C";
END
$$;

------------------------------------------------------------------------------------------------
-- bulk_upsert_project_files (plan 1.4, 3.1): all or nothing, one seq, one bulk:apply.
------------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION public.bulk_upsert_project_files(project_uuid uuid, files jsonb)
  RETURNS jsonb
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
-- Linear in the size of the call: entries stay in `files` (contents are read from there by
-- index, never copied into a growing plan), per-entry facts go into arrays assigned by
-- subscript, and duplicate paths are found in one sorted pass.
DECLARE
  v_count integer;
  v_index integer;
  v_entry jsonb;
  v_what text;
  v_key text;
  v_path text;
  v_type text;
  v_delete boolean;
  v_total bigint := 0;
  v_first_duplicate integer;
  v_paths text[] := '{}';
  v_types text[] := '{}';
  v_deletes boolean[] := '{}';
  v_expected integer[] := '{}';
  v_noops boolean[] := '{}';
  v_head public.project_files;
  v_row public.project_files;
  v_changed integer := 0;
  v_writer uuid;
  v_seq bigint;
  v_results jsonb[] := '{}';
  v_event_files jsonb[] := '{}';
  v_event_count integer := 0;
  v_event_bytes bigint := 0;
  v_timestamp timestamptz := now();
BEGIN
  -- 1. Validate every entry before touching anything.
  IF files IS NULL OR jsonb_typeof(files) <> 'array' THEN
    PERFORM fsync.invalid('files must be a JSON array of {file_path, file_type, content, expected_version?, delete?}');
  END IF;
  v_count := jsonb_array_length(files);
  IF v_count = 0 THEN
    PERFORM fsync.invalid('files must not be empty');
  END IF;
  IF v_count > fsync.max_bulk_files() THEN
    RAISE EXCEPTION USING ERRCODE = 'PT413',
      MESSAGE = format('files has %s entries, more than the limit of %s', v_count, fsync.max_bulk_files());
  END IF;
  -- The first entry whose path repeats an earlier entry's (0-based), if any.
  SELECT min(d.ord) - 1 INTO v_first_duplicate
  FROM (
    SELECT e.ord, row_number() OVER (PARTITION BY e.value ->> 'file_path' ORDER BY e.ord) AS nth
    FROM jsonb_array_elements(files) WITH ORDINALITY AS e(value, ord)
    WHERE jsonb_typeof(e.value) = 'object' AND jsonb_typeof(e.value -> 'file_path') = 'string'
  ) d
  WHERE d.nth > 1;

  FOR v_index IN 0 .. v_count - 1 LOOP
    v_entry := files -> v_index;
    v_what := format('files[%s]', v_index);
    IF jsonb_typeof(v_entry) <> 'object' THEN
      PERFORM fsync.invalid(v_what || ' must be an object');
    END IF;
    FOR v_key IN SELECT jsonb_object_keys(v_entry) LOOP
      IF v_key NOT IN ('file_path', 'file_type', 'content', 'expected_version', 'delete') THEN
        PERFORM fsync.invalid(format('%s has unknown key %s', v_what, quote_literal(v_key)));
      END IF;
    END LOOP;
    IF jsonb_typeof(v_entry -> 'file_path') IS DISTINCT FROM 'string' THEN
      PERFORM fsync.invalid(v_what || '.file_path must be a string');
    END IF;
    v_path := v_entry ->> 'file_path';
    PERFORM fsync.check_path(v_path, v_what || '.file_path');
    IF v_index = v_first_duplicate THEN
      PERFORM fsync.invalid(format('%s.file_path %s appears more than once in files', v_what, v_path));
    END IF;

    IF v_entry ? 'delete' AND jsonb_typeof(v_entry -> 'delete') NOT IN ('boolean', 'null') THEN
      PERFORM fsync.invalid(v_what || '.delete must be a boolean');
    END IF;
    v_delete := coalesce((v_entry ->> 'delete')::boolean, false);

    v_expected[v_index + 1] := NULL;
    IF v_entry ? 'expected_version' AND jsonb_typeof(v_entry -> 'expected_version') <> 'null' THEN
      IF jsonb_typeof(v_entry -> 'expected_version') <> 'number'
         OR (v_entry ->> 'expected_version') !~ '^[0-9]{1,9}$' THEN
        PERFORM fsync.invalid(v_what || '.expected_version must be null, 0 or a positive integer');
      END IF;
      v_expected[v_index + 1] := (v_entry ->> 'expected_version')::integer;
    END IF;

    v_type := NULL;
    IF NOT v_delete THEN
      IF jsonb_typeof(v_entry -> 'file_type') IS DISTINCT FROM 'string' THEN
        PERFORM fsync.invalid(v_what || '.file_type must be a string');
      END IF;
      v_type := v_entry ->> 'file_type';
      PERFORM fsync.check_file_type(v_type, v_what || '.file_type');
      IF jsonb_typeof(v_entry -> 'content') IS DISTINCT FROM 'string' THEN
        PERFORM fsync.invalid(v_what || '.content must be a string');
      END IF;
      PERFORM fsync.check_content(v_entry ->> 'content', v_what || '.content');
      v_total := v_total + octet_length(v_entry ->> 'content');
      IF v_total > fsync.max_bulk_bytes() THEN
        RAISE EXCEPTION USING ERRCODE = 'PT413',
          MESSAGE = format('files hold more than the bulk limit of %s bytes of content',
                           fsync.max_bulk_bytes());
      END IF;
    END IF;
    v_paths[v_index + 1] := v_path;
    v_types[v_index + 1] := v_type;
    v_deletes[v_index + 1] := v_delete;
  END LOOP;

  PERFORM fsync.require_access(project_uuid, true);
  PERFORM fsync.begin_write(project_uuid);

  -- 2. Compare-and-set every entry against its head; one conflict fails the whole bulk.
  FOR v_index IN 1 .. v_count LOOP
    v_head := fsync.head(project_uuid, v_paths[v_index]);
    IF v_deletes[v_index] THEN
      IF v_head.id IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'PT404',
          MESSAGE = format('files[%s]: file %s not found in project %s', v_index - 1, v_paths[v_index], project_uuid);
      END IF;
      v_noops[v_index] := v_head.is_deleted;
    ELSE
      v_noops[v_index] := coalesce(
        v_head.id IS NOT NULL AND NOT v_head.is_deleted
        AND v_head.content_hash = fsync.content_hash(files -> (v_index - 1) ->> 'content')
        AND v_head.file_type = v_types[v_index], false);
    END IF;
    IF NOT v_noops[v_index] THEN
      PERFORM fsync.check_expected(v_paths[v_index], v_expected[v_index], v_head);
      v_changed := v_changed + 1;
    END IF;
  END LOOP;

  -- 3. Write every change under one seq.
  IF v_changed > 0 THEN
    v_writer := fsync.writer(project_uuid);
    v_seq := fsync.next_seq(project_uuid);
  ELSE
    v_seq := fsync.lock_project(project_uuid);
  END IF;

  FOR v_index IN 1 .. v_count LOOP
    v_head := fsync.head(project_uuid, v_paths[v_index]);
    IF v_noops[v_index] THEN
      v_results[v_index] := jsonb_build_object(
        'file_path', v_head.file_path, 'version', v_head.version,
        'content_hash', v_head.content_hash, 'deleted', v_head.is_deleted, 'noop', true);
    ELSE
      v_row := fsync.write_version(project_uuid, v_paths[v_index], v_types[v_index],
                                   files -> (v_index - 1) ->> 'content', v_deletes[v_index], v_head,
                                   v_writer, v_seq);
      v_results[v_index] := jsonb_build_object(
        'file_path', v_row.file_path, 'version', v_row.version,
        'content_hash', v_row.content_hash, 'deleted', v_row.is_deleted, 'noop', false);
      v_event_count := v_event_count + 1;
      v_event_files[v_event_count] := jsonb_build_object(
        'file_path', v_row.file_path, 'version', v_row.version,
        'content_hash', v_row.content_hash, 'deleted', v_row.is_deleted);
      v_event_bytes := v_event_bytes + octet_length(v_row.file_path) + 120;
      v_timestamp := v_row.updated_at;
    END IF;
  END LOOP;

  IF v_changed > 0 THEN
    -- A long file list is left out of the event (Realtime drops large payloads); consumers fetch
    -- a bulk's files with list_changes_since(seq - 1) anyway.
    IF v_event_bytes > fsync.max_inline_event_bytes() THEN
      PERFORM realtime.send(
        jsonb_build_object('seq', v_seq, 'files', '[]'::jsonb, 'files_omitted', true, 'timestamp', v_timestamp),
        'bulk:apply', fsync.topic(project_uuid), true);
    ELSE
      PERFORM realtime.send(
        jsonb_build_object('seq', v_seq, 'files', to_jsonb(v_event_files), 'files_omitted', false,
                           'timestamp', v_timestamp),
        'bulk:apply', fsync.topic(project_uuid), true);
    END IF;
  END IF;

  RETURN jsonb_build_object('seq', v_seq, 'files', to_jsonb(v_results));
END
$$;

------------------------------------------------------------------------------------------------
-- list_changes_since (DESIGN §5): the latest row per path written after since_seq, up to the
-- project's seq, which is returned with them. The seq is read first: every write with a seq at
-- or below it has committed (writers hold the project lock until commit), so the changes read
-- after it are complete up to it.
------------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION public.list_changes_since(project_uuid uuid, since_seq bigint)
  RETURNS jsonb
  LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = ''
AS $$
DECLARE
  v_seq bigint;
  v_changes jsonb;
BEGIN
  PERFORM fsync.require_access(project_uuid, false);
  IF since_seq IS NULL OR since_seq < 0 THEN
    PERFORM fsync.invalid('since_seq must be a seq >= 0');
  END IF;
  SELECT seq INTO v_seq FROM public.projects WHERE id = project_uuid;
  IF since_seq > v_seq THEN
    RAISE EXCEPTION USING ERRCODE = '22023',
      MESSAGE = format('since_seq %s is ahead of the project seq %s', since_seq, v_seq),
      HINT = 'the consumer is ahead of the database: hydrate again from a fresh snapshot';
  END IF;

  SELECT coalesce(jsonb_agg(jsonb_build_object(
           'file_path', c.file_path, 'file_type', c.file_type, 'content', c.content,
           'content_hash', c.content_hash, 'version', c.version, 'deleted', c.is_deleted,
           'seq', c.seq) ORDER BY c.seq, c.file_path COLLATE "C"), '[]'::jsonb)
  INTO v_changes
  FROM (
    SELECT DISTINCT ON (f.file_path) f.*
    FROM public.project_files f
    WHERE f.project_id = project_uuid AND f.seq > since_seq AND f.seq <= v_seq
    ORDER BY f.file_path, f.version DESC
  ) c;

  RETURN jsonb_build_object('seq', v_seq, 'changes', v_changes);
END
$$;

------------------------------------------------------------------------------------------------
-- Projects, members and profiles: what a frontend (and the fixtures loader) needs to set up.
------------------------------------------------------------------------------------------------

-- Creates or updates a user profile: a user for themselves, the service role for anyone.
CREATE OR REPLACE FUNCTION public.ensure_user_profile(
  p_user_id uuid DEFAULT NULL, p_email text DEFAULT NULL, p_display_name text DEFAULT NULL)
  RETURNS jsonb
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
DECLARE
  v_id uuid;
  v_row public.user_profiles;
BEGIN
  IF auth.role() = 'service_role' THEN
    IF p_user_id IS NULL THEN
      PERFORM fsync.invalid('p_user_id is required with the service role');
    END IF;
    v_id := p_user_id;
  ELSIF auth.role() = 'authenticated' AND coalesce(auth.jwt() ->> 'scope', '') <> 'container'
        AND auth.uid() IS NOT NULL THEN
    IF p_user_id IS NOT NULL AND p_user_id <> auth.uid() THEN
      RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = 'a user can only create their own profile';
    END IF;
    -- Co-members see each other's email: a user cannot claim an address their token lacks.
    IF p_email IS NOT NULL AND p_email IS DISTINCT FROM auth.email() THEN
      RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = 'a user''s email comes from their token';
    END IF;
    v_id := auth.uid();
  ELSE
    RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = 'sign in to create a profile';
  END IF;

  INSERT INTO public.user_profiles (id, email, display_name)
  VALUES (v_id, coalesce(p_email, CASE WHEN v_id = auth.uid() THEN auth.email() END), p_display_name)
  ON CONFLICT (id) DO UPDATE
    SET email = coalesce(EXCLUDED.email, public.user_profiles.email),
        display_name = coalesce(EXCLUDED.display_name, public.user_profiles.display_name)
  RETURNING * INTO v_row;
  RETURN jsonb_build_object('id', v_row.id, 'email', v_row.email, 'display_name', v_row.display_name);
END
$$;

-- Creates a project owned by the caller (or, for the service role, by p_owner).
CREATE OR REPLACE FUNCTION public.create_project(p_name text, p_owner uuid DEFAULT NULL)
  RETURNS jsonb
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
DECLARE
  v_owner uuid;
  v_row public.projects;
BEGIN
  IF p_name IS NULL OR btrim(p_name) = '' OR char_length(p_name) > 200 THEN
    PERFORM fsync.invalid('p_name must be 1 to 200 characters');
  END IF;
  IF auth.role() = 'service_role' THEN
    IF p_owner IS NULL THEN
      PERFORM fsync.invalid('p_owner is required with the service role');
    END IF;
    v_owner := p_owner;
  ELSIF auth.role() = 'authenticated' AND coalesce(auth.jwt() ->> 'scope', '') <> 'container'
        AND auth.uid() IS NOT NULL THEN
    IF p_owner IS NOT NULL AND p_owner <> auth.uid() THEN
      RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = 'a user can only create projects they own';
    END IF;
    v_owner := auth.uid();
    INSERT INTO public.user_profiles (id, email) VALUES (v_owner, auth.email())
    ON CONFLICT (id) DO NOTHING;
  ELSE
    RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = 'sign in to create a project';
  END IF;
  IF NOT EXISTS (SELECT 1 FROM public.user_profiles WHERE id = v_owner) THEN
    RAISE EXCEPTION USING ERRCODE = 'PT404', MESSAGE = format('user %s not found', v_owner);
  END IF;

  INSERT INTO public.projects (name, owner_id) VALUES (p_name, v_owner) RETURNING * INTO v_row;
  RETURN jsonb_build_object('id', v_row.id, 'name', v_row.name, 'owner_id', v_row.owner_id,
                            'seq', v_row.seq);
END
$$;

-- Adds a member or changes their role (owner or service role only; the owner's row is fixed).
CREATE OR REPLACE FUNCTION public.add_project_member(project_uuid uuid, p_user_id uuid, p_role text)
  RETURNS jsonb
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
DECLARE
  v_role text;
BEGIN
  IF p_role IS NULL OR p_role NOT IN ('editor', 'viewer') THEN
    PERFORM fsync.invalid('p_role must be editor or viewer');
  END IF;
  v_role := fsync.require_access(project_uuid, false);
  IF v_role NOT IN ('owner', 'service') THEN
    RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = 'only the project owner manages members';
  END IF;
  -- Membership changes serialize with writes, which check access again under this lock.
  PERFORM fsync.lock_project(project_uuid);
  IF NOT EXISTS (SELECT 1 FROM public.user_profiles WHERE id = p_user_id) THEN
    RAISE EXCEPTION USING ERRCODE = 'PT404', MESSAGE = format('user %s not found', p_user_id);
  END IF;
  IF EXISTS (SELECT 1 FROM public.projects WHERE id = project_uuid AND owner_id = p_user_id) THEN
    PERFORM fsync.invalid('the owner''s role cannot change');
  END IF;
  INSERT INTO public.project_members (project_id, user_id, role)
  VALUES (project_uuid, p_user_id, p_role)
  ON CONFLICT (project_id, user_id) DO UPDATE SET role = EXCLUDED.role;
  RETURN jsonb_build_object('project_id', project_uuid, 'user_id', p_user_id, 'role', p_role);
END
$$;

CREATE OR REPLACE FUNCTION public.remove_project_member(project_uuid uuid, p_user_id uuid)
  RETURNS jsonb
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
DECLARE
  v_role text;
BEGIN
  v_role := fsync.require_access(project_uuid, false);
  IF v_role NOT IN ('owner', 'service') THEN
    RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = 'only the project owner manages members';
  END IF;
  PERFORM fsync.lock_project(project_uuid);
  IF EXISTS (SELECT 1 FROM public.projects WHERE id = project_uuid AND owner_id = p_user_id) THEN
    PERFORM fsync.invalid('the owner cannot be removed');
  END IF;
  DELETE FROM public.project_members WHERE project_id = project_uuid AND user_id = p_user_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION USING ERRCODE = 'PT404',
      MESSAGE = format('user %s is not a member of project %s', p_user_id, project_uuid);
  END IF;
  -- Their access ends everywhere: the sessions they started in the project stop (their
  -- container tokens with them; the instances running the agents stop those when they look).
  UPDATE fsync.preview_sessions
  SET status = 'stopped',
      view = view || jsonb_build_object('status', 'stopped', 'reason', fsync.removed_member_reason())
  WHERE project_id = project_uuid AND started_by = p_user_id::text
    AND status IN ('starting', 'hydrating', 'running');
  RETURN jsonb_build_object('project_id', project_uuid, 'user_id', p_user_id, 'removed', true);
END
$$;

-- Who a project's members work with: each member's role and display name, for its members and
-- the service role. Never an email: a profile's email is its owner's alone (user_profiles shows
-- each user their own row), so adding someone to a project, which needs no consent, reveals
-- nothing of them but the name they chose.
CREATE OR REPLACE FUNCTION public.list_project_members(project_uuid uuid)
  RETURNS TABLE (user_id uuid, role text, display_name text)
  LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = ''
AS $$
#variable_conflict use_column
BEGIN
  IF fsync.require_access(project_uuid, false) = 'container' THEN
    RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = 'container tokens cannot list members';
  END IF;
  RETURN QUERY
    SELECT m.user_id, m.role, p.display_name
    FROM public.project_members m LEFT JOIN public.user_profiles p ON p.id = m.user_id
    WHERE m.project_id = project_uuid
    ORDER BY m.user_id;
END
$$;

------------------------------------------------------------------------------------------------
-- Privileges: the RPCs are for signed-in users and the service role, never anon.
------------------------------------------------------------------------------------------------
REVOKE ALL ON FUNCTION
  public.upsert_project_file(uuid, text, text, text, integer),
  public.delete_project_file(uuid, text, integer),
  public.list_current_files(uuid),
  public.bulk_upsert_project_files(uuid, jsonb),
  public.list_changes_since(uuid, bigint),
  public.ensure_user_profile(uuid, text, text),
  public.create_project(text, uuid),
  public.add_project_member(uuid, uuid, text),
  public.remove_project_member(uuid, uuid),
  public.list_project_members(uuid)
  FROM PUBLIC, anon;
GRANT EXECUTE ON FUNCTION
  public.upsert_project_file(uuid, text, text, text, integer),
  public.delete_project_file(uuid, text, integer),
  public.list_current_files(uuid),
  public.bulk_upsert_project_files(uuid, jsonb),
  public.list_changes_since(uuid, bigint),
  public.ensure_user_profile(uuid, text, text),
  public.create_project(text, uuid),
  public.add_project_member(uuid, uuid, text),
  public.remove_project_member(uuid, uuid),
  public.list_project_members(uuid)
  TO authenticated, service_role;

-- The helpers run inside the RPCs as their owner; nobody calls them directly.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA fsync FROM PUBLIC;
GRANT EXECUTE ON FUNCTION fsync.access_role(uuid), fsync.can_read_topic(text), fsync.can_write_topic(text)
  TO authenticated, service_role;
