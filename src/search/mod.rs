//! Retrieval: BM25 through pg_search (`bm25.rs`), HNSW cosine through pgvector (`vector.rs`), and their
//! weighted Reciprocal Rank Fusion computed in one SQL statement (`hybrid.rs`).
//! This file holds what the three share: argument checks, the result row, and scoped planner settings.

pub mod bm25;
pub mod compact;
pub mod hybrid;
pub mod long_query;
pub mod timing;
pub mod vector;
pub mod verify;

use crate::errors;
use pgrx::prelude::*;
use pgrx::spi::{SpiHeapTupleData, SpiResult};
use pgrx::{JsonB, Uuid};
use std::ffi::{CStr, CString};

/// Largest `k` (and candidate count) a search accepts.
pub const MAX_K: i32 = 10_000;

pub fn check_k(k: i32) {
    if !(1..=MAX_K).contains(&k) {
        errors::invalid(
            format!("k must be between 1 and {MAX_K}, got {k}"),
            "Ask for the number of results you will show; page through larger result sets.",
        );
    }
}

/// Settings changed for the duration of one search, like a function's `SET` clause: restored when
/// dropped; on error the transaction abort restores them.
pub struct ScopedSettings {
    nest_level: i32,
}

impl ScopedSettings {
    pub fn new() -> Self {
        // SAFETY: plain call into the GUC machinery from the backend's main thread.
        ScopedSettings { nest_level: unsafe { pg_sys::NewGUCNestLevel() } }
    }

    pub fn set(&self, name: &CStr, value: &str) -> &Self {
        let value = CString::new(value).unwrap_or_default();
        // SAFETY: both strings are NUL-terminated and outlive the call; GUC_ACTION_SAVE ties the value
        // to this nest level.
        unsafe {
            pg_sys::set_config_option(
                name.as_ptr(),
                value.as_ptr(),
                pg_sys::GucContext::PGC_USERSET,
                pg_sys::GucSource::PGC_S_SESSION,
                pg_sys::GucAction::GUC_ACTION_SAVE,
                true,
                0,
                false,
            );
        }
        self
    }
}

impl Drop for ScopedSettings {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            // SAFETY: pops exactly the level this guard pushed.
            unsafe { pg_sys::AtEOXact_GUC(true, self.nest_level) };
        }
    }
}

/// Planner settings for a search that must use the HNSW and BM25 indexes, without parallel workers by default
/// (`rag.search_parallel_workers`): without the index settings the planner
/// picks a sequential scan over small tables for `ORDER BY embedding <=> q LIMIT n` (measured: 6.2 ms
/// instead of 0.66 ms at 5,000 rows).
pub fn index_only_plan(ef_search: i32) -> ScopedSettings {
    let s = ScopedSettings::new();
    s.set(c"enable_seqscan", "off");
    // No parallel workers unless rag.search_parallel_workers asks: on a busy small machine they cost
    // more than they save (2 cores, 1M chunks: faster for one client as an application role, throughput
    // from 4 clients on down by about 40 %; at 100k chunks, 122-191 ms with 2 workers against 43-67 ms without).
    s.set(c"max_parallel_workers_per_gather", &crate::guc::SEARCH_PARALLEL_WORKERS.get().max(0).to_string());
    s.set(c"hnsw.ef_search", &ef_search.clamp(1, 1000).to_string());
    // Keep scanning the HNSW graph until enough rows pass the filters: the metadata filter, and for every
    // role but the superuser the row-level security condition (owner and tenant). Both vector queries sort
    // their hits again by distance, so the relaxed order costs nothing in ranking.
    s.set(c"hnsw.iterative_scan", "relaxed_order");
    s
}

/// The result columns of each hit, looked up by the id of the outer query's row `hit` with two primary-key
/// probes (`c` and `d` in the select list). Each lookup is its own `LATERAL (... OFFSET 0)` so the planner
/// cannot reorder it: as an ordinary join under row-level security it misjudged the owner and tenant
/// conditions and scanned every visible chunk (hybrid search as an application role at 100k chunks: 249 ms
/// instead of 51 ms). `hit.id` must be a plain column (a MATERIALIZED CTE in the hybrid query): an
/// expression over a FULL JOIN is not known to be leak-proof, and row-level security then forbids the index.
pub const ROW_BY_ID: &str = "\
CROSS JOIN LATERAL (SELECT c.id, c.document_id, c.chunk_index, c.content, c.metadata
                    FROM rag.chunks c WHERE c.id = hit.id OFFSET 0) c
CROSS JOIN LATERAL (SELECT d.file_name FROM rag.document_files d WHERE d.id = c.document_id OFFSET 0) d";

/// chunk_id, document_id, file_name, chunk_index, content, score, metadata.
pub type SearchRow = (Uuid, Uuid, String, i32, String, f64, JsonB);

/// Read the seven common result columns, in order, from an SPI row.
pub fn read_row(row: &SpiHeapTupleData) -> SpiResult<SearchRow> {
    Ok((
        row.get::<Uuid>(1)?.unwrap_or(Uuid::from_bytes([0; 16])),
        row.get::<Uuid>(2)?.unwrap_or(Uuid::from_bytes([0; 16])),
        row.get::<String>(3)?.unwrap_or_default(),
        row.get::<i32>(4)?.unwrap_or_default(),
        row.get::<String>(5)?.unwrap_or_default(),
        row.get::<f64>(6)?.unwrap_or_default(),
        row.get::<JsonB>(7)?.unwrap_or(JsonB(serde_json::json!({}))),
    ))
}

/// The query's embedding with the configured model, and that model's stored dimension.
/// `None` when no chunk has a vector of this model yet (the vector leg then has nothing to search).
pub fn query_embedding(query: &str, sw: &timing::Stopwatch) -> Option<(Vec<f32>, String, usize)> {
    let embedder = crate::embed::current();
    let model = embedder.model_id().to_string();
    let dims = crate::ingest::store::model_dimensions(&model);
    sw.phase("model lookup");
    let dims = dims?;
    let v = crate::embed::embed_texts(embedder.as_ref(), &[query], crate::embed::InputKind::Query)
        .pop()
        .unwrap_or_default();
    sw.phase("query embedding");
    if v.len() != dims {
        errors::raise(
            pgrx::PgSqlErrorCode::ERRCODE_DATA_EXCEPTION,
            format!("embedding model '{model}' returned a {}-dimensional query vector, but its stored vectors have {dims}", v.len()),
            "The model behind this name changed: give it another rag.embedding_model name and run rag.reembed().",
        );
    }
    Some((v, model, dims))
}
