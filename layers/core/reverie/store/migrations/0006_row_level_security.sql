-- Row-level security: the second wall between projects. The first is every query's own `project_id = %s`.
--
-- A tenant table's row is seen, and may be written, only when it belongs to the transaction's project (the
-- setting reverie.project_id, set per transaction by reverie.store.db.Database), or when the transaction says it
-- works across projects (reverie.all_projects = 'on': the window and narrative sweeps, the health probe, the
-- authorizer's key lookup, the admin and DLQ tools). With neither, a tenant table shows no rows and takes none.
--
-- FORCE applies the policies to the tables' owner too. Only a superuser, or a role with BYPASSRLS, passes them
-- anyway, so the functions connect as a login role that is a member of reverie_runtime (granted below exactly
-- what they need), and never as the owner that runs these migrations (see the README: Deploying).
--
-- Written to run again unchanged (on a server where the role exists already, for another database).

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'reverie_runtime') THEN
        CREATE ROLE reverie_runtime NOLOGIN;
    END IF;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN
        NULL;  -- made meanwhile by the migration of another database on the same server
    WHEN insufficient_privilege THEN
        RAISE EXCEPTION 'the role reverie_runtime does not exist, and % may not create it', current_user
            USING HINT = 'create it once as a role with CREATEROLE: CREATE ROLE reverie_runtime NOLOGIN';
END
$$;

DO $$
DECLARE
    tenant record;
BEGIN
    FOR tenant IN
        SELECT * FROM (VALUES
            ('projects', 'id'),
            ('api_keys', 'project_id'),
            ('memories', 'project_id'),
            ('memory_events', 'project_id'),
            ('narratives', 'project_id'),
            ('processed_jobs', 'project_id'),
            ('held_jobs', 'project_id'),
            ('llm_usage', 'project_id'),
            ('user_tombstones', 'project_id')
        ) AS t (name, project_column)
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', tenant.name);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', tenant.name);
        EXECUTE format('DROP POLICY IF EXISTS project_scope ON %I', tenant.name);
        -- The settings are read in sub-selects: evaluated once per statement, not once per row.
        -- current_setting(..., true) is NULL where the setting was never made: no row matches.
        EXECUTE format(
            'CREATE POLICY project_scope ON %1$I'
            ' USING (%2$I = (SELECT current_setting(''reverie.project_id'', true))'
            '        OR (SELECT current_setting(''reverie.all_projects'', true)) = ''on'')'
            ' WITH CHECK (%2$I = (SELECT current_setting(''reverie.project_id'', true))'
            '             OR (SELECT current_setting(''reverie.all_projects'', true)) = ''on'')',
            tenant.name, tenant.project_column);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO reverie_runtime', tenant.name);
    END LOOP;
END
$$;

-- The bigserial columns draw from these (nextval needs USAGE).
GRANT USAGE ON SEQUENCE memory_events_id_seq, llm_usage_id_seq, held_jobs_seq_seq TO reverie_runtime;
-- A function checks the schema's version at cold start; it changes nothing else.
GRANT SELECT ON schema_migrations TO reverie_runtime;
