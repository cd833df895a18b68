-- ragbench 0.1.0 -> 0.2.0 (ALTER EXTENSION ragbench UPDATE TO '0.2.0').
-- Everything here must equal what a fresh CREATE EXTENSION of 0.2.0 makes; tests/e2e/test_upgrade.py
-- compares the two.

-- rag.embed_many: embeddings of many texts, batched like ingestion (src/embed/mod.rs).
CREATE FUNCTION rag.embed_arrays(inputs text[], kind text DEFAULT 'query')
RETURNS TABLE (ordinality int, embedding real[])
STRICT PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'embed_arrays_wrapper';

CREATE FUNCTION rag.embed_many(inputs text[], kind text DEFAULT 'query')
RETURNS TABLE (ordinality int, embedding vector)
LANGUAGE sql STRICT PARALLEL UNSAFE
AS $$ SELECT e.ordinality, e.embedding::vector FROM rag.embed_arrays(inputs, kind) e $$;
COMMENT ON FUNCTION rag.embed_many(text[], text) IS
  'Embeddings of many texts, batched like ingestion (rag.embedding_batch_size): one row per input, in order.';

-- BM25 index without a mutable segment (see sql/schema.sql): every search re-indexed up to 1,000 recent
-- rows. REINDEX turns rows already in the mutable segment into ordinary segments.
ALTER INDEX rag.chunks_bm25 SET (mutable_segment_rows = 0);
REINDEX INDEX rag.chunks_bm25;
