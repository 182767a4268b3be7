-- Projects, hashed API keys, the three long-term tiers, their events, job outcomes and narratives.
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE projects (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Only a hash of each key is kept; the prefix lets a person tell keys apart.
CREATE TABLE api_keys (
    id          text PRIMARY KEY,
    project_id  text NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    key_hash    text NOT NULL UNIQUE,
    prefix      text NOT NULL,
    name        text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE TABLE memories (
    id              uuid PRIMARY KEY,
    project_id      text NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    user_id         text NOT NULL,
    tier            text NOT NULL CHECK (tier IN ('episodic', 'semantic', 'procedural')),
    text            text NOT NULL,
    -- normalised-text hash: the same fact is never stored twice as current
    content_hash    text NOT NULL,
    embedding       vector(384),
    embedding_model text,
    tsv             tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED,
    metadata        jsonb NOT NULL DEFAULT '{}'::jsonb,
    importance      real,
    session_id      text,
    -- bi-temporal: when it was true in the user's life, and when Reverie learned or replaced it
    valid_from      timestamptz,
    valid_to        timestamptz,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    superseded_at   timestamptz,
    superseded_by   uuid REFERENCES memories(id) ON DELETE SET NULL,
    source_turn_ids text[] NOT NULL DEFAULT '{}',
    source_job_id   text
);

CREATE INDEX memories_scope_current ON memories (project_id, user_id, tier, recorded_at DESC)
    WHERE superseded_at IS NULL;
CREATE INDEX memories_scope_all ON memories (project_id, user_id, recorded_at DESC);
CREATE UNIQUE INDEX memories_no_current_duplicate ON memories (project_id, user_id, tier, content_hash)
    WHERE superseded_at IS NULL;
CREATE INDEX memories_tsv ON memories USING gin (tsv);
CREATE INDEX memories_embedding ON memories USING hnsw (embedding vector_cosine_ops);
CREATE INDEX memories_metadata ON memories USING gin (metadata jsonb_path_ops);

-- Every change to a memory, with the job that caused it. No foreign key: history outlives a delete.
CREATE TABLE memory_events (
    id          bigserial PRIMARY KEY,
    project_id  text NOT NULL,
    user_id     text NOT NULL,
    memory_id   uuid NOT NULL,
    event       text NOT NULL CHECK (event IN ('ADD', 'UPDATE', 'SUPERSEDE', 'DELETE')),
    job_id      text,
    old_text    text,
    new_text    text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX memory_events_memory ON memory_events (project_id, memory_id, id);
CREATE INDEX memory_events_user ON memory_events (project_id, user_id);

-- A tier applies a job at most once: this row commits in the same transaction as its effects.
CREATE TABLE processed_jobs (
    job_id       text NOT NULL,
    tier         text NOT NULL,
    project_id   text NOT NULL,
    user_id      text NOT NULL,
    status       text NOT NULL CHECK (status IN ('done', 'empty', 'failed', 'dead')),
    added        integer NOT NULL DEFAULT 0,
    updated      integer NOT NULL DEFAULT 0,
    superseded   integer NOT NULL DEFAULT 0,
    reason       text,
    error        text,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, tier)
);
CREATE INDEX processed_jobs_scope ON processed_jobs (project_id, user_id);
CREATE INDEX processed_jobs_recent ON processed_jobs (tier, processed_at DESC);

CREATE TABLE narratives (
    project_id   text NOT NULL,
    user_id      text NOT NULL,
    version      integer NOT NULL,
    text         text NOT NULL,
    citations    text[] NOT NULL DEFAULT '{}',
    model        text,
    generated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, user_id, version)
);

-- The cost ledger: tokens and model of every LLM call, per job and tier.
CREATE TABLE llm_usage (
    id                bigserial PRIMARY KEY,
    project_id        text NOT NULL,
    user_id           text,
    job_id            text,
    purpose           text NOT NULL,
    model             text NOT NULL,
    prompt_tokens     integer NOT NULL DEFAULT 0,
    completion_tokens integer NOT NULL DEFAULT 0,
    calls             integer NOT NULL DEFAULT 1,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX llm_usage_scope ON llm_usage (project_id, user_id);

-- A forgotten user: jobs made before this moment are dropped when they arrive.
CREATE TABLE user_tombstones (
    project_id   text NOT NULL,
    user_id      text NOT NULL,
    forgotten_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, user_id)
);
