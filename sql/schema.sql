-- ragbench schema, version 0.1.0. Loaded first by CREATE EXTENSION (pgrx bootstrap); objects land in
-- schema `rag` (the control file's schema). Later versions change it only through
-- sql/ragbench--<from>--<to>.sql upgrade scripts.

-- Source documents. The view rag.documents is the user-facing listing.
CREATE TABLE rag.document_files (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    file_name       text NOT NULL CHECK (length(file_name) BETWEEN 1 AND 1024),
    file_type       text NOT NULL,
    title           text,
    file_size_bytes bigint NOT NULL CHECK (file_size_bytes >= 0),
    file_hash       text NOT NULL UNIQUE,            -- sha256 of the content: same content, same document
    uploaded_at     timestamptz NOT NULL DEFAULT now(),
    metadata        jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object')
);

-- Chunks. The embedding column has no fixed dimension: each row records the model that made its vector,
-- and every model gets its own partial HNSW index over embedding::vector(<its dimensions>)
-- (see rag.embedding_models), so switching model never mixes vector spaces nor needs a schema change.
CREATE TABLE rag.chunks (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    document_id          uuid NOT NULL REFERENCES rag.document_files(id) ON DELETE CASCADE,
    chunk_index          integer NOT NULL CHECK (chunk_index >= 0),
    content              text NOT NULL,
    content_with_context text NOT NULL,               -- "title > heading path" + content: what is indexed
    token_count          integer,
    embedding            vector,
    embedding_model      text,
    metadata             jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    created_at           timestamptz NOT NULL DEFAULT now(),
    UNIQUE (document_id, chunk_index),
    CHECK ((embedding IS NULL) = (embedding_model IS NULL))
);

-- True BM25 (pg_search) over the chunk text with its heading context: English stemming, English stopwords.
-- mutable_segment_rows = 0: pg_search's default keeps up to 1,000 recent rows in a "mutable segment" that
-- every search re-tokenizes and re-stems; measured at 12k chunks that cost 65 ms of every BM25 query (the
-- whole leg took 110 ms, 6 ms without it). Inserts write immutable segments instead, merged in background.
CREATE INDEX chunks_bm25 ON rag.chunks
USING bm25 (id, (content_with_context::pdb.simple('stemmer=english', 'stopwords_language=english')))
WITH (key_field = 'id', mutable_segment_rows = 0);

CREATE INDEX chunks_metadata ON rag.chunks USING gin (metadata jsonb_path_ops);

-- One row per embedding model that has stored vectors: its dimension and its HNSW index.
CREATE TABLE rag.embedding_models (
    model       text PRIMARY KEY,
    dimensions  integer NOT NULL CHECK (dimensions BETWEEN 1 AND 16000),
    index_name  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE VIEW rag.documents AS
SELECT d.id, d.file_name, d.file_type, d.title, d.file_size_bytes,
       (SELECT count(*) FROM rag.chunks c WHERE c.document_id = d.id) AS chunk_count,
       d.uploaded_at, d.metadata
FROM rag.document_files d;

-- Chat sessions and messages (durable replacement for RedisChatStore).
CREATE TABLE rag.chat_sessions (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    title        text NOT NULL DEFAULT 'New Chat' CHECK (length(title) <= 1024),
    llm_model    text,
    search_type  text NOT NULL DEFAULT 'hybrid' CHECK (search_type IN ('hybrid', 'bm25', 'vector')),
    is_archived  boolean NOT NULL DEFAULT false,
    is_temporary boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE rag.chat_messages (
    id         bigserial PRIMARY KEY,
    session_id uuid NOT NULL REFERENCES rag.chat_sessions(id) ON DELETE CASCADE,
    role       text NOT NULL CHECK (role IN ('user', 'assistant', 'system', 'tool')),
    content    text NOT NULL,
    metadata   jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX chat_messages_session ON rag.chat_messages (session_id, id);

-- Asynchronous ingestion: batches, one task per file, and the pgmq queue that carries the tasks.
CREATE TABLE rag.job_batches (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    total_tasks     integer NOT NULL CHECK (total_tasks >= 0),
    completed_tasks integer NOT NULL DEFAULT 0,
    failed_tasks    integer NOT NULL DEFAULT 0,
    status          text NOT NULL DEFAULT 'pending',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE rag.job_tasks (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    batch_id         uuid NOT NULL REFERENCES rag.job_batches(id) ON DELETE CASCADE,
    file_name        text NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'processing', 'completed', 'failed')),
    document_id      uuid,
    file_size_bytes  bigint NOT NULL DEFAULT 0,
    content          bytea,                           -- the uploaded file; cleared once ingested
    metadata         jsonb NOT NULL DEFAULT '{}',
    msg_id           bigint,                          -- its pgmq message in queue rag_documents
    claim_token      uuid,                            -- the current claim; only it may complete or fail the task
    attempts         integer NOT NULL DEFAULT 0,
    total_chunks     integer NOT NULL DEFAULT 0,
    completed_chunks integer NOT NULL DEFAULT 0,
    error_message    text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX job_tasks_batch ON rag.job_tasks (batch_id, status);

-- Batch progress, derived from its tasks (one indexed scan, correct at any batch size).
CREATE FUNCTION rag.batch_status(batch_id uuid)
RETURNS TABLE (status text, total_files int, pending int, processing int, completed int,
               failed int, chunks_done bigint, chunks_total bigint, percent numeric, created_at timestamptz,
               updated_at timestamptz, errors jsonb)
LANGUAGE sql STABLE
AS $$
    WITH t AS (
        SELECT count(*)::int AS total,
               count(*) FILTER (WHERE jt.status = 'pending')::int AS pending,
               count(*) FILTER (WHERE jt.status = 'processing')::int AS processing,
               count(*) FILTER (WHERE jt.status = 'completed')::int AS completed,
               count(*) FILTER (WHERE jt.status = 'failed')::int AS failed,
               coalesce(sum(jt.completed_chunks), 0)::bigint AS chunks_done,
               coalesce(sum(jt.total_chunks), 0)::bigint AS chunks_total,
               max(jt.updated_at) AS updated_at,
               coalesce(jsonb_agg(jsonb_build_object('task_id', jt.id, 'file_name', jt.file_name,
                                                     'attempts', jt.attempts, 'error', jt.error_message)
                                  ORDER BY jt.file_name) FILTER (WHERE jt.error_message IS NOT NULL), '[]') AS errors
        FROM rag.job_tasks jt WHERE jt.batch_id = $1
    )
    SELECT CASE WHEN t.total = 0 THEN 'completed'
                WHEN t.completed = t.total THEN 'completed'
                WHEN t.failed = t.total THEN 'failed'
                WHEN t.completed + t.failed = t.total THEN 'partially failed'
                WHEN t.processing > 0 OR t.completed + t.failed > 0 THEN 'processing'
                ELSE 'pending' END,
           t.total, t.pending, t.processing, t.completed, t.failed, t.chunks_done, t.chunks_total,
           CASE WHEN t.total = 0 THEN 100 ELSE round(100.0 * (t.completed + t.failed) / t.total, 1) END,
           b.created_at, greatest(b.updated_at, t.updated_at), t.errors
    FROM rag.job_batches b, t
    WHERE b.id = $1
$$;

-- Per-file state of a batch.
CREATE FUNCTION rag.batch_files(batch_id uuid)
RETURNS TABLE (task_id uuid, file_name text, status text, attempts int, chunks_done int, chunks_total int,
               document_id uuid, error text, updated_at timestamptz)
LANGUAGE sql STABLE
AS $$
    SELECT t.id, t.file_name, t.status, t.attempts, t.completed_chunks, t.total_chunks, t.document_id,
           t.error_message, t.updated_at
    FROM rag.job_tasks t WHERE t.batch_id = $1 ORDER BY t.file_name, t.id
$$;

SELECT pgmq.create('rag_documents');

-- Queue messages that could not be processed at all (malformed, not a task): archived in pgmq, the reason here.
CREATE TABLE rag.dead_letters (
    id          bigserial PRIMARY KEY,
    queue_name  text NOT NULL,
    msg_id      bigint NOT NULL,
    message     text,
    reason      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
