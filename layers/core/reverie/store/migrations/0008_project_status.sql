-- A project's GET /v1/status counts its jobs that failed or went dead lately: a small partial index finds them
-- without reading every outcome the project ever recorded.
CREATE INDEX IF NOT EXISTS processed_jobs_failures ON processed_jobs (project_id, processed_at)
    WHERE status IN ('failed', 'dead');
