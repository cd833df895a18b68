-- Chat sessions and messages: the durable replacement for RedisChatStore. Plain SQL/PL/pgSQL; the
-- retrieval-augmented answer (rag.ask) is in src/chat/.

-- An integer setting of this extension, or its default while the library is not loaded in this session.
CREATE FUNCTION rag._setting_int(name text, fallback int) RETURNS int
LANGUAGE sql STABLE AS $$ SELECT coalesce(nullif(current_setting(name, true), ''), fallback::text)::int $$;

CREATE FUNCTION rag._check_search_type(search_type text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF search_type IS NULL OR search_type NOT IN ('hybrid', 'bm25', 'vector') THEN
        RAISE EXCEPTION 'unknown search_type %', coalesce(quote_literal(search_type), 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use hybrid, bm25 or vector.';
    END IF;
    RETURN search_type;
END $$;

CREATE FUNCTION rag._check_title(title text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF title IS NULL OR btrim(title) = '' THEN
        RAISE EXCEPTION 'session title must not be empty'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass a title, or omit it for ''New Chat''.';
    END IF;
    IF length(title) > 1024 THEN
        RAISE EXCEPTION 'session title is % characters long; the limit is 1024', length(title)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN btrim(title);
END $$;

CREATE FUNCTION rag.create_session(title text DEFAULT 'New Chat', llm_model text DEFAULT NULL,
                                   search_type text DEFAULT 'hybrid', is_temporary boolean DEFAULT false)
RETURNS uuid LANGUAGE sql AS $$
    INSERT INTO rag.chat_sessions (title, llm_model, search_type, is_temporary)
    VALUES (rag._check_title(title), llm_model, rag._check_search_type(search_type), coalesce(is_temporary, false))
    RETURNING id
$$;

CREATE FUNCTION rag.list_sessions(include_archived boolean DEFAULT false)
RETURNS TABLE (id uuid, title text, llm_model text, search_type text, is_archived boolean, is_temporary boolean,
               message_count bigint, created_at timestamptz, updated_at timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT s.id, s.title, s.llm_model, s.search_type, s.is_archived, s.is_temporary,
           (SELECT count(*) FROM rag.chat_messages m WHERE m.session_id = s.id),
           s.created_at, s.updated_at
    FROM rag.chat_sessions s
    WHERE include_archived OR NOT s.is_archived
    ORDER BY s.updated_at DESC, s.id
$$;

CREATE FUNCTION rag.rename_session(session_id uuid, title text) RETURNS boolean
LANGUAGE sql AS $$
    WITH u AS (UPDATE rag.chat_sessions s SET title = rag._check_title($2), updated_at = now()
               WHERE s.id = $1 RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM u)
$$;

CREATE FUNCTION rag.archive_session(session_id uuid, archived boolean DEFAULT true) RETURNS boolean
LANGUAGE sql AS $$
    WITH u AS (UPDATE rag.chat_sessions s SET is_archived = coalesce($2, true), updated_at = now()
               WHERE s.id = $1 RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM u)
$$;

CREATE FUNCTION rag.delete_session(session_id uuid) RETURNS boolean
LANGUAGE sql AS $$
    WITH d AS (DELETE FROM rag.chat_sessions s WHERE s.id = $1 RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM d)
$$;

-- Append a message; creates the session when it does not exist. Appends to one session are
-- serialised on the session row, so message ids follow commit order: a total order per session.
CREATE FUNCTION rag.chat_append(session_id uuid, role text, content text, metadata jsonb DEFAULT '{}')
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
    IF content IS NULL OR btrim(content, E' \t\r\n') = '' THEN
        RAISE EXCEPTION 'message content must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF octet_length(content) > rag._setting_int('rag.max_message_bytes', 4194304) THEN
        RAISE EXCEPTION 'message is % bytes; rag.max_message_bytes allows %', octet_length(content),
            rag._setting_int('rag.max_message_bytes', 4194304)
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Shorten the message or raise rag.max_message_bytes.';
    END IF;
    IF metadata IS NULL OR jsonb_typeof(metadata) <> 'object' THEN
        RAISE EXCEPTION 'metadata must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO rag.chat_sessions (id) VALUES (session_id) ON CONFLICT (id) DO NOTHING;
    -- lock the session row: serialises concurrent appends and waits out a concurrent delete
    PERFORM 1 FROM rag.chat_sessions s WHERE s.id = session_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'chat session % was deleted while this message was being appended', session_id
            USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'Append again to start a new session with this id.';
    END IF;
    INSERT INTO rag.chat_messages (session_id, role, content, metadata)
    VALUES (session_id, role, content, metadata) RETURNING id INTO new_id;
    UPDATE rag.chat_sessions s SET updated_at = now() WHERE s.id = session_id;
    RETURN new_id;
END $$;

-- Messages of a session, oldest first; with max_messages, the last that many.
CREATE FUNCTION rag.chat_history(session_id uuid, max_messages int DEFAULT NULL)
RETURNS TABLE (id bigint, role text, content text, metadata jsonb, created_at timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT h.id, h.role, h.content, h.metadata, h.created_at FROM (
        SELECT m.id, m.role, m.content, m.metadata, m.created_at
        FROM rag.chat_messages m WHERE m.session_id = $1
        ORDER BY m.id DESC
        LIMIT CASE WHEN $2 IS NULL THEN NULL ELSE greatest($2, 0) END
    ) h ORDER BY h.id
$$;

-- Remove temporary sessions idle for longer than rag.temporary_session_max_age (the worker calls it).
CREATE FUNCTION rag.cleanup_temporary_sessions() RETURNS bigint
LANGUAGE sql AS $$
    WITH d AS (DELETE FROM rag.chat_sessions
               WHERE is_temporary
                 AND updated_at < now() - make_interval(secs => rag._setting_int('rag.temporary_session_max_age', 86400))
               RETURNING 1)
    SELECT count(*) FROM d
$$;
