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

