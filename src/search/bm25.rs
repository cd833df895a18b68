//! BM25 over chunk text through pg_search: English stemming and stopwords (the index in sql/schema.sql).
//!
//! The query is user text and is matched with `|||` (match any term, tokenised like the index), so
//! characters and words that pg_search's query language treats as syntax (`: " ( ) * ~ ^ AND OR NOT -`)
//! are plain terms: no syntax error and no way to change the query's meaning.

use super::timing::Stopwatch;
use super::{check_k, SearchRow};
use crate::errors::SpiOk;
use pgrx::prelude::*;
use pgrx::{JsonB, Uuid};

const BM25_SEARCH: &str = "\
WITH hits AS (
    SELECT id, pdb.score(id) AS score
    FROM rag.chunks
    WHERE {MATCH}
    ORDER BY pdb.score(id) DESC
    LIMIT $2
)
SELECT c.id, c.document_id, d.file_name, c.chunk_index, c.content, hit.score::float8, c.metadata
FROM hits hit
{ROW_BY_ID}
ORDER BY hit.score DESC, c.id";

/// Run BM25 and return rows best first.
pub fn bm25_rows(query: &str, k: i32, sw: &Stopwatch) -> Vec<SearchRow> {
    if query.trim().is_empty() {
        return Vec::new();
    }
    if crate::read::on_standby() {
        crate::errors::raise(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            "BM25 search is not available on a hot standby: community pg_search 0.21.14 does not WAL-log its index",
            "Run BM25 searches on the primary; rag.vector_search and rag.hybrid_search (vector leg only) work here.",
        );
    }
    let _plan = super::index_only_plan(crate::guc::HNSW_EF_SEARCH.get());
    let m = super::long_query::bm25_match(query);
    sw.phase("query terms");
    let sql = BM25_SEARCH.replace("{ROW_BY_ID}", super::ROW_BY_ID).replace("{MATCH}", &m.predicate(3));
    let rows = Spi::connect(|client| {
        let mut args: Vec<pgrx::datum::DatumWithOid> = vec![m.first().into(), (k as i64).into()];
        args.extend(m.extra().into_iter().map(Into::into));
        let table = client.select(sql.as_str(), None, &args)?;
        table.map(|row| super::read_row(&row)).collect::<Result<Vec<_>, _>>()
    })
    .or_raise("BM25 search");
    sw.phase("search");
    rows
}

/// BM25 search over chunk text, best first.
#[pg_extern(stable, parallel_safe)]
fn bm25_search(
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
    let rows = bm25_rows(query, k, &sw);
    sw.report("rag.bm25_search");
    TableIterator::new(rows)
}
