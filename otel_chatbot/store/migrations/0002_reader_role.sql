-- Read-only role for Grafana and ad-hoc SQL. NOLOGIN: an operator enables it with
--   ALTER ROLE otel_chatbot_reader LOGIN PASSWORD '...';
-- Roles are cluster-wide while migrations run per database, so creation tolerates a role that already
-- exists (or is being created by a concurrent migration of another database) and a migrating user
-- without CREATEROLE (managed Postgres): then the grants are skipped with a NOTICE.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'otel_chatbot_reader') THEN
        BEGIN
            CREATE ROLE otel_chatbot_reader NOLOGIN;
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN NULL;
            WHEN insufficient_privilege THEN
                RAISE NOTICE 'cannot create role otel_chatbot_reader (no CREATEROLE); skipping grants';
                RETURN;
        END;
    END IF;
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO otel_chatbot_reader', current_database());
    GRANT USAGE ON SCHEMA public TO otel_chatbot_reader;
    GRANT SELECT ON ALL TABLES IN SCHEMA public TO otel_chatbot_reader;
    -- Daily partitions and tables of later migrations are created by this same (writer) role.
    ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO otel_chatbot_reader;
END
$$;
