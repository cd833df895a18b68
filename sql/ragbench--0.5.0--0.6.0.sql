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

-- Size before content: btrim() of a text costs about 12 times its size in backend memory (measured: 124 MB
-- at peak for a 10 MB title), so the cheap octet_length() check now comes first and btrim() only ever sees
-- text within the limits, and chat_append trims a whole message only when its first 64 characters are blank.
CREATE OR REPLACE FUNCTION rag._check_title(title text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF octet_length(title) > 4096 OR length(title) > 1024 THEN
        RAISE EXCEPTION 'session title is % characters long; the limit is 1024', length(title)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF title IS NULL OR btrim(title) = '' THEN
        RAISE EXCEPTION 'session title must not be empty'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass a title, or omit it for ''New Chat''.';
    END IF;
    RETURN btrim(title);
END $$;

CREATE OR REPLACE FUNCTION rag.chat_append(session_id uuid, role text, content text, metadata jsonb DEFAULT '{}')
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    new_id bigint;
BEGIN
    IF session_id IS NULL THEN
        RAISE EXCEPTION 'session_id must not be NULL' USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Create one with rag.create_session() or pass any new uuid.';
    END IF;
    IF role IS NULL OR role NOT IN ('user', 'assistant', 'system', 'tool') THEN
        RAISE EXCEPTION 'unknown role %', coalesce(quote_literal(role), 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use user, assistant, system or tool.';
    END IF;
    IF octet_length(content) > rag._setting_int('rag.max_message_bytes', 4194304) THEN
        RAISE EXCEPTION 'message is % bytes; rag.max_message_bytes allows %', octet_length(content),
            rag._setting_int('rag.max_message_bytes', 4194304)
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Shorten the message or raise rag.max_message_bytes.';
    END IF;
    -- only text that starts blank is trimmed whole
    IF content IS NULL OR (btrim(left(content, 64), E' \t\r\n') = '' AND btrim(content, E' \t\r\n') = '') THEN
        RAISE EXCEPTION 'message content must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF metadata IS NULL OR jsonb_typeof(metadata) <> 'object' THEN
        RAISE EXCEPTION 'metadata must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO rag.chat_sessions (id) VALUES (session_id) ON CONFLICT (id) DO NOTHING;
    -- lock the session row: serialises concurrent appends and waits out a concurrent delete
    PERFORM 1 FROM rag.chat_sessions s WHERE s.id = session_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'chat session % is not one of this role''s sessions (in this tenant), or was deleted meanwhile', session_id
            USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'Start a new session with another id.';
    END IF;
    INSERT INTO rag.chat_messages (session_id, role, content, metadata)
    VALUES (session_id, role, content, metadata) RETURNING id INTO new_id;
    UPDATE rag.chat_sessions s SET updated_at = now() WHERE s.id = session_id;
    RETURN new_id;
END $$;

-- rag.hybrid_search fuses with normalised scores by default (issue #14; src/search/hybrid.rs,
-- crates/core/src/fusion.rs): a new last parameter `fusion` ('convex' or 'rrf', today's behaviour), and
-- weights that default to NULL, meaning the fusion's own (convex 0.2 / 0.8, rrf 1 / 1).
DROP FUNCTION IF EXISTS rag.hybrid_search(text, int, jsonb, double precision, double precision, int, int);
CREATE OR REPLACE FUNCTION rag.hybrid_search(
    "query" text, "k" int DEFAULT 10, "filter" jsonb DEFAULT NULL, "bm25_weight" double precision DEFAULT NULL,
    "vector_weight" double precision DEFAULT NULL, "rrf_k" int DEFAULT 60, "candidates" int DEFAULT NULL,
    "fusion" text DEFAULT 'convex'
) RETURNS TABLE ("chunk_id" uuid, "document_id" uuid, "file_name" text, "chunk_index" int, "content" text,
                 "score" double precision, "bm25_rank" int, "vector_rank" int, "metadata" jsonb)
STABLE PARALLEL UNSAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'hybrid_search_wrapper';
REVOKE EXECUTE ON FUNCTION rag.hybrid_search(text, int, jsonb, double precision, double precision, int, int, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION rag.hybrid_search(text, int, jsonb, double precision, double precision, int, int, text)
    TO rag_reader, rag_admin;

SELECT rag.start_workers();
