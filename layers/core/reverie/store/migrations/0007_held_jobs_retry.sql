-- A held job whose window failed waits before its next attempt counts, as a queued message waits out its
-- visibility timeout: a model outage shorter than a queued message's retry budget dead-letters nothing.
ALTER TABLE held_jobs ADD COLUMN IF NOT EXISTS retry_at timestamptz;
