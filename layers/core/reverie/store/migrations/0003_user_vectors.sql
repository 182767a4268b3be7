-- Vector search is always within one user's current memories, scanned exactly: a global HNSW index filtered to
-- one user keeps almost none of that user's rows. This index carries the ids and vectors of each user's
-- current rows, so the scan reads the index alone (an index-only scan) instead of rows scattered over the heap.
-- A vector(384) fits a btree entry with room to spare; a much larger dimension would not.
CREATE INDEX memories_user_vectors ON memories (project_id, user_id, tier) INCLUDE (id, embedding)
    WHERE superseded_at IS NULL;

-- Nothing searches across users by vector, so the global HNSW index only made every write slower.
DROP INDEX IF EXISTS memories_embedding;
