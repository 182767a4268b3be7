-- Searches of a user with many memories (reverie.store.memory_search).
--
-- blend_hits: the blend of a hybrid search's two halves as its own function, for halves found apart.
-- hybrid_search, a new overload of 0011's (two arguments more): a large scope's BM25 average length (LARGE or more
-- memories) is taken over its newest p_length_sample memories and returned, for the caller to keep with the scope's
-- count; a large scope's common words match too many memories to average over all of them (`_words`). A smaller
-- scope's is still the average over the memories that match. Functions of the release before, still answering while
-- a deploy rolls out, call 0011's, which stays until a later migration drops it.

-- The blend of a hybrid search's two halves, hits in, the best `p_limit` out (memory_search.py's `_blended` and
-- `_ranked`): of hybrid_search's, below, and of halves found apart (memory_search.blend_found, for a user of many
-- memories: `nearest` and `matching` run at once on two connections), with its plan kept as that one's is: sent as
-- text, the statement would be planned afresh for every search.
CREATE FUNCTION blend_hits(
    p_project text, p_user text, p_tiers text[], p_near_ids uuid[], p_near_at timestamptz[],
    p_near_d double precision[], p_word_ids uuid[], p_word_at timestamptz[], p_word_scores double precision[],
    p_limit integer, p_vector_weight double precision, p_beta double precision
) RETURNS TABLE (hit_id uuid, hit_score double precision)
LANGUAGE plpgsql STABLE ROWS 10 AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH near AS MATERIALIZED (
        SELECT * FROM unnest(p_near_ids, p_near_at, p_near_d) AS n(id, recorded_at, d)
    ),
    words AS MATERIALIZED (
        SELECT * FROM unnest(p_word_ids, p_word_at, p_word_scores) AS w(id, recorded_at, bm25)
    ),
    candidate AS MATERIALIZED (
        SELECT id, sum(score) AS score, min(listed) AS listed FROM (
            SELECT id, p_vector_weight * CASE WHEN high > low THEN (high - d) / (high - low) ELSE 1.0 END AS score,
                listed
            FROM (SELECT id, d, min(d) OVER () AS low, max(d) OVER () AS high,
                  row_number() OVER (ORDER BY d, id) AS listed FROM near) by_vector
            UNION ALL
            SELECT id, (1.0 - p_vector_weight) * CASE WHEN high > low THEN (bm25 - low) / (high - low) ELSE 1.0 END,
                1000000 + listed
            FROM (SELECT id, bm25, min(bm25) OVER () AS low, max(bm25) OVER () AS high,
                  row_number() OVER (ORDER BY bm25 DESC, recorded_at DESC, id) AS listed FROM words) by_words
        ) scored GROUP BY id
    ),
    lifter AS MATERIALIZED (SELECT id FROM candidate ORDER BY score DESC, listed LIMIT 2 * p_limit),
    hit AS MATERIALIZED (
        SELECT m.id, m.tier, m.session_id, m.seq, candidate.score FROM candidate
        CROSS JOIN LATERAL (SELECT id, tier, session_id, seq FROM memories WHERE id = candidate.id
                            AND project_id = p_project AND user_id = p_user) m
        WHERE m.session_id IS NOT NULL AND p_beta > 0 AND candidate.id IN (SELECT id FROM lifter)
    ),
    lifted AS (
        SELECT id, score FROM candidate
        UNION ALL
        SELECT beside.id, p_beta * hit.score FROM hit CROSS JOIN LATERAL (
            (SELECT id FROM memories WHERE project_id = p_project AND user_id = p_user AND tier = ANY (p_tiers)
             AND superseded_at IS NULL AND tier = hit.tier AND session_id = hit.session_id AND seq < hit.seq
             ORDER BY seq DESC LIMIT 1)
            UNION ALL
            (SELECT id FROM memories WHERE project_id = p_project AND user_id = p_user AND tier = ANY (p_tiers)
             AND superseded_at IS NULL AND tier = hit.tier AND session_id = hit.session_id AND seq > hit.seq
             ORDER BY seq ASC LIMIT 1)) beside
    ),
    total AS MATERIALIZED (SELECT id, round(1e12 * sum(score)) / 1e12 AS score FROM lifted GROUP BY id),
    cut AS (SELECT min(score) AS score FROM (SELECT score FROM total ORDER BY score DESC LIMIT p_limit) t)
    SELECT total.id, total.score::float8
    FROM total JOIN cut ON total.score >= cut.score
    CROSS JOIN LATERAL (SELECT recorded_at FROM memories WHERE id = total.id AND project_id = p_project
                        AND user_id = p_user) m
    ORDER BY total.score DESC, m.recorded_at DESC, total.id LIMIT p_limit;
END
$$;

GRANT EXECUTE ON FUNCTION blend_hits TO reverie_runtime;

-- Migration 0011's search, its blend written out as blend_hits's is: a call to blend_hits from here would add a
-- nested function call to every search, a chat turn's included.
CREATE FUNCTION hybrid_search(
    p_project text, p_user text, p_tiers text[], p_query text, p_qvec halfvec, p_model text, p_k integer,
    p_limit integer, p_vector_weight double precision, p_beta double precision, p_large double precision,
    p_n_known double precision, p_length_known double precision, p_length_sample integer, p_k1 double precision,
    p_b double precision
) RETURNS TABLE (hit_id uuid, hit_score double precision, scope_size double precision,
                 scope_length double precision)
LANGUAGE plpgsql STABLE ROWS 10 AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH q AS MATERIALIZED (
        SELECT DISTINCT lexeme FROM unnest(tsvector_to_array(to_tsvector('english', p_query))) AS lexeme
    ),
    post AS MATERIALIZED (
        SELECT w.lexeme AS word, w.memory_id AS id, w.recorded_at, w.length::float8 AS dl
        FROM q CROSS JOIN LATERAL (
            SELECT lexeme, memory_id, recorded_at, length FROM memory_words
            WHERE project_id = p_project AND user_id = p_user AND lexeme = q.lexeme AND tier = ANY (p_tiers)
            OFFSET 0) w
    ),
    -- A scope counted LARGE or more a moment ago comes with its count and average length (p_n_known,
    -- p_length_known); a smaller one is counted.
    scope AS MATERIALIZED (
        SELECT CASE WHEN p_n_known >= p_large THEN p_n_known ELSE (
            SELECT count(*)::float8 FROM memories WHERE project_id = p_project AND user_id = p_user
            AND tier = ANY (p_tiers) AND superseded_at IS NULL) END AS n
    ),
    idf AS MATERIALIZED (
        SELECT word, ln(1.0 + (scope.n - count(*) + 0.5) / (count(*) + 0.5)) AS idf
        FROM post, scope GROUP BY word, scope.n
    ),
    held AS MATERIALIZED (
        SELECT id, recorded_at, dl, sum(idf.idf) AS idf FROM post JOIN idf USING (word) GROUP BY id, recorded_at, dl
    ),
    -- A large scope's average length is its newest memories', a smaller one's the matches'.
    avg AS MATERIALIZED (
        SELECT CASE WHEN (SELECT n FROM scope) >= p_large THEN coalesce(p_length_known, (
            SELECT avg(length(tsv))::float8 FROM (
                SELECT tsv FROM memories WHERE project_id = p_project AND user_id = p_user AND tier = ANY (p_tiers)
                AND superseded_at IS NULL ORDER BY recorded_at DESC, id LIMIT p_length_sample) newest))
            ELSE (SELECT avg(dl) FROM held) END AS dl
    ),
    words AS MATERIALIZED (
        SELECT held.id, held.recorded_at, round(1e9 * held.idf * (p_k1 + 1.0)
            / (1.0 + p_k1 * (1.0 - p_b + p_b * held.dl / avg.dl))) / 1e9 AS bm25
        FROM held, avg ORDER BY bm25 DESC, held.recorded_at DESC, held.id LIMIT p_k
    ),
    near AS MATERIALIZED (
        (SELECT id, recorded_at, embedding_half <=> p_qvec AS d FROM memories
         WHERE project_id = p_project AND user_id = p_user AND tier = ANY (p_tiers) AND superseded_at IS NULL
         AND embedding_model = p_model AND embedding_half IS NOT NULL AND (SELECT n FROM scope) < p_large
         ORDER BY (embedding_half <=> p_qvec) + 0, id LIMIT p_k)
        UNION ALL
        (SELECT id, recorded_at, embedding_half <=> p_qvec AS d FROM memories
         WHERE project_id = p_project AND (user_id = p_user) IS TRUE AND tier = ANY (p_tiers)
         AND superseded_at IS NULL AND embedding_model = p_model AND embedding_half IS NOT NULL
         AND (SELECT n FROM scope) >= p_large
         ORDER BY embedding_half <=> p_qvec LIMIT p_k)
    ),
    candidate AS MATERIALIZED (
        SELECT id, sum(score) AS score, min(listed) AS listed FROM (
            SELECT id, p_vector_weight * CASE WHEN high > low THEN (high - d) / (high - low) ELSE 1.0 END AS score,
                listed
            FROM (SELECT id, d, min(d) OVER () AS low, max(d) OVER () AS high,
                  row_number() OVER (ORDER BY d, id) AS listed FROM near) by_vector
            UNION ALL
            SELECT id, (1.0 - p_vector_weight) * CASE WHEN high > low THEN (bm25 - low) / (high - low) ELSE 1.0 END,
                1000000 + listed
            FROM (SELECT id, bm25, min(bm25) OVER () AS low, max(bm25) OVER () AS high,
                  row_number() OVER (ORDER BY bm25 DESC, recorded_at DESC, id) AS listed FROM words) by_words
        ) scored GROUP BY id
    ),
    lifter AS MATERIALIZED (SELECT id FROM candidate ORDER BY score DESC, listed LIMIT 2 * p_limit),
    hit AS MATERIALIZED (
        SELECT m.id, m.tier, m.session_id, m.seq, candidate.score FROM candidate
        CROSS JOIN LATERAL (SELECT id, tier, session_id, seq FROM memories WHERE id = candidate.id
                            AND project_id = p_project AND user_id = p_user) m
        WHERE m.session_id IS NOT NULL AND p_beta > 0 AND candidate.id IN (SELECT id FROM lifter)
    ),
    lifted AS (
        SELECT id, score FROM candidate
        UNION ALL
        SELECT beside.id, p_beta * hit.score FROM hit CROSS JOIN LATERAL (
            (SELECT id FROM memories WHERE project_id = p_project AND user_id = p_user AND tier = ANY (p_tiers)
             AND superseded_at IS NULL AND tier = hit.tier AND session_id = hit.session_id AND seq < hit.seq
             ORDER BY seq DESC LIMIT 1)
            UNION ALL
            (SELECT id FROM memories WHERE project_id = p_project AND user_id = p_user AND tier = ANY (p_tiers)
             AND superseded_at IS NULL AND tier = hit.tier AND session_id = hit.session_id AND seq > hit.seq
             ORDER BY seq ASC LIMIT 1)) beside
    ),
    total AS MATERIALIZED (SELECT id, round(1e12 * sum(score)) / 1e12 AS score FROM lifted GROUP BY id),
    cut AS (SELECT min(score) AS score FROM (SELECT score FROM total ORDER BY score DESC LIMIT p_limit) t)
    SELECT total.id, total.score::float8, (SELECT n FROM scope),
        CASE WHEN (SELECT n FROM scope) >= p_large THEN (SELECT dl FROM avg) END
    FROM total JOIN cut ON total.score >= cut.score
    CROSS JOIN LATERAL (SELECT recorded_at FROM memories WHERE id = total.id AND project_id = p_project
                        AND user_id = p_user) m
    ORDER BY total.score DESC, m.recorded_at DESC, total.id LIMIT p_limit;
END
$$;

GRANT EXECUTE ON FUNCTION hybrid_search(text, text, text[], text, halfvec, text, integer, integer, double precision,
    double precision, double precision, double precision, double precision, integer, double precision,
    double precision) TO reverie_runtime;
