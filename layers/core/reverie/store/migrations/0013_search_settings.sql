-- The hybrid search's settings set by its functions rather than sent with each call (reverie.store.memory_search).
--
-- A call of 0012's hybrid_search went with two statements of settings: the vector index's (pgvector's iterative scan,
-- its beam, how many rows it may visit, read from pg_class; no parallel workers) and plan_cache_mode. Sent as text,
-- each is parsed and planned afresh at every search, a chat turn's included, for the same few settings.
--
-- hybrid_search, a new overload of 0012's (four arguments more: the vector index's settings, which the caller keeps
-- as constants): sets them, local to the transaction as the caller's statement did, then runs 0012's, whose plan
-- stays kept. plan_cache_mode is a setting of the function, in force while it runs; blend_hits gets the same.
-- Functions of the release before still send the settings and call 0012's overload, which stays; the setting on
-- blend_hits only repeats what they send.
CREATE FUNCTION hybrid_search(
    p_project text, p_user text, p_tiers text[], p_query text, p_qvec halfvec, p_model text, p_k integer,
    p_limit integer, p_vector_weight double precision, p_beta double precision, p_large double precision,
    p_n_known double precision, p_length_known double precision, p_length_sample integer, p_k1 double precision,
    p_b double precision, p_ef_search integer, p_scan_margin double precision, p_min_scan_tuples integer,
    p_max_scan_tuples integer
) RETURNS TABLE (hit_id uuid, hit_score double precision, scope_size double precision,
                 scope_length double precision)
LANGUAGE plpgsql STABLE ROWS 10 SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    -- As memory_search._VECTOR_SETTINGS: the rows the vector index may visit follow the user's share of the table
    -- (its row count as last analysed), for a scope known to be large; the most otherwise. No parallel workers:
    -- starting them costs more than a user's scan.
    PERFORM set_config('hnsw.iterative_scan', 'relaxed_order', true),
        set_config('hnsw.ef_search', p_ef_search::text, true),
        set_config('hnsw.max_scan_tuples', (SELECT CASE WHEN p_n_known > 0 THEN least(p_max_scan_tuples,
            greatest(p_min_scan_tuples, ceil(p_scan_margin * p_k * greatest(reltuples, p_n_known) / p_n_known)))
            ELSE p_max_scan_tuples END::int::text FROM pg_class WHERE oid = 'memories'::regclass), true),
        set_config('max_parallel_workers_per_gather', '0', true);
    RETURN QUERY SELECT * FROM hybrid_search(p_project, p_user, p_tiers, p_query, p_qvec, p_model, p_k, p_limit,
        p_vector_weight, p_beta, p_large, p_n_known, p_length_known, p_length_sample, p_k1, p_b);
END
$$;

GRANT EXECUTE ON FUNCTION hybrid_search(text, text, text[], text, halfvec, text, integer, integer, double precision,
    double precision, double precision, double precision, double precision, integer, double precision,
    double precision, integer, double precision, integer, integer) TO reverie_runtime;

ALTER FUNCTION blend_hits(text, text, text[], uuid[], timestamptz[], double precision[], uuid[], timestamptz[],
    double precision[], integer, double precision, double precision) SET plan_cache_mode = force_generic_plan;
