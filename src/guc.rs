//! Configuration parameters (GUCs). Every one is documented in README.md ("Configuration").
//!
//! Settings that point the server at another machine or carry a secret (`rag.embedding_url`,
//! `rag.embedding_api_key`, `rag.llm_url`, `rag.llm_api_key`, `rag.model_dir`) are superuser-only:
//! a non-superuser can neither set nor read them.

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};
use std::ffi::CString;

pub static CHUNK_SIZE: GucSetting<i32> = GucSetting::<i32>::new(200);
pub static CHUNK_OVERLAP: GucSetting<i32> = GucSetting::<i32>::new(32);
pub static MAX_DOCUMENT_BYTES: GucSetting<i32> = GucSetting::<i32>::new(16 * 1024 * 1024);
pub static MAX_CHUNKS_PER_DOCUMENT: GucSetting<i32> = GucSetting::<i32>::new(20_000);
pub static MAX_NESTING_DEPTH: GucSetting<i32> = GucSetting::<i32>::new(64);
pub static MAX_METADATA_BYTES: GucSetting<i32> = GucSetting::<i32>::new(64 * 1024);

pub static EMBEDDING_PROVIDER: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"builtin"));
pub static EMBEDDING_MODEL: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static EMBEDDING_URL: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static EMBEDDING_API_KEY_FILE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static EMBEDDING_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(30_000);
pub static EMBEDDING_MAX_RETRIES: GucSetting<i32> = GucSetting::<i32>::new(5);
pub static EMBEDDING_BATCH_SIZE: GucSetting<i32> = GucSetting::<i32>::new(32);
pub static MODEL_DIR: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static EMBEDDING_MODE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"service"));
pub static BUILTIN_RUNTIME: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"auto"));
pub static ONNXRUNTIME_LIBRARY: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

pub static HNSW_M: GucSetting<i32> = GucSetting::<i32>::new(16);
pub static HNSW_EF_CONSTRUCTION: GucSetting<i32> = GucSetting::<i32>::new(64);
pub static HNSW_EF_SEARCH: GucSetting<i32> = GucSetting::<i32>::new(100);
pub static SEARCH_PARALLEL_WORKERS: GucSetting<i32> = GucSetting::<i32>::new(0);

pub static WORKER_DATABASES: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static WORKER_ROLE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"rag_worker"));
pub static WORKERS_PER_DATABASE: GucSetting<i32> = GucSetting::<i32>::new(1);
pub static WORKER_POLL_INTERVAL_MS: GucSetting<i32> = GucSetting::<i32>::new(1000);
pub static WORKER_BATCH_SIZE: GucSetting<i32> = GucSetting::<i32>::new(10);
pub static MAX_ATTEMPTS: GucSetting<i32> = GucSetting::<i32>::new(3);
pub static VISIBILITY_TIMEOUT_S: GucSetting<i32> = GucSetting::<i32>::new(60);
pub static BM25_AUTO_REPAIR: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static BM25_COMPACT_SEGMENTS: GucSetting<i32> = GucSetting::<i32>::new(8);
pub static BM25_COMPACT_QUIET_S: GucSetting<i32> = GucSetting::<i32>::new(10);
pub static BM25_MAX_QUERY_TERMS: GucSetting<i32> = GucSetting::<i32>::new(32);
pub static SEARCH_TIMING: GucSetting<bool> = GucSetting::<bool>::new(false);
pub static DEBUG_ABORT_ON_FILE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

pub static MAX_MESSAGE_BYTES: GucSetting<i32> = GucSetting::<i32>::new(4 * 1024 * 1024);
pub static TEMPORARY_SESSION_MAX_AGE_S: GucSetting<i32> = GucSetting::<i32>::new(86_400);

pub static LLM_PROVIDER: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"extractive"));
pub static LLM_MODEL: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static LLM_URL: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static LLM_API_KEY_FILE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static MAX_HTTP_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(300_000);
pub static MAX_HTTP_RETRIES: GucSetting<i32> = GucSetting::<i32>::new(5);
pub static MAX_EMBEDDING_BATCH_SIZE: GucSetting<i32> = GucSetting::<i32>::new(256);
pub static ALLOWED_EMBEDDING_MODELS: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static ALLOWED_LLM_MODELS: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static LLM_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(120_000);
pub static LLM_MAX_RETRIES: GucSetting<i32> = GucSetting::<i32>::new(3);
pub static CHAT_TOKEN_BUDGET: GucSetting<i32> = GucSetting::<i32>::new(3000);
pub static CHAT_HISTORY_MESSAGES: GucSetting<i32> = GucSetting::<i32>::new(10);

/// Read a string GUC as an owned Rust string; `None` when unset or empty.
pub fn string(setting: &GucSetting<Option<CString>>) -> Option<String> {
    setting
        .get()
        .map(|s| s.to_string_lossy().trim().to_string())
        .filter(|s| !s.is_empty())
}

pub fn register() {
    GucRegistry::define_bool_guc(
        c"rag.search_timing",
        c"Whether the search functions report where their time went, as a NOTICE per call.",
        c"Phases in milliseconds (query embedding, candidates, fusion, result rows; total), measured inside \
          the function: to tell a slow embedding provider from a slow index.",
        &SEARCH_TIMING,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"rag.bm25_auto_repair",
        c"Whether the background worker checks the BM25 index at start (and on reload) and repairs it.",
        c"pg_search 0.21 does not WAL-log its index: after a crash it can miss rows or be damaged. The worker \
          re-indexes missing rows, or rebuilds a damaged index; rag.verify() does the same on demand.",
        &BM25_AUTO_REPAIR,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"rag.bm25_compact_segments",
        c"The worker rebuilds the BM25 index (concurrently) when it has more segments than this; 0 turns it off.",
        c"Checked while the queue is idle, after the count has not changed for rag.bm25_compact_quiet. Every \
          search pays per segment. rag.compact() asks for a rebuild at once.",
        &BM25_COMPACT_SEGMENTS,
        0,
        100_000,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"rag.bm25_max_query_terms",
        c"A BM25 query with more distinct terms than this keeps only its highest-weight terms; 0 keeps all.",
        c"Weight is the term's count in the query times its IDF (from a sample the worker keeps). BM25 cost \
          grows with the terms: a 200-word question costs ten times a short one uncapped. Kept terms score as \
          in the full query.",
        &BM25_MAX_QUERY_TERMS,
        0,
        10_000,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"rag.bm25_compact_quiet",
        c"How long the BM25 segment count must stay unchanged (writes paused) before the worker compacts.",
        c"So that a rebuild does not start in the middle of a load.",
        &BM25_COMPACT_QUIET_S,
        1,
        86_400,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_string_guc(
        c"rag.debug_abort_on_file",
        c"Test only: abort the process that processes a queued file of this name (superuser only).",
        c"Used by the end-to-end tests to show that a file that kills its worker is given up on.",
        &DEBUG_ABORT_ON_FILE,
        GucContext::Suset,
        GucFlags::SUPERUSER_ONLY | GucFlags::NO_SHOW_ALL,
    );
    GucRegistry::define_int_guc(
        c"rag.chunk_size",
        c"Maximum chunk size, in tokens of the embedding model's tokenizer.",
        c"Chunks are packed from whole sentences up to this many tokens. The default fits the built-in \
          model's 256-token window together with the heading context.",
        &CHUNK_SIZE,
        16,
        8192,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"rag.chunk_overlap",
        c"Tokens of trailing whole sentences repeated at the start of the next chunk.",
        c"Must be smaller than rag.chunk_size.",
        &CHUNK_OVERLAP,
        0,
        4096,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"rag.max_document_bytes",
        c"Largest document rag.ingest_document accepts, in bytes.",
        c"Larger documents are refused with an error instead of tying up a backend for minutes. \
          Also bounds the text extracted from a document (PDF pages summed, DOCX, list prefixes) and, \
          times 4, the XML of a DOCX.",
        &MAX_DOCUMENT_BYTES,
        1024,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_BYTE,
    );
    GucRegistry::define_int_guc(
        c"rag.max_chunks_per_document",
        c"Most chunks one document may be split into.",
        c"A document that would yield more chunks is refused with an error.",
        &MAX_CHUNKS_PER_DOCUMENT,
        1,
        i32::MAX,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"rag.max_nesting_depth",
        c"Deepest nesting of lists (HTML, Markdown) and tables (DOCX) a document may have.",
        c"A document nested deeper is refused with an error.",
        &MAX_NESTING_DEPTH,
        1,
        100_000,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"rag.max_metadata_bytes",
        c"Largest metadata of one document (serialized JSON), in bytes.",
        c"Metadata is stored with every chunk; metadata size times chunk count must also stay within rag.max_document_bytes.",
        &MAX_METADATA_BYTES,
        0,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_BYTE,
    );
    GucRegistry::define_string_guc(
        c"rag.embedding_provider",
        c"Embedding provider: builtin (offline all-MiniLM-L6-v2), ollama, or openai (any OpenAI-compatible server).",
        c"",
        &EMBEDDING_PROVIDER,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"rag.embedding_mode",
        c"Where the built-in model runs: service (one shared process per server) or backend (a copy in each backend).",
        c"service needs shared_preload_libraries; without it the backend path is used. The service loads the model \
          from the server's rag.model_dir once; backend loads the model into every backend that embeds (about 120 MB with the int8 runtime).",
        &EMBEDDING_MODE,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"rag.builtin_runtime",
        c"What runs the built-in model: onnx (int8, ONNX Runtime), candle (float32), or auto.",
        c"auto is onnx when model_qint8.onnx (or model_int8.onnx) and ONNX Runtime are installed (make setup, the Docker image), else candle. \
          Both give vectors of the same model (cosine >= 0.99 to each other), so a corpus embedded by one is searched \
          with the other. The embedding service reads it when it starts.",
        &BUILTIN_RUNTIME,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"rag.onnxruntime_library",
        c"Path of libonnxruntime.so (superuser only); empty means $sharedir/ragbench/onnxruntime/libonnxruntime.so.",
        c"A process opens ONNX Runtime once; a change applies to new backends and a restarted embedding service.",
        &ONNXRUNTIME_LIBRARY,
        GucContext::Suset,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_string_guc(
        c"rag.embedding_model",
        c"Embedding model name; empty means the provider's default.",
        c"Defaults: builtin all-MiniLM-L6-v2, ollama nomic-embed-text, openai text-embedding-3-small.",
        &EMBEDDING_MODEL,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"rag.embedding_url",
        c"Base URL of the HTTP embedding provider (superuser only).",
        c"Defaults: ollama http://127.0.0.1:11434, openai https://api.openai.com.",
        &EMBEDDING_URL,
        GucContext::Suset,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_string_guc(
        c"rag.embedding_api_key_file",
        c"File holding the API key sent as a Bearer token to rag.embedding_url (superuser only).",
        c"The key itself is never a setting (PostgreSQL logs changed settings). It is sent only to \
          rag.embedding_url, which must be set with it; the server's OS user must be able to read the file.",
        &EMBEDDING_API_KEY_FILE,
        GucContext::Suset,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_int_guc(
        c"rag.embedding_timeout_ms",
        c"Timeout of one HTTP request to the embedding provider.",
        c"",
        &EMBEDDING_TIMEOUT_MS,
        100,
        600_000,
        GucContext::Userset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"rag.embedding_max_retries",
        c"Retries of a failed HTTP embedding request (connection errors, timeouts, 5xx, 429).",
        c"A 429 or 503 answer with Retry-After is waited out and does not count as a failed attempt.",
        &EMBEDDING_MAX_RETRIES,
        0,
        100,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"rag.embedding_batch_size",
        c"Texts per embedding request or model batch.",
        c"",
        &EMBEDDING_BATCH_SIZE,
        1,
        4096,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"rag.model_dir",
        c"Folder of the built-in model files (superuser only); empty means $sharedir/ragbench/all-MiniLM-L6-v2.",
        c"",
        &MODEL_DIR,
        GucContext::Suset,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_int_guc(
        c"rag.hnsw_m",
        c"HNSW m of the vector index created for a new embedding model.",
        c"",
        &HNSW_M,
        2,
        100,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"rag.hnsw_ef_construction",
        c"HNSW ef_construction of the vector index created for a new embedding model.",
        c"",
        &HNSW_EF_CONSTRUCTION,
        4,
        1000,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"rag.hnsw_ef_search",
        c"HNSW ef_search used by rag.vector_search and rag.hybrid_search (raised to the candidate count when that is larger).",
        c"",
        &HNSW_EF_SEARCH,
        1,
        1000,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"rag.search_parallel_workers",
        c"Parallel workers the search functions' statements may use (their max_parallel_workers_per_gather); 0: none.",
        c"pg_search can split a BM25 top-k scan over its index segments. At 1M chunks on 2 cores, 2 workers helped one \
          client as an application role and cut throughput from 4 concurrent clients on by about 40 %: worth it with idle cores.",
        &SEARCH_PARALLEL_WORKERS,
        0,
        1024,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"rag.worker_databases",
        c"Restricts the ingestion background workers to these comma-separated databases; empty: every database with the extension.",
        c"The ragbench launcher starts workers for every database in which CREATE EXTENSION ragbench has run \
          (at once on CREATE EXTENSION, and by scanning pg_database); this setting only narrows that set.",
        &WORKER_DATABASES,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"rag.worker_role",
        c"Role the ingestion worker acts as while it processes files (default rag_worker, created by the extension).",
        c"The worker connects as the bootstrap superuser only to wait for the extension and to repair the BM25 \
          index after a crash (REINDEX needs the table's owner); it reads the queue and writes documents as this \
          role, on behalf of each file's uploader. Empty: stay the bootstrap superuser.",
        &WORKER_ROLE,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"rag.workers_per_database",
        c"Ingestion background workers per database (needs a restart); 0 disables the workers and their launcher.",
        c"",
        &WORKERS_PER_DATABASE,
        0,
        32,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"rag.worker_poll_interval_ms",
        c"How long an idle ingestion worker sleeps between looks at the queue.",
        c"",
        &WORKER_POLL_INTERVAL_MS,
        10,
        3_600_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"rag.worker_batch_size",
        c"Files an ingestion worker reads from the queue and processes together.",
        c"Their chunks are embedded in full batches across files and their documents stored in one transaction.",
        &WORKER_BATCH_SIZE,
        1,
        10_000,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"rag.max_attempts",
        c"Attempts at ingesting a queued file before its task is marked failed.",
        c"A 429/503 answer with Retry-After from the embedding server is waited out, not counted.",
        &MAX_ATTEMPTS,
        1,
        100,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"rag.visibility_timeout",
        c"Seconds a claimed queue message stays invisible; after a crash it is delivered again then.",
        c"",
        &VISIBILITY_TIMEOUT_S,
        5,
        86_400,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"rag.max_message_bytes",
        c"Largest chat message rag.chat_append accepts, in bytes.",
        c"",
        &MAX_MESSAGE_BYTES,
        1024,
        i32::MAX,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"rag.temporary_session_max_age",
        c"Idle seconds after which the background worker deletes a temporary chat session.",
        c"",
        &TEMPORARY_SESSION_MAX_AGE_S,
        1,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"rag.llm_provider",
        c"Answer generator of rag.ask: extractive (offline, quotes the sources), ollama, or openai.",
        c"",
        &LLM_PROVIDER,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"rag.llm_model",
        c"Chat model for rag.ask; a session's llm_model overrides it. Defaults: ollama llama3.2, openai gpt-4o-mini.",
        c"",
        &LLM_MODEL,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"rag.llm_url",
        c"Base URL of the chat model server (superuser only).",
        c"Defaults: ollama http://127.0.0.1:11434, openai https://api.openai.com.",
        &LLM_URL,
        GucContext::Suset,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_string_guc(
        c"rag.llm_api_key_file",
        c"File holding the API key sent as a Bearer token to rag.llm_url (superuser only).",
        c"The key itself is never a setting. It is sent only to rag.llm_url, which must be set with it.",
        &LLM_API_KEY_FILE,
        GucContext::Suset,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_int_guc(
        c"rag.max_http_timeout_ms",
        c"Cap on rag.embedding_timeout_ms and rag.llm_timeout_ms, whoever sets them (superuser only).",
        c"",
        &MAX_HTTP_TIMEOUT_MS,
        100,
        3_600_000,
        GucContext::Suset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"rag.max_http_retries",
        c"Cap on rag.embedding_max_retries and rag.llm_max_retries, whoever sets them (superuser only).",
        c"",
        &MAX_HTTP_RETRIES,
        0,
        100,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"rag.max_embedding_batch_size",
        c"Cap on rag.embedding_batch_size, whoever sets it (superuser only).",
        c"",
        &MAX_EMBEDDING_BATCH_SIZE,
        1,
        4096,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"rag.allowed_embedding_models",
        c"Comma-separated provider/model pairs sessions may embed with, e.g. 'builtin/all-MiniLM-L6-v2, ollama/*' (superuser only; empty: any).",
        c"Checked whenever an embedder is chosen: a session that sets rag.embedding_provider or rag.embedding_model \
          to a pair not listed gets a permission error.",
        &ALLOWED_EMBEDDING_MODELS,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"rag.allowed_llm_models",
        c"Comma-separated provider/model pairs rag.ask may generate with, e.g. 'openai/gpt-4o-mini' (superuser only; empty: any).",
        c"Covers rag.llm_model and the llm_model of chat sessions; the extractive generator is always allowed.",
        &ALLOWED_LLM_MODELS,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"rag.llm_timeout_ms",
        c"Timeout of one request to the chat model server.",
        c"",
        &LLM_TIMEOUT_MS,
        100,
        3_600_000,
        GucContext::Userset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"rag.llm_max_retries",
        c"Retries of a failed chat model request (connection errors, timeouts, 5xx, 429).",
        c"",
        &LLM_MAX_RETRIES,
        0,
        100,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"rag.chat_token_budget",
        c"Approximate tokens of sources and history rag.ask puts into a prompt.",
        c"",
        &CHAT_TOKEN_BUDGET,
        256,
        1_000_000,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"rag.chat_history_messages",
        c"Most recent messages of a session that rag.ask considers.",
        c"",
        &CHAT_HISTORY_MESSAGES,
        0,
        1000,
        GucContext::Userset,
        GucFlags::default(),
    );
}
