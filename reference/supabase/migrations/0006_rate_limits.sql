-- File System Sync v1: the write rate limit (hardening, plan 4.x).
--
-- Each caller's writes to one project spend tokens from a bucket of their own: `burst` tokens at
-- most, refilled at `per_second`. Every write call (`upsert_project_file`, `delete_project_file`,
-- `bulk_upsert_project_files`, `upsert_project_binary`, a table write on `legacy_project_files`
-- whatever its rows) takes one token before the project's lock; with none left it fails with PT429 (HTTP 429) and says when to retry, in `details` as
-- `{"retry_after_ms": n}` and in `hint`. The service role is exempt. A refused call rolls back
-- with its transaction, so throttled calls do not push the bucket further into debt.
--
-- The limit is data: `UPDATE fsync.rate_limits SET burst = ..., per_second = ... WHERE name =
-- 'writes'` changes it at once; deleting the row turns it off (a load test measuring capacity
-- does, as it lifts every per-user cap).
--
-- Idempotent: safe to apply again.

CREATE TABLE IF NOT EXISTS fsync.rate_limits (
  name text PRIMARY KEY,
  burst double precision NOT NULL CHECK (burst >= 1),
  per_second double precision NOT NULL CHECK (per_second > 0)
);

-- 200 writes at once, then 50 a second, per caller per project: far above a person typing with
-- autosave (generation writes many files in one bulk call), far below what one caller could
-- otherwise take from every other caller of the database.
INSERT INTO fsync.rate_limits (name, burst, per_second) VALUES ('writes', 200, 50)
ON CONFLICT (name) DO NOTHING;

CREATE TABLE IF NOT EXISTS fsync.write_buckets (
  project_id uuid NOT NULL REFERENCES public.projects (id) ON DELETE CASCADE,
  user_id uuid NOT NULL,
  tokens double precision NOT NULL,
  refilled_at timestamptz NOT NULL,
  PRIMARY KEY (project_id, user_id)
);

-- Only the definer's RPCs touch these; callers never see them.
REVOKE ALL ON fsync.rate_limits, fsync.write_buckets FROM PUBLIC, anon, authenticated;

-- Takes one of the caller's write tokens for the project, or raises PT429. Called by the write
-- RPCs once the caller's access is checked and before `fsync.lock_project`: a caller out of
-- tokens is refused without waiting behind the project's other writers. The bucket row's upsert
-- is atomic, and holds that row until the call commits, so one caller's writes to a project
-- spend their tokens one at a time; every write takes the bucket row before the project lock.
CREATE OR REPLACE FUNCTION fsync.take_write_token(p_project uuid) RETURNS void
  LANGUAGE plpgsql
AS $$
DECLARE
  v_user uuid := auth.uid();
  v_burst double precision;
  v_rate double precision;
  v_tokens double precision;
  v_wait_ms bigint;
BEGIN
  IF v_user IS NULL OR fsync.access_role(p_project) = 'service' THEN
    RETURN;
  END IF;
  -- One token per call: a table write of many rows (0007) writes each through the RPCs in one
  -- transaction, as a bulk writes many files, and spends one token, as a bulk does.
  IF current_setting('fsync.write_token_taken', true) = p_project::text THEN
    RETURN;
  END IF;
  PERFORM set_config('fsync.write_token_taken', p_project::text, true);
  SELECT burst, per_second INTO v_burst, v_rate FROM fsync.rate_limits WHERE name = 'writes';
  IF NOT FOUND THEN
    RETURN;
  END IF;
  INSERT INTO fsync.write_buckets AS b (project_id, user_id, tokens, refilled_at)
  VALUES (p_project, v_user, v_burst - 1, now())
  ON CONFLICT (project_id, user_id) DO UPDATE
    SET tokens = least(v_burst, b.tokens + greatest(0, extract(epoch FROM now() - b.refilled_at)) * v_rate) - 1,
        refilled_at = greatest(b.refilled_at, now())
  RETURNING tokens INTO v_tokens;
  IF v_tokens < 0 THEN
    v_wait_ms := ceil(-v_tokens / v_rate * 1000);
    RAISE EXCEPTION USING ERRCODE = 'PT429',
      MESSAGE = format('too many writes to project %s: at most %s a second, in bursts of %s',
                       p_project, v_rate, v_burst),
      DETAIL = jsonb_build_object('retry_after_ms', v_wait_ms)::text,
      HINT = format('retry after %s ms', v_wait_ms);
  END IF;
END
$$;

-- It runs inside the write RPCs as their owner; nobody calls it directly.
REVOKE ALL ON FUNCTION fsync.take_write_token(uuid) FROM PUBLIC;
