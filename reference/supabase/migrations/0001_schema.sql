-- fsync 0001: the data model (plan 0.1) and the legacy backfill (plan 0.1.1).
--
-- Portable: applies unchanged to a real Supabase project and, with the shim, to plain PostgreSQL.
-- It applies to an empty database and to one in the legacy shape (project_files with `path` and
-- `type` columns, one row per file, no versions), and applying it twice changes nothing.

CREATE SCHEMA IF NOT EXISTS fsync;
COMMENT ON SCHEMA fsync IS 'fsync private helpers: limits, validation and access checks used by RLS and the RPCs. Not exposed over the API.';

------------------------------------------------------------------------------------------------
-- Limits and fixed sets. The Rust side (fsync-protocol) mirrors each one; a test compares them.
------------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION fsync.max_path_bytes() RETURNS integer
  LANGUAGE sql IMMUTABLE AS $$ SELECT 1024 $$;
-- Largest content of one file, in bytes of UTF-8.
CREATE OR REPLACE FUNCTION fsync.max_content_bytes() RETURNS integer
  LANGUAGE sql IMMUTABLE AS $$ SELECT 5 * 1024 * 1024 $$;
-- Largest total content of one bulk call, in bytes.
CREATE OR REPLACE FUNCTION fsync.max_bulk_bytes() RETURNS integer
  LANGUAGE sql IMMUTABLE AS $$ SELECT 64 * 1024 * 1024 $$;
-- Most entries in one bulk call.
CREATE OR REPLACE FUNCTION fsync.max_bulk_files() RETURNS integer
  LANGUAGE sql IMMUTABLE AS $$ SELECT 10000 $$;
-- Content above this many bytes is left out of file:update events (content_omitted: true).
CREATE OR REPLACE FUNCTION fsync.max_inline_event_bytes() RETURNS integer
  LANGUAGE sql IMMUTABLE AS $$ SELECT 128 * 1024 $$;
CREATE OR REPLACE FUNCTION fsync.file_types() RETURNS text[]
  LANGUAGE sql IMMUTABLE AS $$
  SELECT ARRAY['typescript', 'javascript', 'json', 'markdown', 'sql', 'text', 'html', 'css',
               'scss', 'svg', 'yaml', 'toml', 'xml', 'shell', 'python', 'env', 'image', 'font',
               'binary']::text[]
$$;

-- The lowercase hex SHA-256 of the UTF-8 content: identical to fsync_protocol::content_hash.
CREATE OR REPLACE FUNCTION fsync.content_hash(p_content text) RETURNS text
  LANGUAGE sql IMMUTABLE STRICT AS $$ SELECT encode(sha256(convert_to(p_content, 'UTF8')), 'hex') $$;

-- What is wrong with a file path, or NULL when it is valid. Same rules, order and wording as
-- fsync_protocol::path::check_path.
CREATE OR REPLACE FUNCTION fsync.path_problem(p text) RETURNS text
  LANGUAGE plpgsql IMMUTABLE
AS $$
DECLARE
  seg text;
BEGIN
  IF p IS NULL OR p = '' THEN
    RETURN 'is empty';
  END IF;
  IF octet_length(p) > fsync.max_path_bytes() THEN
    RETURN 'is longer than ' || fsync.max_path_bytes() || ' bytes';
  END IF;
  IF p ~ '[\x01-\x1f\x7f-\x9f]' THEN
    RETURN 'contains a control character';
  END IF;
  IF strpos(p, '\') > 0 THEN
    RETURN 'contains a backslash';
  END IF;
  IF left(p, 1) = '/' THEN
    RETURN 'is absolute (starts with /)';
  END IF;
  FOREACH seg IN ARRAY string_to_array(p, '/') LOOP
    IF seg = '' THEN
      RETURN 'has an empty segment';
    END IF;
    IF seg = '.' OR seg = '..' THEN
      RETURN 'has a "." or ".." segment';
    END IF;
  END LOOP;
  RETURN NULL;
END
$$;

-- The file type a legacy row gets when its `type` is missing or outside the fixed set.
CREATE OR REPLACE FUNCTION fsync.infer_file_type(p_path text) RETURNS text
  LANGUAGE sql IMMUTABLE
AS $$
  SELECT CASE lower(substring(p_path FROM '\.([^./]+)$'))
    WHEN 'ts' THEN 'typescript' WHEN 'tsx' THEN 'typescript' WHEN 'mts' THEN 'typescript'
    WHEN 'js' THEN 'javascript' WHEN 'jsx' THEN 'javascript' WHEN 'mjs' THEN 'javascript'
    WHEN 'cjs' THEN 'javascript'
    WHEN 'json' THEN 'json' WHEN 'md' THEN 'markdown' WHEN 'sql' THEN 'sql'
    WHEN 'html' THEN 'html' WHEN 'htm' THEN 'html' WHEN 'css' THEN 'css' WHEN 'scss' THEN 'scss'
    WHEN 'svg' THEN 'svg' WHEN 'yaml' THEN 'yaml' WHEN 'yml' THEN 'yaml' WHEN 'toml' THEN 'toml'
    WHEN 'xml' THEN 'xml' WHEN 'sh' THEN 'shell' WHEN 'py' THEN 'python' WHEN 'env' THEN 'env'
    ELSE 'text'
  END
$$;

------------------------------------------------------------------------------------------------
-- Tables.
------------------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS public.user_profiles (
  id uuid PRIMARY KEY,
  email text,
  display_name text,
  created_at timestamptz DEFAULT now()
);
ALTER TABLE public.user_profiles ADD COLUMN IF NOT EXISTS email text;
ALTER TABLE public.user_profiles ADD COLUMN IF NOT EXISTS display_name text;
ALTER TABLE public.user_profiles ADD COLUMN IF NOT EXISTS created_at timestamptz DEFAULT now();

CREATE TABLE IF NOT EXISTS public.projects (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  name text NOT NULL,
  owner_id uuid NOT NULL REFERENCES public.user_profiles (id) ON DELETE CASCADE,
  seq bigint NOT NULL DEFAULT 0,
  created_at timestamptz DEFAULT now(),
  updated_at timestamptz DEFAULT now()
);
-- The project change sequence (DESIGN §5): bumped by exactly 1 per write RPC.
ALTER TABLE public.projects ADD COLUMN IF NOT EXISTS seq bigint NOT NULL DEFAULT 0;
ALTER TABLE public.projects ADD COLUMN IF NOT EXISTS created_at timestamptz DEFAULT now();
ALTER TABLE public.projects ADD COLUMN IF NOT EXISTS updated_at timestamptz DEFAULT now();

CREATE TABLE IF NOT EXISTS public.project_members (
  project_id uuid NOT NULL REFERENCES public.projects (id) ON DELETE CASCADE,
  user_id uuid NOT NULL REFERENCES public.user_profiles (id) ON DELETE CASCADE,
  role text NOT NULL CHECK (role IN ('owner', 'editor', 'viewer')),
  created_at timestamptz DEFAULT now(),
  PRIMARY KEY (project_id, user_id)
);
CREATE INDEX IF NOT EXISTS project_members_user_id_idx ON public.project_members (user_id);

CREATE TABLE IF NOT EXISTS public.project_files (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  project_id uuid NOT NULL REFERENCES public.projects (id) ON DELETE CASCADE,
  file_path text NOT NULL,
  file_type text NOT NULL,
  content text,
  content_hash text,
  version integer NOT NULL DEFAULT 1,
  parent_version_id uuid REFERENCES public.project_files (id) ON DELETE SET NULL,
  is_current_version boolean NOT NULL DEFAULT true,
  created_by uuid NOT NULL REFERENCES public.user_profiles (id) ON DELETE CASCADE,
  last_modified_by uuid REFERENCES public.user_profiles (id) ON DELETE SET NULL,
  created_at timestamptz DEFAULT now(),
  updated_at timestamptz DEFAULT now(),
  is_deleted boolean NOT NULL DEFAULT false,
  seq bigint NOT NULL,
  size_bytes bigint,
  storage_key text,
  CONSTRAINT project_files_project_id_file_path_version_key UNIQUE (project_id, file_path, version)
);

-- Legacy shape: rename path/type to file_path/file_type and drop the one-row-per-path unique
-- constraint, which versioned rows would violate.
DO $$
DECLARE
  c record;
BEGIN
  IF EXISTS (SELECT 1 FROM information_schema.columns
             WHERE table_schema = 'public' AND table_name = 'project_files' AND column_name = 'path')
     AND NOT EXISTS (SELECT 1 FROM information_schema.columns
             WHERE table_schema = 'public' AND table_name = 'project_files' AND column_name = 'file_path') THEN
    ALTER TABLE public.project_files RENAME COLUMN path TO file_path;
  END IF;
  IF EXISTS (SELECT 1 FROM information_schema.columns
             WHERE table_schema = 'public' AND table_name = 'project_files' AND column_name = 'type')
     AND NOT EXISTS (SELECT 1 FROM information_schema.columns
             WHERE table_schema = 'public' AND table_name = 'project_files' AND column_name = 'file_type') THEN
    ALTER TABLE public.project_files RENAME COLUMN type TO file_type;
  END IF;
  FOR c IN
    SELECT con.conname
    FROM pg_constraint con
    WHERE con.conrelid = 'public.project_files'::regclass
      AND con.contype = 'u'
      AND (SELECT array_agg(a.attname::text ORDER BY a.attname)
           FROM pg_attribute a
           WHERE a.attrelid = con.conrelid AND a.attnum = ANY (con.conkey))
          = ARRAY['file_path', 'project_id']
  LOOP
    EXECUTE format('ALTER TABLE public.project_files DROP CONSTRAINT %I', c.conname);
  END LOOP;
  -- The same rule kept as a bare unique index.
  FOR c IN
    SELECT i.indexrelid::regclass::text AS name
    FROM pg_index i
    WHERE i.indrelid = 'public.project_files'::regclass
      AND i.indisunique AND NOT i.indisprimary AND i.indpred IS NULL
      AND NOT EXISTS (SELECT 1 FROM pg_constraint con WHERE con.conindid = i.indexrelid)
      AND (SELECT array_agg(a.attname::text ORDER BY a.attname)
           FROM pg_attribute a
           WHERE a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey))
          = ARRAY['file_path', 'project_id']
  LOOP
    EXECUTE format('DROP INDEX %s', c.name);
  END LOOP;
END
$$;

ALTER TABLE public.project_files ADD COLUMN IF NOT EXISTS file_type text;
ALTER TABLE public.project_files ADD COLUMN IF NOT EXISTS content text;
ALTER TABLE public.project_files ADD COLUMN IF NOT EXISTS content_hash text;
ALTER TABLE public.project_files ADD COLUMN IF NOT EXISTS version integer NOT NULL DEFAULT 1;
ALTER TABLE public.project_files ADD COLUMN IF NOT EXISTS parent_version_id uuid;
ALTER TABLE public.project_files ADD COLUMN IF NOT EXISTS is_current_version boolean NOT NULL DEFAULT true;
ALTER TABLE public.project_files ADD COLUMN IF NOT EXISTS created_by uuid;
ALTER TABLE public.project_files ADD COLUMN IF NOT EXISTS last_modified_by uuid;
ALTER TABLE public.project_files ADD COLUMN IF NOT EXISTS created_at timestamptz DEFAULT now();
ALTER TABLE public.project_files ADD COLUMN IF NOT EXISTS updated_at timestamptz DEFAULT now();
ALTER TABLE public.project_files ADD COLUMN IF NOT EXISTS is_deleted boolean NOT NULL DEFAULT false;
ALTER TABLE public.project_files ADD COLUMN IF NOT EXISTS seq bigint;
ALTER TABLE public.project_files ADD COLUMN IF NOT EXISTS size_bytes bigint;
ALTER TABLE public.project_files ADD COLUMN IF NOT EXISTS storage_key text;

-- Backfill (plan 0.1.1). A row without a seq is a legacy row: give it a type from the fixed set,
-- its hash and size, its project owner as author, and a seq; where the legacy table held several
-- rows for one path, they become versions 1..n in time order and the newest is the head.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM public.project_files WHERE seq IS NULL) THEN
    RETURN;
  END IF;

  UPDATE public.project_files f
  SET file_type = fsync.infer_file_type(f.file_path)
  WHERE f.seq IS NULL AND (f.file_type IS NULL OR NOT f.file_type = ANY (fsync.file_types()));

  UPDATE public.project_files f
  SET content_hash = fsync.content_hash(f.content),
      size_bytes = octet_length(f.content)
  WHERE f.seq IS NULL AND f.content IS NOT NULL;

  UPDATE public.project_files f
  SET created_by = p.owner_id
  FROM public.projects p
  WHERE f.seq IS NULL AND f.created_by IS NULL AND p.id = f.project_id;

  WITH ordered AS (
    SELECT f.id,
           row_number() OVER (PARTITION BY f.project_id, f.file_path
                              ORDER BY f.updated_at, f.created_at, f.id) AS version,
           count(*) OVER (PARTITION BY f.project_id, f.file_path) AS versions,
           p.seq + row_number() OVER (PARTITION BY f.project_id
                                      ORDER BY f.updated_at, f.created_at, f.file_path, f.id) AS seq
    FROM public.project_files f
    JOIN public.projects p ON p.id = f.project_id
    WHERE f.seq IS NULL
  )
  UPDATE public.project_files f
  SET version = o.version,
      is_current_version = (o.version = o.versions),
      seq = o.seq,
      last_modified_by = coalesce(f.last_modified_by, f.created_by)
  FROM ordered o
  WHERE f.id = o.id;

  UPDATE public.projects p
  SET seq = m.max_seq
  FROM (SELECT project_id, max(seq) AS max_seq FROM public.project_files GROUP BY project_id) m
  WHERE m.project_id = p.id AND p.seq < m.max_seq;
END
$$;

ALTER TABLE public.project_files ALTER COLUMN file_type SET NOT NULL;
ALTER TABLE public.project_files ALTER COLUMN created_by SET NOT NULL;
ALTER TABLE public.project_files ALTER COLUMN seq SET NOT NULL;

-- Constraints that a legacy table lacks, added by name so that a second run finds them.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'public.project_files'::regclass
                 AND conname = 'project_files_project_id_file_path_version_key') THEN
    ALTER TABLE public.project_files
      ADD CONSTRAINT project_files_project_id_file_path_version_key UNIQUE (project_id, file_path, version);
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'public.project_files'::regclass
                 AND conname = 'project_files_parent_version_id_fkey') THEN
    ALTER TABLE public.project_files ADD CONSTRAINT project_files_parent_version_id_fkey
      FOREIGN KEY (parent_version_id) REFERENCES public.project_files (id) ON DELETE SET NULL;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'public.project_files'::regclass
                 AND conname = 'project_files_created_by_fkey') THEN
    ALTER TABLE public.project_files ADD CONSTRAINT project_files_created_by_fkey
      FOREIGN KEY (created_by) REFERENCES public.user_profiles (id) ON DELETE CASCADE;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'public.project_files'::regclass
                 AND conname = 'project_files_last_modified_by_fkey') THEN
    ALTER TABLE public.project_files ADD CONSTRAINT project_files_last_modified_by_fkey
      FOREIGN KEY (last_modified_by) REFERENCES public.user_profiles (id) ON DELETE SET NULL;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'public.project_files'::regclass
                 AND conname = 'project_files_version_positive') THEN
    ALTER TABLE public.project_files ADD CONSTRAINT project_files_version_positive CHECK (version >= 1);
  END IF;
END
$$;

-- The plan's indexes, one head per path, and the change-log index behind list_changes_since.
CREATE INDEX IF NOT EXISTS project_files_project_id_idx ON public.project_files (project_id);
CREATE INDEX IF NOT EXISTS project_files_project_id_file_path_idx ON public.project_files (project_id, file_path);
CREATE INDEX IF NOT EXISTS project_files_project_id_is_current_idx ON public.project_files (project_id, is_current_version);
CREATE INDEX IF NOT EXISTS project_files_project_id_seq_idx ON public.project_files (project_id, seq);
CREATE UNIQUE INDEX IF NOT EXISTS project_files_one_head_idx
  ON public.project_files (project_id, file_path) WHERE is_current_version;

-- Every project's owner is a member with role owner, from the moment the project exists.
CREATE OR REPLACE FUNCTION fsync.add_owner_membership() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
BEGIN
  INSERT INTO public.project_members (project_id, user_id, role)
  VALUES (NEW.id, NEW.owner_id, 'owner')
  ON CONFLICT (project_id, user_id) DO UPDATE SET role = 'owner';
  RETURN NEW;
END
$$;
DROP TRIGGER IF EXISTS projects_add_owner_membership ON public.projects;
CREATE TRIGGER projects_add_owner_membership
  AFTER INSERT ON public.projects
  FOR EACH ROW EXECUTE FUNCTION fsync.add_owner_membership();

INSERT INTO public.project_members (project_id, user_id, role)
SELECT p.id, p.owner_id, 'owner' FROM public.projects p
ON CONFLICT (project_id, user_id) DO NOTHING;

------------------------------------------------------------------------------------------------
-- Views. security_invoker makes the querying role's RLS apply through the view.
------------------------------------------------------------------------------------------------
CREATE OR REPLACE VIEW public.project_files_current WITH (security_invoker = true) AS
  SELECT * FROM public.project_files WHERE is_current_version AND NOT is_deleted;

-- The plan's temporary compatibility view for readers of the old column names.
CREATE OR REPLACE VIEW public.legacy_project_files WITH (security_invoker = true) AS
  SELECT id, project_id, file_path AS path, file_type AS type, content, created_at, updated_at
  FROM public.project_files_current;
