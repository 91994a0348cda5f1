-- File System Sync v1: the write rate limit (hardening, plan 4.x).
--
-- Each caller's writes to one project spend tokens from a bucket of their own: `burst` tokens at
-- most, refilled at `per_second`. Every write call (`upsert_project_file`, `delete_project_file`,
-- `bulk_upsert_project_files`, `upsert_project_binary`, a table write on `legacy_project_files`
-- whatever its rows) takes one token under the project's lock; with none left it fails with PT429 (HTTP 429) and says when to retry, in `details` as
-- `{"retry_after_ms": n}` and in `hint`. The service role is exempt. A refused call rolls back
-- with its transaction, so throttled calls do not push the bucket further into debt. A caller
-- already out of tokens is refused before the lock, reading its bucket unlocked, so it never
-- waits behind the project's writers.
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

-- The `writes` limit the caller's next write to the project spends from: none for the service
-- role, for a caller who is no user, once this transaction spent its token on the project (one
-- token per call: a table write of many rows (0007) writes each through the RPCs in one
-- transaction, as a bulk writes many files, and spends one token, as a bulk does), or when the
-- limit's row is gone.
CREATE OR REPLACE FUNCTION fsync.write_limit(
  p_project uuid, OUT burst double precision, OUT per_second double precision)
  LANGUAGE plpgsql
AS $$
BEGIN
  IF current_setting('fsync.write_token_taken', true) = p_project::text
     OR auth.uid() IS NULL OR auth.jwt() ->> 'role' = 'service_role' THEN
    RETURN;
  END IF;
  SELECT l.burst, l.per_second INTO burst, per_second FROM fsync.rate_limits l WHERE l.name = 'writes';
END
$$;

-- Refuses a write with PT429: its caller has `p_available` (less than one) of the limit's tokens.
CREATE OR REPLACE FUNCTION fsync.refuse_write(
  p_project uuid, p_burst double precision, p_rate double precision, p_available double precision)
  RETURNS void
  LANGUAGE plpgsql
AS $$
DECLARE
  v_wait_ms bigint := ceil((1 - p_available) / p_rate * 1000);
BEGIN
  RAISE EXCEPTION USING ERRCODE = 'PT429',
    MESSAGE = format('too many writes to project %s: at most %s a second, in bursts of %s',
                     p_project, p_rate, p_burst),
    DETAIL = jsonb_build_object('retry_after_ms', v_wait_ms)::text,
    HINT = format('retry after %s ms', v_wait_ms);
END
$$;

-- Refuses a write whose caller is out of tokens, reading the bucket without locking it. Called
-- by the write RPCs before `fsync.lock_project`, so a throttled call never waits behind the
-- project's writers (nor the caller's own); whether a token is there is decided under the lock.
CREATE OR REPLACE FUNCTION fsync.check_write_token(p_project uuid) RETURNS void
  LANGUAGE plpgsql
AS $$
DECLARE
  v_limit record;
  v_available double precision;
BEGIN
  SELECT * INTO v_limit FROM fsync.write_limit(p_project);
  IF v_limit.burst IS NULL THEN
    RETURN;
  END IF;
  SELECT least(v_limit.burst,
               b.tokens + greatest(0, extract(epoch FROM now() - b.refilled_at)) * v_limit.per_second)
    INTO v_available
    FROM fsync.write_buckets b WHERE b.project_id = p_project AND b.user_id = auth.uid();
  IF v_available < 1 THEN
    PERFORM fsync.refuse_write(p_project, v_limit.burst, v_limit.per_second, v_available);
  END IF;
END
$$;

-- Takes one of the caller's write tokens for the project, or raises PT429. Called by the write
-- RPCs after `fsync.lock_project`, so one project's buckets change one write at a time, and a
-- write holds its bucket only once it holds the project (as deleting the project, which cascades
-- to the buckets, takes them: the two never wait for each other in turn).
CREATE OR REPLACE FUNCTION fsync.take_write_token(p_project uuid) RETURNS void
  LANGUAGE plpgsql
AS $$
DECLARE
  v_limit record;
  v_tokens double precision;
BEGIN
  SELECT * INTO v_limit FROM fsync.write_limit(p_project);
  IF v_limit.burst IS NULL THEN
    RETURN;
  END IF;
  PERFORM set_config('fsync.write_token_taken', p_project::text, true);
  INSERT INTO fsync.write_buckets AS b (project_id, user_id, tokens, refilled_at)
  VALUES (p_project, auth.uid(), v_limit.burst - 1, now())
  ON CONFLICT (project_id, user_id) DO UPDATE
    SET tokens = least(v_limit.burst,
                       b.tokens + greatest(0, extract(epoch FROM now() - b.refilled_at)) * v_limit.per_second) - 1,
        refilled_at = greatest(b.refilled_at, now())
  RETURNING tokens INTO v_tokens;
  IF v_tokens < 0 THEN
    PERFORM fsync.refuse_write(p_project, v_limit.burst, v_limit.per_second, v_tokens + 1);
  END IF;
END
$$;

-- How every write RPC begins, once its arguments and the caller's access are checked: refused
-- at once when out of tokens, then the project's lock, the caller's access again under it (a
-- membership change that committed while we waited counts), and the token. The order is the
-- lock order: a write holds its bucket only once it holds the project.
CREATE OR REPLACE FUNCTION fsync.begin_write(p_project uuid) RETURNS void
  LANGUAGE plpgsql
AS $$
BEGIN
  PERFORM fsync.check_write_token(p_project);
  PERFORM fsync.lock_project(p_project);
  PERFORM fsync.require_access(p_project, true);
  PERFORM fsync.take_write_token(p_project);
END
$$;

-- They run inside the write RPCs as their owner; nobody calls them directly.
REVOKE ALL ON FUNCTION fsync.write_limit(uuid), fsync.check_write_token(uuid), fsync.take_write_token(uuid),
  fsync.refuse_write(uuid, double precision, double precision, double precision), fsync.begin_write(uuid)
  FROM PUBLIC;
