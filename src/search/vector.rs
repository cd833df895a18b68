//! Vector search: cosine distance over the HNSW index of the configured embedding model.
//! Only vectors made by that model are searched, so two models' vector spaces never mix.

use super::timing::Stopwatch;
use super::{check_k, index_only_plan, query_embedding, SearchRow};
use crate::errors::SpiOk;
use crate::guc;
use pgrx::prelude::*;
use pgrx::{JsonB, Uuid};

/// `{D}` is the model's dimension (an integer from rag.embedding_models), the only formatted value.
const VECTOR_SEARCH: &str = "\
WITH hits AS (
    SELECT id, embedding::vector({D}) <=> $1::real[]::vector({D}) AS distance
    FROM rag.chunks
    WHERE embedding_model = $2
    ORDER BY embedding::vector({D}) <=> $1::real[]::vector({D})
    LIMIT $3
)
SELECT c.id, c.document_id, d.file_name, c.chunk_index, c.content, (1 - hit.distance)::float8, c.metadata
FROM hits hit
{ROW_BY_ID}
ORDER BY hit.distance, c.id";

pub fn vector_rows(query: &str, k: i32, sw: &Stopwatch) -> Vec<SearchRow> {
    let Some((qv, model, dims)) = query_embedding(query, sw) else {
        return Vec::new();
    };
    let sql = VECTOR_SEARCH.replace("{D}", &dims.to_string()).replace("{ROW_BY_ID}", super::ROW_BY_ID);
    let _plan = index_only_plan(guc::HNSW_EF_SEARCH.get().max(k));
    // The vector leg never needs pg_search: with its planner hook off, a damaged BM25 index (see
    // verify.rs) cannot fail vector searches too.
    _plan.set(c"paradedb.enable_custom_scan", "off");
    let rows = Spi::connect(|client| {
        let table = client.select(sql.as_str(), None, &[qv.into(), model.as_str().into(), (k as i64).into()])?;
        table.map(|row| super::read_row(&row)).collect::<Result<Vec<_>, _>>()
    })
    .or_raise("vector search");
    sw.phase("search");
    rows
}

/// Vector (HNSW cosine) search, nearest first; `score` is cosine similarity.
#[pg_extern(stable, parallel_unsafe)]
fn vector_search(
    query: &str,
    k: default!(i32, 10),
) -> TableIterator<
    'static,
    (
        name!(chunk_id, Uuid),
        name!(document_id, Uuid),
        name!(file_name, String),
        name!(chunk_index, i32),
        name!(content, String),
        name!(score, f64),
        name!(metadata, JsonB),
    ),
> {
    check_k(k);
    let sw = Stopwatch::start();
    let rows = vector_rows(query, k, &sw);
    sw.report("rag.vector_search");
    TableIterator::new(rows)
}
