-- fsync 0002: who may see and change what (plan 0.2, DESIGN §4 and §8).
--
-- One function decides access for RLS policies, the RPCs and Realtime authorization alike:
-- fsync.access_role(project). Owners and editors write, every member reads, a container token
-- reads its one project, nobody else sees anything. Writes go only through the SECURITY DEFINER
-- RPCs (0003), which check access themselves and stamp the author, so the API roles get SELECT
-- and nothing more on the tables.

-- The caller's standing in a project: 'owner' | 'editor' | 'viewer' (membership), 'container'
-- (a container token scoped to this project), 'service' (the service role), or NULL (nothing).
CREATE OR REPLACE FUNCTION fsync.access_role(p_project uuid) RETURNS text
  LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = ''
AS $$
DECLARE
  v_claims jsonb := coalesce(auth.jwt(), '{}'::jsonb);
  v_sub text := v_claims ->> 'sub';
  v_role text;
BEGIN
  IF p_project IS NULL THEN
    RETURN NULL;
  END IF;
  IF v_claims ->> 'role' = 'service_role' THEN
    RETURN 'service';
  END IF;
  IF v_claims ->> 'scope' = 'container' THEN
    -- A container token works for its one project, and only until its session is stopped: a
    -- stop in the records (0008) ends its token at once, not at `exp`.
    IF v_claims ->> 'project_id' = p_project::text AND NOT fsync.session_stopped(v_claims ->> 'session_id') THEN
      RETURN 'container';
    END IF;
    RETURN NULL;
  END IF;
  IF v_claims ->> 'role' IS DISTINCT FROM 'authenticated'
     OR v_sub IS NULL
     OR v_sub !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
    RETURN NULL;
  END IF;
  SELECT m.role INTO v_role
  FROM public.project_members m
  WHERE m.project_id = p_project AND m.user_id = v_sub::uuid;
  RETURN v_role;
END
$$;

-- Realtime topics. `project:<uuid>` carries the server's events only; clients' own broadcasts
-- (plan 3.3) go to `project:<uuid>:client`, so that no client can ever forge a server event
-- (Supabase Realtime checks write permission per channel, not per event name).

-- The project a topic `project:<uuid>` or `project:<uuid>:client` belongs to, or NULL.
CREATE OR REPLACE FUNCTION fsync.topic_project(p_topic text) RETURNS uuid
  LANGUAGE sql IMMUTABLE
AS $$
  SELECT CASE WHEN p_topic ~* '^project:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(:client)?$'
              THEN substr(p_topic, 9, 36)::uuid END
$$;

-- Whether the caller may receive broadcasts on a topic: the server's topic is readable by
-- whoever may read the project (members, its container token); the client topic by members.
CREATE OR REPLACE FUNCTION fsync.can_read_topic(p_topic text) RETURNS boolean
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ''
AS $$
  SELECT CASE WHEN p_topic LIKE '%:client'
              THEN coalesce(fsync.access_role(fsync.topic_project(p_topic)) IN ('owner', 'editor', 'viewer', 'service'), false)
              ELSE fsync.access_role(fsync.topic_project(p_topic)) IS NOT NULL END
$$;

-- Whether the caller may send broadcasts on a topic: owners and editors, on the client topic.
CREATE OR REPLACE FUNCTION fsync.can_write_topic(p_topic text) RETURNS boolean
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ''
AS $$
  SELECT p_topic LIKE '%:client'
     AND coalesce(fsync.access_role(fsync.topic_project(p_topic)) IN ('owner', 'editor', 'service'), false)
$$;

REVOKE ALL ON FUNCTION fsync.access_role(uuid), fsync.can_read_topic(text), fsync.can_write_topic(text)
  FROM PUBLIC;
GRANT USAGE ON SCHEMA fsync TO authenticated, service_role;
GRANT EXECUTE ON FUNCTION fsync.access_role(uuid), fsync.can_read_topic(text), fsync.can_write_topic(text)
  TO authenticated, service_role;

------------------------------------------------------------------------------------------------
-- Table privileges: read-only for the API roles (Supabase's default grants are wider).
------------------------------------------------------------------------------------------------
-- Revoke from every role first so that each run ends with the same ACL, in the same order.
REVOKE ALL ON public.user_profiles, public.projects, public.project_members, public.project_files,
  public.project_files_current, public.legacy_project_files FROM anon, authenticated, service_role;
GRANT SELECT ON public.user_profiles, public.projects, public.project_members, public.project_files,
  public.project_files_current, public.legacy_project_files TO authenticated;
GRANT ALL ON public.user_profiles, public.projects, public.project_members, public.project_files,
  public.project_files_current, public.legacy_project_files TO service_role;

------------------------------------------------------------------------------------------------
-- Row level security.
------------------------------------------------------------------------------------------------
ALTER TABLE public.user_profiles ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.projects ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.project_members ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.project_files ENABLE ROW LEVEL SECURITY;

-- A profile (its email above all) is its user's own: membership needs no consent, so co-members
-- learn only each other's display names, through public.list_project_members.
DROP POLICY IF EXISTS "profiles: self and co-members read" ON public.user_profiles;
DROP FUNCTION IF EXISTS fsync.shares_project_with(uuid); -- what that policy read
DROP POLICY IF EXISTS "profiles: self read" ON public.user_profiles;
CREATE POLICY "profiles: self read" ON public.user_profiles
  FOR SELECT TO authenticated
  USING (id = (SELECT auth.uid()));

DROP POLICY IF EXISTS "projects: members read" ON public.projects;
CREATE POLICY "projects: members read" ON public.projects
  FOR SELECT TO authenticated
  USING (fsync.access_role(id) IN ('owner', 'editor', 'viewer'));

DROP POLICY IF EXISTS "project_members: members read" ON public.project_members;
CREATE POLICY "project_members: members read" ON public.project_members
  FOR SELECT TO authenticated
  USING (fsync.access_role(project_id) IN ('owner', 'editor', 'viewer'));

-- Members read every version. A container token reads nothing directly: it has the two read
-- RPCs (DESIGN §8), which check access themselves.
DROP POLICY IF EXISTS "project_files: members and container read" ON public.project_files;
DROP POLICY IF EXISTS "project_files: members read" ON public.project_files;
CREATE POLICY "project_files: members read" ON public.project_files
  FOR SELECT TO authenticated
  USING (fsync.access_role(project_id) IN ('owner', 'editor', 'viewer'));

-- A database that had policies of its own on these tables (the legacy shape often allows every
-- signed-in user) keeps none of them: permissive policies add up, and any one would widen
-- access past the ones above.
DO $$
DECLARE
  p record;
BEGIN
  FOR p IN
    SELECT schemaname, tablename, policyname FROM pg_policies
    WHERE schemaname = 'public'
      AND tablename IN ('user_profiles', 'projects', 'project_members', 'project_files')
      AND policyname NOT IN ('profiles: self read', 'projects: members read',
                             'project_members: members read', 'project_files: members read')
  LOOP
    EXECUTE format('DROP POLICY %I ON %I.%I', p.policyname, p.schemaname, p.tablename);
  END LOOP;
END
$$;
