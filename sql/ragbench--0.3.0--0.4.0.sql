-- ragbench 0.3.0 -> 0.4.0: roles, owners and tenants enforced with row-level security, least privilege.
--
-- This file is also the last part of a fresh CREATE EXTENSION of 0.4.0 (src/lib.rs includes it with
-- `finalize`): a fresh install and an upgraded one are made by the same statements, and
-- tests/e2e/test_upgrade.py compares the two. Every statement must therefore work on an empty 0.3.0 schema
-- and on one full of data.
--
-- The model (README, "Roles and tenants"):
-- * rag_reader  search, rag.ask, embeddings, chat in its own sessions;
-- * rag_writer  the reader's rights, plus ingest, upload, delete of its own documents and batches;
-- * rag_admin   everything, every owner's and tenant's rows, the queue and the maintenance functions;
-- * rag_worker  the role the background worker acts as (a member of rag_admin).
-- Rows carry `owner` (the role that wrote them) and `tenant` (rag.set_tenant(), '' when none). A role sees
-- the rows of its current tenant owned by itself or by roles it is a member of; rag_admin sees all. Functions run as the caller (SECURITY INVOKER)
-- except the four below marked SECURITY DEFINER (three write shared state, one reads the worker's
-- process list); each pins search_path.

-- 1. Group roles. Roles belong to the cluster, not to a database: created when missing, kept on DROP EXTENSION.
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['rag_reader', 'rag_writer', 'rag_admin', 'rag_worker'] LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
        END IF;
    END LOOP;
    IF NOT pg_catalog.pg_has_role('rag_writer', 'rag_reader', 'MEMBER') THEN GRANT rag_reader TO rag_writer; END IF;
    IF NOT pg_catalog.pg_has_role('rag_admin', 'rag_writer', 'MEMBER') THEN GRANT rag_writer TO rag_admin; END IF;
    IF NOT pg_catalog.pg_has_role('rag_worker', 'rag_admin', 'MEMBER') THEN GRANT rag_admin TO rag_worker; END IF;
END $$;

-- 2. The tenant of the current transaction (src/tenant.rs): backend memory that only rag.set_tenant() writes
-- and every transaction end clears. Not a setting, so no SET, placeholder or connection string can forge it.
CREATE OR REPLACE FUNCTION rag.current_tenant() RETURNS text
STABLE PARALLEL RESTRICTED
LANGUAGE c AS 'MODULE_PATHNAME', 'current_tenant_wrapper';
COMMENT ON FUNCTION rag.current_tenant() IS
  'The tenant set by rag.set_tenant() in this transaction; the empty string when none is set.';

CREATE OR REPLACE FUNCTION rag.set_tenant(tenant text) RETURNS text
VOLATILE PARALLEL UNSAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'set_tenant_wrapper';
COMMENT ON FUNCTION rag.set_tenant(text) IS
  'Act for one tenant until the end of this transaction: every rag function and table then sees and writes only that tenant''s rows of the current role. Once set, a transaction cannot switch to another tenant.';

-- The roles whose rows the current role sees: itself and every role it is a member of. Sharing a corpus is
-- therefore plain role membership: `GRANT app_writer TO app_reader WITH INHERIT FALSE, SET FALSE` lets
-- app_reader read what app_writer ingested without gaining any of app_writer's rights.
CREATE FUNCTION rag.visible_owners() RETURNS text[]
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT array_agg(r.rolname::text) FROM pg_catalog.pg_roles r WHERE pg_catalog.pg_has_role(current_user, r.oid, 'MEMBER') $$;
COMMENT ON FUNCTION rag.visible_owners() IS
  'Roles whose rows the current role sees (row-level security): itself and the roles it is a member of.';

-- 3. Owner and tenant on every row that belongs to someone. Existing rows (an upgrade) belong to the
-- extension's owner, with no tenant.
DROP INDEX rag.chunks_bm25;
DO $$
DECLARE
    t text;
    o text := (SELECT r.rolname FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_roles r ON r.oid = e.extowner
               WHERE e.extname = 'ragbench');
BEGIN
    FOREACH t IN ARRAY ARRAY['document_files', 'chunks', 'chat_sessions', 'chat_messages', 'job_batches', 'job_tasks'] LOOP
        EXECUTE pg_catalog.format('ALTER TABLE rag.%I ADD COLUMN owner text NOT NULL DEFAULT current_user, '
                                  'ADD COLUMN tenant text NOT NULL DEFAULT rag.current_tenant()', t);
        EXECUTE pg_catalog.format('UPDATE rag.%I SET owner = $1 WHERE owner <> $1', t) USING o;
    END LOOP;
END $$;

-- The same bytes uploaded by two owners (or two tenants) are two documents.
ALTER TABLE rag.document_files DROP CONSTRAINT document_files_file_hash_key;
ALTER TABLE rag.document_files ADD CONSTRAINT document_files_owner_tenant_file_hash_key UNIQUE (owner, tenant, file_hash);

-- BM25 with owner and tenant as literal (untokenised) fields: pg_search applies the row-level security
-- condition inside its top-k scan, so a tenant gets k hits even when others hold most of the corpus.
CREATE INDEX chunks_bm25 ON rag.chunks
USING bm25 (id, (content_with_context::pdb.simple('stemmer=english', 'stopwords_language=english')),
            (owner::pdb.literal), (tenant::pdb.literal))
WITH (key_field = 'id', mutable_segment_rows = 0);

-- 4. Row-level security: own rows of the current tenant; rag_admin (and so the worker) every row.
-- The sub-selects matter: written as `(SELECT ...)` the caller and tenant are evaluated when the statement
-- runs, and pg_search applies them as index terms at that time. Written plainly, pg_search 0.21.14 folds
-- `rag.current_tenant()` into its query when the statement is planned, so a cached (prepared) plan would
-- keep the tenant it was planned in (tests/e2e/test_tenants.py checks a generic plan across tenants).
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['document_files', 'chunks', 'chat_sessions', 'chat_messages', 'job_batches', 'job_tasks'] LOOP
        EXECUTE pg_catalog.format('ALTER TABLE rag.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE pg_catalog.format(
            'CREATE POLICY own_rows ON rag.%I USING (owner = ANY ((SELECT rag.visible_owners())::text[]) AND tenant = (SELECT rag.current_tenant()))', t);
        EXECUTE pg_catalog.format('CREATE POLICY admin_rows ON rag.%I TO rag_admin USING (true)', t);
    END LOOP;
END $$;

-- The listing runs as its caller (not as the view's owner), so row-level security applies to it.
CREATE OR REPLACE VIEW rag.documents WITH (security_invoker = true) AS
SELECT d.id, d.file_name, d.file_type, d.title, d.file_size_bytes,
       (SELECT count(*) FROM rag.chunks c WHERE c.document_id = d.id) AS chunk_count,
       d.uploaded_at, d.metadata, d.owner, d.tenant
FROM rag.document_files d;

-- 5. Functions that write shared state: SECURITY DEFINER, search_path pinned, arguments checked.

-- Register an embedding model and build its partial HNSW index (CREATE INDEX needs the table's owner).
-- Called by ingestion and rag.reembed the first time a model stores vectors.
CREATE FUNCTION rag._register_model(model text, dimensions int, m int, ef_construction int) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    stored int;
    idx text;
    vec text := (SELECT e.extnamespace::regnamespace::text FROM pg_extension e WHERE e.extname = 'vector');
BEGIN
    IF model IS NULL OR length(model) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'embedding model name must be 1 to 200 characters' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF dimensions IS NULL OR dimensions NOT BETWEEN 1 AND 16000 THEN
        RAISE EXCEPTION 'embedding model ''%'' has % dimensions; 1 to 16000 are supported', model, dimensions
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF m IS NULL OR m NOT BETWEEN 2 AND 100 OR ef_construction IS NULL OR ef_construction NOT BETWEEN 4 AND 1000 THEN
        RAISE EXCEPTION 'HNSW parameters out of range: m = %, ef_construction = %', m, ef_construction
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Check rag.hnsw_m and rag.hnsw_ef_construction.';
    END IF;
    SELECT e.dimensions INTO stored FROM rag.embedding_models e WHERE e.model = _register_model.model;
    IF stored IS NOT NULL AND stored <> dimensions THEN
        RAISE EXCEPTION 'embedding model ''%'' returned %-dimensional vectors, but its stored vectors have %', model, dimensions, stored
            USING ERRCODE = 'data_exception',
                  HINT = 'Configure the model that made the stored vectors, or give the new one another rag.embedding_model name.';
    END IF;
    idx := 'chunks_hnsw_' || left(regexp_replace(lower(model), '[^a-z0-9]', '_', 'g'), 32) || '_'
           || left(encode(sha256(convert_to(model, 'UTF8')), 'hex'), 8);
    INSERT INTO rag.embedding_models (model, dimensions, index_name) VALUES (model, dimensions, idx)
    ON CONFLICT ON CONSTRAINT embedding_models_pkey DO NOTHING;
    SELECT e.index_name INTO idx FROM rag.embedding_models e WHERE e.model = _register_model.model;
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON rag.chunks USING hnsw ((embedding::%s.vector(%s)) %s.vector_cosine_ops) '
                   'WITH (m = %s, ef_construction = %s) WHERE embedding_model = %L',
                   idx, vec, dimensions, vec, m, ef_construction, model);
END $$;

-- Send the queue messages of a batch's new tasks (writers have no right on the queue itself). Only tasks
-- without a message are sent, so calling it for any batch id can queue nothing twice.
CREATE FUNCTION rag._enqueue_batch(batch_id uuid) RETURNS int
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    WITH sent AS (
        UPDATE rag.job_tasks t SET msg_id = (SELECT pgmq.send('rag_documents', jsonb_build_object('task_id', t.id)))
        WHERE t.batch_id = $1 AND t.status = 'pending' AND t.msg_id IS NULL
        RETURNING 1)
    SELECT count(*)::int FROM sent
$$;

-- rag.verify(repair => true) may REINDEX the BM25 index, which needs the table's owner.
ALTER FUNCTION rag.verify(boolean) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

-- 6. Functions for owners of batches.

-- The notification channel of a batch (NULL when the batch is not the caller's). PostgreSQL has no
-- privileges on LISTEN, so progress goes to one channel per batch, named by its unguessable id.
CREATE FUNCTION rag.progress_channel(batch_id uuid) RETURNS text
LANGUAGE sql STABLE
AS $$ SELECT 'rag_progress_' || replace(b.id::text, '-', '') FROM rag.job_batches b WHERE b.id = $1 $$;

CREATE FUNCTION rag.delete_batch(batch_id uuid) RETURNS boolean
LANGUAGE sql
AS $$
    WITH d AS (DELETE FROM rag.job_batches b WHERE b.id = $1 RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM d)
$$;
COMMENT ON FUNCTION rag.delete_batch(uuid) IS
  'Delete a batch and its tasks (documents already ingested stay; delete them with rag.delete_document).';

-- A session id that exists but is not the caller's is refused like a deleted one, without saying whose it is.
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
        RAISE EXCEPTION 'chat session % is not one of this role''s sessions (in this tenant), or was deleted meanwhile', session_id
            USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'Start a new session with another id.';
    END IF;
    INSERT INTO rag.chat_messages (session_id, role, content, metadata)
    VALUES (session_id, role, content, metadata) RETURNING id INTO new_id;
    UPDATE rag.chat_sessions s SET updated_at = now() WHERE s.id = session_id;
    RETURN new_id;
END $$;

-- 7. Operations: what the queue, the vectors, the indexes and the worker are doing, in one call.
CREATE OR REPLACE FUNCTION rag.embedding_model_id() RETURNS text
STABLE PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'embedding_model_id_wrapper';
COMMENT ON FUNCTION rag.embedding_model_id() IS
  'The provider/model id of the configured embedder (what new vectors are stored as), without loading it.';

-- The worker processes of this database (SECURITY DEFINER: pg_stat_activity hides other roles' backends
-- from roles without pg_read_all_stats).
CREATE FUNCTION rag._worker_processes(OUT n bigint, OUT pids text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT count(*), string_agg(a.pid::text || ' since ' || a.backend_start::text, ', ' ORDER BY a.pid)
    FROM pg_stat_activity a WHERE a.backend_type = 'ragbench worker' AND a.datname = current_database()
$$;

CREATE FUNCTION rag.status()
RETURNS TABLE (section text, metric text, value bigint, detail text)
LANGUAGE sql STABLE
AS $$
    WITH q AS (SELECT count(*) AS depth, max(now() - enqueued_at) AS oldest,
                      count(*) FILTER (WHERE vt > now()) AS invisible
               FROM pgmq.q_rag_documents),
         t AS (SELECT count(*) FILTER (WHERE status = 'pending') AS pending,
                      count(*) FILTER (WHERE status = 'processing') AS processing,
                      count(*) FILTER (WHERE status = 'failed') AS failed,
                      max(updated_at) FILTER (WHERE status IN ('completed', 'failed')) AS last_done
               FROM rag.job_tasks),
         last_failure AS (SELECT file_name, error_message, updated_at FROM rag.job_tasks
                          WHERE status = 'failed' ORDER BY updated_at DESC LIMIT 1),
         c AS (SELECT count(*) AS chunks, count(*) FILTER (WHERE embedding IS NULL) AS missing,
                      count(*) FILTER (WHERE embedding IS NOT NULL AND embedding_model <> rag.embedding_model_id()) AS stale
               FROM rag.chunks),
         seg AS (SELECT count(*) AS segments, coalesce(sum(num_docs), 0) AS docs
                 FROM paradedb.index_info('rag.chunks_bm25') WHERE visible AND NOT recyclable),
         w AS (SELECT * FROM rag._worker_processes())
    SELECT * FROM (VALUES
        ('queue', 'messages', (SELECT depth FROM q), 'in pgmq queue rag_documents'),
        ('queue', 'messages in work', (SELECT invisible FROM q), 'claimed by a consumer (visibility timeout running)'),
        ('queue', 'oldest message age s', (SELECT extract(epoch FROM oldest)::bigint FROM q), NULL),
        ('queue', 'files pending', (SELECT pending FROM t), NULL),
        ('queue', 'files processing', (SELECT processing FROM t), NULL),
        ('queue', 'files failed', (SELECT failed FROM t), 'rag.batch_files() shows why; rag.retry_failed() queues them again'),
        ('queue', 'dead letters', (SELECT count(*) FROM rag.dead_letters), 'malformed messages, see rag.dead_letters'),
        ('documents', 'documents', (SELECT count(*) FROM rag.document_files), NULL),
        ('documents', 'chunks', (SELECT chunks FROM c), NULL),
        ('vectors', 'configured model', NULL, rag.embedding_model_id()),
        ('vectors', 'missing', (SELECT missing FROM c), 'chunks without a vector; CALL rag.reembed_all()'),
        ('vectors', 'stale', (SELECT stale FROM c), 'vectors of another model than the configured one; CALL rag.reembed_all()'),
        ('indexes', 'bm25 segments', (SELECT segments FROM seg), 'pg_search segments of rag.chunks_bm25'),
        ('indexes', 'bm25 bytes', pg_relation_size('rag.chunks_bm25'), NULL),
        ('worker', 'processes', (SELECT n FROM w), (SELECT pids FROM w)),
        ('worker', 'last file done age s', (SELECT extract(epoch FROM now() - last_done)::bigint FROM t),
                   (SELECT last_done::text FROM t)),
        ('worker', 'last failure age s', (SELECT extract(epoch FROM now() - updated_at)::bigint FROM last_failure),
                   (SELECT file_name || ': ' || error_message FROM last_failure))
    ) v(section, metric, value, detail)
    UNION ALL
    SELECT 'vectors', 'model ' || m.model, (SELECT count(*) FROM rag.chunks x WHERE x.embedding_model = m.model),
           m.dimensions || ' dimensions, index ' || m.index_name || ', ' || pg_size_pretty(pg_relation_size(to_regclass('rag.' || quote_ident(m.index_name))))
    FROM rag.embedding_models m
$$;
COMMENT ON FUNCTION rag.status() IS
  'One row per measure: the queue (depth, age, pending, failed, dead letters), documents and chunks, vectors per model, missing and stale, the BM25 segments and sizes, the worker processes and their last file and failure. Counts follow row-level security: rag_admin sees all.';

-- 8. Privileges. Nothing for PUBLIC but rag.current_tenant() and rag.visible_owners() (row-level security
-- and column defaults call them).
REVOKE ALL ON ALL TABLES IN SCHEMA rag FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA rag FROM PUBLIC;
REVOKE EXECUTE ON ALL ROUTINES IN SCHEMA rag FROM PUBLIC;
GRANT EXECUTE ON FUNCTION rag.current_tenant(), rag.visible_owners() TO PUBLIC;
GRANT EXECUTE ON FUNCTION rag.embedding_model_id() TO rag_reader;
GRANT USAGE ON SCHEMA rag TO rag_reader;

-- reader: search, ask, embed, its own chat sessions
GRANT SELECT ON rag.document_files, rag.chunks, rag.documents, rag.embedding_models TO rag_reader;
GRANT SELECT, INSERT, UPDATE, DELETE ON rag.chat_sessions, rag.chat_messages TO rag_reader;
GRANT USAGE ON SEQUENCE rag.chat_messages_id_seq TO rag_reader;
GRANT EXECUTE ON FUNCTION
    rag.set_tenant(text), rag._setting_int(text, int), rag._check_search_type(text), rag._check_title(text),
    rag.bm25_search(text, int), rag.vector_search(text, int),
    rag.hybrid_search,
    rag.embed(text, text), rag.embed_array(text, text), rag.embed_many(text[], text), rag.embed_arrays(text[], text),
    rag.create_session(text, text, text, boolean), rag.list_sessions(boolean), rag.rename_session(uuid, text),
    rag.archive_session(uuid, boolean), rag.delete_session(uuid), rag.chat_append(uuid, text, text, jsonb),
    rag.chat_history(uuid, int), rag.ask(uuid, text, int)
TO rag_reader;

-- writer: ingest, upload, delete its own documents and batches, follow its batches
GRANT INSERT, DELETE ON rag.document_files, rag.chunks TO rag_writer;
GRANT SELECT, INSERT, DELETE ON rag.job_batches, rag.job_tasks TO rag_writer;
GRANT EXECUTE ON FUNCTION
    rag.ingest_document(text, text, jsonb), rag.ingest_document(text, bytea, jsonb), rag.upload(text[], bytea[], jsonb),
    rag.delete_document(uuid), rag.delete_batch(uuid), rag.batch_status(uuid), rag.batch_files(uuid),
    rag.progress_channel(uuid), rag._register_model(text, int, int, int), rag._enqueue_batch(uuid)
TO rag_writer;

-- admin: everything in the schema, and the queue
GRANT ALL ON ALL TABLES IN SCHEMA rag TO rag_admin;
GRANT ALL ON ALL SEQUENCES IN SCHEMA rag TO rag_admin;
GRANT EXECUTE ON ALL ROUTINES IN SCHEMA rag TO rag_admin;
GRANT USAGE ON SCHEMA pgmq TO rag_admin;
GRANT SELECT, INSERT, UPDATE, DELETE ON pgmq.q_rag_documents, pgmq.a_rag_documents TO rag_admin;
GRANT USAGE, SELECT, UPDATE ON SEQUENCE pgmq.q_rag_documents_msg_id_seq TO rag_admin;
