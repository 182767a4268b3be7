-- Vector search ranks a user's current memories by a half-precision copy of each vector. Half precision picks
-- and orders 50 candidates as well as full precision (only near ties can swap, and fusion by rank blurs those),
-- and the covering index then holds half the bytes per row, so a per-user scan reads half the pages.
-- `embedding` stays the source of truth: the copy is generated, so every write keeps it without knowing of it.
ALTER TABLE memories
    ADD COLUMN embedding_half halfvec(384) GENERATED ALWAYS AS (embedding::halfvec(384)) STORED;

-- As the index of 0003 (an index-only scan of one user's current rows), with the half vectors, and with
-- recorded_at, which ranking returns for its tie-break.
CREATE INDEX memories_user_half_vectors ON memories (project_id, user_id, tier)
    INCLUDE (id, recorded_at, embedding_half) WHERE superseded_at IS NULL;

DROP INDEX IF EXISTS memories_user_vectors;
