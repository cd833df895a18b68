-- ragbench 0.2.0 -> 0.3.0 (ALTER EXTENSION ragbench UPDATE TO '0.3.0').
-- Everything here must equal what a fresh CREATE EXTENSION of 0.3.0 makes; tests/e2e/test_upgrade.py
-- compares the two.

-- Claims: only the current claim of a task may complete or fail it (src/queue/task.rs).
ALTER TABLE rag.job_tasks ADD COLUMN claim_token uuid;

-- Malformed queue messages: archived in pgmq, the reason recorded here.
CREATE TABLE rag.dead_letters (
    id          bigserial PRIMARY KEY,
    queue_name  text NOT NULL,
    msg_id      bigint NOT NULL,
    message     text,
    reason      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- rag.verify: the BM25 index against rag.chunks, with repair (src/search/verify.rs).
CREATE FUNCTION rag.verify(repair bool DEFAULT false)
RETURNS TABLE (status text, chunks bigint, bm25_indexed bigint, missing bigint, repaired bigint, detail text)
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'verify_wrapper';

-- rag.reembed_all: rag.reembed in committed slices (src/ingest/mod.rs).
CREATE PROCEDURE rag.reembed_all(slice_size int DEFAULT 256)
LANGUAGE plpgsql
AS $$
DECLARE
    n bigint;
BEGIN
    IF slice_size IS NULL OR slice_size < 1 OR slice_size > 100000 THEN
        RAISE EXCEPTION 'slice_size must be between 1 and 100000, got %', slice_size
            USING ERRCODE = 'invalid_parameter_value', HINT = 'The default of 256 commits every few seconds.';
    END IF;
    LOOP
        n := rag.reembed(slice_size);
        COMMIT;
        EXIT WHEN n < slice_size;
    END LOOP;
END
$$;
COMMENT ON PROCEDURE rag.reembed_all(int) IS
  'Re-embed every missing or stale vector with the configured model, committing after each slice (CALL it outside a transaction block).';
