-- Reflection: job outcomes keyed within their project, the tier of each ledger row, slot lookups.

-- A job id is unique within its project; keying outcomes by project too means no job of one project can
-- ever mark (or hide) a job of another as processed.
ALTER TABLE processed_jobs DROP CONSTRAINT processed_jobs_pkey;
ALTER TABLE processed_jobs ADD PRIMARY KEY (project_id, job_id, tier);

-- The cost ledger: one row per LLM call, with its tier and every job a batched call served.
ALTER TABLE llm_usage ADD COLUMN tier text;
ALTER TABLE llm_usage ADD COLUMN job_ids text[] NOT NULL DEFAULT '{}';
CREATE INDEX llm_usage_jobs ON llm_usage USING gin (job_ids);

-- Reconciliation looks up the current memory holding a one-value slot (home_city, employer, reply_language).
CREATE INDEX memories_current_slot ON memories (project_id, user_id, tier, (metadata->>'slot'))
    WHERE superseded_at IS NULL AND metadata ? 'slot';
