-- Reflection windows: a tier holds a user's jobs until enough have gathered (or the oldest has waited long
-- enough) to learn them all with one model call, across queue batches. A held job is durable here, so its
-- queue message can go; it leaves this table in the transaction that applies it (or when it is parked in
-- the dead-letter queue after too many failed attempts).
CREATE TABLE held_jobs (
    project_id  text NOT NULL,
    user_id     text NOT NULL,
    tier        text NOT NULL CHECK (tier IN ('episodic', 'semantic', 'procedural')),
    job_id      text NOT NULL,
    seq         bigserial,                      -- arrival order: the user's FIFO order
    job         jsonb NOT NULL,                 -- the job as received (self-contained)
    held_at     timestamptz NOT NULL DEFAULT now(),
    attempts    integer NOT NULL DEFAULT 0,     -- failed attempts to learn it
    last_error  text,
    PRIMARY KEY (project_id, job_id, tier)
);
CREATE INDEX held_jobs_window ON held_jobs (project_id, user_id, tier, seq);
-- The window sweep looks for windows whose oldest job has waited long enough.
CREATE INDEX held_jobs_age ON held_jobs (held_at);
