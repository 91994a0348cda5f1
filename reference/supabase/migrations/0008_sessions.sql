-- File System Sync v1: preview sessions in the database (hardening, durable sessions).
--
-- Each server instance writes through what it knows of the sessions it runs: the session view
-- (status, reason, timings, agent pid, snapshot), who started it and which instance watches its
-- agent. Any instance answers for any session from here, a session stopped through another
-- instance is stopped by its own when it next looks, and an instance that restarts fails the
-- live sessions it started before, with the reason. Ended sessions are pruned after a while.
-- A session's container token stops working once its session is stopped (fsync.session_stopped,
-- read by fsync.access_role), and removing a member stops the sessions they started in the
-- project (remove_project_member): their instances stop the agents when they next look. A failed
-- session keeps its token until `exp`: its agent may still be serving a preview (an instance that
-- restarted fails the sessions it no longer watches, not their containers).
-- Only the server's own connection reads and writes it: no API role has any grant.
--
-- Idempotent: safe to apply again.

CREATE TABLE IF NOT EXISTS fsync.preview_sessions (
  id uuid PRIMARY KEY,
  project_id uuid NOT NULL REFERENCES public.projects (id) ON DELETE CASCADE,
  started_by text NOT NULL,
  instance text NOT NULL,
  status text NOT NULL CHECK (status IN ('starting', 'hydrating', 'running', 'failed', 'stopped')),
  view jsonb NOT NULL,
  ended_at_s bigint
);

CREATE INDEX IF NOT EXISTS preview_sessions_live_by_starter
  ON fsync.preview_sessions (started_by) WHERE status IN ('starting', 'hydrating', 'running');
CREATE INDEX IF NOT EXISTS preview_sessions_live_by_instance
  ON fsync.preview_sessions (instance) WHERE status IN ('starting', 'hydrating', 'running');
CREATE INDEX IF NOT EXISTS preview_sessions_ended
  ON fsync.preview_sessions (ended_at_s) WHERE ended_at_s IS NOT NULL;

REVOKE ALL ON fsync.preview_sessions FROM PUBLIC, anon, authenticated, service_role;

-- Whether the session a container token names is stopped in the records. A session with no
-- record (a token minted outside the orchestrator, as tests do) is not.
CREATE OR REPLACE FUNCTION fsync.session_stopped(p_session text) RETURNS boolean
  LANGUAGE plpgsql STABLE SET search_path = ''
AS $$
BEGIN
  IF p_session IS NULL OR p_session !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
    RETURN false;
  END IF;
  RETURN EXISTS (SELECT 1 FROM fsync.preview_sessions
                 WHERE id = p_session::uuid AND status = 'stopped');
END
$$;

-- The reason a session stops when the member who started it is removed from the project.
CREATE OR REPLACE FUNCTION fsync.removed_member_reason() RETURNS text
  LANGUAGE sql IMMUTABLE
AS $$ SELECT 'the member who started it was removed from the project' $$;

-- Called inside fsync.access_role, as its owner; nobody calls it directly.
REVOKE ALL ON FUNCTION fsync.session_stopped(text), fsync.removed_member_reason() FROM PUBLIC;
