-- File System Sync v1: a session's life (issue 21).
--
-- 1. A stop is known at once. When a live session's record ends (stopped, failed) or goes (its
--    project was deleted), the trigger notifies `fsync_session_ended` with `<session id>:<how>`
--    (`stopped`, `failed` or `deleted`). Every server instance LISTENs on that channel on the
--    connection that carries Realtime's notifications, so it learns of the end in commit order
--    with the broadcasts: an event committed after a stop is never delivered to that session's
--    agent, and the instance running the agent stops it at once, whichever path ended it (DELETE
--    through another instance, a member's removal, the project's deletion).
-- 2. `behind`: a live session whose agent stopped following the project (it stopped reporting,
--    or its realtime feed is down). It is live: its container token works and is refreshed, and
--    it reads `running` again once the agent reports that it follows.
-- 3. A member may leave a project: `remove_project_member` with their own id. The owner cannot
--    leave their own project.
--
-- Idempotent: safe to apply again.

ALTER TABLE fsync.preview_sessions DROP CONSTRAINT IF EXISTS preview_sessions_status_check;
ALTER TABLE fsync.preview_sessions ADD CONSTRAINT preview_sessions_status_check
  CHECK (status IN ('starting', 'hydrating', 'running', 'behind', 'failed', 'stopped'));

DROP INDEX IF EXISTS fsync.preview_sessions_live_by_starter;
CREATE INDEX preview_sessions_live_by_starter
  ON fsync.preview_sessions (started_by) WHERE status IN ('starting', 'hydrating', 'running', 'behind');
DROP INDEX IF EXISTS fsync.preview_sessions_live_by_instance;
CREATE INDEX preview_sessions_live_by_instance
  ON fsync.preview_sessions (instance) WHERE status IN ('starting', 'hydrating', 'running', 'behind');

-- The channel a session's end is notified on (the server LISTENs on it).
CREATE OR REPLACE FUNCTION fsync.session_ended_channel() RETURNS text
  LANGUAGE sql IMMUTABLE
AS $$ SELECT 'fsync_session_ended' $$;

-- As its owner: the row's change may come from any role (a project deleted by the service role
-- cascades here).
CREATE OR REPLACE FUNCTION fsync.notify_session_ended() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
BEGIN
  IF OLD.status NOT IN ('starting', 'hydrating', 'running', 'behind') THEN
    RETURN NULL;
  END IF;
  IF TG_OP = 'DELETE' THEN
    PERFORM pg_notify(fsync.session_ended_channel(), OLD.id::text || ':deleted');
  ELSIF NEW.status IN ('failed', 'stopped') THEN
    PERFORM pg_notify(fsync.session_ended_channel(), NEW.id::text || ':' || NEW.status);
  END IF;
  RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS session_ended ON fsync.preview_sessions;
CREATE TRIGGER session_ended
  AFTER UPDATE OF status OR DELETE ON fsync.preview_sessions
  FOR EACH ROW EXECUTE FUNCTION fsync.notify_session_ended();

-- The owner removes members; any other member may remove themselves (leave). Either way the
-- sessions the removed member started in the project stop, and every instance hears of it.
CREATE OR REPLACE FUNCTION public.remove_project_member(project_uuid uuid, p_user_id uuid)
  RETURNS jsonb
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
DECLARE
  v_role text;
  v_self boolean := false;
BEGIN
  v_role := fsync.require_access(project_uuid, false);
  IF v_role IN ('owner', 'editor', 'viewer') AND p_user_id IS NOT NULL THEN
    v_self := p_user_id = auth.uid();
  END IF;
  IF v_role NOT IN ('owner', 'service') AND NOT v_self THEN
    RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = 'only the project owner manages members',
      HINT = 'a member may remove themselves: remove_project_member with their own id leaves the project';
  END IF;
  PERFORM fsync.lock_project(project_uuid);
  IF EXISTS (SELECT 1 FROM public.projects WHERE id = project_uuid AND owner_id = p_user_id) THEN
    IF v_self THEN
      PERFORM fsync.invalid('the owner cannot leave their own project');
    END IF;
    PERFORM fsync.invalid('the owner cannot be removed');
  END IF;
  DELETE FROM public.project_members WHERE project_id = project_uuid AND user_id = p_user_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION USING ERRCODE = 'PT404',
      MESSAGE = format('user %s is not a member of project %s', p_user_id, project_uuid);
  END IF;
  -- Their access ends everywhere: the sessions they started in the project stop, their container
  -- tokens with them, and the instances running the agents hear of it (the trigger above).
  UPDATE fsync.preview_sessions
  SET status = 'stopped',
      view = view || jsonb_build_object('status', 'stopped', 'reason', fsync.removed_member_reason())
  WHERE project_id = project_uuid AND started_by = p_user_id::text
    AND status IN ('starting', 'hydrating', 'running', 'behind');
  RETURN jsonb_build_object('project_id', project_uuid, 'user_id', p_user_id, 'removed', true);
END
$$;

REVOKE ALL ON FUNCTION fsync.session_ended_channel(), fsync.notify_session_ended() FROM PUBLIC;
REVOKE ALL ON FUNCTION public.remove_project_member(uuid, uuid) FROM PUBLIC, anon;
GRANT EXECUTE ON FUNCTION public.remove_project_member(uuid, uuid) TO authenticated, service_role;
