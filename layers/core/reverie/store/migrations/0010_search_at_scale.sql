-- Search that stays fast for a user with a hundred thousand memories (reverie.store.memory_search).
--
-- Full text. Under row-level security (0006) a condition whose function is not leakproof cannot be an index
-- condition, and ts_match_vq (tsvector @@ tsquery) is not: the GIN index on memories.tsv was never used by the
-- functions' role, and every search read all of the user's memories to test their words. memory_words is an
-- inverted index made of plain rows: one per word of each current memory, keyed by (project, user, word), so a
-- search reads each query word's memories from a btree (equality on text is leakproof) without touching them.
-- It also holds what BM25 needs of the memory (its tier, its number of distinct words, recorded_at for the
-- tie-break). A trigger keeps it: a memory is listed while it is current, under the words it has now.
CREATE TABLE memory_words (
    project_id  text NOT NULL,
    user_id     text NOT NULL,
    lexeme      text NOT NULL,
    memory_id   uuid NOT NULL,
    tier        text NOT NULL,
    length      integer NOT NULL,
    recorded_at timestamptz NOT NULL,
    PRIMARY KEY (project_id, user_id, lexeme, memory_id) INCLUDE (tier, length, recorded_at)
);

ALTER TABLE memory_words ENABLE ROW LEVEL SECURITY;
ALTER TABLE memory_words FORCE ROW LEVEL SECURITY;
CREATE POLICY project_scope ON memory_words
    USING (project_id = (SELECT current_setting('reverie.project_id', true))
           OR (SELECT current_setting('reverie.all_projects', true)) = 'on')
    WITH CHECK (project_id = (SELECT current_setting('reverie.project_id', true))
                OR (SELECT current_setting('reverie.all_projects', true)) = 'on');
GRANT SELECT, INSERT, UPDATE, DELETE ON memory_words TO reverie_runtime;

-- Runs as the writer, inside the writer's transaction and scope: the rows it writes pass the same policy.
-- Rows are removed by their primary key (the old words are the memory's own), so no other index is needed.
CREATE FUNCTION memory_words_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.tsv = NEW.tsv AND OLD.tier = NEW.tier AND OLD.recorded_at = NEW.recorded_at
            AND OLD.superseded_at IS NOT DISTINCT FROM NEW.superseded_at AND OLD.user_id = NEW.user_id
            AND OLD.project_id = NEW.project_id THEN
        RETURN NULL;  -- an embedding, a metadata change: the listing stays as it is
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.superseded_at IS NULL THEN
        DELETE FROM memory_words WHERE project_id = OLD.project_id AND user_id = OLD.user_id
            AND lexeme = ANY (tsvector_to_array(OLD.tsv)) AND memory_id = OLD.id;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.superseded_at IS NULL THEN
        INSERT INTO memory_words (project_id, user_id, lexeme, memory_id, tier, length, recorded_at)
            SELECT NEW.project_id, NEW.user_id, lexeme, NEW.id, NEW.tier, length(NEW.tsv), NEW.recorded_at
            FROM unnest(tsvector_to_array(NEW.tsv)) AS lexeme;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER memory_words_sync AFTER INSERT OR DELETE OR UPDATE ON memories
    FOR EACH ROW EXECUTE FUNCTION memory_words_sync();

-- The memories already stored (the migration runs across projects). On a large table this and the index below
-- take minutes: MIGRATE_STATEMENT_TIMEOUT_S gives them the time.
INSERT INTO memory_words (project_id, user_id, lexeme, memory_id, tier, length, recorded_at)
    SELECT project_id, user_id, lexeme, id, tier, length(tsv), recorded_at
    FROM memories CROSS JOIN LATERAL unnest(tsvector_to_array(tsv)) AS lexeme
    WHERE superseded_at IS NULL;
ANALYZE memory_words;

DROP INDEX IF EXISTS memories_tsv;

-- Vectors. A user with tens of thousands of memories is a sizeable share of the table, and an exact scan of
-- theirs outgrows a reply; an approximate index walked with pgvector's iterative scan (0.8) finds their nearest
-- in a fraction of the time. Searches of smaller users never use it (reverie.store.memory_search.nearest).
CREATE INDEX memories_current_half_vectors_hnsw ON memories USING hnsw (embedding_half halfvec_cosine_ops)
    WHERE superseded_at IS NULL;
