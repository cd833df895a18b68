-- ragbench 0.4.0 → 0.5.0. Also run by a fresh install (after the 0.4.0 upgrade), so that both paths
-- make the same objects with the same statements.

-- Chunk rows stream into rag.chunks from backend memory through one INSERT … SELECT (src/ingest/staged.rs)
-- instead of parallel-array parameters: memory no longer grows at 5 copies of a document's text.
CREATE OR REPLACE FUNCTION rag._staged_chunks()
RETURNS TABLE (document_id uuid, chunk_index int, content text, content_with_context text, token_count int,
               embedding real[], embedding_model text, metadata jsonb, owner text, tenant text)
LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', '_staged_chunks_wrapper';
COMMENT ON FUNCTION rag._staged_chunks() IS
  'Internal: the chunk rows this backend staged for the INSERT statement it is running; no rows otherwise.';
REVOKE EXECUTE ON FUNCTION rag._staged_chunks() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION rag._staged_chunks() TO rag_writer;

-- BM25 compaction (src/search/compact.rs): the worker rebuilds rag.chunks_bm25 concurrently when it has
-- more than rag.bm25_compact_segments segments and writes have paused, or when rag.compact() asks. One
-- row per rebuild: why, when, the segment counts before and after, and the error if it failed.
CREATE TABLE rag.bm25_compactions (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    reason          text NOT NULL CHECK (reason IN ('requested', 'automatic', 'repair')),
    requested_by    text NOT NULL DEFAULT current_user,
    requested_at    timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz,
    segments_before int,
    segments_after  int,
    error           text
);
COMMENT ON TABLE rag.bm25_compactions IS
  'Rebuilds of the BM25 index by the background worker: requested (rag.compact()), automatic or repair.';

CREATE FUNCTION rag.compact() RETURNS bigint
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ INSERT INTO rag.bm25_compactions (reason) VALUES ('requested') RETURNING id $$;
COMMENT ON FUNCTION rag.compact() IS
  'Ask the background worker to rebuild the BM25 index concurrently as soon as its queue is idle; returns the request id (its row in rag.bm25_compactions records the outcome). Takes effect at commit.';

REVOKE ALL ON rag.bm25_compactions FROM PUBLIC;
GRANT SELECT, INSERT ON rag.bm25_compactions TO rag_admin;
GRANT USAGE ON SEQUENCE rag.bm25_compactions_id_seq TO rag_admin;
REVOKE EXECUTE ON FUNCTION rag.compact() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION rag.compact() TO rag_admin;

-- Long BM25 queries (src/search/long_query.rs): a query with more distinct terms than
-- rag.bm25_max_query_terms keeps its highest-weight terms, by document frequencies the worker samples.
-- Callers see only the frequencies of the terms they pass (rag._term_stats), never the term list.
CREATE TABLE rag.bm25_term_stats (
    term text PRIMARY KEY,
    df   real NOT NULL
);
CREATE TABLE rag.bm25_term_stats_info (
    id           int PRIMARY KEY CHECK (id = 1),
    chunks       double precision NOT NULL,
    sampled      bigint NOT NULL,
    refreshed_at timestamptz NOT NULL
);
COMMENT ON TABLE rag.bm25_term_stats IS
  'Estimated document frequency of each BM25 term, from a sample of rag.chunks (the worker refreshes it).';

CREATE FUNCTION rag._term_stats(terms text[])
RETURNS TABLE (term text, df real, docs double precision)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.term, s.df, i.chunks
    FROM rag.bm25_term_stats s CROSS JOIN rag.bm25_term_stats_info i
    WHERE s.term = ANY (terms)
$$;
COMMENT ON FUNCTION rag._term_stats(text[]) IS
  'Internal: estimated document frequencies of the given BM25 terms and the number of chunks they are out of.';

REVOKE ALL ON rag.bm25_term_stats, rag.bm25_term_stats_info FROM PUBLIC;
GRANT SELECT ON rag.bm25_term_stats, rag.bm25_term_stats_info TO rag_admin;
REVOKE EXECUTE ON FUNCTION rag._term_stats(text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION rag._term_stats(text[]) TO rag_reader;
