-- ragbench 0.5.0 → 0.6.0. Also run by a fresh install (last, after the 0.5.0 upgrade), so that both paths
-- make the same objects with the same statements.

-- The launcher (src/queue/launcher.rs) starts the ingestion workers of every database that has the
-- extension; rag.worker_databases only narrows that set. CREATE EXTENSION (this script, in a fresh
-- install) and ALTER EXTENSION UPDATE start this database's workers at once, without a restart.
CREATE OR REPLACE FUNCTION rag.start_workers() RETURNS int
LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'start_workers_wrapper';
COMMENT ON FUNCTION rag.start_workers() IS
  'Start this database''s ingestion background workers now (needs shared_preload_libraries); workers already running stay, duplicates exit. Returns how many were started. Run by CREATE EXTENSION; rag_admin may run it to bring back terminated workers without waiting for the launcher.';
REVOKE EXECUTE ON FUNCTION rag.start_workers() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION rag.start_workers() TO rag_admin;

SELECT rag.start_workers();
